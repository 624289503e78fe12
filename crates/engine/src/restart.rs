//! `--restart` policies, as docker's: what the monitor does when the
//! container's process ends.

use crate::EngineError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    No,
    Always,
    UnlessStopped,
    /// Restart on a non-zero exit, at most this many times (no limit: None).
    OnFailure(Option<u32>),
}

impl Policy {
    pub fn parse(s: Option<&str>) -> Result<Self, EngineError> {
        let bad = |reason: &str| EngineError::RunFlag {
            flag: "--restart".into(),
            value: s.unwrap_or_default().into(),
            reason: reason.into(),
        };
        Ok(match s.unwrap_or("no") {
            "no" | "" => Policy::No,
            "always" => Policy::Always,
            "unless-stopped" => Policy::UnlessStopped,
            "on-failure" => Policy::OnFailure(None),
            other => match other.strip_prefix("on-failure:") {
                Some(n) => Policy::OnFailure(Some(
                    n.parse()
                        .map_err(|_| bad("the count of on-failure:N is a number"))?,
                )),
                None => return Err(bad("expected no, always, unless-stopped or on-failure[:N]")),
            },
        })
    }

    /// Whether a process that exited with `code`, after `restarts`
    /// restarts, starts again. A stop the user asked for never restarts.
    pub fn restarts(self, code: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            Policy::No => false,
            Policy::Always | Policy::UnlessStopped => true,
            Policy::OnFailure(max) => code != 0 && max.is_none_or(|m| restarts < m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let p = |s| Policy::parse(Some(s)).unwrap();
        assert_eq!(p("on-failure:3"), Policy::OnFailure(Some(3)));
        assert!(Policy::parse(Some("sometimes")).is_err());
        assert!(Policy::parse(Some("on-failure:x")).is_err());
        assert!(!p("no").restarts(1, 0, false));
        assert!(p("always").restarts(0, 100, false));
        assert!(!p("always").restarts(0, 0, true));
        assert!(p("on-failure:2").restarts(1, 1, false));
        assert!(!p("on-failure:2").restarts(1, 2, false));
        assert!(!p("on-failure").restarts(0, 0, false));
    }
}
