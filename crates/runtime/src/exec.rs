//! `exec`: a new process in a running container. It joins every
//! namespace of the container's init (user first, mount last) and its
//! cgroup, then takes the process settings of `--process` or the command
//! line, as the container's own init did.
//!
//! ```text
//!   runtime --clone--> joiner: setns all, joins the cgroup
//!                        --fork--> process (in the container's PID namespace):
//!                                   user, caps, cwd, seccomp, exec
//! ```
//! The process reports a failure over the sync socket; a successful exec
//! closes it (close-on-exec), which the runtime reads as success.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use berth_sys::{clone_process, Forked};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, WaitOptions};

use crate::config::{Config, NsKind, Process};
use crate::error::{io, RuntimeError};
use crate::process;
use crate::state::{Container, Status};
use crate::sync::{self, Channel, ChildError, Message};

/// The namespaces `exec` joins, in the order it joins them.
const JOIN_ORDER: [NsKind; 7] = [
    NsKind::User,
    NsKind::Ipc,
    NsKind::Uts,
    NsKind::Network,
    NsKind::Pid,
    NsKind::Cgroup,
    NsKind::Mount,
];

pub struct ExecOptions {
    /// The process: from `--process` JSON, else built from the command line.
    pub process: Process,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// Receives the pty master when the process has a terminal.
    pub console_socket: Option<PathBuf>,
    /// Where compiled seccomp filters are kept between runs.
    pub seccomp_cache: Option<PathBuf>,
}

/// The container's config with `args` (and overrides) in place of its
/// process: what `exec` runs when no `--process` is given.
pub fn process_from_bundle(
    c: &Container,
    args: Vec<String>,
    env: &[String],
    cwd: Option<&Path>,
    user: Option<(u32, u32)>,
) -> Result<Process, RuntimeError> {
    let cfg = Config::load(&c.saved.bundle)?;
    let mut p = cfg.process;
    p.args = args;
    p.terminal = false;
    p.env.extend(env.iter().cloned());
    if let Some(cwd) = cwd {
        p.cwd = cwd.to_path_buf();
    }
    if let Some((uid, gid)) = user {
        p.uid = uid;
        p.gid = gid;
        p.additional_gids.clear();
    }
    Ok(p)
}

/// Runs the process in container `id`; returns its exit code (0 at once
/// with `detach`).
pub fn exec(root: &Path, id: &str, opts: &ExecOptions) -> Result<i32, RuntimeError> {
    spawn(root, id, opts)?.wait()
}

/// A process `spawn` started: its joiner, whose exit status is the
/// process's.
pub struct Spawned {
    joiner: Pid,
}

impl Spawned {
    /// Waits for the process; its exit code as a shell reports it.
    pub fn wait(self) -> Result<i32, RuntimeError> {
        crate::lifecycle::wait_exit(self.joiner.as_raw_nonzero().get())
    }
}

/// Starts the process in container `id` and returns once it runs (with a
/// terminal, its pty master has gone to the console socket by then): the
/// caller relays, then waits.
pub fn spawn(root: &Path, id: &str, opts: &ExecOptions) -> Result<Spawned, RuntimeError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Running {
        return Err(RuntimeError::BadStatus {
            id: id.to_string(),
            status: status.as_str(),
            action: "exec",
            wanted: "running",
        });
    }
    let cfg = Config::load(&c.saved.bundle)?;
    let seccomp = cfg
        .seccomp
        .as_ref()
        .map(|s| crate::seccomp::filter(s, opts.seccomp_cache.as_deref()))
        .transpose()?;
    let mut join = Vec::new();
    for kind in JOIN_ORDER {
        let theirs = PathBuf::from(format!("/proc/{}/ns/{}", c.saved.pid, kind.proc_name()));
        let ours = PathBuf::from(format!("/proc/self/ns/{}", kind.proc_name()));
        // Joining a namespace one is already in is refused for some kinds.
        let same = match (std::fs::metadata(&theirs), std::fs::metadata(&ours)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        };
        if !same {
            let fd = rustix::fs::open(&theirs, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io("opening", &theirs)(e.into()))?;
            join.push((kind, fd));
        }
    }
    let console: Option<OwnedFd> = match (opts.process.terminal, &opts.console_socket) {
        (true, Some(path)) => Some(
            std::os::unix::net::UnixStream::connect(path)
                .map_err(io("connecting to the console socket", path))?
                .into(),
        ),
        (true, None) => {
            return Err(crate::config::ConfigError::Invalid(
                "a terminal needs --console-socket".into(),
            )
            .into());
        }
        (false, _) => None,
    };
    let entry = c.cgroup()?.entry()?;
    let (parent_ch, child_ch) = sync::pair().map_err(|e| io("socketpair", &c.dir)(e))?;
    match clone_process(0, entry.cgroup2()).map_err(|e| io("fork", &c.dir)(e))? {
        Forked::Child => {
            drop(parent_ch);
            let code = match joiner(
                &join,
                &entry,
                &opts.process,
                seccomp.as_ref(),
                console.as_ref(),
                child_ch,
                opts.detach,
            ) {
                Ok(code) => code,
                Err((e, ch)) => {
                    let _ = ch.send(&Message::Failed(e));
                    1
                }
            };
            std::process::exit(code)
        }
        Forked::Parent { child } => {
            drop(child_ch);
            drop(join);
            drop(entry);
            let pid = Pid::from_raw(child).expect("a child's PID is positive");
            // First the new process's PID, then either its failure or the
            // end of the socket (its exec closed it).
            let mut started = None;
            loop {
                match parent_ch.recv().map_err(|e| io("sync", &c.dir)(e))? {
                    Some(Message::Started { pid }) => started = Some(pid),
                    Some(Message::Failed(e)) => {
                        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                        return Err(RuntimeError::Child(e));
                    }
                    None if started.is_some() => break,
                    other => {
                        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
                        return Err(RuntimeError::Child(ChildError::new(
                            "sync",
                            format!("unexpected {other:?}"),
                        )));
                    }
                }
            }
            if let (Some(path), Some(p)) = (&opts.pid_file, started) {
                std::fs::write(path, p.to_string()).map_err(io("writing", path))?;
            }
            Ok(Spawned { joiner: pid })
        }
    }
}

/// In the joiner: enter the namespaces and the cgroup, fork the process
/// (a PID namespace applies to children only), wait for it.
fn joiner(
    join: &[(NsKind, OwnedFd)],
    entry: &crate::cgroups::Entry,
    p: &Process,
    seccomp: Option<&crate::seccomp::Filter>,
    console: Option<&OwnedFd>,
    ch: Channel,
    detach: bool,
) -> Result<i32, (ChildError, Channel)> {
    let _ = rustix::thread::set_name(c"berth:exec");
    if let Err(e) = entry.join_v1() {
        return Err((ChildError::new("cgroup", e), ch));
    }
    for (kind, fd) in join {
        if let Err(e) = rustix::thread::move_into_link_name_space(fd.as_fd(), None) {
            return Err((
                ChildError::errno(
                    "namespaces",
                    format!("joining the {} namespace", kind.proc_name()),
                    e,
                ),
                ch,
            ));
        }
    }
    let forked = match clone_process(0, None) {
        Ok(f) => f,
        Err(e) => return Err((ChildError::io("exec", "fork", e), ch)),
    };
    match forked {
        Forked::Child => {
            let err = match exec_process(p, seccomp, console) {
                Ok(never) => match never {},
                Err(e) => e,
            };
            let code = err.exec_status.unwrap_or(1);
            let _ = ch.send(&Message::Failed(err));
            std::process::exit(code)
        }
        Forked::Parent { child } => {
            let _ = ch.send(&Message::Started { pid: child });
            // Only the process's copy of the socket may be left open now.
            drop(ch);
            if detach {
                return Ok(0);
            }
            let pid = Pid::from_raw(child).expect("a child's PID is positive");
            loop {
                match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
                    Ok(Some((_, s))) => {
                        return Ok(s
                            .exit_status()
                            .or_else(|| s.terminating_signal().map(|n| 128 + n))
                            .unwrap_or(1))
                    }
                    Err(rustix::io::Errno::INTR) | Ok(None) => continue,
                    Err(_) => return Ok(1),
                }
            }
        }
    }
}

fn exec_process(
    p: &Process,
    seccomp: Option<&crate::seccomp::Filter>,
    console: Option<&OwnedFd>,
) -> Result<std::convert::Infallible, ChildError> {
    if let Some(console) = console {
        // In the container's mount namespace now: the pty comes from its devpts.
        process::setup_console(console, p.console_size)?;
    }
    process::set_rlimits(p)?;
    let program = process::find_program(&p.args, &p.env)?;
    if p.no_new_privileges {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| ChildError::errno("no_new_privs", "prctl", e))?;
    }
    berth_sys::cloexec_from(3)
        .map_err(|e| ChildError::io("file descriptors", "marking close-on-exec", e))?;
    let load = || -> Result<(), ChildError> {
        match seccomp {
            Some(f) => f
                .load()
                .map_err(|e| ChildError::io("seccomp", "loading the filter", e)),
            None => Ok(()),
        }
    };
    if !p.no_new_privileges {
        load()?;
    }
    process::become_user(p)?;
    process::enter_cwd(&p.cwd)?;
    if p.no_new_privileges {
        load()?;
    }
    let cstr = |s: &String| {
        CString::new(s.as_str())
            .map_err(|_| ChildError::new("exec", format!("{s:?} contains a NUL byte")))
    };
    let args: Vec<CString> = p.args.iter().map(cstr).collect::<Result<_, _>>()?;
    let env: Vec<CString> = p.env.iter().map(cstr).collect::<Result<_, _>>()?;
    let err = berth_sys::execve(&program, &args, &env);
    Err(ChildError {
        stage: "exec".into(),
        detail: format!("exec {:?}: {err}", p.args[0]),
        errno: err.raw_os_error(),
        exec_status: Some(if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }),
    })
}
