//! Reading a store beside the binary: the one place the tests use the
//! store's library API, so a change of that API (a `Store` trait, a second
//! backend) is adapted here and nowhere else.
//!
//! Every function opens the store afresh and reads it the way a second
//! process would (beside a running daemon, through the WAL).

use std::collections::HashSet;
use std::path::Path;

use chrono::{DateTime, Utc};
use orderwatch::store::sqlite::Db;
use orderwatch::store::{DeliveryFilter, DeliveryState, EventFilter, SinkRoute};

/// The schema version this orderwatch writes.
pub const SCHEMA_VERSION: u32 = orderwatch::store::SCHEMA_VERSION;

fn open(path: &Path) -> Db {
    Db::open(path).unwrap_or_else(|e| panic!("open the store {}: {e}", path.display()))
}

/// The moment up to which changes are known to be seen, if any.
pub fn cursor(path: &Path) -> Option<DateTime<Utc>> {
    open(path).cursor().expect("read the cursor")
}

/// How many transitions the store holds.
pub fn transition_count(path: &Path) -> u64 {
    open(path).transition_count().expect("count transitions")
}

/// How many transitions the store holds, or `None` while it cannot be
/// opened (a daemon just started may not have created it yet).
pub fn try_transition_count(path: &Path) -> Option<u64> {
    Db::open(path).and_then(|db| db.transition_count()).ok()
}

/// Every recorded `(order_id, status)` pair.
pub fn transitions(path: &Path) -> HashSet<(i64, String)> {
    let filter = EventFilter {
        limit: usize::MAX >> 1,
        ..EventFilter::default()
    };
    open(path)
        .events(&filter)
        .expect("events")
        .into_iter()
        .map(|t| (t.order_id, t.status))
        .collect()
}

/// Ids of the events still pending for `sink`, an in-order sink (file,
/// stdout) that keeps a delivery cursor instead of a row per event.
pub fn pending_for_cursor_sink(path: &Path, sink: &str) -> HashSet<String> {
    let filter = DeliveryFilter {
        sink: Some(sink.to_string()),
        state: Some(DeliveryState::Pending),
        limit: usize::MAX >> 1,
        routes: vec![SinkRoute {
            name: sink.to_string(),
            statuses: None,
            by_cursor: true,
            operational: false,
        }],
    };
    open(path)
        .deliveries(&filter)
        .expect("deliveries")
        .iter()
        .map(|d| d.event_id())
        .collect()
}

/// The schema version written in the file (`PRAGMA user_version`), read
/// with plain SQLite so that a store orderwatch refuses can still be read.
pub fn user_version(path: &Path) -> u32 {
    rusqlite::Connection::open(path)
        .and_then(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
        .expect("read user_version")
}

/// Writes `version` as the file's schema version, as a newer orderwatch
/// would have.
pub fn set_user_version(path: &Path, version: u32) {
    rusqlite::Connection::open(path)
        .and_then(|c| c.pragma_update(None, "user_version", version))
        .expect("set user_version");
}

/// Sets the store's cursor: back, as if the daemon had been away since
/// (the next cycle catches up from there), or ahead, as a daemon with a
/// wrong clock would have.
pub fn set_cursor(path: &Path, at: DateTime<Utc>) {
    rusqlite::Connection::open(path)
        .and_then(|c| {
            c.execute(
                "INSERT INTO cursor (id, position) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                [at.timestamp_millis()],
            )
        })
        .expect("set the cursor");
}
