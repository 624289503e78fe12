use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("layer store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LayerError + '_ {
    move |source| LayerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacked layers, each in its own directory named by chain ID.
#[derive(Debug, Clone)]
pub struct LayerStore {
    dir: PathBuf,
    scratch: PathBuf,
}

/// A layer being unpacked, in the scratch directory; it becomes a layer
/// only through [`LayerStore::commit`], and vanishes if dropped first.
pub struct Staged {
    dir: TempDir,
}

impl Staged {
    /// Where the layer's files go.
    pub fn diff(&self) -> PathBuf {
        self.dir.path().join("diff")
    }
}

/// An overlay mount to make for a container (the snapshotter returns it;
/// the engine mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMount {
    pub options: String,
}

/// The directories an overlay mount of an image's layers uses, as docker
/// reports them in `GraphDriver.Data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDirs {
    /// The layers below the top one, top-most first (overlay's order).
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub merged: PathBuf,
}

impl LayerStore {
    /// `dir` holds the layers; `scratch` (same filesystem) the staging
    /// directories.
    pub fn open(dir: PathBuf, scratch: PathBuf) -> Result<Self, LayerError> {
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::create_dir_all(&scratch).map_err(io_err(&scratch))?;
        Ok(LayerStore { dir, scratch })
    }

    /// The directory of the layer whose chain ID has these hex digits.
    pub fn layer_dir(&self, chain_hex: &str) -> PathBuf {
        self.dir.join(chain_hex)
    }

    pub fn exists(&self, chain_hex: &str) -> bool {
        self.layer_dir(chain_hex).join("diff").is_dir()
    }

    /// A fresh staging directory with an empty `diff/`.
    pub fn stage(&self) -> Result<Staged, LayerError> {
        let dir = tempfile::Builder::new()
            .prefix("layer-")
            .tempdir_in(&self.scratch)
            .map_err(io_err(&self.scratch))?;
        for sub in ["diff", "work", "merged"] {
            let p = dir.path().join(sub);
            fs::create_dir(&p).map_err(io_err(&p))?;
        }
        Ok(Staged { dir })
    }

    /// Makes a staged layer visible under its chain ID: everything written
    /// is flushed to disk first (one syncfs rather than an fsync per file),
    /// then the directory is renamed into place in one step. A layer left
    /// behind by an interrupted earlier attempt is replaced.
    pub fn commit(&self, staged: Staged, chain_hex: &str) -> Result<PathBuf, LayerError> {
        let target = self.layer_dir(chain_hex);
        let src = staged.dir.path().to_path_buf();
        let dir = fs::File::open(&src).map_err(io_err(&src))?;
        rustix::fs::syncfs(&dir).map_err(|e| io_err(&src)(e.into()))?;
        if target.exists() {
            self.remove(chain_hex)?;
        }
        let kept = staged.dir.keep();
        fs::rename(&kept, &target).map_err(|e| {
            let _ = fs::remove_dir_all(&kept);
            io_err(&target)(e)
        })?;
        Ok(target)
    }

    /// Deletes a layer: first renamed out of sight (atomic), then removed.
    pub fn remove(&self, chain_hex: &str) -> Result<(), LayerError> {
        let target = self.layer_dir(chain_hex);
        let doomed = self.scratch.join(format!("removing-{chain_hex}"));
        match fs::rename(&target, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(io_err(&doomed)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&target)(e)),
        }
    }

    /// The hex chain IDs of every layer directory present.
    pub fn list(&self) -> Result<Vec<String>, LayerError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }

    /// The overlay mount options for a container whose directory is
    /// `container` (holding `upper/`, `work/` and, for an image without
    /// layers, an empty `lower/`): the image's layers (bottom first in
    /// `chain_hexes`) read-only below the container's own upper.
    pub fn container_mount(&self, chain_hexes: &[String], container: &Path) -> ContainerMount {
        let mut lower: Vec<String> = chain_hexes
            .iter()
            .rev()
            .map(|c| self.layer_dir(c).join("diff").display().to_string())
            .collect();
        if lower.is_empty() {
            lower.push(container.join("lower").display().to_string());
        }
        let (upper, work) = (container.join("upper"), container.join("work"));
        ContainerMount {
            options: format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.join(":"),
                upper.display(),
                work.display()
            ),
        }
    }

    /// The overlay directories for a stack of layers given bottom first.
    pub fn image_dirs(&self, chain_hexes: &[String]) -> Option<ImageDirs> {
        let (top, rest) = chain_hexes.split_last()?;
        let top = self.layer_dir(top);
        Some(ImageDirs {
            lower: rest
                .iter()
                .rev()
                .map(|c| self.layer_dir(c).join("diff"))
                .collect(),
            upper: top.join("diff"),
            work: top.join("work"),
            merged: top.join("merged"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_layer_appears_only_on_commit() {
        let root = tempfile::tempdir().unwrap();
        let store = LayerStore::open(root.path().join("layers"), root.path().join("tmp")).unwrap();
        let staged = store.stage().unwrap();
        fs::write(staged.diff().join("f"), b"x").unwrap();
        assert!(!store.exists("abc"));
        store.commit(staged, "abc").unwrap();
        assert!(store.exists("abc"));
        assert_eq!(
            fs::read(store.layer_dir("abc").join("diff/f")).unwrap(),
            b"x"
        );
        assert_eq!(store.list().unwrap(), vec!["abc".to_string()]);
        store.remove("abc").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn dropped_stage_leaves_nothing() {
        let root = tempfile::tempdir().unwrap();
        let store = LayerStore::open(root.path().join("layers"), root.path().join("tmp")).unwrap();
        drop(store.stage().unwrap());
        assert_eq!(fs::read_dir(root.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn container_mounts_stack_layers_top_first() {
        let store = LayerStore {
            dir: "/l".into(),
            scratch: "/t".into(),
        };
        let m = store.container_mount(&["a".into(), "b".into()], Path::new("/c/1"));
        assert_eq!(
            m.options,
            "lowerdir=/l/b/diff:/l/a/diff,upperdir=/c/1/upper,workdir=/c/1/work"
        );
        // An image without layers: the container's own empty lower dir.
        let m = store.container_mount(&[], Path::new("/c/1"));
        assert_eq!(
            m.options,
            "lowerdir=/c/1/lower,upperdir=/c/1/upper,workdir=/c/1/work"
        );
    }

    #[test]
    fn image_dirs_put_the_top_layer_upper() {
        let store = LayerStore {
            dir: "/l".into(),
            scratch: "/t".into(),
        };
        let dirs = store
            .image_dirs(&["a".into(), "b".into(), "c".into()])
            .unwrap();
        assert_eq!(dirs.upper, PathBuf::from("/l/c/diff"));
        assert_eq!(
            dirs.lower,
            vec![PathBuf::from("/l/b/diff"), PathBuf::from("/l/a/diff")]
        );
        assert_eq!(dirs.work, PathBuf::from("/l/c/work"));
    }
}
