//! A container's terminal, held by its monitor and served on a unix
//! socket (`attach.sock` in the container's directory) to `berth attach`
//! (and `run -it`, `start -ai`). The monitor writes what the container
//! prints to every attached client and to the log; a client sends frames:
//! `[kind u8][length u16 BE][payload]`, kind 0 the user's keys, kind 1 a
//! window size (rows u16 BE, cols u16 BE). A client that goes away (the
//! detach keys) leaves the container running.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::event::{poll, PollFd, PollFlags};

use crate::logs::LogWriter;

pub const SOCKET: &str = "attach.sock";
pub const KEYS: u8 = 0;
pub const RESIZE: u8 = 1;

/// A frame of the client's.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(3 + payload.len());
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&payload[..len as usize]);
    out
}

/// A window-size frame.
pub fn resize_frame(rows: u16, cols: u16) -> Vec<u8> {
    let mut p = rows.to_be_bytes().to_vec();
    p.extend_from_slice(&cols.to_be_bytes());
    frame(RESIZE, &p)
}

/// Reads one frame; `None` when the client has gone.
fn read_frame(client: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 3];
    client.read_exact(&mut head).ok()?;
    let len = u16::from_be_bytes([head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    client.read_exact(&mut payload).ok()?;
    Some((head[0], payload))
}

/// The monitor's loop for a container with a terminal: until the pty's
/// other side closes (the container's processes are gone).
pub fn serve_terminal(log: &mut LogWriter, master: &File, listener: &UnixListener) {
    let mut clients: Vec<UnixStream> = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending = Vec::new();
    loop {
        let mut fds = vec![
            PollFd::new(master, PollFlags::IN),
            PollFd::new(listener, PollFlags::IN),
        ];
        fds.extend(clients.iter().map(|c| PollFd::new(c, PollFlags::IN)));
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        if ready[0] {
            match (&*master).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    clients.retain_mut(|c| c.write_all(&buf[..n]).is_ok());
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(nl) = pending.iter().position(|b| *b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=nl).collect();
                        let _ = log.write("stdout", &line);
                    }
                }
            }
        }
        if ready[1] {
            if let Ok((c, _)) = listener.accept() {
                clients.push(c);
            }
        }
        let mut gone = Vec::new();
        for (i, client) in clients.iter_mut().enumerate() {
            if !ready.get(2 + i).copied().unwrap_or(false) {
                continue;
            }
            match read_frame(client) {
                Some((KEYS, keys)) => {
                    let _ = (&*master).write_all(&keys);
                }
                Some((RESIZE, p)) if p.len() == 4 => {
                    let size = rustix::termios::Winsize {
                        ws_row: u16::from_be_bytes([p[0], p[1]]),
                        ws_col: u16::from_be_bytes([p[2], p[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    };
                    let _ = rustix::termios::tcsetwinsize(master, size);
                }
                Some(_) => {}
                None => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            clients.remove(i);
        }
    }
    if !pending.is_empty() {
        let _ = log.write("stdout", &pending);
    }
}

/// Binds the attach socket in the current directory (the container's: its
/// full path may not fit in a socket address).
pub fn bind_here() -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(SOCKET);
    UnixListener::bind(SOCKET)
}
