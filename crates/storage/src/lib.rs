//! The snapshotter: where unpacked layers live and which directories an
//! overlay mount of them needs. It never mounts anything for a container;
//! it hands back the paths, and the runtime mounts.
//!
//! On disk (docker's overlay2 layout, keyed by chain ID):
//!
//! ```text
//! layers/<chain-id hex>/diff     the layer's files (read-only once committed)
//! layers/<chain-id hex>/work     overlay's work dir, for when it is an upper
//! layers/<chain-id hex>/merged   mount point, for when it is an upper
//! ```

mod layers;
mod probe;

pub use layers::{ContainerMount, ImageDirs, LayerError, LayerStore, Staged};
pub use probe::{backing_filesystem, overlay_supported};
