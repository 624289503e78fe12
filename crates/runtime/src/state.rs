//! A container's state on disk: `<root>/<id>/state.json`, written
//! atomically, and the exec FIFO that holds a created container's init
//! until `start`.
//!
//! The status is never stored: it is read from the process each time
//! (alive, a zombie, frozen, or still waiting on the FIFO), so it cannot
//! go stale when the process dies unseen.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::{Cgroup, Layout};
use crate::error::{io, RuntimeError};

pub const OCI_VERSION: &str = "1.2.0";
const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What berth-runtime keeps about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// The process's start time (field 22 of /proc/<pid>/stat), so a
    /// reused PID is not mistaken for the container.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub cgroup_path: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Run at delete, when the bundle may be gone.
    #[serde(default)]
    pub poststop: Vec<crate::config::Hook>,
}

/// The OCI state, as `state` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

pub struct Container {
    pub dir: PathBuf,
    pub saved: Saved,
}

/// Container IDs name directories; keep them to a safe alphabet.
pub fn check_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::BadId(id.to_string()))
    }
}

impl Container {
    pub fn load(root: &Path, id: &str) -> Result<Container, RuntimeError> {
        check_id(id)?;
        let dir = root.join(id);
        let bytes = match fs::read(dir.join(STATE_FILE)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::NotFound(id.to_string()))
            }
            Err(e) => return Err(io("reading", dir.join(STATE_FILE))(e)),
        };
        let saved = serde_json::from_slice(&bytes).map_err(|source| RuntimeError::State {
            id: id.to_string(),
            source,
        })?;
        Ok(Container { dir, saved })
    }

    /// Every container under `root`.
    pub fn list(root: &Path) -> Result<Vec<Container>, RuntimeError> {
        let mut out = Vec::new();
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("listing", root)(e)),
        };
        for entry in entries.flatten() {
            if let Some(id) = entry.file_name().to_str() {
                if let Ok(c) = Container::load(root, id) {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| a.saved.id.cmp(&b.saved.id));
        Ok(out)
    }

    pub fn save(&self) -> Result<(), RuntimeError> {
        let path = self.dir.join(STATE_FILE);
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)
            .map_err(io("creating a temp file in", &self.dir))?;
        tmp.write_all(&serde_json::to_vec(&self.saved).expect("state serialises"))
            .map_err(io("writing", &path))?;
        tmp.as_file().sync_all().map_err(io("syncing", &path))?;
        tmp.persist(&path)
            .map_err(|e| io("renaming into", &path)(e.error))?;
        Ok(())
    }

    pub fn cgroup(&self) -> Result<Cgroup, RuntimeError> {
        Ok(Cgroup::new(Layout::detect(), &self.saved.cgroup_path)?)
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Whether the saved PID is still this container's process.
    pub fn alive(&self) -> bool {
        self.saved.pid > 0
            && process_start_time(self.saved.pid)
                .is_some_and(|(t, zombie)| t == self.saved.start_time && !zombie)
    }

    pub fn status(&self) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if self.fifo().exists() {
            Status::Created
        } else if self.cgroup().is_ok_and(|c| c.is_frozen()) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self) -> OciState {
        let status = self.status();
        OciState {
            oci_version: OCI_VERSION.into(),
            id: self.saved.id.clone(),
            status: status.as_str().into(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.saved.pid
            },
            bundle: self.saved.bundle.clone(),
            rootfs: self.saved.rootfs.clone(),
            created: self.saved.created.clone(),
            owner: String::new(),
            annotations: self.saved.annotations.clone(),
        }
    }
}

/// (start time, is a zombie) of a process, from /proc/<pid>/stat.
pub fn process_start_time(pid: i32) -> Option<(u64, bool)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let state = fields.first()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, *state == "Z" || *state == "X"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(check_id("web-1.prod_a").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn own_start_time_is_readable() {
        let (t, zombie) = process_start_time(std::process::id() as i32).unwrap();
        assert!(t > 0 && !zombie);
    }
}
