//! The per-sink outbox: what happened to each attempt, giving up, pauses and
//! queueing events again. The rules are SQLite's (`sqlite/outbox.rs`), in
//! the same words; the shared suite holds both to them.

use std::collections::HashSet;

use tokio_postgres::Transaction;

use super::PgStore;
use super::alerts;
use super::rows::cursor_of;
use crate::store::{Mark, Redeliver, SinkRoute, StoreError};

impl PgStore {
    /// Records the outcome of attempts, all in one fenced transaction.
    ///
    /// A 2xx is the truth even for a row given up meanwhile: it becomes
    /// delivered. Failures only touch rows still pending. For an in-order
    /// sink, an event after its cursor has no row: a success just moves the
    /// cursor past it; a failure writes its row, then moves the cursor.
    pub(super) async fn mark_all(
        &self,
        sink: &str,
        marks: &[(i64, Mark)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting the delivery update"))?;
        self.fence(&tx).await?;
        let (moved_to, dead) = apply_marks(&tx, sink, marks, now)
            .await
            .map_err(self.err("recording a delivery attempt"))?;
        // Operational events: each delivery that just became dead says so,
        // in this transaction (see `store/alert.rs`).
        alerts::deliveries_dead(&tx, sink, &dead, now)
            .await
            .map_err(self.err("recording dead delivery alerts"))?;
        if let Some(to) = moved_to {
            tx.execute(
                "UPDATE sinks SET delivered_through = greatest(delivered_through, $2) WHERE name = $1",
                &[&sink, &to],
            )
            .await
            .map_err(self.err("moving the sink cursor"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing delivery results"))
    }

    /// Gives up every pending delivery of `sink` whose first attempt failed
    /// before `cutoff`; rows never tried are kept (see SQLite's `expire`).
    pub(super) async fn expire_old(
        &self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let context = "giving up old deliveries";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        let seqs: Vec<i64> = tx
            .query(
                "UPDATE outbox SET state = 'dead', done_at = $3,
                    last_error = $4 || coalesce(': ' || last_error, '')
                 WHERE sink = $1 AND state = 'pending' AND first_failure_at < $2
                 RETURNING seq",
                &[&sink, &cutoff, &now, &error],
            )
            .await
            .map_err(self.err(context))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Operational events: each delivery given up says so, in this
        // transaction.
        alerts::deliveries_dead(&tx, sink, &seqs, now)
            .await
            .map_err(self.err("recording dead delivery alerts"))?;
        tx.commit().await.map_err(self.err(context))?;
        Ok(seqs.len())
    }

    /// Makes every pending retry of `sink` due at `now`.
    pub(super) async fn retry_all_now(&self, sink: &str, now: i64) -> Result<usize, StoreError> {
        self.fenced_execute(
            "rescheduling retries",
            "UPDATE outbox SET next_attempt_at = $2
             WHERE sink = $1 AND state = 'pending' AND attempts > 0 AND next_attempt_at > $2",
            &[&sink, &now],
        )
        .await
    }

    /// Pauses the sink until `redeliver` (a receiver answered 410 Gone).
    /// Pausing a sink that was not paused writes `orderwatch.sink.paused`
    /// in the same transaction, unless the sink is operational itself.
    pub(super) async fn pause_sink(
        &self,
        sink: &str,
        reason: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let context = "pausing a sink";
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        let newly: bool = tx
            .query_one(
                "SELECT NOT EXISTS (SELECT 1 FROM sinks WHERE name = $1 AND paused_at IS NOT NULL)
                    AND NOT EXISTS (SELECT 1 FROM alert_sinks WHERE name = $1)",
                &[&sink],
            )
            .await
            .map_err(self.err(context))?
            .get(0);
        tx.execute(
            "INSERT INTO sinks (name, paused_at, paused_reason) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET paused_at = excluded.paused_at,
                paused_reason = excluded.paused_reason",
            &[&sink, &now, &reason],
        )
        .await
        .map_err(self.err(context))?;
        if newly {
            let a = crate::store::alert::sink_paused(sink, reason);
            alerts::insert_alert(&tx, &a, now)
                .await
                .map_err(self.err("recording a paused sink alert"))?;
        }
        tx.commit().await.map_err(self.err(context))
    }

    /// Queues deliveries again for `sink` and lifts a pause. An operator's
    /// command, so it is not fenced: it may run beside any leader.
    pub(super) async fn requeue(
        &self,
        sink: &SinkRoute,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        if sink.operational {
            return self.requeue_alerts(&sink.name, what, now).await;
        }
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting the redelivery"))?;
        let candidates = redelivery_candidates(&tx, &sink.name, what)
            .await
            .map_err(self.err("finding the events"))?;
        let cursor = cursor_of(&*tx, &sink.name)
            .await
            .map_err(self.err("reading the sink cursor"))?;
        let mut count = 0;
        let mut requeued: Vec<(i64, i64)> = Vec::new();
        for (seq, order_id, status) in candidates {
            if cursor.is_some_and(|c| seq > c) && sink.wants(&status) {
                // Still ahead of an in-order sink's cursor: already pending.
                count += 1;
                continue;
            }
            // An explicit --event is the operator's call; bulk requeues
            // respect the sink's status filter.
            if matches!(what, Redeliver::Event(_)) || sink.wants(&status) {
                requeued.push((seq, order_id));
                count += 1;
            }
        }
        let (seqs, orders): (Vec<i64>, Vec<i64>) = requeued.into_iter().unzip();
        tx.execute(
            "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
             SELECT $1, s, o, $4, $4 FROM unnest($2::bigint[], $3::bigint[]) AS u (s, o)
             ON CONFLICT (sink, seq) DO UPDATE SET state = 'pending', attempts = 0,
                created_at = $4, next_attempt_at = $4, first_failure_at = NULL, last_error = NULL, done_at = NULL",
            &[&sink.name, &seqs, &orders, &now],
        )
        .await
        .map_err(self.err("queueing deliveries again"))?;
        tx.execute(
            "UPDATE sinks SET paused_at = NULL, paused_reason = NULL WHERE name = $1",
            &[&sink.name],
        )
        .await
        .map_err(self.err("resuming the sink"))?;
        tx.commit()
            .await
            .map_err(self.err("committing the redelivery"))?;
        Ok(count)
    }
}

/// Applies each mark; returns how far an in-order sink's cursor moves, and
/// the seqs that became dead.
async fn apply_marks(
    tx: &Transaction<'_>,
    sink: &str,
    marks: &[(i64, Mark)],
    now: i64,
) -> Result<(Option<i64>, Vec<i64>), tokio_postgres::Error> {
    let cursor = cursor_of(tx, sink).await?;
    // Events after an in-order sink's cursor rarely have rows; list those once.
    let rows_after: HashSet<i64> = match cursor {
        None => HashSet::new(),
        Some(c) => tx
            .query(
                "SELECT seq FROM outbox WHERE sink = $1 AND seq > $2",
                &[&sink, &c],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect(),
    };
    let delivered = tx
        .prepare(
            "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = $3
             WHERE sink = $1 AND seq = $2 AND state IN ('pending', 'dead')",
        )
        .await?;
    let retry = tx
        .prepare(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $3, last_error = $4,
                first_failure_at = coalesce(first_failure_at, $5)
             WHERE sink = $1 AND seq = $2 AND state = 'pending'",
        )
        .await?;
    let dead = tx
        .prepare(
            "UPDATE outbox SET state = 'dead', attempts = attempts + 1, last_error = $3,
                done_at = $4, first_failure_at = coalesce(first_failure_at, $4)
             WHERE sink = $1 AND seq = $2 AND state = 'pending'",
        )
        .await?;
    // A failed event after the cursor gets its row: queued when it was seen
    // (so it is no redelivery), one attempt made.
    let failed_row = tx
        .prepare(
            "INSERT INTO outbox (sink, seq, order_id, state, attempts, created_at, next_attempt_at,
                first_failure_at, last_error, done_at)
             SELECT $1, seq, order_id, $3, 1, seen_at, $4, $5, $6, $7 FROM transitions WHERE seq = $2
             ON CONFLICT (sink, seq) DO NOTHING",
        )
        .await?;
    let mut moved_to: Option<i64> = None;
    let mut dead_now = Vec::new();
    for (seq, mark) in marks {
        let after_cursor = cursor.is_some_and(|c| *seq > c) && !rows_after.contains(seq);
        if after_cursor {
            if failed_after_cursor(tx, &failed_row, sink, *seq, mark, now).await? == 1
                && matches!(mark, Mark::Dead { .. })
            {
                dead_now.push(*seq);
            }
            moved_to = moved_to.max(Some(*seq));
            continue;
        }
        let changed = match mark {
            Mark::Delivered => tx.execute(&delivered, &[&sink, seq, &now]).await?,
            Mark::Retry {
                next_attempt_at,
                error,
            } => {
                tx.execute(&retry, &[&sink, seq, next_attempt_at, error, &now])
                    .await?
            }
            Mark::Dead { error } => tx.execute(&dead, &[&sink, seq, error, &now]).await?,
        };
        if changed == 1 && matches!(mark, Mark::Dead { .. }) {
            dead_now.push(*seq);
        }
    }
    Ok((moved_to, dead_now))
}

/// An event after an in-order sink's cursor has no row: a success needs
/// none, a failure gets its row now (the cursor then moves past it).
async fn failed_after_cursor(
    tx: &Transaction<'_>,
    failed_row: &tokio_postgres::Statement,
    sink: &str,
    seq: i64,
    mark: &Mark,
    now: i64,
) -> Result<u64, tokio_postgres::Error> {
    Ok(match mark {
        Mark::Delivered => 0,
        Mark::Retry {
            next_attempt_at,
            error,
        } => {
            let none: Option<i64> = None;
            tx.execute(
                failed_row,
                &[&sink, &seq, &"pending", next_attempt_at, &now, error, &none],
            )
            .await?
        }
        Mark::Dead { error } => {
            let done = Some(now);
            tx.execute(
                failed_row,
                &[&sink, &seq, &"dead", &now, &now, error, &done],
            )
            .await?
        }
    })
}

/// `(seq, order_id, status)` of the events a redelivery concerns.
async fn redelivery_candidates(
    tx: &Transaction<'_>,
    sink: &str,
    what: &Redeliver,
) -> Result<Vec<(i64, i64, String)>, tokio_postgres::Error> {
    let rows = match what {
        Redeliver::Event(id) => {
            let occurrence = i32::try_from(id.occurrence).unwrap_or(i32::MAX);
            tx.query(
                "SELECT seq, order_id, status FROM transitions
                 WHERE order_id = $1 AND status = $2 AND occurrence = $3",
                &[&id.order_id, &id.status, &occurrence],
            )
            .await?
        }
        Redeliver::Dead => {
            tx.query(
                "SELECT t.seq, t.order_id, t.status FROM outbox o JOIN transitions t ON t.seq = o.seq
                 WHERE o.sink = $1 AND o.state = 'dead' ORDER BY t.seq",
                &[&sink],
            )
            .await?
        }
        Redeliver::Since(since) => {
            tx.query(
                "SELECT seq, order_id, status FROM transitions WHERE seen_at >= $1 ORDER BY seq",
                &[since],
            )
            .await?
        }
        // Alerts go to operational sinks only (`requeue_alerts`).
        Redeliver::Alert(_) => Vec::new(),
    };
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
