//! The child side of create: runs in the container's new namespaces, a
//! clone of the runtime, and ends in `execve` of the container's program.
//! Each step is one call, in the order STYLE.md gives and for the reasons
//! noted at each.

use std::convert::Infallible;
use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::process::{Gid, Uid};

use crate::cgroups::{Cgroup, Entry};
use crate::config::{Config, NsKind};
use crate::hooks;
use crate::mounts;
use crate::process;
use crate::sync::{Channel, ChildError, Message};

pub(crate) struct InitArgs<'a> {
    pub cfg: &'a Config,
    pub cgroup: &'a Cgroup,
    /// The cgroup's v1 `tasks` files (cgroup2 placed the clone already).
    pub entry: Entry,
    pub channel: Channel,
    /// The exec FIFO, opened O_PATH by the parent.
    pub fifo: OwnedFd,
    pub console: Option<OwnedFd>,
    /// Existing namespaces to join, user first (the parent already joined
    /// a PID namespace, which only takes effect for its children).
    pub join: Vec<(NsKind, OwnedFd)>,
    pub new_userns: bool,
    /// The compiled seccomp filter, to load last.
    pub seccomp: Option<crate::seccomp::Filter>,
    pub die_with_parent: bool,
}

/// Never returns: the container's program replaces this process, or it
/// exits with the error sent to the parent.
pub(crate) fn run(args: InitArgs<'_>) -> ! {
    let _ = rustix::thread::set_name(c"berth:init");
    let error = match init(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let code = error.exec_status.unwrap_or(1);
    if args.channel.send(&Message::Failed(error.clone())).is_err() {
        // After Ready the parent is gone: the container's stderr is all
        // that is left to tell.
        eprintln!("berth-runtime: {error}");
    }
    std::process::exit(code)
}

fn expect(ch: &Channel, what: &str) -> Result<Message, ChildError> {
    match ch.recv() {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(ChildError::new(
            "sync",
            format!("the runtime went away while the child waited for {what}"),
        )),
        Err(e) => Err(ChildError::io("sync", format!("waiting for {what}"), e)),
    }
}

fn init(a: &InitArgs<'_>) -> Result<Infallible, ChildError> {
    let cfg = a.cfg;
    // Nothing may run outside the limits.
    a.entry
        .join_v1()
        .map_err(|e| ChildError::new("cgroup", e))?;
    if a.die_with_parent {
        // Survives execve. The parent is alive here: it waits for Ready
        // on the channel below, so no death can slip in between.
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| ChildError::io("prctl", "PR_SET_PDEATHSIG", std::io::Error::from(e)))?;
    }
    // Step 2 (child): wait until the parent has written the id maps.
    let state = match expect(&a.channel, "the parent's go-ahead")? {
        Message::Begin { state } => state,
        other => {
            return Err(ChildError::new(
                "sync",
                format!("expected Begin, got {other:?}"),
            ))
        }
    };
    if a.new_userns {
        // Unmapped until the parent wrote the maps; become the namespace's root.
        rustix::thread::set_thread_res_gid(Gid::ROOT, Gid::ROOT, Gid::ROOT)
            .map_err(|e| ChildError::errno("userns", "setresgid 0", e))?;
        rustix::thread::set_thread_res_uid(Uid::ROOT, Uid::ROOT, Uid::ROOT)
            .map_err(|e| ChildError::errno("userns", "setresuid 0", e))?;
    }
    for (kind, fd) in &a.join {
        rustix::thread::move_into_link_name_space(fd.as_fd(), None).map_err(|e| {
            ChildError::errno(
                "namespaces",
                format!("joining the {} namespace", kind.proc_name()),
                e,
            )
        })?;
    }
    // The cgroup namespace is made only now, so that its root is the
    // container's cgroup rather than the runtime's.
    if cfg
        .namespace(NsKind::Cgroup)
        .is_some_and(|n| n.path.is_none())
    {
        berth_sys::unshare_namespaces(berth_sys::clone_flags::NEWCGROUP)
            .map_err(|e| ChildError::io("namespaces", "unshare cgroup", e))?;
    }

    // Steps 4-5: the filesystem, relative to the opened rootfs.
    mounts::prepare_rootfs(cfg, a.cgroup, a.new_userns)?;

    // Step 6: hooks. createRuntime and prestart run in the parent, with
    // the namespaces made but before pivot_root; createContainer runs here.
    if !cfg.hooks.create_runtime.is_empty() || !cfg.hooks.prestart.is_empty() {
        a.channel
            .send(&Message::RunHooks)
            .map_err(|e| ChildError::io("sync", "asking for hooks", e))?;
        match expect(&a.channel, "the hooks")? {
            Message::Proceed => {}
            other => {
                return Err(ChildError::new(
                    "sync",
                    format!("expected Proceed, got {other:?}"),
                ))
            }
        }
    }
    hooks::run("createContainer", &cfg.hooks.create_container, &state)
        .map_err(|e| ChildError::new("hooks", e))?;

    // Step 7.
    mounts::pivot_root(&cfg.rootfs)?;

    // Step 8: terminal, read-only rootfs, hostname, sysctls, masked and
    // read-only paths.
    if let Some(console) = &a.console {
        process::setup_console(console, cfg.process.console_size)?;
    }
    // A network namespace of its own starts with `lo` down; bring it up,
    // as crun does (a joined namespace is its owner's business).
    if cfg
        .namespaces
        .iter()
        .any(|n| n.kind == NsKind::Network && n.path.is_none())
    {
        berth_sys::set_loopback_up().map_err(|e| ChildError::io("network", "bringing lo up", e))?;
    }
    if let Some(h) = &cfg.hostname {
        rustix::system::sethostname(h.as_bytes())
            .map_err(|e| ChildError::errno("hostname", format!("sethostname {h}"), e))?;
    }
    if let Some(d) = &cfg.domainname {
        rustix::system::setdomainname(d.as_bytes())
            .map_err(|e| ChildError::errno("hostname", format!("setdomainname {d}"), e))?;
    }
    for (key, value) in &cfg.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        fs::write(&path, value)
            .map_err(|e| ChildError::io("sysctl", format!("{key}={value}"), e))?;
    }
    mounts::mask_and_protect(&cfg.masked_paths, &cfg.readonly_paths)?;
    if cfg.rootfs_readonly {
        mounts::readonly_root()?;
    }
    if cfg
        .namespace(NsKind::Time)
        .is_some_and(|n| n.path.is_none())
    {
        berth_sys::unshare_namespaces(berth_sys::clone_flags::NEWTIME)
            .map_err(|e| ChildError::io("namespaces", "unshare time", e))?;
        // Offsets are set before any process is in the namespace; exec
        // puts this one there.
        let offsets: String = cfg
            .time_offsets
            .iter()
            .map(|(clock, s, n)| format!("{clock} {s} {n}\n"))
            .collect();
        if !offsets.is_empty() {
            fs::write("/proc/self/timens_offsets", &offsets).map_err(|e| {
                ChildError::io("namespaces", format!("time offsets {offsets:?}"), e)
            })?;
        }
    }
    if let Some(persona) = cfg.personality {
        berth_sys::set_personality(persona)
            .map_err(|e| ChildError::io("personality", persona, e))?;
    }
    if let Some(adj) = cfg.process.oom_score_adj {
        fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| ChildError::io("oom_score_adj", adj, e))?;
    }
    // Step 9's limits, while this process still has CAP_SYS_RESOURCE.
    process::set_rlimits(&cfg.process)?;
    if let Some(mask) = cfg.process.umask {
        rustix::process::umask(Mode::from_raw_mode(mask));
    }
    let program = process::find_program(&cfg.process.args, &cfg.process.env)?;
    if cfg.process.no_new_privileges {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| ChildError::errno("no_new_privs", "prctl", e))?;
    }

    // Step 10: nothing of the runtime's may cross exec; then user, groups,
    // capabilities; then the working directory, checked.
    berth_sys::cloexec_from(3)
        .map_err(|e| ChildError::io("file descriptors", "marking close-on-exec", e))?;
    // Step 11: seccomp as late as possible; without no_new_privs, loading a
    // filter needs CAP_SYS_ADMIN, so before the capabilities go.
    let load_seccomp = || -> Result<(), ChildError> {
        match &a.seccomp {
            Some(filter) => filter
                .load()
                .map_err(|e| ChildError::io("seccomp", "loading the filter", e)),
            None => Ok(()),
        }
    };
    if !cfg.process.no_new_privileges {
        load_seccomp()?;
    }
    process::become_user(&cfg.process)?;
    process::enter_cwd(&cfg.process.cwd)?;
    if cfg.process.no_new_privileges {
        load_seccomp()?;
    }

    a.channel
        .send(&Message::Ready)
        .map_err(|e| ChildError::io("sync", "reporting ready", e))?;

    // Step 12: wait for `start` on the FIFO (reopened through /proc, as the
    // container's user, without a path that leads out of the rootfs).
    let fifo = rustix::fs::open(
        format!("/proc/self/fd/{}", a.fifo.as_raw_fd()).as_str(),
        OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ChildError::errno("start", "opening the exec FIFO", e))?;
    rustix::io::write(&fifo, b"0")
        .map_err(|e| ChildError::errno("start", "writing the exec FIFO", e))?;
    drop(fifo);
    hooks::run("startContainer", &cfg.hooks.start_container, &state)
        .map_err(|e| ChildError::new("hooks", e))?;

    let args: Vec<CString> = cfg
        .process
        .args
        .iter()
        .map(|s| cstring(s))
        .collect::<Result<_, _>>()?;
    let env: Vec<CString> = cfg
        .process
        .env
        .iter()
        .map(|s| cstring(s))
        .collect::<Result<_, _>>()?;
    let err = berth_sys::execve(&program, &args, &env);
    Err(ChildError {
        stage: "exec".into(),
        detail: format!("exec {:?}: {err}", cfg.process.args[0]),
        errno: err.raw_os_error(),
        exec_status: Some(if err.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        }),
    })
}

fn cstring(s: &str) -> Result<CString, ChildError> {
    CString::new(s).map_err(|_| ChildError::new("exec", format!("{s:?} contains a NUL byte")))
}
