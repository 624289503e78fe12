//! Parent and child talk over one SOCK_SEQPACKET socket pair (one message
//! per packet, so no framing is needed), each message a JSON value of one
//! enum. The sequence:
//!
//! ```text
//!   parent                                  child (in the new namespaces)
//!   clone (into the cgroup2 cgroup) ---------> joins the v1 cgroups, waits
//!   writes id maps
//!   Begin {state} ----------------------------> joins/unshares the rest, mounts
//!            <---------------------------------- RunHooks   (only if there are hooks)
//!   runs createRuntime/prestart hooks
//!   Proceed ---------------------------------->  createContainer hooks, pivot_root,
//!                                               terminal, hostname, paths, user, caps
//!            <---------------------------------- Ready      (or Failed at any point)
//!   saves state, returns                        blocks on exec.fifo until `start`
//! ```
//!
//! A message out of this order is an error on the receiving side.

use std::io;
use std::os::fd::OwnedFd;

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum Message {
    /// The first message to the child: the container's state (for hooks).
    Begin {
        state: String,
    },
    Proceed,
    RunHooks,
    /// exec: the new process exists, with this (host) PID.
    Started {
        pid: i32,
    },
    Ready,
    Failed(ChildError),
}

/// An error in the child, carried to the parent so the user sees the real
/// cause: which step, what it did, the errno.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, thiserror::Error)]
#[error("{stage}: {detail}")]
pub struct ChildError {
    pub stage: String,
    pub detail: String,
    pub errno: Option<i32>,
    /// The program to run could not be found (docker maps this to 127) or
    /// run (126).
    pub exec_status: Option<i32>,
}

impl ChildError {
    pub fn new(stage: &str, detail: impl std::fmt::Display) -> Self {
        ChildError {
            stage: stage.into(),
            detail: detail.to_string(),
            errno: None,
            exec_status: None,
        }
    }

    pub fn errno(stage: &str, what: impl std::fmt::Display, e: rustix::io::Errno) -> Self {
        ChildError {
            stage: stage.into(),
            detail: format!("{what}: {}", io::Error::from(e)),
            errno: Some(e.raw_os_error()),
            exec_status: None,
        }
    }

    pub fn io(stage: &str, what: impl std::fmt::Display, e: io::Error) -> Self {
        ChildError {
            stage: stage.into(),
            detail: format!("{what}: {e}"),
            errno: e.raw_os_error(),
            exec_status: None,
        }
    }
}

pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> io::Result<(Channel, Channel)> {
    let (a, b) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, m: &Message) -> io::Result<()> {
        let bytes = serde_json::to_vec(m).expect("messages serialise");
        rustix::net::send(&self.fd, &bytes, SendFlags::NOSIGNAL)?;
        Ok(())
    }

    /// The next message; `None` when the other side closed (died).
    pub fn recv(&self) -> io::Result<Option<Message>> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, _) = loop {
            match rustix::net::recv(&self.fd, &mut buf, RecvFlags::empty()) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}
