use std::io;
use std::path::PathBuf;

use berth_image::apply::ApplyError;
use berth_image::archive::ArchiveError;
use berth_image::blobstore::BlobError;
use berth_image::compression::CompressionError;
use berth_image::config::ConfigError;
use berth_image::manifest::ManifestError;
use berth_image::reference::RefError;
use berth_image::Digest;
use berth_storage::LayerError;

/// What sort of failure an error is; the CLI maps it to an exit code and
/// the API service (later) to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    Conflict,
    InvalidInput,
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such image: {0}")]
    ImageNotFound(String),
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such object: {0}")]
    NoSuchObject(String),
    #[error("container ID prefix {prefix:?} is ambiguous: it matches {count} containers")]
    AmbiguousContainer { prefix: String, count: usize },
    #[error("Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name.")]
    NameInUse { name: String, id: String },
    #[error("cannot start container {name}: {error}")]
    StartFailed {
        name: String,
        error: String,
        /// 126/127 when the command cannot run / is not found.
        exec_status: Option<i32>,
    },
    #[error("the monitor of container {id} failed: {reason}")]
    MonitorFailed { id: String, reason: String },
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("cannot remove container \"/{0}\": container is running: stop the container before removing or force remove")]
    ContainerRunning(String),
    #[error("conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}")]
    ImageInUse {
        reference: String,
        container: String,
        image: String,
    },
    #[error("An image does not exist locally with the tag: {0}")]
    NoSuchTag(String),
    #[error("image {image} was found but is for {have}, not the requested platform {want}")]
    PlatformMismatch {
        image: String,
        have: String,
        want: String,
    },
    #[error("image ID prefix {prefix:?} is ambiguous: it matches {count} images")]
    AmbiguousId { prefix: String, count: usize },
    #[error("conflict: unable to delete {id} (must be forced) - image is referenced in multiple repositories")]
    ReferencedInManyRepos { id: String },
    #[error("refusing to create a tag with a digest reference: {0}")]
    TagWithDigest(String),
    #[error("invalid --change {change:?}: {reason}")]
    Change { change: String, reason: String },
    #[error("invalid filter {filter:?}: {reason}")]
    Filter { filter: String, reason: String },
    #[error("layer {index} ({digest}) of image {image}: {source}")]
    Apply {
        image: Digest,
        index: usize,
        digest: Digest,
        source: ApplyError,
    },
    #[error("layer {index} ({digest}) of image {image}: {source}")]
    LayerCompression {
        image: Digest,
        index: usize,
        digest: Digest,
        source: CompressionError,
    },
    #[error("layer {digest} is truncated or corrupt: {source}")]
    LayerStream { digest: Digest, source: io::Error },
    #[error("layer {index} of image {image} uncompresses to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        image: Digest,
        index: usize,
        expected: Digest,
        actual: Digest,
    },
    #[error("no command specified: the image {0} has no CMD or ENTRYPOINT, and none was given")]
    NoCommand(String),
    #[error("invalid {flag} {value:?}: {reason}")]
    RunFlag {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("--init: no static init on this machine (install tini, for its tini-static, or docker-init)")]
    NoInit,
    #[error("unable to find user {spec}: {reason}")]
    User { spec: String, reason: String },
    #[error(transparent)]
    Runtime(#[from] berth_runtime::RuntimeError),
    #[error(transparent)]
    Registry(#[from] berth_registry::RegistryError),
    #[error(transparent)]
    Reference(#[from] RefError),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Layer(#[from] LayerError),
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        use EngineError::*;
        match self {
            ImageNotFound(_)
            | NoSuchTag(_)
            | PlatformMismatch { .. }
            | NoSuchContainer(_)
            | NoSuchObject(_)
            | NoInit => ErrorKind::NotFound,
            AmbiguousContainer { .. }
            | NameInUse { .. }
            | NotRunning(_)
            | ContainerRunning(_)
            | ImageInUse { .. } => ErrorKind::Conflict,
            StartFailed { .. } | MonitorFailed { .. } => ErrorKind::Internal,
            Blob(BlobError::NotFound { .. }) => ErrorKind::NotFound,
            AmbiguousId { .. } | ReferencedInManyRepos { .. } => ErrorKind::Conflict,
            TagWithDigest(_)
            | Change { .. }
            | Filter { .. }
            | Reference(_)
            | NoCommand(_)
            | User { .. }
            | RunFlag { .. } => ErrorKind::InvalidInput,
            Runtime(_) => ErrorKind::Internal,
            Registry(e) => registry_kind(e),
            Apply { .. }
            | LayerCompression { .. }
            | LayerStream { .. }
            | DiffIdMismatch { .. }
            | Archive(_)
            | Config(_)
            | Manifest(_) => ErrorKind::InvalidInput,
            Blob(BlobError::DigestMismatch { .. }) => ErrorKind::InvalidInput,
            Blob(_) | Layer(_) | Db(_) | Io { .. } => ErrorKind::Internal,
        }
    }
}

fn registry_kind(e: &berth_registry::RegistryError) -> ErrorKind {
    use berth_registry::RegistryError::*;
    match e {
        RepositoryNotFound { .. }
        | ManifestNotFound { .. }
        | BlobNotFound { .. }
        | NoPlatform { .. } => ErrorKind::NotFound,
        Denied { .. } | Unauthorized { .. } => ErrorKind::InvalidInput,
        Unreachable { .. } | Status { .. } => ErrorKind::Unavailable,
        DigestMismatch { .. } | UnsupportedMediaType { .. } | Protocol { .. } => {
            ErrorKind::InvalidInput
        }
        Config { .. } => ErrorKind::InvalidInput,
        Io { .. } => ErrorKind::Internal,
    }
}
