//! Reading rows into the store's types, and the reads several queries
//! share, so a column added to `transitions` changes one place.

use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use crate::store::OutboxEntry;
use crate::transition::TransitionRow;

/// The columns [`transition`] reads, in order.
pub(super) const TRANSITION_COLUMNS: &str =
    "seq, order_id, status, occurrence, certificate_id, previous_status, seen_at, details";

/// Reads [`TRANSITION_COLUMNS`] starting at column `first`.
pub(super) fn transition(r: &Row, first: usize) -> TransitionRow {
    TransitionRow {
        seq: r.get(first),
        order_id: r.get(first + 1),
        status: r.get(first + 2),
        occurrence: r.get::<_, i32>(first + 3).max(0) as u32,
        certificate_id: r.get(first + 4),
        previous_status: r.get(first + 5),
        seen_at: r.get(first + 6),
        details: r.get(first + 7),
    }
}

/// [`TRANSITION_COLUMNS`] of a table aliased `t`.
pub(super) const T_TRANSITION_COLUMNS: &str = "t.seq, t.order_id, t.status, t.occurrence, t.certificate_id, t.previous_status, t.seen_at, t.details";

/// The columns [`entry`] reads: an outbox row joined with its transition.
pub(super) const ENTRY_COLUMNS: &str = "o.attempts, o.created_at, o.first_failure_at,
    t.seq, t.order_id, t.status, t.occurrence, t.certificate_id, t.previous_status, t.seen_at,
    t.details";

/// Reads [`ENTRY_COLUMNS`].
pub(super) fn entry(r: &Row) -> OutboxEntry {
    OutboxEntry {
        attempts: r.get::<_, i32>(0).max(0) as u32,
        created_at: r.get(1),
        first_failure_at: r.get(2),
        transition: transition(r, 3),
    }
}

/// The cursor of in-order sink `sink`: every transition up to this seq has
/// been delivered or has an outbox row. `None` for row-per-event sinks.
pub(super) async fn cursor_of<C: GenericClient + Sync>(
    client: &C,
    sink: &str,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT delivered_through FROM sinks WHERE name = $1",
            &[&sink],
        )
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<i64>>(0)))
}
