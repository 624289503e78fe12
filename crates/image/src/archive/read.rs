//! Reading an image archive in one pass over its tar stream (which may be
//! stdin): every file that can hold image content goes straight into the
//! blob store, verified where its name states a digest; the small metadata
//! files stay in memory. Only then are the images worked out.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use serde::Deserialize;

use super::ArchiveError;
use crate::blobstore::BlobStore;
use crate::digest::Digest;
use crate::manifest::{self, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME};
use crate::reference::ImageRef;

/// manifest.json and index.json are a few KiB; refuse to buffer a
/// "metadata" file that is not.
const METADATA_LIMIT: u64 = 16 << 20;

/// One layer blob of an image in an archive.
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub digest: Digest,
    pub size: u64,
}

/// One image found in an archive; its blobs are in the store.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// The image's own manifest blob, when the archive has one (OCI).
    pub manifest: Option<Digest>,
    pub config: Digest,
    pub layers: Vec<LayerBlob>,
    /// Normalised `name:tag` references the archive gives the image.
    pub names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads a docker-archive or OCI-layout tar stream. Every blob it adds to
/// the store is pushed to `added`, even when it then fails: those that no
/// image ends up using are the caller's to remove.
pub fn read_archive<R: Read>(
    reader: R,
    store: &BlobStore,
    added: &mut Vec<Digest>,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let mut files: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut links: HashMap<String, String> = HashMap::new();
    let mut metadata: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut images: Vec<ArchiveImage> = Vec::new();

    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(ArchiveError::Read)? {
        let mut entry = entry.map_err(ArchiveError::Read)?;
        let path = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
        match entry.header().entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                // Legacy `docker save` links duplicate layers to one copy.
                if let Some(target) = entry.link_name_bytes() {
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let base = match (entry.header().entry_type(), path.rsplit_once('/')) {
                        (tar::EntryType::Symlink, Some((dir, _))) => format!("{dir}/{target}"),
                        _ => target,
                    };
                    links.insert(path, normalise(&base));
                }
                continue;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => continue,
        }
        if matches!(
            path.as_str(),
            "manifest.json" | "index.json" | "oci-layout" | "repositories"
        ) {
            if entry.size() > METADATA_LIMIT {
                return Err(ArchiveError::MetadataTooLarge {
                    name: path,
                    limit: METADATA_LIMIT,
                });
            }
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(ArchiveError::Read)?;
            metadata.insert(path, buf);
            continue;
        }
        // Any other file may be content: docker's layouts name configs and
        // layers freely (`<id>.json`, `<id>/layer.tar`, skopeo's `<id>.tar`);
        // the manifest says which is which once the stream has been read.
        let expected = match path.strip_prefix("blobs/sha256/") {
            Some(hex) => match Digest::parse(hex) {
                Ok(d) => Some(d),
                Err(_) => continue,
            },
            None => None,
        };
        if let Some(d) = &expected {
            if store.contains(d) {
                files.insert(path, (d.clone(), entry.size()));
                continue;
            }
        }
        let mut w = store.writer()?;
        std::io::copy(&mut entry, &mut w).map_err(ArchiveError::Read)?;
        let stored = w
            .commit(expected.as_ref())
            .map_err(|source| ArchiveError::BlobDigest {
                path: path.clone(),
                source,
            })?;
        if stored.new {
            added.push(stored.digest.clone());
        }
        files.insert(path, (stored.digest, stored.size));
    }

    let lookup = |path: &str, referenced_by: &str| -> Result<(Digest, u64), ArchiveError> {
        let mut p = normalise(path);
        for _ in 0..8 {
            if let Some(found) = files.get(&p) {
                return Ok(found.clone());
            }
            match links.get(&p) {
                Some(next) => p = next.clone(),
                None => break,
            }
        }
        Err(ArchiveError::MissingFile {
            path: path.to_string(),
            referenced_by: referenced_by.to_string(),
        })
    };

    if let Some(raw) = metadata.get("manifest.json") {
        let entries: Vec<DockerManifestEntry> =
            serde_json::from_slice(raw).map_err(|source| ArchiveError::Metadata {
                name: "manifest.json".into(),
                source,
            })?;
        for e in entries {
            let (config, _) = lookup(&e.config, "manifest.json")?;
            let layers = e
                .layers
                .iter()
                .map(|l| {
                    lookup(l, "manifest.json").map(|(digest, size)| LayerBlob { digest, size })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let names = e
                .repo_tags
                .unwrap_or_default()
                .iter()
                .filter_map(|t| ImageRef::parse(t).ok().and_then(|r| r.tagged()))
                .collect();
            images.push(ArchiveImage {
                manifest: None,
                config,
                layers,
                names,
            });
        }
    } else if let Some(raw) = metadata.get("index.json") {
        let index_digest = Digest::of(raw);
        let index: Index =
            serde_json::from_slice(raw).map_err(|source| ArchiveError::Metadata {
                name: "index.json".into(),
                source,
            })?;
        for desc in &index.manifests {
            let names = names_from_annotations(&desc.annotations);
            let manifest_digest = resolve_platform(store, desc, &index_digest)?;
            let manifest = Manifest::parse(&store.read(&manifest_digest)?, &manifest_digest)?;
            // A layout may hold one image under several names: merge them.
            if let Some(existing) = images
                .iter_mut()
                .find(|i| i.manifest.as_ref() == Some(&manifest_digest))
            {
                existing.names.extend(names);
                continue;
            }
            for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
                if !store.contains(&blob.digest) {
                    return Err(ArchiveError::MissingFile {
                        path: format!("blobs/sha256/{}", blob.digest.hex()),
                        referenced_by: format!("manifest {manifest_digest}"),
                    });
                }
            }
            images.push(ArchiveImage {
                manifest: Some(manifest_digest),
                config: manifest.config.digest.clone(),
                layers: manifest
                    .layers
                    .iter()
                    .map(|l| LayerBlob {
                        digest: l.digest.clone(),
                        size: l.size,
                    })
                    .collect(),
                names,
            });
        }
    } else {
        return Err(ArchiveError::NotAnImageArchive);
    }
    Ok(images)
}

/// Follows an index entry to the manifest of this machine's platform.
fn resolve_platform(
    store: &BlobStore,
    desc: &manifest::Descriptor,
    parent: &Digest,
) -> Result<Digest, ArchiveError> {
    if !manifest::is_index(&desc.media_type) {
        return match desc.media_type.as_str() {
            manifest::OCI_MANIFEST | manifest::DOCKER_MANIFEST => Ok(desc.digest.clone()),
            other => Err(ArchiveError::MediaType {
                media_type: other.to_string(),
            }),
        };
    }
    let index = Index::parse(&store.read(&desc.digest)?, &desc.digest)?;
    let host = manifest::host_platform();
    let chosen = index
        .manifests
        .iter()
        .find(|m| {
            m.platform.as_ref().is_some_and(|p| {
                p.os == host.os
                    && p.architecture == host.architecture
                    && (p.variant.is_none() || p.variant == host.variant)
            })
        })
        .ok_or_else(|| ArchiveError::NoPlatform {
            digest: parent.clone(),
            platform: format!("{}/{}", host.os, host.architecture),
        })?;
    resolve_platform(store, chosen, &desc.digest)
}

/// The names an OCI index entry gives its image: containerd's full-name
/// annotation, or `ref.name` when that is a whole reference rather than
/// just a tag.
fn names_from_annotations(annotations: &BTreeMap<String, String>) -> Vec<String> {
    let name = annotations.get(ANNOTATION_IMAGE_NAME).or_else(|| {
        annotations
            .get(ANNOTATION_REF_NAME)
            .filter(|n| n.contains(':') || n.contains('/'))
    });
    name.and_then(|n| ImageRef::parse(n).ok())
        .and_then(|r| r.tagged())
        .into_iter()
        .collect()
}

fn normalise(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}
