//! Images as data: references, digests, manifests and configs, the
//! content-addressed blob store, image archives and the safe application of
//! a layer tarball onto a directory.
//!
//! Nothing here knows about the metadata database or containers; the engine
//! composes these pieces.

pub mod apply;
pub mod archive;
pub mod blobstore;
pub mod compression;
pub mod config;
pub mod digest;
pub mod manifest;
pub mod reference;

pub use blobstore::{BlobStore, Stored};
pub use digest::Digest;
pub use reference::ImageRef;
