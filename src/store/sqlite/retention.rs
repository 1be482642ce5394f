//! Retention: forgetting ledger rows that no longer tell anyone anything.
//!
//! Delivered rows pile up forever otherwise (a webhook sink keeps one per
//! event). They are deleted in small batches, each its own short
//! transaction, so a daemon pruning months of history never holds the
//! writer long enough to delay a poll or a delivery. Transitions are never
//! deleted: they are the dedupe memory.
//!
//! Rows of in-order sinks (file, stdout) are special: such a sink derives
//! "delivered" for an event without a row from its cursor. A delivered row
//! the cursor has passed can go (the event still reads as delivered); a
//! dead one cannot (it would then read as delivered too), so dead rows of
//! in-order sinks stay until redelivered.

use rusqlite::params;

use super::Db;
use crate::store::{DeliveryState, StoreError};

impl Db {
    /// Deletes up to `limit` delivered rows done before `before` (unix ms),
    /// skipping rows an in-order sink's cursor has not passed. Returns how
    /// many were deleted; fewer than `limit` means none are left.
    pub fn prune_delivered(&mut self, before: i64, limit: usize) -> Result<usize, StoreError> {
        let n = self.prune_outbox(before, limit)?;
        if n >= limit {
            return Ok(n);
        }
        let alerts = self.prune_alert_rows(DeliveryState::Delivered, None, before, limit - n)?;
        Ok(n + alerts)
    }

    fn prune_outbox(&mut self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE (sink, seq) IN (
                    SELECT o.sink, o.seq FROM outbox o LEFT JOIN sinks s ON s.name = o.sink
                    WHERE o.state = 'delivered' AND o.done_at < ?1
                      AND (s.delivered_through IS NULL OR o.seq <= s.delivered_through)
                    LIMIT ?2)",
                params![before, limit as i64],
            )
            .map_err(|e| self.err("deleting old delivered rows", e))
    }

    /// Deletes up to `limit` dead rows given up before `before`, of `sink`
    /// or of every sink, except those of in-order sinks (see the module).
    pub fn purge_dead(
        &mut self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let n = self.purge_outbox_dead(sink, before, limit)?;
        if n >= limit {
            return Ok(n);
        }
        let alerts = self.prune_alert_rows(DeliveryState::Dead, sink, before, limit - n)?;
        Ok(n + alerts)
    }

    fn purge_outbox_dead(
        &mut self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "DELETE FROM outbox WHERE (sink, seq) IN (
                    SELECT o.sink, o.seq FROM outbox o LEFT JOIN sinks s ON s.name = o.sink
                    WHERE o.state = 'dead' AND o.done_at < ?1
                      AND (?2 IS NULL OR o.sink = ?2)
                      AND s.delivered_through IS NULL
                    LIMIT ?3)",
                params![before, sink, limit as i64],
            )
            .map_err(|e| self.err("deleting old dead rows", e))
    }
}
