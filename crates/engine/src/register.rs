//! Making an image whose blobs are in the blob store visible: unpack each
//! layer not already present (checking its diff ID), then record it all in
//! one database transaction. Load, import and (later) pull end here.

use std::collections::HashMap;
use std::io::{BufReader, Read};

use berth_image::apply;
use berth_image::archive::LayerBlob;
use berth_image::compression::{self, Compression};
use berth_image::config::{ConfigError, ImageConfig};
use berth_image::digest::HashingReader;
use berth_image::manifest::{Descriptor, Manifest, OCI_CONFIG};
use berth_image::Digest;
use berth_storage::{LayerStore, Staged};

use crate::db::NewImage;
use crate::lock::StoreLock;
use crate::{Engine, EngineError};

/// The current time as Go's RFC3339Nano spells it (trailing zeros of the
/// fraction dropped), so that configs berth writes are byte-identical
/// after docker or skopeo re-encode them.
pub(crate) fn now() -> String {
    go_rfc3339_nano(chrono::Utc::now())
}

fn go_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let full = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    format!("{}Z", full.trim_end_matches('0').trim_end_matches('.'))
}

/// Which layer of which image a stream is, for naming it in errors.
pub(crate) struct LayerSource<'a> {
    pub image: &'a Digest,
    pub index: usize,
    /// The (compressed) blob's digest.
    pub digest: &'a Digest,
    pub diff_id: &'a Digest,
}

/// Unpacks a layer blob's stream into a staged directory and checks that
/// the uncompressed bytes hash to the config's diff ID. The caller
/// commits the staged layer (a pull first checks the blob's own digest).
pub(crate) fn unpack_staged<R: Read>(
    layers: &LayerStore,
    blob: R,
    layer: &LayerSource<'_>,
) -> Result<(Staged, u64), EngineError> {
    let staged = layers.stage()?;
    let stream = compression::decompress(blob).map_err(|source| EngineError::LayerCompression {
        image: layer.image.clone(),
        index: layer.index,
        digest: layer.digest.clone(),
        source,
    })?;
    let apply_err = |source| EngineError::Apply {
        image: layer.image.clone(),
        index: layer.index,
        digest: layer.digest.clone(),
        source,
    };
    let mut hashing = HashingReader::new(stream);
    let applied = apply::apply(&mut hashing, &staged.diff()).map_err(apply_err)?;
    let (actual, _) = hashing
        .finish()
        .map_err(|source| apply_err(apply::ApplyError::Corrupt { source }))?;
    if actual != *layer.diff_id {
        return Err(EngineError::DiffIdMismatch {
            image: layer.image.clone(),
            index: layer.index,
            expected: layer.diff_id.clone(),
            actual,
        });
    }
    Ok((staged, applied.size))
}

/// An image whose blobs are in the blob store, to make visible.
#[derive(Default)]
pub(crate) struct Registration<'a> {
    /// The image's own manifest blob when it came with one; otherwise an
    /// OCI manifest is written for it.
    pub manifest: Option<&'a Digest>,
    pub layers: &'a [LayerBlob],
    /// Normalised `name:tag`s to give it.
    pub names: &'a [String],
    /// `name@digest`s a registry knows it by.
    pub repo_digests: &'a [String],
    /// Layers (by chain ID) the caller has already unpacked and committed,
    /// with their sizes (a pull unpacks while it downloads).
    pub unpacked: HashMap<Digest, u64>,
}

impl Engine {
    /// Registers the image whose config is `config` and whose layer blobs
    /// are `r.layers` (bottom first). The caller holds the store lock.
    pub(crate) fn register_locked(
        &mut self,
        _lock: &StoreLock,
        config: &Digest,
        r: &Registration<'_>,
    ) -> Result<Digest, EngineError> {
        let Registration {
            manifest,
            layers,
            names,
            repo_digests,
            unpacked,
        } = r;
        let config_bytes = self.blobs.read(config)?;
        let image = ImageConfig::parse(&config_bytes, config)?;
        if image.rootfs.diff_ids.len() != layers.len() {
            return Err(ConfigError::LayerCount {
                digest: config.clone(),
                diff_ids: image.rootfs.diff_ids.len(),
                layers: layers.len(),
            }
            .into());
        }
        let mut rows = Vec::with_capacity(layers.len());
        for (index, ((blob, diff_id), chain)) in layers
            .iter()
            .zip(&image.rootfs.diff_ids)
            .zip(image.chain_ids())
            .enumerate()
        {
            let size = match (self.db.layer_size(&chain)?, unpacked.get(&chain)) {
                (Some(size), _) if self.layers.exists(chain.hex()) => size,
                (_, Some(size)) => *size,
                _ => self.unpack_layer(config, index, blob, diff_id, &chain)?,
            };
            rows.push((chain, diff_id.clone(), size));
        }
        let manifest = match manifest {
            Some(m) => (*m).clone(),
            None => self.write_manifest(config, config_bytes.len() as u64, layers)?,
        };
        let mut blobs = vec![manifest.clone(), config.clone()];
        blobs.extend(layers.iter().map(|l| l.digest.clone()));
        self.db.insert_image(&NewImage {
            id: config,
            manifest: &manifest,
            created: image.created.as_deref(),
            layers: &rows,
            blobs: &blobs,
            names,
            repo_digests,
            now: &now(),
        })?;
        Ok(config.clone())
    }

    /// Unpacks one layer blob from the store and commits it.
    fn unpack_layer(
        &self,
        image: &Digest,
        index: usize,
        blob: &LayerBlob,
        diff_id: &Digest,
        chain: &Digest,
    ) -> Result<u64, EngineError> {
        let file = self.blobs.open_blob(&blob.digest)?;
        let layer = LayerSource {
            image,
            index,
            digest: &blob.digest,
            diff_id,
        };
        let (staged, size) = unpack_staged(&self.layers, file, &layer)?;
        self.layers.commit(staged, chain.hex())?;
        Ok(size)
    }

    /// Writes an OCI manifest for an image that arrived without one.
    fn write_manifest(
        &self,
        config: &Digest,
        config_size: u64,
        layers: &[LayerBlob],
    ) -> Result<Digest, EngineError> {
        let mut descs = Vec::with_capacity(layers.len());
        for l in layers {
            let mut r = BufReader::new(self.blobs.open_blob(&l.digest)?);
            let media_type = Compression::detect(&mut r)
                .map(Compression::oci_layer_media_type)
                .unwrap_or(Compression::None.oci_layer_media_type());
            descs.push(Descriptor::new(media_type, l.digest.clone(), l.size));
        }
        let manifest = Manifest::oci(
            Descriptor::new(OCI_CONFIG, config.clone(), config_size),
            descs,
        );
        Ok(self.blobs.put(&manifest.to_json(), None)?.digest)
    }

    /// Removes blobs among `candidates` that no image uses (what a failed
    /// or partial load brought in).
    pub(crate) fn drop_unused_blobs(&self, candidates: &[Digest]) -> Result<(), EngineError> {
        for d in candidates {
            if !self.db.blob_in_use(d)? {
                self.blobs.remove(d)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn times_are_spelled_as_go_spells_them() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 11, 27, 19, 53, 48)
            .unwrap();
        assert_eq!(go_rfc3339_nano(t), "2026-11-27T19:53:48Z");
        let t = t + chrono::Duration::nanoseconds(612_991_460);
        assert_eq!(go_rfc3339_nano(t), "2026-11-27T19:53:48.61299146Z");
    }
}
