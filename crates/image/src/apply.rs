//! Applies one layer tarball onto an empty directory, safely.
//!
//! Every path in the archive is walked component by component from an open
//! descriptor of the layer's root with `O_NOFOLLOW`, so no entry can write
//! through a symlink or outside the root, whatever order the entries come
//! in. Hostile entries (absolute paths, `..`, hard links that leave the
//! layer, a symlink turned into a directory, absurd sizes) are refused with
//! an error naming the entry; the caller discards the half-written
//! directory.
//!
//! OCI/docker whiteouts become overlayfs whiteouts: `.wh.NAME` a 0/0
//! character device, `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on
//! its directory.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// No real image carries a terabyte file; a header claiming more is an
/// attack on the disk or the parser.
const MAX_ENTRY_SIZE: u64 = 1 << 40;

/// Why an entry is refused.
#[derive(Debug, thiserror::Error)]
pub enum Hostile {
    #[error("absolute path")]
    AbsolutePath,
    #[error("path contains '..'")]
    DotDot,
    #[error("a parent directory is a symlink or not a directory")]
    ThroughSymlink,
    #[error("hard link target {0:?} is outside the layer")]
    LinkOutside(String),
    #[error("hard link target {0:?} goes through a symlink or a non-directory")]
    LinkThroughSymlink(String),
    #[error("hard link target {0:?} does not exist in this layer")]
    LinkTargetMissing(String),
    #[error("it would replace a symlink with a directory")]
    SymlinkReplacedByDir,
    #[error("it would replace a directory with a non-directory")]
    DirReplaced,
    #[error("header claims {0} bytes")]
    AbsurdSize(u64),
    #[error("unsupported entry type {0:?}")]
    UnsupportedType(tar::EntryType),
    #[error("empty name")]
    EmptyName,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("layer is not a valid tar archive (truncated or corrupt): {source}")]
    Corrupt { source: io::Error },
    #[error("layer entry {path:?} refused: {reason}")]
    Refused { path: String, reason: Hostile },
    #[error("layer entry {path:?}: {op}: {source}")]
    Io {
        path: String,
        op: &'static str,
        source: io::Error,
    },
    #[error("opening layer directory {path}: {source}")]
    Root { path: String, source: io::Error },
}

/// What was applied.
#[derive(Debug, Default, Clone, Copy)]
pub struct Applied {
    /// Bytes of file content written (docker's layer size).
    pub size: u64,
}

/// One archive entry's name, split into checked components.
struct EntryPath {
    display: String,
    components: Vec<OsString>,
}

impl EntryPath {
    fn parse(raw: &[u8]) -> Result<Self, ApplyError> {
        let display = String::from_utf8_lossy(raw).into_owned();
        let refuse = |reason| ApplyError::Refused {
            path: display.clone(),
            reason,
        };
        if raw.starts_with(b"/") {
            return Err(refuse(Hostile::AbsolutePath));
        }
        let mut components = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => return Err(refuse(Hostile::DotDot)),
                c => components.push(OsStr::from_bytes(c).to_os_string()),
            }
        }
        Ok(EntryPath {
            display,
            components,
        })
    }

    fn split(&self) -> Option<(&[OsString], &OsStr)> {
        let (name, parent) = self.components.split_last()?;
        Some((parent, name))
    }
}

/// Applies the tar stream `archive` onto `root`, an existing (normally
/// empty) directory.
pub fn apply<R: Read>(archive: R, root: &Path) -> Result<Applied, ApplyError> {
    let root_fd = rfs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ApplyError::Root {
        path: root.display().to_string(),
        source: e.into(),
    })?;
    let mut ctx = Applier {
        root: root_fd,
        parent_cache: None,
        dir_times: Vec::new(),
        applied: Applied::default(),
    };
    let mut archive = tar::Archive::new(archive);
    for entry in archive
        .entries()
        .map_err(|source| ApplyError::Corrupt { source })?
    {
        let entry = entry.map_err(|source| ApplyError::Corrupt { source })?;
        ctx.entry(entry)?;
    }
    ctx.finish()?;
    Ok(ctx.applied)
}

struct Applier {
    root: OwnedFd,
    /// The last parent directory opened, reused while entries stay in it.
    parent_cache: Option<(Vec<OsString>, OwnedFd)>,
    /// Directory mtimes, set at the end once nothing writes into them.
    dir_times: Vec<(Vec<OsString>, Timestamps)>,
    applied: Applied,
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    times: Timestamps,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn io_err<'a>(path: &'a EntryPath, op: &'static str) -> impl FnOnce(Errno) -> ApplyError + 'a {
    move |e| ApplyError::Io {
        path: path.display.clone(),
        op,
        source: e.into(),
    }
}

impl Applier {
    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let path = EntryPath::parse(&entry.path_bytes())?;
        let refuse = |reason| ApplyError::Refused {
            path: path.display.clone(),
            reason,
        };
        let header = entry.header().clone();
        let kind = header.entry_type();
        let size = entry.size();
        if size > MAX_ENTRY_SIZE {
            return Err(refuse(Hostile::AbsurdSize(size)));
        }
        let corrupt = |source| ApplyError::Corrupt { source };
        let mtime = header.mtime().map_err(corrupt)?;
        let meta = Meta {
            mode: header.mode().map_err(corrupt)? & 0o7777,
            uid: u32::try_from(header.uid().map_err(corrupt)?)
                .map_err(|_| refuse(Hostile::AbsurdSize(size)))?,
            gid: u32::try_from(header.gid().map_err(corrupt)?)
                .map_err(|_| refuse(Hostile::AbsurdSize(size)))?,
            times: timestamps(mtime),
            xattrs: xattrs(&mut entry).map_err(corrupt)?,
        };

        let Some((parent_path, name)) = path.split() else {
            // "./": the layer root itself.
            return match kind {
                tar::EntryType::Directory => {
                    set_owner_mode(self.root.as_fd(), &meta)
                        .map_err(io_err(&path, "set owner and mode"))?;
                    self.dir_times.push((Vec::new(), meta.times));
                    Ok(())
                }
                tar::EntryType::XGlobalHeader => Ok(()),
                _ => Err(refuse(Hostile::EmptyName)),
            };
        };
        let parent = self.parent(parent_path, &path)?;
        let name_str = name.to_string_lossy();

        if name_str == OPAQUE_MARKER {
            return rfs::fsetxattr(&parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(io_err(&path, "mark directory opaque"));
        }
        if let Some(hidden) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            remove_existing(&parent, OsStr::new(hidden), &path)?;
            return rfs::mknodat(&parent, hidden, FileType::CharacterDevice, Mode::empty(), 0)
                .map_err(io_err(&path, "create whiteout"));
        }

        match kind {
            tar::EntryType::Directory => {
                match rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Directory => {}
                        FileType::Symlink => return Err(refuse(Hostile::SymlinkReplacedByDir)),
                        _ => {
                            remove_existing(&parent, name, &path)?;
                            rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                                .map_err(io_err(&path, "mkdir"))?;
                        }
                    },
                    Err(Errno::NOENT) => rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o700))
                        .map_err(io_err(&path, "mkdir"))?,
                    Err(e) => return Err(io_err(&path, "stat")(e)),
                }
                let dir = open_dir(&parent, name).map_err(io_err(&path, "open directory"))?;
                set_owner_mode(dir.as_fd(), &meta).map_err(io_err(&path, "set owner and mode"))?;
                set_xattrs(dir.as_fd(), &meta, &path)?;
                self.dir_times.push((path.components.clone(), meta.times));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&parent, name, &path)?;
                let fd = rfs::openat(
                    &parent,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io_err(&path, "create file"))?;
                let mut file = File::from(fd);
                self.applied.size += copy_data(&mut entry, &mut file, &path)?;
                set_owner_mode(file.as_fd(), &meta).map_err(io_err(&path, "set owner and mode"))?;
                set_xattrs(file.as_fd(), &meta, &path)?;
                rfs::futimens(&file, &meta.times).map_err(io_err(&path, "set times"))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(Hostile::EmptyName))?;
                remove_existing(&parent, name, &path)?;
                rfs::symlinkat(OsStr::from_bytes(&target), &parent, name)
                    .map_err(io_err(&path, "symlink"))?;
                self.applied.size += target.len() as u64;
                self.finish_node(&parent, name, &meta, &path)?;
            }
            tar::EntryType::Link => {
                let raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(Hostile::EmptyName))?;
                let target_display = String::from_utf8_lossy(&raw).into_owned();
                let target = EntryPath::parse(&raw)
                    .ok()
                    .filter(|t| !t.components.is_empty())
                    .ok_or_else(|| refuse(Hostile::LinkOutside(target_display.clone())))?;
                let (tparent, tname) = target.split().expect("checked non-empty");
                let tparent_fd = walk(&self.root, tparent, false).map_err(|e| match e {
                    Errno::NOENT => refuse(Hostile::LinkTargetMissing(target_display.clone())),
                    _ => refuse(Hostile::LinkThroughSymlink(target_display.clone())),
                })?;
                remove_existing(&parent, name, &path)?;
                rfs::linkat(&tparent_fd, tname, &parent, name, AtFlags::empty()).map_err(|e| {
                    match e {
                        Errno::NOENT => refuse(Hostile::LinkTargetMissing(target_display.clone())),
                        e => io_err(&path, "hard link")(e),
                    }
                })?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let major = header.device_major().map_err(corrupt)?.unwrap_or(0);
                let minor = header.device_minor().map_err(corrupt)?.unwrap_or(0);
                remove_existing(&parent, name, &path)?;
                rfs::mknodat(
                    &parent,
                    name,
                    file_type,
                    Mode::from_raw_mode(meta.mode),
                    rfs::makedev(major, minor),
                )
                .map_err(io_err(&path, "mknod"))?;
                self.finish_node(&parent, name, &meta, &path)?;
            }
            tar::EntryType::XGlobalHeader => {}
            other => return Err(refuse(Hostile::UnsupportedType(other))),
        }
        Ok(())
    }

    /// Owner and times of a node that cannot be opened for writing
    /// (symlink, device, FIFO); a symlink's mode is meaningless on Linux.
    fn finish_node(
        &self,
        parent: &OwnedFd,
        name: &OsStr,
        meta: &Meta,
        path: &EntryPath,
    ) -> Result<(), ApplyError> {
        rfs::chownat(
            parent,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(io_err(path, "chown"))?;
        rfs::utimensat(parent, name, &meta.times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err(path, "set times"))
    }

    /// Opens (creating missing directories as docker does) the parent of an
    /// entry; reuses the previous entry's parent when it is the same.
    fn parent(&mut self, components: &[OsString], path: &EntryPath) -> Result<OwnedFd, ApplyError> {
        if let Some((cached, fd)) = &self.parent_cache {
            if cached.as_slice() == components {
                return fd.try_clone().map_err(|e| ApplyError::Io {
                    path: path.display.clone(),
                    op: "dup",
                    source: e,
                });
            }
        }
        let fd = walk(&self.root, components, true).map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => ApplyError::Refused {
                path: path.display.clone(),
                reason: Hostile::ThroughSymlink,
            },
            e => io_err(path, "open parent directory")(e),
        })?;
        let keep = fd.try_clone().map_err(|e| ApplyError::Io {
            path: path.display.clone(),
            op: "dup",
            source: e,
        })?;
        self.parent_cache = Some((components.to_vec(), keep));
        Ok(fd)
    }

    fn finish(&mut self) -> Result<(), ApplyError> {
        self.parent_cache = None;
        // Children first, so that setting a parent's time comes last.
        for (components, times) in self.dir_times.iter().rev() {
            let path = EntryPath {
                display: components
                    .join(OsStr::new("/"))
                    .to_string_lossy()
                    .into_owned(),
                components: components.clone(),
            };
            let dir =
                walk(&self.root, components, false).map_err(io_err(&path, "reopen directory"))?;
            rfs::futimens(&dir, times).map_err(io_err(&path, "set times"))?;
        }
        Ok(())
    }
}

/// Walks `components` from `root`, never following a symlink; creates
/// missing directories when `create`.
fn walk(root: &OwnedFd, components: &[OsString], create: bool) -> Result<OwnedFd, Errno> {
    let mut cur = rfs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for c in components {
        cur = match open_dir(&cur, c) {
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&cur, c.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                open_dir(&cur, c)?
            }
            other => other?,
        };
    }
    Ok(cur)
}

fn open_dir(parent: &OwnedFd, name: &OsStr) -> Result<OwnedFd, Errno> {
    rfs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes a non-directory at `name`, so the entry can take its place (a
/// later entry for the same path wins, as in tar).
fn remove_existing(parent: &OwnedFd, name: &OsStr, path: &EntryPath) -> Result<(), ApplyError> {
    match rfs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => Err(ApplyError::Refused {
            path: path.display.clone(),
            reason: Hostile::DirReplaced,
        }),
        Err(e) => Err(io_err(path, "remove existing entry")(e)),
    }
}

/// chown before chmod: chown clears the setuid and setgid bits.
fn set_owner_mode(fd: BorrowedFd<'_>, meta: &Meta) -> Result<(), Errno> {
    rfs::fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )?;
    rfs::fchmod(fd, Mode::from_raw_mode(meta.mode))
}

fn set_xattrs(fd: BorrowedFd<'_>, meta: &Meta, path: &EntryPath) -> Result<(), ApplyError> {
    for (name, value) in &meta.xattrs {
        match rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
            Ok(()) => {}
            // A filesystem without that namespace (security.selinux on a
            // host without SELinux): the layer is still usable.
            Err(Errno::NOTSUP) => {
                tracing::warn!(entry = %path.display, xattr = %name, "xattr not supported here; skipped")
            }
            Err(e) => return Err(io_err(path, "set xattr")(e)),
        }
    }
    Ok(())
}

fn xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions()? {
        for ext in exts {
            let ext = ext?;
            if let Ok(Some(name)) = ext.key().map(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Copies an entry's data, telling a short archive (corrupt) apart from a
/// failed write (disk full).
fn copy_data<R: Read>(entry: &mut R, file: &mut File, path: &EntryPath) -> Result<u64, ApplyError> {
    let mut buf = vec![0u8; 128 * 1024];
    let mut total = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ApplyError::Corrupt { source }),
        };
        file.write_all(&buf[..n]).map_err(|source| ApplyError::Io {
            path: path.display.clone(),
            op: "write",
            source,
        })?;
        total += n as u64;
    }
}
