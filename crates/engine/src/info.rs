//! `info`: how this engine is set up, read from the machine each time.

use std::fs;
use std::path::Path;

use serde::Serialize;

use crate::{Engine, EngineError};

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
    /// "v1", "v2" or "hybrid" (v1 controllers, plus cgroup2 without
    /// controllers at /sys/fs/cgroup/unified).
    pub cgroup_layout: String,
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
        let layout = berth_runtime::cgroups::Layout::detect();
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
            cgroup_layout: layout.name().into(),
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
