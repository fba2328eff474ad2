//! `ADD <url> <dest>`: the remote file fetched into this process's temp dir and hashed on the
//! way, so the step's cache key is its content (Docker's classic builder also downloads on
//! every build to know whether the cache still holds). Kept apart from the context reader:
//! it is the one part of a build that talks to the network.

use super::BuildError;
use super::context::{Entry, Kind, Origin, Source};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::path::Path;

/// A file fetched for ADD: where it is, its name in the image, and its Last-Modified time.
#[derive(Debug, Clone)]
pub struct Downloaded {
    pub name: String,
    pub file: std::path::PathBuf,
    pub mtime: Option<i64>,
}

/// Whether ADD treats `src` as a remote file rather than a context path.
pub fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// The file name Docker gives a download: the URL path's last element.
fn file_name(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let path = rest.split(['?', '#']).next()?;
    let (_, path) = path.split_once('/')?;
    let name = path.rsplit('/').next()?;
    (!name.is_empty() && name != "." && name != "..").then(|| name.to_string())
}

/// Fetch `url` into `dir` as a source for ADD: mode 0600 as Docker gives downloads, never
/// extracted, named after the URL's last path element.
pub fn fetch(url: &str, dir: &Path) -> Result<Source, BuildError> {
    let fail = |why: String| BuildError::Invalid(format!("ADD {url}: {why}"));
    let name = file_name(url).ok_or_else(|| fail("cannot determine filename from url".into()))?;
    let mut resp = ureq::get(url)
        .call()
        .map_err(|e| fail(format!("download failed: {e}")))?;
    let mtime = resp
        .headers()
        .get("last-modified")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());
    let file = dir.join(format!("add-{}", crate::atomic_file::random_hex(8)));
    let mut out = std::fs::File::create(&file)
        .map_err(|e| fail(format!("creating {}: {e}", file.display())))?;
    let mut body = resp.body_mut().with_config().limit(u64::MAX).reader();
    let (mut h, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; 256 << 10]);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = std::fs::remove_file(&file);
                return Err(fail(format!("download failed: {e}")));
            }
        };
        h.update(&buf[..n]);
        size += n as u64;
        if let Err(e) = out.write_all(&buf[..n]) {
            let _ = std::fs::remove_file(&file);
            return Err(fail(format!("writing {}: {e}", file.display())));
        }
    }
    Ok(Source {
        origin: Origin::Downloaded(Downloaded { name, file, mtime }),
        is_dir: false,
        entries: vec![Entry {
            sub: String::new(),
            kind: Kind::File {
                size,
                digest: format!("sha256:{}", hex::encode(h.finalize())),
            },
            mode: 0o600,
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name("http://h/a/b.tar.gz").as_deref(),
            Some("b.tar.gz")
        );
        assert_eq!(file_name("https://h:8080/x?y=1#z").as_deref(), Some("x"));
        assert_eq!(file_name("http://h/"), None);
        assert_eq!(file_name("http://h"), None);
        assert_eq!(file_name("http://h/a/.."), None);
    }
}
