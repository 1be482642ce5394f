//! `store copy` for SQLite: every table out in batches, or in within one
//! transaction (see `store/copy.rs`). Runs on the blocking pool with the
//! writing connection; batches cross to the async side over a channel.

use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use super::db::classify;
use super::{SqliteStore, on};
use crate::store::StoreError;
use crate::store::copy::{BATCH, Batch, Counts, HeldRow, OrderRow, OutboxRow, SinkRow, aborted};
use crate::transition::TransitionRow;

impl SqliteStore {
    /// Rows in each table.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        on(self.writer.clone(), |db| {
            let path = db.path.clone();
            let count = |sql: &str| -> Result<u64, StoreError> {
                db.conn
                    .query_row(sql, [], |r| r.get::<_, i64>(0))
                    .map(|n| n as u64)
                    .map_err(|e| classify(&path, "counting rows", e))
            };
            Ok(Counts {
                cursor: count("SELECT count(*) FROM cursor")? > 0,
                orders: count("SELECT count(*) FROM orders")?,
                transitions: count("SELECT count(*) FROM transitions")?,
                sinks: count("SELECT count(*) FROM sinks")?,
                outbox: count(
                    "SELECT (SELECT count(*) FROM outbox) + (SELECT count(*) FROM alert_outbox)",
                )?,
                held: count("SELECT count(*) FROM enrichment")?,
                alerts: count("SELECT count(*) FROM alerts")?,
            })
        })
        .await
    }

    /// Sends every table, batch by batch.
    pub async fn export(&self, to: mpsc::Sender<Batch>) -> Result<Counts, StoreError> {
        on(self.writer.clone(), move |db| {
            let path = db.path.clone();
            let location = path.display().to_string();
            let mut counts = Counts::default();
            let mut send = |batch: Batch| {
                counts.add(&batch);
                to.blocking_send(batch).map_err(|_| aborted(&location))
            };
            let err = |e| classify(&path, "reading the store to copy", e);
            let cursor: Option<i64> = db
                .conn
                .query_row("SELECT position FROM cursor WHERE id = 1", [], |r| r.get(0))
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(err)?;
            if let Some(c) = cursor {
                send(Batch::Cursor(c))?;
            }
            export_orders(&db.conn, &mut send).map_err(err)??;
            export_transitions(&db.conn, &mut send).map_err(err)??;
            export_held(&db.conn, &mut send).map_err(err)??;
            let mut q = db
                .conn
                .prepare("SELECT name, paused_at, paused_reason, delivered_through FROM sinks ORDER BY name")
                .map_err(err)?;
            let sinks = q
                .query_map([], |r| {
                    Ok(SinkRow {
                        name: r.get(0)?,
                        paused_at: r.get(1)?,
                        paused_reason: r.get(2)?,
                        delivered_through: r.get(3)?,
                    })
                })
                .map_err(err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(err)?;
            if !sinks.is_empty() {
                send(Batch::Sinks(sinks))?;
            }
            export_outbox(&db.conn, &mut send).map_err(err)??;
            super::alert_copy::export(&db.conn, &mut send).map_err(err)??;
            Ok(counts)
        })
        .await
    }

    /// Writes what arrives in one transaction (emptying the store first when
    /// `replace`).
    pub async fn import(
        &self,
        mut from: mpsc::Receiver<Batch>,
        replace: bool,
    ) -> Result<Counts, StoreError> {
        on(self.writer.clone(), move |db| {
            let path = db.path.clone();
            let err = |e| classify(&path, "writing the copy", e);
            let tx = db
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(err)?;
            if replace {
                tx.execute_batch(
                    "DELETE FROM alert_outbox; DELETE FROM alerts; DELETE FROM alert_sinks;
                     DELETE FROM outbox; DELETE FROM sinks; DELETE FROM enrichment;
                     DELETE FROM transitions; DELETE FROM orders; DELETE FROM cursor;",
                )
                .map_err(err)?;
            }
            let mut counts = Counts::default();
            while let Some(batch) = from.blocking_recv() {
                counts.add(&batch);
                write(&tx, batch).map_err(err)?;
            }
            tx.commit().map_err(err)?;
            Ok(counts)
        })
        .await
    }
}

pub(super) type Send<'a> = dyn FnMut(Batch) -> Result<(), StoreError> + 'a;

fn export_orders(
    conn: &Connection,
    send: &mut Send<'_>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let mut q = conn.prepare(
        "SELECT order_id, certificate_id, status, updated_at FROM orders WHERE order_id > ?1 ORDER BY order_id LIMIT ?2",
    )?;
    let mut after = i64::MIN;
    loop {
        let rows = q
            .query_map(params![after, BATCH as i64], |r| {
                Ok(OrderRow {
                    order_id: r.get(0)?,
                    certificate_id: r.get(1)?,
                    status: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(Ok(()));
        };
        after = last.order_id;
        if let Err(e) = send(Batch::Orders(rows)) {
            return Ok(Err(e));
        }
    }
}

fn export_transitions(
    conn: &Connection,
    send: &mut Send<'_>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let mut q = conn.prepare(
        "SELECT seq, order_id, status, occurrence, certificate_id, previous_status, seen_at, details
         FROM transitions WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let mut after = i64::MIN;
    loop {
        let rows = q
            .query_map(params![after, BATCH as i64], |r| {
                Ok(TransitionRow {
                    seq: r.get(0)?,
                    order_id: r.get(1)?,
                    status: r.get(2)?,
                    occurrence: r.get(3)?,
                    certificate_id: r.get(4)?,
                    previous_status: r.get(5)?,
                    seen_at: r.get(6)?,
                    details: r.get(7)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(Ok(()));
        };
        after = last.seq;
        if let Err(e) = send(Batch::Transitions(rows)) {
            return Ok(Err(e));
        }
    }
}

/// The held transitions: a handful, at most a backlog of lookups.
fn export_held(conn: &Connection, send: &mut Send<'_>) -> rusqlite::Result<Result<(), StoreError>> {
    let mut q = conn.prepare(
        "SELECT seq, order_id, held_at, next_attempt_at, attempts, last_error
         FROM enrichment ORDER BY seq",
    )?;
    let rows = q
        .query_map([], |r| {
            Ok(HeldRow {
                seq: r.get(0)?,
                order_id: r.get(1)?,
                held_at: r.get(2)?,
                next_attempt_at: r.get(3)?,
                attempts: r.get(4)?,
                last_error: r.get(5)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(send_in_batches(&rows, Batch::Held, send))
}

/// Sends `rows` in batches of [`BATCH`], each wrapped by `wrap`; stops at
/// the first the receiver refuses.
pub(super) fn send_in_batches<T: Clone>(
    rows: &[T],
    wrap: fn(Vec<T>) -> Batch,
    send: &mut Send<'_>,
) -> Result<(), StoreError> {
    rows.chunks(BATCH)
        .try_for_each(|part| send(wrap(part.to_vec())))
}

fn export_outbox(
    conn: &Connection,
    send: &mut Send<'_>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let mut q = conn.prepare(
        "SELECT sink, seq, order_id, state, attempts, created_at, next_attempt_at, first_failure_at,
                last_error, done_at
         FROM outbox WHERE (sink, seq) > (?1, ?2) ORDER BY sink, seq LIMIT ?3",
    )?;
    let mut after = (String::new(), i64::MIN);
    loop {
        let rows = q
            .query_map(params![after.0, after.1, BATCH as i64], |r| {
                Ok(OutboxRow {
                    sink: r.get(0)?,
                    seq: r.get(1)?,
                    order_id: r.get(2)?,
                    state: r.get(3)?,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    next_attempt_at: r.get(6)?,
                    first_failure_at: r.get(7)?,
                    last_error: r.get(8)?,
                    done_at: r.get(9)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(Ok(()));
        };
        after = (last.sink.clone(), last.seq);
        if let Err(e) = send(Batch::Outbox(rows)) {
            return Ok(Err(e));
        }
    }
}

fn write(tx: &rusqlite::Transaction<'_>, batch: Batch) -> rusqlite::Result<()> {
    match batch {
        Batch::Cursor(c) => {
            tx.execute("INSERT INTO cursor (id, position) VALUES (1, ?1)", [c])?;
        }
        Batch::Orders(rows) => {
            let mut q = tx.prepare_cached(
                "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for o in rows {
                q.execute(params![
                    o.order_id,
                    o.certificate_id,
                    o.status,
                    o.updated_at
                ])?;
            }
        }
        Batch::Transitions(rows) => {
            let mut q = tx.prepare_cached(
                "INSERT INTO transitions (seq, order_id, status, occurrence, certificate_id, previous_status,
                    seen_at, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for t in rows {
                q.execute(params![
                    t.seq,
                    t.order_id,
                    t.status,
                    t.occurrence,
                    t.certificate_id,
                    t.previous_status,
                    t.seen_at,
                    t.details
                ])?;
            }
        }
        Batch::Held(rows) => write_held(tx, &rows)?,
        Batch::Alerts(rows) => super::alert_copy::write_alerts(tx, &rows)?,
        Batch::AlertOutbox(rows) => super::alert_copy::write_ledger(tx, &rows)?,
        Batch::Sinks(rows) => {
            let mut q = tx.prepare_cached(
                "INSERT INTO sinks (name, paused_at, paused_reason, delivered_through) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for s in rows {
                q.execute(params![
                    s.name,
                    s.paused_at,
                    s.paused_reason,
                    s.delivered_through
                ])?;
            }
        }
        Batch::Outbox(rows) => {
            let mut q = tx.prepare_cached(
                "INSERT INTO outbox (sink, seq, order_id, state, attempts, created_at, next_attempt_at,
                    first_failure_at, last_error, done_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            for o in rows {
                q.execute(params![
                    o.sink,
                    o.seq,
                    o.order_id,
                    o.state,
                    o.attempts,
                    o.created_at,
                    o.next_attempt_at,
                    o.first_failure_at,
                    o.last_error,
                    o.done_at
                ])?;
            }
        }
    }
    Ok(())
}

/// Transitions held for their order's details.
fn write_held(tx: &rusqlite::Transaction<'_>, rows: &[HeldRow]) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO enrichment (seq, order_id, held_at, next_attempt_at, attempts, last_error)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for h in rows {
        q.execute(params![
            h.seq,
            h.order_id,
            h.held_at,
            h.next_attempt_at,
            h.attempts,
            h.last_error
        ])?;
    }
    Ok(())
}
