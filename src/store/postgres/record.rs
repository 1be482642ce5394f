//! Recording one chunk of a window: dedupe, transitions, outbox rows and the
//! cursor, in one fenced transaction, with the same outcome as SQLite's
//! `record_chunk` (the shared suite checks it).
//!
//! SQLite pays per statement little and per row little, so it walks the
//! chunk order by order. Here every statement is a round trip, so a chunk
//! costs a fixed handful of them whatever its size: one lookup of the
//! chunk's known orders (and, for returns, of how often they had each
//! status), then the new transitions, the orders and the outbox rows as
//! `INSERT ... SELECT FROM unnest(arrays)` of at most [`STATEMENT_ROWS`]
//! rows each.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Transaction;

use super::PgStore;
use super::sightings::{Candidate, known_orders, number, plan};
use crate::store::{Chunk, Hold, RecordSummary, SAMPLE, SinkRoute, StoreError};
use crate::transition::{Dedupe, TransitionRow};

/// Rows per write statement. A leader's statements run under a
/// `statement_timeout` of a third of `failover` (see `fence.rs`): a whole
/// 10,000-order chunk in one statement could outlast a short `failover` on
/// a loaded server and fail the same chunk every cycle. Statements this
/// size keep each one short at the cost of a few more round trips.
pub(super) const STATEMENT_ROWS: usize = 1_000;

/// A recorded transition's key: order, status, occurrence.
type Key = (i64, Arc<str>, u32);

impl PgStore {
    pub(super) async fn record_chunk(
        &self,
        chunk: &Chunk,
        routes: &[SinkRoute],
    ) -> Result<RecordSummary, StoreError> {
        let changes = chunk.changes();
        let seen_ms = chunk.seen_at.timestamp_millis();
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting the cycle transaction"))?;
        self.fence(&tx).await?;
        prepare_routes(&tx, routes, seen_ms)
            .await
            .map_err(self.err("setting up the sinks' queues"))?;
        let known = known_orders(&tx, changes)
            .await
            .map_err(self.err("looking up orders"))?;
        let mut candidates = plan(changes, &known, chunk.dedupe);
        if chunk.dedupe == Dedupe::Change {
            number(&tx, &mut candidates)
                .await
                .map_err(self.err("counting returns"))?;
        }
        let mut seqs = insert_transitions(&tx, &candidates, seen_ms)
            .await
            .map_err(self.err("recording transitions"))?;
        upsert_orders(&tx, &candidates, seen_ms)
            .await
            .map_err(self.err("updating orders"))?;
        let mut summary = RecordSummary {
            seen: changes.len(),
            ..RecordSummary::default()
        };
        let mut outbox = Outbox::default();
        for c in candidates.iter().filter(|c| c.transition) {
            // In first-sighting mode a key recorded before (or earlier in
            // this chunk, A → B → A) got no row: no transition.
            let key = (
                c.change.order_id,
                Arc::clone(&c.change.status),
                c.occurrence,
            );
            if let Some(seq) = seqs.remove(&key) {
                count(&mut summary, &mut outbox, routes, seq, c, seen_ms);
            }
        }
        outbox
            .insert(&tx, seen_ms)
            .await
            .map_err(self.err("queueing deliveries"))?;
        summary.held = outbox
            .hold(&tx, &chunk.hold, seen_ms)
            .await
            .map_err(self.err("holding transitions for their order's details"))?;
        if let Some(cursor) = chunk.cursor {
            tx.execute(
                "INSERT INTO cursor (id, position) VALUES (1, $1)
                 ON CONFLICT (id) DO UPDATE SET position = greatest(cursor.position, excluded.position)",
                &[&cursor.timestamp_millis()],
            )
            .await
            .map_err(self.err("moving the cursor"))?;
        }
        tx.commit()
            .await
            .map_err(self.err("committing the cycle"))?;
        Ok(summary)
    }
}

/// Inserts the transitions in answer order (so `seq` follows it); returns
/// the seq of each one that was new, by key.
async fn insert_transitions(
    tx: &Transaction<'_>,
    candidates: &[Candidate<'_>],
    seen_ms: i64,
) -> Result<HashMap<Key, i64>, tokio_postgres::Error> {
    let new: Vec<&Candidate<'_>> = candidates.iter().filter(|c| c.transition).collect();
    let by_name: HashMap<&str, &Arc<str>> = new
        .iter()
        .map(|c| (&*c.change.status, &c.change.status))
        .collect();
    let mut out = HashMap::with_capacity(new.len());
    // Statements run one after the other and number their rows in answer
    // order, so seqs follow the answer across them too.
    for part in new.chunks(STATEMENT_ROWS) {
        let orders: Vec<i64> = part.iter().map(|c| c.change.order_id).collect();
        let statuses: Vec<&str> = part.iter().map(|c| &*c.change.status).collect();
        let occurrences: Vec<i32> = part
            .iter()
            .map(|c| i32::try_from(c.occurrence).unwrap_or(i32::MAX))
            .collect();
        let certs: Vec<Option<i64>> = part.iter().map(|c| c.change.certificate_id).collect();
        let previous: Vec<Option<&str>> = part.iter().map(|c| c.previous.as_deref()).collect();
        let rows = tx
            .query(
                "INSERT INTO transitions (order_id, status, occurrence, certificate_id, previous_status, seen_at)
                 SELECT o, s, k, c, p, $6
                 FROM unnest($1::bigint[], $2::text[], $3::integer[], $4::bigint[], $5::text[])
                      WITH ORDINALITY AS u (o, s, k, c, p, n)
                 ORDER BY n
                 ON CONFLICT (order_id, status, occurrence) DO NOTHING
                 RETURNING seq, order_id, status, occurrence",
                &[&orders, &statuses, &occurrences, &certs, &previous, &seen_ms],
            )
            .await?;
        for r in rows {
            let status: &str = r.get(2);
            let name = by_name
                .get(status)
                .map(|n| Arc::clone(n))
                .unwrap_or_else(|| Arc::from(status));
            let occurrence = r.get::<_, i32>(3).max(0) as u32;
            out.insert((r.get::<_, i64>(1), name, occurrence), r.get::<_, i64>(0));
        }
    }
    Ok(out)
}

/// Sets each order's last status (and a certificate id once known).
async fn upsert_orders(
    tx: &Transaction<'_>,
    candidates: &[Candidate<'_>],
    seen_ms: i64,
) -> Result<(), tokio_postgres::Error> {
    // One row per order (an upsert may touch a row once per statement): its
    // last status, and its last certificate id given in the chunk.
    let mut last: HashMap<i64, (Option<i64>, &str)> = HashMap::new();
    for c in candidates {
        let entry = last.entry(c.change.order_id).or_insert((None, ""));
        entry.0 = c.change.certificate_id.or(entry.0);
        entry.1 = &c.change.status;
    }
    if last.is_empty() {
        return Ok(());
    }
    // In key order: the primary key is then filled left to right, not at
    // random places (a chunk is usually sorted; the map is not).
    let mut sorted: Vec<(i64, (Option<i64>, &str))> = last.into_iter().collect();
    sorted.sort_unstable_by_key(|(id, _)| *id);
    for part in sorted.chunks(STATEMENT_ROWS) {
        let ids: Vec<i64> = part.iter().map(|(id, _)| *id).collect();
        let certs: Vec<Option<i64>> = part.iter().map(|(_, (cert, _))| *cert).collect();
        let statuses: Vec<&str> = part.iter().map(|(_, (_, status))| *status).collect();
        tx.execute(
            "INSERT INTO orders (order_id, certificate_id, status, updated_at)
             SELECT o, c, s, $4 FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u (o, c, s)
             ON CONFLICT (order_id) DO UPDATE SET
                certificate_id = coalesce(excluded.certificate_id, orders.certificate_id),
                status = excluded.status, updated_at = excluded.updated_at",
            &[&ids, &certs, &statuses, &seen_ms],
        )
        .await?;
    }
    Ok(())
}

/// Outbox rows of row-per-event sinks, written in one statement, and the
/// new transitions (for holding them for their order's details).
#[derive(Default)]
struct Outbox {
    sinks: Vec<String>,
    seqs: Vec<i64>,
    orders: Vec<i64>,
    new: Vec<(i64, i64, Arc<str>)>,
}

impl Outbox {
    /// Holds the new transitions `hold` takes until their order is looked
    /// up, in the recording transaction; returns how many.
    async fn hold(
        &self,
        tx: &Transaction<'_>,
        hold: &Hold,
        seen_ms: i64,
    ) -> Result<u64, tokio_postgres::Error> {
        let (seqs, orders): (Vec<i64>, Vec<i64>) = self
            .new
            .iter()
            .filter(|(_, _, status)| hold.takes(status))
            .map(|(seq, order, _)| (*seq, *order))
            .unzip();
        for (seqs, orders) in seqs
            .chunks(STATEMENT_ROWS)
            .zip(orders.chunks(STATEMENT_ROWS))
        {
            tx.execute(
                "INSERT INTO enrichment (seq, order_id, held_at, next_attempt_at)
                 SELECT s, o, $3, $3 FROM unnest($1::bigint[], $2::bigint[]) AS u (s, o)",
                &[&seqs, &orders, &seen_ms],
            )
            .await?;
        }
        Ok(seqs.len() as u64)
    }

    async fn insert(
        &self,
        tx: &Transaction<'_>,
        seen_ms: i64,
    ) -> Result<(), tokio_postgres::Error> {
        let parts = self
            .sinks
            .chunks(STATEMENT_ROWS)
            .zip(self.seqs.chunks(STATEMENT_ROWS))
            .zip(self.orders.chunks(STATEMENT_ROWS));
        for ((sinks, seqs), orders) in parts {
            tx.execute(
                "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
                 SELECT k, s, o, $4, $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u (k, s, o)",
                &[&sinks, &seqs, &orders, &seen_ms],
            )
            .await?;
        }
        Ok(())
    }
}

/// Queues a new transition for every sink that takes it (a row for
/// row-per-event sinks; in-order sinks find it after their cursor) and
/// counts it in the summary.
fn count(
    summary: &mut RecordSummary,
    outbox: &mut Outbox,
    routes: &[SinkRoute],
    seq: i64,
    c: &Candidate<'_>,
    seen_ms: i64,
) {
    let status: &str = &c.change.status;
    outbox
        .new
        .push((seq, c.change.order_id, Arc::clone(&c.change.status)));
    for route in routes.iter().filter(|r| r.wants(status)) {
        summary.queued += 1;
        if !route.by_cursor {
            outbox.sinks.push(route.name.clone());
            outbox.seqs.push(seq);
            outbox.orders.push(c.change.order_id);
        }
    }
    *summary.new_by_status.entry(status.to_string()).or_default() += 1;
    if summary.sample.len() < SAMPLE {
        summary.sample.push(TransitionRow {
            seq,
            order_id: c.change.order_id,
            status: status.to_string(),
            occurrence: c.occurrence,
            certificate_id: c.change.certificate_id,
            previous_status: c.previous.as_deref().map(str::to_string),
            seen_at: seen_ms,
            details: None,
        });
    }
}

/// Sets up every sink's queue before transitions are added, as SQLite's
/// `prepare_routes` does: a new in-order sink starts after the newest
/// transition; a sink that was in-order and now keeps rows gets rows for
/// what was still after its cursor.
///
/// An in-order sink that has its cursor is only read here, never written.
/// An upsert of its row (even one that changes nothing) holds the row's
/// lock until the chunk commits, so the sink's own cursor moves (`mark`)
/// waited for every chunk being recorded: 36 ms per file batch on average
/// through a 1,000,000-order catch-up, and a dead row version per chunk.
pub(super) async fn prepare_routes(
    tx: &Transaction<'_>,
    routes: &[SinkRoute],
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    for route in routes {
        if route.by_cursor {
            if super::rows::cursor_of(tx, &route.name).await?.is_some() {
                continue;
            }
            tx.execute(
                "INSERT INTO sinks (name, delivered_through)
                 VALUES ($1, (SELECT coalesce(max(seq), 0) FROM transitions))
                 ON CONFLICT (name) DO UPDATE SET
                    delivered_through = coalesce(sinks.delivered_through, excluded.delivered_through)",
                &[&route.name],
            )
            .await?;
            continue;
        }
        let Some(cursor) = super::rows::cursor_of(tx, &route.name).await? else {
            continue;
        };
        tx.execute(
            "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
             SELECT $1, seq, order_id, $2, $2 FROM transitions
             WHERE seq > $3 AND ($4::text[] IS NULL OR status = ANY($4))
             ON CONFLICT (sink, seq) DO NOTHING",
            &[&route.name, &now, &cursor, &route.statuses],
        )
        .await?;
        tx.execute(
            "UPDATE sinks SET delivered_through = NULL WHERE name = $1",
            &[&route.name],
        )
        .await?;
    }
    Ok(())
}
