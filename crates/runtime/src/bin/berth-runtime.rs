//! `berth-runtime`: runc's command line over berth's OCI runtime, so that
//! containerd, docker and podman can use it as they use runc or crun.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use berth_runtime::create::{create, CreateOptions};
use berth_runtime::lifecycle;
use berth_runtime::state::{Container, Status};
use berth_runtime::RuntimeError;

#[derive(Parser)]
#[command(
    name = "berth-runtime",
    version,
    about = "An OCI runtime with runc's command line"
)]
struct Cli {
    /// Where container state lives
    #[arg(long, global = true, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Also write errors to this file (containerd reads it)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Accepted for runc compatibility; berth-runtime drives cgroupfs itself
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// The bundle directory (config.json and the root filesystem)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// A unix socket that receives the pty master when process.terminal is set
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Write the container's PID here
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Accepted for runc compatibility
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc compatibility
    #[arg(long)]
    no_new_keyring: bool,
    /// Accepted for runc compatibility
    #[arg(long)]
    preserve_fds: Option<u32>,
    id: String,
}

#[derive(clap::Args)]
struct ExecArgs {
    /// The process, as OCI JSON (config.json's "process")
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Return once the process has started
    #[arg(short, long)]
    detach: bool,
    /// Allocate a terminal (its master goes to --console-socket)
    #[arg(short, long)]
    tty: bool,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Extra environment variables (KEY=VALUE)
    #[arg(short, long)]
    env: Vec<String>,
    /// UID[:GID] to run as
    #[arg(short, long)]
    user: Option<String>,
    /// Write the process's PID here
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// A unix socket that receives the pty master (with --tty)
    #[arg(long)]
    console_socket: Option<PathBuf>,
    id: String,
    /// The command and its arguments (when no --process is given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Create a container, ready for start
    Create(CreateArgs),
    /// Start a created container
    Start { id: String },
    /// Create, start and wait for a container
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container is started
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process in a running container
    Exec(ExecArgs),
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's init (default SIGTERM)
    Kill {
        /// Signal every process in the container
        #[arg(short, long)]
        all: bool,
        id: String,
        signal: Option<String>,
    },
    /// Remove a stopped container (--force: any container)
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers
    List {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        #[arg(short, long)]
        quiet: bool,
    },
    /// List a container's processes
    Ps {
        #[arg(short, long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        id: String,
    },
    /// Freeze every process of a container
    Pause { id: String },
    /// Thaw a paused container
    Resume { id: String },
    /// Write a default config.json
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print what this runtime supports, as JSON
    Features,
}

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum ListFormat {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if matches!(cli.command, Command::Create(_) | Command::Run { .. }) {
        if let Err(e) = berth_runtime::sealed::ensure_sealed() {
            report(
                &cli,
                &format!("re-executing from a sealed copy of the runtime: {e}"),
            );
            return ExitCode::from(1);
        }
    }
    match dispatch(&cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            report(&cli, &e.to_string());
            ExitCode::from(1)
        }
    }
}

/// One line on stderr, and in --log (runc's JSON lines when asked).
fn report(cli: &Cli, msg: &str) {
    eprintln!("berth-runtime: {msg}");
    if let Some(path) = &cli.log {
        let line = match cli.log_format {
            LogFormat::Json => serde_json::json!({"level": "error", "msg": msg, "time": chrono::Utc::now().to_rfc3339()}).to_string(),
            LogFormat::Text => format!("error: {msg}"),
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

fn options(a: &CreateArgs) -> CreateOptions {
    CreateOptions {
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        ..CreateOptions::default()
    }
}

fn dispatch(cli: &Cli) -> Result<u8, RuntimeError> {
    let root = &cli.root;
    match &cli.command {
        Command::Create(a) => create(root, &a.id, &a.bundle, &options(a)).map(|_| 0),
        Command::Start { id } => lifecycle::start(root, id).map(|()| 0),
        Command::Run {
            create,
            detach,
            keep,
        } => {
            let code = lifecycle::run(
                root,
                &create.id,
                &create.bundle,
                &options(create),
                *detach,
                *keep,
            )?;
            Ok(u8::try_from(code).unwrap_or(255))
        }
        Command::Exec(a) => exec(root, a),
        Command::State { id } => {
            let c = Container::load(root, id)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&c.oci_state()).expect("state serialises")
            );
            Ok(0)
        }
        Command::Kill { all, id, signal } => {
            let sig = lifecycle::parse_signal(signal.as_deref().unwrap_or("TERM"))?;
            lifecycle::kill(root, id, sig, *all).map(|()| 0)
        }
        Command::Delete { force, id } => lifecycle::delete(root, id, *force).map(|()| 0),
        Command::List { format, quiet } => list(root, *format, *quiet).map(|()| 0),
        Command::Ps { format, id } => {
            let c = Container::load(root, id)?;
            let pids = if c.status() == Status::Stopped {
                Vec::new()
            } else {
                c.cgroup()?.pids()
            };
            match format {
                ListFormat::Json => {
                    println!("{}", serde_json::to_string(&pids).expect("pids serialise"))
                }
                ListFormat::Table => {
                    println!("PID");
                    for p in pids {
                        println!("{p}");
                    }
                }
            }
            Ok(0)
        }
        Command::Pause { id } => lifecycle::pause(root, id).map(|()| 0),
        Command::Resume { id } => lifecycle::resume(root, id).map(|()| 0),
        Command::Spec { bundle } => spec(bundle).map(|()| 0),
        Command::Features => {
            println!(
                "{}",
                serde_json::to_string_pretty(&features()).expect("features serialise")
            );
            Ok(0)
        }
    }
}

fn exec(root: &Path, a: &ExecArgs) -> Result<u8, RuntimeError> {
    use berth_runtime::config::{ConfigError, Process};
    use berth_runtime::exec::{process_from_bundle, ExecOptions};
    let invalid = |m: String| RuntimeError::Config(ConfigError::Invalid(m));
    let process = match &a.process {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| RuntimeError::Io {
                op: "reading",
                path: path.clone(),
                source,
            })?;
            let oci: oci_spec::runtime::Process = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            Process::from_oci(&oci)?
        }
        None => {
            if a.command.is_empty() {
                return Err(invalid("exec needs a command, or --process".into()));
            }
            let user = match &a.user {
                None => None,
                Some(u) => {
                    let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
                    let num = |s: &str| {
                        s.parse::<u32>().map_err(|_| {
                            invalid(format!("--user {u}: expected UID[:GID] as numbers"))
                        })
                    };
                    Some((num(uid)?, num(gid)?))
                }
            };
            let c = Container::load(root, &a.id)?;
            let mut p = process_from_bundle(&c, a.command.clone(), &a.env, a.cwd.as_deref(), user)?;
            p.terminal = a.tty;
            p
        }
    };
    let code = berth_runtime::exec::exec(
        root,
        &a.id,
        &ExecOptions {
            process,
            detach: a.detach,
            pid_file: a.pid_file.clone(),
            console_socket: a.console_socket.clone(),
            seccomp_cache: None,
        },
    )?;
    Ok(u8::try_from(code).unwrap_or(255))
}

fn list(root: &Path, format: ListFormat, quiet: bool) -> Result<(), RuntimeError> {
    let containers = Container::list(root)?;
    if quiet {
        for c in &containers {
            println!("{}", c.saved.id);
        }
        return Ok(());
    }
    let states: Vec<_> = containers.iter().map(|c| c.oci_state()).collect();
    if format == ListFormat::Json {
        println!(
            "{}",
            serde_json::to_string(&states).expect("states serialise")
        );
        return Ok(());
    }
    println!(
        "{:<12} {:<8} {:<10} {:<40} {:<30} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    );
    for s in states {
        println!(
            "{:<12} {:<8} {:<10} {:<40} {:<30} root",
            s.id,
            s.pid,
            s.status,
            s.bundle.display(),
            s.created
        );
    }
    Ok(())
}

fn spec(bundle: &Path) -> Result<(), RuntimeError> {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(RuntimeError::Exists(path.display().to_string()));
    }
    let text = serde_json::to_string_pretty(&berth_runtime::spec::default_spec())
        .expect("spec serialises");
    std::fs::write(&path, text + "\n").map_err(|source| RuntimeError::Io {
        op: "writing",
        path,
        source,
    })
}

fn features() -> serde_json::Value {
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": berth_runtime::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": ["ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async", "dirsync",
            "noatime", "atime", "nodiratime", "diratime", "relatime", "norelatime", "strictatime", "bind", "rbind",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {"enabled": true},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        }
    })
}
