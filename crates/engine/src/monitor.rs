//! The monitor: one small process per running container, as conmon is
//! for Podman. `berth start` spawns it (`berth-monitor ROOT ID BERTH`) in
//! its own session; it creates and starts the container with the runtime
//! in-process, so the container's process is its child, and then:
//! - writes what the process prints to the json-file log,
//! - records the start and the end in the container's state file,
//! - restarts the process as `--restart` says,
//! - removes a `--rm` container (by running `berth rm -f`).
//!
//! It reports to berth once, one JSON line on its stdout: `{"pid": N}` when
//! the container runs, `{"error": …}` when it could not start it. The
//! container gets SIGKILL if the monitor dies, so no container runs
//! unwatched; the next berth command sees the monitor gone.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_runtime::create::{create, CreateOptions};
use berth_runtime::lifecycle;
use serde::{Deserialize, Serialize};

use crate::logs::{log_path, LogOptions, LogWriter};
use crate::restart::Policy;
use crate::state::{RunState, Status};
use crate::EngineError;

/// Left in the container's directory by `stop`, `rm -f`: the process's
/// end was asked for, so it is not restarted.
pub const STOP_MARK: &str = "stop-requested";
/// What the monitor needs of the container's options.
pub const MONITOR_FILE: &str = "monitor.json";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    pub restart: Option<String>,
    pub log_opts: Vec<String>,
    pub auto_remove: bool,
    /// `-i` without `-t`: the container's stdin is a pipe the monitor
    /// holds open and feeds from attached clients.
    pub open_stdin: bool,
    /// docker's StdinOnce (`-i` attached, not `-d`): the first client's
    /// end of input is the container's.
    pub stdin_once: bool,
}

/// `berth-monitor ROOT ID BERTH [handshake|attach]`: returns the
/// monitor's exit code. With `handshake` (`run -d`) or `attach` (`run -it`,
/// `start -a`: berth connects to the terminal before the process runs),
/// the container's process is created, `{"created": PID}` reported, and it
/// is started only when berth writes `go` on stdin; if berth goes away
/// first, the process is removed, and with `handshake` the whole container
/// (nobody recorded it). With `handshake` the monitor is started before
/// the container's directory is complete, and waits for berth's `made`.
pub fn main(args: &[String]) -> i32 {
    let (root, id, berth, handshake) = match args {
        [root, id, berth] => (root, id, berth, None),
        [root, id, berth, h] if h == "handshake" => (root, id, berth, Some(true)),
        [root, id, berth, h] if h == "attach" => (root, id, berth, Some(false)),
        _ => {
            eprintln!(
                "usage: berth-monitor ROOT ID BERTH [handshake|attach] (started by berth, not by hand)"
            );
            return 2;
        }
    };
    // Out of berth's session: a terminal's hang-up or Ctrl-C is not ours.
    let _ = rustix::process::setsid();
    // Keep the report channel (berth reads our stdout) off fds 1 and 2,
    // which the container's pipes take over around create.
    let report_fd = match rustix::io::fcntl_dupfd_cloexec(io::stdout(), 3) {
        Ok(fd) => fd,
        Err(_) => return 1,
    };
    let mut reporter = File::from(report_fd);
    // Likewise berth's `go` (stdin) off fd 0, which the container inherits.
    let control = match rustix::io::fcntl_dupfd_cloexec(io::stdin(), 3) {
        Ok(fd) => File::from(fd),
        Err(_) => return 1,
    };
    if let Ok(null) = File::open("/dev/null") {
        let _ = rustix::stdio::dup2_stdin(&null);
    }
    let monitor = Monitor {
        root: PathBuf::from(root),
        dir: Path::new(root).join("containers").join(id),
        id: id.clone(),
        handshake: handshake.map(|removes| Handshake { control, removes }),
    };
    let code = match monitor.run(&mut reporter) {
        Ok(()) => 0,
        Err(Abandoned) => {
            match &monitor.handshake {
                Some(h) if h.removes => monitor.remove_all(),
                _ => {
                    let _ = lifecycle::delete(&monitor.runtime_root(), &monitor.id, true);
                }
            }
            return 0;
        }
        Err(Failed(e)) => {
            report(
                &mut reporter,
                &serde_json::json!({ "error": e.to_string() }),
            );
            1
        }
    };
    drop(reporter);
    if monitor.config().is_ok_and(|c| c.auto_remove) {
        let _ = Command::new(berth)
            .arg("--root")
            .arg(root)
            .args(["rm", "-f", id])
            .status();
    }
    code
}

/// How the container is attached to: its socket, if it has one.
#[derive(Clone, Copy)]
struct Attach<'a> {
    listener: Option<&'a UnixListener>,
    terminal: bool,
    stdin_once: bool,
}

struct Monitor {
    root: PathBuf,
    dir: PathBuf,
    id: String,
    /// With a handshake: where berth says `go`.
    handshake: Option<Handshake>,
}

struct Handshake {
    control: File,
    /// Whether the container goes too if berth does before `go` (it is not
    /// recorded yet: `run -d`).
    removes: bool,
}

/// Why the monitor stops early.
enum Stop {
    Failed(EngineError),
    /// berth went away before the container was recorded.
    Abandoned,
}
use Stop::{Abandoned, Failed};

impl From<EngineError> for Stop {
    fn from(e: EngineError) -> Self {
        Failed(e)
    }
}

/// How one run of the container's process went.
enum Ended {
    /// With the clients still attached to its terminal.
    Exited(i32, Option<crate::attach::Lingering>),
    /// It could not start: docker's exit status for that, and why.
    NotStarted(i32, String),
}

impl Monitor {
    fn config(&self) -> Result<MonitorConfig, EngineError> {
        let path = self.dir.join(MONITOR_FILE);
        let bytes = fs::read(&path).map_err(|source| EngineError::Io { path, source })?;
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// Removes a container nobody recorded: its process, mount and directory.
    fn remove_all(&self) {
        let _ = lifecycle::delete(&self.runtime_root(), &self.id, true);
        let merged = self.dir.join("merged");
        let _ = rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::DETACH);
        let _ = fs::remove_dir_all(&self.dir);
    }

    fn run(&self, reporter: &mut File) -> Result<(), Stop> {
        if let Some(h) = self.handshake.as_ref().filter(|h| h.removes) {
            await_word(&h.control, b"made\n")?;
        }
        let config = self.config()?;
        let policy = Policy::parse(config.restart.as_deref())?;
        let mut log = LogWriter::open(
            log_path(&self.dir, &self.id),
            LogOptions::parse(&config.log_opts)?,
        )
        .map_err(|source| EngineError::Io {
            path: log_path(&self.dir, &self.id),
            source,
        })?;
        let me = rustix::process::getpid().as_raw_nonzero().get();
        let mut state = RunState::load(&self.dir)?;
        state.monitor_pid = me;
        state.monitor_start = berth_runtime::state::process_start_time(me)
            .map(|(t, _)| t)
            .unwrap_or(0);
        state.restart_count = 0;
        // Recorded at once: a listing must not take this container, made
        // but not started yet, for one nobody looks after.
        state.save(&self.dir)?;
        // A container with a terminal, or an open stdin, is served to
        // `attach` on a socket in its directory, for as long as the
        // monitor lives.
        let terminal = self.has_terminal();
        let attach = if terminal || config.open_stdin {
            std::env::set_current_dir(&self.dir)
                .and_then(|()| crate::attach::bind_here())
                .map(Some)
                .map_err(|source| EngineError::Io {
                    path: self.dir.join(crate::attach::SOCKET),
                    source,
                })?
        } else {
            None
        };
        let mut first = true;
        let mut delay = Duration::from_millis(100);
        loop {
            let ended = self.run_once(
                &mut state,
                &mut log,
                Attach {
                    listener: attach.as_ref(),
                    terminal,
                    stdin_once: config.stdin_once,
                },
                first.then_some(&mut *reporter),
            )?;
            first = false;
            let (code, lingering) = match ended {
                Ended::Exited(code, lingering) => (code, lingering),
                Ended::NotStarted(code, why) => {
                    state.error = why;
                    (code, None)
                }
            };
            state.status = Status::Exited;
            state.exit_code = code;
            state.pid = 0;
            state.finished_at = crate::register::now();
            let stopped = self.dir.join(STOP_MARK).exists();
            let restarts = policy.restarts(code, state.restart_count, stopped);
            if restarts {
                state.status = Status::Restarting;
            }
            state.save(&self.dir)?;
            // Recorded: attached clients may read the exit code now.
            if let Some(l) = lingering {
                l.release();
            }
            if !restarts {
                return Ok(());
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(60));
            state.restart_count += 1;
            if self.dir.join(STOP_MARK).exists() {
                state.status = Status::Exited;
                state.save(&self.dir)?;
                return Ok(());
            }
        }
    }

    /// Creates, starts and watches the container's process once.
    /// Whether the container's process has a terminal (`-t`).
    fn has_terminal(&self) -> bool {
        fs::read(self.dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|spec| spec["process"]["terminal"] == true)
    }

    fn run_once(
        &self,
        state: &mut RunState,
        log: &mut LogWriter,
        attach: Attach<'_>,
        reporter: Option<&mut File>,
    ) -> Result<Ended, Stop> {
        // With a terminal, the runtime hands over the pty's master through
        // a console socket.
        let console = match attach.terminal {
            true => Some(crate::run::ConsoleSocket::new()?),
            false => None,
        };
        let pipe = || {
            rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| EngineError::Io {
                path: "pipe".into(),
                source: e.into(),
            })
        };
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        // `-i` without a terminal: a pipe the monitor feeds.
        let (in_r, in_w) = match (attach.listener, attach.terminal) {
            (Some(_), false) => {
                let (r, w) = pipe()?;
                (Some(r), Some(w))
            }
            _ => (None, None),
        };
        // The container inherits fds 0-2: /dev/null or its stdin pipe, and
        // the two output pipes.
        let created = {
            let _ = rustix::stdio::dup2_stdout(&out_w);
            let _ = rustix::stdio::dup2_stderr(&err_w);
            let make = || {
                create(
                    &self.runtime_root(),
                    &self.id,
                    &self.dir,
                    &CreateOptions {
                        die_with_parent: true,
                        console_socket: console.as_ref().map(|c| c.path.clone()),
                        seccomp_cache: Some(crate::seccomp::cache_dir(&self.root)),
                        ..CreateOptions::default()
                    },
                )
            };
            let created = match &in_r {
                Some(r) => crate::run::with_stdin(r, make),
                None => make(),
            };
            drop(in_r);
            if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            drop((out_w, err_w));
            created
        };
        let master = match (&created, &console) {
            (Ok(_), Some(c)) => Some(c.receive()?),
            _ => None,
        };
        let mut reporter = reporter;
        if let (Ok(c), Some(r), Some(h)) = (&created, reporter.as_mut(), &self.handshake) {
            report(r, &serde_json::json!({ "created": c.saved.pid }));
            await_word(&h.control, b"go\n")?;
        }
        let started = created
            .and_then(|c| lifecycle::start(&self.runtime_root(), &self.id).map(|()| c.saved.pid));
        let pid = match started {
            Ok(pid) => pid,
            Err(e) => {
                let _ = lifecycle::delete(&self.runtime_root(), &self.id, true);
                let status = e.exec_status().unwrap_or(125);
                if let Some(r) = reporter {
                    report(
                        r,
                        &serde_json::json!({ "error": e.to_string(), "exec_status": status }),
                    );
                }
                return Ok(Ended::NotStarted(status, e.to_string()));
            }
        };
        state.status = Status::Running;
        state.pid = pid;
        state.error.clear();
        state.oom_killed = false;
        state.started_at = crate::register::now();
        state.save(&self.dir)?;
        if let Some(r) = reporter {
            report(r, &serde_json::json!({ "pid": pid }));
        }
        // Creating the container ran most of the runtime once; watching
        // it needs little. Keep resident only what the watching touches.
        if let Err(e) = berth_sys::release_idle_memory() {
            tracing::debug!(error = %e, "cannot release the monitor's idle memory");
        }
        let lingering = match (&master, attach.listener) {
            (Some(m), Some(listener)) => {
                drop((out_r, err_r));
                Some(crate::attach::serve_terminal(log, m, listener))
            }
            (_, listener) => {
                let stdin = listener
                    .zip(in_w)
                    .map(|(listener, pipe)| crate::attach::Stdin {
                        listener,
                        pipe,
                        once: attach.stdin_once,
                    });
                crate::attach::pump(log, out_r, err_r, stdin);
                None
            }
        };
        let code = lifecycle::wait_exit(pid).unwrap_or(255);
        // Asked before delete removes the cgroup: docker's OOMKilled.
        state.oom_killed = berth_runtime::state::Container::load(&self.runtime_root(), &self.id)
            .and_then(|c| c.cgroup())
            .is_ok_and(|cg| cg.oom_kills() > 0);
        let _ = lifecycle::delete(&self.runtime_root(), &self.id, true);
        Ok(Ended::Exited(code, lingering))
    }
}

/// Writes a one-line report to berth.
pub(crate) fn report(out: &mut impl std::io::Write, r: &serde_json::Value) {
    let _ = writeln!(out, "{r}");
    let _ = out.flush();
}

/// Waits for berth's `word` (`made`: the container's directory is
/// complete; `go`: the container is recorded); anything else, end of file
/// included, means berth went away.
fn await_word(control: &File, word: &[u8]) -> Result<(), Stop> {
    let mut line = vec![0u8; word.len()];
    match (&*control).read_exact(&mut line) {
        Ok(()) if line == word => Ok(()),
        _ => Err(Abandoned),
    }
}
