//! pull, push, login, logout: the registry commands, printed as docker
//! prints them.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Mutex;

use berth_engine::{
    parse_platform, Engine, LayerState, PullOptions, PullProgress, PushProgress, Remote,
};
use berth_image::reference::familiar;
use berth_image::{Digest, ImageRef};
use berth_registry::{AuthFile, Credential, RegistryConfig};

use crate::cli::{Cli, LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::format::human_size;
use crate::CliError;

/// The files the global flags name for registry settings and credentials.
pub struct Files {
    config: PathBuf,
    auth: PathBuf,
}

impl Files {
    /// The credentials default to `~/.config/berth/auth.json`.
    pub fn new(cli: &Cli) -> Self {
        let auth = cli.authfile.clone().unwrap_or_else(|| {
            std::env::var_os("XDG_CONFIG_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
                .unwrap_or_else(|| PathBuf::from("/root/.config"))
                .join("berth/auth.json")
        });
        Files {
            config: cli.config_file.clone(),
            auth,
        }
    }

    /// Loads them.
    pub fn remote(&self) -> Result<Remote, CliError> {
        Ok(Remote {
            config: RegistryConfig::load(&self.config)?,
            auth: AuthFile::load(&self.auth)?,
        })
    }
}

/// Parses a NAME, saying "Using default tag" as docker does.
fn reference(name: &str, quiet: bool) -> Result<ImageRef, CliError> {
    let r = ImageRef::parse(name).map_err(|e| CliError::Engine(e.into()))?;
    if !quiet && !name.contains('@') && !name.rsplit('/').next().unwrap_or(name).contains(':') {
        println!("Using default tag: latest");
    }
    Ok(r)
}

pub fn pull(engine: &mut Engine, remote: &Remote, a: &PullArgs) -> Result<(), CliError> {
    let opts = PullOptions {
        platform: a.platform.as_deref().map(parse_platform).transpose()?,
    };
    if a.all_tags {
        let base = ImageRef::parse(&a.name).map_err(|e| CliError::Engine(e.into()))?;
        if a.name.contains('@') || base.to_string() != base.with_tag("latest").to_string() {
            return Err(CliError::Usage(
                "tag can't be used with --all-tags/-a".to_string(),
            ));
        }
        let tags = engine.remote_tags(remote, &base)?;
        for tag in &tags {
            pull_one(engine, remote, &base.with_tag(tag), &opts, a.quiet)?;
        }
        return Ok(());
    }
    let r = reference(&a.name, a.quiet)?;
    pull_one(engine, remote, &r, &opts, a.quiet)
}

fn pull_one(
    engine: &mut Engine,
    remote: &Remote,
    r: &ImageRef,
    opts: &PullOptions,
    quiet: bool,
) -> Result<(), CliError> {
    pull_to(engine, remote, r, opts, quiet, Stream::Stdout)
}

/// A pull for `run` and `create`: its progress on stderr, as docker's, so
/// that stdout is the container's alone.
pub fn pull_for_run(engine: &mut Engine, remote: &Remote, name: &str) -> Result<(), CliError> {
    let r = ImageRef::parse(name).map_err(|e| CliError::Engine(e.into()))?;
    pull_to(
        engine,
        remote,
        &r,
        &PullOptions::default(),
        false,
        Stream::Stderr,
    )
}

fn pull_to(
    engine: &mut Engine,
    remote: &Remote,
    r: &ImageRef,
    opts: &PullOptions,
    quiet: bool,
    stream: Stream,
) -> Result<(), CliError> {
    let printer = Mutex::new(Progress::new(quiet, stream));
    let report = |p: PullProgress| printer.lock().expect("not poisoned").pull(p);
    let pulled = engine.pull(remote, r, opts, &report)?;
    let mut text = String::new();
    if !quiet {
        let name = familiar(&pulled.reference);
        let status = if pulled.fresh {
            "Downloaded newer image for"
        } else {
            "Image is up to date for"
        };
        text.push_str(&format!(
            "Digest: {}\nStatus: {status} {name}\n",
            pulled.digest
        ));
    }
    if stream == Stream::Stdout {
        text.push_str(&format!("{}\n", pulled.reference));
    }
    stream.write(&text);
    Ok(())
}

/// Where progress goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn write(self, text: &str) {
        let _ = match self {
            Stream::Stdout => io::stdout().lock().write_all(text.as_bytes()),
            Stream::Stderr => io::stderr().lock().write_all(text.as_bytes()),
        };
    }

    fn is_terminal(self) -> bool {
        match self {
            Stream::Stdout => io::stdout().is_terminal(),
            Stream::Stderr => io::stderr().is_terminal(),
        }
    }
}

pub fn push(engine: &mut Engine, remote: &Remote, a: &PushArgs) -> Result<(), CliError> {
    let r = reference(&a.name, a.quiet)?;
    if r.digest().is_some() {
        return Err(CliError::Usage(format!(
            "cannot push a digest reference: {}",
            a.name
        )));
    }
    let names = if a.all_tags {
        engine.tags_of_repository(r.name())?
    } else {
        vec![r]
    };
    if let Some(first) = names.first() {
        if !a.quiet {
            println!("The push refers to repository [{}]", familiar(first.name()));
        }
    }
    for name in &names {
        let printer = Mutex::new(Progress::new(a.quiet, Stream::Stdout));
        let report = |p: PushProgress| printer.lock().expect("not poisoned").push(p);
        let pushed = engine.push(remote, name, &report)?;
        if a.quiet {
            println!("{name}");
        } else {
            println!(
                "{}: digest: {} size: {}",
                name.tag().unwrap_or("latest"),
                pushed.digest,
                pushed.size
            );
        }
    }
    Ok(())
}

/// `berth login`: the registry as a reference's domain (Docker Hub's
/// URLs spelled every way docker accepts).
fn server_domain(server: Option<&str>) -> String {
    let Some(s) = server else {
        return "docker.io".into();
    };
    let bare = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = bare.split('/').next().unwrap_or(bare);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

pub fn login(remote: &mut Remote, a: &LoginArgs) -> Result<(), CliError> {
    let domain = server_domain(a.server.as_deref());
    let stdin = io::stdin();
    let username = match &a.username {
        Some(u) => u.clone(),
        None if a.password_stdin => {
            return Err(CliError::Usage(
                "--password-stdin needs --username".to_string(),
            ))
        }
        None => prompt("Username: ", true)?,
    };
    let password = match (&a.password, a.password_stdin) {
        (Some(_), true) => {
            return Err(CliError::Usage(
                "--password and --password-stdin are mutually exclusive".to_string(),
            ))
        }
        (Some(p), false) => {
            eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
            p.clone()
        }
        (None, true) => {
            let mut line = String::new();
            stdin
                .lock()
                .read_line(&mut line)
                .map_err(|source| CliError::Io {
                    path: "stdin".into(),
                    source,
                })?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ", false)?,
    };
    if username.is_empty() || password.is_empty() {
        return Err(CliError::Usage(
            "a username and a password are required".to_string(),
        ));
    }
    let cred = Credential { username, password };
    remote.login(&domain, &cred)?;
    println!("Login Succeeded");
    Ok(())
}

pub fn logout(remote: &mut Remote, a: &LogoutArgs) -> Result<(), CliError> {
    let domain = server_domain(a.server.as_deref());
    let shown = a.server.as_deref().unwrap_or("https://index.docker.io/v1/");
    if remote.logout(&domain)? {
        println!("Removing login credentials for {shown}");
    } else {
        println!("Not logged in to {shown}");
    }
    Ok(())
}

/// Asks on the terminal; the password without echo.
fn prompt(question: &str, echo: bool) -> Result<String, CliError> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        return Err(CliError::Usage(
            "cannot perform an interactive login from a non TTY device (use --username and --password-stdin)"
                .to_string(),
        ));
    }
    eprint!("{question}");
    let _ = io::stderr().flush();
    let saved = rustix::termios::tcgetattr(&stdin).ok();
    if let (false, Some(t)) = (echo, &saved) {
        let mut quiet = t.clone();
        quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet);
    }
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let (false, Some(t)) = (echo, &saved) {
        let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, t);
        eprintln!();
    }
    read.map_err(|source| CliError::Io {
        path: "stdin".into(),
        source,
    })?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Per-layer status lines as docker prints them: redrawn in place on a
/// terminal, one line per change of status otherwise.
struct Progress {
    quiet: bool,
    stream: Stream,
    tty: bool,
    /// (short digest, status), in the order the layers were announced.
    lines: Vec<(String, String)>,
    drawn: usize,
}

impl Progress {
    fn new(quiet: bool, stream: Stream) -> Self {
        Progress {
            quiet,
            stream,
            tty: stream.is_terminal(),
            lines: Vec::new(),
            drawn: 0,
        }
    }

    fn pull(&mut self, p: PullProgress) {
        match p {
            PullProgress::Resolved { repository, tag } => {
                if !self.quiet {
                    self.stream
                        .write(&format!("{tag}: Pulling from {repository}\n"));
                }
            }
            PullProgress::Layer { digest, state } => {
                let status = match state {
                    LayerState::Exists => "Already exists".to_string(),
                    LayerState::Waiting => "Pulling fs layer".to_string(),
                    LayerState::Downloading { done, total } if self.tty => format!(
                        "Downloading  {}/{}",
                        human_size(done, 3),
                        human_size(total, 3)
                    ),
                    LayerState::Downloading { .. } => "Downloading".to_string(),
                    LayerState::Verifying => "Verifying Checksum".to_string(),
                    LayerState::Extracting => "Extracting".to_string(),
                    LayerState::Complete => "Pull complete".to_string(),
                    LayerState::Retrying { attempt, reason } => {
                        format!("Retrying (attempt {attempt} failed: {reason})")
                    }
                };
                self.set(&digest, status);
            }
        }
    }

    fn push(&mut self, p: PushProgress) {
        let (digest, status) = match p {
            PushProgress::Preparing(d) => (d, "Preparing".to_string()),
            PushProgress::Exists(d) => (d, "Layer already exists".to_string()),
            PushProgress::Mounted { digest, from } => (digest, format!("Mounted from {from}")),
            PushProgress::Pushed(d) => (d, "Pushed".to_string()),
        };
        self.set(&digest, status);
    }

    fn set(&mut self, digest: &Digest, status: String) {
        if self.quiet {
            return;
        }
        let id = digest.short().to_string();
        match self.lines.iter_mut().find(|(d, _)| *d == id) {
            Some((_, s)) if *s == status => return,
            Some((_, s)) => *s = status,
            None => self.lines.push((id.clone(), status)),
        }
        let mut text = String::new();
        if self.tty {
            // Back up over the block drawn before and draw it again.
            if self.drawn > 0 {
                text.push_str(&format!("\x1b[{}A", self.drawn));
            }
            for (d, s) in &self.lines {
                text.push_str(&format!("\x1b[2K{d}: {s}\n"));
            }
            self.drawn = self.lines.len();
        } else if let Some((d, s)) = self.lines.iter().find(|(d, _)| *d == id) {
            text = format!("{d}: {s}\n");
        }
        self.stream.write(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_servers_are_spelled_every_way_docker_accepts() {
        assert_eq!(server_domain(None), "docker.io");
        assert_eq!(
            server_domain(Some("https://index.docker.io/v1/")),
            "docker.io"
        );
        assert_eq!(server_domain(Some("registry-1.docker.io")), "docker.io");
        assert_eq!(server_domain(Some("localhost:5000")), "localhost:5000");
        assert_eq!(
            server_domain(Some("http://127.0.0.1:5000/")),
            "127.0.0.1:5000"
        );
    }
}
