//! Signals as pipes to poll on (signal-hook's self-pipe): berth's own code
//! never runs in a signal handler.

use std::io::Read;
use std::os::unix::net::UnixStream;

use signal_hook::SigId;

/// A signal's arrivals, readable on `fd`; the handler goes with it.
pub struct SignalPipe {
    read: UnixStream,
    id: SigId,
}

impl SignalPipe {
    /// `None` when the pipe or the handler cannot be had (the signal is
    /// then simply not caught).
    pub fn new(signal: i32) -> Option<Self> {
        let (read, write) = UnixStream::pair().ok()?;
        read.set_nonblocking(true).ok()?;
        let id = signal_hook::low_level::pipe::register(signal, write).ok()?;
        Some(SignalPipe { read, id })
    }

    /// What to poll on.
    pub fn fd(&self) -> &UnixStream {
        &self.read
    }

    /// Whether the signal came since the last call.
    pub fn fired(&self) -> bool {
        let mut buf = [0u8; 64];
        (&self.read).read(&mut buf).is_ok_and(|n| n > 0)
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}
