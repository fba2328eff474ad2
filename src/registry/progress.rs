//! Pull/push progress in Docker's words: one line per event when the output is not a terminal
//! (what scripts and tests see), a live multi-line display with bars on a terminal.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    PullingFsLayer,
    Waiting,
    Downloading {
        current: u64,
        total: u64,
    },
    /// A partial download found from an interrupted pull: continued from `offset`.
    Resuming {
        offset: u64,
        total: u64,
    },
    VerifyingChecksum,
    DownloadComplete,
    Extracting {
        current: u64,
        total: u64,
    },
    PullComplete,
    AlreadyExists,
    Preparing,
    Pushing {
        current: u64,
        total: u64,
    },
    Pushed,
    LayerAlreadyExists,
    MountedFrom(String),
}

impl Status {
    fn label(&self) -> String {
        match self {
            Status::PullingFsLayer => "Pulling fs layer".into(),
            Status::Waiting => "Waiting".into(),
            Status::Downloading { .. } => "Downloading".into(),
            Status::Resuming { offset, total } => {
                format!(
                    "Resuming download at {}/{} (offset {offset})",
                    human(*offset),
                    human(*total)
                )
            }
            Status::VerifyingChecksum => "Verifying Checksum".into(),
            Status::DownloadComplete => "Download complete".into(),
            Status::Extracting { .. } => "Extracting".into(),
            Status::PullComplete => "Pull complete".into(),
            Status::AlreadyExists => "Already exists".into(),
            Status::Preparing => "Preparing".into(),
            Status::Pushing { .. } => "Pushing".into(),
            Status::Pushed => "Pushed".into(),
            Status::LayerAlreadyExists => "Layer already exists".into(),
            Status::MountedFrom(r) => format!("Mounted from {r}"),
        }
    }
    fn counters(&self) -> Option<(u64, u64)> {
        match self {
            Status::Downloading { current, total }
            | Status::Extracting { current, total }
            | Status::Pushing { current, total } => Some((*current, *total)),
            _ => None,
        }
    }
}

/// Receives events from the threads of a pull or push.
pub trait Progress: Send + Sync {
    /// An event for one layer; `id` is the 12-hex short form Docker prints.
    fn layer(&self, id: &str, status: Status);
    /// A line of its own (`latest: Pulling from fat`, `Digest: …`).
    fn line(&self, text: &str);
}

/// Prints nothing (`pull -q`).
pub struct Silent;
impl Progress for Silent {
    fn layer(&self, _: &str, _: Status) {}
    fn line(&self, _: &str) {}
}

/// Docker's size format: 4 significant digits, decimal units (`36.41kB`, `96.58MB`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let digits = if v < 1.0 {
        1
    } else {
        v.log10().floor() as i32 + 1
    };
    let decimals = (4 - digits).max(0) as usize;
    let mut s = format!("{v:.decimals$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", UNITS[i])
}

fn bar(current: u64, total: u64) -> String {
    if total == 0 {
        return format!("{:>8}", human(current));
    }
    let width = 50u64;
    let filled = (current.min(total) * width / total) as usize;
    let mut b = String::with_capacity(64);
    b.push('[');
    if filled >= width as usize {
        b.push_str(&"=".repeat(width as usize));
    } else {
        b.push_str(&"=".repeat(filled));
        b.push('>');
        b.push_str(&" ".repeat(width as usize - filled - 1));
    }
    b.push_str("] ");
    format!("{b}{:>8}/{}", human(current), human(total))
}

struct State {
    out: Box<dyn Write + Send>,
    /// Terminal mode: the ids in screen order (each owns one line above the cursor).
    ids: Vec<String>,
    last_draw: HashMap<String, Instant>,
}

/// Writes progress to a stream, live on a terminal, as plain lines otherwise.
pub struct Printer {
    tty: bool,
    state: Mutex<State>,
}

impl Printer {
    pub fn new(out: Box<dyn Write + Send>, tty: bool) -> Printer {
        Printer {
            tty,
            state: Mutex::new(State {
                out,
                ids: Vec::new(),
                last_draw: HashMap::new(),
            }),
        }
    }
}

impl Progress for Printer {
    fn layer(&self, id: &str, status: Status) {
        let mut st = self.state.lock().unwrap();
        let st = &mut *st;
        if !self.tty {
            // Docker's non-terminal output leaves out the byte counters.
            if status.counters().is_none() {
                let _ = writeln!(st.out, "{id}: {}", status.label());
                let _ = st.out.flush();
            }
            return;
        }
        let text = match status.counters() {
            Some((c, t)) => format!("{id}: {} {}", status.label(), bar(c, t)),
            None => format!("{id}: {} ", status.label()),
        };
        if let Some((c, t)) = status.counters() {
            let now = Instant::now();
            if c < t
                && st
                    .last_draw
                    .get(id)
                    .is_some_and(|l| now.duration_since(*l) < Duration::from_millis(100))
            {
                return;
            }
            st.last_draw.insert(id.to_string(), now);
        }
        match st.ids.iter().position(|x| x == id) {
            None => {
                st.ids.push(id.to_string());
                let _ = writeln!(st.out, "{text}");
            }
            Some(i) => {
                let up = st.ids.len() - i;
                let _ = write!(st.out, "\x1b[{up}A\x1b[2K\r{text}\r\x1b[{up}B");
            }
        }
        let _ = st.out.flush();
    }

    fn line(&self, text: &str) {
        let mut st = self.state.lock().unwrap();
        st.ids.clear();
        let _ = writeln!(st.out, "{text}");
        let _ = st.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human(361), "361B");
        assert_eq!(human(36_410), "36.41kB");
        assert_eq!(human(903_400), "903.4kB");
        assert_eq!(human(96_580_000), "96.58MB");
        assert_eq!(human(5_272_000), "5.272MB");
        assert_eq!(human(1_000_000), "1MB");
        assert_eq!(human(0), "0B");
    }

    #[test]
    fn bar_shapes() {
        let b = bar(25, 100);
        assert!(b.starts_with("[============>"), "{b}");
        assert!(b.ends_with("25B/100B"), "{b}");
        assert!(bar(100, 100).starts_with(&format!("[{}]", "=".repeat(50))));
    }
}
