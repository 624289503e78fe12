//! Writing image archives.
//!
//! `Docker` writes what docker 25 and later write: an OCI image layout that
//! also carries docker's manifest.json, with uncompressed layers whose
//! digests are their diff IDs. Every `docker load` reads it (older ones
//! through manifest.json), and so do skopeo's `docker-archive:` and
//! `oci-archive:` transports.
//!
//! `Oci` writes a plain OCI image layout holding the image's own manifest
//! and blobs byte for byte, so digests survive the round trip.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use serde::Serialize;

use super::ArchiveError;
use crate::blobstore::BlobStore;
use crate::compression;
use crate::digest::{Digest, HashingReader};
use crate::manifest::{
    Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG, OCI_INDEX,
    OCI_MANIFEST,
};
use crate::reference::{familiar, split_tag};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Docker,
    Oci,
}

/// One image to save.
pub struct SaveImage {
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub diff_ids: Vec<Digest>,
    /// Normalised `name:tag` references to record for it.
    pub names: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes `images` as one archive to `out`. `scratch` holds uncompressed
/// copies of compressed layers while they are written.
pub fn write_archive<W: Write>(
    out: W,
    store: &BlobStore,
    scratch: &Path,
    images: &[SaveImage],
    format: ArchiveFormat,
) -> Result<(), ArchiveError> {
    let mut tar = TarOut::new(out)?;
    let mut index = Vec::new();
    let mut docker_manifest = Vec::new();
    for image in images {
        let manifest_desc = match format {
            ArchiveFormat::Oci => {
                tar.add_blob(store, &image.manifest_digest)?;
                tar.add_blob(store, &image.manifest.config.digest)?;
                for layer in &image.manifest.layers {
                    tar.add_blob(store, &layer.digest)?;
                }
                let desc = Descriptor::new(
                    image.manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST),
                    image.manifest_digest.clone(),
                    store.size(&image.manifest_digest)?,
                );
                desc
            }
            ArchiveFormat::Docker => {
                let mut layers = Vec::new();
                for (layer, diff_id) in image.manifest.layers.iter().zip(&image.diff_ids) {
                    let size = tar.add_uncompressed_layer(store, scratch, layer, diff_id)?;
                    layers.push(Descriptor::new(
                        compression::Compression::None.oci_layer_media_type(),
                        diff_id.clone(),
                        size,
                    ));
                }
                let config = &image.manifest.config.digest;
                tar.add_blob(store, config)?;
                let manifest = Manifest::oci(
                    Descriptor::new(OCI_CONFIG, config.clone(), store.size(config)?),
                    layers,
                );
                let bytes = manifest.to_json();
                let digest = Digest::of(&bytes);
                tar.add_bytes(&blob_path(&digest), &bytes)?;
                docker_manifest.push(DockerManifestEntry {
                    config: blob_path(config),
                    repo_tags: image
                        .names
                        .iter()
                        .map(|n| familiar(n).to_string())
                        .collect(),
                    layers: image.diff_ids.iter().map(blob_path).collect(),
                });
                Descriptor::new(OCI_MANIFEST, digest, bytes.len() as u64)
            }
        };
        if image.names.is_empty() {
            index.push(manifest_desc.clone());
        }
        for name in &image.names {
            let mut d = manifest_desc.clone();
            d.annotations
                .insert(ANNOTATION_IMAGE_NAME.into(), name.clone());
            d.annotations
                .insert(ANNOTATION_REF_NAME.into(), split_tag(name).1.to_string());
            index.push(d);
        }
    }
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.into()),
        manifests: index,
        annotations: BTreeMap::new(),
    };
    tar.add_bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    tar.add_bytes(
        "index.json",
        &serde_json::to_vec(&index).expect("index serialises"),
    )?;
    if format == ArchiveFormat::Docker {
        tar.add_bytes(
            "manifest.json",
            &serde_json::to_vec(&docker_manifest).expect("manifest serialises"),
        )?;
    }
    tar.finish()
}

struct TarOut<W: Write> {
    builder: tar::Builder<W>,
    written: HashSet<String>,
}

impl<W: Write> TarOut<W> {
    fn new(out: W) -> Result<Self, ArchiveError> {
        let mut t = TarOut {
            builder: tar::Builder::new(out),
            written: HashSet::new(),
        };
        for dir in ["blobs/", "blobs/sha256/"] {
            let mut h = header(0, tar::EntryType::Directory, 0o755);
            t.builder
                .append_data(&mut h, dir, io::empty())
                .map_err(ArchiveError::Write)?;
        }
        Ok(t)
    }

    fn add<R: Read>(&mut self, path: &str, size: u64, data: R) -> Result<(), ArchiveError> {
        if !self.written.insert(path.to_string()) {
            return Ok(());
        }
        let mut h = header(size, tar::EntryType::Regular, 0o644);
        self.builder
            .append_data(&mut h, path, data)
            .map_err(ArchiveError::Write)
    }

    fn add_bytes(&mut self, path: &str, bytes: &[u8]) -> Result<(), ArchiveError> {
        self.add(path, bytes.len() as u64, bytes)
    }

    fn add_blob(&mut self, store: &BlobStore, digest: &Digest) -> Result<(), ArchiveError> {
        let path = blob_path(digest);
        if self.written.contains(&path) {
            return Ok(());
        }
        let file = store.open_blob(digest)?;
        let size = store.size(digest)?;
        self.add(&path, size, file)
    }

    /// Adds a layer as a plain tar named by its diff ID, uncompressing it
    /// through a scratch file when the store holds it compressed.
    fn add_uncompressed_layer(
        &mut self,
        store: &BlobStore,
        scratch: &Path,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<u64, ArchiveError> {
        if layer.digest == *diff_id {
            self.add_blob(store, diff_id)?;
            return store.size(diff_id).map_err(Into::into);
        }
        let decompress_err = |source| ArchiveError::Decompress {
            digest: layer.digest.clone(),
            source,
        };
        let mut reader = HashingReader::new(
            compression::decompress(store.open_blob(&layer.digest)?)
                .map_err(|e| decompress_err(io::Error::other(e.to_string())))?,
        );
        let mut tmp: File =
            tempfile::tempfile_in(scratch).map_err(|source| ArchiveError::Scratch {
                path: scratch.to_path_buf(),
                source,
            })?;
        io::copy(&mut reader, &mut tmp).map_err(decompress_err)?;
        let (actual, size) = reader.finish().map_err(decompress_err)?;
        if actual != *diff_id {
            return Err(ArchiveError::DiffIdMismatch {
                layer: layer.digest.clone(),
                expected: diff_id.clone(),
                actual,
            });
        }
        tmp.rewind().map_err(decompress_err)?;
        self.add(&blob_path(diff_id), size, tmp)?;
        Ok(size)
    }

    fn finish(self) -> Result<(), ArchiveError> {
        let mut out = self.builder.into_inner().map_err(ArchiveError::Write)?;
        out.flush().map_err(ArchiveError::Write)
    }
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}
