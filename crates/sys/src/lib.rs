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

/// `clone(2)` used as `fork(2)` with namespace flags: the child starts in
/// new namespaces, on a copy of the caller's stack, and returns here.
///
/// The caller must be single-threaded (berth's create path never starts a
/// thread): a clone of a multi-threaded process could inherit locks held
/// by threads that do not exist in the child.
pub fn clone_process(namespaces: u64) -> io::Result<Forked> {
    let flags = namespaces | libc::SIGCHLD as u64;
    // SAFETY: with a null stack pointer clone behaves as fork (the child
    // gets a copy-on-write copy of the address space and continues on
    // it). No pointers are passed; the caller guarantees a
    // single-threaded process, so no lock can be held in the child.
    let ret = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent {
            child: pid as pid_t,
        }),
    }
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

fn c_array(items: &[CString]) -> Vec<*const libc::c_char> {
    items
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// `execve(2)`; returns only on failure.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let argv = c_array(argv);
    let envp = c_array(envp);
    // SAFETY: every pointer is to a NUL-terminated string owned by the
    // caller's CStrings, which outlive this call; both arrays end with a
    // null pointer as execve requires.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
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
    fn clone_without_namespaces_forks() {
        match clone_process(0).unwrap() {
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
