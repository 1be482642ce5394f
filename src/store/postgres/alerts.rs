//! Operational events on PostgreSQL: SQLite's rules (`sqlite/alerts.rs`,
//! `store/alert.rs`) in the same words. Every leader write is fenced; an
//! alert is written in the transaction of the state change that causes it.

use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use super::PgStore;
use crate::store::alert::{self, AlertEntry, NewAlert, PollHealth};
use crate::store::{DeliveryFilter, DeliveryRow, DeliveryState, Mark, Redeliver, StoreError};

/// Writes `alert` and queues it for every operational sink but the one it
/// is about, in `tx`. Returns its id.
pub(super) async fn insert_alert(
    tx: &Transaction<'_>,
    a: &NewAlert,
    now: i64,
) -> Result<String, tokio_postgres::Error> {
    // Two writers of the same key would count alike; the leader is the
    // only writer, and the unique id makes a race fail instead of doubling.
    let earlier: i64 = tx
        .query_one("SELECT count(*) FROM alerts WHERE key = $1", &[&a.key])
        .await?
        .get(0);
    let id = a.id(earlier + 1);
    let seq: i64 = tx
        .query_one(
            "INSERT INTO alerts (id, key, type, about, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
            &[&id, &a.key, &a.kind, &a.about, &a.data.to_string(), &now],
        )
        .await?
        .get(0);
    tx.execute(
        "INSERT INTO alert_outbox (sink, seq, created_at, next_attempt_at)
         SELECT name, $1, $2, $2 FROM alert_sinks WHERE $3::text IS NULL OR name <> $3",
        &[&seq, &now, &a.about],
    )
    .await?;
    Ok(id)
}

/// The deliveries `seqs` of `sink` have just become dead: one alert each,
/// in the same transaction.
pub(super) async fn deliveries_dead(
    tx: &Transaction<'_>,
    sink: &str,
    seqs: &[i64],
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    if seqs.is_empty() {
        return Ok(());
    }
    let rows = tx
        .query(
            "SELECT t.order_id, t.status, t.occurrence, o.attempts, coalesce(o.last_error, '')
             FROM outbox o JOIN transitions t ON t.seq = o.seq
             WHERE o.sink = $1 AND o.seq = ANY($2) ORDER BY o.seq",
            &[&sink, &seqs],
        )
        .await?;
    for r in rows {
        let occurrence = r.get::<_, i32>(2).max(0) as u32;
        let id = crate::transition::event_id(r.get(0), r.get(1), occurrence);
        let attempts = r.get::<_, i32>(3).max(0) as u32;
        let a = alert::delivery_dead(sink, &id, r.get(4), attempts);
        insert_alert(tx, &a, now).await?;
    }
    Ok(())
}

impl PgStore {
    /// Replaces the operational sinks.
    pub(super) async fn replace_alert_sinks(&self, sinks: &[String]) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let context = "listing the operational sinks";
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        tx.execute("DELETE FROM alert_sinks", &[])
            .await
            .map_err(self.err(context))?;
        tx.execute(
            "INSERT INTO alert_sinks (name) SELECT DISTINCT unnest($1::text[])",
            &[&sinks],
        )
        .await
        .map_err(self.err(context))?;
        tx.commit().await.map_err(self.err(context))
    }

    /// See [`crate::store::Store::poll_health`].
    pub(super) async fn record_poll_health(
        &self,
        health: &PollHealth,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let mut client = self.client().await?;
        let context = "recording how polling is doing";
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        let latest = tx
            .query_opt(
                "SELECT type, id FROM alerts WHERE type IN ($1, $2) ORDER BY seq DESC LIMIT 1",
                &[&alert::POLL_FAILED, &alert::POLL_RECOVERED],
            )
            .await
            .map_err(self.err(context))?
            .map(|r| (r.get::<_, String>(0), r.get::<_, String>(1)));
        let latest = latest.as_ref().map(|(k, i)| (k.as_str(), i.as_str()));
        let written = match alert::poll_alert(health, latest) {
            Some(a) => Some(
                insert_alert(&tx, &a, now)
                    .await
                    .map_err(self.err(context))?,
            ),
            None => None,
        };
        tx.commit().await.map_err(self.err(context))?;
        Ok(written)
    }

    /// Alert deliveries of `sink` due at `now`, oldest first.
    pub(super) async fn due_alerts(
        &self,
        sink: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertEntry>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT a.seq, a.id, a.type, a.about, a.data, a.created_at, o.attempts, o.first_failure_at
                 FROM alert_outbox o JOIN alerts a ON a.seq = o.seq
                 WHERE o.sink = $1 AND o.state = 'pending' AND o.next_attempt_at <= $2
                 ORDER BY o.seq LIMIT $3",
                &[&sink, &now, &(limit as i64)],
            )
            .await
            .map_err(self.err("reading due alerts"))?;
        Ok(rows
            .iter()
            .map(|r| AlertEntry {
                seq: r.get(0),
                id: r.get(1),
                kind: r.get(2),
                about: r.get(3),
                data: r.get(4),
                created_at: r.get(5),
                attempts: r.get::<_, i32>(6).max(0) as u32,
                first_failure_at: r.get(7),
            })
            .collect())
    }

    /// When `sink`'s next alert delivery falls due.
    pub(super) async fn next_due_alert(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        client
            .query_one(
                "SELECT min(next_attempt_at) FROM alert_outbox WHERE sink = $1 AND state = 'pending'",
                &[&sink],
            )
            .await
            .map(|r| r.get(0))
            .map_err(self.err("reading the next due alert"))
    }

    /// Records alert delivery outcomes, in one fenced transaction.
    pub(super) async fn mark_alert_rows(
        &self,
        sink: &str,
        marks: &[(i64, Mark)],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let context = "recording alert deliveries";
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        for (seq, mark) in marks {
            match mark {
                Mark::Delivered => tx.execute(
                    "UPDATE alert_outbox SET state = 'delivered', attempts = attempts + 1, done_at = $3
                     WHERE sink = $1 AND seq = $2 AND state IN ('pending', 'dead')",
                    &[&sink, seq, &now],
                ).await,
                Mark::Retry {
                    next_attempt_at,
                    error,
                } => tx.execute(
                    "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = $3,
                        last_error = $4, first_failure_at = coalesce(first_failure_at, $5)
                     WHERE sink = $1 AND seq = $2 AND state = 'pending'",
                    &[&sink, seq, next_attempt_at, error, &now],
                ).await,
                Mark::Dead { error } => tx.execute(
                    "UPDATE alert_outbox SET state = 'dead', attempts = attempts + 1, last_error = $4,
                        done_at = $3, first_failure_at = coalesce(first_failure_at, $3)
                     WHERE sink = $1 AND seq = $2 AND state = 'pending'",
                    &[&sink, seq, &now, error],
                ).await,
            }
            .map_err(self.err(context))?;
        }
        tx.commit().await.map_err(self.err(context))
    }

    /// Queues alert deliveries of operational sink `sink` again and lifts
    /// its pause. An operator's command, so not fenced.
    pub(super) async fn requeue_alerts(
        &self,
        sink: &str,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        let (filter, id, since): (&str, Option<&str>, Option<i64>) = match what {
            Redeliver::Alert(id) => ("a.id = $3", Some(id.as_str()), None),
            Redeliver::Dead => (
                "EXISTS (SELECT 1 FROM alert_outbox d WHERE d.sink = $1 AND d.seq = a.seq AND d.state = 'dead')",
                None,
                None,
            ),
            Redeliver::Since(s) => ("a.created_at >= $4", None, Some(*s)),
            Redeliver::Event(_) => ("false", None, None),
        };
        let sql = format!(
            "INSERT INTO alert_outbox (sink, seq, created_at, next_attempt_at)
             SELECT $1, a.seq, $2, $2 FROM alerts a
             WHERE (a.about IS NULL OR a.about <> $1)
               AND ($3::text IS NULL OR true) AND ($4::bigint IS NULL OR true) AND {filter}
             ON CONFLICT (sink, seq) DO UPDATE SET state = 'pending', attempts = 0,
                created_at = $2, next_attempt_at = $2, first_failure_at = NULL,
                last_error = NULL, done_at = NULL"
        );
        let mut client = self.client().await?;
        let context = "queueing alerts again";
        let tx = client.transaction().await.map_err(self.err(context))?;
        let n = tx
            .execute(&sql, &[&sink, &now, &id, &since])
            .await
            .map_err(self.err(context))?;
        tx.execute(
            "UPDATE sinks SET paused_at = NULL, paused_reason = NULL WHERE name = $1",
            &[&sink],
        )
        .await
        .map_err(self.err(context))?;
        tx.commit().await.map_err(self.err(context))?;
        Ok(n as usize)
    }

    /// The alert ledger rows `f` asks for, newest first.
    pub(super) async fn list_alert_deliveries(
        &self,
        f: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let client = self.client().await?;
        let state = f.state.map(DeliveryState::as_str);
        let rows = client
            .query(
                "SELECT o.sink, a.type, o.state, o.attempts, o.created_at, o.next_attempt_at,
                        o.done_at, o.last_error, o.seq, a.id
                 FROM alert_outbox o JOIN alerts a ON a.seq = o.seq
                 WHERE ($1::text IS NULL OR o.sink = $1) AND ($2::text IS NULL OR o.state = $2)
                 ORDER BY o.seq DESC, o.sink LIMIT $3",
                &[&f.sink, &state, &(f.limit as i64)],
            )
            .await
            .map_err(self.err("reading the alert ledger"))?;
        Ok(rows
            .iter()
            .map(|r| DeliveryRow {
                sink: r.get(0),
                order_id: 0,
                status: r.get(1),
                occurrence: 0,
                state: DeliveryState::parse(r.get(2)),
                attempts: r.get::<_, i32>(3).max(0) as u32,
                created_at: r.get(4),
                next_attempt_at: r.get(5),
                done_at: r.get(6),
                last_error: r.get(7),
                seq: r.get(8),
                alert: Some(r.get(9)),
            })
            .collect())
    }

    /// Deletes up to `limit` alert ledger rows in `state` done before
    /// `before`, of `sink` or every sink; fenced when `fenced` (the
    /// leader's retention), not for an operator's purge.
    pub(super) async fn prune_alert_rows(
        &self,
        state: DeliveryState,
        sink: Option<&str>,
        before: i64,
        limit: usize,
        fenced: bool,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let sql = "DELETE FROM alert_outbox WHERE (sink, seq) IN (
                SELECT sink, seq FROM alert_outbox
                WHERE state = $1 AND done_at < $2 AND ($3::text IS NULL OR sink = $3)
                LIMIT $4)";
        let params: [&(dyn ToSql + Sync); 4] = [&state.as_str(), &before, &sink, &limit];
        if fenced {
            return self
                .fenced_execute("deleting old alert ledger rows", sql, &params)
                .await;
        }
        let client = self.client().await?;
        let n = client
            .execute(sql, &params)
            .await
            .map_err(self.err("deleting old alert ledger rows"))?;
        Ok(n as usize)
    }
}
