//! Layer compression, recognised by its magic bytes (never by file name),
//! as docker and containerd do.

use std::io::{self, BufRead, BufReader, Read};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
pub enum CompressionError {
    #[error("reading the archive header: {0}")]
    Read(#[source] io::Error),
    #[error("unsupported compression {0} (berth reads plain tar, gzip and zstd)")]
    Unsupported(&'static str),
    #[error("starting the zstd decoder: {0}")]
    Zstd(#[source] io::Error),
}

impl Compression {
    /// Looks at the first bytes of `r` without consuming them.
    pub fn detect<R: BufRead>(r: &mut R) -> Result<Compression, CompressionError> {
        let head = r.fill_buf().map_err(CompressionError::Read)?;
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => return Err(CompressionError::Unsupported("bzip2")),
            [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => {
                return Err(CompressionError::Unsupported("xz"))
            }
            _ => Compression::None,
        })
    }

    /// The OCI layer media type for a layer blob in this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }
}

/// Wraps `r` in the decoder its magic bytes call for; plain tar passes
/// through untouched.
pub fn decompress<'a, R: Read + 'a>(r: R) -> Result<Box<dyn Read + 'a>, CompressionError> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    Ok(match Compression::detect(&mut r)? {
        Compression::None => Box::new(r),
        // Multi-member gzip streams exist in the wild (pigz, appended
        // layers); the plain decoder would stop after the first member.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(CompressionError::Zstd)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn roundtrip(data: &[u8], compressed: Vec<u8>, want: Compression) {
        assert_eq!(Compression::detect(&mut &compressed[..]).unwrap(), want);
        let mut out = Vec::new();
        decompress(&compressed[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    #[test]
    fn detects_and_decodes_each_format() {
        let data = b"some tar bytes".repeat(100);
        roundtrip(&data, data.clone(), Compression::None);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        roundtrip(&data, gz.finish().unwrap(), Compression::Gzip);
        roundtrip(
            &data,
            zstd::encode_all(&data[..], 1).unwrap(),
            Compression::Zstd,
        );
    }

    #[test]
    fn refuses_bzip2_by_name() {
        let err = Compression::detect(&mut &b"BZh91AY"[..]).unwrap_err();
        assert!(err.to_string().contains("bzip2"));
    }
}
