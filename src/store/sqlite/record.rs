//! Recording one window's answer: dedupe, transitions, outbox rows and the
//! cursor, in one transaction.

use chrono::{DateTime, Utc};

use rusqlite::{OptionalExtension, params};

use super::Db;
use super::db::classify;
use super::fresh::FreshOrders;
use super::known::{KnownOrders, Sighting};
use super::queue::{New, queue};
use super::rows::{cursor_of, status_clause};
use crate::store::{Chunk, RecordSummary, SinkRoute, StoreError};
use crate::transition::{Dedupe, OrderChange};

impl Db {
    /// The cursor: every change up to this instant has been seen.
    pub fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = self
            .conn
            .query_row("SELECT position FROM cursor WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err("reading the cursor", e))?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Sets the cursor to `to`, even backwards (see `Store::rewind_cursor`).
    pub fn rewind_cursor(&mut self, to: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO cursor (id, position) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                [to.timestamp_millis()],
            )
            .map(|_| ())
            .map_err(|e| self.err("setting the cursor back", e))
    }

    /// Records a window's orders. Changed orders become transitions queued
    /// for every sink that wants them; the cursor moves to `cursor` (never
    /// backwards). All or nothing.
    pub fn record_window(
        &mut self,
        changes: &[OrderChange],
        cursor: DateTime<Utc>,
        seen_at: DateTime<Utc>,
        routes: &[SinkRoute],
    ) -> Result<RecordSummary, StoreError> {
        let chunk = Chunk::whole(changes.to_vec(), Some(cursor), seen_at);
        self.record_chunk(&chunk, routes)
    }

    /// Records one chunk of a window in one transaction; only the window's
    /// last chunk carries the `cursor`. A crash between chunks re-fetches the
    /// window (the cursor has not moved) and the chunks already recorded
    /// dedupe: work repeats, nothing is lost. Chunks let the sinks start on a
    /// huge answer while the rest is still being recorded.
    ///
    /// A sighting is compared with the order's current status (and
    /// certificate): equal is a repeat, different is a transition (see
    /// [`Dedupe`] for the strict first-sighting mode).
    ///
    /// Transitions are queued as outbox rows for row-per-event sinks; for
    /// in-order sinks being after their cursor is enough (see `route`).
    ///
    /// A new transition the chunk's [`Hold`] takes is held for a lookup of
    /// its order in the same transaction, so no sink can see it first.
    ///
    /// (Longer than most functions here on purpose: it is the whole of one
    /// chunk's transaction, and reading its steps in one place, in the
    /// order they must happen, is what makes the ordering argument above
    /// checkable. Each step is its own function.)
    pub fn record_chunk(
        &mut self,
        chunk: &Chunk,
        routes: &[SinkRoute],
    ) -> Result<RecordSummary, StoreError> {
        let (changes, cursor, seen_at) = (chunk.changes(), chunk.cursor, chunk.seen_at);
        let (dedupe, hold) = (chunk.dedupe, &chunk.hold);
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let seen_ms = seen_at.timestamp_millis();
        let mut summary = RecordSummary {
            seen: changes.len(),
            ..RecordSummary::default()
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the cycle transaction"))?;
        {
            prepare_routes(&tx, routes, seen_ms).map_err(err("setting up the sinks' queues"))?;
            let mut known = KnownOrders::load(&tx, changes).map_err(err("looking up orders"))?;
            let mut fresh = FreshOrders::default();
            for change in changes {
                let Some(current) = known
                    .current(&tx, change.order_id)
                    .map_err(err("looking up an order"))?
                else {
                    // An order never seen: its transition cannot exist yet.
                    // Such rows (most of a first catch-up) go in many at a time.
                    known.set(change, None);
                    fresh.rows.push(change);
                    if fresh.rows.len() == FreshOrders::BATCH {
                        fresh
                            .flush(&tx, seen_ms, routes, hold, &mut summary)
                            .map_err(err("recording new orders"))?;
                    }
                    continue;
                };
                match current.compare(change, dedupe) {
                    Sighting::Repeat => continue,
                    Sighting::Refresh => {
                        // Not a transition, but later sightings compare with
                        // it. The order may still be waiting in `fresh`.
                        fresh
                            .flush(&tx, seen_ms, routes, hold, &mut summary)
                            .map_err(err("recording new orders"))?;
                        update_order(&tx, change, seen_ms).map_err(err("updating an order"))?;
                        known.set(change, Some(&current));
                        continue;
                    }
                    Sighting::Transition => {}
                }
                known.set(change, Some(&current));
                // Keep recording order: everything before this goes in first.
                fresh
                    .flush(&tx, seen_ms, routes, hold, &mut summary)
                    .map_err(err("recording new orders"))?;
                let recorded = insert_transition(&tx, change, &current.status, seen_ms, dedupe)
                    .map_err(err("recording a transition"))?;
                update_order(&tx, change, seen_ms).map_err(err("updating an order"))?;
                let Some((seq, occurrence)) = recorded else {
                    // First-sighting mode and a status this order had before
                    // (A → B → A): not a transition, but the next one's
                    // previous_status is A.
                    continue;
                };
                let new = New {
                    seq,
                    change,
                    occurrence,
                    previous: Some(&current.status),
                };
                queue(&tx, routes, hold, &new, seen_ms, &mut summary)
                    .map_err(err("queueing a delivery"))?;
            }
            fresh
                .flush(&tx, seen_ms, routes, hold, &mut summary)
                .map_err(err("recording new orders"))?;
            if let Some(cursor) = cursor {
                move_cursor(&tx, cursor).map_err(err("moving the cursor"))?;
            }
        }
        tx.commit().map_err(err("committing the cycle"))?;
        Ok(summary)
    }
}

/// Moves the cursor to `cursor`, never backwards.
fn move_cursor(tx: &rusqlite::Transaction<'_>, cursor: DateTime<Utc>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO cursor (id, position) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET position = max(position, excluded.position)",
        [cursor.timestamp_millis()],
    )
    .map(|_| ())
}

/// Inserts the transition of a known order to `change.status`; returns its
/// seq and occurrence, or `None` when first-sighting mode skips it. The
/// occurrence counts the order's earlier transitions to this status, so
/// the k-th return gets k (and the id `{order}:{status}:{k}`).
fn insert_transition(
    tx: &rusqlite::Transaction<'_>,
    change: &OrderChange,
    previous: &str,
    seen_ms: i64,
    dedupe: Dedupe,
) -> rusqlite::Result<Option<(i64, u32)>> {
    let status: &str = &change.status;
    let occurrence: u32 = match dedupe {
        Dedupe::FirstSighting => 0,
        Dedupe::Change => tx
            .prepare_cached(
                "SELECT coalesce(max(occurrence) + 1, 0) FROM transitions
                 WHERE order_id = ?1 AND status = ?2",
            )?
            .query_row(params![change.order_id, status], |r| r.get(0))?,
    };
    let inserted = tx
        .prepare_cached(
            "INSERT INTO transitions (order_id, status, occurrence, certificate_id, previous_status, seen_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (order_id, status, occurrence) DO NOTHING",
        )?
        .execute(params![
            change.order_id,
            status,
            occurrence,
            change.certificate_id,
            previous,
            seen_ms
        ])?;
    Ok((inserted > 0).then(|| (tx.last_insert_rowid(), occurrence)))
}

/// Makes `change` the order's current status; a sighting without a
/// certificate keeps the one known.
fn update_order(
    tx: &rusqlite::Transaction<'_>,
    change: &OrderChange,
    seen_ms: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (order_id) DO UPDATE SET
            certificate_id = coalesce(excluded.certificate_id, certificate_id),
            status = excluded.status, updated_at = excluded.updated_at",
    )?
    .execute(params![
        change.order_id,
        change.certificate_id,
        &*change.status,
        seen_ms
    ])?;
    Ok(())
}

/// Makes sure every sink's queue is set up before transitions are added:
/// an in-order sink seen for the first time starts after the newest
/// transition (it receives what is recorded from now on, like a new
/// row-per-event sink); a sink that used to be in-order and now keeps rows
/// (its type changed) gets rows for whatever was still after its cursor.
fn prepare_routes(
    tx: &rusqlite::Transaction<'_>,
    routes: &[SinkRoute],
    now: i64,
) -> rusqlite::Result<()> {
    for route in routes {
        if route.by_cursor {
            // One with its cursor is only read (PostgreSQL's twin explains).
            if cursor_of(tx, &route.name)?.is_some() {
                continue;
            }
            tx.execute(
                "INSERT INTO sinks (name, delivered_through)
                 VALUES (?1, (SELECT coalesce(max(seq), 0) FROM transitions))
                 ON CONFLICT (name) DO UPDATE SET
                    delivered_through = coalesce(delivered_through, excluded.delivered_through)",
                [&route.name],
            )?;
            continue;
        }
        let Some(cursor) = cursor_of(tx, &route.name)? else {
            continue;
        };
        let mut args = vec![
            rusqlite::types::Value::Text(route.name.clone()),
            rusqlite::types::Value::Integer(now),
            rusqlite::types::Value::Integer(cursor),
        ];
        let filter = status_clause(route, &mut args);
        tx.execute(
            &format!(
                "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
                 SELECT ?, seq, order_id, ?2, ?2 FROM transitions WHERE seq > ?{filter}
                 ON CONFLICT (sink, seq) DO NOTHING"
            ),
            rusqlite::params_from_iter(args),
        )?;
        tx.execute(
            "UPDATE sinks SET delivered_through = NULL WHERE name = ?1",
            [&route.name],
        )?;
    }
    Ok(())
}
