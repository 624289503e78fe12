//! Content digests (`sha256:<hex>`), and a reader that computes one while
//! the bytes stream past.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use ring::digest::{Context, SHA256};

/// A validated `sha256:<64 lowercase hex>` digest. berth only produces and
/// accepts sha256, as docker does for image content.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {0:?}: expected sha256:<64 hex digits>")]
    Invalid(String),
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut h = Hasher::new();
        h.update(bytes);
        h.finish()
    }

    /// Accepts `sha256:<hex>`; the bare hex form is accepted too, since
    /// docker's archives and IDs spell it both ways.
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                hex: hex.to_string(),
            })
        } else {
            Err(DigestError::Invalid(s.to_string()))
        }
    }

    /// The 64 hex digits, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The 12-digit form docker prints in tables.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// The chain ID of a layer stack (OCI image spec): the first layer's is
    /// its diff ID, each next is sha256("<parent chain> <diff id>").
    pub fn chain(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
        match parent {
            None => diff_id.clone(),
            Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// SHA-256 as it streams. ring's, not the sha2 crate's: its assembly is
/// about 1.8 times faster on CPUs without the SHA extensions, and a pull
/// hashes every byte twice (the blob, then the tar inside it).
pub(crate) struct Hasher(Context);

impl Hasher {
    pub fn new() -> Self {
        Hasher(Context::new(&SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> Digest {
        Digest {
            hex: hex::encode(self.0.finish()),
        }
    }
}

/// Passes bytes through while hashing and counting them.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    len: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
            len: 0,
        }
    }

    /// Reads what is left (a tar stream ends with padding that the tar
    /// parser never asks for, but which the digest covers), then returns
    /// the digest and the byte count.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finish(), self.len))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_spellings_and_rejects_junk() {
        let hex = "a".repeat(64);
        assert_eq!(
            Digest::parse(&hex).unwrap(),
            Digest::parse(&format!("sha256:{hex}")).unwrap()
        );
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&"A".repeat(64)).is_err());
        assert!(Digest::parse(&format!("sha512:{hex}")).is_err());
    }

    #[test]
    fn digest_of_empty_input() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn chain_id_follows_the_oci_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(Digest::chain(None, &a), a);
        assert_eq!(
            Digest::chain(Some(&a), &b),
            Digest::of(format!("{a} {b}").as_bytes())
        );
    }

    #[test]
    fn hashing_reader_covers_unread_tail() {
        let mut r = HashingReader::new(&b"hello world"[..]);
        let mut first = [0u8; 5];
        r.read_exact(&mut first).unwrap();
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 11);
        assert_eq!(d, Digest::of(b"hello world"));
    }
}
