//! Sniffing and undoing the compression of a layer stream (gzip, zstd or none).

use super::ArchiveError;
use std::io::{BufReader, Cursor, Read};

/// The compression a layer stream was found to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const BUF: usize = 1 << 20;

/// Sniffs the magic bytes at the start of `r` and returns the compression found and a reader
/// of the decompressed bytes. The sniffed bytes are not lost: they are chained back in front.
/// Compressions that are recognised but not supported (bzip2, xz, lz4, compress) are an error.
pub fn decompress<'a, R: Read + 'a>(
    mut r: R,
) -> Result<(Compression, Box<dyn Read + 'a>), ArchiveError> {
    let mut head = [0u8; 6];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ArchiveError::Read(e)),
        }
    }
    let magic = &head[..n];
    let chained = Cursor::new(head).take(n as u64).chain(r);
    if magic.starts_with(&[0x1f, 0x8b]) {
        let d = flate2::bufread::MultiGzDecoder::new(BufReader::with_capacity(BUF, chained));
        return Ok((Compression::Gzip, Box::new(d)));
    }
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let d = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(BUF, chained))
            .map_err(ArchiveError::Read)?;
        return Ok((Compression::Zstd, Box::new(d)));
    }
    let unsupported: &[(&[u8], &str)] = &[
        (b"BZh", "bzip2"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
        (&[0x1f, 0x9d], "compress (.Z)"),
    ];
    for (m, name) in unsupported {
        if magic.starts_with(m) {
            return Err(ArchiveError::Compression((*name).to_string()));
        }
    }
    Ok((Compression::None, Box::new(chained)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn payload() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn roundtrip(data: &[u8]) -> (Compression, Vec<u8>) {
        let (c, mut r) = decompress(data).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (c, out)
    }

    #[test]
    fn sniff_none_keeps_bytes() {
        let p = payload();
        assert_eq!(roundtrip(&p), (Compression::None, p.clone()));
        assert_eq!(roundtrip(b"ab"), (Compression::None, b"ab".to_vec()));
        assert_eq!(roundtrip(b""), (Compression::None, Vec::new()));
    }

    #[test]
    fn sniff_gzip_multi_member() {
        let p = payload();
        let mut all = Vec::new();
        for part in [&p[..1000], &p[1000..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            all.extend(e.finish().unwrap());
        }
        assert_eq!(roundtrip(&all), (Compression::Gzip, p));
    }

    #[test]
    fn sniff_zstd() {
        let p = payload();
        let z = zstd::encode_all(&p[..], 3).unwrap();
        assert_eq!(roundtrip(&z), (Compression::Zstd, p));
    }

    #[test]
    fn unsupported_compressions() {
        for m in [&b"BZh91AY"[..], &[0xfd, b'7', b'z', b'X', b'Z', 0, 1][..]] {
            assert!(matches!(decompress(m), Err(ArchiveError::Compression(_))));
        }
    }
}
