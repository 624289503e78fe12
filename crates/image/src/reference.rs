//! Image references, normalised as docker does: `alpine` is
//! `docker.io/library/alpine:latest`, `localhost:5000/x` stays on its
//! registry, `name@sha256:...` pins a digest.
//!
//! The grammar and Docker Hub's normalisation come from oci-spec (a port of
//! distribution/reference); this module adds docker's "familiar" spelling
//! that tables and archives print.

use std::fmt;

use oci_spec::distribution::Reference;

use crate::digest::Digest;

const HUB: &str = "docker.io";
const HUB_LIBRARY: &str = "docker.io/library/";

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

impl ImageRef {
    /// Parses a user's spelling. A reference without tag or digest gets
    /// `latest`, as docker's does.
    pub fn parse(input: &str) -> Result<Self, RefError> {
        let invalid = |reason: String| RefError::Invalid {
            input: input.to_string(),
            reason,
        };
        let parsed: Reference = input.parse().map_err(|e| invalid(format!("{e}")))?;
        // The grammar lets a first component with capitals pass as a
        // registry host; distribution/reference refuses it once it turns
        // out to be part of the repository path, and so does berth.
        if parsed.repository().chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid("repository name must be lowercase".into()));
        }
        let mut registry = parsed.registry().to_string();
        if registry == "index.docker.io" {
            registry = HUB.into();
        }
        let digest = match parsed.digest() {
            Some(d) => Some(Digest::parse(d).map_err(|e| invalid(e.to_string()))?),
            None => None,
        };
        Ok(ImageRef {
            name: format!("{registry}/{}", parsed.repository()),
            tag: parsed.tag().map(String::from),
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
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
        assert_eq!(full("me/app"), "docker.io/me/app:latest");
        assert_eq!(full("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            full("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(full("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(full("localhost/x"), "localhost/x:latest");
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
