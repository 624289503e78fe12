//! `--filter` for image listings, with docker's keys and matching rules.

use chrono::{DateTime, Utc};

use crate::EngineError;

/// Parsed `images --filter` arguments. Several values of one key are ORed,
/// different keys ANDed, as in docker.
#[derive(Debug, Default, Clone)]
pub struct ImageFilter {
    pub dangling: Option<bool>,
    pub reference: Vec<String>,
    pub before: Option<String>,
    pub since: Option<String>,
    pub label: Vec<String>,
}

impl ImageFilter {
    pub fn parse(args: &[String]) -> Result<Self, EngineError> {
        let mut f = ImageFilter::default();
        for arg in args {
            let bad = |reason: &str| EngineError::Filter {
                filter: arg.clone(),
                reason: reason.into(),
            };
            let (key, value) = arg
                .split_once('=')
                .ok_or_else(|| bad("expected KEY=VALUE"))?;
            match key {
                "dangling" => {
                    f.dangling = Some(match value.to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad("dangling takes true or false")),
                    })
                }
                "reference" => f.reference.push(value.into()),
                "before" => f.before = Some(value.into()),
                "since" => f.since = Some(value.into()),
                "label" => f.label.push(value.into()),
                _ => {
                    return Err(bad(
                        "valid keys are dangling, reference, before, since and label",
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// Whether a familiar reference (`busybox`, `busybox:latest`) matches a
/// `reference=` pattern. As docker does, the pattern is matched against
/// the repository and against `repository:tag`.
pub(crate) fn reference_matches(pattern: &str, repo: &str, tag: &str) -> bool {
    glob(pattern, repo) || glob(pattern, &format!("{repo}:{tag}"))
}

/// Go's path.Match: `*` and `?` never cross a `/`; `[...]` classes.
fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| go(rest, &n[i..])),
            Some(('?', rest)) => n.first().is_some_and(|c| *c != '/') && go(rest, &n[1..]),
            Some(('[', rest)) => {
                let Some(end) = rest.iter().position(|c| *c == ']') else {
                    return false;
                };
                let (class, after) = (&rest[..end], &rest[end + 1..]);
                let (negate, class) = match class.split_first() {
                    Some(('^', c)) => (true, c),
                    _ => (false, class),
                };
                let Some(c) = n.first() else { return false };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(after, &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &name.chars().collect::<Vec<_>>(),
    )
}

pub(crate) fn parse_time(s: Option<&str>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_go_path_match() {
        assert!(glob("busy*", "busybox"));
        assert!(!glob("*", "me/app"));
        assert!(glob("*/*", "me/app"));
        assert!(glob("b?sybox", "busybox"));
        assert!(glob("[a-c]usybox", "busybox"));
        assert!(!glob("[^b]usybox", "busybox"));
        assert!(reference_matches("busybox:1*", "busybox", "1.36"));
        assert!(!reference_matches("busybox:2*", "busybox", "1.36"));
    }

    #[test]
    fn parses_filters() {
        let f = ImageFilter::parse(&["dangling=true".into(), "reference=a*".into()]).unwrap();
        assert_eq!(f.dangling, Some(true));
        assert_eq!(f.reference, ["a*"]);
        assert!(ImageFilter::parse(&["nonsense".into()]).is_err());
        assert!(ImageFilter::parse(&["color=red".into()]).is_err());
    }
}
