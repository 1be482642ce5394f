//! Read-only views for the CLI (`events`, `deliveries`) and for metrics.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::Db;
use super::rows::{TRANSITION_COLUMNS, transition};
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryState, EventFilter, SinkRoute, SinkStats, StoreError,
};
use crate::transition::TransitionRow;

impl Db {
    /// Transitions, newest first.
    pub fn events(&self, f: &EventFilter) -> Result<Vec<TransitionRow>, StoreError> {
        let mut sql = format!("SELECT {TRANSITION_COLUMNS} FROM transitions WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if let Some(o) = f.order_id {
            sql.push_str(" AND order_id = ?");
            args.push(Value::Integer(o));
        }
        if let Some(s) = &f.status {
            sql.push_str(" AND status = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(t) = f.since {
            sql.push_str(" AND seen_at >= ?");
            args.push(Value::Integer(t));
        }
        sql.push_str(" ORDER BY seq DESC LIMIT ?");
        args.push(Value::Integer(f.limit as i64));
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.err("preparing the event query", e))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| transition(r, 0))
            .map_err(|e| self.err("reading events", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading events", e))
    }

    /// Ledger rows, newest first.
    pub fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut all = self.alert_deliveries(f)?;
        all.extend(self.transition_deliveries(f)?);
        all.sort_by(|a, b| b.seq.cmp(&a.seq).then_with(|| a.sink.cmp(&b.sink)));
        all.truncate(f.limit);
        Ok(all)
    }

    /// Ledger rows of transitions (the outbox and in-order sinks' cursors).
    fn transition_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let mut sql = String::from(
            "SELECT o.sink, t.order_id, t.status, o.state, o.attempts, o.created_at, o.next_attempt_at,
                    o.done_at, o.last_error, o.seq, t.occurrence
             FROM outbox o JOIN transitions t ON t.seq = o.seq WHERE 1 = 1",
        );
        let mut args: Vec<Value> = Vec::new();
        if let Some(s) = &f.sink {
            sql.push_str(" AND o.sink = ?");
            args.push(Value::Text(s.clone()));
        }
        if let Some(s) = f.state {
            sql.push_str(" AND o.state = ?");
            args.push(Value::Text(s.as_str().to_string()));
        }
        sql.push_str(" ORDER BY o.seq DESC, o.sink LIMIT ?");
        args.push(Value::Integer(f.limit as i64));
        let mut stmt = self
            .conn
            .prepare(&sql)
            .map_err(|e| self.err("preparing the ledger query", e))?;
        let rows = stmt
            .query_map(params_from_iter(args), |r| {
                Ok(DeliveryRow {
                    sink: r.get(0)?,
                    order_id: r.get(1)?,
                    status: r.get(2)?,
                    state: DeliveryState::parse(&r.get::<_, String>(3)?),
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    next_attempt_at: r.get(6)?,
                    done_at: r.get(7)?,
                    last_error: r.get(8)?,
                    alert: None,
                    seq: r.get(9)?,
                    occurrence: r.get(10)?,
                })
            })
            .map_err(|e| self.err("reading the ledger", e))?;
        let mut all: Vec<DeliveryRow> = rows
            .collect::<Result<_, _>>()
            .map_err(|e| self.err("reading the ledger", e))?;
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
                for t in self.cursor_ledger(route, pending, f.limit)? {
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

    /// Outbox figures for each sink.
    pub fn sink_stats(&self, sinks: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError> {
        let mut pending = self
            .conn
            .prepare_cached(
                "SELECT count(*), min(created_at) FROM outbox INDEXED BY outbox_pending
                 WHERE sink = ?1 AND state = 'pending'",
            )
            .map_err(|e| self.err("preparing outbox statistics", e))?;
        let mut dead = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE sink = ?1 AND state = 'dead'")
            .map_err(|e| self.err("preparing outbox statistics", e))?;
        let mut out = Vec::with_capacity(sinks.len());
        for route in sinks {
            let name = &route.name;
            if route.operational {
                let (pending, oldest_pending, dead) = self.alert_stats(name)?;
                out.push(SinkStats {
                    sink: name.clone(),
                    pending,
                    dead,
                    oldest_pending,
                    paused: self.paused(name)?.is_some(),
                });
                continue;
            }
            let (count, oldest): (i64, Option<i64>) = pending
                .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.err("counting pending deliveries", e))?;
            let dead_count: i64 = dead
                .query_row([name], |r| r.get(0))
                .map_err(|e| self.err("counting dead deliveries", e))?;
            let (ahead, ahead_oldest) = match self.after_cursor_stats(route)? {
                Some((n, oldest)) => (n, Some(oldest)),
                None => (0, None),
            };
            out.push(SinkStats {
                sink: name.clone(),
                pending: count as u64 + ahead,
                dead: dead_count as u64,
                oldest_pending: match (oldest, ahead_oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                paused: self.paused(name)?.is_some(),
            });
        }
        Ok(out)
    }

    /// Number of recorded transitions.
    pub fn transition_count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT count(*) FROM transitions", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err("counting transitions", e))
    }
}
