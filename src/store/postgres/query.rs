//! Reads: what is due (outbox rows, and for in-order sinks the transitions
//! after their cursor, as SQLite's `route.rs` explains), the ledger, events
//! and statistics. None of them is fenced: a standby may read.

use tokio_postgres::types::ToSql;

use super::PgStore;
use super::rows::{
    ENTRY_COLUMNS, T_TRANSITION_COLUMNS, TRANSITION_COLUMNS, cursor_of, entry, transition,
};
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryState, EventFilter, OutboxEntry, Pause, SinkRoute,
    SinkStats, StoreError,
};
use crate::transition::TransitionRow;

/// The due outbox rows of a sink (`$1` sink, `$2` now, `$3` limit, `$4`
/// after, `$5` in order), shaped so that the plan cannot depend on the
/// table's statistics:
///
/// * "the oldest pending row of its order" is a scalar subquery with
///   `ORDER BY seq LIMIT 1`, which only the index on `(sink, order_id, seq)`
///   answers well. As `NOT EXISTS`, PostgreSQL plans it as an anti join, and
///   on a table never analyzed (a new deployment's first catch-up) it chose
///   to scan every pending row of the sink for each candidate: 3.9 s for
///   512 due rows out of 50,000 pending, instead of 2 ms;
/// * the candidates are picked and limited first, then joined to their
///   transitions: a lookup each, where the planner, once it had
///   statistics, merged with a walk of `transitions` from its start.
pub(super) fn due_sql() -> String {
    format!(
        "SELECT {ENTRY_COLUMNS}
         FROM (SELECT o.attempts, o.created_at, o.first_failure_at, o.seq FROM outbox o
               WHERE o.sink = $1 AND o.state = 'pending' AND o.next_attempt_at <= $2
                 AND o.seq > $4
                 AND (NOT $5 OR o.seq < coalesce((SELECT min(w.seq) FROM outbox w
                                                  WHERE w.sink = $1 AND w.state = 'pending'
                                                    AND w.next_attempt_at > $2),
                                                 9223372036854775807))
                 AND o.seq = (SELECT p.seq FROM outbox p
                              WHERE p.sink = $1 AND p.order_id = o.order_id
                                AND p.state = 'pending'
                              ORDER BY p.seq LIMIT 1)
                 AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
               ORDER BY o.seq LIMIT $3) o
         JOIN transitions t ON t.seq = o.seq
         ORDER BY o.seq"
    )
}

/// When a sink's next delivery falls due (`$1` sink). An in-order sink's
/// rows go out in seq order, so its first one's time is when anything is
/// due; for another sink it is the earliest time of any row that is not
/// held. That one reads the `(sink, next_attempt_at)` pending index in
/// order and stops at its first row: as `min(...)` PostgreSQL visited
/// every pending row (31–36 ms at 50,000, analyzed or not). Either way a
/// row waiting behind an earlier pending one of its order does not count
/// (SQLite's `next_due` says why); that check has the shape of the due
/// query's, for the same reason (one lookup in the order's pending index).
pub(super) fn next_due_sql(in_order: bool) -> &'static str {
    if in_order {
        "SELECT o.next_attempt_at FROM outbox o
         WHERE o.sink = $1 AND o.state = 'pending'
           AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
           AND o.seq = (SELECT p.seq FROM outbox p
                        WHERE p.sink = $1 AND p.order_id = o.order_id AND p.state = 'pending'
                        ORDER BY p.seq LIMIT 1)
         ORDER BY o.seq LIMIT 1"
    } else {
        "SELECT o.next_attempt_at FROM outbox o
         WHERE o.sink = $1 AND o.state = 'pending'
           AND NOT EXISTS (SELECT 1 FROM enrichment e WHERE e.seq = o.seq)
           AND o.seq = (SELECT p.seq FROM outbox p
                        WHERE p.sink = $1 AND p.order_id = o.order_id AND p.state = 'pending'
                        ORDER BY p.seq LIMIT 1)
         ORDER BY o.next_attempt_at LIMIT 1"
    }
}

impl PgStore {
    /// Due outbox rows first (for an in-order sink, only those before its
    /// first pending row not due yet, so retries keep recorded order); for
    /// an in-order sink with none pending at all,
    /// the transitions after its cursor, oldest first. Seqs up to `after`
    /// (in flight) are left out.
    pub(super) async fn due_for(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let client = self.client().await?;
        let rows: Vec<OutboxEntry> = client
            .query(
                &due_sql(),
                &[&route.name, &now, &(limit as i64), &after, &route.by_cursor],
            )
            .await
            .map_err(self.err("reading due deliveries"))?
            .iter()
            .map(entry)
            .collect();
        if !rows.is_empty() || !route.by_cursor {
            return Ok(rows);
        }
        let Some(cursor) = cursor_of(&**client, &route.name)
            .await
            .map_err(self.err("reading the sink cursor"))?
        else {
            return Ok(rows);
        };
        let pending: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE sink = $1 AND state = 'pending')",
                &[&route.name],
            )
            .await
            .map_err(self.err("looking for pending deliveries"))?
            .get(0);
        if pending {
            // Older events wait in their backoff; newer ones queue behind.
            return Ok(rows);
        }
        // Up to the first transition it takes that is held for its
        // order's details: in recorded order, nothing may pass it.
        let sql = format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions
             WHERE seq > $1 AND ($2::text[] IS NULL OR status = ANY($2))
               AND seq < coalesce((SELECT min(e.seq) FROM enrichment e JOIN transitions h ON h.seq = e.seq
                                   WHERE e.seq > $1 AND ($2::text[] IS NULL OR h.status = ANY($2))),
                                  9223372036854775807)
             ORDER BY seq LIMIT $3"
        );
        Ok(client
            .query(
                &sql,
                &[&cursor.max(after), &route.statuses, &(limit as i64)],
            )
            .await
            .map_err(self.err("reading transitions after the cursor"))?
            .iter()
            .map(|r| {
                let transition = transition(r, 0);
                OutboxEntry {
                    attempts: 0,
                    created_at: transition.seen_at,
                    first_failure_at: None,
                    transition,
                }
            })
            .collect())
    }

    /// When `route`'s next delivery falls due (unix ms); 0 for "now".
    /// Held transitions fall due when released, which wakes the loop.
    pub(super) async fn next_due_for(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError> {
        let client = self.client().await?;
        let next: Option<i64> = client
            .query_opt(next_due_sql(route.by_cursor), &[&route.name])
            .await
            .map_err(self.err("reading the next due delivery"))?
            .and_then(|r| r.get(0));
        drop(client);
        if next.is_some() || !route.by_cursor {
            return Ok(next);
        }
        let waiting = self.due_for(route, i64::MAX, 1, 0).await?;
        Ok((!waiting.is_empty()).then_some(0))
    }

    /// For an in-order sink: how many transitions wait after its cursor, and
    /// the first-seen time of the oldest. `None` if none (or no cursor).
    async fn after_cursor_stats(
        &self,
        route: &SinkRoute,
    ) -> Result<Option<(u64, i64)>, StoreError> {
        if !route.by_cursor {
            return Ok(None);
        }
        let client = self.client().await?;
        let Some(cursor) = cursor_of(&**client, &route.name)
            .await
            .map_err(self.err("reading the sink cursor"))?
        else {
            return Ok(None);
        };
        let row = client
            .query_one(
                "SELECT count(*), min(seen_at) FROM transitions
                 WHERE seq > $1 AND ($2::text[] IS NULL OR status = ANY($2))",
                &[&cursor, &route.statuses],
            )
            .await
            .map_err(self.err("counting transitions after the cursor"))?;
        let (count, oldest): (i64, Option<i64>) = (row.get(0), row.get(1));
        Ok(oldest.filter(|_| count > 0).map(|o| (count as u64, o)))
    }

    pub(super) async fn requeued(&self, sink: &str, since: i64) -> Result<bool, StoreError> {
        let client = self.client().await?;
        Ok(client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM outbox o JOIN transitions t ON t.seq = o.seq
                    WHERE o.sink = $1 AND o.state = 'pending' AND o.next_attempt_at >= $2
                      AND o.attempts = 0 AND o.created_at > t.seen_at)",
                &[&sink, &since],
            )
            .await
            .map_err(self.err("looking for redelivered rows"))?
            .get(0))
    }

    pub(super) async fn paused_since(&self, sink: &str) -> Result<Option<Pause>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT paused_at, coalesce(paused_reason, '') FROM sinks
                 WHERE name = $1 AND paused_at IS NOT NULL",
                &[&sink],
            )
            .await
            .map_err(self.err("reading the sink state"))?;
        Ok(row.map(|r| Pause {
            since: r.get(0),
            reason: r.get(1),
        }))
    }

    /// Transitions, newest first.
    pub(super) async fn list_events(
        &self,
        f: &EventFilter,
    ) -> Result<Vec<TransitionRow>, StoreError> {
        let client = self.client().await?;
        let sql = format!(
            "SELECT {TRANSITION_COLUMNS} FROM transitions
             WHERE ($1::bigint IS NULL OR order_id = $1) AND ($2::text IS NULL OR status = $2)
               AND ($3::bigint IS NULL OR seen_at >= $3)
             ORDER BY seq DESC LIMIT $4"
        );
        let params: [&(dyn ToSql + Sync); 4] =
            [&f.order_id, &f.status, &f.since, &(f.limit as i64)];
        Ok(client
            .query(&sql, &params)
            .await
            .map_err(self.err("reading events"))?
            .iter()
            .map(|r| transition(r, 0))
            .collect())
    }

    /// Ledger rows, newest first; in-order sinks' deliveries without a row
    /// are derived from their cursor when the filter names their routes.
    pub(super) async fn list_deliveries(
        &self,
        f: &DeliveryFilter,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let alerts = self.list_alert_deliveries(f).await?;
        let client = self.client().await?;
        let state = f.state.map(DeliveryState::as_str);
        let mut all: Vec<DeliveryRow> = client
            .query(
                "SELECT o.sink, t.order_id, t.status, o.state, o.attempts, o.created_at, o.next_attempt_at,
                        o.done_at, o.last_error, o.seq, t.occurrence
                 FROM outbox o JOIN transitions t ON t.seq = o.seq
                 WHERE ($1::text IS NULL OR o.sink = $1) AND ($2::text IS NULL OR o.state = $2)
                 ORDER BY o.seq DESC, o.sink LIMIT $3",
                &[&f.sink, &state, &(f.limit as i64)],
            )
            .await
            .map_err(self.err("reading the ledger"))?
            .iter()
            .map(|r| DeliveryRow {
                sink: r.get(0),
                order_id: r.get(1),
                status: r.get(2),
                state: DeliveryState::parse(r.get(3)),
                attempts: r.get::<_, i32>(4).max(0) as u32,
                created_at: r.get(5),
                next_attempt_at: r.get(6),
                done_at: r.get(7),
                last_error: r.get(8),
                alert: None,
                seq: r.get(9),
                occurrence: r.get::<_, i32>(10).max(0) as u32,
            })
            .collect();
        drop(client);
        all.extend(alerts);
        for route in f.routes.iter().filter(|r| r.by_cursor) {
            if f.sink.as_ref().is_some_and(|s| *s != route.name) {
                continue;
            }
            for (state, pending) in [
                (DeliveryState::Pending, true),
                (DeliveryState::Delivered, false),
            ] {
                if f.state.is_some_and(|s| s != state) {
                    continue;
                }
                for t in self.cursor_ledger(route, pending, f.limit).await? {
                    all.push(DeliveryRow {
                        sink: route.name.clone(),
                        seq: t.seq,
                        order_id: t.order_id,
                        status: t.status,
                        occurrence: t.occurrence,
                        state,
                        attempts: u32::from(!pending),
                        created_at: t.seen_at,
                        next_attempt_at: t.seen_at,
                        done_at: None,
                        last_error: None,
                        alert: None,
                    });
                }
            }
        }
        all.sort_by(|a, b| b.seq.cmp(&a.seq).then_with(|| a.sink.cmp(&b.sink)));
        all.truncate(f.limit);
        Ok(all)
    }

    /// Transitions of in-order sink `route` without a row of their own,
    /// newest first: after its cursor (pending) or at or before it (delivered).
    async fn cursor_ledger(
        &self,
        route: &SinkRoute,
        pending: bool,
        limit: usize,
    ) -> Result<Vec<TransitionRow>, StoreError> {
        let client = self.client().await?;
        let Some(cursor) = cursor_of(&**client, &route.name)
            .await
            .map_err(self.err("reading the sink cursor"))?
        else {
            return Ok(Vec::new());
        };
        let side = if pending { "t.seq > $1" } else { "t.seq <= $1" };
        let sql = format!(
            "SELECT {T_TRANSITION_COLUMNS}
             FROM transitions t WHERE {side} AND ($2::text[] IS NULL OR t.status = ANY($2))
               AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.sink = $3 AND o.seq = t.seq)
             ORDER BY t.seq DESC LIMIT $4"
        );
        Ok(client
            .query(
                &sql,
                &[&cursor, &route.statuses, &route.name, &(limit as i64)],
            )
            .await
            .map_err(self.err("reading the ledger"))?
            .iter()
            .map(|r| transition(r, 0))
            .collect())
    }

    /// Outbox figures for each sink.
    pub(super) async fn stats(&self, sinks: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError> {
        let mut out = Vec::with_capacity(sinks.len());
        for route in sinks {
            let client = self.client().await?;
            // An operational sink's ledger is its alert deliveries.
            let table = if route.operational {
                "alert_outbox"
            } else {
                "outbox"
            };
            let row = client
                .query_one(
                    &format!("SELECT (SELECT count(*) FROM {table} WHERE sink = $1 AND state = 'pending'),
                            (SELECT min(created_at) FROM {table} WHERE sink = $1 AND state = 'pending'),
                            (SELECT count(*) FROM {table} WHERE sink = $1 AND state = 'dead'),
                            EXISTS (SELECT 1 FROM sinks WHERE name = $1 AND paused_at IS NOT NULL)"),
                    &[&route.name],
                )
                .await
                .map_err(self.err("counting deliveries"))?;
            drop(client);
            let (count, oldest, dead, paused): (i64, Option<i64>, i64, bool) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let (ahead, ahead_oldest) = match self.after_cursor_stats(route).await? {
                Some((n, oldest)) => (n, Some(oldest)),
                None => (0, None),
            };
            out.push(SinkStats {
                sink: route.name.clone(),
                pending: count as u64 + ahead,
                dead: dead as u64,
                oldest_pending: match (oldest, ahead_oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                paused,
            });
        }
        Ok(out)
    }
}
