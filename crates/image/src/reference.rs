//! Image references, normalised as docker does: `alpine` is
//! `docker.io/library/alpine:latest`, `localhost:5000/x` stays on its
//! registry, `name@sha256:...` pins a digest.
//!
//! The grammar is distribution/reference's, parsed by hand: a regex of
//! that size costs ~100 ms to compile, on every command that names an image.

use std::fmt;

use crate::digest::Digest;

const HUB: &str = "docker.io";
const HUB_LIBRARY: &str = "docker.io/library/";
const NAME_MAX: usize = 255;

#[derive(Debug, thiserror::Error)]
pub enum RefError {
    #[error("invalid reference format: {input:?} ({reason})")]
    Invalid { input: String, reason: String },
}

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `registry/repository`, e.g. `docker.io/library/busybox`.
    name: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or any run of `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A registry host: DNS labels (or a bracketed IPv6 address), optional port.
fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rfind(':') {
        Some(i) if !d[i..].contains(']') => (&d[..i], Some(&d[i + 1..])),
        _ => (d, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return !v6.is_empty() && v6.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl ImageRef {
    /// Parses a user's spelling. A reference without tag or digest gets
    /// `latest`, as docker's does.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let invalid = |reason: &str| RefError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => {
                if !d.starts_with("sha256:") {
                    return Err(invalid("digests are sha256:<64 hex digits>"));
                }
                (
                    rest,
                    Some(Digest::parse(d).map_err(|e| invalid(&e.to_string()))?),
                )
            }
            None => (input, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(invalid("bad tag"));
            }
        }
        if name.is_empty() {
            return Err(invalid("empty name"));
        }
        // docker's rule: the first component is a registry if it looks
        // like a host (a dot, a port, or localhost).
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder)) if first.contains(['.', ':']) || first == "localhost" => {
                (first, remainder)
            }
            _ => (HUB, name),
        };
        if !valid_domain(domain) {
            return Err(invalid("bad registry host"));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase"));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid("bad repository name"));
        }
        let domain = if domain == "index.docker.io" {
            HUB
        } else {
            domain
        };
        let path = if domain == HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        let name = format!("{domain}/{path}");
        if name.len() > NAME_MAX {
            return Err(invalid("name longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
            (None, Some(_)) => None,
        };
        Ok(ImageRef { name, tag, digest })
    }

    /// `registry/repository`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registry host (`docker.io` for Docker Hub).
    pub fn domain(&self) -> &str {
        self.name.split_once('/').map_or("", |(d, _)| d)
    }

    /// The repository path on its registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        self.name.split_once('/').map_or("", |(_, p)| p)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The same repository under another tag (no digest).
    pub fn with_tag(&self, tag: &str) -> ImageRef {
        ImageRef {
            name: self.name.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `name:tag`, the key under which a tag is stored; `None` for a
    /// reference by digest only.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name))
    }

    /// `name@digest`, for a reference that pins one.
    pub fn digested(&self) -> Option<String> {
        self.digest.as_ref().map(|d| format!("{}@{d}", self.name))
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's short spelling of a normalised name (with or without tag or
/// digest): `docker.io/library/busybox:latest` is `busybox:latest`,
/// `docker.io/me/app` is `me/app`; other registries are kept.
pub fn familiar(full: &str) -> &str {
    if let Some(rest) = full.strip_prefix(HUB_LIBRARY) {
        // `docker.io/library/a/b` is not an official image; keep its path.
        if !rest.split(['@', ':']).next().unwrap_or(rest).contains('/') {
            return rest;
        }
    }
    full.strip_prefix("docker.io/").unwrap_or(full)
}

/// Splits a stored `name:tag` into its repository and tag.
pub fn split_tag(tagged: &str) -> (&str, &str) {
    let slash = tagged.rfind('/').map_or(0, |i| i + 1);
    match tagged[slash..].rfind(':') {
        Some(i) => (&tagged[..slash + i], &tagged[slash + i + 1..]),
        None => (tagged, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(full("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(full("alpine:3.19"), "docker.io/library/alpine:3.19");
        let r = ImageRef::parse("localhost:5000/a/b:1").unwrap();
        assert_eq!((r.domain(), r.path()), ("localhost:5000", "a/b"));
        assert_eq!(full("me/app"), "docker.io/me/app:latest");
        assert_eq!(full("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            full("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(full("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
        assert_eq!(
            full("registry.example.com/a-b__c/d.e:1.0-rc_1"),
            "registry.example.com/a-b__c/d.e:1.0-rc_1"
        );
        assert_eq!(full("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(full("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        let hex = "a".repeat(64);
        let r = ImageRef::parse(&format!("busybox@sha256:{hex}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(
            r.digested().unwrap(),
            format!("docker.io/library/busybox@sha256:{hex}")
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "UPPER",
            "me/UPPER",
            "Me/app",
            "a b",
            "x@sha256:123",
            "-x",
            "x:",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn familiar_names() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/library/busybox"), "busybox");
        assert_eq!(familiar("docker.io/me/app:1"), "me/app:1");
        assert_eq!(
            familiar("localhost:5000/x:latest"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn splits_tags_after_the_port() {
        assert_eq!(split_tag("localhost:5000/x:v1"), ("localhost:5000/x", "v1"));
        assert_eq!(
            split_tag("docker.io/library/a:latest"),
            ("docker.io/library/a", "latest")
        );
    }
}
