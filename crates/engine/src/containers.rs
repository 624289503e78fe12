//! Containers that outlive the command: records in the database, a
//! directory each (`containers/<id>/`: the overlay dirs, config.json, the
//! run state and the logs), and a monitor process per running container
//! (`monitor.rs`) that is its parent, writes its logs and records how it
//! ended. Daemonless: every command reads the record and the state file,
//! and finds a monitor that died (SIGKILL, reboot) by its PID and start
//! time, so `ps` needs no process to answer.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_image::Digest;
use berth_runtime::lifecycle;
use rustix::mount::{unmount, UnmountFlags};
use serde::Deserialize;

use crate::db::ContainerRow;
use crate::lock::ImageUse;
use crate::logs::{log_path, LogOptions, LogReader};
use crate::monitor::MonitorConfig;
use crate::run::{mount_overlay, random_id, RunOptions};
use crate::state::{RunState, Status};
use crate::{Engine, EngineError};

pub use crate::logs::LogEntry;

/// A container as `ps` and `inspect` see it.
#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image_id: Digest,
    /// The image name it was created from.
    pub image: String,
    pub created: String,
    pub options: RunOptions,
    pub state: RunState,
    pub dir: PathBuf,
}

impl Container {
    /// The OCI config the container runs with.
    pub fn spec(&self) -> Result<serde_json::Value, EngineError> {
        let path = self.dir.join("config.json");
        let bytes = fs::read(&path).map_err(|source| EngineError::Io { path, source })?;
        Ok(serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// The container's command as the user sees it (`inspect`'s Path and
    /// Args, `ps`'s COMMAND): its process's arguments, without `--init`'s
    /// init in front. Only they are taken from the config (`ps` reads one
    /// a container, and a config holds the whole seccomp profile).
    pub fn command(&self) -> Result<Vec<String>, EngineError> {
        #[derive(Deserialize)]
        struct Spec {
            process: Process,
        }
        #[derive(Deserialize)]
        struct Process {
            #[serde(default)]
            args: Vec<String>,
        }
        let path = self.dir.join("config.json");
        let bytes = fs::read(&path).map_err(|source| EngineError::Io { path, source })?;
        let args = serde_json::from_slice::<Spec>(&bytes)
            .map(|s| s.process.args)
            .unwrap_or_default();
        Ok(match args.get(..2) {
            Some([init, dashes]) if init == crate::spec::INIT_PATH && dashes == "--" => {
                args[2..].to_vec()
            }
            _ => args,
        })
    }

    pub fn log_path(&self) -> PathBuf {
        log_path(&self.dir, &self.id)
    }
}

/// What the monitor says when it has started (or failed to start) the
/// container: one JSON line on its stdout.
#[derive(Debug, Deserialize)]
pub(crate) struct MonitorReport {
    #[serde(default)]
    pub error: Option<String>,
    /// Docker's exit status for a command that cannot run (126/127).
    #[serde(default)]
    pub exec_status: Option<i32>,
}

impl MonitorReport {
    /// The report as the outcome of starting container `name`.
    fn check(self, name: &str) -> Result<(), EngineError> {
        match self.error {
            None => Ok(()),
            Some(error) => Err(EngineError::StartFailed {
                name: name.to_string(),
                error,
                exec_status: self.exec_status,
            }),
        }
    }
}

/// A container made on disk, not yet recorded: removed on drop unless kept.
/// Its image cannot be removed meanwhile.
struct Pending {
    scratch: crate::run::Scratch,
    row: ContainerRow,
    _image_use: ImageUse,
}

/// A monitor just started: its report line(s) and, in a handshake, the
/// pipe to say `go` on. Dropping it leaves the monitor running on its own
/// (it is reparented when berth exits).
struct MonitorHandle {
    id: String,
    stdin: Option<std::process::ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    child: std::process::Child,
}

impl MonitorHandle {
    /// The monitor's next report.
    fn report(&mut self) -> Result<MonitorReport, EngineError> {
        let mut line = String::new();
        let read = self
            .stdout
            .read_line(&mut line)
            .map_err(|e| EngineError::MonitorFailed {
                id: self.id.clone(),
                reason: e.to_string(),
            })?;
        if read == 0 {
            let status = self.child.try_wait().ok().flatten();
            return Err(EngineError::MonitorFailed {
                id: self.id.clone(),
                reason: format!("it exited without a report ({status:?})"),
            });
        }
        serde_json::from_str(&line).map_err(|e| EngineError::MonitorFailed {
            id: self.id.clone(),
            reason: format!("unreadable report {line:?}: {e}"),
        })
    }

    /// Tells a monitor in a handshake that the container is `made` (run
    /// -d) or to start it: `go`.
    fn say(&mut self, word: &str) -> Result<(), EngineError> {
        let stdin = self.stdin.as_mut().expect("a handshake has a stdin");
        writeln!(stdin, "{word}")
            .and_then(|()| stdin.flush())
            .map_err(|e| EngineError::MonitorFailed {
                id: self.id.clone(),
                reason: format!("telling it {word:?}: {e}"),
            })
    }
}

/// Docker's `adjective_surname` names.
const ADJECTIVES: &[&str] = &[
    "admiring", "brave", "calm", "clever", "eager", "elegant", "festive", "focused", "gallant",
    "happy", "jolly", "keen", "kind", "lucid", "modest", "nifty", "quirky", "serene", "sharp",
    "stoic", "tender", "vibrant", "wizardly", "zealous",
];
const NAMES: &[&str] = &[
    "babbage", "curie", "darwin", "einstein", "euler", "fermi", "galileo", "hopper", "hypatia",
    "kepler", "lamport", "liskov", "lovelace", "mccarthy", "newton", "noether", "pascal",
    "ritchie", "shannon", "thompson", "torvalds", "turing", "wozniak", "yonath",
];

fn generated_name(id: &str) -> String {
    let n = u64::from_str_radix(&id[..12], 16).unwrap_or(0);
    let a = ADJECTIVES[(n % ADJECTIVES.len() as u64) as usize];
    let b = NAMES[((n / 64) % NAMES.len() as u64) as usize];
    format!("{a}_{b}")
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn now() -> String {
    crate::register::now()
}

impl Engine {
    fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    fn runtime_root(&self) -> PathBuf {
        self.root.join("runtime")
    }

    fn load_container(&self, row: ContainerRow) -> Result<Container, EngineError> {
        let dir = self.container_dir(&row.id);
        let mut state = RunState::load(&dir)?;
        // A monitor that died without a word (SIGKILL, a reboot) took its
        // container with it (the container dies with its parent).
        if state.status.is_active() && !state.monitor_alive() {
            state.status = Status::Exited;
            state.pid = 0;
            if state.finished_at == crate::state::ZERO_TIME {
                state.finished_at = now();
            }
            if state.exit_code == 0 {
                state.exit_code = 137;
            }
            state.save(&dir)?;
        }
        Ok(Container {
            options: serde_json::from_str(&row.options).unwrap_or_default(),
            id: row.id,
            name: row.name,
            image_id: row.image_id,
            image: row.image,
            created: row.created,
            state,
            dir,
        })
    }

    /// Every container, newest first. A record whose directory is gone (a
    /// `run -d` killed half-way) is dropped.
    pub fn containers(&mut self) -> Result<Vec<Container>, EngineError> {
        let mut out = Vec::new();
        for row in self.db.containers()? {
            if !self.container_dir(&row.id).is_dir() {
                self.db.delete_container(&row.id)?;
                continue;
            }
            out.push(self.load_container(row)?);
        }
        Ok(out)
    }

    /// A container by name, full ID or unique ID prefix.
    pub fn container(&mut self, name: &str) -> Result<Container, EngineError> {
        let name = name.strip_prefix('/').unwrap_or(name);
        if name.is_empty() {
            return Err(EngineError::NoSuchContainer(name.to_string()));
        }
        let mut rows = self.db.find_containers(name)?;
        rows.retain(|r| self.container_dir(&r.id).is_dir());
        let exact = rows.iter().position(|r| r.name == name || r.id == name);
        let row = match (exact, rows.len()) {
            (Some(i), _) => rows.swap_remove(i),
            (None, 1) => rows.remove(0),
            (None, 0) => return Err(EngineError::NoSuchContainer(name.to_string())),
            (None, count) => {
                return Err(EngineError::AmbiguousContainer {
                    prefix: name.to_string(),
                    count,
                })
            }
        };
        self.load_container(row)
    }

    /// `create`: the container's directory, then its record. Returns its ID.
    pub fn create_container(&mut self, opts: &RunOptions) -> Result<String, EngineError> {
        let mut pending = self.prepare_new(opts, random_id()?)?;
        self.record(&mut pending.row, opts.name.is_none())?;
        pending.scratch.keep();
        Ok(pending.row.id)
    }

    /// `run -d`: a container that runs, or none. The monitor starts (and
    /// loads) while berth makes the container's directory; told `made`,
    /// it creates the container's process and waits while the record is
    /// written (at the same time: a container that cannot start is kept,
    /// as docker's); told `go`, it starts it. A berth killed before the
    /// record leaves the monitor to remove what was made; one killed after
    /// it leaves a record whose directory the monitor removes, and which
    /// the next listing drops.
    pub fn run_detached(&mut self, opts: &RunOptions) -> Result<String, EngineError> {
        let id = random_id()?;
        let mut monitor = self.spawn_monitor(&id, Some("handshake"))?;
        let mut pending = self.prepare_new(opts, id.clone())?;
        monitor.say("made")?;
        self.record(&mut pending.row, opts.name.is_none())?;
        pending.scratch.keep();
        monitor.report()?.check(&pending.row.name)?;
        monitor.say("go")?;
        monitor.report()?.check(&pending.row.name)?;
        Ok(id)
    }

    /// Checks the options and the name, and makes the container's
    /// directory; nothing is recorded yet.
    fn prepare_new(&mut self, opts: &RunOptions, id: String) -> Result<Pending, EngineError> {
        LogOptions::parse(&opts.log_opts)?;
        crate::restart::Policy::parse(opts.restart.as_deref())?;
        if opts.auto_remove && opts.restart.as_deref().is_some_and(|r| r != "no") {
            return Err(EngineError::RunFlag {
                flag: "--restart".into(),
                value: opts.restart.clone().unwrap_or_default(),
                reason: "conflicting options: --restart and --rm".into(),
            });
        }
        let image_use = ImageUse::shared(&self.root)?;
        let image = self.resolve(&opts.image)?.id;
        let name = match &opts.name {
            Some(n) => {
                let n = n.strip_prefix('/').unwrap_or(n);
                if !valid_name(n) {
                    return Err(EngineError::RunFlag {
                        flag: "--name".into(),
                        value: n.to_string(),
                        reason: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed".into(),
                    });
                }
                n.to_string()
            }
            None => self.free_generated_name(&id)?,
        };
        self.check_name_free(&name)?;
        self.sweep_orphans()?;
        let scratch = self.prepare_container(&id, &image, opts)?;
        RunState::default().save(&scratch.dir)?;
        let monitor = MonitorConfig {
            restart: opts.restart.clone(),
            log_opts: opts.log_opts.clone(),
            auto_remove: opts.auto_remove,
            open_stdin: opts.interactive && !opts.tty,
            stdin_once: opts.interactive && !opts.detach,
        };
        let path = scratch.dir.join(crate::monitor::MONITOR_FILE);
        fs::write(&path, serde_json::to_vec(&monitor).expect("serialises"))
            .map_err(|source| EngineError::Io { path, source })?;
        let row = ContainerRow {
            id,
            name,
            image_id: image,
            image: opts.image.clone(),
            created: now(),
            options: serde_json::to_string(opts).expect("options serialise"),
        };
        Ok(Pending {
            scratch,
            row,
            _image_use: image_use,
        })
    }

    /// A generated name no container has: docker's retry, a digit appended,
    /// then the ID's first digits.
    fn free_generated_name(&mut self, id: &str) -> Result<String, EngineError> {
        let base = generated_name(id);
        let candidates = std::iter::once(base.clone())
            .chain(id.bytes().take(8).map(|b| format!("{base}{}", b % 10)))
            .chain(std::iter::once(format!("{base}_{}", &id[..8])));
        for name in candidates {
            if self.check_name_free(&name).is_ok() {
                return Ok(name);
            }
        }
        Ok(format!("{base}_{id}"))
    }

    /// A name is taken by a container whose directory exists; a record
    /// without one (a `run -d` killed half-way) is dropped here.
    fn check_name_free(&mut self, name: &str) -> Result<(), EngineError> {
        for row in self.db.find_containers(name)? {
            if row.name != name {
                continue;
            }
            if self.container_dir(&row.id).is_dir() {
                return Err(EngineError::NameInUse {
                    name: name.to_string(),
                    id: row.id,
                });
            }
            self.db.delete_container(&row.id)?;
        }
        Ok(())
    }

    /// Records a container. A generated name that a concurrent create took
    /// meanwhile is replaced by another.
    fn record(&mut self, row: &mut ContainerRow, generated: bool) -> Result<(), EngineError> {
        for _ in 0..10 {
            if self.db.insert_container(row)? {
                return Ok(());
            }
            if !generated {
                break;
            }
            row.name = self.free_generated_name(&row.id)?;
        }
        let other = self
            .db
            .find_containers(&row.name)?
            .into_iter()
            .find(|r| r.name == row.name)
            .map(|r| r.id)
            .unwrap_or_default();
        Err(EngineError::NameInUse {
            name: row.name.clone(),
            id: other,
        })
    }

    /// Removes container directories that have no record, no live monitor
    /// and no live process (a foreground `run --rm` has neither record nor
    /// monitor) and are older than a minute (a create takes well under a
    /// second): what a berth killed while making one left.
    fn sweep_orphans(&mut self) -> Result<(), EngineError> {
        let dir = self.root.join("containers");
        let Ok(entries) = fs::read_dir(&dir) else {
            return Ok(());
        };
        let known: std::collections::HashSet<String> =
            self.db.containers()?.into_iter().map(|r| r.id).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > Duration::from_secs(60)));
            let running = || {
                berth_runtime::state::Container::load(&self.runtime_root(), &name)
                    .is_ok_and(|c| c.alive())
            };
            if known.contains(&name)
                || !old
                || RunState::load(&entry.path())?.monitor_alive()
                || running()
            {
                continue;
            }
            tracing::info!(container = %name, "removing a container left half-made");
            let merged = entry.path().join("merged");
            if is_mount_point(&merged) {
                let _ = unmount(&merged, UnmountFlags::DETACH);
            }
            let _ = lifecycle::delete(&self.runtime_root(), &name, true);
            let _ = fs::remove_dir_all(entry.path());
        }
        Ok(())
    }

    /// `start`: hands the container to a new monitor, which runs it. Returns
    /// once it runs (or failed to). Starting a running container does nothing.
    pub fn start_container(&mut self, name: &str) -> Result<Container, EngineError> {
        let c = self.container(name)?;
        if c.state.status.is_active() {
            return Ok(c);
        }
        self.ready_to_start(&c)?;
        self.spawn_monitor(&c.id, None)?.report()?.check(&c.name)?;
        self.container(&c.id)
    }

    /// The containers `start --all` starts: every one not running, or with
    /// `restart-policy=` filters (several are ORed) those whose policy is
    /// one of them, except an unless-stopped one the user stopped.
    /// With `restart-policy=always --filter restart-policy=unless-stopped`
    /// it is what docker's daemon restarts when it starts: what berth's
    /// boot unit runs, as no daemon outlives a reboot.
    pub fn containers_to_start(&mut self, filters: &[String]) -> Result<Vec<String>, EngineError> {
        use crate::restart::Policy;
        let mut policies = Vec::new();
        for f in filters {
            let bad = |reason: &str| EngineError::Filter {
                filter: f.clone(),
                reason: reason.into(),
            };
            let value = f
                .strip_prefix("restart-policy=")
                .ok_or_else(|| bad("start --all takes restart-policy=POLICY filters"))?;
            policies.push(
                Policy::parse(Some(value))
                    .map_err(|_| bad("expected no, always, unless-stopped or on-failure"))?,
            );
        }
        let same = |a: Policy, b: Policy| std::mem::discriminant(&a) == std::mem::discriminant(&b);
        let mut names = Vec::new();
        for c in self.containers()?.into_iter().rev() {
            let policy = Policy::parse(c.options.restart.as_deref())?;
            let stopped = c.dir.join(crate::monitor::STOP_MARK).exists();
            let wanted = policies.is_empty()
                || (policies.iter().any(|p| same(*p, policy))
                    && !(policy == Policy::UnlessStopped && stopped));
            if c.state.status.is_active() || !wanted {
                continue;
            }
            names.push(c.name);
        }
        Ok(names)
    }

    /// `start -a` (and `run`) of a container with a terminal: connected to
    /// it before its process runs, so that nothing it prints is missed.
    pub fn start_attached(
        &mut self,
        name: &str,
    ) -> Result<(Container, std::os::unix::net::UnixStream), EngineError> {
        let c = self.container(name)?;
        let connect = |c: &Container| {
            crate::attach::connect(&c.dir).map_err(|source| EngineError::Io {
                path: c.dir.join(crate::attach::SOCKET),
                source,
            })
        };
        if c.state.status.is_active() {
            let sock = connect(&c)?;
            return Ok((c, sock));
        }
        self.ready_to_start(&c)?;
        let mut monitor = self.spawn_monitor(&c.id, Some("attach"))?;
        monitor.report()?.check(&c.name)?;
        let sock = connect(&c)?;
        monitor.say("go")?;
        monitor.report()?.check(&c.name)?;
        Ok((self.container(&c.id)?, sock))
    }

    /// What a container needs before a monitor starts it again.
    fn ready_to_start(&mut self, c: &Container) -> Result<(), EngineError> {
        // After a reboot the overlay is gone: mount it again.
        let merged = c.dir.join("merged");
        if !is_mount_point(&merged) {
            let chains = self.chains_of(&c.image_id)?;
            let dirs = self.layers.container_mount(&chains, &c.dir);
            mount_overlay(&dirs.options, &merged, c.options.auto_remove)?;
        }
        // Leftovers of a monitor that died: the runtime's record of the
        // old process, and the "stop was asked for" mark.
        let _ = lifecycle::delete(&self.runtime_root(), &c.id, true);
        let _ = fs::remove_file(c.dir.join(crate::monitor::STOP_MARK));
        Ok(())
    }

    /// Starts a monitor for container `id`; `handshake` is its mode
    /// (`handshake` or `attach`: it creates the container's process,
    /// reports, and starts it only on `go`), if any.
    fn spawn_monitor(
        &self,
        id: &str,
        handshake: Option<&str>,
    ) -> Result<MonitorHandle, EngineError> {
        let exe = std::env::current_exe().map_err(|source| EngineError::Io {
            path: "/proc/self/exe".into(),
            source,
        })?;
        let monitor = exe.with_file_name("berth-monitor");
        let mut cmd = Command::new(&monitor);
        cmd.arg(&self.root).arg(id).arg(&exe);
        if let Some(mode) = handshake {
            cmd.arg(mode);
        }
        let mut child = cmd
            .stdin(if handshake.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|source| EngineError::Io {
                path: monitor.clone(),
                source,
            })?;
        Ok(MonitorHandle {
            id: id.to_string(),
            stdin: child.stdin.take(),
            stdout: BufReader::new(child.stdout.take().expect("piped")),
            child,
        })
    }

    /// `kill`: sends `signal` to the container's process.
    pub fn kill_container(&mut self, name: &str, signal: &str) -> Result<Container, EngineError> {
        let c = self.container(name)?;
        if !c.state.status.is_active() {
            return Err(EngineError::NotRunning(c.name));
        }
        let sig = lifecycle::parse_signal(signal)?;
        lifecycle::kill(&self.runtime_root(), &c.id, sig, false)?;
        Ok(c)
    }

    /// `stop`: the stop signal (`signal`, else the container's, else the
    /// image's, else SIGTERM), then SIGKILL after `timeout` seconds (the
    /// container's `--stop-timeout`, else 10). Returns when it has exited.
    pub fn stop_container(
        &mut self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<Container, EngineError> {
        let c = self.container(name)?;
        if !c.state.status.is_active() {
            return Ok(c);
        }
        // The monitor must not restart what the user stopped.
        let mark = c.dir.join(crate::monitor::STOP_MARK);
        fs::write(&mark, b"").map_err(|source| EngineError::Io { path: mark, source })?;
        let signal = signal
            .map(String::from)
            .or_else(|| c.options.stop_signal.clone())
            .or_else(|| self.image_stop_signal(&c.image_id))
            .unwrap_or_else(|| "SIGTERM".into());
        let timeout = timeout.or(c.options.stop_timeout).unwrap_or(10).max(0);
        let runtime = self.runtime_root();
        let sig = lifecycle::parse_signal(&signal)?;
        let _ = lifecycle::kill(&runtime, &c.id, sig, false);
        if !self.wait_until_stopped(&c, Duration::from_secs(timeout as u64))? {
            let _ = lifecycle::kill(&runtime, &c.id, rustix::process::Signal::KILL, false);
            self.wait_until_stopped(&c, Duration::from_secs(30))?;
        }
        self.container(&c.id)
    }

    fn image_stop_signal(&self, image: &Digest) -> Option<String> {
        self.config_of(image).ok()?.config.stop_signal
    }

    /// Waits until the monitor of `c` has recorded its end (or died).
    fn wait_until_stopped(&self, c: &Container, limit: Duration) -> Result<bool, EngineError> {
        let deadline = Instant::now() + limit;
        loop {
            let s = RunState::load(&c.dir)?;
            if !s.status.is_active() || !s.monitor_alive() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `wait`: blocks until the container stops; returns its exit code.
    pub fn wait_container(&mut self, name: &str) -> Result<i32, EngineError> {
        self.exit_code_when(name, |s| !s.status.is_active() && !s.monitor_alive())
    }

    /// The container's exit code once its state satisfies `ended`.
    fn exit_code_when(
        &mut self,
        name: &str,
        ended: impl Fn(&RunState) -> bool,
    ) -> Result<i32, EngineError> {
        let id = self.container(name)?.id;
        loop {
            let s = self.container(&id)?.state;
            if ended(&s) {
                return Ok(s.exit_code);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit code of a container whose terminal an attached client saw
    /// close: its monitor has recorded it by then, and waits for the client
    /// before it removes a `--rm` container (so, unlike `wait`, this does
    /// not wait for the monitor to end).
    pub fn exit_code_after_attach(&mut self, name: &str) -> Result<i32, EngineError> {
        self.exit_code_when(name, |s| !s.status.is_active() || !s.monitor_alive())
    }

    /// `rm`: a running container only with `force` (it is killed first).
    /// Leaves no mount, cgroup, process or directory behind.
    pub fn remove_container(&mut self, name: &str, force: bool) -> Result<String, EngineError> {
        let c = self.container(name)?;
        if c.state.status.is_active() {
            if !force {
                return Err(EngineError::ContainerRunning(c.name));
            }
            let mark = c.dir.join(crate::monitor::STOP_MARK);
            let _ = fs::write(&mark, b"");
            let _ = lifecycle::kill(
                &self.runtime_root(),
                &c.id,
                rustix::process::Signal::KILL,
                false,
            );
            self.wait_until_stopped(&c, Duration::from_secs(30))?;
        }
        self.destroy(&c)?;
        Ok(c.name)
    }

    /// Removes what is left of a stopped container: the runtime's state,
    /// the overlay mount, the directory, the record.
    fn destroy(&mut self, c: &Container) -> Result<(), EngineError> {
        let _ = lifecycle::delete(&self.runtime_root(), &c.id, true);
        let merged = c.dir.join("merged");
        if is_mount_point(&merged) {
            unmount(&merged, UnmountFlags::DETACH).map_err(|e| EngineError::Io {
                path: merged.clone(),
                source: e.into(),
            })?;
        }
        // Renamed out of the way first, so a half-removed directory is
        // never taken for a container.
        let doomed = self.root.join("tmp").join(format!("removing-{}", c.id));
        match fs::rename(&c.dir, &doomed) {
            Ok(()) => fs::remove_dir_all(&doomed).map_err(|source| EngineError::Io {
                path: doomed,
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(EngineError::Io {
                    path: c.dir.clone(),
                    source,
                })
            }
        }
        self.db.delete_container(&c.id)?;
        Ok(())
    }

    /// `rename`.
    pub fn rename_container(&mut self, name: &str, new_name: &str) -> Result<(), EngineError> {
        let c = self.container(name)?;
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if !valid_name(new_name) {
            return Err(EngineError::RunFlag {
                flag: "NEW_NAME".into(),
                value: new_name.to_string(),
                reason: "only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed".into(),
            });
        }
        if !self.db.rename_container(&c.id, new_name)? {
            let other = self
                .db
                .find_containers(new_name)?
                .into_iter()
                .find(|r| r.name == new_name)
                .map(|r| r.id)
                .unwrap_or_default();
            return Err(EngineError::NameInUse {
                name: new_name.to_string(),
                id: other,
            });
        }
        Ok(())
    }

    /// `container prune`: every container not running. Returns their IDs.
    pub fn prune_containers(&mut self) -> Result<Vec<String>, EngineError> {
        let mut removed = Vec::new();
        for c in self.containers()? {
            if !c.state.status.is_active() {
                self.destroy(&c)?;
                removed.push(c.id);
            }
        }
        Ok(removed)
    }

    /// A container's log entries so far, and a reader to follow them.
    pub fn container_logs(
        &mut self,
        name: &str,
    ) -> Result<(Container, Vec<LogEntry>, LogReader), EngineError> {
        let c = self.container(name)?;
        let mut reader = LogReader::new(c.log_path());
        let entries = reader.read_all()?;
        Ok((c, entries, reader))
    }

    /// A running container to attach to, and whether it has a terminal
    /// (served by its monitor) or only output (followed in its log).
    pub fn attach_target(&mut self, name: &str) -> Result<(Container, bool), EngineError> {
        let c = self.container(name)?;
        if !c.state.status.is_active() {
            return Err(EngineError::NotRunning(c.name));
        }
        let tty = c.options.tty;
        Ok((c, tty))
    }

    /// Whether a container is still running (for `logs -f`, `attach`).
    pub fn container_active(&mut self, id: &str) -> Result<bool, EngineError> {
        let c = self.container(id)?;
        Ok(c.state.status.is_active())
    }

    /// `ps -s`: the bytes a container wrote (its upper directory) and,
    /// with its image's, its virtual size.
    pub fn container_size(&self, c: &Container) -> Result<(u64, u64), EngineError> {
        let written = dir_size(&c.dir.join("upper"));
        let image = self.db.image(&c.image_id)?.map_or(0, |r| r.size);
        Ok((written, written + image))
    }

    /// The IDs of containers made from `image`.
    /// Those recorded, and those running with `--rm` in the foreground,
    /// which have no record: found in the mount table, as overlays on
    /// `containers/ID/merged` whose top lower directory is the image's top
    /// layer. (The caller holds the image-use lock: no container is
    /// between choosing its image and being seen in one or the other.)
    pub(crate) fn containers_using(&self, image: &Digest) -> Result<Vec<String>, EngineError> {
        let mut ids = self.db.containers_of_image(image)?;
        if let Some(top) = self.chains_of(image)?.last() {
            let top = self.layers.layer_dir(top).join("diff");
            let containers = self.root.join("containers");
            let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            for (target, options) in overlay_mounts(&mountinfo) {
                let lower = options
                    .split(',')
                    .find_map(|o| o.strip_prefix("lowerdir="))
                    .and_then(|l| l.split(':').next());
                let id = target
                    .strip_suffix("/merged")
                    .and_then(|dir| Path::new(dir).strip_prefix(&containers).ok())
                    .and_then(|id| id.to_str());
                if let (Some(lower), Some(id)) = (lower, id) {
                    if Path::new(lower) == top && !ids.iter().any(|i| i == id) {
                        ids.push(id.to_string());
                    }
                }
            }
        }
        Ok(ids)
    }
}

/// The bytes of the files under `path` (not following symlinks).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Whether `path` is a mount point (its device differs from its parent's).
/// The overlay mounts in a mountinfo table: (mount point, options), octal
/// escapes of the mount point undone.
fn overlay_mounts(mountinfo: &str) -> impl Iterator<Item = (String, &str)> {
    mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        let mut fs = fs.split(' ');
        if fs.next()? != "overlay" {
            return None;
        }
        let options = fs.nth(1)?;
        let target = mount.split(' ').nth(4)?;
        Some((unescape_octal(target), options))
    })
}

/// `\040` and the like, as the kernel writes spaces in mount tables.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| {
                std::str::from_utf8(d)
                    .ok()
                    .and_then(|d| u8::from_str_radix(d, 8).ok())
            });
        match code {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(path), path.parent().map(fs::metadata)) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

impl Engine {
    /// The PIDs (host's view) of every process of a running container.
    pub fn container_pids(&mut self, name: &str) -> Result<Vec<i32>, EngineError> {
        let c = self.container(name)?;
        if !c.state.status.is_active() {
            return Err(EngineError::NotRunning(c.name));
        }
        let rc = berth_runtime::state::Container::load(&self.runtime_root(), &c.id)?;
        Ok(rc.cgroup()?.pids())
    }

    /// `pause` / `unpause`: freezes or thaws every process of a container.
    pub fn pause_container(&mut self, name: &str, pause: bool) -> Result<(), EngineError> {
        let c = self.container(name)?;
        let runtime = self.runtime_root();
        match (c.state.status, pause) {
            (Status::Running, true) => lifecycle::pause(&runtime, &c.id)?,
            (Status::Paused, false) => lifecycle::resume(&runtime, &c.id)?,
            (_, true) => return Err(EngineError::NotRunning(c.name)),
            (_, false) => {
                return Err(EngineError::RunFlag {
                    flag: "unpause".into(),
                    value: c.name,
                    reason: "the container is not paused".into(),
                })
            }
        }
        let mut state = c.state.clone();
        state.status = if pause {
            Status::Paused
        } else {
            Status::Running
        };
        state.save(&c.dir)
    }
}

/// What `exec` runs, flag for flag as docker's.
#[derive(Debug, Default, Clone)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    /// `-t`: the process gets a terminal, handed to the caller's relay.
    pub tty: bool,
    /// With `-t`, the caller's terminal size (rows, columns): the pty has
    /// it before the process runs.
    pub console_size: Option<[u16; 2]>,
}

impl Engine {
    /// `exec`: a new process in a running container, in all its
    /// namespaces and its cgroup. Returns its exit code (0 at once with
    /// `detach`).
    pub fn exec_in_container(
        &mut self,
        name: &str,
        opts: &ExecOptions,
        terminal: Option<&mut dyn FnMut(fs::File)>,
    ) -> Result<i32, EngineError> {
        let c = self.container(name)?;
        if c.state.status != Status::Running {
            return Err(EngineError::NotRunning(c.name));
        }
        let runtime = self.runtime_root();
        let rc = berth_runtime::state::Container::load(&runtime, &c.id)?;
        let user = opts
            .user
            .as_deref()
            .map(|u| crate::spec::resolve_user(&c.dir.join("merged"), u))
            .transpose()?;
        let mut process = berth_runtime::exec::process_from_bundle(
            &rc,
            opts.command.clone(),
            &opts.env,
            opts.workdir.as_deref().map(Path::new),
            user,
        )?;
        let console = match (opts.tty && !opts.detach, &terminal) {
            (true, Some(_)) => Some(crate::run::ConsoleSocket::new()?),
            _ => None,
        };
        process.terminal = console.is_some();
        process.console_size = opts
            .console_size
            .filter(|_| process.terminal)
            .map(|[rows, cols]| (rows, cols));
        let exec = berth_runtime::exec::ExecOptions {
            process,
            detach: opts.detach,
            pid_file: None,
            console_socket: console.as_ref().map(|c| c.path.clone()),
            seccomp_cache: Some(crate::seccomp::cache_dir(&self.root)),
        };
        let spawn = || berth_runtime::exec::spawn(&runtime, &c.id, &exec);
        let spawned = if opts.interactive && !opts.detach {
            spawn()
        } else {
            crate::run::with_null_stdin(spawn)
        }?;
        if let (Some(console), Some(relay)) = (&console, terminal) {
            relay(console.receive()?);
        }
        Ok(spawned.wait()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_mounts_are_read_from_mountinfo() {
        let table = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
90 22 0:50 / /s/containers/ab\\040c/merged rw,relatime - overlay overlay rw,lowerdir=/s/layers/x/diff:/s/layers/y/diff,upperdir=/u,workdir=/w
91 22 0:51 / /proc rw - proc proc rw";
        let mounts: Vec<(String, &str)> = overlay_mounts(table).collect();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].0, "/s/containers/ab c/merged");
        assert!(mounts[0].1.contains("lowerdir=/s/layers/x/diff:"));
    }

    #[test]
    fn octal_escapes_are_undone() {
        assert_eq!(unescape_octal(r"a\040b\011c\134"), "a b\tc\\");
        assert_eq!(unescape_octal(r"no\escape\9"), r"no\escape\9");
    }
}
