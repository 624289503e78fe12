//! A container's run state, `containers/<id>/state.json`: written by its
//! monitor (which alone knows when the process started and how it ended)
//! and by berth for what happens without one (created, a monitor found
//! dead). Replaced whole, atomically, so a reader never sees half of it.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::EngineError;

pub const STATE_FILE: &str = "state.json";
/// Docker's zero time, for a container never started or never finished.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a monitor is (or should be) looking after the container.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunState {
    pub status: Status,
    /// The container's process, 0 when there is none.
    pub pid: i32,
    pub monitor_pid: i32,
    /// The monitor's start time (clock ticks after boot), which tells a
    /// live monitor from a reused PID.
    pub monitor_start: u64,
    pub exit_code: i32,
    /// Why the last start failed, as docker's `State.Error`.
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub restart_count: u32,
    pub oom_killed: bool,
}

impl Default for RunState {
    fn default() -> Self {
        RunState {
            status: Status::Created,
            pid: 0,
            monitor_pid: 0,
            monitor_start: 0,
            exit_code: 0,
            error: String::new(),
            started_at: ZERO_TIME.into(),
            finished_at: ZERO_TIME.into(),
            restart_count: 0,
            oom_killed: false,
        }
    }
}

impl RunState {
    /// The state in `dir`; a container without one was just created.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| EngineError::Io {
                path,
                source: io::Error::new(io::ErrorKind::InvalidData, e),
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RunState::default()),
            Err(source) => Err(EngineError::Io { path, source }),
        }
    }

    /// Replaces the state file without freeing one: the new state is
    /// written over a spare file, which is then swapped with the state
    /// file (RENAME_EXCHANGE) and so holds the previous state until the
    /// next save. A rename over the state file would free the old file's
    /// blocks: 1-2 ms on ext4 mounted with discard, each time a monitor
    /// records a start (`run -d` waits for it) or an exit.
    pub fn save(&self, dir: &Path) -> Result<(), EngineError> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        let path = dir.join(STATE_FILE);
        let spare = dir.join(".state.json.spare");
        let bytes = serde_json::to_vec(self).expect("a state serialises");
        let write_spare = || -> io::Result<()> {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&spare)?;
            f.write_all(&bytes)?;
            f.set_len(bytes.len() as u64)
        };
        write_spare()
            .and_then(|()| {
                match renameat_with(CWD, &spare, CWD, &path, RenameFlags::EXCHANGE) {
                    Ok(()) => Ok(()),
                    // The first save, or a filesystem that cannot swap.
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => {
                        fs::rename(&spare, &path)
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .map_err(|source| EngineError::Io { path, source })
    }

    /// Whether the monitor recorded here is still alive.
    pub fn monitor_alive(&self) -> bool {
        self.monitor_pid > 0
            && berth_runtime::state::process_start_time(self.monitor_pid)
                .is_some_and(|(start, zombie)| start == self.monitor_start && !zombie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_save_replaces_the_whole_state() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(RunState::load(dir.path()).unwrap(), RunState::default());
        let mut state = RunState {
            error: "a long reason that the next, shorter state must not keep".into(),
            ..RunState::default()
        };
        state.save(dir.path()).unwrap();
        assert_eq!(RunState::load(dir.path()).unwrap(), state);
        for (status, pid) in [(Status::Running, 42), (Status::Exited, 0)] {
            state = RunState {
                status,
                pid,
                ..RunState::default()
            };
            state.save(dir.path()).unwrap();
            assert_eq!(RunState::load(dir.path()).unwrap(), state);
        }
    }
}
