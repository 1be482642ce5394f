//! Operational events on SQLite: writing an alert with its ledger rows (in
//! the caller's transaction), the operational sinks' outbox, and their
//! share of the ledger views. The rules are in `store/alert.rs`.

use rusqlite::{OptionalExtension, Transaction, params};

use super::Db;
use super::db::classify;
use crate::store::alert::{self, AlertEntry, NewAlert, PollHealth};
use crate::store::{DeliveryFilter, DeliveryRow, DeliveryState, Mark, Redeliver, StoreError};

/// Writes `alert` and queues it for every operational sink but the one it
/// is about, in `tx`. Returns its id.
pub(super) fn insert_alert(
    tx: &Transaction<'_>,
    a: &NewAlert,
    now: i64,
) -> rusqlite::Result<String> {
    let earlier: i64 = tx
        .prepare_cached("SELECT count(*) FROM alerts WHERE key = ?1")?
        .query_row([&a.key], |r| r.get(0))?;
    let id = a.id(earlier + 1);
    tx.prepare_cached(
        "INSERT INTO alerts (id, key, type, about, data, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, a.key, a.kind, a.about, a.data.to_string(), now])?;
    let seq = tx.last_insert_rowid();
    tx.prepare_cached(
        "INSERT INTO alert_outbox (sink, seq, created_at, next_attempt_at)
         SELECT name, ?1, ?2, ?2 FROM alert_sinks WHERE ?3 IS NULL OR name <> ?3",
    )?
    .execute(params![seq, now, a.about])?;
    Ok(id)
}

/// The delivery of transition `seq` to `sink` has just become dead: the
/// alert that says so, in the same transaction.
pub(super) fn delivery_dead(
    tx: &Transaction<'_>,
    sink: &str,
    seq: i64,
    error: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let found: Option<(i64, String, u32, u32)> = tx
        .prepare_cached(
            "SELECT t.order_id, t.status, t.occurrence, o.attempts
             FROM outbox o JOIN transitions t ON t.seq = o.seq WHERE o.sink = ?1 AND o.seq = ?2",
        )?
        .query_row(params![sink, seq], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((order_id, status, occurrence, attempts)) = found {
        let id = crate::transition::event_id(order_id, &status, occurrence);
        insert_alert(tx, &alert::delivery_dead(sink, &id, error, attempts), now)?;
    }
    Ok(())
}

const ENTRY: &str =
    "a.seq, a.id, a.type, a.about, a.data, a.created_at, o.attempts, o.first_failure_at";

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertEntry> {
    Ok(AlertEntry {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        about: r.get(3)?,
        data: r.get(4)?,
        created_at: r.get(5)?,
        attempts: r.get(6)?,
        first_failure_at: r.get(7)?,
    })
}

impl Db {
    fn tx(&mut self, context: &'static str) -> Result<Transaction<'_>, StoreError> {
        let path = self.path.clone();
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(move |e| classify(&path, context, e))
    }

    /// Replaces the operational sinks.
    pub fn set_alert_sinks(&mut self, sinks: &[String]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = move |e| classify(&path, "listing the operational sinks", e);
        let tx = self.tx("listing the operational sinks")?;
        tx.execute("DELETE FROM alert_sinks", []).map_err(&err)?;
        for name in sinks {
            tx.execute(
                "INSERT OR IGNORE INTO alert_sinks (name) VALUES (?1)",
                [name],
            )
            .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// See [`crate::store::Store::poll_health`].
    pub fn poll_health(
        &mut self,
        health: &PollHealth,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let path = self.path.clone();
        let err = move |e| classify(&path, "recording how polling is doing", e);
        let tx = self.tx("recording how polling is doing")?;
        let latest: Option<(String, String)> = tx
            .query_row(
                "SELECT type, id FROM alerts WHERE type IN (?1, ?2) ORDER BY seq DESC LIMIT 1",
                [alert::POLL_FAILED, alert::POLL_RECOVERED],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(&err)?;
        let latest = latest.as_ref().map(|(k, i)| (k.as_str(), i.as_str()));
        let written = match alert::poll_alert(health, latest) {
            Some(a) => Some(insert_alert(&tx, &a, now).map_err(&err)?),
            None => None,
        };
        tx.commit().map_err(&err)?;
        Ok(written)
    }

    /// Alert deliveries of `sink` due at `now`, oldest first.
    pub fn alerts_due(
        &self,
        sink: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertEntry>, StoreError> {
        let sql = format!(
            "SELECT {ENTRY} FROM alert_outbox o JOIN alerts a ON a.seq = o.seq
             WHERE o.sink = ?1 AND o.state = 'pending' AND o.next_attempt_at <= ?2
             ORDER BY o.seq LIMIT ?3"
        );
        let mut q = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.err("reading due alerts", e))?;
        let rows = q
            .query_map(params![sink, now, limit as i64], entry)
            .map_err(|e| self.err("reading due alerts", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading due alerts", e))
    }

    /// When `sink`'s next alert delivery falls due.
    pub fn next_alert_due(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.conn
            .query_row(
                "SELECT min(next_attempt_at) FROM alert_outbox WHERE sink = ?1 AND state = 'pending'",
                [sink],
                |r| r.get(0),
            )
            .map_err(|e| self.err("reading the next due alert", e))
    }

    /// Records alert delivery outcomes, as `mark` does for transitions.
    pub fn mark_alerts(
        &mut self,
        sink: &str,
        marks: &[(i64, Mark)],
        now: i64,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = move |e| classify(&path, "recording alert deliveries", e);
        let tx = self.tx("recording alert deliveries")?;
        for (seq, mark) in marks {
            let (sql, args): (&str, Vec<rusqlite::types::Value>) = match mark {
                Mark::Delivered => (
                    "UPDATE alert_outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?3
                     WHERE sink = ?1 AND seq = ?2 AND state IN ('pending', 'dead')",
                    vec![now.into()],
                ),
                Mark::Retry {
                    next_attempt_at,
                    error,
                } => (
                    "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ?3,
                        last_error = ?4, first_failure_at = coalesce(first_failure_at, ?5)
                     WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
                    vec![(*next_attempt_at).into(), error.clone().into(), now.into()],
                ),
                Mark::Dead { error } => (
                    "UPDATE alert_outbox SET state = 'dead', attempts = attempts + 1, last_error = ?4,
                        done_at = ?3, first_failure_at = coalesce(first_failure_at, ?3)
                     WHERE sink = ?1 AND seq = ?2 AND state = 'pending'",
                    vec![now.into(), error.clone().into()],
                ),
            };
            let mut all: Vec<rusqlite::types::Value> = vec![sink.to_string().into(), (*seq).into()];
            all.extend(args);
            tx.prepare_cached(sql)
                .and_then(|mut q| q.execute(rusqlite::params_from_iter(all)))
                .map_err(&err)?;
        }
        tx.commit().map_err(&err)
    }

    /// Queues alert deliveries of operational sink `sink` again and lifts
    /// its pause. An unknown alert id queues nothing.
    pub fn redeliver_alerts(
        &mut self,
        sink: &str,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        let path = self.path.clone();
        let err = move |e| classify(&path, "queueing alerts again", e);
        let tx = self.tx("queueing alerts again")?;
        let (filter, arg): (&str, rusqlite::types::Value) = match what {
            Redeliver::Alert(id) => ("a.id = ?3", id.clone().into()),
            Redeliver::Dead => (
                "EXISTS (SELECT 1 FROM alert_outbox d WHERE d.sink = ?1 AND d.seq = a.seq AND d.state = 'dead') AND ?3 IS NULL",
                rusqlite::types::Value::Null,
            ),
            Redeliver::Since(since) => ("a.created_at >= ?3", (*since).into()),
            // Transitions never go to an operational sink.
            Redeliver::Event(_) => ("0 AND ?3 IS NULL", rusqlite::types::Value::Null),
        };
        let sql = format!(
            "INSERT INTO alert_outbox (sink, seq, created_at, next_attempt_at)
             SELECT ?1, a.seq, ?2, ?2 FROM alerts a
             WHERE (a.about IS NULL OR a.about <> ?1) AND {filter}
             ON CONFLICT (sink, seq) DO UPDATE SET state = 'pending', attempts = 0,
                created_at = ?2, next_attempt_at = ?2, first_failure_at = NULL,
                last_error = NULL, done_at = NULL"
        );
        let n = tx.execute(&sql, params![sink, now, arg]).map_err(&err)?;
        tx.execute(
            "UPDATE sinks SET paused_at = NULL, paused_reason = NULL WHERE name = ?1",
            [sink],
        )
        .map_err(&err)?;
        tx.commit().map_err(&err)?;
        Ok(n)
    }

    /// The alert ledger rows `f` asks for, newest first.
    pub fn alert_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached(
                "SELECT o.sink, a.type, o.state, o.attempts, o.created_at, o.next_attempt_at,
                        o.done_at, o.last_error, o.seq, a.id
                 FROM alert_outbox o JOIN alerts a ON a.seq = o.seq
                 WHERE (?1 IS NULL OR o.sink = ?1) AND (?2 IS NULL OR o.state = ?2)
                 ORDER BY o.seq DESC, o.sink LIMIT ?3",
            )
            .map_err(|e| self.err("reading the alert ledger", e))?;
        let rows = q
            .query_map(
                params![f.sink, f.state.map(|s| s.as_str()), f.limit as i64],
                |r| {
                    Ok(DeliveryRow {
                        sink: r.get(0)?,
                        order_id: 0,
                        status: r.get(1)?,
                        occurrence: 0,
                        state: DeliveryState::parse(&r.get::<_, String>(2)?),
                        attempts: r.get(3)?,
                        created_at: r.get(4)?,
                        next_attempt_at: r.get(5)?,
                        done_at: r.get(6)?,
                        last_error: r.get(7)?,
                        seq: r.get(8)?,
                        alert: Some(r.get(9)?),
                    })
                },
            )
            .map_err(|e| self.err("reading the alert ledger", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading the alert ledger", e))
    }

    /// Pending count, oldest pending creation time and dead count of an
    /// operational sink's alert deliveries.
    pub fn alert_stats(&self, sink: &str) -> Result<(u64, Option<i64>, u64), StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FILTER (WHERE state = 'pending'),
                        min(created_at) FILTER (WHERE state = 'pending'),
                        count(*) FILTER (WHERE state = 'dead')
                 FROM alert_outbox WHERE sink = ?1",
                [sink],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?.max(0) as u64,
                        r.get(1)?,
                        r.get::<_, i64>(2)?.max(0) as u64,
                    ))
                },
            )
            .map_err(|e| self.err("counting alert deliveries", e))
    }

    /// Deletes up to `limit` alert ledger rows in `state` done before
    /// `before` (of `sink`, or every sink). The alerts themselves stay:
    /// their count per key makes the next id.
    pub fn prune_alert_rows(
        &mut self,
        state: DeliveryState,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM alert_outbox WHERE (sink, seq) IN (
                    SELECT sink, seq FROM alert_outbox
                    WHERE state = ?1 AND done_at < ?2 AND (?3 IS NULL OR sink = ?3)
                    LIMIT ?4)",
                params![state.as_str(), before, sink, limit as i64],
            )
            .map_err(|e| self.err("deleting old alert ledger rows", e))
    }
}
