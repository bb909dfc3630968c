//! Which Blender saved a .blend file, from its header, read before Blender starts: a file from a
//! newer Blender opens in an older one with "expect loss of data" (or crashes it), so it is
//! refused instead.
//!
//! Headers: `BLENDER-v405` (up to 4.x: pointer size `_`/`-`, endianness `v`/`V`, three digits)
//! and `BLENDER17-01v0500` (5.0 on: header size, `-`, format version, endianness, four digits).
//! Blender 3.0 on compresses with zstd when asked to (5.0 by default), older ones with gzip.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// A Blender version as far as file compatibility goes: `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

impl Version {
    /// `4.5.15`, `4.5.15 LTS`, `5.0` → its `major.minor`.
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split_whitespace().next()?.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next().unwrap_or("0").parse().ok()?;
        Some(Version { major, minor })
    }

    /// Blender's file version number (`405`, `500`).
    fn from_number(n: u32) -> Version {
        Version {
            major: n / 100,
            minor: n % 100,
        }
    }
}

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

/// The version in an uncompressed header, `None` when it is not a .blend header.
pub fn parse_header(h: &[u8]) -> Option<Version> {
    let rest = h.strip_prefix(b"BLENDER")?;
    let number = if rest.first().is_some_and(u8::is_ascii_digit) {
        // BLENDER17-01v0500
        let size = digits(rest.get(..2)?)? as usize;
        let version_digits = size.checked_sub(b"BLENDER17-01v".len())?;
        if rest.get(2) != Some(&b'-') || digits(rest.get(3..5)?).is_none() {
            return None;
        }
        if !matches!(rest.get(5), Some(b'v' | b'V')) {
            return None;
        }
        digits(rest.get(6..6 + version_digits)?)?
    } else {
        // BLENDER-v405
        if !matches!(rest.first(), Some(b'_' | b'-')) || !matches!(rest.get(1), Some(b'v' | b'V')) {
            return None;
        }
        digits(rest.get(2..5)?)?
    };
    Some(Version::from_number(number))
}

/// Why a file's header could not be read.
#[derive(Debug)]
pub enum HeaderError {
    Io(io::Error),
    /// Not a .blend file, or a compressed stream that does not decompress.
    NotBlend,
}

/// The version of the Blender that saved `path` (plain, gzip or zstd).
pub fn file_version(path: &Path) -> Result<Version, HeaderError> {
    let mut file = File::open(path).map_err(HeaderError::Io)?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(HeaderError::Io)?;
    let magic = &magic[..n];
    let start = io::Cursor::new(magic.to_vec()).chain(file);
    let mut head = [0u8; 32];
    let n = if magic.starts_with(&[0x1f, 0x8b]) {
        read_up_to(&mut flate2::read::GzDecoder::new(start), &mut head)
            .map_err(|_| HeaderError::NotBlend)?
    } else if magic == [0x28, 0xb5, 0x2f, 0xfd] {
        let mut zstd =
            ruzstd::decoding::StreamingDecoder::new(start).map_err(|_| HeaderError::NotBlend)?;
        read_up_to(&mut zstd, &mut head).map_err(|_| HeaderError::NotBlend)?
    } else {
        let mut start = start;
        read_up_to(&mut start, &mut head).map_err(HeaderError::Io)?
    };
    parse_header(&head[..n]).ok_or(HeaderError::NotBlend)
}

/// Fill `buf` as far as the stream goes.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The bad-input message for a file saved by a newer Blender than this one, if it is.
pub fn too_new(path: &Path, file: Version, blender: Version, blender_full: &str) -> Option<String> {
    (file > blender).then(|| {
        format!(
            "{} was saved by Blender {file}, newer than this image's Blender {blender_full}, which \
             would open it with loss of data: set the RenderJob's spec.blenderVersion to \"{file}\" \
             (or save the file with Blender {blender})",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn v(major: u32, minor: u32) -> Version {
        Version { major, minor }
    }

    #[test]
    fn headers_of_every_era() {
        assert_eq!(parse_header(b"BLENDER-v405REND"), Some(v(4, 5)));
        assert_eq!(parse_header(b"BLENDER_v279"), Some(v(2, 79)));
        assert_eq!(parse_header(b"BLENDER-V304"), Some(v(3, 4)));
        assert_eq!(parse_header(b"BLENDER17-01v0500DNA1"), Some(v(5, 0)));
        assert_eq!(parse_header(b"BLENDER17-01v0501"), Some(v(5, 1)));
        for bad in [
            &b"BLENDER"[..],
            b"BLENDER-v40",
            b"BLENDERxv405",
            b"BLENDER17-01v05",
            b"BLENDER17+01v0500",
            b"BLENDER05-01v0500",
            b"PK\x03\x04",
            b"",
        ] {
            assert_eq!(
                parse_header(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn versions_compare_by_major_then_minor() {
        assert!(v(5, 0) > v(4, 5));
        assert!(v(4, 10) > v(4, 5));
        assert_eq!(Version::parse("4.5.15 LTS"), Some(v(4, 5)));
        assert_eq!(Version::parse("5.0"), Some(v(5, 0)));
        assert_eq!(Version::parse("x"), None);
        assert_eq!(v(2, 79).to_string(), "2.79");
        let p = Path::new("/data/s.blend");
        assert_eq!(too_new(p, v(4, 5), v(4, 5), "4.5.15"), None);
        assert_eq!(too_new(p, v(3, 4), v(4, 5), "4.5.15"), None);
        let text = too_new(p, v(5, 0), v(4, 5), "4.5.15").expect("too new");
        assert!(
            text.contains("Blender 5.0")
                && text.contains("Blender 4.5.15")
                && text.contains("spec.blenderVersion to \"5.0\""),
            "{text}"
        );
    }

    #[test]
    fn compressed_files_are_read_through() {
        let dir = std::env::temp_dir().join(format!("render-node-blend-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let body: Vec<u8> = b"BLENDER17-01v0500"
            .iter()
            .copied()
            .chain((0..100_000u32).map(|i| (i % 251) as u8))
            .collect();
        let zst = dir.join("z.blend");
        std::fs::write(
            &zst,
            ruzstd::encoding::compress_to_vec(
                &body[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            ),
        )
        .expect("write");
        assert_eq!(file_version(&zst).ok(), Some(v(5, 0)));

        let gz = dir.join("g.blend");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(b"BLENDER_v279REND").expect("gzip");
        std::fs::write(&gz, enc.finish().expect("gzip")).expect("write");
        assert_eq!(file_version(&gz).ok(), Some(v(2, 79)));

        let plain = dir.join("p.blend");
        std::fs::write(&plain, b"BLENDER-v405").expect("write");
        assert_eq!(file_version(&plain).ok(), Some(v(4, 5)));

        // A zstd magic followed by garbage, a gzip one cut short, a zip file, an empty file.
        for (name, bytes) in [
            ("bad.zst", &[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3, 4, 5][..]),
            ("bad.gz", &[0x1f, 0x8b, 8][..]),
            ("zip", b"PK\x03\x04 zip"),
            ("empty", b""),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, bytes).expect("write");
            assert!(
                matches!(file_version(&p), Err(HeaderError::NotBlend)),
                "{name}"
            );
        }
        assert!(matches!(
            file_version(&dir.join("nope")),
            Err(HeaderError::Io(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
