//! Queueing a new transition for the sinks that want it (or holding it for
//! its order's details), shared by known and first-seen orders.

use rusqlite::params;

use crate::store::{Hold, RecordSummary, SAMPLE, SinkRoute};
use crate::transition::{OrderChange, TransitionRow};

/// A transition being queued.
pub(super) struct New<'a> {
    pub(super) seq: i64,
    pub(super) change: &'a OrderChange,
    pub(super) occurrence: u32,
    pub(super) previous: Option<&'a str>,
}

/// Queues a new transition for every sink that takes it (an outbox row for
/// row-per-event sinks; in-order sinks find it after their cursor) and
/// counts it.
pub(super) fn queue(
    tx: &rusqlite::Transaction<'_>,
    routes: &[SinkRoute],
    hold: &Hold,
    new: &New<'_>,
    seen_ms: i64,
    summary: &mut RecordSummary,
) -> rusqlite::Result<()> {
    let change = new.change;
    let status: &str = &change.status;
    if hold.takes(status) {
        tx.prepare_cached(
            "INSERT INTO enrichment (seq, order_id, held_at, next_attempt_at) VALUES (?1, ?2, ?3, ?3)",
        )?
        .execute(params![new.seq, change.order_id, seen_ms])?;
        summary.held += 1;
    }
    for route in routes.iter().filter(|r| r.wants(status)) {
        summary.queued += 1;
        if !route.by_cursor {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?;
            insert.execute(params![route.name, new.seq, change.order_id, seen_ms])?;
        }
    }
    match summary.new_by_status.get_mut(status) {
        Some(n) => *n += 1,
        None => {
            summary.new_by_status.insert(status.to_string(), 1);
        }
    }
    if summary.sample.len() < SAMPLE {
        summary.sample.push(TransitionRow {
            seq: new.seq,
            order_id: change.order_id,
            status: status.to_string(),
            occurrence: new.occurrence,
            certificate_id: change.certificate_id,
            previous_status: new.previous.map(str::to_string),
            seen_at: seen_ms,
            details: None,
        });
    }
    Ok(())
}
