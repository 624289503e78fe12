//! Image manifests and indexes: the OCI types, which docker's schema 2
//! manifest and manifest list share field for field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The annotation that names an image in an OCI layout's index.json.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's (and docker 25's) annotation carrying the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {digest} is not valid JSON: {source}")]
    Parse {
        digest: Digest,
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    /// A descriptor without platform or annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An OCI manifest for a config and its layers.
    pub fn oci(config: Descriptor, layers: Vec<Descriptor>) -> Self {
        Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config,
            layers,
            annotations: BTreeMap::new(),
        }
    }

    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            digest: digest.clone(),
            source,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serialises")
    }
}

impl Index {
    pub fn parse(bytes: &[u8], digest: &Digest) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|source| ManifestError::Parse {
            digest: digest.clone(),
            source,
        })
    }
}

/// Whether a descriptor points at an index (manifest list) rather than
/// at one image's manifest.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// The platform of this machine as OCI spells it (GOARCH names).
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" => ("ppc64le", None),
        other => (other, None),
    };
    Platform {
        architecture: architecture.into(),
        os: "linux".into(),
        variant: variant.map(String::from),
    }
}
