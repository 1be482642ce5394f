//! `store copy` for PostgreSQL: every table out in keyset-paged batches, or
//! in within one transaction, each batch one `INSERT ... FROM unnest(...)`
//! (see `store/copy.rs`).

use tokio::sync::mpsc;
use tokio_postgres::{Row, Transaction};

use super::PgStore;
use super::rows::transition;
use crate::store::StoreError;
use crate::store::copy::{BATCH, Batch, Counts, HeldRow, OrderRow, OutboxRow, SinkRow, aborted};

impl PgStore {
    /// Rows in each table.
    pub async fn counts(&self) -> Result<Counts, StoreError> {
        let client = self.client().await?;
        let r = client
            .query_one(
                "SELECT (SELECT count(*) FROM cursor), (SELECT count(*) FROM orders),
                        (SELECT count(*) FROM transitions), (SELECT count(*) FROM sinks),
                        (SELECT count(*) FROM outbox) + (SELECT count(*) FROM alert_outbox),
                        (SELECT count(*) FROM enrichment), (SELECT count(*) FROM alerts)",
                &[],
            )
            .await
            .map_err(self.err("counting rows"))?;
        let n = |i| r.get::<_, i64>(i).max(0) as u64;
        Ok(Counts {
            cursor: n(0) > 0,
            orders: n(1),
            transitions: n(2),
            sinks: n(3),
            outbox: n(4),
            held: n(5),
            alerts: n(6),
        })
    }

    /// Sends every table, batch by batch, from one snapshot.
    pub async fn export(&self, to: mpsc::Sender<Batch>) -> Result<Counts, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(self.err("reading the store to copy"))?;
        let mut out = Exporter {
            to,
            counts: Counts::default(),
            location: self.location.to_string(),
        };
        let err = self.err("reading the store to copy");
        if let Some(r) = tx
            .query_opt("SELECT position FROM cursor WHERE id = 1", &[])
            .await
            .map_err(&err)?
        {
            out.send(Batch::Cursor(r.get(0))).await?;
        }
        self.export_history(&tx, &mut out).await?;
        let held: Vec<HeldRow> = tx
            .query(
                "SELECT seq, order_id, held_at, next_attempt_at, attempts, last_error
                 FROM enrichment ORDER BY seq",
                &[],
            )
            .await
            .map_err(&err)?
            .iter()
            .map(held_row)
            .collect();
        for part in held.chunks(BATCH) {
            out.send(Batch::Held(part.to_vec())).await?;
        }
        let sinks: Vec<SinkRow> = tx
            .query(
                "SELECT name, paused_at, paused_reason, delivered_through FROM sinks ORDER BY name",
                &[],
            )
            .await
            .map_err(&err)?
            .iter()
            .map(sink_row)
            .collect();
        if !sinks.is_empty() {
            out.send(Batch::Sinks(sinks)).await?;
        }
        self.export_outbox(&tx, &mut out).await?;
        for batch in super::alert_copy::read(&tx).await.map_err(&err)? {
            out.send(batch).await?;
        }
        Ok(out.counts)
    }

    /// Orders and transitions, the big tables, page by page.
    async fn export_history(
        &self,
        tx: &Transaction<'_>,
        out: &mut Exporter,
    ) -> Result<(), StoreError> {
        let err = self.err("reading the store to copy");
        let mut after = i64::MIN;
        while let Some(rows) = page(
            tx,
            "SELECT order_id, certificate_id, status, updated_at FROM orders
             WHERE order_id > $1 ORDER BY order_id LIMIT $2",
            &after,
        )
        .await
        .map_err(&err)?
        {
            after = rows[rows.len() - 1].get(0);
            let batch = rows.iter().map(order_row).collect();
            out.send(Batch::Orders(batch)).await?;
        }
        let mut after = i64::MIN;
        while let Some(rows) = page(
            tx,
            "SELECT seq, order_id, status, occurrence, certificate_id, previous_status, seen_at, details
             FROM transitions WHERE seq > $1 ORDER BY seq LIMIT $2",
            &after,
        )
        .await
        .map_err(&err)?
        {
            after = rows[rows.len() - 1].get(0);
            let batch = rows.iter().map(|r| transition(r, 0)).collect();
            out.send(Batch::Transitions(batch)).await?;
        }
        Ok(())
    }

    /// The ledger, paged by `(sink, seq)`.
    async fn export_outbox(
        &self,
        tx: &Transaction<'_>,
        out: &mut Exporter,
    ) -> Result<(), StoreError> {
        let mut after = (String::new(), i64::MIN);
        loop {
            let rows = tx
                .query(
                    "SELECT sink, seq, order_id, state, attempts, created_at, next_attempt_at,
                            first_failure_at, last_error, done_at
                     FROM outbox WHERE (sink, seq) > ($1, $2) ORDER BY sink, seq LIMIT $3",
                    &[&after.0, &after.1, &(BATCH as i64)],
                )
                .await
                .map_err(self.err("reading the store to copy"))?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            after = (last.get(0), last.get(1));
            let batch = rows.iter().map(outbox_row).collect();
            out.send(Batch::Outbox(batch)).await?;
        }
    }

    /// Writes what arrives in one transaction (emptying the store first when
    /// `replace`), then moves the `seq` generator past the copied rows.
    pub async fn import(
        &self,
        mut from: mpsc::Receiver<Batch>,
        replace: bool,
    ) -> Result<Counts, StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("writing the copy"))?;
        if replace {
            tx.batch_execute("TRUNCATE alert_outbox, alerts, alert_sinks, outbox, sinks, enrichment, transitions, orders, cursor")
                .await
                .map_err(self.err("emptying the target"))?;
        }
        let mut counts = Counts::default();
        while let Some(batch) = from.recv().await {
            counts.add(&batch);
            write(&tx, batch)
                .await
                .map_err(self.err("writing the copy"))?;
        }
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('transitions', 'seq'),
                           coalesce((SELECT max(seq) FROM transitions), 0) + 1, false)",
            &[],
        )
        .await
        .map_err(self.err("moving the seq generator"))?;
        tx.execute(
            "SELECT setval(pg_get_serial_sequence('alerts', 'seq'),
                           coalesce((SELECT max(seq) FROM alerts), 0) + 1, false)",
            &[],
        )
        .await
        .map_err(self.err("moving the alert seq generator"))?;
        // Last, so its statement time-out does not bound the copy's writes.
        self.fence(&tx).await?;
        tx.commit().await.map_err(self.err("committing the copy"))?;
        Ok(counts)
    }
}

/// Sends batches and counts them.
struct Exporter {
    to: mpsc::Sender<Batch>,
    counts: Counts,
    location: String,
}

impl Exporter {
    async fn send(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.counts.add(&batch);
        self.to
            .send(batch)
            .await
            .map_err(|_| aborted(&self.location))
    }
}

/// One page of a keyset-paged query (`$1`: the last key, `$2`: the page
/// size); `None` when there is no more.
async fn page(
    tx: &Transaction<'_>,
    sql: &str,
    after: &i64,
) -> Result<Option<Vec<Row>>, tokio_postgres::Error> {
    let rows = tx.query(sql, &[after, &(BATCH as i64)]).await?;
    Ok((!rows.is_empty()).then_some(rows))
}

fn order_row(r: &Row) -> OrderRow {
    OrderRow {
        order_id: r.get(0),
        certificate_id: r.get(1),
        status: r.get(2),
        updated_at: r.get(3),
    }
}

fn held_row(r: &Row) -> HeldRow {
    HeldRow {
        seq: r.get(0),
        order_id: r.get(1),
        held_at: r.get(2),
        next_attempt_at: r.get(3),
        attempts: i64::from(r.get::<_, i32>(4)),
        last_error: r.get(5),
    }
}

fn sink_row(r: &Row) -> SinkRow {
    SinkRow {
        name: r.get(0),
        paused_at: r.get(1),
        paused_reason: r.get(2),
        delivered_through: r.get(3),
    }
}

fn outbox_row(r: &Row) -> OutboxRow {
    OutboxRow {
        sink: r.get(0),
        seq: r.get(1),
        order_id: r.get(2),
        state: r.get(3),
        attempts: i64::from(r.get::<_, i32>(4)),
        created_at: r.get(5),
        next_attempt_at: r.get(6),
        first_failure_at: r.get(7),
        last_error: r.get(8),
        done_at: r.get(9),
    }
}

async fn write(tx: &Transaction<'_>, batch: Batch) -> Result<(), tokio_postgres::Error> {
    match batch {
        Batch::Alerts(rows) => super::alert_copy::write_alerts(tx, &rows).await?,
        Batch::AlertOutbox(rows) => super::alert_copy::write_ledger(tx, &rows).await?,
        Batch::Cursor(c) => {
            tx.execute("INSERT INTO cursor (id, position) VALUES (1, $1)", &[&c])
                .await?;
        }
        Batch::Orders(rows) => {
            let ids: Vec<i64> = rows.iter().map(|o| o.order_id).collect();
            let certs: Vec<Option<i64>> = rows.iter().map(|o| o.certificate_id).collect();
            let statuses: Vec<&str> = rows.iter().map(|o| o.status.as_str()).collect();
            let updated: Vec<i64> = rows.iter().map(|o| o.updated_at).collect();
            tx.execute(
                "INSERT INTO orders (order_id, certificate_id, status, updated_at)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])",
                &[&ids, &certs, &statuses, &updated],
            )
            .await?;
        }
        Batch::Transitions(rows) => {
            let seqs: Vec<i64> = rows.iter().map(|t| t.seq).collect();
            let ids: Vec<i64> = rows.iter().map(|t| t.order_id).collect();
            let statuses: Vec<&str> = rows.iter().map(|t| t.status.as_str()).collect();
            let occurrences: Vec<i32> = rows
                .iter()
                .map(|t| i32::try_from(t.occurrence).unwrap_or(i32::MAX))
                .collect();
            let certs: Vec<Option<i64>> = rows.iter().map(|t| t.certificate_id).collect();
            let previous: Vec<Option<&str>> =
                rows.iter().map(|t| t.previous_status.as_deref()).collect();
            let seen: Vec<i64> = rows.iter().map(|t| t.seen_at).collect();
            let details: Vec<Option<&str>> = rows.iter().map(|t| t.details.as_deref()).collect();
            tx.execute(
                "INSERT INTO transitions (seq, order_id, status, occurrence, certificate_id, previous_status,
                    seen_at, details)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::integer[], $5::bigint[],
                                      $6::text[], $7::bigint[], $8::text[])",
                &[&seqs, &ids, &statuses, &occurrences, &certs, &previous, &seen, &details],
            )
            .await?;
        }
        Batch::Held(rows) => write_held(tx, &rows).await?,
        Batch::Sinks(rows) => {
            for s in rows {
                tx.execute(
                    "INSERT INTO sinks (name, paused_at, paused_reason, delivered_through) VALUES ($1, $2, $3, $4)",
                    &[&s.name, &s.paused_at, &s.paused_reason, &s.delivered_through],
                )
                .await?;
            }
        }
        Batch::Outbox(rows) => {
            let sinks: Vec<&str> = rows.iter().map(|o| o.sink.as_str()).collect();
            let seqs: Vec<i64> = rows.iter().map(|o| o.seq).collect();
            let ids: Vec<i64> = rows.iter().map(|o| o.order_id).collect();
            let states: Vec<&str> = rows.iter().map(|o| o.state.as_str()).collect();
            let attempts: Vec<i32> = rows
                .iter()
                .map(|o| i32::try_from(o.attempts).unwrap_or(i32::MAX))
                .collect();
            let created: Vec<i64> = rows.iter().map(|o| o.created_at).collect();
            let next: Vec<i64> = rows.iter().map(|o| o.next_attempt_at).collect();
            let first: Vec<Option<i64>> = rows.iter().map(|o| o.first_failure_at).collect();
            let errors: Vec<Option<&str>> = rows.iter().map(|o| o.last_error.as_deref()).collect();
            let done: Vec<Option<i64>> = rows.iter().map(|o| o.done_at).collect();
            tx.execute(
                "INSERT INTO outbox (sink, seq, order_id, state, attempts, created_at, next_attempt_at,
                    first_failure_at, last_error, done_at)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::int[],
                    $6::bigint[], $7::bigint[], $8::bigint[], $9::text[], $10::bigint[])",
                &[
                    &sinks, &seqs, &ids, &states, &attempts, &created, &next, &first, &errors, &done,
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Transitions held for their order's details.
async fn write_held(tx: &Transaction<'_>, rows: &[HeldRow]) -> Result<(), tokio_postgres::Error> {
    for h in rows {
        let attempts = i32::try_from(h.attempts).unwrap_or(i32::MAX);
        tx.execute(
            "INSERT INTO enrichment (seq, order_id, held_at, next_attempt_at, attempts, last_error)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &h.seq,
                &h.order_id,
                &h.held_at,
                &h.next_attempt_at,
                &attempts,
                &h.last_error,
            ],
        )
        .await?;
    }
    Ok(())
}
