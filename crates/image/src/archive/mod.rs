//! Image archives: docker's `docker save` format (manifest.json), and OCI
//! image layouts (index.json), read into the blob store and written back
//! out.

mod read;
mod write;

pub use read::{read_archive, ArchiveImage, LayerBlob};
pub use write::{write_archive, ArchiveFormat, SaveImage};

use std::io;
use std::path::PathBuf;

use crate::blobstore::BlobError;
use crate::config::ConfigError;
use crate::digest::Digest;
use crate::manifest::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("reading the archive: {0}")]
    Read(#[source] io::Error),
    #[error("writing the archive: {0}")]
    Write(#[source] io::Error),
    #[error(
        "not an image archive: it has neither manifest.json (docker) nor index.json (OCI layout)"
    )]
    NotAnImageArchive,
    #[error("archive metadata file {name} is larger than {limit} bytes")]
    MetadataTooLarge { name: String, limit: u64 },
    #[error("archive's {name} is not valid: {source}")]
    Metadata {
        name: String,
        source: serde_json::Error,
    },
    #[error("archive's {referenced_by} names {path:?}, which the archive does not contain")]
    MissingFile { path: String, referenced_by: String },
    #[error("archive's {path} does not match its digest: {source}")]
    BlobDigest { path: String, source: BlobError },
    #[error("OCI index {digest} has no manifest for this platform ({platform})")]
    NoPlatform { digest: Digest, platform: String },
    #[error("unsupported media type {media_type:?} in the archive's index")]
    MediaType { media_type: String },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("decompressing layer {digest}: {source}")]
    Decompress { digest: Digest, source: io::Error },
    #[error("layer {layer} uncompresses to {actual}, but the image config says {expected}")]
    DiffIdMismatch {
        layer: Digest,
        expected: Digest,
        actual: Digest,
    },
    #[error("scratch file in {path}: {source}")]
    Scratch { path: PathBuf, source: io::Error },
}
