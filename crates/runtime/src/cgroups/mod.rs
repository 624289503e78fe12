//! cgroups: v1, v2 and the hybrid layout (v1 controllers plus cgroup2 at
//! /sys/fs/cgroup/unified), found at run time.
//!
//! A container's cgroup is `<mount>/<path>` in every hierarchy it uses;
//! berth's own containers live under `berth/`. Nothing outside the
//! container's own path is created, written or removed, except that v1's
//! cpuset values are copied down into berth's own parents (the kernel
//! refuses tasks in a cpuset with none).
//!
//! The file writers take the directories they write to, so unit tests
//! point them at temporary directories.

pub mod bpf;
pub mod v1;
pub mod v2;

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The resource limits of a container, as the cgroup files want them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub memory_limit: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// memory + swap (OCI's `memory.swap`, docker's `--memory-swap`).
    pub memory_swap: Option<i64>,
    pub memory_swappiness: Option<u64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
    pub throttle_read_bps: Vec<Throttle>,
    pub throttle_write_bps: Vec<Throttle>,
    pub throttle_read_iops: Vec<Throttle>,
    pub throttle_write_iops: Vec<Throttle>,
    /// Device rules in order (v1's devices controller).
    pub devices: Vec<DeviceRule>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Throttle {
    pub major: i64,
    pub minor: i64,
    pub rate: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub kind: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl DeviceRule {
    /// The rule as `devices.allow` / `devices.deny` take it: `c 1:3 rwm`.
    pub fn line(&self) -> String {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        if self.kind == 'a' {
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup file {path}: writing {value:?}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cgroup {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cgroup {path}: the kernel has no {file} here, so {what} cannot be set")]
    Unsupported {
        path: PathBuf,
        file: &'static str,
        what: &'static str,
    },
    #[error("cgroup path {0:?} must not contain '..'")]
    BadPath(String),
}

pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    fs::write(&path, value).map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

/// How this machine mounts cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    V1 {
        root: PathBuf,
    },
    V2 {
        root: PathBuf,
    },
    /// v1 controllers under `root`, cgroup2 (no controllers) at `root/unified`.
    Hybrid {
        root: PathBuf,
    },
}

impl Layout {
    pub fn detect() -> Layout {
        const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
        let is_cgroup2 = |p: &str| {
            #[allow(clippy::unnecessary_cast)]
            rustix::fs::statfs(p).is_ok_and(|s| s.f_type as u64 == CGROUP2_SUPER_MAGIC)
        };
        let root = PathBuf::from("/sys/fs/cgroup");
        if is_cgroup2("/sys/fs/cgroup") {
            Layout::V2 { root }
        } else if is_cgroup2("/sys/fs/cgroup/unified") {
            Layout::Hybrid { root }
        } else {
            Layout::V1 { root }
        }
    }

    /// "v1", "v2" or "hybrid".
    pub fn name(&self) -> &'static str {
        match self {
            Layout::V1 { .. } => "v1",
            Layout::V2 { .. } => "v2",
            Layout::Hybrid { .. } => "hybrid",
        }
    }

    /// docker's `CgroupVersion`: the version whose controllers containers get.
    pub fn version(&self) -> &'static str {
        match self {
            Layout::V2 { .. } => "2",
            Layout::V1 { .. } | Layout::Hybrid { .. } => "1",
        }
    }
}

/// One container's cgroup, in whichever hierarchies this machine has.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: Layout,
    /// Relative to each hierarchy's root, e.g. `berth/<id>`.
    path: PathBuf,
}

impl Cgroup {
    /// `path` as OCI's `cgroupsPath` gives it (leading `/` optional).
    pub fn new(layout: Layout, path: &str) -> Result<Cgroup, CgroupError> {
        let rel = path.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") || rel.is_empty() {
            return Err(CgroupError::BadPath(path.to_string()));
        }
        Ok(Cgroup {
            layout,
            path: PathBuf::from(rel),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every directory of this cgroup, one per hierarchy.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.v1_dirs().chain(self.cgroup2_dir()).collect()
    }

    /// Its directories in the v1 hierarchies, one per controller.
    fn v1_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        let root = match &self.layout {
            Layout::V1 { root } | Layout::Hybrid { root } => Some(root),
            Layout::V2 { .. } => None,
        };
        root.into_iter().flat_map(move |root| {
            v1::CONTROLLERS
                .iter()
                .map(move |c| root.join(c).join(&self.path))
        })
    }

    /// Its directory in the cgroup2 hierarchy, if the machine has one.
    fn cgroup2_dir(&self) -> Option<PathBuf> {
        match &self.layout {
            Layout::V2 { root } => Some(root.join(&self.path)),
            Layout::Hybrid { root } => Some(root.join("unified").join(&self.path)),
            Layout::V1 { .. } => None,
        }
    }

    /// Creates the cgroup and applies `resources`.
    pub fn create(&self, resources: &Resources) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => {
                v2::enable_controllers(root, &self.path)?;
                mkdir(&root.join(&self.path))?;
                v2::apply(&root.join(&self.path), resources)?;
                if !resources.devices.is_empty() {
                    bpf::attach(&root.join(&self.path), &resources.devices)?;
                }
                Ok(())
            }
            Layout::V1 { root } | Layout::Hybrid { root } => {
                for c in v1::CONTROLLERS {
                    let mount = root.join(c);
                    if !mount.is_dir() {
                        continue;
                    }
                    if *c == "cpuset" {
                        v1::prepare_cpuset(&mount, &self.path)?;
                    }
                    mkdir(&mount.join(&self.path))?;
                }
                if let Layout::Hybrid { root } = &self.layout {
                    mkdir(&root.join("unified").join(&self.path))?;
                }
                v1::apply(&v1::Dirs::under(root, &self.path), resources)
            }
        }
    }

    /// Opens what a new process needs to start inside the cgroup (see
    /// [`Entry`]).
    pub fn entry(&self) -> Result<Entry, CgroupError> {
        let cgroup2 = self
            .cgroup2_dir()
            .map(|dir| {
                rustix::fs::open(
                    &dir,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| CgroupError::Io {
                    path: dir,
                    source: e.into(),
                })
            })
            .transpose()?;
        let v1_tasks = self
            .v1_dirs()
            .filter(|d| d.is_dir())
            .map(|dir| {
                let path = dir.join("tasks");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map(|file| (path.clone(), file))
                    .map_err(|source| CgroupError::Io { path, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Entry { cgroup2, v1_tasks })
    }

    /// Freezes (pause) or thaws (resume) every process in it.
    pub fn freeze(&self, frozen: bool) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V2 { root } => write(
                &root.join(&self.path),
                "cgroup.freeze",
                if frozen { "1" } else { "0" },
            ),
            Layout::V1 { root } | Layout::Hybrid { root } => write(
                &root.join("freezer").join(&self.path),
                "freezer.state",
                if frozen { "FROZEN" } else { "THAWED" },
            ),
        }
    }

    pub fn is_frozen(&self) -> bool {
        match &self.layout {
            Layout::V2 { root } => fs::read_to_string(root.join(&self.path).join("cgroup.freeze"))
                .is_ok_and(|s| s.trim() == "1"),
            Layout::V1 { root } | Layout::Hybrid { root } => {
                fs::read_to_string(root.join("freezer").join(&self.path).join("freezer.state"))
                    .is_ok_and(|s| s.trim() == "FROZEN")
            }
        }
    }

    /// PIDs of every process in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        let dir = match &self.layout {
            Layout::V2 { root } => root.join(&self.path),
            Layout::V1 { root } | Layout::Hybrid { root } => root.join("pids").join(&self.path),
        };
        fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// How many processes the kernel's OOM killer has killed in this
    /// cgroup (`oom_kill` of memory.events in v2, of memory.oom_control
    /// in v1); 0 when the kernel does not say.
    pub fn oom_kills(&self) -> u64 {
        let file = match &self.layout {
            Layout::V2 { root } => root.join(&self.path).join("memory.events"),
            Layout::V1 { root } | Layout::Hybrid { root } => root
                .join("memory")
                .join(&self.path)
                .join("memory.oom_control"),
        };
        fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Removes the cgroup's directories (which must hold no process).
    /// Parents, even berth's own, are left alone.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for dir in self.dirs() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CgroupError::Io { path: dir, source }),
            }
        }
        Ok(())
    }
}

/// How a new process enters a cgroup without the kernel's global
/// threadgroup lock, whose taking waits for an RCU grace period (7-20 ms
/// here, most of `run -d`): a write of a PID to `cgroup.procs` takes it.
/// The process is cloned straight into the cgroup2 directory, and in
/// each v1 hierarchy, still single-threaded, writes "0" (itself) to
/// `tasks`, which the kernel moves without that lock. The files are
/// opened by the runtime, before the clone, so that a child without
/// rights of its own (a new user namespace) can still write them.
pub struct Entry {
    cgroup2: Option<OwnedFd>,
    v1_tasks: Vec<(PathBuf, fs::File)>,
}

impl Entry {
    /// The cgroup2 directory to clone into.
    pub fn cgroup2(&self) -> Option<BorrowedFd<'_>> {
        self.cgroup2.as_ref().map(|fd| fd.as_fd())
    }

    /// In the cloned process, before anything else: moves it into the
    /// cgroup in every v1 hierarchy. It must be single-threaded ("0"
    /// moves the calling thread only).
    pub fn join_v1(&self) -> Result<(), CgroupError> {
        for (path, file) in &self.v1_tasks {
            rustix::io::write(file, b"0").map_err(|e| CgroupError::Write {
                path: path.clone(),
                value: "0".into(),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

fn mkdir(p: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(p).map_err(|source| CgroupError::Io {
        path: p.to_path_buf(),
        source,
    })
}
