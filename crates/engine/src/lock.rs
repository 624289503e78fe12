//! The store lock: one writer at a time.
//!
//! An exclusive `flock` on `<root>/lock`. The kernel drops it when its
//! holder dies, SIGKILL included, so a crashed command never leaves a lock
//! that blocks the next one. Because every writer holds it, whatever is in
//! the scratch directory when it is taken was left by a dead writer and is
//! swept away.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use rustix::fs::{flock, FlockOperation};

use crate::EngineError;

pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    pub fn acquire(root: &Path, scratch: &Path) -> Result<Self, EngineError> {
        let path = root.join("lock");
        let file = lock_file(&path)?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::info!("waiting for another berth command to release the store lock");
            flock(&file, FlockOperation::LockExclusive).map_err(io_err(&path))?;
        }
        sweep(scratch);
        Ok(StoreLock { _file: file })
    }
}

/// Opens (or makes) a lock file.
fn lock_file(path: &Path) -> Result<File, EngineError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn io_err(path: &Path) -> impl FnOnce(rustix::io::Errno) -> EngineError + '_ {
    move |e| EngineError::Io {
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Removes what dead writers left in the scratch directory.
fn sweep(scratch: &Path) {
    let Ok(entries) = fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        match removed {
            Ok(()) => {
                tracing::debug!(path = %path.display(), "removed leftover of an interrupted command")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove leftover scratch file")
            }
        }
    }
}

/// The image-use lock: a `flock` on `<root>/images.lock`, apart from the
/// store lock so that making a container never waits for a pull. A
/// container being made holds it shared from the moment it looks its image
/// up until the container is recorded (or, for `run --rm`, until its
/// overlay is mounted); `rmi` and `image prune` hold it exclusive while
/// they decide which images are in use and remove the others. So an image
/// is never removed under a container that has chosen it but is not yet
/// to be seen.
pub struct ImageUse {
    _file: File,
}

impl ImageUse {
    pub fn shared(root: &Path) -> Result<Self, EngineError> {
        Self::acquire(root, FlockOperation::LockShared)
    }

    pub fn exclusive(root: &Path) -> Result<Self, EngineError> {
        Self::acquire(root, FlockOperation::LockExclusive)
    }

    fn acquire(root: &Path, op: FlockOperation) -> Result<Self, EngineError> {
        let path = root.join("images.lock");
        let file = lock_file(&path)?;
        flock(&file, op).map_err(io_err(&path))?;
        Ok(ImageUse { _file: file })
    }
}
