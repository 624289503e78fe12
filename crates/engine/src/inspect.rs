//! The shape of `image inspect`: docker's JSON, field for field and in
//! docker's order (as docker 20.10 prints it, plus the `Descriptor` that
//! docker 25+ adds).

use std::collections::BTreeMap;

use serde::Serialize;

use berth_image::config::{ImageConfig, RunConfig};
use berth_image::manifest::{Descriptor, Manifest, OCI_MANIFEST};
use berth_storage::ImageDirs;

use crate::db::ImageRow;

const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageDetails {
    pub id: String,
    /// Normalised `name:tag`s (the CLI prints them familiar).
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub parent: String,
    pub comment: String,
    pub created: String,
    pub container: String,
    pub container_config: ContainerConfigView,
    pub docker_version: String,
    pub author: String,
    pub config: ContainerConfigView,
    pub architecture: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub os: String,
    pub size: u64,
    pub virtual_size: u64,
    pub graph_driver: GraphDriver,
    #[serde(rename = "RootFS")]
    pub root_fs: RootFsView,
    pub metadata: Metadata,
    pub descriptor: Descriptor,
}

/// docker's container config struct, every field present as docker prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfigView {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    pub image: String,
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    pub working_dir: String,
    pub entrypoint: Option<Vec<String>>,
    pub on_build: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
}

impl From<&RunConfig> for ContainerConfigView {
    fn from(c: &RunConfig) -> Self {
        ContainerConfigView {
            hostname: String::new(),
            domainname: String::new(),
            user: c.user.clone(),
            attach_stdin: false,
            attach_stdout: false,
            attach_stderr: false,
            exposed_ports: c.exposed_ports.clone(),
            tty: false,
            open_stdin: false,
            stdin_once: false,
            env: c.env.clone(),
            cmd: c.cmd.clone(),
            healthcheck: c.healthcheck.clone(),
            args_escaped: c.args_escaped,
            image: String::new(),
            volumes: c.volumes.clone(),
            working_dir: c.working_dir.clone(),
            entrypoint: c.entrypoint.clone(),
            on_build: c.on_build.clone(),
            labels: c.labels.clone(),
            stop_signal: c.stop_signal.clone(),
            shell: c.shell.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GraphDriver {
    pub data: BTreeMap<String, String>,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootFsView {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metadata {
    pub last_tag_time: String,
}

pub(crate) fn build_details(
    row: &ImageRow,
    config: &ImageConfig,
    tags: &[(String, String)],
    dirs: Option<ImageDirs>,
    manifest: &Manifest,
    manifest_size: u64,
) -> ImageDetails {
    let mut data = BTreeMap::new();
    if let Some(d) = dirs {
        if !d.lower.is_empty() {
            let lower: Vec<String> = d.lower.iter().map(|p| p.display().to_string()).collect();
            data.insert("LowerDir".into(), lower.join(":"));
        }
        data.insert("MergedDir".into(), d.merged.display().to_string());
        data.insert("UpperDir".into(), d.upper.display().to_string());
        data.insert("WorkDir".into(), d.work.display().to_string());
    }
    ImageDetails {
        id: row.id.to_string(),
        repo_tags: tags.iter().map(|(n, _)| n.clone()).collect(),
        repo_digests: Vec::new(),
        parent: String::new(),
        comment: config.comment.clone().unwrap_or_default(),
        created: config.created.clone().unwrap_or_else(|| ZERO_TIME.into()),
        container: config.container.clone().unwrap_or_default(),
        container_config: config
            .container_config
            .as_ref()
            .unwrap_or(&RunConfig::default())
            .into(),
        docker_version: config.docker_version.clone().unwrap_or_default(),
        author: config.author.clone(),
        config: (&config.config).into(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
        os: config.os.clone(),
        size: row.size,
        virtual_size: row.size,
        graph_driver: GraphDriver {
            data,
            name: "overlay2".into(),
        },
        root_fs: RootFsView {
            kind: config.rootfs.kind.clone(),
            layers: config
                .rootfs
                .diff_ids
                .iter()
                .map(|d| d.to_string())
                .collect(),
        },
        metadata: Metadata {
            last_tag_time: tags
                .iter()
                .map(|(_, t)| t.clone())
                .max()
                .unwrap_or_else(|| ZERO_TIME.into()),
        },
        descriptor: Descriptor {
            media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| OCI_MANIFEST.into()),
            digest: row.manifest.clone(),
            size: manifest_size,
            platform: None,
            annotations: BTreeMap::new(),
        },
    }
}
