//! Docker's json-file log driver: one JSON object per line,
//! `{"log":"text\n","stream":"stdout","time":"2024-01-01T00:00:00.123456789Z"}`, with rotation
//! (`max-size`, `max-file`: `<id>-json.log`, `.1`, `.2`, … oldest last) as Docker does it.

use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Docker splits a line longer than this into several entries (the last one ends with `\n`).
const MAX_ENTRY: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOpts {
    /// Rotate when the file would grow past this many bytes (None: never).
    pub max_size: Option<u64>,
    /// How many files to keep, the current one included (>= 1).
    pub max_file: u32,
}

impl Default for LogOpts {
    fn default() -> Self {
        LogOpts {
            max_size: None,
            max_file: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid log option {0}")]
pub struct LogOptError(pub String);

impl LogOpts {
    /// From `--log-opt` values: `max-size=10m`, `max-file=3`.
    pub fn parse(opts: &[String]) -> Result<LogOpts, LogOptError> {
        let mut o = LogOpts::default();
        for s in opts {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| LogOptError(format!("{s:?}: expected KEY=VALUE")))?;
            match k {
                "max-size" => {
                    o.max_size = Some(
                        parse_size(v)
                            .filter(|&n| n > 0)
                            .ok_or_else(|| LogOptError(format!("max-size={v:?}")))?,
                    )
                }
                "max-file" => {
                    o.max_file = v.parse().ok().filter(|&n| n >= 1).ok_or_else(|| {
                        LogOptError(format!("max-file={v:?}: must be a number >= 1"))
                    })?
                }
                _ => return Err(LogOptError(format!("{k:?} for log driver json-file"))),
            }
        }
        if o.max_file > 1 && o.max_size.is_none() {
            return Err(LogOptError("max-file needs max-size".into()));
        }
        Ok(o)
    }
}

/// Docker's `units.RAMInBytes`: `512`, `10k`, `10kb`, `1.5m`, `2g` (binary multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim_end_matches('b').trim_end_matches('i') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return None,
    };
    Some((n * mult as f64) as u64)
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub log: String,
    pub stream: String,
    pub time: String,
}

/// Go's RFC3339Nano (trailing zeros of the fraction trimmed), as Docker writes `time`.
pub fn go_rfc3339_nano(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos();
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

/// Appends entries to `<id>-json.log`, rotating as the options say.
pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOpts,
}

impl LogWriter {
    pub fn open(path: &Path, opts: LogOpts) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            opts,
        })
    }

    /// Write the complete lines of `buf` (and, with `flush_partial`, the rest) as entries;
    /// returns how many bytes were consumed.
    pub fn write_lines(
        &mut self,
        stream: &str,
        buf: &[u8],
        flush_partial: bool,
    ) -> io::Result<usize> {
        let mut used = 0;
        while used < buf.len() {
            let rest = &buf[used..];
            let end = match rest.iter().position(|&b| b == b'\n') {
                Some(i) if i < MAX_ENTRY => i + 1,
                _ if rest.len() >= MAX_ENTRY => MAX_ENTRY,
                _ if flush_partial => rest.len(),
                _ => break,
            };
            self.write_entry(stream, &rest[..end])?;
            used += end;
        }
        Ok(used)
    }

    fn write_entry(&mut self, stream: &str, text: &[u8]) -> io::Result<()> {
        let e = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream: stream.to_string(),
            time: go_rfc3339_nano(chrono::Utc::now()),
        };
        let mut line = serde_json::to_vec(&e).expect("serializable");
        line.push(b'\n');
        if let Some(max) = self.opts.max_size
            && self.size > 0
            && self.size + line.len() as u64 > max
        {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.opts.max_file <= 1 {
            self.file.set_len(0)?;
            self.file.seek(SeekFrom::Start(0))?;
            self.size = 0;
            return Ok(());
        }
        for i in (1..self.opts.max_file - 1).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// Every log file of a container, oldest first.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut i = 1;
    while rotated(path, i).exists() {
        out.push(rotated(path, i));
        i += 1;
    }
    out.reverse();
    if path.exists() {
        out.push(path.to_path_buf());
    }
    out
}

/// All entries, oldest first; lines that do not parse (a torn last write) are skipped.
pub fn read_all(path: &Path) -> io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for f in files(path) {
        let r = match File::open(&f) {
            Ok(r) => BufReader::new(r),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in r.split(b'\n') {
            if let Ok(e) = serde_json::from_slice::<Entry>(&line?) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

/// Follows the current log file from `offset`: new complete lines as entries. Handles the file
/// being rotated away (a new inode at the path) by reading the rest of the old one first.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    ino: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Start at the current end of the log (after `read_all` printed what was there).
    pub fn at_end(path: &Path) -> Follower {
        use std::os::unix::fs::MetadataExt;
        let file = File::open(path).ok();
        let mut ino = 0;
        if let Some(mut f) = file.as_ref() {
            let _ = f.seek(SeekFrom::End(0));
            ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
        }
        Follower {
            path: path.to_path_buf(),
            file,
            ino,
            pending: Vec::new(),
        }
    }

    /// Entries written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Entry>> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        let mut out = Vec::new();
        loop {
            if let Some(f) = self.file.as_mut() {
                f.read_to_end(&mut self.pending)?;
            }
            while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=i).collect();
                if let Ok(e) = serde_json::from_slice::<Entry>(&line) {
                    out.push(e);
                }
            }
            // Rotated (or created) under us: continue with the new file from its start.
            match fs::metadata(&self.path) {
                Ok(m) if m.ino() != self.ino => {
                    self.file = File::open(&self.path).ok();
                    self.ino = m.ino();
                    self.pending.clear();
                }
                _ => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_options() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("10k"), Some(10240));
        assert_eq!(parse_size("1m"), Some(1 << 20));
        assert_eq!(parse_size("1.5kb"), Some(1536));
        assert_eq!(parse_size("x"), None);
        let o = LogOpts::parse(&["max-size=1k".into(), "max-file=3".into()]).unwrap();
        assert_eq!(o.max_size, Some(1024));
        assert_eq!(o.max_file, 3);
        assert!(LogOpts::parse(&["max-file=0".into()]).is_err());
        assert!(LogOpts::parse(&["color=red".into()]).is_err());
    }

    #[test]
    fn go_time_format_trims_fraction() {
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05.120000000Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(go_rfc3339_nano(t), "2024-01-02T03:04:05.12Z");
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(go_rfc3339_nano(t), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn lines_partials_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = LogWriter::open(
            &p,
            LogOpts {
                max_size: Some(300),
                max_file: 3,
            },
        )
        .unwrap();
        assert_eq!(w.write_lines("stdout", b"one\ntw", false).unwrap(), 4);
        assert_eq!(w.write_lines("stderr", b"two", true).unwrap(), 3);
        let e = read_all(&p).unwrap();
        assert_eq!(e[0].log, "one\n");
        assert_eq!(e[1].log, "two");
        assert_eq!(e[1].stream, "stderr");
        for i in 0..40 {
            w.write_lines("stdout", format!("line {i}\n").as_bytes(), false)
                .unwrap();
        }
        let fs = files(&p);
        assert_eq!(fs.len(), 3, "{fs:?}");
        for f in &fs {
            assert!(fs::metadata(f).unwrap().len() <= 300);
        }
        let all = read_all(&p).unwrap();
        assert_eq!(all.last().unwrap().log, "line 39\n");
        // Kept in order, oldest dropped.
        let nums: Vec<u32> = all
            .iter()
            .filter_map(|e| e.log.strip_prefix("line ")?.trim().parse().ok())
            .collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1));
        assert!(nums[0] > 0);
    }

    #[test]
    fn long_lines_are_split() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = LogWriter::open(&p, LogOpts::default()).unwrap();
        let mut big = vec![b'x'; MAX_ENTRY + 10];
        big.push(b'\n');
        assert_eq!(w.write_lines("stdout", &big, false).unwrap(), big.len());
        let e = read_all(&p).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].log.len(), MAX_ENTRY);
        assert_eq!(e[1].log.len(), 11);
    }

    #[test]
    fn follower_sees_appends_and_rotation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c-json.log");
        let mut w = LogWriter::open(
            &p,
            LogOpts {
                max_size: Some(200),
                max_file: 2,
            },
        )
        .unwrap();
        w.write_lines("stdout", b"before\n", false).unwrap();
        let mut f = Follower::at_end(&p);
        assert!(f.poll().unwrap().is_empty());
        let mut seen = Vec::new();
        for i in 0..10 {
            w.write_lines("stdout", format!("after {i}\n").as_bytes(), false)
                .unwrap();
            seen.extend(f.poll().unwrap());
        }
        let texts: Vec<String> = seen.iter().map(|e| e.log.clone()).collect();
        let want: Vec<String> = (0..10).map(|i| format!("after {i}\n")).collect();
        assert_eq!(texts, want);
    }
}
