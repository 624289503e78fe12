//! `push`: an image from the store to a registry.
//!
//! The image's own blobs go up as they are stored (the compressed layers,
//! the config, the manifest byte for byte), so an image pulled from one
//! registry and pushed to another keeps its digest. Blobs the repository
//! has are skipped; blobs another repository of the same registry has are
//! mounted from it rather than sent again.

use berth_image::manifest::{Manifest, OCI_MANIFEST};
use berth_image::reference::familiar;
use berth_image::{Digest, ImageRef};
use berth_registry::{Registry, Upload};

use crate::remote::Remote;
use crate::{Engine, EngineError};

/// What a push reports per layer, for the CLI to print as docker does.
#[derive(Debug, Clone)]
pub enum PushProgress {
    Preparing(Digest),
    Exists(Digest),
    /// Linked from another repository (named by its path) of the registry.
    Mounted {
        digest: Digest,
        from: String,
    },
    Pushed(Digest),
}

#[derive(Debug, Clone)]
pub struct Pushed {
    /// The manifest's digest, as the registry now knows the image.
    pub digest: Digest,
    /// The manifest's size in bytes.
    pub size: u64,
}

impl Engine {
    /// Pushes the image tagged `name` to its registry.
    pub fn push(
        &mut self,
        remote: &Remote,
        name: &ImageRef,
        progress: &dyn Fn(PushProgress),
    ) -> Result<Pushed, EngineError> {
        let tagged = name.tagged().expect("a push names a tag");
        let image = familiar(&tagged).to_string();
        let id = self
            .db
            .image_by_tag(&tagged)?
            .ok_or_else(|| EngineError::NoSuchTag(image.clone()))?;
        let row = self
            .db
            .image(&id)?
            .ok_or_else(|| EngineError::ImageNotFound(image.clone()))?;
        let bytes = self.blobs.read(&row.manifest)?;
        let manifest = Manifest::parse(&bytes, &row.manifest)?;
        let media_type = manifest.media_type.as_deref().unwrap_or(OCI_MANIFEST);

        let registry = remote.connect_direct(name.domain())?;
        let sources = self.mount_sources(&id, name)?;
        for layer in &manifest.layers {
            progress(PushProgress::Preparing(layer.digest.clone()));
        }
        for layer in &manifest.layers {
            let done = self.push_blob(&registry, name.path(), &layer.digest, &sources, &image)?;
            progress(match done {
                Sent::Existed => PushProgress::Exists(layer.digest.clone()),
                Sent::Mounted(from) => PushProgress::Mounted {
                    digest: layer.digest.clone(),
                    from,
                },
                Sent::Uploaded => PushProgress::Pushed(layer.digest.clone()),
            });
        }
        self.push_blob(
            &registry,
            name.path(),
            &manifest.config.digest,
            &sources,
            &image,
        )?;
        let tag = name.tag().expect("a push names a tag");
        registry.put_manifest(name.path(), tag, media_type, &bytes, &image)?;

        let _lock = self.lock()?;
        self.db
            .add_repo_digest(&format!("{}@{}", name.name(), row.manifest), &id)?;
        Ok(Pushed {
            digest: row.manifest,
            size: bytes.len() as u64,
        })
    }

    /// The stored tags of a repository (`push --all-tags`).
    pub fn tags_of_repository(&self, repository: &str) -> Result<Vec<ImageRef>, EngineError> {
        let mut out = Vec::new();
        for row in self.db.images()? {
            for (tag, _) in self.db.tags_of(&row.id)? {
                if berth_image::reference::split_tag(&tag).0 == repository {
                    out.push(ImageRef::parse(&tag)?);
                }
            }
        }
        if out.is_empty() {
            return Err(EngineError::NoSuchTag(familiar(repository).to_string()));
        }
        Ok(out)
    }

    /// Other repositories on the same registry that this image came from
    /// or went to: a registry can mount its blobs from them.
    fn mount_sources(&self, id: &Digest, name: &ImageRef) -> Result<Vec<String>, EngineError> {
        let mut names: Vec<String> = self
            .db
            .repo_digests_of(id)?
            .into_iter()
            .filter_map(|d| d.split_once('@').map(|(n, _)| n.to_string()))
            .collect();
        names.extend(
            self.db
                .tags_of(id)?
                .into_iter()
                .map(|(t, _)| berth_image::reference::split_tag(&t).0.to_string()),
        );
        let prefix = format!("{}/", name.domain());
        let mut out: Vec<String> = names
            .iter()
            .filter_map(|n| n.strip_prefix(&prefix))
            .filter(|path| *path != name.path())
            .map(String::from)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn push_blob(
        &self,
        registry: &Registry,
        repo: &str,
        digest: &Digest,
        sources: &[String],
        image: &str,
    ) -> Result<Sent, EngineError> {
        if registry.has_blob(repo, digest, image)? {
            return Ok(Sent::Existed);
        }
        let from = sources.first().map(String::as_str);
        match registry.start_upload(repo, digest, from, image)? {
            Upload::Mounted => Ok(Sent::Mounted(from.unwrap_or_default().to_string())),
            Upload::Session(location) => {
                let size = self.blobs.size(digest)?;
                let mut file = self.blobs.open_blob(digest)?;
                registry.finish_upload(repo, &location, digest, size, &mut file, image)?;
                Ok(Sent::Uploaded)
            }
        }
    }
}

/// How a blob reached the registry.
enum Sent {
    Existed,
    Mounted(String),
    Uploaded,
}
