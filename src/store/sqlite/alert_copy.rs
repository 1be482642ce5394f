//! `store copy` of the alerts and their ledger on SQLite (see
//! `store/copy.rs`): alerts keep their `seq` and id, so a copied store
//! counts the next alert of a key on from where the old one stopped.

use rusqlite::{Connection, params};

use super::portable::{Send, send_in_batches};
use crate::store::StoreError;
use crate::store::copy::{AlertRow, Batch, OutboxRow};

/// Sends the alerts, then their ledger. Alerts are few (one per dead
/// delivery, pause or outage), so each table is read at once and sent in
/// batches.
pub(super) fn export(
    conn: &Connection,
    send: &mut Send<'_>,
) -> rusqlite::Result<Result<(), StoreError>> {
    let alerts = conn
        .prepare("SELECT seq, id, key, type, about, data, created_at FROM alerts ORDER BY seq")?
        .query_map([], |r| {
            Ok(AlertRow {
                seq: r.get(0)?,
                id: r.get(1)?,
                key: r.get(2)?,
                kind: r.get(3)?,
                about: r.get(4)?,
                data: r.get(5)?,
                created_at: r.get(6)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    if let Err(e) = send_in_batches(&alerts, Batch::Alerts, send) {
        return Ok(Err(e));
    }
    let rows = conn
        .prepare(
            "SELECT sink, seq, state, attempts, created_at, next_attempt_at, first_failure_at,
                    last_error, done_at
             FROM alert_outbox ORDER BY sink, seq",
        )?
        .query_map([], |r| {
            Ok(OutboxRow {
                sink: r.get(0)?,
                seq: r.get(1)?,
                order_id: 0,
                state: r.get(2)?,
                attempts: r.get(3)?,
                created_at: r.get(4)?,
                next_attempt_at: r.get(5)?,
                first_failure_at: r.get(6)?,
                last_error: r.get(7)?,
                done_at: r.get(8)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(send_in_batches(&rows, Batch::AlertOutbox, send))
}

pub(super) fn write_alerts(
    tx: &rusqlite::Transaction<'_>,
    rows: &[AlertRow],
) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO alerts (seq, id, key, type, about, data, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for a in rows {
        q.execute(params![
            a.seq,
            a.id,
            a.key,
            a.kind,
            a.about,
            a.data,
            a.created_at
        ])?;
    }
    Ok(())
}

pub(super) fn write_ledger(
    tx: &rusqlite::Transaction<'_>,
    rows: &[OutboxRow],
) -> rusqlite::Result<()> {
    let mut q = tx.prepare_cached(
        "INSERT INTO alert_outbox (sink, seq, state, attempts, created_at, next_attempt_at,
            first_failure_at, last_error, done_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for o in rows {
        q.execute(params![
            o.sink,
            o.seq,
            o.state,
            o.attempts,
            o.created_at,
            o.next_attempt_at,
            o.first_failure_at,
            o.last_error,
            o.done_at
        ])?;
    }
    Ok(())
}
