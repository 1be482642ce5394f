//! Which transitions belong to a sink, and the cursor of in-order sinks.
//!
//! A webhook sink keeps one outbox row per event: its deliveries run
//! concurrently and each has its own retry schedule. A file or stdout sink
//! delivers in recorded order, one batch at a time, so "everything after seq
//! N is pending" says the same with no row at all. Such a sink keeps a
//! cursor (`sinks.delivered_through`) and its pending deliveries are
//! *virtual*: the transitions after the cursor that its filter takes. Rows
//! are written only when one event needs remembering (a failure, a dead
//! letter, a redelivery), and while any such row is pending the virtual ones
//! wait behind it, so order is kept. This is what lets a million-event
//! catch-up reach a file at the speed of the disk.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::Db;
use super::rows::{T_TRANSITION_COLUMNS, TRANSITION_COLUMNS, cursor_of, status_clause, transition};
use crate::store::{OutboxEntry, SinkRoute, StoreError};
use crate::transition::TransitionRow;

impl Db {
    /// The cursor of an in-order sink: every transition up to this seq has
    /// been delivered or has an outbox row. `None` for row-per-event sinks.
    pub fn delivered_through(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        cursor_of(&self.conn, sink).map_err(|e| self.err("reading the sink cursor", e))
    }

    fn has_pending_rows(&self, sink: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE sink = ?1 AND state = 'pending')",
                [sink],
                |r| r.get(0),
            )
            .map_err(|e| self.err("looking for pending deliveries", e))
    }

    /// What `route` should deliver now, appended to `into` (storage of an
    /// earlier batch): due outbox rows first; for an in-order sink with
    /// none pending at all, the transitions after its cursor, oldest first.
    /// Seqs up to `after` (in flight) are left out.
    pub fn due_for(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
        mut into: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let rows = self.due(route, now, limit, after)?;
        if !rows.is_empty() || !route.by_cursor {
            into.extend(rows);
            return Ok(into);
        }
        let Some(cursor) = self.delivered_through(&route.name)? else {
            return Ok(into);
        };
        if self.has_pending_rows(&route.name)? {
            // Older events wait in their backoff; newer ones queue behind.
            return Ok(into);
        }
        self.after_cursor(route, cursor.max(after), limit, &mut into)?;
        Ok(into)
    }

    /// The transitions after `cursor` that `route` takes, as untried
    /// entries appended to `into`, up to the first one held for its
    /// order's details.
    fn after_cursor(
        &self,
        route: &SinkRoute,
        cursor: i64,
        limit: usize,
        into: &mut Vec<OutboxEntry>,
    ) -> Result<(), StoreError> {
        // Up to the first one held for its details, found in the same
        // statement: read apart, a chunk committed between the two reads
        // could add held transitions the first read did not see, and they
        // would go out without their details.
        let mut args = vec![Value::Integer(cursor)];
        let filter = status_clause(route, &mut args);
        args.push(Value::Integer(cursor));
        let held_filter = status_clause(route, &mut args);
        args.push(Value::Integer(limit as i64));
        let sql = format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions WHERE seq > ?{filter}
               AND seq < coalesce((SELECT min(e.seq) FROM enrichment e JOIN transitions t ON t.seq = e.seq
                                   WHERE e.seq > ?{held_filter}), {})
             ORDER BY seq LIMIT ?",
            i64::MAX
        );
        let mut stmt = self
            .conn
            .prepare_cached(&sql)
            .map_err(|e| self.err("preparing the cursor query", e))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                let transition = transition(r, 0)?;
                Ok(OutboxEntry {
                    attempts: 0,
                    created_at: transition.seen_at,
                    first_failure_at: None,
                    transition,
                })
            })
            .map_err(|e| self.err("reading transitions after the cursor", e))?;
        for row in rows {
            into.push(row.map_err(|e| self.err("reading transitions after the cursor", e))?);
        }
        Ok(())
    }

    /// When `route`'s next delivery falls due (unix ms); 0 for "now".
    /// Held transitions fall due when released, which wakes the loop.
    pub fn next_due_for(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError> {
        let next = self.next_due(route)?;
        if next.is_some() || !route.by_cursor {
            return Ok(next);
        }
        // What `due_for` would give now: nothing after the cursor while a
        // row waits (held for its details, say), or the loop would be told
        // "due now", find nothing and ask again at once.
        let waiting = self.due_for(route, i64::MAX, 1, 0, Vec::new())?;
        Ok((!waiting.is_empty()).then_some(0))
    }

    /// For an in-order sink: how many transitions wait after its cursor, and
    /// the first-seen time of the oldest. `None` if none (or no cursor).
    pub fn after_cursor_stats(&self, route: &SinkRoute) -> Result<Option<(u64, i64)>, StoreError> {
        if !route.by_cursor {
            return Ok(None);
        }
        let Some(cursor) = self.delivered_through(&route.name)? else {
            return Ok(None);
        };
        let mut args = vec![Value::Integer(cursor)];
        let filter = status_clause(route, &mut args);
        let sql = format!("SELECT count(*), min(seen_at) FROM transitions WHERE seq > ?{filter}");
        let (count, oldest): (i64, Option<i64>) = self
            .conn
            .query_row(&sql, params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| self.err("counting transitions after the cursor", e))?;
        Ok(oldest.filter(|_| count > 0).map(|o| (count as u64, o)))
    }

    /// Transitions after the cursor of in-order sink `route`, newest first,
    /// for the ledger (`delivered` when at or before the cursor and without a
    /// row of their own, `pending` after it).
    pub(super) fn cursor_ledger(
        &self,
        route: &SinkRoute,
        pending: bool,
        limit: usize,
    ) -> Result<Vec<TransitionRow>, StoreError> {
        let Some(cursor) = self.delivered_through(&route.name)? else {
            return Ok(Vec::new());
        };
        let mut args = vec![Value::Integer(cursor)];
        let filter = status_clause(route, &mut args);
        args.push(Value::Text(route.name.clone()));
        args.push(Value::Integer(limit as i64));
        let side = if pending { "t.seq > ?" } else { "t.seq <= ?" };
        let sql = format!(
            "SELECT {T_TRANSITION_COLUMNS}
             FROM transitions t WHERE {side}{filter}
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.sink = ? AND o.seq = t.seq)
             ORDER BY t.seq DESC LIMIT ?"
        );
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.err("preparing the ledger query", e))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| transition(r, 0))
            .map_err(|e| self.err("reading the ledger", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading the ledger", e))
    }
}
