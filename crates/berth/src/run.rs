//! run and create: a container from an image, with docker's exit codes
//! (125 when berth failed, 126 when the command cannot run, 127 when it is
//! not found, else the container's own).

use std::io::{IsTerminal, Write};
use std::time::Duration;

use berth_engine::{Engine, EngineError, LogReader, RunOptions};

use berth_image::reference::familiar;
use berth_image::ImageRef;

use crate::cli::RunArgs;
use crate::registry::Files;
use crate::signals::SignalPipe;
use crate::CliError;

const EXIT_BERTH_FAILED: u8 = 125;

/// The flags as the engine takes them. As docker: `--env-file` first,
/// then `-e`, the later winning.
fn options(a: &RunArgs) -> Result<RunOptions, CliError> {
    if a.tty && a.interactive && !a.detach && !std::io::stdin().is_terminal() {
        return Err(CliError::Usage("the input device is not a TTY".to_string()));
    }
    if let Some(d) = a.log_driver.as_deref().filter(|d| *d != "json-file") {
        return Err(CliError::Usage(format!(
            "--log-driver {d}: berth writes json-file logs only"
        )));
    }
    let mut env = Vec::new();
    for path in &a.env_file {
        let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
            path: path.display().to_string(),
            source,
        })?;
        env.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    env.extend(a.env.iter().cloned());
    Ok(RunOptions {
        image: a.image.clone(),
        name: a.name.clone(),
        auto_remove: a.rm,
        restart: a.restart.clone(),
        labels: a.label.clone(),
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        log_opts: a.log_opt.clone(),
        interactive: a.interactive,
        detach: a.detach,
        console_size: a.tty.then(crate::terminal::size).flatten(),
        tty: a.tty,
        command: a.command.clone(),
        entrypoint: a.entrypoint.clone(),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        memory: a.memory,
        cpus: a.cpus,
        memory_reservation: a.memory_reservation,
        memory_swap: a.memory_swap,
        cpu_shares: a.cpu_shares,
        cpuset_cpus: a.cpuset_cpus.clone(),
        pids_limit: a.pids_limit,
        volumes: a.volume.clone(),
        tmpfs: a.tmpfs.clone(),
        mounts: a.mount.clone(),
        read_only: a.read_only,
        privileged: a.privileged,
        init: a.init,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        security_opt: a.security_opt.clone(),
        ulimits: a.ulimit.clone(),
        network: a.network.clone(),
        cpu_quota: a.cpu_quota,
        cpu_period: a.cpu_period,
        shm_size: a.shm_size,
    })
}

/// An engine error as `run` reports it: one line, and docker's exit code.
fn failed(e: EngineError) -> CliError {
    eprintln!("berth: {e}");
    let code = match &e {
        EngineError::Runtime(r) => r.exec_status(),
        EngineError::StartFailed { exec_status, .. } => *exec_status,
        _ => None,
    }
    .unwrap_or(EXIT_BERTH_FAILED as i32);
    CliError::Exit(u8::try_from(code).unwrap_or(EXIT_BERTH_FAILED))
}

/// `--pull`: the image from its registry when it is missing (or always).
fn pull_if_needed(engine: &mut Engine, files: &Files, a: &RunArgs) -> Result<(), CliError> {
    let present = engine.has_image(&a.image)?;
    match (a.pull.as_str(), present) {
        ("never", _) | ("missing", true) => Ok(()),
        (_, present) => {
            if !present {
                let shown = ImageRef::parse(&a.image)
                    .map(|r| familiar(&r.to_string()).to_string())
                    .unwrap_or_else(|_| a.image.clone());
                eprintln!("Unable to find image '{shown}' locally");
            }
            crate::registry::pull_for_run(engine, &files.remote()?, &a.image).map_err(failed_cli)
        }
    }
}

/// A failed pull as `run` reports it: one line, exit 125.
fn failed_cli(e: CliError) -> CliError {
    match e {
        CliError::Engine(e) => failed(e),
        other => other,
    }
}

pub fn create(engine: &mut Engine, files: &Files, a: &RunArgs) -> Result<(), CliError> {
    if a.detach {
        return Err(CliError::Usage(
            "unknown flag: --detach (create never starts the container)".to_string(),
        ));
    }
    let opts = options(a)?;
    pull_if_needed(engine, files, a)?;
    let id = engine.create_container(&opts).map_err(failed)?;
    println!("{id}");
    Ok(())
}

pub fn run(engine: &mut Engine, files: &Files, a: &RunArgs) -> Result<(), CliError> {
    let opts = options(a)?;
    pull_if_needed(engine, files, a)?;
    if opts.auto_remove && !a.detach && !opts.tty {
        // The fast path: the runtime in-process, no record, no monitor.
        // (With a terminal the monitor holds it, so that the detach keys
        // can leave the container running.)
        return match engine.run_removed(&opts) {
            Ok(code) => Err(exit_with(code)),
            Err(e) => Err(failed(e)),
        };
    }
    if a.detach {
        let id = engine.run_detached(&opts).map_err(failed)?;
        println!("{id}");
        return Ok(());
    }
    let id = engine.create_container(&opts).map_err(failed)?;
    if opts.tty {
        return start_attached(engine, &id, opts.interactive);
    }
    let (_, _, output) = engine.container_logs(&id)?;
    engine.start_container(&id).map_err(failed)?;
    // In the foreground: what the container prints, until it exits.
    let code = follow_to_end(engine, &id, output, opts.interactive)?;
    Err(exit_with(code))
}

/// Starts a container with a terminal and attaches to it (connected
/// before its process runs); exits with its code, or 0 when the user
/// detached.
pub fn start_attached(engine: &mut Engine, name: &str, input: bool) -> Result<(), CliError> {
    let (c, sock) = engine.start_attached(name).map_err(failed)?;
    on_terminal(engine, &c, sock, input)
}

/// Attaches to a running container (its terminal, or its output from now
/// on, as docker's); exits with its code, or 0 when the user detached.
/// With `input`, berth's stdin goes to the container's (if it has one
/// open: `-i`).
pub fn attach_to(engine: &mut Engine, name: &str, input: bool) -> Result<(), CliError> {
    let (c, tty) = engine.attach_target(name)?;
    if !tty {
        let (_, _, output) = engine.container_logs(&c.id)?;
        let code = follow_to_end(engine, &c.id, output, input)?;
        return Err(exit_with(code));
    }
    let sock = berth_engine::attach::connect(&c.dir).map_err(|source| socket_err(&c, source))?;
    on_terminal(engine, &c, sock, input)
}

/// berth's exit for a container's exit code.
pub fn exit_with(code: i32) -> CliError {
    CliError::Exit(u8::try_from(code).unwrap_or(255))
}

fn socket_err(c: &berth_engine::Container, source: std::io::Error) -> CliError {
    CliError::Io {
        path: c
            .dir
            .join(berth_engine::attach::SOCKET)
            .display()
            .to_string(),
        source,
    }
}

/// The user's terminal on the container's until it ends or the user
/// detaches.
fn on_terminal(
    engine: &mut Engine,
    c: &berth_engine::Container,
    sock: std::os::unix::net::UnixStream,
    input: bool,
) -> Result<(), CliError> {
    match crate::terminal::attach(sock, input).map_err(|source| socket_err(c, source))? {
        crate::terminal::Attached::Detached => Ok(()),
        crate::terminal::Attached::Ended => {
            let code = engine.exit_code_after_attach(&c.id)?;
            Err(exit_with(code))
        }
    }
}

/// Prints a container's output from where `reader` is in its log (stdout
/// to stdout, stderr to stderr) until it exits; returns its exit code.
/// With `input`, a container with an open stdin (`-i` without `-t`) gets
/// berth's, through its monitor, until berth's ends.
pub fn follow_to_end(
    engine: &mut Engine,
    id: &str,
    mut reader: LogReader,
    input: bool,
) -> Result<i32, CliError> {
    // docker's --sig-proxy: SIGINT and SIGTERM sent to berth go to the
    // container's process instead of ending berth.
    let proxied = SignalProxy::new();
    let c = engine.container(id)?;
    let open_stdin = c.options.interactive && !c.options.tty;
    let mut input = match input && open_stdin && c.state.status.is_active() {
        true => Some(berth_engine::attach::connect(&c.dir).map_err(|e| socket_err(&c, e))?),
        false => None,
    };
    loop {
        let active = engine.container_active(id)?;
        write_entries(&reader.read_new()?, false);
        if !active {
            break;
        }
        for signal in proxied.received() {
            let _ = engine.kill_container(id, signal);
        }
        match input.as_mut() {
            Some(sock) => {
                if !send_input(sock, Duration::from_millis(20)) {
                    input = None;
                }
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    Ok(engine.wait_container(id)?)
}

/// Waits up to `wait` for berth's stdin and sends what came to the
/// container's monitor; false once it has ended (and the monitor was told).
fn send_input(sock: &mut std::os::unix::net::UnixStream, wait: Duration) -> bool {
    use berth_engine::attach::{frame, INPUT_ENDED, KEYS};
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let stdin = std::io::stdin();
    let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
    let timeout = Timespec::try_from(wait).ok();
    if !matches!(poll(&mut fds, timeout.as_ref()), Ok(n) if n > 0) {
        return true;
    }
    let mut buf = [0u8; 16 * 1024];
    match rustix::io::read(&stdin, &mut buf) {
        Ok(n) if n > 0 => sock.write_all(&frame(KEYS, &buf[..n])).is_ok(),
        Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => true,
        _ => {
            let _ = sock.write_all(&frame(INPUT_ENDED, &[]));
            false
        }
    }
}

/// SIGINT and SIGTERM caught for the container.
struct SignalProxy {
    pipes: Vec<(&'static str, SignalPipe)>,
}

impl SignalProxy {
    fn new() -> Self {
        let pipes = [
            ("SIGINT", signal_hook::consts::SIGINT),
            ("SIGTERM", signal_hook::consts::SIGTERM),
        ]
        .into_iter()
        .filter_map(|(name, signal)| SignalPipe::new(signal).map(|p| (name, p)))
        .collect();
        SignalProxy { pipes }
    }

    /// The signals that arrived since the last call.
    fn received(&self) -> Vec<&'static str> {
        self.pipes
            .iter()
            .filter(|(_, p)| p.fired())
            .map(|(name, _)| *name)
            .collect()
    }
}

/// Writes log entries to stdout or stderr by their stream.
pub fn write_entries(entries: &[berth_engine::LogEntry], timestamps: bool) {
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for e in entries {
        let w: &mut dyn Write = if e.stream == "stderr" {
            &mut err
        } else {
            &mut out
        };
        if timestamps {
            let _ = write!(w, "{} ", e.time);
        }
        let _ = w.write_all(e.log.as_bytes());
    }
    let _ = out.flush();
}
