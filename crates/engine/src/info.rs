//! `info`: how this engine is set up, read from the machine each time.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::{Engine, EngineError};

/// How the cgroup filesystems are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupLayout {
    /// cgroup v1 controllers only.
    V1,
    /// The unified hierarchy only.
    V2,
    /// v1 controllers, plus cgroup2 (without controllers) at
    /// /sys/fs/cgroup/unified, as systemd's hybrid mode mounts it.
    Hybrid,
}

impl CgroupLayout {
    pub fn detect() -> CgroupLayout {
        const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
        let is_cgroup2 = |p: &str| {
            #[allow(clippy::unnecessary_cast)]
            rustix::fs::statfs(p).is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC)
        };
        if is_cgroup2("/sys/fs/cgroup") {
            CgroupLayout::V2
        } else if is_cgroup2("/sys/fs/cgroup/unified") {
            CgroupLayout::Hybrid
        } else {
            CgroupLayout::V1
        }
    }

    /// docker's `CgroupVersion`: the version whose controllers containers get.
    pub fn version(self) -> &'static str {
        match self {
            CgroupLayout::V2 => "2",
            CgroupLayout::V1 | CgroupLayout::Hybrid => "1",
        }
    }
}

/// docker's `info` fields (names as docker's JSON, so `--format
/// '{{.Driver}}'` works the same), plus berth's own where docker has none.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Info {
    pub images: u64,
    pub driver: String,
    pub driver_status: Vec<[String; 2]>,
    pub backing_filesystem: String,
    pub overlay_supported: bool,
    /// Why an overlay mount failed here, when it did.
    pub overlay_error: Option<String>,
    pub layers: u64,
    pub layers_size: u64,
    pub cgroup_driver: String,
    pub cgroup_version: String,
    pub cgroup_layout: CgroupLayout,
    pub kernel_version: String,
    pub operating_system: String,
    #[serde(rename = "OSType")]
    pub os_type: String,
    pub architecture: String,
    #[serde(rename = "NCPU")]
    pub ncpu: usize,
    pub mem_total: u64,
    pub docker_root_dir: String,
    pub name: String,
    pub server_version: String,
    pub index_server_address: String,
    pub default_registry: String,
}

impl Engine {
    pub fn info(&self) -> Result<Info, EngineError> {
        let (images, layers, layers_size) = self.db.totals()?;
        let backing = berth_storage::backing_filesystem(&self.root);
        let overlay = berth_storage::overlay_supported(&self.root);
        let uname = rustix::system::uname();
        let layout = CgroupLayout::detect();
        Ok(Info {
            images,
            driver: "overlay2".into(),
            driver_status: vec![
                ["Backing Filesystem".into(), backing.clone()],
                ["Overlay Supported".into(), overlay.is_ok().to_string()],
            ],
            backing_filesystem: backing,
            overlay_supported: overlay.is_ok(),
            overlay_error: overlay.err(),
            layers,
            layers_size,
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: layout.version().into(),
            cgroup_layout: layout,
            kernel_version: uname.release().to_string_lossy().into_owned(),
            operating_system: os_name(Path::new("/etc/os-release")),
            os_type: "linux".into(),
            architecture: uname.machine().to_string_lossy().into_owned(),
            ncpu: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total: mem_total(),
            docker_root_dir: self.root.display().to_string(),
            name: uname.nodename().to_string_lossy().into_owned(),
            server_version: env!("CARGO_PKG_VERSION").into(),
            index_server_address: "https://index.docker.io/v1/".into(),
            default_registry: "docker.io".into(),
        })
    }
}

fn os_name(os_release: &Path) -> String {
    let text = fs::read_to_string(os_release).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn mem_total() -> u64 {
    let text = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
