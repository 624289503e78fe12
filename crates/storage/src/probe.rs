//! What the filesystem under the store can do.

use std::fs;
use std::path::Path;

use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

/// The name docker gives the filesystem holding `path` ("extfs", "xfs", ...).
pub fn backing_filesystem(path: &Path) -> String {
    let Ok(st) = rustix::fs::statfs(path) else {
        return "unknown".into();
    };
    // Magic numbers from linux/magic.h; names as docker's fsmagic prints them.
    #[allow(clippy::unnecessary_cast)]
    match st.f_type as u64 {
        0xEF53 => "extfs".into(),
        0x5846_5342 => "xfs".into(),
        0x9123_683E => "btrfs".into(),
        0x0102_1994 => "tmpfs".into(),
        0x794C_7630 => "overlayfs".into(),
        0x2FC1_2FC1 => "zfs".into(),
        0x6573_5546 => "fuse".into(),
        other => format!("unknown (0x{other:x})"),
    }
}

/// Checks that an overlay mount works under `scratch` by making one, as
/// docker does at start: knowing the module exists is not enough (overlay
/// on overlay, or on a filesystem without d_type, fails).
pub fn overlay_supported(scratch: &Path) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix("overlay-probe-")
        .tempdir_in(scratch)
        .map_err(|e| format!("creating a probe directory in {}: {e}", scratch.display()))?;
    let p = |n: &str| dir.path().join(n);
    for n in ["lower", "upper", "work", "merged"] {
        fs::create_dir(p(n)).map_err(|e| format!("creating {}: {e}", p(n).display()))?;
    }
    let data = format!(
        "lowerdir={},upperdir={},workdir={}",
        p("lower").display(),
        p("upper").display(),
        p("work").display()
    );
    let data = std::ffi::CString::new(data).map_err(|e| format!("overlay options: {e}"))?;
    mount(
        "overlay",
        p("merged"),
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| format!("mounting overlay: {e}"))?;
    unmount(p("merged"), UnmountFlags::DETACH)
        .map_err(|e| format!("unmounting the overlay probe: {e}"))
}
