//! The durable floor: the least work that leaves the same durable result as
//! `orderwatch run --once` on a fresh store with one file sink.
//!
//! That result is N transition rows under their unique key `(order_id,
//! status, occurrence)` in SQLite, committed, and N CloudEvent lines in a file, fsync'd.
//! The floor does exactly that and nothing else, as fast as we can make it:
//! the rows already in memory (no download, no parsing, no dedupe lookups,
//! no per-order state), inserted with 64-row statements in one transaction
//! into the `transitions` table of orderwatch's own schema (its migrations,
//! so the same indexes) with orderwatch's pragmas; the lines rendered by
//! orderwatch's own event writer into 1 MiB buffers, appended, one fsync.
//! The two halves run one after the other: together they are the work.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use orderwatch::event::EventWriter;
use orderwatch::transition::TransitionRow;

/// Rows per INSERT statement.
const BATCH: usize = 64;

/// One order of the answer: id, status.
pub type Order = (i64, &'static str);

/// Runs the floor in `dir` for `orders`; its wall time.
pub fn run(dir: &Path, orders: &[Order], source: &str) -> Duration {
    let start = Instant::now();
    let seen_at = chrono::Utc::now().timestamp_millis();
    record(&dir.join("floor.db"), orders, seen_at).expect("floor: SQLite");
    append(&dir.join("floor.jsonl"), orders, source, seen_at).expect("floor: events file");
    start.elapsed()
}

fn record(path: &Path, orders: &[Order], seen_at: i64) -> rusqlite::Result<()> {
    // The schema exactly as orderwatch's own migrations leave it (every
    // index of `transitions`, the unique key with `occurrence`); `run
    // --once` on a fresh store pays for the same migrations.
    drop(orderwatch::store::sqlite::Db::open(path).expect("floor: orderwatch's schema"));
    let mut db = rusqlite::Connection::open(path)?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.pragma_update(None, "foreign_keys", "ON")?;
    let tx = db.transaction()?;
    {
        let columns = "INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at) VALUES ";
        let mut many = tx.prepare(&format!(
            "{columns}{}",
            vec!["(?, ?, ?, NULL, ?)"; BATCH].join(", ")
        ))?;
        let mut one = tx.prepare(&format!("{columns}(?, ?, ?, NULL, ?)"))?;
        let mut chunks = orders.chunks_exact(BATCH);
        for chunk in &mut chunks {
            for (i, (id, status)) in chunk.iter().enumerate() {
                many.raw_bind_parameter(i * 4 + 1, id)?;
                many.raw_bind_parameter(i * 4 + 2, status)?;
                many.raw_bind_parameter(i * 4 + 3, id + 100_000_000)?;
                many.raw_bind_parameter(i * 4 + 4, seen_at)?;
            }
            many.raw_execute()?;
        }
        for (id, status) in chunks.remainder() {
            one.execute(rusqlite::params![id, status, id + 100_000_000, seen_at])?;
        }
    }
    tx.commit()
}

fn append(path: &Path, orders: &[Order], source: &str, seen_at: i64) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut events = EventWriter::new(source);
    let mut buf = Vec::with_capacity(1 << 20);
    let mut row = TransitionRow {
        seq: 0,
        order_id: 0,
        status: String::new(),
        occurrence: 0,
        certificate_id: None,
        previous_status: None,
        seen_at,
        details: None,
    };
    for (i, (id, status)) in orders.iter().enumerate() {
        row.seq = i as i64 + 1;
        row.order_id = *id;
        row.status.clear();
        row.status.push_str(status);
        row.certificate_id = Some(id + 100_000_000);
        events.write(&mut buf, &row);
        buf.push(b'\n');
        if buf.len() >= 1 << 20 {
            file.write_all(&buf)?;
            buf.clear();
        }
    }
    file.write_all(&buf)?;
    file.sync_data()
}
