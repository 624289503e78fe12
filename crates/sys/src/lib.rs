//! The only crate with `unsafe` code: thin wrappers over the syscalls that
//! rustix does not offer as safe functions (process creation, exec, fd
//! table flags). Each wrapper states the contract its callers keep.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use libc::pid_t;

/// Which side of a fork this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent { child: pid_t },
    Child,
}

/// Namespace flags for [`clone_process`] (the `CLONE_NEW*` constants).
pub mod clone_flags {
    pub const NEWNS: u64 = libc::CLONE_NEWNS as u64;
    pub const NEWUTS: u64 = libc::CLONE_NEWUTS as u64;
    pub const NEWIPC: u64 = libc::CLONE_NEWIPC as u64;
    pub const NEWPID: u64 = libc::CLONE_NEWPID as u64;
    pub const NEWNET: u64 = libc::CLONE_NEWNET as u64;
    pub const NEWUSER: u64 = libc::CLONE_NEWUSER as u64;
    pub const NEWCGROUP: u64 = libc::CLONE_NEWCGROUP as u64;
    pub const NEWTIME: u64 = 0x80; // CLONE_NEWTIME, absent from older libc
}

/// Brings the loopback interface of this process's network namespace up,
/// as a new namespace starts with it down (docker's `--network none` has
/// a working 127.0.0.1).
pub fn set_loopback_up() -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let sock = rustix::net::socket_with(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        rustix::net::SocketFlags::CLOEXEC,
        None,
    )?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from `req` and writes the flags
    // into its union; `req` is a valid, exclusively borrowed ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the union's flags member is the one SIOCGIFFLAGS just set.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops this process's pages of read-only, file-backed mappings (program
/// text and read-only data, of the executable and its libraries) from its
/// page tables, and returns malloc's free memory to the kernel. A
/// long-lived process that ran a lot of code once (the monitor, after
/// creating its container) keeps only what it touches again: its
/// resident size falls to that. The file pages stay in the page cache,
/// shared with every other process that maps the files.
pub fn release_idle_memory() -> io::Result<()> {
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    // (start, end, releasable) of the mapping being read.
    let mut current: Option<(usize, usize, bool)> = None;
    let mut release = Vec::new();
    for line in smaps.lines() {
        if let Some(anon) = line.strip_prefix("Anonymous:") {
            // Pages written since they were mapped (relocated read-only
            // data, after RELRO) are copies that differ from the file.
            if let Some((start, end, true)) = current {
                if anon.trim() == "0 kB" {
                    release.push((start, end));
                }
            }
            continue;
        }
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms), Some(_), Some(_), Some(inode)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(start), Ok(end)) = (
            usize::from_str_radix(start, 16),
            usize::from_str_radix(end, 16),
        ) else {
            continue;
        };
        // Private, not writable, backed by a file (inode != 0).
        let releasable = perms.starts_with("r-") && perms.ends_with('p') && inode != "0";
        current = Some((start, end, releasable));
    }
    for (start, end) in release {
        // SAFETY: the range is a private, read-only file mapping none of
        // whose pages was ever written (no anonymous copy): every page is
        // the file's bytes, so MADV_DONTNEED only unmaps them and the next
        // access faults the same bytes back in (16 pages at a time: the
        // kernel's fault-around, which no advice turns off).
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    drop(smaps);
    // SAFETY: malloc_trim takes an integer and only hands malloc's own
    // free pages back to the kernel (the monitor's heap after creating
    // its container: 180 KiB resident before, 100 KiB after).
    unsafe { libc::malloc_trim(0) };
    Ok(())
}

/// `clone(2)` used as `fork(2)` with namespace flags: the child starts in
/// new namespaces, on a copy of the caller's stack, and returns here.
///
/// With `cgroup2`, an open cgroup2 directory, the child is born in that
/// cgroup (`clone3`'s CLONE_INTO_CGROUP, Linux 5.7): no write to its
/// `cgroup.procs` afterwards, which would wait for an RCU grace period
/// (the kernel's global threadgroup lock; 7-20 ms on this machine).
///
/// The caller must be single-threaded (berth's create path never starts a
/// thread): a clone of a multi-threaded process could inherit locks held
/// by threads that do not exist in the child.
pub fn clone_process(namespaces: u64, cgroup2: Option<BorrowedFd<'_>>) -> io::Result<Forked> {
    let ret = match cgroup2 {
        None => {
            let flags = namespaces | libc::SIGCHLD as u64;
            // SAFETY: with a null stack pointer clone behaves as fork (the
            // child gets a copy-on-write copy of the address space and
            // continues on it). No pointers are passed; the caller
            // guarantees a single-threaded process, so no lock can be held
            // in the child.
            unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) }
        }
        Some(fd) => {
            const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
            let args = CloneArgs {
                flags: namespaces | CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: fd.as_raw_fd() as u64,
                ..CloneArgs::default()
            };
            // SAFETY: as for clone above (a null stack makes clone3 a
            // fork); `args` is a valid clone_args of the size passed, and
            // holds no pointer.
            unsafe {
                libc::syscall(
                    libc::SYS_clone3,
                    &args as *const CloneArgs,
                    std::mem::size_of::<CloneArgs>(),
                )
            }
        }
    };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            child: pid as pid_t,
        }),
    }
}

/// `struct clone_args` up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// `unshare(2)` of namespace flags only (`CLONE_NEW*`).
pub fn unshare_namespaces(flags: u64) -> io::Result<()> {
    use clone_flags::*;
    let allowed = NEWNS | NEWUTS | NEWIPC | NEWPID | NEWNET | NEWUSER | NEWCGROUP | NEWTIME;
    if flags & !allowed != 0 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: only namespace flags pass the check above; unlike
    // CLONE_FILES or CLONE_FS they change nothing other threads share with
    // this one in memory or in the fd table.
    let ret = unsafe { libc::unshare(flags as libc::c_int) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `personality(2)`: sets the execution domain (e.g. PER_LINUX32 = 8,
/// which makes `uname -m` report a 32-bit machine).
pub fn set_personality(persona: u32) -> io::Result<()> {
    // SAFETY: personality takes a plain integer and touches no memory of
    // this process.
    let ret = unsafe { libc::personality(persona as libc::c_ulong) };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The head of `union bpf_attr` for BPF_PROG_LOAD, up to
/// `expected_attach_type`; the kernel reads the rest as zero.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program (encoded instructions).
/// On failure the error carries the verifier's log.
pub fn bpf_load_device_program(insns: &[u64]) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let license = c"Apache";
    let mut log = vec![0u8; 64 * 1024];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_name: *b"berth_devices\0\0\0",
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: attr is a properly laid out prefix of union bpf_attr whose
    // pointers (instructions, license, log buffer) stay valid for the call;
    // its size is passed, and the kernel writes only into the log buffer.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd < 0 {
        let err = io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(0);
        let text = String::from_utf8_lossy(&log[..end])
            .trim()
            .replace('\n', "; ");
        return Err(io::Error::new(
            err.kind(),
            format!("{err}{}{text}", if text.is_empty() { "" } else { ": " }),
        ));
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches a device program to a cgroup2 directory (with
/// BPF_F_ALLOW_MULTI, so programs of parents keep applying).
pub fn bpf_attach_device_program(
    cgroup: BorrowedFd<'_>,
    program: BorrowedFd<'_>,
) -> io::Result<()> {
    let attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: attr is a properly laid out union bpf_attr for
    // BPF_PROG_ATTACH with valid descriptors; the kernel only reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn c_array(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `execve(2)` of a container's program; returns only on failure. The
/// program starts as a new program expects: every signal at its default
/// disposition and none blocked. (An ignored signal survives exec, and
/// every Rust program ignores SIGPIPE: without this, `yes | head -1` in a
/// container would print "Broken pipe" instead of ending quietly.)
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    // The kernel's struct sigaction (glibc's wrapper refuses the two
    // real-time signals it keeps for itself, which may be ignored too).
    #[repr(C)]
    struct KernelSigaction {
        handler: usize,
        flags: libc::c_ulong,
        restorer: usize,
        mask: u64,
    }
    let default = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for signal in 1..=64 {
        if signal != libc::SIGKILL && signal != libc::SIGSTOP {
            // SAFETY: `default` is a valid kernel sigaction for the call's
            // duration and installs no handler, so no Rust code runs in
            // signal context; the old action is not asked for (null).
            unsafe {
                libc::syscall(
                    libc::SYS_rt_sigaction,
                    signal,
                    &default as *const KernelSigaction,
                    std::ptr::null_mut::<KernelSigaction>(),
                    std::mem::size_of::<u64>(),
                )
            };
        }
    }
    // SAFETY: the set is initialised by sigemptyset before use, and
    // sigprocmask only reads it.
    unsafe {
        let mut none = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
    let argv = c_array(argv);
    let envp = c_array(envp);
    // SAFETY: every pointer is to a NUL-terminated string owned by the
    // caller's CStrings, which outlive this call; both arrays end with a
    // null pointer as execve requires.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Installs a seccomp filter on the calling thread:
/// `seccomp(SECCOMP_SET_MODE_FILTER, 0, program)`, `program` being the BPF
/// instructions as libseccomp exports them (8 bytes each, native order).
pub fn seccomp_set_filter(program: &[u8]) -> io::Result<()> {
    let count = program.len() / 8;
    if !program.len().is_multiple_of(8) || count == 0 || count > usize::from(u16::MAX) {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    let filters: Vec<libc::sock_filter> = program
        .chunks_exact(8)
        .map(|i| libc::sock_filter {
            code: u16::from_ne_bytes([i[0], i[1]]),
            jt: i[2],
            jf: i[3],
            k: u32::from_ne_bytes([i[4], i[5], i[6], i[7]]),
        })
        .collect();
    let prog = libc::sock_fprog {
        len: count as u16,
        filter: filters.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `filters`, `count` valid instructions that
    // outlive the call; the kernel copies the program and keeps no pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `fexecve(3)` through `execveat(fd, "", ..., AT_EMPTY_PATH)`; returns
/// only on failure.
pub fn fexecve(fd: BorrowedFd<'_>, argv: &[CString], envp: &[CString]) -> io::Error {
    let argv = c_array(argv);
    let envp = c_array(envp);
    // SAFETY: fd is a valid open descriptor for the call's duration; the
    // path is an empty NUL-terminated string; argv and envp are
    // null-terminated arrays of pointers into CStrings that outlive the call.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// Marks every descriptor from `first` up close-on-exec
/// (`close_range(first, ~0, CLOSE_RANGE_CLOEXEC)`), so that nothing the
/// runtime held leaks into the container's process.
pub fn cloexec_from(first: u32) -> io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags; no memory is
    // passed. Marking (not closing) keeps every fd valid for the Rust code
    // that still owns it until exec.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_file_pages_are_released() {
        let rss_file = || -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        };
        let before = rss_file();
        release_idle_memory().unwrap();
        let after = rss_file();
        assert!(after < before, "RssFile {before} kB -> {after} kB");
    }

    #[test]
    fn clone_without_namespaces_forks() {
        match clone_process(0, None).unwrap() {
            // SAFETY: _exit ends the forked child at once, without running
            // the test harness's atexit handlers or touching its locks.
            Forked::Child => unsafe { libc::_exit(7) },
            Forked::Parent { child } => {
                let pid = rustix::process::Pid::from_raw(child).unwrap();
                let status =
                    rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
                        .unwrap()
                        .unwrap()
                        .1;
                assert_eq!(status.exit_status(), Some(7));
            }
        }
    }
}
