//! `berth`: parses the command line, calls the engine, prints. The only
//! crate that prints.

mod cli;
mod containers;
mod format;
mod images;
mod info;
mod registry;
mod run;
mod signals;
mod terminal;
mod transfer;

use std::process::ExitCode;

use clap::Parser;

use berth_engine::{Engine, EngineError};
use cli::{Cli, Command, ContainerCommand, ImageCommand};

/// Exit codes as docker's CLI: 125 when the command line is wrong, 1 when
/// the command failed.
const EXIT_USAGE: u8 = 125;
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Format(#[from] format::FormatError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The command already printed its errors; only the exit code is left.
    #[error("")]
    Reported,
    /// The container ran: exit with its code.
    #[error("")]
    Exit(u8),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    init_logging(&cli.log_level);
    // `run` and `create` exit 125 for any failure of berth's own, as
    // docker's do, so it is never taken for the container's exit code.
    let failure = match &cli.command {
        Command::Run(_)
        | Command::Create(_)
        | Command::Container(ContainerCommand::Run(_) | ContainerCommand::Create(_)) => EXIT_USAGE,
        _ => EXIT_FAILURE,
    };
    let root = cli.root.clone();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Reported) => ExitCode::from(failure),
        Err(CliError::Exit(code)) => ExitCode::from(code),
        // The reader went away (`berth ps | head -1`): quietly, with the
        // status a shell gives a program SIGPIPE ends, as docker's.
        Err(CliError::Format(format::FormatError::Write(e)))
            if e.kind() == std::io::ErrorKind::BrokenPipe =>
        {
            ExitCode::from(141)
        }
        Err(e) => {
            eprintln!("Error: {}", explain(&e, &root));
            ExitCode::from(match e {
                CliError::Usage(_) => EXIT_USAGE,
                _ => failure,
            })
        }
    }
}

/// Runs `f` on each name, as docker's commands that take several: each is
/// tried, what it returns printed, an error reported and the next one
/// tried; exit 1 if any failed.
pub(crate) fn each(
    names: &[String],
    mut f: impl FnMut(&str) -> Result<Option<String>, EngineError>,
) -> Result<(), CliError> {
    let mut failed = false;
    for name in names {
        match f(name) {
            Ok(Some(line)) => println!("{line}"),
            Ok(None) => {}
            Err(e) => {
                eprintln!("Error: {e}");
                failed = true;
            }
        }
    }
    if failed {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}

/// Docker's prune prompt: the warning, then `[y/N]`.
pub(crate) fn confirm(warning: &str) -> bool {
    use std::io::{BufRead, Write};
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    matches!(answer.trim(), "y" | "Y" | "yes")
}

/// SQLite reports a full disk as "disk I/O error" (it cannot grow its
/// shared-memory index); say what it is.
fn explain(e: &CliError, root: &std::path::Path) -> String {
    let full = rustix::fs::statvfs(root).is_ok_and(|s| s.f_bavail == 0);
    match e {
        CliError::Engine(EngineError::Db(_)) if full => format!(
            "No space left on device: the filesystem of {} is full ({e})",
            root.display()
        ),
        _ => e.to_string(),
    }
}

impl From<berth_registry::RegistryError> for CliError {
    fn from(e: berth_registry::RegistryError) -> Self {
        CliError::Engine(e.into())
    }
}

/// clap's message, cut to the one line that names the problem.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = e.print();
        return ExitCode::from(EXIT_USAGE);
    }
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("berth: {first} (see 'berth --help')");
    ExitCode::from(EXIT_USAGE)
}

fn init_logging(level: &str) {
    let level = if level == "fatal" { "error" } else { level };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(format!(
            "berth={level},berth_engine={level},berth_image={level},berth_storage={level}"
        )))
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
}

fn run(cli: Cli) -> Result<(), CliError> {
    if let Command::Version = cli.command {
        println!("berth version {}", env!("CARGO_PKG_VERSION"));
        return Ok(());
    }
    if let Command::Exec(_) | Command::Container(ContainerCommand::Exec(_)) = cli.command {
        // The exec'd process starts as a clone of this one, inside a
        // container whose processes could reach this binary through
        // /proc/PID/exe: run from a sealed copy (CVE-2019-5736).
        berth_engine::run_sealed().map_err(|source| CliError::Io {
            path: "/proc/self/exe".into(),
            source,
        })?;
    }
    let files = registry::Files::new(&cli);
    let mut engine = Engine::open(&cli.root)?;
    match cli.command {
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images::list(&engine, &a),
        Command::Image(ImageCommand::Inspect(a)) => {
            images::inspect_each(&a.images, a.format.as_deref(), |n| {
                images::image_details(&engine, n)
            })
        }
        Command::Container(ContainerCommand::Inspect(a)) => {
            images::inspect_each(&a.images, a.format.as_deref(), |n| {
                engine.inspect_container(n)
            })
        }
        // docker's `inspect` looks for a container first, then an image.
        Command::Inspect(a) => {
            images::inspect_each(&a.names, a.format.as_deref(), |n| {
                match engine.inspect_container(n) {
                    Err(EngineError::NoSuchContainer(_)) => images::image_details(&engine, n)
                        .map_err(|_| EngineError::NoSuchObject(n.to_string())),
                    other => other,
                }
            })
        }
        Command::History(a) | Command::Image(ImageCommand::History(a)) => {
            images::history(&engine, &a)
        }
        Command::Tag(a) | Command::Image(ImageCommand::Tag(a)) => {
            Ok(engine.tag(&a.source, &a.target)?)
        }
        Command::Rmi(a) | Command::Image(ImageCommand::Rm(a)) => images::remove(&mut engine, &a),
        Command::Image(ImageCommand::Prune(a)) => images::prune(&mut engine, &a),
        Command::Import(a) | Command::Image(ImageCommand::Import(a)) => {
            transfer::import(&mut engine, &a)
        }
        Command::Load(a) | Command::Image(ImageCommand::Load(a)) => transfer::load(&mut engine, &a),
        Command::Save(a) | Command::Image(ImageCommand::Save(a)) => transfer::save(&engine, &a),
        Command::Pull(a) | Command::Image(ImageCommand::Pull(a)) => {
            registry::pull(&mut engine, &files.remote()?, &a)
        }
        Command::Push(a) | Command::Image(ImageCommand::Push(a)) => {
            registry::push(&mut engine, &files.remote()?, &a)
        }
        Command::Login(a) => registry::login(&mut files.remote()?, &a),
        Command::Logout(a) => registry::logout(&mut files.remote()?, &a),
        Command::Info(a) => info::info(&engine, a.format.as_deref()),
        Command::Run(a) | Command::Container(ContainerCommand::Run(a)) => {
            run::run(&mut engine, &files, &a)
        }
        Command::Create(a) | Command::Container(ContainerCommand::Create(a)) => {
            run::create(&mut engine, &files, &a)
        }
        Command::Start(a) | Command::Container(ContainerCommand::Start(a)) => {
            containers::start(&mut engine, &a)
        }
        Command::Stop(a) | Command::Container(ContainerCommand::Stop(a)) => {
            containers::stop(&mut engine, &a)
        }
        Command::Restart(a) | Command::Container(ContainerCommand::Restart(a)) => {
            containers::restart(&mut engine, &a)
        }
        Command::Kill(a) | Command::Container(ContainerCommand::Kill(a)) => {
            containers::kill(&mut engine, &a)
        }
        Command::Rm(a) | Command::Container(ContainerCommand::Rm(a)) => {
            containers::rm(&mut engine, &a)
        }
        Command::Ps(a) | Command::Container(ContainerCommand::Ls(a)) => {
            containers::ps(&mut engine, &a)
        }
        Command::Logs(a) | Command::Container(ContainerCommand::Logs(a)) => {
            containers::logs(&mut engine, &a)
        }
        Command::Wait(a) | Command::Container(ContainerCommand::Wait(a)) => {
            containers::wait(&mut engine, &a)
        }
        Command::Rename(a) | Command::Container(ContainerCommand::Rename(a)) => {
            containers::rename(&mut engine, &a)
        }
        Command::Container(ContainerCommand::Prune(a)) => containers::prune(&mut engine, &a),
        Command::Exec(a) | Command::Container(ContainerCommand::Exec(a)) => {
            containers::exec(&mut engine, &a)
        }
        Command::Attach(a) | Command::Container(ContainerCommand::Attach(a)) => {
            containers::attach(&mut engine, &a)
        }
        Command::Top(a) | Command::Container(ContainerCommand::Top(a)) => {
            containers::top(&mut engine, &a)
        }
        Command::Pause(a) | Command::Container(ContainerCommand::Pause(a)) => {
            containers::pause(&mut engine, &a)
        }
        Command::Unpause(a) | Command::Container(ContainerCommand::Unpause(a)) => {
            containers::unpause(&mut engine, &a)
        }
        Command::Version => unreachable!("handled before the store is opened"),
    }
}
