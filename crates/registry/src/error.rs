use std::path::PathBuf;

use berth_image::Digest;

/// What went wrong talking to a registry. Every variant names the
/// registry, and the image or blob where there is one, so that the one
/// line a user sees says what failed where.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {registry} is unreachable: {reason}")]
    Unreachable { registry: String, reason: String },
    #[error("{action} access denied for {image} on {registry}: repository does not exist or may require 'berth login'{detail}")]
    Denied {
        action: &'static str,
        image: String,
        registry: String,
        detail: String,
    },
    #[error("unauthorized: {registry} rejected the credentials{detail}")]
    Unauthorized { registry: String, detail: String },
    #[error("repository {image} not found on {registry}: repository name not known to registry")]
    RepositoryNotFound { image: String, registry: String },
    #[error(
        "manifest for {image} not found on {registry}: no such tag or digest (manifest unknown)"
    )]
    ManifestNotFound { image: String, registry: String },
    #[error("blob {digest} of {image} not found on {registry}")]
    BlobNotFound {
        image: String,
        registry: String,
        digest: Digest,
    },
    #[error("{registry} sent {what} of {image} that does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        registry: String,
        image: String,
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("{registry} sent {image} as {media_type:?}, a media type berth does not support")]
    UnsupportedMediaType {
        registry: String,
        image: String,
        media_type: String,
    },
    #[error("no matching manifest for {platform} in the manifest list entries of {image}")]
    NoPlatform { image: String, platform: String },
    #[error("{registry}: {method} {path}: {status} {message}")]
    Status {
        registry: String,
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{registry}: invalid response to {what}: {reason}")]
    Protocol {
        registry: String,
        what: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Config { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl RegistryError {
    /// Whether trying again could help: the network or the registry
    /// failed for now, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Status { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}
