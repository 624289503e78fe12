//! A container's directory: the image's layers under a fresh writable
//! layer (overlayfs), /etc/hostname, hosts and resolv.conf generated as
//! docker does, an OCI config made from the image config and the flags.
//! `run --rm` in the foreground runs it with berth-runtime in-process and
//! removes everything when the process exits; containers that outlive the
//! command are `containers.rs`'s.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use berth_image::config::ImageConfig;
use berth_runtime::create::CreateOptions;
use berth_runtime::lifecycle;
use rustix::mount::{mount, unmount, MountFlags, UnmountFlags};

use crate::spec::{container_spec, etc_files, SpecInput};
use crate::{Engine, EngineError};

/// What `run` or `create` was asked for, flag for flag as docker's. A
/// container's record keeps it (as JSON) for `inspect` and its monitor.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RunOptions {
    pub image: String,
    /// `--name`; docker-style `adjective_name` when none is given.
    pub name: Option<String>,
    /// `--rm`: the container is removed when it exits.
    pub auto_remove: bool,
    /// `--restart no|on-failure[:N]|always|unless-stopped`.
    pub restart: Option<String>,
    /// `-l/--label KEY=VALUE`.
    pub labels: Vec<String>,
    /// `--stop-signal` (the image's STOPSIGNAL, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--stop-timeout`, seconds (10 by default).
    pub stop_timeout: Option<i64>,
    /// `--log-opt max-size=…`, `max-file=…`.
    pub log_opts: Vec<String>,
    /// `-i`: the container's stdin is berth's (else /dev/null); kept open
    /// by its monitor for `attach` when it runs in the background.
    pub interactive: bool,
    /// `-d`: run in the background, nothing attached (so with `-i` the
    /// container's stdin outlives an attached client's input).
    pub detach: bool,
    /// `-t`: the container's process gets a terminal.
    pub tty: bool,
    /// CMD override (the arguments after the image).
    pub command: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    /// `-m`, in bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    pub memory_reservation: Option<i64>,
    /// `--memory-swap`: memory + swap, -1 for unlimited.
    pub memory_swap: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpuset_cpus: Option<String>,
    pub pids_limit: Option<i64>,
    /// `-v SRC:DST[:OPTIONS]` (bind mounts of host paths).
    pub volumes: Vec<String>,
    /// `--tmpfs DST[:OPTIONS]`.
    pub tmpfs: Vec<String>,
    /// `--mount type=bind|tmpfs,…`.
    pub mounts: Vec<String>,
    pub read_only: bool,
    /// `--privileged`: every capability and device, no seccomp, nothing
    /// masked.
    pub privileged: bool,
    /// `--init`: docker's init (tini) as PID 1, which runs the command,
    /// passes it the signals and reaps orphaned processes.
    pub init: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// `--security-opt` values.
    pub security_opt: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`.
    pub ulimits: Vec<String>,
    /// `--network`: `none` (the default until bridges exist) or `host`.
    pub network: Option<String>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    /// `--shm-size`, in bytes.
    pub shm_size: Option<i64>,
    /// With `-t`, the size of berth's terminal when the container was
    /// made (rows, columns): its pty has it before the process runs, as
    /// docker's ConsoleSize.
    pub console_size: Option<[u16; 2]>,
}

/// A container directory being made: the overlay mount and the directory
/// are undone on drop unless `keep` is called.
pub(crate) struct Scratch {
    pub dir: PathBuf,
    mounted: bool,
    kept: bool,
}

impl Scratch {
    pub fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        if self.mounted {
            let _ = unmount(self.dir.join("merged"), UnmountFlags::DETACH);
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn random_id() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).map_err(|e| {
        EngineError::Io {
            path: PathBuf::from("getrandom"),
            source: e.into(),
        }
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Runs `f` with /dev/null as fd 0, so that a process it creates inherits
/// that rather than berth's stdin.
pub(crate) fn with_null_stdin<T>(f: impl FnOnce() -> T) -> T {
    match fs::File::open("/dev/null") {
        Ok(null) => with_stdin(&null, f),
        Err(_) => f(),
    }
}

/// Runs `f` with `fd` as fd 0 (what a process it creates inherits as its
/// stdin), then puts the old one back.
pub(crate) fn with_stdin<T>(fd: impl std::os::fd::AsFd, f: impl FnOnce() -> T) -> T {
    let saved = rustix::io::fcntl_dupfd_cloexec(std::io::stdin(), 3).ok();
    let _ = rustix::stdio::dup2_stdin(fd);
    let out = f();
    if let Some(saved) = saved {
        let _ = rustix::stdio::dup2_stdin(&saved);
    }
    out
}

/// The socket the runtime sends a pty's master over, in a short temp dir:
/// a socket path must fit in 108 bytes, and the store's may not.
pub(crate) struct ConsoleSocket {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> Result<Self, EngineError> {
        let dir = tempfile::Builder::new()
            .prefix("berth-tty-")
            .tempdir()
            .map_err(io_err(&std::env::temp_dir()))?;
        let path = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&path).map_err(io_err(&path))?;
        Ok(ConsoleSocket {
            _dir: dir,
            path,
            listener,
        })
    }

    /// The master the runtime sent.
    pub fn receive(&self) -> Result<fs::File, EngineError> {
        receive_pty(&self.listener).map_err(io_err(&self.path))
    }
}

/// Accepts the runtime's connection on the console socket and receives
/// the pty master (runc's protocol: one SCM_RIGHTS message).
fn receive_pty(listener: &std::os::unix::net::UnixListener) -> std::io::Result<fs::File> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    use std::mem::MaybeUninit;
    let (stream, _) = listener.accept()?;
    let mut name = [0u8; 64];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    recvmsg(
        &stream,
        &mut [std::io::IoSliceMut::new(&mut name)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    control
        .drain()
        .find_map(|m| match m {
            RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
            _ => None,
        })
        .map(fs::File::from)
        .ok_or_else(|| std::io::Error::other("no pty master on the console socket"))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError {
    let path = path.to_path_buf();
    move |source| EngineError::Io { path, source }
}

/// Mounts a container's overlay: the image's layers (bottom first in
/// `chains`) under the container's own upper directory. A container that
/// is removed when it ends (`--rm`) gets a `volatile` overlay, as podman's:
/// its upper directory is thrown away anyway, and without it the unmount
/// syncs the whole upper filesystem (on an ext4 mounted with `discard`, a
/// journal commit that was most of `run --rm`'s time). Kernels before 5.10
/// do not know the option: mounted without it there.
pub(crate) fn mount_overlay(
    options: &str,
    merged: &Path,
    volatile: bool,
) -> Result<(), EngineError> {
    let attempt = |options: &str| {
        let data = std::ffi::CString::new(options).map_err(|_| rustix::io::Errno::INVAL)?;
        mount(
            "overlay",
            merged,
            "overlay",
            MountFlags::empty(),
            Some(data.as_c_str()),
        )
    };
    let result = if volatile {
        match attempt(&format!("{options},volatile")) {
            Err(rustix::io::Errno::INVAL) => attempt(options),
            other => other,
        }
    } else {
        attempt(options)
    };
    result.map_err(|e| io_err(merged)(e.into()))
}

impl Engine {
    /// The chain IDs of an image's layers, bottom first.
    pub(crate) fn chains_of(
        &self,
        image: &berth_image::Digest,
    ) -> Result<Vec<String>, EngineError> {
        Ok(self
            .db
            .layers_of(image)?
            .iter()
            .map(|(c, _, _)| c.hex().to_string())
            .collect())
    }

    /// Makes container `id`'s directory: upper/work/merged dirs, the
    /// overlay mounted, /etc files, the OCI config (`config.json`, a
    /// bundle the runtime can take).
    pub(crate) fn prepare_container(
        &self,
        id: &str,
        image: &berth_image::Digest,
        opts: &RunOptions,
    ) -> Result<Scratch, EngineError> {
        let config = ImageConfig::parse(&self.blobs.read(image)?, image)?;
        let chains = self.chains_of(image)?;
        let mut scratch = Scratch {
            dir: self.root.join("containers").join(id),
            mounted: false,
            kept: false,
        };
        for sub in ["upper", "work", "merged", "lower"] {
            let p = scratch.dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let dirs = self.layers.container_mount(&chains, &scratch.dir);
        let merged = scratch.dir.join("merged");
        mount_overlay(&dirs.options, &merged, opts.auto_remove)?;
        scratch.mounted = true;

        let hostname = opts
            .hostname
            .clone()
            .unwrap_or_else(|| id[..12].to_string());
        let host_resolv = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        for (name, content) in etc_files(&hostname, &host_resolv) {
            let path = scratch.dir.join(name);
            fs::write(&path, content).map_err(io_err(&path))?;
        }
        let spec = container_spec(&SpecInput {
            id,
            hostname: &hostname,
            image: &config,
            rootfs: &merged,
            etc_dir: &scratch.dir,
            opts,
        })?;
        let config_path = scratch.dir.join("config.json");
        fs::write(
            &config_path,
            serde_json::to_vec_pretty(&spec).expect("a spec serialises"),
        )
        .map_err(io_err(&config_path))?;
        Ok(scratch)
    }

    /// Runs a container without a terminal in the foreground (`run --rm`;
    /// with `-t` the monitor holds the terminal) and removes it; returns
    /// the exit code of its process.
    pub fn run_removed(&mut self, opts: &RunOptions) -> Result<i32, EngineError> {
        let image_use = crate::lock::ImageUse::shared(&self.root)?;
        let image = self.resolve(&opts.image)?.id;
        let id = random_id()?;
        let scratch = self.prepare_container(&id, &image, opts)?;
        // Mounted: `rmi` sees the container in the mount table from now on.
        drop(image_use);
        let state = self.root.join("runtime");
        // The container dies with berth: nothing runs unwatched, and no
        // process of the container outlives every process executing
        // berth's binary (which the kernel keeps unwritable while one
        // runs: a container that re-executes /proc/self/exe can never
        // write to it, the attack sealed runtimes guard against).
        let create_opts = CreateOptions {
            seccomp_cache: Some(crate::seccomp::cache_dir(&self.root)),
            die_with_parent: true,
            ..CreateOptions::default()
        };
        // Without -i the process reads /dev/null, as docker's does.
        let created = if opts.interactive {
            berth_runtime::create::create(&state, &id, &scratch.dir, &create_opts)
        } else {
            with_null_stdin(|| {
                berth_runtime::create::create(&state, &id, &scratch.dir, &create_opts)
            })
        }?;
        if let Err(e) = lifecycle::start(&state, &id) {
            let _ = lifecycle::delete(&state, &id, true);
            return Err(e.into());
        }
        let code = lifecycle::wait_exit(created.saved.pid)?;
        lifecycle::delete(&state, &id, true)?;
        Ok(code)
    }
}
