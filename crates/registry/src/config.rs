//! Where berth finds registries, and how it trusts them: docker's
//! daemon.json keys `registry-mirrors` and `insecure-registries` in berth's
//! config file, and per-registry CA certificates in docker's certs.d layout
//! (`certs.d/HOST[:PORT]/*.crt`) beside that file.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

use crate::RegistryError;

/// The config file read when none is named.
pub const DEFAULT_CONFIG: &str = "/etc/berth/config.json";

/// Docker Hub's name in references, and the host that serves it.
const HUB: &str = "docker.io";
const HUB_ENDPOINT: &str = "registry-1.docker.io";

/// Debian's bundle of the system's trusted CAs.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Default, Deserialize)]
struct Settings {
    #[serde(rename = "registry-mirrors", default)]
    mirrors: Vec<String>,
    #[serde(rename = "insecure-registries", default)]
    insecure: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    mirrors: Vec<String>,
    insecure: Vec<String>,
    certs_dir: PathBuf,
}

/// One place to ask for a registry's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]`, as errors name it.
    pub host: String,
    /// URL schemes to try, in order (`https` first; `http` only for
    /// loopback, insecure registries and `http://` mirrors).
    pub schemes: Vec<&'static str>,
    /// Skip certificate checks (insecure registries, as docker does).
    pub skip_verify: bool,
    pub mirror: bool,
}

impl RegistryConfig {
    /// Reads `path`; a missing file means no mirrors and no insecure
    /// registries. CA certificates are looked up in `certs.d/` beside it.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let settings: Settings = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Config {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Settings::default(),
            Err(source) => {
                return Err(RegistryError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut mirrors = Vec::new();
        for m in settings.mirrors {
            let host = m
                .strip_prefix("https://")
                .or_else(|| m.strip_prefix("http://"))
                .ok_or_else(|| RegistryError::Config {
                    path: path.to_path_buf(),
                    reason: format!("registry mirror {m:?} must start with https:// or http://"),
                })?;
            if host.trim_end_matches('/').contains('/') {
                return Err(RegistryError::Config {
                    path: path.to_path_buf(),
                    reason: format!("registry mirror {m:?} must not have a path"),
                });
            }
            mirrors.push(m.trim_end_matches('/').to_string());
        }
        Ok(RegistryConfig {
            mirrors,
            insecure: settings.insecure,
            certs_dir: path.parent().unwrap_or(Path::new("/")).join("certs.d"),
        })
    }

    /// Where to fetch from for a reference's registry, in order: Docker
    /// Hub's mirrors first, then the registry itself.
    pub fn pull_endpoints(&self, domain: &str) -> Vec<Endpoint> {
        let mut out = Vec::new();
        if domain == HUB {
            for m in &self.mirrors {
                let (scheme, host) = m.split_once("://").expect("checked on load");
                let scheme = if scheme == "http" { "http" } else { "https" };
                out.push(Endpoint {
                    host: host.to_string(),
                    schemes: vec![scheme],
                    skip_verify: self.is_insecure(host),
                    mirror: true,
                });
            }
        }
        out.push(self.endpoint(domain));
        out
    }

    /// The registry itself (pushes and logins never go to a mirror).
    pub fn endpoint(&self, domain: &str) -> Endpoint {
        let host = if domain == HUB { HUB_ENDPOINT } else { domain };
        let insecure = self.is_insecure(host);
        let plain = insecure || is_loopback(host);
        Endpoint {
            host: host.to_string(),
            schemes: if plain {
                vec!["https", "http"]
            } else {
                vec!["https"]
            },
            skip_verify: insecure,
            mirror: false,
        }
    }

    /// An entry of `insecure-registries` names the host (with or without
    /// its port) or an IPv4 network holding it (`10.0.0.0/8`).
    fn is_insecure(&self, host: &str) -> bool {
        let bare = strip_port(host);
        self.insecure.iter().any(|entry| {
            entry == host
                || entry == bare
                || match (entry.split_once('/'), bare.parse::<Ipv4Addr>()) {
                    (Some((net, bits)), Ok(ip)) => in_network(ip, net, bits),
                    _ => false,
                }
        })
    }

    /// Where a registry's own CA certificates go (docker's layout).
    pub fn certs_dir(&self, host: &str) -> PathBuf {
        self.certs_dir.join(host)
    }

    /// An HTTP agent for `endpoint`: the system's CAs plus the registry's
    /// own from certs.d, or no verification for an insecure registry.
    pub fn agent(&self, endpoint: &Endpoint) -> Result<Agent, RegistryError> {
        let tls = if endpoint.skip_verify {
            TlsConfig::builder().disable_verification(true).build()
        } else {
            let mut roots = read_certs(Path::new(SYSTEM_CAS), true)?;
            let dir = self.certs_dir(&endpoint.host);
            if let Ok(entries) = fs::read_dir(&dir) {
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "crt") {
                        roots.extend(read_certs(&path, false)?);
                    }
                }
            }
            // A machine without a CA bundle (no ca-certificates package)
            // still reaches public registries through Mozilla's roots.
            let roots = if roots.is_empty() {
                RootCerts::WebPki
            } else {
                RootCerts::Specific(Arc::new(roots))
            };
            TlsConfig::builder().root_certs(roots).build()
        };
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_recv_body(None)
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_idle_connections_per_host(16)
            .tls_config(tls)
            .build();
        Ok(config.into())
    }
}

/// The certificates of a PEM file (`optional`: a missing file is none).
fn read_certs(path: &Path, optional: bool) -> Result<Vec<Certificate<'static>>, RegistryError> {
    let pem = match fs::read(path) {
        Ok(pem) => pem,
        Err(e) if optional && e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RegistryError::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::Config {
                    path: path.to_path_buf(),
                    reason: format!("not a PEM certificate file: {e}"),
                })
            }
        }
    }
    Ok(out)
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':') => h,
        _ => host,
    }
}

/// Docker trusts plain HTTP to registries on the machine itself.
fn is_loopback(host: &str) -> bool {
    let bare = strip_port(host);
    bare == "localhost" || bare.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

fn in_network(ip: Ipv4Addr, net: &str, bits: &str) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<Ipv4Addr>(), bits.parse::<u32>()) else {
        return false;
    };
    if bits > 32 {
        return false;
    }
    let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> RegistryConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, json).unwrap();
        RegistryConfig::load(&path).unwrap()
    }

    #[test]
    fn hub_goes_to_its_mirrors_first() {
        let c =
            config(r#"{"registry-mirrors": ["http://127.0.0.1:5000/", "https://mirror.example"]}"#);
        let e = c.pull_endpoints("docker.io");
        let hosts: Vec<_> = e
            .iter()
            .map(|e| (e.host.as_str(), e.schemes.clone()))
            .collect();
        assert_eq!(
            hosts,
            vec![
                ("127.0.0.1:5000", vec!["http"]),
                ("mirror.example", vec!["https"]),
                ("registry-1.docker.io", vec!["https"]),
            ]
        );
        assert_eq!(
            c.pull_endpoints("quay.io").len(),
            1,
            "mirrors are for Docker Hub only"
        );
    }

    #[test]
    fn plain_http_only_for_loopback_and_insecure_registries() {
        let c = config(r#"{"insecure-registries": ["reg.lan:5000", "10.0.0.0/8"]}"#);
        assert_eq!(c.endpoint("localhost:5000").schemes, ["https", "http"]);
        assert_eq!(c.endpoint("127.0.0.1:5000").schemes, ["https", "http"]);
        assert_eq!(c.endpoint("reg.lan:5000").schemes, ["https", "http"]);
        assert!(c.endpoint("reg.lan:5000").skip_verify);
        assert_eq!(c.endpoint("10.1.2.3:443").schemes, ["https", "http"]);
        assert_eq!(c.endpoint("11.1.2.3").schemes, ["https"]);
        assert_eq!(c.endpoint("quay.io").schemes, ["https"]);
        assert!(!c.endpoint("127.0.0.1:5000").skip_verify);
    }

    #[test]
    fn bad_config_is_one_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, r#"{"registry-mirrors": ["mirror.example"]}"#).unwrap();
        let e = RegistryConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("must start with https://"), "{e}");
        fs::write(&path, "{").unwrap();
        assert!(RegistryConfig::load(&path).is_err());
        assert!(RegistryConfig::load(&dir.path().join("none.json")).is_ok());
    }
}
