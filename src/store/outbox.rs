//! The per-sink outbox: what is due, what happened to each attempt, and
//! queueing events again.

use rusqlite::{OptionalExtension, params};

use super::record::TransitionRow;
use super::{Db, StoreError};
use crate::config::SinkConfig;

/// A pending delivery with the transition it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub attempts: u32,
    /// When it was queued (unix ms): the give-up clock runs from here.
    pub created_at: i64,
    pub transition: TransitionRow,
}

impl OutboxEntry {
    pub fn seq(&self) -> i64 {
        self.transition.seq
    }
    pub fn order_id(&self) -> i64 {
        self.transition.order_id
    }
}

/// The result of one attempt, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Retry { next_attempt_at: i64, error: String },
    Dead { error: String },
}

/// Which deliveries `orderwatch redeliver` queues again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeliver {
    /// One event, by its id `"{order_id}:{status}"`.
    Event { order_id: i64, status: String },
    /// Every dead delivery of the sink.
    Dead,
    /// Every event first seen at or after this instant (unix ms).
    Since(i64),
}

const ENTRY_COLUMNS: &str = "o.attempts, o.created_at,
    t.seq, t.order_id, t.status, t.certificate_id, t.previous_status, t.seen_at";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxEntry> {
    Ok(OutboxEntry {
        attempts: r.get(0)?,
        created_at: r.get(1)?,
        transition: TransitionRow {
            seq: r.get(2)?,
            order_id: r.get(3)?,
            status: r.get(4)?,
            certificate_id: r.get(5)?,
            previous_status: r.get(6)?,
            seen_at: r.get(7)?,
        },
    })
}

impl Db {
    /// Pending deliveries of `sink` that are due at `now`, oldest first, and
    /// only the oldest pending one of each order: one order's events reach a
    /// sink in the order they were recorded.
    pub fn due(&self, sink: &str, now: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS}
             FROM outbox o JOIN transitions t ON t.seq = o.seq
             WHERE o.sink = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2
               AND NOT EXISTS (SELECT 1 FROM outbox p
                               WHERE p.sink = ?1 AND p.order_id = o.order_id
                                 AND p.state = 'pending' AND p.seq < o.seq)
             ORDER BY o.seq LIMIT ?3"
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.err("preparing the due query", e))?;
        let rows = stmt
            .query_map(params![sink, now, limit as i64], entry)
            .map_err(|e| self.err("reading due deliveries", e))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err("reading due deliveries", e))
    }

    /// When the next pending delivery of `sink` falls due (unix ms).
    pub fn next_due(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM outbox WHERE sink = ?1 AND state = 'pending'",
                [sink],
                |r| r.get(0),
            )
            .map_err(|e| self.err("reading the next due delivery", e))
    }

    /// Records the outcome of attempts, all in one transaction.
    pub fn mark(&mut self, sink: &str, marks: &[(i64, Mark)], now: i64) -> Result<(), StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| super::classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the delivery update"))?;
        {
            let mut delivered = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?3
                     WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
                )
                .map_err(err("preparing the delivery update"))?;
            let mut retry = tx
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?3, last_error = ?4,
                        first_failure_at = coalesce(first_failure_at, ?5)
                     WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
                )
                .map_err(err("preparing the retry update"))?;
            let mut dead = tx
                .prepare_cached(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = ?3,
                        done_at = ?4, first_failure_at = coalesce(first_failure_at, ?4)
                     WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
                )
                .map_err(err("preparing the dead-letter update"))?;
            for (seq, mark) in marks {
                match mark {
                    Mark::Delivered => delivered.execute(params![sink, seq, now]),
                    Mark::Retry {
                        next_attempt_at,
                        error,
                    } => retry.execute(params![sink, seq, next_attempt_at, error, now]),
                    Mark::Dead { error } => dead.execute(params![sink, seq, error, now]),
                }
                .map_err(err("recording a delivery attempt"))?;
            }
        }
        tx.commit().map_err(err("committing delivery results"))
    }

    /// Gives up every pending delivery of `sink` queued before `cutoff`:
    /// while a receiver is down only one probe is sent at a time, so rows
    /// behind it would otherwise outlive `give_up_after` unattempted.
    pub fn expire(
        &mut self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'dead', done_at = ?3, last_error = ?4,
                    first_failure_at = coalesce(first_failure_at, ?3)
                 WHERE sink = ?1 AND state = 'pending' AND created_at < ?2",
                params![sink, cutoff, now, error],
            )
            .map_err(|e| self.err("giving up old deliveries", e))
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

    pub fn pause(&mut self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO sinks (name, paused_at, paused_reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,
                    paused_reason = excluded.paused_reason",
                params![sink, now, reason],
            )
            .map(|_| ())
            .map_err(|e| self.err("pausing a sink", e))
    }

    /// Queues deliveries again for `sink` and lifts a pause. Returns how many
    /// deliveries were queued.
    pub fn redeliver(
        &mut self,
        sink: &SinkConfig,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| super::classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the redelivery"))?;
        let count = {
            let mut requeue = tx
                .prepare_cached(
                    "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)
                     ON CONFLICT (sink, seq) DO UPDATE SET state = 'pending', attempts = 0,
                        created_at = ?4, next_attempt_at = ?4, first_failure_at = NULL, last_error = NULL, done_at = NULL",
                )
                .map_err(err("preparing the redelivery"))?;
            let candidates: Vec<(i64, i64, String)> = match what {
                Redeliver::Event { order_id, status } => {
                    let mut q = tx
                        .prepare_cached("SELECT seq, order_id, status FROM transitions WHERE order_id = ?1 AND status = ?2")
                        .map_err(err("finding the event"))?;
                    let rows = q
                        .query_map(params![order_id, status], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .map_err(err("finding the event"))?;
                    rows.collect::<Result<_, _>>()
                        .map_err(err("finding the event"))?
                }
                Redeliver::Dead => {
                    let mut q = tx
                        .prepare_cached(
                            "SELECT t.seq, t.order_id, t.status FROM outbox o JOIN transitions t ON t.seq = o.seq
                             WHERE o.sink = ?1 AND o.state = 'dead' ORDER BY t.seq",
                        )
                        .map_err(err("finding dead deliveries"))?;
                    let rows = q
                        .query_map([&sink.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .map_err(err("finding dead deliveries"))?;
                    rows.collect::<Result<_, _>>()
                        .map_err(err("finding dead deliveries"))?
                }
                Redeliver::Since(since) => {
                    let mut q = tx
                        .prepare_cached("SELECT seq, order_id, status FROM transitions WHERE seen_at >= ?1 ORDER BY seq")
                        .map_err(err("finding recent events"))?;
                    let rows = q
                        .query_map([since], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                        .map_err(err("finding recent events"))?;
                    rows.collect::<Result<_, _>>()
                        .map_err(err("finding recent events"))?
                }
            };
            let mut count = 0;
            for (seq, order_id, status) in candidates {
                // An explicit --event is the operator's call; bulk requeues
                // respect the sink's status filter.
                if matches!(what, Redeliver::Event { .. }) || sink.wants(&status) {
                    requeue
                        .execute(params![sink.name, seq, order_id, now])
                        .map_err(err("queueing a delivery again"))?;
                    count += 1;
                }
            }
            tx.execute(
                "UPDATE sinks SET paused_at = NULL, paused_reason = NULL WHERE name = ?1",
                [&sink.name],
            )
            .map_err(err("resuming the sink"))?;
            count
        };
        tx.commit().map_err(err("committing the redelivery"))?;
        Ok(count)
    }
}
