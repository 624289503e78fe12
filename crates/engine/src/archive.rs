//! `load` and `save`: image archives in and out of the store.

use std::io::{Read, Write};
use std::path::Path;

use berth_image::archive::{read_archive, write_archive, ArchiveFormat, SaveImage};
use berth_image::manifest::Manifest;
use berth_image::Digest;

use crate::register::Registration;
use crate::{Engine, EngineError};

/// An image that `load` brought in.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    /// Normalised `name:tag` references it was given.
    pub names: Vec<String>,
}

impl Engine {
    /// Loads every image of a docker-archive or OCI-layout tar stream.
    /// Interrupted at any point, it leaves no image half-visible: blobs are
    /// verified before they appear, layers appear whole, and the image
    /// record is one transaction at the end.
    pub fn load<R: Read>(&mut self, reader: R) -> Result<Vec<Loaded>, EngineError> {
        let lock = self.lock()?;
        let mut added = Vec::new();
        let images = match read_archive(reader, &self.blobs, &mut added) {
            Ok(images) => images,
            Err(e) => {
                self.drop_unused_blobs(&added)?;
                return Err(e.into());
            }
        };
        let mut loaded = Vec::new();
        let mut result = Ok(());
        for image in &images {
            let registration = Registration {
                manifest: image.manifest.as_ref(),
                layers: &image.layers,
                names: &image.names,
                ..Registration::default()
            };
            match self.register_locked(&lock, &image.config, &registration) {
                Ok(id) => loaded.push(Loaded {
                    id,
                    names: image.names.clone(),
                }),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.drop_unused_blobs(&added)?;
        result.map(|()| loaded)
    }

    /// Writes the named images as one archive to `out`. Images named by
    /// tag carry that tag; images named by ID carry none, as in docker.
    pub fn save<W: Write>(
        &self,
        names: &[String],
        format: ArchiveFormat,
        out: W,
    ) -> Result<(), EngineError> {
        let mut images: Vec<SaveImage> = Vec::new();
        for name in names {
            let resolved = self.resolve(name)?;
            if let Some(existing) = images
                .iter_mut()
                .find(|i| i.manifest.config.digest == resolved.id)
            {
                existing.names.extend(resolved.tag);
                continue;
            }
            let row = self
                .db
                .image(&resolved.id)?
                .ok_or_else(|| EngineError::ImageNotFound(name.clone()))?;
            let manifest = Manifest::parse(&self.blobs.read(&row.manifest)?, &row.manifest)?;
            let diff_ids = self
                .db
                .layers_of(&resolved.id)?
                .into_iter()
                .map(|(_, diff, _)| diff)
                .collect();
            images.push(SaveImage {
                manifest_digest: row.manifest,
                manifest,
                diff_ids,
                names: resolved.tag.into_iter().collect(),
            });
        }
        write_archive(out, &self.blobs, &self.scratch, &images, format)?;
        Ok(())
    }

    /// `save` into a file, which appears only once complete.
    pub fn save_to_path(
        &self,
        names: &[String],
        format: ArchiveFormat,
        path: &Path,
    ) -> Result<(), EngineError> {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let io_err = |source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".berth-save-")
            .tempfile_in(dir)
            .map_err(io_err)?;
        self.save(names, format, std::io::BufWriter::new(tmp.as_file_mut()))?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(path).map_err(|e| io_err(e.error))?;
        Ok(())
    }
}
