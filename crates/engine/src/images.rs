//! Image queries and changes: resolve a user's name for an image, list,
//! inspect, history, tag, remove, prune.

use chrono::{DateTime, Utc};

use berth_image::config::ImageConfig;
use berth_image::manifest::Manifest;
use berth_image::reference::split_tag;
use berth_image::{Digest, ImageRef};

use crate::filters::{parse_time, reference_matches, ImageFilter};
use crate::inspect::build_details;
use crate::lock::StoreLock;
use crate::register::now;
use crate::{Engine, EngineError};

pub use crate::inspect::ImageDetails;

/// How a user's name for an image resolved.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub id: Digest,
    /// The `name:tag` it was found by, when found by tag.
    pub tag: Option<String>,
}

/// A row source for `images`.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    pub id: Digest,
    /// Normalised `name:tag`s.
    pub repo_tags: Vec<String>,
    /// Normalised `name@digest`s.
    pub repo_digests: Vec<String>,
    pub created: Option<DateTime<Utc>>,
    pub size: u64,
}

/// One line of `image history`, newest first.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    /// The image's ID on the top row; older rows have none (`<missing>`).
    pub id: Option<Digest>,
    pub created: Option<DateTime<Utc>>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

/// One line of `rmi` / `image prune` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

#[derive(Debug, Default)]
pub struct PruneReport {
    pub removed: Vec<Removed>,
    /// Bytes freed on disk (unpacked layers and blobs).
    pub reclaimed: u64,
}

impl Engine {
    /// Resolves a name as docker does: a tag first, then a manifest digest,
    /// then an image ID or unique ID prefix.
    pub(crate) fn resolve(&self, name: &str) -> Result<Resolved, EngineError> {
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        let is_hex =
            !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !name.starts_with("sha256:") {
            if let Ok(r) = ImageRef::parse(name) {
                if let Some(d) = r.digest() {
                    let by_name = r.digested().expect("has a digest");
                    if let Some(id) = self.db.image_by_repo_digest(&by_name)? {
                        return Ok(Resolved { id, tag: None });
                    }
                    if let Some(id) = self.db.image_by_manifest(d)? {
                        return Ok(Resolved { id, tag: None });
                    }
                } else if let Some(tagged) = r.tagged() {
                    if let Some(id) = self.db.image_by_tag(&tagged)? {
                        return Ok(Resolved {
                            id,
                            tag: Some(tagged),
                        });
                    }
                }
            }
        }
        if is_hex {
            let matches = self.db.images_by_prefix(&hex.to_ascii_lowercase())?;
            match matches.len() {
                0 => {}
                1 => {
                    return Ok(Resolved {
                        id: matches.into_iter().next().expect("one match"),
                        tag: None,
                    })
                }
                count => {
                    return Err(EngineError::AmbiguousId {
                        prefix: name.to_string(),
                        count,
                    })
                }
            }
        }
        Err(EngineError::ImageNotFound(name.to_string()))
    }

    pub(crate) fn config_of(&self, id: &Digest) -> Result<ImageConfig, EngineError> {
        Ok(ImageConfig::parse(&self.blobs.read(id)?, id)?)
    }

    /// Images for `images`, newest first, filtered.
    pub fn images(&self, filter: &ImageFilter) -> Result<Vec<ImageSummary>, EngineError> {
        let created_of = |name: &str| -> Result<Option<DateTime<Utc>>, EngineError> {
            let id = self.resolve(name)?.id;
            Ok(self
                .db
                .image(&id)?
                .and_then(|r| parse_time(r.created.as_deref())))
        };
        let before = filter
            .before
            .as_deref()
            .map(created_of)
            .transpose()?
            .flatten();
        let since = filter
            .since
            .as_deref()
            .map(created_of)
            .transpose()?
            .flatten();
        let mut out = Vec::new();
        for row in self.db.images()? {
            let created = parse_time(row.created.as_deref());
            let mut tags: Vec<String> = self
                .db
                .tags_of(&row.id)?
                .into_iter()
                .map(|(n, _)| n)
                .collect();
            if let Some(d) = filter.dangling {
                if d != tags.is_empty() {
                    continue;
                }
            }
            if before.is_some_and(|b| created.is_none_or(|c| c >= b))
                || since.is_some_and(|s| created.is_none_or(|c| c <= s))
            {
                continue;
            }
            if !filter.reference.is_empty() {
                tags.retain(|t| {
                    let (repo, tag) = split_tag(t);
                    let familiar = berth_image::reference::familiar(repo);
                    filter
                        .reference
                        .iter()
                        .any(|p| reference_matches(p, familiar, tag))
                });
                if tags.is_empty() {
                    continue;
                }
            }
            let labels = self.config_of(&row.id)?.config.labels.unwrap_or_default();
            if !filter.label.iter().all(|want| match want.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|have| have == v),
                None => labels.contains_key(want),
            }) {
                continue;
            }
            out.push(ImageSummary {
                repo_digests: self.db.repo_digests_of(&row.id)?,
                id: row.id,
                repo_tags: tags,
                created,
                size: row.size,
            });
        }
        Ok(out)
    }

    /// Whether `name` names an image in the store.
    pub fn has_image(&self, name: &str) -> Result<bool, EngineError> {
        match self.resolve(name) {
            Ok(_) => Ok(true),
            Err(EngineError::ImageNotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `image inspect`, in docker's shape.
    pub fn inspect_image(&self, name: &str) -> Result<ImageDetails, EngineError> {
        let id = self.resolve(name)?.id;
        let row = self
            .db
            .image(&id)?
            .ok_or_else(|| EngineError::ImageNotFound(name.to_string()))?;
        let config = self.config_of(&id)?;
        let tags = self.db.tags_of(&id)?;
        let chains: Vec<String> = self
            .db
            .layers_of(&id)?
            .iter()
            .map(|(c, _, _)| c.hex().to_string())
            .collect();
        let manifest = Manifest::parse(&self.blobs.read(&row.manifest)?, &row.manifest)?;
        let manifest_size = self.blobs.size(&row.manifest)?;
        let mut details = build_details(
            &row,
            &config,
            &tags,
            self.layers.image_dirs(&chains),
            &manifest,
            manifest_size,
        );
        details.repo_digests = self.db.repo_digests_of(&id)?;
        Ok(details)
    }

    /// `image history`: the config's history, newest first, each entry
    /// that made a layer paired with that layer's size.
    pub fn history(&self, name: &str) -> Result<Vec<HistoryRow>, EngineError> {
        let id = self.resolve(name)?.id;
        let config = self.config_of(&id)?;
        let mut sizes = self.db.layers_of(&id)?.into_iter().map(|(_, _, s)| s);
        let mut rows: Vec<HistoryRow> = if config.history.is_empty() {
            sizes
                .map(|size| HistoryRow {
                    id: None,
                    created: parse_time(config.created.as_deref()),
                    created_by: String::new(),
                    size,
                    comment: String::new(),
                })
                .collect()
        } else {
            config
                .history
                .iter()
                .map(|h| HistoryRow {
                    id: None,
                    created: parse_time(h.created.as_deref()),
                    created_by: h.created_by.clone(),
                    size: if h.empty_layer {
                        0
                    } else {
                        sizes.next().unwrap_or(0)
                    },
                    comment: h.comment.clone(),
                })
                .collect()
        };
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = Some(id);
        }
        Ok(rows)
    }

    /// `tag SOURCE TARGET`.
    pub fn tag(&mut self, source: &str, target: &str) -> Result<(), EngineError> {
        let target_ref = ImageRef::parse(target)?;
        if target_ref.digest().is_some() {
            return Err(EngineError::TagWithDigest(target.to_string()));
        }
        let name = target_ref
            .tagged()
            .expect("a reference without digest has a tag");
        let _lock = self.lock()?;
        let id = self.resolve(source)?.id;
        self.db.tag(&name, &id, &now())
    }

    /// `rmi`: untags; deletes an image when its last tag goes (or when it
    /// is named by ID). `force` removes an image tagged in several
    /// repositories, named by ID.
    pub fn remove_images(
        &mut self,
        names: &[String],
        force: bool,
    ) -> Result<Vec<Removed>, EngineError> {
        let lock = self.lock()?;
        let _image_use = crate::lock::ImageUse::exclusive(&self.root)?;
        let mut out = Vec::new();
        for name in names {
            out.extend(self.remove_one_locked(&lock, name, force)?);
        }
        Ok(out)
    }

    fn remove_one_locked(
        &mut self,
        lock: &StoreLock,
        name: &str,
        force: bool,
    ) -> Result<Vec<Removed>, EngineError> {
        let resolved = self.resolve(name)?;
        let tags: Vec<String> = self
            .db
            .tags_of(&resolved.id)?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        let mut out = Vec::new();
        match &resolved.tag {
            Some(tag) if tags.len() > 1 => {
                self.db.untag(tag)?;
                out.push(Removed::Untagged(tag.clone()));
                return Ok(out);
            }
            None if !force => {
                let mut repos: Vec<&str> = tags.iter().map(|t| split_tag(t).0).collect();
                repos.dedup();
                if repos.len() > 1 {
                    return Err(EngineError::ReferencedInManyRepos {
                        id: resolved.id.short().to_string(),
                    });
                }
            }
            _ => {}
        }
        let users = self.containers_using(&resolved.id)?;
        if let (Some(user), false) = (users.first(), force) {
            return Err(EngineError::ImageInUse {
                reference: name.to_string(),
                container: user[..12].to_string(),
                image: resolved.id.short().to_string(),
            });
        }
        for tag in &tags {
            self.db.untag(tag)?;
            out.push(Removed::Untagged(tag.clone()));
        }
        if !users.is_empty() {
            // Forced: untagged, but kept for the containers made from it.
            return Ok(out);
        }
        let (removed, _) = self.delete_locked(lock, &resolved.id)?;
        out.extend(removed);
        Ok(out)
    }

    /// Deletes an untagged image's record, then whatever of its layers and
    /// blobs nothing else uses. Returns the lines to print and the bytes
    /// freed.
    fn delete_locked(
        &mut self,
        _lock: &StoreLock,
        id: &Digest,
    ) -> Result<(Vec<Removed>, u64), EngineError> {
        let gone = self.db.delete_image(id)?;
        let mut out = vec![Removed::Deleted(id.clone())];
        let mut freed = 0;
        for (chain, size) in gone.layers {
            self.layers.remove(chain.hex())?;
            freed += size;
            out.push(Removed::Deleted(chain));
        }
        for blob in gone.blobs {
            freed += self.blobs.size(&blob).unwrap_or(0);
            self.blobs.remove(&blob)?;
        }
        Ok((out, freed))
    }

    /// `image prune`: removes dangling images, or with `all` every image,
    /// but never one a container uses; then anything on disk that no image
    /// references (left by an interrupted command).
    pub fn prune_images(&mut self, all: bool) -> Result<PruneReport, EngineError> {
        let lock = self.lock()?;
        let _image_use = crate::lock::ImageUse::exclusive(&self.root)?;
        let mut report = PruneReport::default();
        for row in self.db.images()? {
            let tags = self.db.tags_of(&row.id)?;
            if (!all && !tags.is_empty()) || !self.containers_using(&row.id)?.is_empty() {
                continue;
            }
            for (tag, _) in tags {
                self.db.untag(&tag)?;
                report.removed.push(Removed::Untagged(tag));
            }
            let (removed, freed) = self.delete_locked(&lock, &row.id)?;
            report.removed.extend(removed);
            report.reclaimed += freed;
        }
        report.reclaimed += self.collect_orphans_locked(&lock)?;
        Ok(report)
    }

    /// Removes layer directories and blobs that no image record uses.
    fn collect_orphans_locked(&mut self, _lock: &StoreLock) -> Result<u64, EngineError> {
        let mut freed = 0;
        for chain in self.layers.list()? {
            if !self.db.layer_in_use(&chain)? {
                tracing::debug!(layer = %chain, "removing a layer no image uses");
                self.layers.remove(&chain)?;
            }
        }
        for blob in self.blobs.list()? {
            if !self.db.blob_in_use(&blob)? {
                freed += self.blobs.size(&blob).unwrap_or(0);
                self.blobs.remove(&blob)?;
            }
        }
        Ok(freed)
    }
}
