//! OCI hooks: programs run at fixed points of a container's life, given
//! the container's state on stdin.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::Hook;
use crate::error::RuntimeError;

/// Runs `hooks` in order; the first that fails (non-zero exit, or still
/// running after its timeout) stops the rest.
pub fn run(stage: &'static str, hooks: &[Hook], state_json: &str) -> Result<(), RuntimeError> {
    for hook in hooks {
        let fail = |detail: String| RuntimeError::Hook {
            stage,
            path: hook.path.clone(),
            detail,
        };
        let mut cmd = Command::new(&hook.path);
        if let Some((arg0, rest)) = hook.args.split_first() {
            use std::os::unix::process::CommandExt;
            cmd.arg0(arg0).args(rest);
        }
        cmd.env_clear();
        for kv in &hook.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its stdin is not an error.
            let _ = stdin.write_all(state_json.as_bytes());
        }
        let deadline = hook
            .timeout
            .filter(|t| *t > 0)
            .map(|t| Instant::now() + Duration::from_secs(t as u64));
        let status = loop {
            match child.try_wait().map_err(|e| fail(e.to_string()))? {
                Some(status) => break status,
                None if deadline.is_some_and(|d| Instant::now() >= d) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(fail(format!(
                        "timed out after {}s",
                        hook.timeout.unwrap_or(0)
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        if !status.success() {
            return Err(fail(format!("exited with {status}")));
        }
    }
    Ok(())
}
