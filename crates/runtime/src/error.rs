use std::io;
use std::path::PathBuf;

use crate::cgroups::CgroupError;
use crate::config::ConfigError;
use crate::sync::ChildError;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("invalid container id {0:?}: use letters, digits, '_', '-' and '.'")]
    BadId(String),
    #[error("container {id:?} is {status}; {action} needs it {wanted}")]
    BadStatus {
        id: String,
        status: &'static str,
        action: &'static str,
        wanted: &'static str,
    },
    #[error("container init failed: {0}")]
    Child(ChildError),
    #[error("container init exited before it was ready")]
    ChildVanished,
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("state of container {id:?} is unreadable: {source}")]
    State {
        id: String,
        source: serde_json::Error,
    },
    #[error("hook {path} ({stage}): {detail}")]
    Hook {
        stage: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("unknown signal {0:?}")]
    BadSignal(String),
}

pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.into();
    move |source| RuntimeError::Io { op, path, source }
}

impl RuntimeError {
    /// 126 or 127 when the container's program could not be run or found
    /// (docker's exit codes for those), else None.
    pub fn exec_status(&self) -> Option<i32> {
        match self {
            RuntimeError::Child(e) => e.exec_status,
            _ => None,
        }
    }
}
