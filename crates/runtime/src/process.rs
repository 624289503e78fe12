//! The container process's own settings, applied by the child: rlimits,
//! the terminal, and the last steps before exec (user, groups,
//! capabilities, working directory).

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::config::{Caps, Process};
use crate::sync::ChildError;

/// Sets the rlimits; one that cannot be set (above the hard limit, which
/// even root cannot raise past /proc/sys/fs/nr_open) is one clear error.
pub fn set_rlimits(p: &Process) -> Result<(), ChildError> {
    for r in &p.rlimits {
        let limit = rustix::process::Rlimit {
            current: Some(r.soft),
            maximum: Some(r.hard),
        };
        rustix::process::setrlimit(r.resource, limit).map_err(|e| {
            let have = rustix::process::getrlimit(r.resource)
                .maximum
                .map_or("unlimited".to_string(), |m| m.to_string());
            ChildError::errno(
                "rlimits",
                format!(
                    "cannot set {} to soft {} hard {} (the hard limit here is {have})",
                    r.name, r.soft, r.hard
                ),
                e,
            )
        })?;
    }
    Ok(())
}

/// Creates the container's terminal: a pty from the container's own devpts,
/// whose master goes to the caller over the console socket (runc's
/// protocol: one SCM_RIGHTS message, the pty name as payload), whose slave
/// becomes this process's controlling terminal and stdio.
pub fn setup_console(socket: &OwnedFd, size: Option<(u16, u16)>) -> Result<(), ChildError> {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let stage = "terminal";
    let e = |what: &'static str| move |err: Errno| ChildError::errno(stage, what, err);
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
        .map_err(e("opening /dev/ptmx"))?;
    grantpt(&master).map_err(e("grantpt"))?;
    unlockpt(&master).map_err(e("unlockpt"))?;
    let name = ptsname(&master, Vec::new()).map_err(e("ptsname"))?;
    if let Some((rows, cols)) = size {
        // Sized before the program runs: its first look at the terminal
        // (a shell's line editor, `stty size`) sees the caller's size.
        let size = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&master, size).map_err(e("setting the window size"))?;
    }
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(e("opening the pty slave"))?;
    send_fd(socket, &master, name.as_bytes())
        .map_err(e("sending the pty master over the console socket"))?;
    drop(master);
    rustix::process::setsid().map_err(e("setsid"))?;
    rustix::process::ioctl_tiocsctty(&slave)
        .map_err(e("making the pty the controlling terminal"))?;
    rustix::stdio::dup2_stdin(&slave).map_err(e("dup2 stdin"))?;
    rustix::stdio::dup2_stdout(&slave).map_err(e("dup2 stdout"))?;
    rustix::stdio::dup2_stderr(&slave).map_err(e("dup2 stderr"))?;
    Ok(())
}

fn send_fd(socket: &OwnedFd, fd: &OwnedFd, payload: &[u8]) -> Result<(), Errno> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    let fds = [fd.as_fd()];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    control.push(SendAncillaryMessage::ScmRights(&fds));
    sendmsg(
        socket,
        &[std::io::IoSlice::new(payload)],
        &mut control,
        SendFlags::empty(),
    )?;
    Ok(())
}

/// Every capability the kernel knows, as single-bit sets.
fn all_capabilities() -> impl Iterator<Item = CapabilitySet> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    (0..=last.min(63)).map(|i| CapabilitySet::from_bits_retain(1 << i))
}

/// Step 10: drop capabilities from the bounding set, switch to the
/// process's user and groups keeping the permitted set, then set the
/// effective, permitted, inheritable and ambient sets the config asks for.
pub fn become_user(p: &Process) -> Result<(), ChildError> {
    let stage = "user and capabilities";
    let e = |what: String| move |err: Errno| ChildError::errno(stage, what, err);
    let Caps {
        bounding,
        effective,
        inheritable,
        permitted,
        ambient,
    } = p.caps.clone();
    for cap in all_capabilities() {
        if !bounding.contains(cap) {
            match rustix::thread::remove_capability_from_bounding_set(cap) {
                Ok(()) | Err(Errno::INVAL) => {} // a capability this kernel lacks
                Err(err) => return Err(e(format!("dropping {cap:?} from the bounding set"))(err)),
            }
        }
    }
    rustix::thread::set_keep_capabilities(true).map_err(e("PR_SET_KEEPCAPS".into()))?;
    let groups: Vec<Gid> = p
        .additional_gids
        .iter()
        .map(|g| Gid::from_raw(*g))
        .collect();
    rustix::thread::set_thread_groups(&groups)
        .map_err(e(format!("setgroups {:?}", p.additional_gids)))?;
    let gid = Gid::from_raw(p.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(e(format!("setresgid {}", p.gid)))?;
    let uid = Uid::from_raw(p.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(e(format!("setresuid {}", p.uid)))?;
    rustix::thread::set_keep_capabilities(false).map_err(e("PR_SET_KEEPCAPS".into()))?;
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective,
            permitted,
            inheritable,
        },
    )
    .map_err(e("setting capabilities".into()))?;
    for cap in all_capabilities().filter(|c| ambient.contains(*c)) {
        rustix::thread::configure_capability_in_ambient_set(cap, true)
            .map_err(e(format!("raising ambient {cap:?}")))?;
    }
    Ok(())
}

/// Changes to the working directory and checks that it is inside the
/// container: a descriptor leaked from the host could otherwise leave the
/// process in a host directory (CVE-2024-21626).
pub fn enter_cwd(cwd: &Path) -> Result<(), ChildError> {
    let stage = "working directory";
    rustix::process::chdir(cwd)
        .map_err(|e| ChildError::errno(stage, format!("chdir {}", cwd.display()), e))?;
    let here =
        rustix::process::getcwd(Vec::new()).map_err(|e| ChildError::errno(stage, "getcwd", e))?;
    if !here.as_bytes().starts_with(b"/") {
        return Err(ChildError::new(
            stage,
            format!("{} is outside the container's root", cwd.display()),
        ));
    }
    Ok(())
}

/// The program to exec, found as execvp would, on the container's PATH.
pub fn find_program(args: &[String], env: &[String]) -> Result<CString, ChildError> {
    let prog = &args[0];
    let not_found = |detail: String| ChildError {
        stage: "exec".into(),
        detail,
        errno: Some(libc_enoent()),
        exec_status: Some(127),
    };
    let candidates: Vec<PathBuf> = if prog.contains('/') {
        vec![PathBuf::from(prog)]
    } else {
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(prog))
            .collect()
    };
    for c in &candidates {
        if let Ok(md) = std::fs::metadata(c) {
            if md.is_file() {
                use std::os::unix::ffi::OsStrExt;
                return CString::new(c.as_os_str().as_bytes())
                    .map_err(|_| not_found(format!("{prog:?} contains a NUL")));
            }
        }
    }
    Err(if prog.contains('/') {
        not_found(format!("exec {prog:?}: no such file or directory"))
    } else {
        not_found(format!("exec {prog:?}: executable file not found in $PATH"))
    })
}

fn libc_enoent() -> i32 {
    Errno::NOENT.raw_os_error()
}
