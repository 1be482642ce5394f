//! Recording one window's answer: dedupe, transitions, outbox rows and the
//! cursor, in one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use rusqlite::{OptionalExtension, params};

use super::Db;
use super::db::classify;
use super::rows::{cursor_of, status_clause};
use crate::store::{RecordSummary, SAMPLE, SinkRoute, StoreError};
use crate::transition::{OrderChange, TransitionRow};

impl Db {
    /// The cursor: every change up to this instant has been seen.
    pub fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = self
            .conn
            .query_row("SELECT position FROM cursor WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err("reading the cursor", e))?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Sets the cursor to `to`, even backwards (see `Store::rewind_cursor`).
    pub fn rewind_cursor(&mut self, to: DateTime<Utc>) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO cursor (id, position) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET position = excluded.position",
                [to.timestamp_millis()],
            )
            .map(|_| ())
            .map_err(|e| self.err("setting the cursor back", e))
    }

    /// Records a window's orders. New `(order_id, status)` pairs become
    /// transitions queued for every sink that wants them; the cursor moves
    /// to `cursor` (never backwards). All or nothing.
    pub fn record_window(
        &mut self,
        changes: &[OrderChange],
        cursor: DateTime<Utc>,
        seen_at: DateTime<Utc>,
        routes: &[SinkRoute],
    ) -> Result<RecordSummary, StoreError> {
        self.record_chunk(changes, Some(cursor), seen_at, routes)
    }

    /// Records one chunk of a window in one transaction; only the window's
    /// last chunk carries the `cursor`. A crash between chunks re-fetches the
    /// window (the cursor has not moved) and the chunks already recorded
    /// dedupe: work repeats, nothing is lost. Chunks let the sinks start on a
    /// huge answer while the rest is still being recorded.
    ///
    /// Transitions are queued as outbox rows for row-per-event sinks; for
    /// in-order sinks being after their cursor is enough (see `route`).
    pub fn record_chunk(
        &mut self,
        changes: &[OrderChange],
        cursor: Option<DateTime<Utc>>,
        seen_at: DateTime<Utc>,
        routes: &[SinkRoute],
    ) -> Result<RecordSummary, StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let seen_ms = seen_at.timestamp_millis();
        let mut summary = RecordSummary {
            seen: changes.len(),
            ..RecordSummary::default()
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the cycle transaction"))?;
        {
            prepare_routes(&tx, routes, seen_ms).map_err(err("setting up the sinks' queues"))?;
            let known = KnownStatuses::load(&tx, changes).map_err(err("looking up orders"))?;
            let mut insert_transition = tx
                .prepare_cached(
                    "INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (order_id, status) DO NOTHING",
                )
                .map_err(err("preparing the transition insert"))?;
            let mut upsert_order = tx
                .prepare_cached(
                    "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (order_id) DO UPDATE SET
                        certificate_id = coalesce(excluded.certificate_id, certificate_id),
                        status = excluded.status, updated_at = excluded.updated_at",
                )
                .map_err(err("preparing the order update"))?;
            let mut lookup = known;
            let mut fresh = FreshOrders::default();
            for change in changes {
                let status: &str = &change.status;
                let previous = lookup
                    .previous(&tx, change.order_id)
                    .map_err(err("looking up an order"))?;
                if previous.as_deref() == Some(status) {
                    // The common re-poll case: nothing changed since last time.
                    continue;
                }
                lookup.set(change.order_id, &change.status);
                if previous.is_none() {
                    // An order never seen: its transition cannot exist yet.
                    // Such rows (most of a first catch-up) go in many at a time.
                    fresh.rows.push(change);
                    if fresh.rows.len() == FreshOrders::BATCH {
                        fresh
                            .flush(&tx, seen_ms, routes, &mut summary)
                            .map_err(err("recording new orders"))?;
                    }
                    continue;
                }
                // Keep recording order: everything before this goes in first.
                fresh
                    .flush(&tx, seen_ms, routes, &mut summary)
                    .map_err(err("recording new orders"))?;
                let inserted = insert_transition
                    .execute(params![
                        change.order_id,
                        status,
                        change.certificate_id,
                        previous,
                        seen_ms
                    ])
                    .map_err(err("recording a transition"))?;
                // Read before the order upsert, which sets its own rowid.
                let seq = tx.last_insert_rowid();
                upsert_order
                    .execute(params![
                        change.order_id,
                        change.certificate_id,
                        status,
                        seen_ms
                    ])
                    .map_err(err("updating an order"))?;
                if inserted == 0 {
                    // A status this order had before (A → B → A): not a new
                    // transition, but the next one's previous_status is A.
                    continue;
                }
                queue(
                    &tx,
                    routes,
                    seq,
                    change,
                    previous.as_deref(),
                    seen_ms,
                    &mut summary,
                )
                .map_err(err("queueing a delivery"))?;
            }
            fresh
                .flush(&tx, seen_ms, routes, &mut summary)
                .map_err(err("recording new orders"))?;
            if let Some(cursor) = cursor {
                tx.execute(
                    "INSERT INTO cursor (id, position) VALUES (1, ?1)
                     ON CONFLICT (id) DO UPDATE SET position = max(position, excluded.position)",
                    [cursor.timestamp_millis()],
                )
                .map_err(err("moving the cursor"))?;
            }
        }
        tx.commit().map_err(err("committing the cycle"))?;
        Ok(summary)
    }
}

/// Queues a new transition for every sink that takes it (an outbox row for
/// row-per-event sinks; in-order sinks find it after their cursor) and
/// counts it.
fn queue(
    tx: &rusqlite::Transaction<'_>,
    routes: &[SinkRoute],
    seq: i64,
    change: &OrderChange,
    previous: Option<&str>,
    seen_ms: i64,
    summary: &mut RecordSummary,
) -> rusqlite::Result<()> {
    let status: &str = &change.status;
    for route in routes.iter().filter(|r| r.wants(status)) {
        summary.queued += 1;
        if !route.by_cursor {
            let mut insert = tx.prepare_cached(
                "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at) VALUES (?1, ?2, ?3, ?4, ?4)",
            )?;
            insert.execute(params![route.name, seq, change.order_id, seen_ms])?;
        }
    }
    match summary.new_by_status.get_mut(status) {
        Some(n) => *n += 1,
        None => {
            summary.new_by_status.insert(status.to_string(), 1);
        }
    }
    if summary.sample.len() < SAMPLE {
        summary.sample.push(TransitionRow {
            seq,
            order_id: change.order_id,
            status: status.to_string(),
            certificate_id: change.certificate_id,
            previous_status: previous.map(str::to_string),
            seen_at: seen_ms,
        });
    }
    Ok(())
}

/// Orders seen for the first time, inserted [`FreshOrders::BATCH`] at a time
/// with multi-row statements: a first catch-up of a large account is almost
/// all of these, and one statement per row is most of its cost.
#[derive(Default)]
struct FreshOrders<'a> {
    rows: Vec<&'a OrderChange>,
}

impl FreshOrders<'_> {
    const BATCH: usize = 64;

    fn flush(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        seen_ms: i64,
        routes: &[SinkRoute],
        summary: &mut RecordSummary,
    ) -> rusqlite::Result<()> {
        let n = self.rows.len();
        if n == 0 {
            return Ok(());
        }
        let mut transitions = tx.prepare_cached(&rows_sql(
            "INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at) VALUES ",
            "(?, ?, ?, NULL, ?)",
            n,
        ))?;
        // Bound in place: no value or string is allocated per row.
        for (i, c) in self.rows.iter().enumerate() {
            transitions.raw_bind_parameter(i * 4 + 1, c.order_id)?;
            transitions.raw_bind_parameter(i * 4 + 2, &*c.status)?;
            transitions.raw_bind_parameter(i * 4 + 3, c.certificate_id)?;
            transitions.raw_bind_parameter(i * 4 + 4, seen_ms)?;
        }
        transitions.raw_execute()?;
        // A multi-row insert into a rowid table numbers its rows
        // consecutively; checked, so a surprise can never misattribute.
        let last = tx.last_insert_rowid();
        let first = last - (n as i64 - 1);
        let consecutive: bool = tx
            .prepare_cached(
                "SELECT count(*) = 2 FROM transitions WHERE (seq = ?1 AND order_id = ?2) OR (seq = ?3 AND order_id = ?4)",
            )?
            .query_row(
                params![first, self.rows[0].order_id, last, self.rows[n - 1].order_id],
                |r| r.get(0),
            )?;
        let mut orders = tx.prepare_cached(&rows_sql(
            "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES ",
            "(?, ?, ?, ?)",
            n,
        ))?;
        for (i, c) in self.rows.iter().enumerate() {
            orders.raw_bind_parameter(i * 4 + 1, c.order_id)?;
            orders.raw_bind_parameter(i * 4 + 2, c.certificate_id)?;
            orders.raw_bind_parameter(i * 4 + 3, &*c.status)?;
            orders.raw_bind_parameter(i * 4 + 4, seen_ms)?;
        }
        orders.raw_execute()?;
        for (i, c) in self.rows.iter().enumerate() {
            let seq = if consecutive {
                first + i as i64
            } else {
                tx.query_row(
                    "SELECT seq FROM transitions WHERE order_id = ?1 AND status = ?2",
                    params![c.order_id, &*c.status],
                    |r| r.get(0),
                )?
            };
            queue(tx, routes, seq, c, None, seen_ms, summary)?;
        }
        self.rows.clear();
        Ok(())
    }
}

/// `head` followed by `n` copies of `row`, comma-separated: the SQL of a
/// multi-row insert (the statement cache keys on it).
fn rows_sql(head: &str, row: &str, n: usize) -> String {
    let mut sql = String::with_capacity(head.len() + n * (row.len() + 2));
    sql.push_str(head);
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(row);
    }
    sql
}

/// Makes sure every sink's queue is set up before transitions are added:
/// an in-order sink seen for the first time starts after the newest
/// transition (it receives what is recorded from now on, like a new
/// row-per-event sink); a sink that used to be in-order and now keeps rows
/// (its type changed) gets rows for whatever was still after its cursor.
fn prepare_routes(
    tx: &rusqlite::Transaction<'_>,
    routes: &[SinkRoute],
    now: i64,
) -> rusqlite::Result<()> {
    for route in routes {
        if route.by_cursor {
            tx.execute(
                "INSERT INTO sinks (name, delivered_through)
                 VALUES (?1, (SELECT coalesce(max(seq), 0) FROM transitions))
                 ON CONFLICT (name) DO UPDATE SET
                    delivered_through = coalesce(delivered_through, excluded.delivered_through)",
                [&route.name],
            )?;
            continue;
        }
        let Some(cursor) = cursor_of(tx, &route.name)? else {
            continue;
        };
        let mut args = vec![
            rusqlite::types::Value::Text(route.name.clone()),
            rusqlite::types::Value::Integer(now),
            rusqlite::types::Value::Integer(cursor),
        ];
        let filter = status_clause(route, &mut args);
        tx.execute(
            &format!(
                "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
                 SELECT ?, seq, order_id, ?2, ?2 FROM transitions WHERE seq > ?{filter}
                 ON CONFLICT (sink, seq) DO NOTHING"
            ),
            rusqlite::params_from_iter(args),
        )?;
        tx.execute(
            "UPDATE sinks SET delivered_through = NULL WHERE name = ?1",
            [&route.name],
        )?;
    }
    Ok(())
}

/// The last recorded status of the orders in a chunk.
///
/// Re-polling a large account is mostly "nothing changed", so the lookup
/// matters: for a large chunk sorted by order id, one ordered range scan of
/// `orders` replaces a point query per order. Statuses are interned (an
/// account has a handful), keeping the table to 16 bytes per order.
enum KnownStatuses {
    /// Point queries (small or unsorted chunks).
    Point(HashMap<i64, Arc<str>>),
    /// A sorted snapshot of the chunk's id range, plus the last status this
    /// chunk set: the chunk is sorted, so one order's entries are adjacent.
    Scanned {
        rows: Vec<(i64, u32)>,
        names: Vec<Arc<str>>,
        last_set: Option<(i64, Arc<str>)>,
        /// Where the previous lookup ended in `rows`.
        next: usize,
    },
}

/// Chunks at least this large, sorted by order id, are looked up by range scan.
const SCAN_THRESHOLD: usize = 2048;

impl KnownStatuses {
    fn load(
        tx: &rusqlite::Transaction<'_>,
        changes: &[OrderChange],
    ) -> rusqlite::Result<KnownStatuses> {
        let sorted = changes.is_sorted_by_key(|c| c.order_id);
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(KnownStatuses::Point(HashMap::new()));
        };
        if changes.len() < SCAN_THRESHOLD || !sorted {
            return Ok(KnownStatuses::Point(HashMap::new()));
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut rows = Vec::with_capacity(changes.len());
        let mut stmt = tx.prepare_cached(
            "SELECT order_id, status FROM orders WHERE order_id BETWEEN ?1 AND ?2 ORDER BY order_id",
        )?;
        let mut q = stmt.query([first.order_id, last.order_id])?;
        while let Some(r) = q.next()? {
            let id: i64 = r.get(0)?;
            let status = r.get_ref(1)?.as_str().unwrap_or_default();
            let index = match names.iter().position(|n| &**n == status) {
                Some(i) => i,
                None => {
                    names.push(Arc::from(status));
                    names.len() - 1
                }
            };
            rows.push((id, index as u32));
        }
        Ok(KnownStatuses::Scanned {
            rows,
            names,
            last_set: None,
            next: 0,
        })
    }

    /// The last status of `order_id`, counting what this chunk recorded.
    fn previous(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        order_id: i64,
    ) -> rusqlite::Result<Option<Arc<str>>> {
        match self {
            KnownStatuses::Point(updated) => {
                if let Some(s) = updated.get(&order_id) {
                    return Ok(Some(Arc::clone(s)));
                }
                let mut stmt =
                    tx.prepare_cached("SELECT status FROM orders WHERE order_id = ?1")?;
                let found: Option<String> = stmt.query_row([order_id], |r| r.get(0)).optional()?;
                Ok(found.map(Arc::from))
            }
            KnownStatuses::Scanned {
                rows,
                names,
                last_set,
                next,
            } => {
                if let Some((id, s)) = last_set
                    && *id == order_id
                {
                    return Ok(Some(Arc::clone(s)));
                }
                // Lookups come in ascending order: walk forward.
                while *next < rows.len() && rows[*next].0 < order_id {
                    *next += 1;
                }
                Ok(rows
                    .get(*next)
                    .filter(|(id, _)| *id == order_id)
                    .and_then(|(_, name)| names.get(*name as usize))
                    .cloned())
            }
        }
    }

    /// Remembers a status this chunk recorded for `order_id`.
    fn set(&mut self, order_id: i64, status: &Arc<str>) {
        match self {
            KnownStatuses::Point(updated) => {
                updated.insert(order_id, Arc::clone(status));
            }
            KnownStatuses::Scanned { last_set, .. } => {
                *last_set = Some((order_id, Arc::clone(status)));
            }
        }
    }
}
