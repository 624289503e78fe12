//! A container's terminal on the user's: raw mode while it runs, the
//! window size at start and on every SIGWINCH, bytes both ways until the
//! container's side of the pty closes (its processes are gone).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;

use rustix::event::{poll, PollFd, PollFlags};

use crate::signals::SignalPipe;
use rustix::termios::{tcgetattr, tcgetwinsize, tcsetattr, tcsetwinsize, OptionalActions, Termios};

/// The user's terminal in raw mode until dropped: keys, Ctrl-C included,
/// go to the container's terminal as bytes, whose line discipline acts on
/// them (so Ctrl-C is the container's SIGINT).
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Option<Self> {
        let stdin = io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        tcsetattr(&stdin, OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(io::stdin(), OptionalActions::Now, &self.saved);
    }
}

fn copy_window_size(master: &File) {
    if let Ok(size) = tcgetwinsize(io::stdin()) {
        let _ = tcsetwinsize(master, size);
    }
}

/// Relays the user's terminal and `master` until the container's side
/// closes. With `interactive`, what the user types goes in; otherwise
/// only the output comes out.
/// The size of berth's terminal (rows, columns), when its stdin is one:
/// what a container's pty is given before its process runs.
pub fn size() -> Option<[u16; 2]> {
    tcgetwinsize(io::stdin()).ok().map(|w| [w.ws_row, w.ws_col])
}

pub fn relay(master: File, interactive: bool) {
    let raw = if interactive { RawMode::enter() } else { None };
    copy_window_size(&master);
    // SIGWINCH writes a byte to this pipe; poll wakes up on it.
    let winch = SignalPipe::new(signal_hook::consts::SIGWINCH);
    let stdin = io::stdin();
    let mut stdin_open = interactive;
    let mut out = io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let mut master_r = &master;
    loop {
        let mut fds = vec![PollFd::new(&master, PollFlags::IN)];
        if let Some(w) = &winch {
            fds.push(PollFd::new(w.fd(), PollFlags::IN));
        }
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            match master_r.read(&mut buf) {
                // EIO: the last process holding the other side exited.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if winch.as_ref().is_some_and(|w| w.fired()) {
            copy_window_size(&master);
        }
        if stdin_open && *ready.last().unwrap_or(&false) {
            match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => {
                    let _ = (&master).write_all(&buf[..n]);
                }
            }
        }
    }
    drop(raw);
}

/// How an attachment ended.
pub enum Attached {
    /// The user typed the detach keys (Ctrl-P Ctrl-Q): the container runs on.
    Detached,
    /// The container's terminal closed: its process ended.
    Ended,
}

const CTRL_P: u8 = 0x10;
const CTRL_Q: u8 = 0x11;

/// Attaches the user's terminal to a running container's, through `sock`
/// (connected to its monitor); what the user types goes in with `input`.
pub fn attach(mut sock: UnixStream, input: bool) -> io::Result<Attached> {
    use berth_engine::attach::{frame, resize_frame, KEYS};
    let raw = if input { RawMode::enter() } else { None };
    let send_size = |sock: &mut UnixStream| {
        if let Ok(ws) = tcgetwinsize(io::stdin()) {
            let _ = sock.write_all(&resize_frame(ws.ws_row, ws.ws_col));
        }
    };
    send_size(&mut sock);
    let winch = SignalPipe::new(signal_hook::consts::SIGWINCH);
    let stdin = io::stdin();
    let mut stdin_open = input;
    let mut out = io::stdout();
    let mut buf = [0u8; 16 * 1024];
    let mut held_ctrl_p = false;
    let ended = loop {
        let mut fds = vec![PollFd::new(&sock, PollFlags::IN)];
        if let Some(w) = &winch {
            fds.push(PollFd::new(w.fd(), PollFlags::IN));
        }
        if stdin_open {
            fds.push(PollFd::new(&stdin, PollFlags::IN));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            match (&sock).read(&mut buf) {
                Ok(0) | Err(_) => break Attached::Ended,
                Ok(n) => {
                    let _ = out.write_all(&buf[..n]);
                    let _ = out.flush();
                }
            }
        }
        if winch.as_ref().is_some_and(|w| w.fired()) {
            send_size(&mut sock);
        }
        if stdin_open && *ready.last().unwrap_or(&false) {
            let n = match stdin.lock().read(&mut buf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    continue;
                }
                Ok(n) => n,
            };
            // docker's detach keys: Ctrl-P held back until the next key
            // says whether it was one.
            let mut keys = Vec::with_capacity(n + 1);
            let mut detach = false;
            for &b in &buf[..n] {
                match (held_ctrl_p, b) {
                    (true, CTRL_Q) => {
                        detach = true;
                        break;
                    }
                    (true, _) => {
                        keys.push(CTRL_P);
                        held_ctrl_p = b == CTRL_P;
                        if b != CTRL_P {
                            keys.push(b);
                        }
                    }
                    (false, CTRL_P) => held_ctrl_p = true,
                    (false, _) => keys.push(b),
                }
            }
            if !keys.is_empty() && sock.write_all(&frame(KEYS, &keys)).is_err() {
                break Attached::Ended;
            }
            if detach {
                break Attached::Detached;
            }
        }
    };
    drop(raw);
    Ok(ended)
}
