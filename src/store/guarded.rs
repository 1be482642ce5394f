//! A store for tests whose writes can be made to fail: every call goes to
//! `inner`, and each write (and the delivery loop's reads of what is due,
//! `due_after` and `next_due`) first asks `guard`, with the method's name,
//! whether it may go ahead. A fenced leader, a disk that fills up and frees
//! again, are each one guard. `mark_takes` makes each ledger write take
//! that long (in tokio time), like a busy disk or a distant database.
//! `looks` counts the reads a delivery loop makes to learn what to do
//! (what is due, when next, whether paused or requeued).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{
    AlertEntry, Chunk, DeliveryFilter, DeliveryRow, EventFilter, Lookup, LookupBacklog,
    LookupOutcome, Mark, OutboxEntry, Pause, PollHealth, RecordSummary, Redeliver, Routes,
    SharedStore, SinkRoute, SinkStats, Store, StoreError, StoreReport,
};
use crate::transition::TransitionRow;

/// Decides whether a write (named by its `Store` method) may go ahead.
pub type Guard = Arc<dyn Fn(&'static str) -> Result<(), StoreError> + Send + Sync>;

pub struct Guarded {
    pub inner: SharedStore,
    pub guard: Guard,
    pub mark_takes: Duration,
    pub looks: Arc<AtomicUsize>,
}

impl Guarded {
    fn look(&self) {
        self.looks.fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("inner", &self.inner)
            .finish()
    }
}

#[async_trait]
impl Store for Guarded {
    fn location(&self) -> String {
        self.inner.location()
    }
    async fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.cursor().await
    }
    async fn rewind_cursor(&self, to: DateTime<Utc>) -> Result<(), StoreError> {
        (self.guard)("rewind_cursor")?;
        self.inner.rewind_cursor(to).await
    }
    async fn record(&self, chunk: Chunk, routes: Routes) -> Result<RecordSummary, StoreError> {
        (self.guard)("record")?;
        self.inner.record(chunk, routes).await
    }
    // Not the default (`due_after` with 0): a refill is not a read-ahead.
    async fn due(&self, r: &SinkRoute, now: i64, n: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        self.look();
        self.inner.due(r, now, n).await
    }
    async fn due_after(
        &self,
        r: &SinkRoute,
        now: i64,
        n: usize,
        after: i64,
        into: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        (self.guard)("due_after")?;
        self.inner.due_after(r, now, n, after, into).await
    }
    async fn next_due(&self, r: &SinkRoute) -> Result<Option<i64>, StoreError> {
        self.look();
        (self.guard)("next_due")?;
        self.inner.next_due(r).await
    }
    async fn mark(&self, sink: &str, marks: Vec<(i64, Mark)>, now: i64) -> Result<(), StoreError> {
        (self.guard)("mark")?;
        tokio::time::sleep(self.mark_takes).await;
        self.inner.mark(sink, marks, now).await
    }
    async fn expire(&self, sink: &str, cut: i64, e: &str, now: i64) -> Result<usize, StoreError> {
        (self.guard)("expire")?;
        self.inner.expire(sink, cut, e, now).await
    }
    async fn retry_now(&self, sink: &str, now: i64) -> Result<usize, StoreError> {
        (self.guard)("retry_now")?;
        self.inner.retry_now(sink, now).await
    }
    async fn requeued_since(&self, sink: &str, since: i64) -> Result<bool, StoreError> {
        self.look();
        self.inner.requeued_since(sink, since).await
    }
    async fn prune_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        (self.guard)("prune_delivered")?;
        self.inner.prune_delivered(before, limit).await
    }
    async fn purge_dead(&self, s: Option<&str>, b: i64, n: usize) -> Result<usize, StoreError> {
        (self.guard)("purge_dead")?;
        self.inner.purge_dead(s, b, n).await
    }
    async fn pause(&self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        (self.guard)("pause")?;
        self.inner.pause(sink, reason, now).await
    }
    async fn pause_of(&self, sink: &str) -> Result<Option<Pause>, StoreError> {
        self.look();
        self.inner.pause_of(sink).await
    }
    async fn lookups_due(&self, now: i64, limit: usize) -> Result<Vec<Lookup>, StoreError> {
        self.inner.lookups_due(now, limit).await
    }
    async fn lookups_done(
        &self,
        done: Vec<(Lookup, LookupOutcome)>,
        now: i64,
    ) -> Result<(), StoreError> {
        (self.guard)("lookups_done")?;
        self.inner.lookups_done(done, now).await
    }
    async fn lookup_backlog(&self) -> Result<LookupBacklog, StoreError> {
        self.inner.lookup_backlog().await
    }
    async fn release_held(&self) -> Result<u64, StoreError> {
        (self.guard)("release_held")?;
        self.inner.release_held().await
    }
    async fn set_alert_sinks(&self, sinks: &[String]) -> Result<(), StoreError> {
        (self.guard)("set_alert_sinks")?;
        self.inner.set_alert_sinks(sinks).await
    }
    async fn poll_health(&self, h: &PollHealth, now: i64) -> Result<Option<String>, StoreError> {
        (self.guard)("poll_health")?;
        self.inner.poll_health(h, now).await
    }
    async fn alerts_due(&self, s: &str, now: i64, n: usize) -> Result<Vec<AlertEntry>, StoreError> {
        self.look();
        self.inner.alerts_due(s, now, n).await
    }
    async fn next_alert_due(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.look();
        self.inner.next_alert_due(sink).await
    }
    async fn mark_alerts(&self, s: &str, m: Vec<(i64, Mark)>, now: i64) -> Result<(), StoreError> {
        (self.guard)("mark_alerts")?;
        self.inner.mark_alerts(s, m, now).await
    }
    async fn redeliver(&self, r: &SinkRoute, w: &Redeliver, now: i64) -> Result<usize, StoreError> {
        (self.guard)("redeliver")?;
        self.inner.redeliver(r, w, now).await
    }
    async fn events(&self, f: &EventFilter) -> Result<Vec<TransitionRow>, StoreError> {
        self.inner.events(f).await
    }
    async fn deliveries(&self, f: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        self.inner.deliveries(f).await
    }
    async fn sink_stats(&self, routes: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError> {
        self.inner.sink_stats(routes).await
    }
    async fn report(&self, deep: bool) -> Result<StoreReport, StoreError> {
        self.inner.report(deep).await
    }
    fn version_probe(&self) -> Option<super::VersionProbe> {
        self.inner.version_probe()
    }
}
