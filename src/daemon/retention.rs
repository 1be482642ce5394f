//! Retention in the background: delivered ledger rows older than `[store]
//! keep_delivered` are deleted in small batches, with a pause between
//! batches, so pruning months of history never holds the store's writer
//! long enough to delay a poll or a delivery. Dead rows are kept (until
//! redelivered or purged by `orderwatch deliveries --purge-dead`), and so
//! are transitions: they are the dedupe memory.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::{SharedStore, StoreError};
use crate::transition::Clock;

/// Rows per delete: a transaction of a few milliseconds.
const BATCH: usize = 500;
/// Between batches, the writer is free for the poller and the sinks.
const PAUSE: Duration = Duration::from_millis(20);
/// The longest wait between two rounds.
const MAX_EVERY: Duration = Duration::from_secs(3600);
/// The first round comes soon after the start, so a long-stopped daemon
/// does not carry its backlog for an hour.
const FIRST_AFTER: Duration = Duration::from_secs(5);

/// How often rows are looked at: a quarter of `keep` (rows outlive `keep`
/// by at most that), between a second and an hour.
pub fn every(keep: Duration) -> Duration {
    (keep / 4).clamp(Duration::from_secs(1), MAX_EVERY)
}

/// Prunes every [`every`]`(keep)` until `stop`. A store error is logged and
/// tried again next round: retention must never stop the daemon.
pub async fn run(store: SharedStore, keep: Duration, clock: Clock, stop: CancellationToken) {
    let mut wait = FIRST_AFTER.min(every(keep));
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return,
        }
        wait = every(keep);
        match prune(&store, keep, clock.now_ms(), &stop).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(deleted = n, keep_delivered = %humantime::format_duration(keep),
                "deleted delivered ledger rows older than keep_delivered")
            }
            // The term is over; the next leader prunes.
            Err(e) if e.ends_leadership() => return,
            Err(e) => tracing::warn!(error = %e, retry_in = %humantime::format_duration(wait),
                "cannot delete old delivered ledger rows; trying again later"),
        }
    }
}

/// Deletes every delivered row done more than `keep` before `now_ms`, batch
/// by batch; returns how many. Stops early (keeping the rest for the next
/// round) when `stop` is cancelled.
pub async fn prune(
    store: &SharedStore,
    keep: Duration,
    now_ms: i64,
    stop: &CancellationToken,
) -> Result<usize, StoreError> {
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms.saturating_sub(keep_ms);
    let mut total = 0;
    loop {
        let n = store.prune_delivered(before, BATCH).await?;
        total += n;
        if n < BATCH || stop.is_cancelled() {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{Chunk, DeliveryFilter, DeliveryState, Mark, SinkRoute};
    use crate::transition::OrderChange;
    use std::sync::Arc;

    #[test]
    fn rounds_come_every_quarter_of_keep_between_a_second_and_an_hour() {
        assert_eq!(every(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(every(Duration::from_secs(400)), Duration::from_secs(100));
        assert_eq!(every(Duration::from_secs(90 * 86_400)), MAX_EVERY);
    }

    #[tokio::test]
    async fn old_delivered_rows_go_in_batches_and_recent_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let store: SharedStore = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let route = SinkRoute {
            name: "hook".into(),
            statuses: None,
            by_cursor: false,
            operational: false,
        };
        let n = BATCH * 2 + 7;
        let orders: Vec<OrderChange> = (1..=n as i64)
            .map(|order_id| OrderChange {
                order_id,
                certificate_id: None,
                status: Arc::from("issued"),
            })
            .collect();
        let seen = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        store
            .record(
                Chunk::whole(orders, Some(seen), seen),
                vec![route.clone()].into(),
            )
            .await
            .unwrap();
        let due = store.due(&route, i64::MAX, n).await.unwrap();
        let (old, recent) = due.split_at(n - 3);
        let marks = |es: &[crate::store::OutboxEntry]| {
            es.iter().map(|e| (e.seq(), Mark::Delivered)).collect()
        };
        store.mark("hook", marks(old), 1_000).await.unwrap();
        store.mark("hook", marks(recent), 9_000).await.unwrap();
        let keep = Duration::from_secs(5);
        let deleted = prune(&store, keep, 10_000, &CancellationToken::new())
            .await
            .unwrap();
        assert_eq!(deleted, n - 3);
        let left = store
            .deliveries(&DeliveryFilter {
                sink: None,
                state: Some(DeliveryState::Delivered),
                limit: n,
                routes: Vec::new(),
            })
            .await
            .unwrap();
        assert_eq!(left.len(), 3);
    }
}
