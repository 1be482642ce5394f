//! The per-sink outbox: what is due, what happened to each attempt, and
//! queueing events again.
//!
//! Delivered rows stay for `keep_delivered` (90 days by default), so a busy
//! sink's ledger is mostly rows that are done. Questions about pending rows
//! name the pending index (`INDEXED BY outbox_pending`): without statistics
//! SQLite otherwise walks the sink's whole ledger through the primary key,
//! which made each fetch of due rows cost what was ever delivered.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::Db;
use super::alerts;
use super::db::classify;
use super::rows::{ENTRY_COLUMNS, cursor_of, entry};
use crate::store::{Mark, OutboxEntry, Redeliver, SinkRoute, StoreError};

impl Db {
    /// Pending deliveries of `sink` that are due at `now`, oldest first, and
    /// only the oldest pending one of each order: one order's events reach a
    /// sink in the order they were recorded. A held transition (waiting for
    /// its order's details) is not due, nor, being pending, anything after
    /// it of the same order. Seqs up to `after` are left out. For an
    /// in-order sink, nothing after a pending row that is not due yet is
    /// due either (retries of one batch may fall due at slightly different
    /// times, and must still go out in recorded order).
    pub fn due(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let sink = &route.name;
        let in_order = if route.by_cursor {
            "AND o.seq < coalesce((SELECT min(w.seq) FROM outbox w
                                   WHERE w.sink = ?1 AND w.state = 'pending'
                                     AND w.next_attempt_at > ?2), 9223372036854775807)"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS}
             FROM outbox o INDEXED BY outbox_pending JOIN transitions t ON t.seq = o.seq
             WHERE o.sink = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2
               AND o.seq > ?4 {in_order}
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.sink = ?1 AND p.order_id = o.order_id
                                 AND p.state = 'pending' AND p.seq < o.seq)
               AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
             ORDER BY o.seq LIMIT ?3"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.err("preparing the due query", e))?;
        let rows = stmt
            .query_map(params![sink, now, limit as i64, after], entry)
            .map_err(|e| self.err("reading due deliveries", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading due deliveries", e))
    }

    /// When the next pending delivery of `sink` falls due (unix ms); held
    /// ones fall due when released, which wakes the loop. A row waiting
    /// behind an earlier pending one of its order is due only once that
    /// one is done (whose mark wakes the loop), so its own time does not
    /// count: else a loop would wake at once, find nothing due and go
    /// round again until the earlier one's retry came.
    pub fn next_due(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError> {
        // An in-order sink's rows go out in seq order: the first one's
        // time is when anything is due. Another sink's rows are read in
        // time order, up to the first that is its order's oldest.
        let sql = if route.by_cursor {
            "SELECT o.next_attempt_at FROM outbox o INDEXED BY outbox_pending
             WHERE o.sink = ?1 AND o.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
               AND NOT EXISTS (SELECT 1 FROM outbox p INDEXED BY outbox_pending_order
                               WHERE p.sink = ?1 AND p.order_id = o.order_id
                                 AND p.state = 'pending' AND p.seq < o.seq)
             ORDER BY o.seq LIMIT 1"
        } else {
            "SELECT o.next_attempt_at FROM outbox o INDEXED BY outbox_due
             WHERE o.sink = ?1 AND o.state = 'pending'
               AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
               AND NOT EXISTS (SELECT 1 FROM outbox p INDEXED BY outbox_pending_order
                               WHERE p.sink = ?1 AND p.order_id = o.order_id
                                 AND p.state = 'pending' AND p.seq < o.seq)
             ORDER BY o.next_attempt_at LIMIT 1"
        };
        self.conn
            .query_row(sql, [&route.name], |r| r.get(0))
            .optional()
            .map(Option::flatten)
            .map_err(|e| self.err("reading the next due delivery", e))
    }

    /// Records the outcome of attempts, all in one transaction.
    ///
    /// A 2xx is the truth even for a row given up (`expire`) while its
    /// request was in flight: it becomes delivered. Failures only touch rows
    /// still pending, so they never revive a given-up row.
    ///
    /// For an in-order sink, an event after its cursor has no row: a success
    /// just moves the cursor past it; a failure writes its row (retry or
    /// dead) and then moves the cursor, so the row carries it from there.
    pub fn mark(&mut self, sink: &str, marks: &[(i64, Mark)], now: i64) -> Result<(), StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the delivery update"))?;
        let cursor = cursor_of(&tx, sink).map_err(err("reading the sink cursor"))?;
        let rows_after =
            rows_after_cursor(&tx, sink, cursor).map_err(err("reading rows after the cursor"))?;
        let mut moved_to: Option<i64> = None;
        for (seq, mark) in marks {
            let changed = if cursor.is_some_and(|c| *seq > c) && !rows_after.contains(seq) {
                moved_to = moved_to.max(Some(*seq));
                mark_after_cursor(&tx, sink, *seq, mark, now)
                    .map_err(err("recording a failed delivery"))?
            } else {
                mark_row(&tx, sink, *seq, mark, now).map_err(err("recording a delivery attempt"))?
            };
            // Operational events: a delivery that just became dead says so,
            // in this transaction (see `store/alert.rs`).
            if let (Mark::Dead { error }, 1) = (mark, changed) {
                alerts::delivery_dead(&tx, sink, *seq, error, now)
                    .map_err(err("recording a dead delivery alert"))?;
            }
        }
        if let Some(to) = moved_to {
            tx.execute(
                "UPDATE sinks SET delivered_through = max(delivered_through, ?2) WHERE name = ?1",
                params![sink, to],
            )
            .map_err(err("moving the sink cursor"))?;
        }
        tx.commit().map_err(err("committing delivery results"))
    }

    /// Gives up every pending delivery of `sink` whose first attempt failed
    /// before `cutoff` (`give_up_after` ago). A row never tried (the sink
    /// paused, the daemon stopped, rows waiting behind a failing receiver's
    /// one probe) is never given up for its age: its clock starts at its
    /// first failed attempt. `error` is prefixed to each row's own last
    /// error.
    pub fn expire(
        &mut self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting to give up old deliveries"))?;
        let given_up: Vec<(i64, String)> = tx
            .prepare_cached(
                "UPDATE outbox INDEXED BY outbox_pending SET state = 'dead', done_at = ?3,
                    last_error = ?4 || coalesce(': ' || last_error, '')
                 WHERE sink = ?1 AND state = 'pending' AND first_failure_at < ?2
                 RETURNING seq, last_error",
            )
            .and_then(|mut q| {
                q.query_map(params![sink, cutoff, now, error], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect()
            })
            .map_err(err("giving up old deliveries"))?;
        // Operational events: each delivery given up says so, in this
        // transaction.
        for (seq, last_error) in &given_up {
            alerts::delivery_dead(&tx, sink, *seq, last_error, now)
                .map_err(err("recording a dead delivery alert"))?;
        }
        tx.commit().map_err(err("committing given-up deliveries"))?;
        Ok(given_up.len())
    }

    /// Whether `orderwatch redeliver` queued rows of `sink` at or after
    /// `since` (unix ms). A requeued row is pending, untried, and queued
    /// after its transition was first seen, which a row written by the
    /// poller never is (`record_window` queues at `seen_at`). The delivery
    /// loop uses this to end a failure hold at once when an operator says
    /// the receiver is fixed.
    pub fn requeued_since(&self, sink: &str, since: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox o JOIN transitions t ON t.seq = o.seq
                    WHERE o.sink = ?1 AND o.state = 'pending' AND o.next_attempt_at >= ?2
                      AND o.attempts = 0 AND o.created_at > t.seen_at)",
                params![sink, since],
                |r| r.get(0),
            )
            .map_err(|e| self.err("looking for redelivered rows", e))
    }

    /// Makes every pending retry of `sink` due at `now`. After a receiver
    /// recovers, rows that failed while it was down should not sit out the
    /// rest of their backoff (up to `backoff_max`), nor hold back the later
    /// events of their orders. Returns how many rows were moved.
    pub fn retry_now(&mut self, sink: &str, now: i64) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET next_attempt_at = ?2
                 WHERE sink = ?1 AND state = 'pending' AND attempts > 0 AND next_attempt_at > ?2",
                params![sink, now],
            )
            .map_err(|e| self.err("rescheduling retries", e))
    }

    /// Why the sink is paused (a receiver answered 410 Gone), if it is.
    pub fn paused(&self, sink: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(
                "SELECT paused_reason FROM sinks WHERE name = ?1 AND paused_at IS NOT NULL",
                [sink],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err("reading the sink state", e))
    }

    /// When (unix ms) and why the sink was paused, if it is.
    pub fn paused_since(&self, sink: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT paused_at, coalesce(paused_reason, '') FROM sinks
                 WHERE name = ?1 AND paused_at IS NOT NULL",
                [sink],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err("reading the sink state", e))
    }

    /// SQLite's `data_version`: it moves whenever another connection
    /// (this process's writer, or another process) commits.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        self.conn
            .prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(|e| self.err("reading the store's data version", e))
    }

    /// Pauses the sink until `redeliver` (a receiver answered 410 Gone).
    /// The pause is stored, so it survives a restart.
    ///
    /// Pausing a sink that was not paused writes `orderwatch.sink.paused`
    /// in the same transaction, unless the sink is operational itself.
    pub fn pause(&mut self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting to pause a sink"))?;
        let newly: bool = tx
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM sinks WHERE name = ?1 AND paused_at IS NOT NULL)
                    AND NOT EXISTS (SELECT 1 FROM alert_sinks WHERE name = ?1)",
                [sink],
                |r| r.get(0),
            )
            .map_err(err("reading the sink state"))?;
        tx.execute(
            "INSERT INTO sinks (name, paused_at, paused_reason) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,
                paused_reason = excluded.paused_reason",
            params![sink, now, reason],
        )
        .map_err(err("pausing a sink"))?;
        if newly {
            alerts::insert_alert(&tx, &crate::store::alert::sink_paused(sink, reason), now)
                .map_err(err("recording a paused sink alert"))?;
        }
        tx.commit().map_err(err("committing the pause"))
    }

    /// Queues deliveries again for `sink` and lifts a pause. Returns how many
    /// deliveries were queued.
    pub fn redeliver(
        &mut self,
        sink: &SinkRoute,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        if sink.operational {
            return self.redeliver_alerts(&sink.name, what, now);
        }
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the redelivery"))?;
        let candidates =
            redelivery_candidates(&tx, sink, what).map_err(err("finding what to redeliver"))?;
        let cursor = cursor_of(&tx, &sink.name).map_err(err("reading the sink cursor"))?;
        let mut count = 0;
        for (seq, order_id, status) in candidates {
            if cursor.is_some_and(|c| seq > c) && sink.wants(&status) {
                // Still ahead of an in-order sink's cursor: already pending.
                count += 1;
                continue;
            }
            // An explicit --event is the operator's call; bulk requeues
            // respect the sink's status filter.
            if matches!(what, Redeliver::Event(_)) || sink.wants(&status) {
                tx.prepare_cached(
                    "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT (sink, seq) DO UPDATE SET state = 'pending', attempts = 0,
                        created_at = ?4, next_attempt_at = ?4, first_failure_at = NULL, last_error = NULL, done_at = NULL",
                )
                .and_then(|mut q| q.execute(params![sink.name, seq, order_id, now]))
                .map_err(err("queueing a delivery again"))?;
                count += 1;
            }
        }
        tx.execute(
            "UPDATE sinks SET paused_at = NULL, paused_reason = NULL WHERE name = ?1",
            [&sink.name],
        )
        .map_err(err("resuming the sink"))?;
        tx.commit().map_err(err("committing the redelivery"))?;
        Ok(count)
    }
}

/// Seqs of `sink`'s rows after its cursor. Events after an in-order sink's
/// cursor rarely have rows (an operator's `--event` of a status the sink
/// does not take); listing those once spares an update per event.
fn rows_after_cursor(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    cursor: Option<i64>,
) -> rusqlite::Result<HashSet<i64>> {
    let Some(c) = cursor else {
        return Ok(HashSet::new());
    };
    let mut q = tx.prepare_cached("SELECT seq FROM outbox WHERE sink = ?1 AND seq > ?2")?;
    let seqs = q.query_map(params![sink, c], |r| r.get(0))?;
    seqs.collect()
}

/// An attempt on a delivery that has a row. A 2xx is the truth even for a
/// row given up (`expire`) while its request was in flight; failures only
/// touch rows still pending, so they never revive a given-up row.
fn mark_row(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    seq: i64,
    mark: &Mark,
    now: i64,
) -> rusqlite::Result<usize> {
    match mark {
        Mark::Delivered => tx
            .prepare_cached(
                "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?3
                 WHERE sink = ?1 AND seq = ?2 AND state IN ('pending', 'dead')",
            )?
            .execute(params![sink, seq, now]),
        Mark::Retry {
            next_attempt_at,
            error,
        } => tx
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4,
                    first_failure_at = coalesce(first_failure_at, ?5)
                 WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
            )?
            .execute(params![sink, seq, next_attempt_at, error, now]),
        Mark::Dead { error } => tx
            .prepare_cached(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?3,
                    done_at = ?4, first_failure_at = coalesce(first_failure_at, ?4)
                 WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
            )?
            .execute(params![sink, seq, error, now]),
    }
}

/// An attempt on an event after an in-order sink's cursor, which has no
/// row: a success needs nothing (the cursor moves past it); a failure gets
/// its row, queued when the event was seen (so it is no redelivery), one
/// attempt made.
fn mark_after_cursor(
    tx: &rusqlite::Transaction<'_>,
    sink: &str,
    seq: i64,
    mark: &Mark,
    now: i64,
) -> rusqlite::Result<usize> {
    let (state, next, error, done) = match mark {
        Mark::Delivered => return Ok(0),
        Mark::Retry {
            next_attempt_at,
            error,
        } => ("pending", *next_attempt_at, error, None),
        Mark::Dead { error } => ("dead", now, error, Some(now)),
    };
    tx.prepare_cached(
        "INSERT INTO outbox (sink, seq, order_id, state, attempts, created_at, next_attempt_at,
            first_failure_at, last_error, done_at)
         SELECT ?1, seq, order_id, ?3, 1, seen_at, ?4, ?5, ?6, ?7 FROM transitions WHERE seq = ?2
         ON CONFLICT (sink, seq) DO NOTHING",
    )?
    .execute(params![sink, seq, state, next, now, error, done])
}

/// `(seq, order_id, status)` of the events `what` names, oldest first.
fn redelivery_candidates(
    tx: &rusqlite::Transaction<'_>,
    sink: &SinkRoute,
    what: &Redeliver,
) -> rusqlite::Result<Vec<(i64, i64, String)>> {
    let row = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    match what {
        Redeliver::Event(id) => tx
            .prepare_cached(
                "SELECT seq, order_id, status FROM transitions
                 WHERE order_id = ?1 AND status = ?2 AND occurrence = ?3",
            )?
            .query_map(params![id.order_id, id.status, id.occurrence], row)?
            .collect(),
        Redeliver::Dead => tx
            .prepare_cached(
                "SELECT t.seq, t.order_id, t.status FROM outbox o JOIN transitions t ON t.seq = o.seq
                 WHERE o.sink = ?1 AND o.state = 'dead' ORDER BY t.seq",
            )?
            .query_map([&sink.name], row)?
            .collect(),
        Redeliver::Since(since) => tx
            .prepare_cached(
                "SELECT seq, order_id, status FROM transitions WHERE seen_at >= ?1 ORDER BY seq",
            )?
            .query_map([since], row)?
            .collect(),
        // Alerts go to operational sinks only (`redeliver_alerts`).
        Redeliver::Alert(_) => Ok(Vec::new()),
    }
}
