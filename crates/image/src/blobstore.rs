//! The content-addressed blob store: `blobs/sha256/<hex>` under the root,
//! an OCI image layout's blob directory.
//!
//! A blob becomes visible only after its bytes have been hashed and, when
//! the caller knows what to expect, checked: it is written under a temporary
//! name in the store's scratch directory, fsynced, then renamed into place.
//! A crash leaves at worst a stray temporary file, which the engine sweeps
//! while it holds the store lock.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::{Digest, Hasher};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {digest} is not in the store")]
    NotFound { digest: Digest },
    #[error("content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The blob directory and the scratch directory its writers stage in
/// (both on the same filesystem, so that the final rename is atomic).
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    scratch: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) `dir` as `blobs/sha256`; temporary files
    /// go to `scratch`.
    pub fn open(dir: PathBuf, scratch: PathBuf) -> Result<Self, BlobError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::create_dir_all(&scratch).map_err(io_err(&scratch))?;
        Ok(BlobStore { dir, scratch })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, BlobError> {
        File::open(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => BlobError::NotFound {
                digest: digest.clone(),
            },
            _ => BlobError::Io {
                path: self.path(digest),
                source: e,
            },
        })
    }

    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, BlobError> {
        let mut buf = Vec::new();
        let path = self.path(digest);
        self.open_blob(digest)?
            .read_to_end(&mut buf)
            .map_err(io_err(&path))?;
        Ok(buf)
    }

    pub fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        let path = self.path(digest);
        fs::metadata(&path)
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => BlobError::NotFound {
                    digest: digest.clone(),
                },
                _ => BlobError::Io { path, source: e },
            })
    }

    /// Stores `bytes`, checking them against `expected` when given.
    pub fn put(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Stored, BlobError> {
        let mut w = self.writer()?;
        w.write_all(bytes).map_err(io_err(&self.scratch))?;
        w.commit(expected)
    }

    /// Copies `r` into the store; returns the digest and size.
    pub fn put_reader<R: Read>(
        &self,
        r: &mut R,
        expected: Option<&Digest>,
    ) -> Result<Stored, BlobError> {
        let mut w = self.writer()?;
        io::copy(r, &mut w).map_err(io_err(&self.scratch))?;
        w.commit(expected)
    }

    pub fn writer(&self) -> Result<BlobWriter<'_>, BlobError> {
        let file =
            NamedTempFile::with_prefix_in("blob-", &self.scratch).map_err(io_err(&self.scratch))?;
        Ok(BlobWriter {
            store: self,
            file: io::BufWriter::with_capacity(256 * 1024, file),
            hasher: Hasher::new(),
            len: 0,
        })
    }

    /// Removes a blob; a blob already gone is not an error.
    pub fn remove(&self, digest: &Digest) -> Result<(), BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(BlobError::Io { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Every digest in the store (for garbage collection).
    pub fn list(&self) -> Result<Vec<Digest>, BlobError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(d) = entry
                .file_name()
                .to_str()
                .and_then(|n| Digest::parse(n).ok())
            {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// A blob that a writer committed.
#[derive(Debug, Clone)]
pub struct Stored {
    pub digest: Digest,
    pub size: u64,
    /// False when the store already held the blob.
    pub new: bool,
}

/// A blob being written: hashed as it goes, visible only after `commit`.
pub struct BlobWriter<'a> {
    store: &'a BlobStore,
    file: io::BufWriter<NamedTempFile>,
    hasher: Hasher,
    len: u64,
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter<'_> {
    /// Checks the digest, fsyncs and renames the blob into place. A blob
    /// that is already present is left as it is (content addressing makes
    /// the two identical), so concurrent writers of one blob both succeed.
    pub fn commit(self, expected: Option<&Digest>) -> Result<Stored, BlobError> {
        let actual = self.hasher.finish();
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(BlobError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let scratch = &self.store.scratch;
        let file = self.file.into_inner().map_err(|e| BlobError::Io {
            path: scratch.clone(),
            source: e.into_error(),
        })?;
        let target = self.store.path(&actual);
        let new = !target.exists();
        if new {
            file.as_file().sync_all().map_err(io_err(scratch))?;
            file.persist(&target).map_err(|e| BlobError::Io {
                path: target.clone(),
                source: e.error,
            })?;
        }
        Ok(Stored {
            digest: actual,
            size: self.len,
            new,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path().join("blobs/sha256"), dir.path().join("tmp")).unwrap();
        (dir, s)
    }

    #[test]
    fn put_then_read_back() {
        let (_d, s) = store();
        let d = s.put(b"hello", None).unwrap().digest;
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(s.read(&d).unwrap(), b"hello");
        assert_eq!(s.list().unwrap(), vec![d]);
    }

    #[test]
    fn wrong_digest_never_becomes_visible() {
        let (dir, s) = store();
        let wrong = Digest::of(b"other");
        let err = s.put(b"hello", Some(&wrong)).unwrap_err();
        assert!(matches!(err, BlobError::DigestMismatch { .. }));
        assert!(s.list().unwrap().is_empty());
        assert_eq!(
            fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "temp file left behind"
        );
    }
}
