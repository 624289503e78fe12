//! The container's filesystem, made inside its mount namespace.
//!
//! Every mount destination is resolved inside the root filesystem with
//! `openat2(RESOLVE_IN_ROOT)`, and the mount is made on the opened
//! descriptor (`/proc/self/fd/N`), never on a path a symlink in the image
//! could redirect out of the rootfs between check and use
//! (CVE-2021-30465).

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use rustix::mount::{self as rmount, MountFlags, MountPropagationFlags, UnmountFlags};

use crate::cgroups::{Cgroup, Layout};
use crate::config::{Config, Device, Mount};
use crate::sync::ChildError;

const STAGE: &str = "mounts";

fn err(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> ChildError {
    move |e| ChildError::errno(STAGE, what, e)
}

/// Mount flags and the leftover data string of OCI mount options.
#[derive(Debug, PartialEq)]
pub struct Options {
    pub flags: MountFlags,
    pub propagation: Option<MountPropagationFlags>,
    pub bind: bool,
    pub recursive: bool,
    pub data: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            flags: MountFlags::empty(),
            propagation: None,
            bind: false,
            recursive: false,
            data: Vec::new(),
        }
    }
}

pub fn parse_options(options: &[String]) -> Options {
    let mut o = Options::default();
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "ro" => (MountFlags::RDONLY, MountFlags::empty()),
            "rw" => (MountFlags::empty(), MountFlags::RDONLY),
            "nosuid" => (MountFlags::NOSUID, MountFlags::empty()),
            "suid" => (MountFlags::empty(), MountFlags::NOSUID),
            "nodev" => (MountFlags::NODEV, MountFlags::empty()),
            "dev" => (MountFlags::empty(), MountFlags::NODEV),
            "noexec" => (MountFlags::NOEXEC, MountFlags::empty()),
            "exec" => (MountFlags::empty(), MountFlags::NOEXEC),
            "sync" => (MountFlags::SYNCHRONOUS, MountFlags::empty()),
            "async" => (MountFlags::empty(), MountFlags::SYNCHRONOUS),
            "dirsync" => (MountFlags::DIRSYNC, MountFlags::empty()),
            "noatime" => (MountFlags::NOATIME, MountFlags::empty()),
            "atime" => (MountFlags::empty(), MountFlags::NOATIME),
            "nodiratime" => (MountFlags::NODIRATIME, MountFlags::empty()),
            "diratime" => (MountFlags::empty(), MountFlags::NODIRATIME),
            "relatime" => (MountFlags::RELATIME, MountFlags::empty()),
            "norelatime" => (MountFlags::empty(), MountFlags::RELATIME),
            "strictatime" => (MountFlags::STRICTATIME, MountFlags::empty()),
            "bind" => {
                o.bind = true;
                continue;
            }
            "rbind" => {
                o.bind = true;
                o.recursive = true;
                continue;
            }
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                o.propagation = Some(propagation(opt));
                continue;
            }
            // Mount attributes berth does not set; accepted as runc does.
            "tmpcopyup" | "idmap" | "ridmap" | "nosymfollow" => continue,
            other => {
                o.data.push(other.to_string());
                continue;
            }
        };
        o.flags |= set;
        o.flags &= !clear;
    }
    o
}

pub fn propagation(name: &str) -> MountPropagationFlags {
    let base = match name.trim_start_matches('r') {
        "shared" => MountPropagationFlags::SHARED,
        "slave" => MountPropagationFlags::DOWNSTREAM,
        "unbindable" => MountPropagationFlags::UNBINDABLE,
        _ => MountPropagationFlags::PRIVATE,
    };
    if name.starts_with('r') {
        base | MountPropagationFlags::REC
    } else {
        base
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn open_path(root: &OwnedFd, path: &Path, extra: OFlags) -> Result<OwnedFd, Errno> {
    rfs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::CLOEXEC | extra,
        Mode::empty(),
        RESOLVE,
    )
}

/// `mkdir -p` of `path` inside the rootfs, every component resolved as if
/// the rootfs were `/`. A dangling symlink on the way gets its target made
/// (inside the rootfs too), as runc does.
fn mkdir_all_in_root(root: &OwnedFd, path: &Path, depth: u32) -> Result<(), ChildError> {
    if depth > 40 {
        return Err(err(format!("creating {}", path.display()))(Errno::LOOP));
    }
    let mut partial = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(name) => partial.push(name),
            Component::ParentDir => {
                partial.pop();
                continue;
            }
            _ => continue,
        }
        match open_path(root, &partial, OFlags::DIRECTORY) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(err(format!("resolving {}", partial.display()))(e)),
        }
        let parent_path = partial.parent().unwrap_or(Path::new("/")).to_path_buf();
        let parent = open_path(root, &parent_path, OFlags::DIRECTORY)
            .map_err(err(format!("resolving {}", parent_path.display())))?;
        let name = partial.file_name().expect("a normal component").to_owned();
        if let Ok(target) = rfs::readlinkat(&parent, &name, Vec::new()) {
            let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
            mkdir_all_in_root(root, &parent_path.join(target), depth + 1)?;
            continue;
        }
        match rfs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err(format!("creating {}", partial.display()))(e)),
        }
    }
    Ok(())
}

/// Opens `dest` inside the rootfs (symlinks resolved as if the rootfs were
/// `/`), creating it (a directory, or an empty file when `file`) and its
/// missing parents first.
fn open_in_root(root: &OwnedFd, dest: &Path, file: bool) -> Result<OwnedFd, ChildError> {
    if let Ok(fd) = open_path(root, dest, OFlags::empty()) {
        return Ok(fd);
    }
    if !file {
        mkdir_all_in_root(root, dest, 0)?;
    } else {
        let parent_path = dest.parent().unwrap_or(Path::new("/"));
        mkdir_all_in_root(root, parent_path, 0)?;
        let parent = open_path(root, parent_path, OFlags::DIRECTORY)
            .map_err(err(format!("resolving {}", parent_path.display())))?;
        let name = dest
            .file_name()
            .ok_or_else(|| ChildError::new(STAGE, format!("{} names no file", dest.display())))?;
        match rfs::openat(
            &parent,
            name,
            OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::from_raw_mode(0o644),
        ) {
            Ok(_) | Err(Errno::EXIST) => {}
            Err(e) => return Err(err(format!("creating {}", dest.display()))(e)),
        }
    }
    open_path(root, dest, OFlags::empty()).map_err(err(format!("opening {}", dest.display())))
}

/// Steps 4 and 5 of the create sequence: private propagation, the rootfs
/// bound onto itself, then every mount of the config and /dev.
pub fn prepare_rootfs(cfg: &Config, cgroup: &Cgroup, in_userns: bool) -> Result<(), ChildError> {
    // Nothing mounted in here may propagate back to the host.
    let prop = cfg.rootfs_propagation.as_deref().map_or(
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
        propagation,
    );
    rmount::mount_change("/", prop).map_err(err("making / a slave mount"))?;
    // pivot_root needs the new root to be a mount point.
    rmount::mount_bind_recursive(&cfg.rootfs, &cfg.rootfs)
        .map_err(err(format!("binding {} onto itself", cfg.rootfs.display())))?;
    let root = rfs::open(
        &cfg.rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(format!("opening {}", cfg.rootfs.display())))?;

    // The working directory must exist, as runc makes it: walked inside the
    // rootfs like a mount point, so a symlink in the image cannot send it
    // to the host.
    mkdir_all_in_root(&root, &cfg.process.cwd, 0)?;

    let mut dev_is_tmpfs = false;
    for m in &cfg.mounts {
        if m.destination == Path::new("/dev") && m.kind == "tmpfs" {
            dev_is_tmpfs = true;
        }
        mount_one(cfg, &root, m, cgroup)?;
    }
    if dev_is_tmpfs {
        for d in default_devices().iter().chain(&cfg.devices) {
            make_device(&root, d, in_userns)?;
        }
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            let dev = open_in_root(&root, Path::new("/dev"), false)?;
            let name = &link[5..];
            match rfs::symlinkat(target, &dev, name) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err(format!("linking {link}"))(e)),
            }
        }
    } else {
        for d in &cfg.devices {
            make_device(&root, d, in_userns)?;
        }
    }
    Ok(())
}

fn mount_one(cfg: &Config, root: &OwnedFd, m: &Mount, cgroup: &Cgroup) -> Result<(), ChildError> {
    let opts = parse_options(&m.options);
    if opts.bind || m.kind == "bind" {
        let source = match &m.source {
            Some(s) if s.is_absolute() => s.clone(),
            Some(s) => cfg.bundle.join(s),
            None => {
                return Err(ChildError::new(
                    STAGE,
                    format!("bind mount {} has no source", m.destination.display()),
                ))
            }
        };
        let is_file = fs::metadata(&source)
            .map_err(|e| ChildError::io(STAGE, format!("bind source {}", source.display()), e))?
            .is_file();
        bind(&source, root, &m.destination, is_file, &opts)
    } else if m.kind == "cgroup" {
        mount_cgroup(root, m, &opts, cgroup)
    } else {
        let target = open_in_root(root, &m.destination, false)?;
        let source = m
            .source
            .as_ref()
            .map_or(m.kind.clone(), |s| s.display().to_string());
        let data = CString::new(opts.data.join(","))
            .map_err(|_| ChildError::new(STAGE, "mount options contain a NUL"))?;
        rmount::mount(
            source.as_str(),
            fd_path(&target).as_str(),
            m.kind.as_str(),
            opts.flags,
            Some(data.as_c_str()),
        )
        .map_err(err(format!(
            "mounting {} on {}",
            m.kind,
            m.destination.display()
        )))?;
        if let Some(p) = opts.propagation {
            let target = open_in_root(root, &m.destination, false)?;
            rmount::mount_change(fd_path(&target).as_str(), p)
                .map_err(err(format!("propagation of {}", m.destination.display())))?;
        }
        Ok(())
    }
}

/// A bind mount of `source` on `dest` inside the rootfs; its flags (ro,
/// nosuid, ...) need a second, remounting call, made on the new mount
/// (reopened: the first descriptor still names what lies beneath it).
fn bind(
    source: &Path,
    root: &OwnedFd,
    dest: &Path,
    file: bool,
    opts: &Options,
) -> Result<(), ChildError> {
    let what = || format!("binding {} on {}", source.display(), dest.display());
    let target = open_in_root(root, dest, file)?;
    if opts.recursive {
        rmount::mount_bind_recursive(source, fd_path(&target).as_str()).map_err(err(what()))?;
    } else {
        rmount::mount_bind(source, fd_path(&target).as_str()).map_err(err(what()))?;
    }
    if opts.flags.is_empty() && opts.propagation.is_none() {
        return Ok(());
    }
    let mounted = open_in_root(root, dest, file)?;
    if !opts.flags.is_empty() {
        remount(&fd_path(&mounted), opts.flags).map_err(err(format!(
            "remounting {} with its options",
            dest.display()
        )))?;
    }
    if let Some(p) = opts.propagation {
        rmount::mount_change(fd_path(&mounted).as_str(), p)
            .map_err(err(format!("propagation of {}", dest.display())))?;
    }
    Ok(())
}

/// Remounts a bind mount with `flags` added to the ones it has (flags
/// locked by a user namespace cannot be dropped, so they are kept).
fn remount(target: &str, flags: MountFlags) -> Result<(), Errno> {
    let current = rustix::fs::statvfs(target)
        .map(|s| s.f_flag)
        .unwrap_or(rustix::fs::StatVfsMountFlags::empty());
    let mut keep = MountFlags::empty();
    for (vfs, ms) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
    ] {
        if current.contains(vfs) {
            keep |= ms;
        }
    }
    rmount::mount_remount(target, MountFlags::BIND | keep | flags, "")
}

/// `type: cgroup`: the container's own cgroup directories, bound where
/// the container expects the hierarchy (read-only unless asked otherwise).
fn mount_cgroup(
    root: &OwnedFd,
    m: &Mount,
    opts: &Options,
    cgroup: &Cgroup,
) -> Result<(), ChildError> {
    let layout = Layout::detect();
    let ro = Options {
        flags: opts.flags
            & (MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC),
        ..Default::default()
    };
    match &layout {
        Layout::V2 { root: host } => {
            bind(&host.join(cgroup.path()), root, &m.destination, false, &ro)
        }
        Layout::V1 { root: host } | Layout::Hybrid { root: host } => {
            let dest = open_in_root(root, &m.destination, false)?;
            rmount::mount(
                "tmpfs",
                fd_path(&dest).as_str(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                Some(c"mode=755"),
            )
            .map_err(err(format!(
                "mounting tmpfs on {}",
                m.destination.display()
            )))?;
            let mut hierarchies: Vec<PathBuf> = fs::read_dir(host)
                .map_err(|e| ChildError::io(STAGE, host.display(), e))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join(cgroup.path()).is_dir())
                .collect();
            hierarchies.sort();
            for h in hierarchies {
                let name = h.file_name().expect("a directory entry");
                bind(
                    &h.join(cgroup.path()),
                    root,
                    &m.destination.join(name),
                    false,
                    &ro,
                )?;
            }
            if opts.flags.contains(MountFlags::RDONLY) {
                let dest = open_in_root(root, &m.destination, false)?;
                rmount::mount_remount(
                    fd_path(&dest).as_str(),
                    MountFlags::NOSUID
                        | MountFlags::NODEV
                        | MountFlags::NOEXEC
                        | MountFlags::RDONLY,
                    "mode=755",
                )
                .map_err(err(format!("making {} read-only", m.destination.display())))?;
            }
            Ok(())
        }
    }
}

/// The devices every container gets (runc's list).
fn default_devices() -> Vec<Device> {
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .iter()
    .map(|(name, major, minor)| Device {
        path: PathBuf::from(format!("/dev/{name}")),
        kind: 'c',
        major: *major,
        minor: *minor,
        mode: 0o666,
        uid: 0,
        gid: 0,
    })
    .collect()
}

/// A device node: made with mknod, or, inside a user namespace (where
/// mknod is refused), bound from the host's node.
fn make_device(root: &OwnedFd, d: &Device, in_userns: bool) -> Result<(), ChildError> {
    if in_userns {
        return bind(&d.path, root, &d.path, true, &Options::default());
    }
    let parent_path = d.path.parent().unwrap_or(Path::new("/dev"));
    let parent = open_in_root(root, parent_path, false)?;
    let parent = rfs::openat(
        &parent,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(err(format!("opening {}", parent_path.display())))?;
    let name = d.path.file_name().ok_or_else(|| {
        ChildError::new(
            STAGE,
            format!("device path {} has no name", d.path.display()),
        )
    })?;
    let kind = match d.kind {
        'b' => FileType::BlockDevice,
        'p' => FileType::Fifo,
        _ => FileType::CharacterDevice,
    };
    match rfs::unlinkat(&parent, name, rfs::AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => {}
        Err(e) => return Err(err(format!("replacing {}", d.path.display()))(e)),
    }
    rfs::mknodat(
        &parent,
        name,
        kind,
        Mode::from_raw_mode(d.mode & 0o777),
        rfs::makedev(d.major, d.minor),
    )
    .map_err(err(format!("mknod {}", d.path.display())))?;
    // mknod's mode is filtered by the umask; set it exactly.
    rfs::chmodat(
        &parent,
        name,
        Mode::from_raw_mode(d.mode & 0o777),
        rfs::AtFlags::empty(),
    )
    .map_err(err(format!("chmod {}", d.path.display())))?;
    rfs::chownat(
        &parent,
        name,
        Some(rustix::process::Uid::from_raw(d.uid)),
        Some(rustix::process::Gid::from_raw(d.gid)),
        rfs::AtFlags::empty(),
    )
    .map_err(err(format!("chown {}", d.path.display())))
}

/// Step 7: `pivot_root` into the rootfs and detach the old root, so no
/// path of the host stays reachable.
pub fn pivot_root(rootfs: &Path) -> Result<(), ChildError> {
    let stage = "pivot_root";
    rustix::process::chdir(rootfs)
        .map_err(|e| ChildError::errno(stage, format!("chdir {}", rootfs.display()), e))?;
    // pivot_root(".", "."): the old root ends up stacked on the new one,
    // without needing a directory for it inside the image.
    match rustix::process::pivot_root(".", ".") {
        Ok(()) => {}
        // The host's own root is the initial ramfs, which pivot_root
        // cannot move: chroot is all there is (as runc and crun do).
        Err(Errno::INVAL) if is_ramfs("/") => {
            rustix::process::chroot(".").map_err(|e| ChildError::errno(stage, "chroot", e))?;
            return rustix::process::chdir("/").map_err(|e| ChildError::errno(stage, "chdir /", e));
        }
        Err(e) => return Err(ChildError::errno(stage, "pivot_root", e)),
    }
    // Make sure the unmount below cannot propagate to the host.
    rmount::mount_change(
        ".",
        MountPropagationFlags::DOWNSTREAM | MountPropagationFlags::REC,
    )
    .map_err(|e| ChildError::errno(stage, "making the old root a slave", e))?;
    rmount::unmount(".", UnmountFlags::DETACH)
        .map_err(|e| ChildError::errno(stage, "detaching the old root", e))?;
    rustix::process::chdir("/").map_err(|e| ChildError::errno(stage, "chdir /", e))
}

fn is_ramfs(path: &str) -> bool {
    const RAMFS_MAGIC: u64 = 0x8584_58f6;
    const TMPFS_MAGIC: u64 = 0x0102_1994;
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).is_ok_and(|s| matches!(s.f_type as u64, RAMFS_MAGIC | TMPFS_MAGIC))
}

/// Step 8: maskedPaths (hidden under /dev/null or an empty read-only
/// tmpfs) and readonlyPaths (bound read-only), after pivot_root.
pub fn mask_and_protect(masked: &[String], readonly: &[String]) -> Result<(), ChildError> {
    let stage = "masked and read-only paths";
    for p in masked {
        match fs::symlink_metadata(p) {
            Err(_) => continue,
            Ok(md) if md.is_dir() => {
                rmount::mount("tmpfs", p.as_str(), "tmpfs", MountFlags::RDONLY, None)
                    .map_err(|e| ChildError::errno(stage, format!("masking {p}"), e))?
            }
            Ok(_) => rmount::mount_bind("/dev/null", p.as_str())
                .map_err(|e| ChildError::errno(stage, format!("masking {p}"), e))?,
        }
    }
    for p in readonly {
        if fs::symlink_metadata(p).is_err() {
            continue;
        }
        rmount::mount_bind_recursive(p.as_str(), p.as_str())
            .map_err(|e| ChildError::errno(stage, format!("binding {p}"), e))?;
        remount(
            p,
            MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        )
        .map_err(|e| ChildError::errno(stage, format!("making {p} read-only"), e))?;
    }
    Ok(())
}

/// `root.readonly`: the rootfs remounted read-only after everything else.
pub fn readonly_root() -> Result<(), ChildError> {
    remount("/", MountFlags::RDONLY)
        .map_err(|e| ChildError::errno("read-only rootfs", "remounting / read-only", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Options {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MountFlags::NOSUID | MountFlags::STRICTATIME);
        assert_eq!(o.data, ["mode=755", "size=65536k"]);
        let o = opts(&["rbind", "ro", "rprivate"]);
        assert!(o.bind && o.recursive);
        assert_eq!(o.flags, MountFlags::RDONLY);
        assert_eq!(
            o.propagation,
            Some(MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)
        );
        assert_eq!(opts(&["ro", "rw"]).flags, MountFlags::empty());
    }
}
