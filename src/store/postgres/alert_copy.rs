//! `store copy` of the alerts and their ledger on PostgreSQL (see
//! `store/copy.rs` and SQLite's `alert_copy.rs`).

use tokio_postgres::Transaction;

use crate::store::copy::{AlertRow, BATCH, Batch, OutboxRow};

/// The alerts, then their ledger, as batches. Alerts are few, so each
/// table is read at once (in the export's snapshot).
pub(super) async fn read(tx: &Transaction<'_>) -> Result<Vec<Batch>, tokio_postgres::Error> {
    let alerts: Vec<AlertRow> = tx
        .query(
            "SELECT seq, id, key, type, about, data, created_at FROM alerts ORDER BY seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| AlertRow {
            seq: r.get(0),
            id: r.get(1),
            key: r.get(2),
            kind: r.get(3),
            about: r.get(4),
            data: r.get(5),
            created_at: r.get(6),
        })
        .collect();
    let ledger: Vec<OutboxRow> = tx
        .query(
            "SELECT sink, seq, state, attempts, created_at, next_attempt_at, first_failure_at,
                    last_error, done_at
             FROM alert_outbox ORDER BY sink, seq",
            &[],
        )
        .await?
        .iter()
        .map(|r| OutboxRow {
            sink: r.get(0),
            seq: r.get(1),
            order_id: 0,
            state: r.get(2),
            attempts: i64::from(r.get::<_, i32>(3)),
            created_at: r.get(4),
            next_attempt_at: r.get(5),
            first_failure_at: r.get(6),
            last_error: r.get(7),
            done_at: r.get(8),
        })
        .collect();
    let mut out: Vec<Batch> = alerts
        .chunks(BATCH)
        .map(|c| Batch::Alerts(c.to_vec()))
        .collect();
    out.extend(ledger.chunks(BATCH).map(|c| Batch::AlertOutbox(c.to_vec())));
    Ok(out)
}

pub(super) async fn write_alerts(
    tx: &Transaction<'_>,
    rows: &[AlertRow],
) -> Result<(), tokio_postgres::Error> {
    let q = tx
        .prepare(
            "INSERT INTO alerts (seq, id, key, type, about, data, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .await?;
    for a in rows {
        tx.execute(
            &q,
            &[
                &a.seq,
                &a.id,
                &a.key,
                &a.kind,
                &a.about,
                &a.data,
                &a.created_at,
            ],
        )
        .await?;
    }
    Ok(())
}

pub(super) async fn write_ledger(
    tx: &Transaction<'_>,
    rows: &[OutboxRow],
) -> Result<(), tokio_postgres::Error> {
    let q = tx
        .prepare(
            "INSERT INTO alert_outbox (sink, seq, state, attempts, created_at, next_attempt_at,
                first_failure_at, last_error, done_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    for o in rows {
        let attempts = i32::try_from(o.attempts).unwrap_or(i32::MAX);
        tx.execute(
            &q,
            &[
                &o.sink,
                &o.seq,
                &o.state,
                &attempts,
                &o.created_at,
                &o.next_attempt_at,
                &o.first_failure_at,
                &o.last_error,
                &o.done_at,
            ],
        )
        .await?;
    }
    Ok(())
}
