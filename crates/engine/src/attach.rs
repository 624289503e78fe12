//! What a container's monitor serves on a unix socket (`attach.sock` in
//! the container's directory) to `berth attach` (and `run`, `start -a`):
//! the container's terminal (`-t`), or the input end of its stdin (`-i`
//! without `-t`). A client sends frames: `[kind u8][length u16 BE]
//! [payload]`, kind 0 the user's keys, kind 1 a window size (rows u16 BE,
//! cols u16 BE), kind 2 "my input has ended". With a terminal, the monitor
//! writes what the container prints to every client and to the log;
//! without one, clients follow the log. A client that goes away (the
//! detach keys) leaves the container running.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::event::{poll, PollFd, PollFlags};

use crate::logs::LogWriter;

pub const SOCKET: &str = "attach.sock";
pub const KEYS: u8 = 0;
pub const RESIZE: u8 = 1;
pub const INPUT_ENDED: u8 = 2;

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

/// What the clients asked for in one round.
enum Request {
    Keys(Vec<u8>),
    Resize(rustix::termios::Winsize),
    InputEnded,
}

/// The socket and the clients attached to it.
struct Clients<'a> {
    listener: &'a UnixListener,
    streams: Vec<UnixStream>,
}

impl<'a> Clients<'a> {
    fn new(listener: &'a UnixListener) -> Self {
        Clients {
            listener,
            streams: Vec::new(),
        }
    }

    /// The descriptors to poll for input: the socket, then each client.
    /// `reading` false leaves the clients out (their input cannot go
    /// anywhere yet).
    fn poll_fds(&self, reading: bool) -> Vec<PollFd<'_>> {
        let mut fds = vec![PollFd::new(self.listener, PollFlags::IN)];
        if reading {
            fds.extend(self.streams.iter().map(|c| PollFd::new(c, PollFlags::IN)));
        }
        fds
    }

    /// Accepts a new client and reads the frames of those `ready` (in the
    /// order of `poll_fds`); a client gone is dropped.
    fn serve(&mut self, ready: &[bool]) -> Vec<Request> {
        let mut requests = Vec::new();
        let mut gone = Vec::new();
        for (i, client) in self.streams.iter_mut().enumerate() {
            if !ready.get(1 + i).copied().unwrap_or(false) {
                continue;
            }
            match read_frame(client) {
                Some((KEYS, keys)) => requests.push(Request::Keys(keys)),
                Some((RESIZE, p)) if p.len() == 4 => {
                    requests.push(Request::Resize(rustix::termios::Winsize {
                        ws_row: u16::from_be_bytes([p[0], p[1]]),
                        ws_col: u16::from_be_bytes([p[2], p[3]]),
                        ws_xpixel: 0,
                        ws_ypixel: 0,
                    }))
                }
                Some((INPUT_ENDED, _)) => requests.push(Request::InputEnded),
                Some(_) => {}
                None => gone.push(i),
            }
        }
        for i in gone.into_iter().rev() {
            self.streams.remove(i);
        }
        if ready.first().copied().unwrap_or(false) {
            if let Ok((c, _)) = self.listener.accept() {
                self.streams.push(c);
            }
        }
        requests
    }

    /// Sends output to every client; one that cannot take it is dropped.
    fn broadcast(&mut self, data: &[u8]) {
        self.streams.retain_mut(|c| c.write_all(data).is_ok());
    }
}

/// Splits what a stream printed into log entries, a line each.
struct LineLog {
    stream: &'static str,
    pending: Vec<u8>,
}

impl LineLog {
    fn new(stream: &'static str) -> Self {
        LineLog {
            stream,
            pending: Vec::new(),
        }
    }

    fn write(&mut self, log: &mut LogWriter, data: &[u8]) {
        self.pending.extend_from_slice(data);
        while let Some(nl) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=nl).collect();
            let _ = log.write(self.stream, &line);
        }
        if self.pending.len() >= crate::logs::MAX_ENTRY {
            self.flush(log);
        }
    }

    /// The last, unterminated line.
    fn flush(&mut self, log: &mut LogWriter) {
        if !self.pending.is_empty() {
            let _ = log.write(self.stream, &self.pending);
            self.pending.clear();
        }
    }
}

/// The clients still attached when the container's terminal closed.
pub struct Lingering(Vec<UnixStream>);

impl Lingering {
    /// Tells them the output has ended (the container's exit is recorded
    /// by then) and waits a little for each to go: `run --rm -it` reads the
    /// exit code before the monitor removes the container.
    pub fn release(self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        for mut client in self.0 {
            let _ = client.shutdown(std::net::Shutdown::Write);
            // Until the client closes (0), or the time is up (an error).
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let timeout = left.max(std::time::Duration::from_millis(1));
                if client.set_read_timeout(Some(timeout)).is_err() {
                    break;
                }
                match client.read(&mut [0u8; 256]) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        }
    }
}

/// The monitor's loop for a container with a terminal: until the pty's
/// other side closes (the container's processes are gone). Returns the
/// clients still attached, to be released once the exit is recorded.
pub fn serve_terminal(log: &mut LogWriter, master: &File, listener: &UnixListener) -> Lingering {
    let mut clients = Clients::new(listener);
    let mut lines = LineLog::new("stdout");
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut fds = vec![PollFd::new(master, PollFlags::IN)];
        fds.extend(clients.poll_fds(true));
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        // Clients first: one that connected before the process ran
        // (`run -it`) must get its first output.
        for request in clients.serve(&ready[1..]) {
            match request {
                Request::Keys(keys) => {
                    let _ = (&*master).write_all(&keys);
                }
                Request::Resize(size) => {
                    let _ = rustix::termios::tcsetwinsize(master, size);
                }
                Request::InputEnded => {}
            }
        }
        if ready[0] {
            match (&*master).read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    clients.broadcast(&buf[..n]);
                    lines.write(log, &buf[..n]);
                }
            }
        }
    }
    lines.flush(log);
    Lingering(clients.streams)
}

/// The input end of a container's stdin (`-i` without `-t`), held by the
/// monitor and fed by attached clients.
pub struct Stdin<'a> {
    pub listener: &'a UnixListener,
    /// The pipe's write end.
    pub pipe: OwnedFd,
    /// docker's StdinOnce: the first client whose input ends closes it
    /// (`run -i`); otherwise it stays open for the next (`run -di`).
    pub once: bool,
}

/// The monitor's loop for a container without a terminal: its stdout and
/// stderr into the log, a line an entry, until both are closed (the
/// process and all it started are gone); with `stdin`, what clients send
/// into the container's stdin.
pub fn pump(log: &mut LogWriter, out: OwnedFd, err: OwnedFd, stdin: Option<Stdin<'_>>) {
    let mut streams = [
        (Some(File::from(out)), LineLog::new("stdout")),
        (Some(File::from(err)), LineLog::new("stderr")),
    ];
    let (listener, mut pipe, once) = match stdin {
        Some(s) => (Some(s.listener), Some(s.pipe), s.once),
        None => (None, None, false),
    };
    if let Some(p) = &pipe {
        // Never block the log on a container that does not read.
        let _ = rustix::io::ioctl_fionbio(p, true);
    }
    let mut clients = listener.map(Clients::new);
    let mut input: Vec<u8> = Vec::new();
    let mut close_input = false;
    let mut buf = vec![0u8; 64 * 1024];
    while streams.iter().any(|s| s.0.is_some()) {
        let mut fds: Vec<PollFd<'_>> = streams
            .iter()
            .filter_map(|s| s.0.as_ref())
            .map(|f| PollFd::new(f, PollFlags::IN))
            .collect();
        let outputs = fds.len();
        let writing = pipe.is_some() && !input.is_empty();
        if let (true, Some(p)) = (writing, &pipe) {
            fds.push(PollFd::new(p, PollFlags::OUT));
        }
        let first_client = fds.len();
        if let Some(c) = &clients {
            // Take more input only once what came before is in the pipe.
            fds.extend(c.poll_fds(pipe.is_some() && input.is_empty()));
        }
        if poll(&mut fds, None).is_err() {
            continue;
        }
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        let mut i = 0;
        for (file, lines) in streams.iter_mut() {
            let Some(f) = file else { continue };
            let is_ready = ready[i];
            i += 1;
            if !is_ready {
                continue;
            }
            match f.read(&mut buf) {
                Ok(0) | Err(_) => {
                    lines.flush(log);
                    *file = None;
                }
                Ok(n) => lines.write(log, &buf[..n]),
            }
        }
        debug_assert_eq!(i, outputs);
        if writing && ready[outputs] {
            if let Some(p) = &pipe {
                match rustix::io::write(p, &input) {
                    Ok(n) => drop(input.drain(..n)),
                    Err(rustix::io::Errno::AGAIN) => {}
                    // The container closed its stdin: nothing more goes in.
                    Err(_) => input.clear(),
                }
            }
        }
        if let Some(c) = clients.as_mut() {
            for request in c.serve(&ready[first_client..]) {
                match request {
                    Request::Keys(keys) => input.extend_from_slice(&keys),
                    Request::InputEnded if once => close_input = true,
                    _ => {}
                }
            }
        }
        if close_input && input.is_empty() {
            pipe = None;
        }
    }
}

/// Connects to the attach socket of the container whose directory is
/// `dir`, from there (its full path may not fit in a socket address).
pub fn connect(dir: &std::path::Path) -> io::Result<UnixStream> {
    std::env::set_current_dir(dir)?;
    UnixStream::connect(SOCKET)
}

/// Binds the attach socket in the current directory (the container's: its
/// full path may not fit in a socket address).
pub fn bind_here() -> io::Result<UnixListener> {
    let _ = std::fs::remove_file(SOCKET);
    UnixListener::bind(SOCKET)
}
