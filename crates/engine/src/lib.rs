//! The operations berth's front ends share: one [`Engine`] over a store
//! root, holding the metadata database, the blob store and the layer
//! store.
//!
//! Daemonless: each command opens the engine itself. Commands that change
//! the store take the store lock ([`lock::StoreLock`]); readers never
//! wait for it, since SQLite's WAL gives them a consistent snapshot.

// container_inspect.rs builds docker's large JSON document with json!.
#![recursion_limit = "256"]

mod archive;
pub mod attach;
mod changes;
mod container_inspect;
mod containers;
mod db;
mod error;
mod filters;
mod images;
mod import;
mod info;
mod inspect;
mod lock;
mod logs;
pub mod monitor;
mod pull;
mod push;
mod register;
mod remote;
mod restart;
mod run;
mod seccomp;
mod spec;
mod state;
mod units;

pub use archive::Loaded;
pub use containers::{Container, ExecOptions, LogEntry};
pub use error::{EngineError, ErrorKind};
pub use filters::ImageFilter;
pub use images::{HistoryRow, ImageDetails, ImageSummary, PruneReport, Removed};
pub use import::ImportOptions;
pub use info::Info;
pub use logs::LogReader;
pub use pull::{parse_platform, LayerState, PullOptions, PullProgress, Pulled};
pub use push::{PushProgress, Pushed};
pub use remote::Remote;
pub use run::RunOptions;
pub use state::{RunState, Status};
pub use units::parse_bytes;

pub use berth_image::archive::ArchiveFormat;

use std::fs;
use std::path::{Path, PathBuf};

use berth_image::BlobStore;
use berth_storage::LayerStore;

/// Re-executes this process from a sealed in-memory copy of its binary,
/// unless it already runs from one: for commands whose processes start
/// inside a container (see berth-runtime's `sealed`).
pub fn run_sealed() -> std::io::Result<()> {
    berth_runtime::sealed::ensure_sealed()
}

/// The default store root, as docker's `/var/lib/docker`.
pub const DEFAULT_ROOT: &str = "/var/lib/berth";

pub struct Engine {
    root: PathBuf,
    db: db::Db,
    blobs: BlobStore,
    layers: LayerStore,
    scratch: PathBuf,
}

impl Engine {
    /// Opens (creating on first use) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, EngineError> {
        fs::create_dir_all(root).map_err(|source| EngineError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let root = fs::canonicalize(root).map_err(|source| EngineError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let scratch = root.join("tmp");
        let blobs = BlobStore::open(root.join("blobs/sha256"), scratch.clone())?;
        let layers = LayerStore::open(root.join("layers"), scratch.clone())?;
        let db = db::Db::open(&root.join("berth.db"))?;
        Ok(Engine {
            root,
            db,
            blobs,
            layers,
            scratch,
        })
    }

    /// Takes the store lock, for a change to the store; see [`lock`].
    fn lock(&self) -> Result<lock::StoreLock, EngineError> {
        lock::StoreLock::acquire(&self.root, &self.scratch)
    }
}
