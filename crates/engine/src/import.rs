//! `import`: a root filesystem tarball becomes a one-layer image.

use std::io::Read;

use berth_image::archive::LayerBlob;
use berth_image::compression;
use berth_image::config::{History, ImageConfig, RootFs, RunConfig};
use berth_image::digest::HashingReader;
use berth_image::manifest::host_platform;
use berth_image::{Digest, ImageRef};

use crate::changes::apply_change;
use crate::register::{now, Registration};
use crate::{Engine, EngineError};

#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Dockerfile instructions (`--change`).
    pub changes: Vec<String>,
    /// The commit message (`--message`).
    pub message: Option<String>,
    /// `REPOSITORY[:TAG]` to give the image.
    pub reference: Option<String>,
    /// Where the tarball came from, for the history entry.
    pub source: String,
}

impl Engine {
    pub fn import<R: Read>(
        &mut self,
        mut tarball: R,
        opts: &ImportOptions,
    ) -> Result<Digest, EngineError> {
        // Refuse bad arguments before reading a byte of a possibly large input.
        let name = match &opts.reference {
            Some(r) => {
                let r = ImageRef::parse(r)?;
                Some(
                    r.tagged()
                        .ok_or_else(|| EngineError::TagWithDigest(r.to_string()))?,
                )
            }
            None => None,
        };
        let mut run = RunConfig::default();
        for change in &opts.changes {
            apply_change(&mut run, change)?;
        }

        let lock = self.lock()?;
        let stored = self.blobs.put_reader(&mut tarball, None)?;
        let layer = LayerBlob {
            digest: stored.digest.clone(),
            size: stored.size,
        };
        // Blobs this import added, to take back out if it fails.
        let mut added = Vec::new();
        if stored.new {
            added.push(stored.digest.clone());
        }
        let result = self.diff_id(&layer.digest).and_then(|diff_id| {
            let created = now();
            let config = ImageConfig {
                created: Some(created.clone()),
                architecture: host_platform().architecture,
                os: "linux".into(),
                config: run,
                rootfs: RootFs {
                    kind: "layers".into(),
                    diff_ids: vec![diff_id],
                },
                history: vec![History {
                    created: Some(created),
                    comment: opts
                        .message
                        .clone()
                        .unwrap_or_else(|| format!("Imported from {}", opts.source)),
                    ..Default::default()
                }],
                comment: opts.message.clone(),
                ..Default::default()
            };
            let bytes = serde_json::to_vec(&config).expect("a config always serialises");
            let config = self.blobs.put(&bytes, None)?;
            if config.new {
                added.push(config.digest.clone());
            }
            let names: Vec<String> = name.into_iter().collect();
            self.register_locked(
                &lock,
                &config.digest,
                &Registration {
                    layers: &[layer],
                    names: &names,
                    ..Registration::default()
                },
            )
        });
        if result.is_err() {
            self.drop_unused_blobs(&added)?;
        }
        result
    }

    /// The digest of a layer blob's uncompressed stream.
    fn diff_id(&self, blob: &Digest) -> Result<Digest, EngineError> {
        let stream = compression::decompress(self.blobs.open_blob(blob)?).map_err(|source| {
            EngineError::LayerCompression {
                image: blob.clone(),
                index: 0,
                digest: blob.clone(),
                source,
            }
        })?;
        let (d, _) =
            HashingReader::new(stream)
                .finish()
                .map_err(|source| EngineError::LayerStream {
                    digest: blob.clone(),
                    source,
                })?;
        Ok(d)
    }
}
