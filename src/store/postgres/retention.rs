//! Retention on PostgreSQL: the same rules as SQLite's (`sqlite/retention.rs`):
//! delivered rows go in small batches once old, dead rows only on request,
//! and rows an in-order sink's cursor still depends on stay.

use super::PgStore;
use crate::store::{DeliveryState, StoreError};

impl PgStore {
    /// Deletes up to `limit` delivered rows done before `before`. The
    /// leader's background work, so fenced like its other writes.
    pub(super) async fn prune_old_delivered(
        &self,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let n = self.prune_outbox(before, limit).await?;
        if n >= limit {
            return Ok(n);
        }
        let alerts = self
            .prune_alert_rows(DeliveryState::Delivered, None, before, limit - n, true)
            .await?;
        Ok(n + alerts)
    }

    async fn prune_outbox(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.fenced_execute(
            "deleting old delivered rows",
            "DELETE FROM outbox WHERE (sink, seq) IN (
                SELECT o.sink, o.seq FROM outbox o LEFT JOIN sinks s ON s.name = o.sink
                WHERE o.state = 'delivered' AND o.done_at < $1
                  AND (s.delivered_through IS NULL OR o.seq <= s.delivered_through)
                LIMIT $2)",
            &[&before, &limit],
        )
        .await
    }

    /// Deletes up to `limit` dead rows given up before `before`, of `sink`
    /// or of every sink, except those of in-order sinks. An operator's
    /// command, so not fenced.
    pub(super) async fn purge_old_dead(
        &self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let n = client
            .execute(
                "DELETE FROM outbox WHERE (sink, seq) IN (
                    SELECT o.sink, o.seq FROM outbox o LEFT JOIN sinks s ON s.name = o.sink
                    WHERE o.state = 'dead' AND o.done_at < $1
                      AND ($2::text IS NULL OR o.sink = $2)
                      AND s.delivered_through IS NULL
                    LIMIT $3)",
                &[&before, &sink, &limit],
            )
            .await
            .map_err(self.err("deleting old dead rows"))?;
        let n = n as usize;
        if n >= limit as usize {
            return Ok(n);
        }
        let alerts = self
            .prune_alert_rows(DeliveryState::Dead, sink, before, limit as usize - n, false)
            .await?;
        Ok(n + alerts)
    }
}
