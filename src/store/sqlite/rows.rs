//! Reading rows into the store's types, and the SQL fragments several
//! queries share. Every other file of the SQLite store reads through here,
//! so a column added to `transitions` changes one place.

use rusqlite::OptionalExtension;
use rusqlite::types::Value;

use crate::store::{OutboxEntry, SinkRoute};
use crate::transition::TransitionRow;

/// The columns [`transition`] reads, in order.
pub(super) const TRANSITION_COLUMNS: &str =
    "seq, order_id, status, occurrence, certificate_id, previous_status, seen_at, details";

/// [`TRANSITION_COLUMNS`] of a table aliased `t`.
pub(super) const T_TRANSITION_COLUMNS: &str = "t.seq, t.order_id, t.status, t.occurrence, t.certificate_id, t.previous_status, t.seen_at, t.details";

/// Reads [`TRANSITION_COLUMNS`] starting at column `first`.
pub(super) fn transition(r: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<TransitionRow> {
    Ok(TransitionRow {
        seq: r.get(first)?,
        order_id: r.get(first + 1)?,
        status: r.get(first + 2)?,
        occurrence: r.get(first + 3)?,
        certificate_id: r.get(first + 4)?,
        previous_status: r.get(first + 5)?,
        seen_at: r.get(first + 6)?,
        details: r.get(first + 7)?,
    })
}

/// The columns [`entry`] reads: an outbox row joined with its transition.
pub(super) const ENTRY_COLUMNS: &str = "o.attempts, o.created_at, o.first_failure_at,
    t.seq, t.order_id, t.status, t.occurrence, t.certificate_id, t.previous_status, t.seen_at,
    t.details";

/// Reads [`ENTRY_COLUMNS`].
pub(super) fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        attempts: r.get(0)?,
        created_at: r.get(1)?,
        first_failure_at: r.get(2)?,
        transition: transition(r, 3)?,
    })
}

/// The cursor of sink `sink` on any connection or transaction: every
/// transition up to this seq has been delivered or has an outbox row.
/// `None` for row-per-event sinks. Cached: each mark and each chunk asks.
pub(super) fn cursor_of(conn: &rusqlite::Connection, sink: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT delivered_through FROM sinks WHERE name = ?1")?
        .query_row([sink], |r| r.get::<_, Option<i64>>(0))
        .optional()
        .map(Option::flatten)
}

/// ` AND status IN (?, ...)` and its values, for queries on `transitions`.
pub(super) fn status_clause(route: &SinkRoute, args: &mut Vec<Value>) -> String {
    match &route.statuses {
        None => String::new(),
        Some(list) => {
            let marks = vec!["?"; list.len()].join(", ");
            args.extend(list.iter().map(|s| Value::Text(s.clone())));
            format!(" AND status IN ({marks})")
        }
    }
}
