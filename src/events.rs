//! The store's event log, Docker's `events`: one row per change (container create, start,
//! die, rename, destroy; image pull, load, tag, untag, delete), written in the transaction
//! that makes the change, so the log never claims what did not happen nor misses what did.
//! strata has no daemon to stream from: `events` reads this table, and follows it by polling.

use rusqlite::{Connection, Transaction, params};
use std::collections::BTreeMap;

/// One event, as Docker's `events` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Position in the log: later events have larger numbers.
    pub seq: i64,
    /// Nanoseconds since the Unix epoch.
    pub time_nano: i64,
    /// `container` or `image`.
    pub kind: String,
    /// Docker's action word: create, start, die, rename, destroy, pull, tag, untag, delete…
    pub action: String,
    /// The container ID, or the image ID or reference.
    pub actor: String,
    pub attributes: BTreeMap<String, String>,
}

/// Record an event inside the caller's transaction.
pub fn record(
    tx: &Transaction,
    kind: &str,
    action: &str,
    actor: &str,
    attributes: &[(&str, &str)],
) -> rusqlite::Result<()> {
    let attrs: BTreeMap<&str, &str> = attributes.iter().copied().collect();
    let now = chrono::Utc::now();
    let nanos = now.timestamp_nanos_opt().unwrap_or(0);
    tx.execute(
        "INSERT INTO events (time_nano, kind, action, actor, attributes) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            nanos,
            kind,
            action,
            actor,
            serde_json::to_string(&attrs).expect("serializable")
        ],
    )?;
    // Keep the newest KEEP events (Docker keeps fewer, in memory): trimmed now and then.
    let seq = tx.last_insert_rowid();
    if seq % 256 == 0 {
        tx.execute("DELETE FROM events WHERE seq <= ?1", params![seq - KEEP])?;
    }
    Ok(())
}

const KEEP: i64 = 100_000;

/// Events after `after_seq` whose time is in `[since, until]` (nanoseconds), oldest first.
pub fn read(
    conn: &Connection,
    after_seq: i64,
    since: Option<i64>,
    until: Option<i64>,
) -> rusqlite::Result<Vec<Event>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, time_nano, kind, action, actor, attributes FROM events
         WHERE seq > ?1 AND time_nano >= ?2 AND time_nano <= ?3 ORDER BY seq",
    )?;
    let rows = st.query_map(
        params![
            after_seq,
            since.unwrap_or(i64::MIN),
            until.unwrap_or(i64::MAX)
        ],
        |r| {
            let attrs: String = r.get(5)?;
            Ok(Event {
                seq: r.get(0)?,
                time_nano: r.get(1)?,
                kind: r.get(2)?,
                action: r.get(3)?,
                actor: r.get(4)?,
                attributes: serde_json::from_str(&attrs).unwrap_or_default(),
            })
        },
    )?;
    rows.collect()
}

/// The newest position in the log (0 when empty): `events` without `--since` starts here.
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))
}
