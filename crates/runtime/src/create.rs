//! The parent side of create (steps 1-3 and 9): validate, make the cgroup,
//! clone the child into its namespaces, then drive it through the sync
//! sequence until it is ready and waiting for `start`.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use berth_sys::{clone_process, Forked};
use rustix::fs::{FileType, Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::cgroups::{Cgroup, Layout};
use crate::config::{Config, NsKind};
use crate::error::{io, RuntimeError};
use crate::hooks;
use crate::init::{self, InitArgs};
use crate::state::{
    check_id, process_start_time, Container, OciState, Saved, EXEC_FIFO, OCI_VERSION,
};
use crate::sync::{self, Channel, Message};

#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    /// A unix socket to send the pty master to (`process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// Where to write the container's PID.
    pub pid_file: Option<PathBuf>,
    /// SIGKILL the container's process when the process that created it
    /// dies: a monitor killed (as a reboot would) takes its container
    /// with it, rather than leaving one nobody watches.
    pub die_with_parent: bool,
    /// Where compiled seccomp filters are kept between runs.
    pub seccomp_cache: Option<PathBuf>,
}

/// Creates container `id` from `bundle`: when this returns, its process
/// exists in its namespaces and cgroup, fully set up, blocked until
/// `start`.
pub fn create(
    root: &Path,
    id: &str,
    bundle: &Path,
    opts: &CreateOptions,
) -> Result<Container, RuntimeError> {
    check_id(id)?;
    let bundle = fs::canonicalize(bundle).map_err(io("opening the bundle", bundle))?;
    let cfg = Config::load(&bundle)?;
    fs::create_dir_all(root).map_err(io("creating", root))?;
    let dir = root.join(id);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(RuntimeError::Exists(id.to_string()))
        }
        Err(e) => return Err(io("creating", &dir)(e)),
    }
    let result = create_in(&dir, id, &cfg, opts);
    if result.is_err() {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn create_in(
    dir: &Path,
    id: &str,
    cfg: &Config,
    opts: &CreateOptions,
) -> Result<Container, RuntimeError> {
    // Step 1: the exec FIFO, the cgroup (limits in force before the child
    // runs a single instruction), the console socket, namespaces to join.
    let fifo_path = dir.join(EXEC_FIFO);
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo_path,
        FileType::Fifo,
        Mode::from_raw_mode(0o622),
        0,
    )
    .map_err(|e| io("mkfifo", &fifo_path)(e.into()))?;
    // 0622 whatever the umask: a non-root container user opens it to write.
    rustix::fs::chmod(&fifo_path, Mode::from_raw_mode(0o622))
        .map_err(|e| io("chmod", &fifo_path)(e.into()))?;
    let fifo = rustix::fs::open(&fifo_path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| io("opening", &fifo_path)(e.into()))?;

    let cgroup_path = cfg
        .cgroups_path
        .clone()
        .unwrap_or_else(|| format!("berth/{id}"));
    let cgroup = Cgroup::new(Layout::detect(), &cgroup_path)?;
    cgroup.create(&cfg.resources)?;

    let result = spawn(dir, id, cfg, opts, &cgroup, &cgroup_path, fifo);
    if result.is_err() {
        let _ = cgroup.remove();
    }
    result
}

fn spawn(
    dir: &Path,
    id: &str,
    cfg: &Config,
    opts: &CreateOptions,
    cgroup: &Cgroup,
    cgroup_path: &str,
    fifo: OwnedFd,
) -> Result<Container, RuntimeError> {
    let console: Option<OwnedFd> = match (&opts.console_socket, cfg.process.terminal) {
        (Some(path), true) => Some(
            UnixStream::connect(path)
                .map_err(io("connecting to the console socket", path))?
                .into(),
        ),
        (None, true) => {
            return Err(crate::config::ConfigError::Invalid(
                "process.terminal is set: pass --console-socket".into(),
            )
            .into())
        }
        _ => None,
    };
    let mut join = Vec::new();
    let mut flags = 0;
    for ns in &cfg.namespaces {
        match (&ns.path, ns.kind) {
            (Some(path), NsKind::Pid) => {
                // setns to a PID namespace applies to children: join it
                // here, before the clone.
                let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io("opening", path)(e.into()))?;
                rustix::thread::move_into_link_name_space(std::os::fd::AsFd::as_fd(&fd), None)
                    .map_err(|e| io("joining the PID namespace", path)(e.into()))?;
            }
            (Some(path), kind) => {
                let fd = rustix::fs::open(path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                    .map_err(|e| io("opening", path)(e.into()))?;
                join.push((kind, fd));
            }
            // Made by the child: the cgroup namespace once it is in its
            // cgroup, the time namespace (which clone(2) cannot make) just
            // before exec, which enters it.
            (None, NsKind::Cgroup | NsKind::Time) => {}
            (None, kind) => flags |= kind.clone_flag(),
        }
    }
    // A user namespace is joined before the others it owns.
    join.sort_by_key(|(k, _)| *k != NsKind::User);
    let new_userns = cfg
        .namespace(NsKind::User)
        .is_some_and(|n| n.path.is_none());

    // Step 1: the filter is compiled here, so a bad profile fails create
    // before any process exists.
    let seccomp = cfg
        .seccomp
        .as_ref()
        .map(|s| crate::seccomp::filter(s, opts.seccomp_cache.as_deref()))
        .transpose()?;
    let entry = cgroup.entry()?;
    let (parent_ch, child_ch) = sync::pair().map_err(|e| io("socketpair", dir)(e))?;
    // Step 2: the child starts in its new namespaces and its cgroup.
    match clone_process(flags, entry.cgroup2()).map_err(|e| io("clone", dir)(e))? {
        Forked::Child => {
            drop(parent_ch);
            init::run(InitArgs {
                cfg,
                cgroup,
                entry,
                channel: child_ch,
                fifo,
                console,
                join,
                new_userns,
                seccomp,
                die_with_parent: opts.die_with_parent,
            })
        }
        Forked::Parent { child } => {
            drop(child_ch);
            drop(seccomp);
            drop(fifo);
            drop(entry);
            let container = Container {
                dir: dir.to_path_buf(),
                saved: Saved {
                    id: id.to_string(),
                    pid: child,
                    start_time: process_start_time(child).map_or(0, |(t, _)| t),
                    bundle: cfg.bundle.clone(),
                    rootfs: cfg.rootfs.clone(),
                    created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                    cgroup_path: cgroup_path.to_string(),
                    annotations: cfg.annotations.clone(),
                    poststop: cfg.hooks.poststop.clone(),
                },
            };
            // Saved before anything can fail, so cleanup can always find it.
            let result = container
                .save()
                .and_then(|()| drive(&parent_ch, child, cfg, &container, new_userns));
            if let Err(e) = result {
                if let Some(pid) = Pid::from_raw(child) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                    let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                }
                return Err(e);
            }
            if let Some(path) = &opts.pid_file {
                write_atomic(path, child.to_string().as_bytes())?;
            }
            Ok(container)
        }
    }
}

/// Step 3 and the rest of the sequence (see `sync`).
fn drive(
    ch: &Channel,
    pid: i32,
    cfg: &Config,
    container: &Container,
    new_userns: bool,
) -> Result<(), RuntimeError> {
    if new_userns {
        write_id_maps(pid, cfg)?;
    }
    let state = state_json(container, "creating");
    ch.send(&Message::Begin {
        state: state.clone(),
    })
    .map_err(|e| io("sync", &container.dir)(e))?;
    loop {
        match ch.recv().map_err(|e| io("sync", &container.dir)(e))? {
            Some(Message::RunHooks) => {
                hooks::run("prestart", &cfg.hooks.prestart, &state)?;
                hooks::run("createRuntime", &cfg.hooks.create_runtime, &state)?;
                ch.send(&Message::Proceed)
                    .map_err(|e| io("sync", &container.dir)(e))?;
            }
            Some(Message::Ready) => return Ok(()),
            Some(Message::Failed(e)) => return Err(RuntimeError::Child(e)),
            Some(other) => {
                return Err(RuntimeError::Child(crate::sync::ChildError::new(
                    "sync",
                    format!("unexpected message {other:?}"),
                )))
            }
            None => return Err(RuntimeError::ChildVanished),
        }
    }
}

pub(crate) fn state_json(container: &Container, status: &str) -> String {
    let s = OciState {
        oci_version: OCI_VERSION.into(),
        id: container.saved.id.clone(),
        status: status.into(),
        pid: container.saved.pid,
        bundle: container.saved.bundle.clone(),
        rootfs: container.saved.rootfs.clone(),
        created: container.saved.created.clone(),
        owner: String::new(),
        annotations: container.saved.annotations.clone(),
    };
    serde_json::to_string(&s).expect("state serialises")
}

fn write_id_maps(pid: i32, cfg: &Config) -> Result<(), RuntimeError> {
    let render = |maps: &[crate::config::IdMap]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container, m.host, m.size))
            .collect::<String>()
    };
    for (file, maps) in [
        ("uid_map", &cfg.uid_mappings),
        ("gid_map", &cfg.gid_mappings),
    ] {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        fs::write(&path, render(maps)).map_err(io("writing", &path))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("pid")
    ));
    fs::write(&tmp, bytes).map_err(io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("renaming into", path))
}
