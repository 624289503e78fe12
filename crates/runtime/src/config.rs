//! The OCI spec of a bundle, validated once into the config the create
//! steps use. Everything that can be wrong with a spec is found here,
//! before any process exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rustix::process::Resource;
use rustix::thread::CapabilitySet;

use crate::cgroups::{DeviceRule, Resources, Throttle};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Load {
        path: PathBuf,
        source: oci_spec::OciSpecError,
    },
    #[error("config.json: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Mount,
    Uts,
    Ipc,
    Pid,
    Network,
    User,
    Cgroup,
    Time,
}

impl NsKind {
    pub fn clone_flag(self) -> u64 {
        use berth_sys::clone_flags as f;
        match self {
            NsKind::Mount => f::NEWNS,
            NsKind::Uts => f::NEWUTS,
            NsKind::Ipc => f::NEWIPC,
            NsKind::Pid => f::NEWPID,
            NsKind::Network => f::NEWNET,
            NsKind::User => f::NEWUSER,
            NsKind::Cgroup => f::NEWCGROUP,
            NsKind::Time => f::NEWTIME,
        }
    }

    /// The name under /proc/<pid>/ns/.
    pub fn proc_name(self) -> &'static str {
        match self {
            NsKind::Mount => "mnt",
            NsKind::Uts => "uts",
            NsKind::Ipc => "ipc",
            NsKind::Pid => "pid",
            NsKind::Network => "net",
            NsKind::User => "user",
            NsKind::Cgroup => "cgroup",
            NsKind::Time => "time",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Namespace {
    pub kind: NsKind,
    /// Join this existing namespace instead of making a new one.
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct IdMap {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

#[derive(Debug, Clone)]
pub struct Mount {
    pub destination: PathBuf,
    pub kind: String,
    pub source: Option<PathBuf>,
    pub options: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub path: PathBuf,
    /// 'c', 'b', 'u' or 'p'.
    pub kind: char,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, Clone)]
pub struct Caps {
    pub bounding: CapabilitySet,
    pub effective: CapabilitySet,
    pub inheritable: CapabilitySet,
    pub permitted: CapabilitySet,
    pub ambient: CapabilitySet,
}

#[derive(Debug, Clone)]
pub struct Rlimit {
    pub name: String,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone)]
pub struct Process {
    pub terminal: bool,
    /// The terminal's size at start, rows then columns (`consoleSize`).
    pub console_size: Option<(u16, u16)>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: Caps,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub oom_score_adj: Option<i32>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub timeout: Option<i64>,
}

#[derive(Debug, Clone, Default)]
pub struct Hooks {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

impl Process {
    /// A process as the OCI spec gives it (config.json's `process`, or
    /// `exec --process`).
    pub fn from_oci(p: &oci_spec::runtime::Process) -> Result<Process, ConfigError> {
        let args = p.args().clone().unwrap_or_default();
        if args.is_empty() {
            return Err(invalid("process.args must name a program"));
        }
        if !p.cwd().is_absolute() {
            return Err(invalid(format!(
                "process.cwd {} is not absolute",
                p.cwd().display()
            )));
        }
        let caps = match p.capabilities() {
            Some(c) => Caps {
                bounding: cap_set(c.bounding())?,
                effective: cap_set(c.effective())?,
                inheritable: cap_set(c.inheritable())?,
                permitted: cap_set(c.permitted())?,
                ambient: cap_set(c.ambient())?,
            },
            None => Caps {
                bounding: CapabilitySet::empty(),
                effective: CapabilitySet::empty(),
                inheritable: CapabilitySet::empty(),
                permitted: CapabilitySet::empty(),
                ambient: CapabilitySet::empty(),
            },
        };
        let mut rlimits = Vec::new();
        for r in p.rlimits().iter().flatten() {
            let name = enum_name(&r.typ());
            rlimits.push(Rlimit {
                resource: rlimit_resource(&name)
                    .ok_or_else(|| invalid(format!("unknown rlimit {name}")))?,
                name,
                soft: r.soft(),
                hard: r.hard(),
            });
        }
        Ok(Process {
            terminal: p.terminal().unwrap_or(false),
            console_size: p
                .console_size()
                .map(|b| (clamp_u16(b.height()), clamp_u16(b.width()))),
            args,
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            uid: p.user().uid(),
            gid: p.user().gid(),
            additional_gids: p.user().additional_gids().clone().unwrap_or_default(),
            umask: p.user().umask(),
            caps,
            rlimits,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
        })
    }
}

/// A validated container config.
#[derive(Debug, Clone)]
pub struct Config {
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub rootfs_readonly: bool,
    pub process: Process,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub mounts: Vec<Mount>,
    pub namespaces: Vec<Namespace>,
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    pub devices: Vec<Device>,
    pub resources: Resources,
    pub cgroups_path: Option<String>,
    pub sysctl: BTreeMap<String, String>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub rootfs_propagation: Option<String>,
    pub hooks: Hooks,
    pub annotations: BTreeMap<String, String>,
    pub seccomp: Option<crate::seccomp::Seccomp>,
    /// The personality(2) domain: 0 (PER_LINUX) or 8 (PER_LINUX32).
    pub personality: Option<u32>,
    /// Clock offsets of a new time namespace, as /proc/self/timens_offsets
    /// lines: (clock, seconds, nanoseconds).
    pub time_offsets: Vec<(String, i64, u32)>,
}

impl Config {
    /// Loads `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Config, ConfigError> {
        let path = bundle.join("config.json");
        let spec = Spec::load(&path).map_err(|source| ConfigError::Load { path, source })?;
        Config::from_spec(bundle, &spec)
    }

    pub fn from_spec(bundle: &Path, spec: &Spec) -> Result<Config, ConfigError> {
        let root = spec
            .root()
            .as_ref()
            .ok_or_else(|| invalid("root is missing"))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(invalid(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )));
        }
        let p = spec
            .process()
            .as_ref()
            .ok_or_else(|| invalid("process is missing"))?;
        let process = Process::from_oci(p)?;

        let mut mounts = Vec::new();
        for m in spec.mounts().iter().flatten() {
            if !m.destination().is_absolute() {
                return Err(invalid(format!(
                    "mount destination {} is not absolute",
                    m.destination().display()
                )));
            }
            let options = m.options().clone().unwrap_or_default();
            let kind = m.typ().clone().unwrap_or_else(|| {
                if options.iter().any(|o| o == "bind" || o == "rbind") {
                    "bind".into()
                } else {
                    "none".into()
                }
            });
            mounts.push(Mount {
                destination: m.destination().clone(),
                kind,
                source: m.source().clone(),
                options,
            });
        }

        let linux = spec.linux().as_ref();
        let mut namespaces = Vec::new();
        for ns in linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
        {
            let kind = match ns.typ() {
                LinuxNamespaceType::Mount => NsKind::Mount,
                LinuxNamespaceType::Uts => NsKind::Uts,
                LinuxNamespaceType::Ipc => NsKind::Ipc,
                LinuxNamespaceType::Pid => NsKind::Pid,
                LinuxNamespaceType::Network => NsKind::Network,
                LinuxNamespaceType::User => NsKind::User,
                LinuxNamespaceType::Cgroup => NsKind::Cgroup,
                LinuxNamespaceType::Time => NsKind::Time,
            };
            if namespaces.iter().any(|n: &Namespace| n.kind == kind) {
                return Err(invalid(format!(
                    "namespace {} is listed twice",
                    kind.proc_name()
                )));
            }
            namespaces.push(Namespace {
                kind,
                path: ns.path().clone(),
            });
        }
        let has = |k: NsKind| namespaces.iter().any(|n| n.kind == k);
        if !has(NsKind::Mount) {
            return Err(invalid(
                "berth-runtime needs a mount namespace (linux.namespaces has no \"mount\")",
            ));
        }
        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        if hostname.is_some() && !has(NsKind::Uts) {
            return Err(invalid("hostname is set but there is no new UTS namespace"));
        }
        let maps = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdMap> {
            m.into_iter()
                .flatten()
                .map(|m| IdMap {
                    container: m.container_id(),
                    host: m.host_id(),
                    size: m.size(),
                })
                .collect()
        };
        let uid_mappings = maps(linux.and_then(|l| l.uid_mappings().as_ref()));
        let gid_mappings = maps(linux.and_then(|l| l.gid_mappings().as_ref()));
        if has(NsKind::User)
            && namespaces
                .iter()
                .any(|n| n.kind == NsKind::User && n.path.is_none())
            && (uid_mappings.is_empty() || gid_mappings.is_empty())
        {
            return Err(invalid(
                "a new user namespace needs linux.uidMappings and linux.gidMappings",
            ));
        }

        let mut devices = Vec::new();
        for d in linux
            .and_then(|l| l.devices().as_ref())
            .into_iter()
            .flatten()
        {
            devices.push(Device {
                path: d.path().clone(),
                kind: device_kind(&enum_name(&d.typ())),
                major: u32::try_from(d.major())
                    .map_err(|_| invalid("device major out of range"))?,
                minor: u32::try_from(d.minor())
                    .map_err(|_| invalid("device minor out of range"))?,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            });
        }

        let mut resources = linux
            .and_then(|l| l.resources().as_ref())
            .map(resources)
            .unwrap_or_default();
        if !resources.devices.is_empty() {
            // As runc: the devices every container gets, and those the
            // config lists, stay usable whatever the rules before them deny.
            let allow = |kind: char, major: Option<i64>, minor: Option<i64>| DeviceRule {
                allow: true,
                kind,
                major,
                minor,
                access: "rwm".into(),
            };
            for (major, minor) in [
                (1, Some(3)),
                (1, Some(5)),
                (1, Some(7)),
                (1, Some(8)),
                (1, Some(9)),
                (5, Some(0)),
                (5, Some(1)),
                (5, Some(2)),
                (136, None),
            ] {
                resources.devices.push(allow('c', Some(major), minor));
            }
            for d in &devices {
                resources.devices.push(allow(
                    d.kind,
                    Some(i64::from(d.major)),
                    Some(i64::from(d.minor)),
                ));
            }
        }
        let hooks = spec.hooks().as_ref().map(hooks).unwrap_or_default();
        Ok(Config {
            bundle: bundle.to_path_buf(),
            rootfs,
            rootfs_readonly: root.readonly().unwrap_or(false),
            process,
            hostname,
            domainname: spec.domainname().clone().filter(|d| !d.is_empty()),
            mounts,
            namespaces,
            uid_mappings,
            gid_mappings,
            devices,
            resources,
            cgroups_path: linux
                .and_then(|l| l.cgroups_path().as_ref())
                .map(|p| p.display().to_string()),
            sysctl: linux
                .and_then(|l| l.sysctl().clone())
                .unwrap_or_default()
                .into_iter()
                .collect(),
            masked_paths: linux
                .and_then(|l| l.masked_paths().clone())
                .unwrap_or_default(),
            readonly_paths: linux
                .and_then(|l| l.readonly_paths().clone())
                .unwrap_or_default(),
            rootfs_propagation: linux.and_then(|l| l.rootfs_propagation().clone()),
            hooks,
            annotations: spec
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            time_offsets: {
                let mut offsets: Vec<(String, i64, u32)> = linux
                    .and_then(|l| l.time_offsets().clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(clock, o)| (clock, o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
                    .collect();
                offsets.sort();
                if let Some((clock, _, _)) = offsets
                    .iter()
                    .find(|(c, _, _)| c != "monotonic" && c != "boottime")
                {
                    return Err(invalid(format!(
                        "timeOffsets: unknown clock {clock:?} (monotonic or boottime)"
                    )));
                }
                offsets
            },
            personality: match linux.and_then(|l| l.personality().as_ref()) {
                None => None,
                Some(p) => Some(match enum_name(&p.domain()).as_str() {
                    "LINUX" => 0,
                    "LINUX32" => 8,
                    other => return Err(invalid(format!("unknown personality domain {other:?}"))),
                }),
            },
            seccomp: match linux.and_then(|l| l.seccomp().as_ref()) {
                // Through JSON: the OCI section and berth's mirror of it
                // share every field name.
                Some(s) => Some(
                    serde_json::to_value(s)
                        .and_then(serde_json::from_value)
                        .map_err(|e| invalid(format!("linux.seccomp: {e}")))?,
                ),
                None => None,
            },
        })
    }

    pub fn namespace(&self, kind: NsKind) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.kind == kind)
    }
}

/// The serde name of a spec enum value ("CAP_CHOWN", "RLIMIT_NOFILE", "c").
fn enum_name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

fn cap_set(caps: &Option<oci_spec::runtime::Capabilities>) -> Result<CapabilitySet, ConfigError> {
    let mut set = CapabilitySet::empty();
    for c in caps.iter().flatten() {
        let name = enum_name(c);
        let flag = name
            .strip_prefix("CAP_")
            .and_then(CapabilitySet::from_name)
            .ok_or_else(|| invalid(format!("unknown capability {name}")))?;
        set |= flag;
    }
    Ok(set)
}

fn rlimit_resource(name: &str) -> Option<Resource> {
    Some(match name {
        "RLIMIT_CPU" => Resource::Cpu,
        "RLIMIT_FSIZE" => Resource::Fsize,
        "RLIMIT_DATA" => Resource::Data,
        "RLIMIT_STACK" => Resource::Stack,
        "RLIMIT_CORE" => Resource::Core,
        "RLIMIT_RSS" => Resource::Rss,
        "RLIMIT_NPROC" => Resource::Nproc,
        "RLIMIT_NOFILE" => Resource::Nofile,
        "RLIMIT_MEMLOCK" => Resource::Memlock,
        "RLIMIT_AS" => Resource::As,
        "RLIMIT_LOCKS" => Resource::Locks,
        "RLIMIT_SIGPENDING" => Resource::Sigpending,
        "RLIMIT_MSGQUEUE" => Resource::Msgqueue,
        "RLIMIT_NICE" => Resource::Nice,
        "RLIMIT_RTPRIO" => Resource::Rtprio,
        "RLIMIT_RTTIME" => Resource::Rttime,
        _ => return None,
    })
}

fn device_kind(name: &str) -> char {
    name.chars().next().unwrap_or('c')
}

fn resources(r: &oci_spec::runtime::LinuxResources) -> Resources {
    let throttles = |list: &Option<Vec<oci_spec::runtime::LinuxThrottleDevice>>| -> Vec<Throttle> {
        list.iter()
            .flatten()
            .map(|t| Throttle {
                major: t.major(),
                minor: t.minor(),
                rate: t.rate(),
            })
            .collect()
    };
    let mem = r.memory().as_ref();
    let cpu = r.cpu().as_ref();
    let blkio = r.block_io().as_ref();
    Resources {
        memory_limit: mem.and_then(|m| m.limit()),
        memory_reservation: mem.and_then(|m| m.reservation()),
        memory_swap: mem.and_then(|m| m.swap()),
        memory_swappiness: mem.and_then(|m| m.swappiness()),
        cpu_shares: cpu.and_then(|c| c.shares()),
        cpu_quota: cpu.and_then(|c| c.quota()),
        cpu_period: cpu.and_then(|c| c.period()),
        cpuset_cpus: cpu.and_then(|c| c.cpus().clone()),
        cpuset_mems: cpu.and_then(|c| c.mems().clone()),
        pids_limit: r.pids().as_ref().map(|p| p.limit()),
        blkio_weight: blkio.and_then(|b| b.weight()),
        throttle_read_bps: throttles(blkio.map_or(&None, |b| b.throttle_read_bps_device())),
        throttle_write_bps: throttles(blkio.map_or(&None, |b| b.throttle_write_bps_device())),
        throttle_read_iops: throttles(blkio.map_or(&None, |b| b.throttle_read_iops_device())),
        throttle_write_iops: throttles(blkio.map_or(&None, |b| b.throttle_write_iops_device())),
        devices: r
            .devices()
            .iter()
            .flatten()
            .map(|d| DeviceRule {
                allow: d.allow(),
                kind: d.typ().map_or('a', |t| device_kind(&enum_name(&t))),
                major: d.major(),
                minor: d.minor(),
                access: d.access().clone().unwrap_or_else(|| "rwm".into()),
            })
            .collect(),
    }
}

fn hooks(h: &oci_spec::runtime::Hooks) -> Hooks {
    let list = |l: &Option<Vec<oci_spec::runtime::Hook>>| -> Vec<Hook> {
        l.iter()
            .flatten()
            .map(|h| Hook {
                path: h.path().clone(),
                args: h.args().clone().unwrap_or_default(),
                env: h.env().clone().unwrap_or_default(),
                timeout: h.timeout(),
            })
            .collect()
    };
    #[allow(deprecated)]
    Hooks {
        prestart: list(h.prestart()),
        create_runtime: list(h.create_runtime()),
        create_container: list(h.create_container()),
        start_container: list(h.start_container()),
        poststart: list(h.poststart()),
        poststop: list(h.poststop()),
    }
}

/// A terminal dimension: the kernel's winsize holds 16 bits.
fn clamp_u16(n: u64) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}
