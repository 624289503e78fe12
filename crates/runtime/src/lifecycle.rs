//! The verbs after create: start, kill, delete, pause, resume, and run
//! (create + start + wait). Each loads the state, checks that the
//! container's status allows the verb, acts, and saves.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};
use rustix::process::{Pid, Signal, WaitOptions};

use crate::create::{create, state_json, CreateOptions};
use crate::error::{io, RuntimeError};
use crate::hooks;
use crate::state::{Container, Status};

fn bad_status(
    c: &Container,
    status: Status,
    action: &'static str,
    wanted: &'static str,
) -> RuntimeError {
    RuntimeError::BadStatus {
        id: c.saved.id.clone(),
        status: status.as_str(),
        action,
        wanted,
    }
}

/// Releases a created container's process into the user's program.
pub fn start(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Created {
        return Err(bad_status(&c, status, "start", "created"));
    }
    let fifo_path = c.fifo();
    // Non-blocking, so a child that died before opening its end cannot
    // hang `start`; poll below waits for its byte.
    let fifo = rustix::fs::open(
        &fifo_path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io("opening", &fifo_path)(e.into()))?;
    let mut byte = [0u8; 1];
    loop {
        let mut fds = [PollFd::new(&fifo, PollFlags::IN)];
        let timeout = rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        poll(&mut fds, Some(&timeout)).map_err(|e| io("waiting on", &fifo_path)(e.into()))?;
        match rustix::io::read(&fifo, &mut byte) {
            Ok(1) => break,
            Ok(_) | Err(rustix::io::Errno::AGAIN) if c.alive() => continue,
            _ => return Err(RuntimeError::ChildVanished),
        }
    }
    fs::remove_file(&fifo_path).map_err(io("removing", &fifo_path))?;
    hooks::run(
        "poststart",
        &crate::config::Config::load(&c.saved.bundle)
            .map(|cfg| cfg.hooks.poststart)
            .unwrap_or_default(),
        &state_json(&c, "running"),
    )
}

pub fn parse_signal(s: &str) -> Result<Signal, RuntimeError> {
    let bad = || RuntimeError::BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return Signal::from_named_raw(n).ok_or_else(bad);
    }
    let name = s.to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    Ok(match name {
        "HUP" => Signal::HUP,
        "INT" => Signal::INT,
        "QUIT" => Signal::QUIT,
        "ILL" => Signal::ILL,
        "TRAP" => Signal::TRAP,
        "ABRT" | "IOT" => Signal::ABORT,
        "BUS" => Signal::BUS,
        "FPE" => Signal::FPE,
        "KILL" => Signal::KILL,
        "USR1" => Signal::USR1,
        "SEGV" => Signal::SEGV,
        "USR2" => Signal::USR2,
        "PIPE" => Signal::PIPE,
        "ALRM" => Signal::ALARM,
        "TERM" => Signal::TERM,
        "CHLD" => Signal::CHILD,
        "CONT" => Signal::CONT,
        "STOP" => Signal::STOP,
        "TSTP" => Signal::TSTP,
        "TTIN" => Signal::TTIN,
        "TTOU" => Signal::TTOU,
        "URG" => Signal::URG,
        "XCPU" => Signal::XCPU,
        "XFSZ" => Signal::XFSZ,
        "VTALRM" => Signal::VTALARM,
        "PROF" => Signal::PROF,
        "WINCH" => Signal::WINCH,
        "IO" | "POLL" => Signal::IO,
        "PWR" => Signal::POWER,
        "SYS" => Signal::SYS,
        _ => return Err(bad()),
    })
}

/// Sends `signal` to the container's init, or with `all` to every process
/// in its cgroup.
pub fn kill(root: &Path, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status == Status::Stopped {
        return Err(bad_status(&c, status, "kill", "created, running or paused"));
    }
    let pids = if all {
        c.cgroup()?.pids()
    } else {
        vec![c.saved.pid]
    };
    for pid in pids.into_iter().filter_map(Pid::from_raw) {
        match rustix::process::kill_process(pid, signal) {
            Ok(()) | Err(rustix::io::Errno::SRCH) => {}
            Err(e) => {
                return Err(io("kill", format!("pid {}", pid.as_raw_nonzero()))(
                    e.into(),
                ))
            }
        }
    }
    Ok(())
}

/// Removes a container: its cgroup, its state, after running poststop
/// hooks. A running one needs `force` (it is killed first); a created one
/// is killed, as runc does.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<(), RuntimeError> {
    let c = match Container::load(root, id) {
        Err(RuntimeError::NotFound(_)) if force => return Ok(()),
        other => other?,
    };
    let status = c.status();
    match status {
        Status::Stopped => {}
        Status::Created => kill_and_wait(&c)?,
        Status::Running | Status::Paused if force => kill_and_wait(&c)?,
        _ => return Err(bad_status(&c, status, "delete", "stopped (or use --force)")),
    }
    let cgroup = c.cgroup()?;
    // Processes take a moment to leave a cgroup after they die.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match cgroup.remove() {
            Ok(()) => break,
            Err(_) if Instant::now() < deadline => {
                for pid in cgroup.pids().into_iter().filter_map(Pid::from_raw) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e.into()),
        }
    }
    let hooks_result = hooks::run("poststop", &c.saved.poststop, &state_json(&c, "stopped"));
    fs::remove_dir_all(&c.dir).map_err(io("removing", &c.dir))?;
    hooks_result
}

fn kill_and_wait(c: &Container) -> Result<(), RuntimeError> {
    if let Ok(cg) = c.cgroup() {
        // A frozen process cannot die until thawed.
        let _ = cg.freeze(false);
        for pid in cg.pids().into_iter().filter_map(Pid::from_raw) {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    }
    if let Some(pid) = Pid::from_raw(c.saved.pid) {
        let _ = rustix::process::kill_process(pid, Signal::KILL);
        // Reap it if it is ours (run); otherwise wait for whoever is its parent.
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.alive() {
        if Instant::now() > deadline {
            return Err(io(
                "waiting for the container to die",
                format!("pid {}", c.saved.pid),
            )(std::io::ErrorKind::TimedOut.into()));
        }
        if let Some(pid) = Pid::from_raw(c.saved.pid) {
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}

pub fn pause(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Running {
        return Err(bad_status(&c, status, "pause", "running"));
    }
    Ok(c.cgroup()?.freeze(true)?)
}

pub fn resume(root: &Path, id: &str) -> Result<(), RuntimeError> {
    let c = Container::load(root, id)?;
    let status = c.status();
    if status != Status::Paused {
        return Err(bad_status(&c, status, "resume", "paused"));
    }
    Ok(c.cgroup()?.freeze(false)?)
}

/// Waits for a container's process (a child of this one); returns its exit
/// code as a shell reports it (128 + signal for a killed process).
pub fn wait_exit(pid: i32) -> Result<i32, RuntimeError> {
    let raw = pid;
    let pid = Pid::from_raw(pid).ok_or(RuntimeError::ChildVanished)?;
    let status = loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => break status,
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(io("waiting for", format!("pid {raw}"))(e.into())),
        }
    };
    Ok(status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(1))
}

/// create + start + wait: returns the exit code as a shell reports it
/// (128 + signal for a killed process). With `detach`, returns 0 once
/// started.
pub fn run(
    root: &Path,
    id: &str,
    bundle: &Path,
    opts: &CreateOptions,
    detach: bool,
    keep: bool,
) -> Result<i32, RuntimeError> {
    let c = create(root, id, bundle, opts)?;
    if let Err(e) = start(root, id) {
        let _ = delete(root, id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = wait_exit(c.saved.pid)?;
    if !keep {
        delete(root, id, true)?;
    }
    Ok(code)
}
