//! One poll cycle: plan the windows since the cursor, fetch each, record each
//! in one transaction (which also moves the cursor), wake the sinks.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::certcentral::{ApiError, Client};
use crate::config::PollConfig;
use crate::metrics::Metrics;
use crate::sink::Wake;
use crate::store::{Chunk, RecordSummary, Routes, SharedStore, StoreError};
use crate::transition::OrderChange;
use crate::transition::event_id;
use crate::window::{PlannedWindow, Window, plan};

/// How often one cycle plans its remaining windows again after its
/// relative window outgrew the API's 7 days.
const MAX_REPLANS: u32 = 3;

/// Why a cycle failed. The cursor stays where the last committed window left it.
#[derive(Debug, thiserror::Error)]
pub enum CycleError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CycleError {
    pub fn code(&self) -> String {
        match self {
            CycleError::Api(e) => e.code(),
            CycleError::Store(_) => "store".into(),
        }
    }
}

/// What a successful cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub windows: usize,
    pub requests: u32,
    pub orders_seen: usize,
    pub new_transitions: u64,
    pub cursor: Option<DateTime<Utc>>,
}

/// Polls CertCentral and records what it finds.
#[derive(Clone)]
pub struct Poller {
    pub client: Client,
    pub store: SharedStore,
    pub poll: PollConfig,
    pub tz: Tz,
    /// Where new transitions go: the sinks of this configuration generation.
    pub routes: Routes,
    pub metrics: Arc<Metrics>,
    /// Notified after every commit that queued deliveries.
    pub wake: Wake,
}

impl Poller {
    /// Runs one cycle. Each window commits on its own, so a long catch-up
    /// that fails half-way keeps the windows it finished.
    ///
    /// What is left is planned again from the cursor after every window: a
    /// catch-up can take long (pages, pacing, `Retry-After`), and the final
    /// relative window is only valid up to 7 days back from when it is sent,
    /// not from when the cycle started. Should it still outgrow them while it
    /// is being fetched, it is planned again (nothing of it was recorded).
    pub async fn cycle(&self) -> Result<CycleReport, CycleError> {
        let mut report = CycleReport::default();
        let mut done = 0;
        let mut replans = 0;
        loop {
            let cursor = self.store.cursor().await?;
            let now = Utc::now();
            let windows = plan(cursor, now, &self.poll, self.tz);
            let Some(next) = windows.first().copied() else {
                return Ok(report);
            };
            let total = done + windows.len();
            if done == 0 && replans == 0 && total > 1 {
                let from = match next.window {
                    Window::Absolute { start, .. } | Window::Relative { since: start } => start,
                };
                tracing::info!(
                    windows = total,
                    from = %from.format("%Y-%m-%dT%H:%M:%SZ"),
                    "catching up {} in {total} windows of at most {}",
                    humantime::format_duration(std::time::Duration::from_secs((now - from).num_seconds().max(0) as u64)),
                    humantime::format_duration(self.poll.max_window),
                );
            }
            report.windows = total;
            match self.window(done, total, &next, &mut report).await {
                Ok(()) => {}
                Err(CycleError::Api(e @ ApiError::Expired { .. })) if replans < MAX_REPLANS => {
                    replans += 1;
                    tracing::warn!(error = %e, "planning the rest of the cycle again");
                    continue;
                }
                Err(e) => return Err(e),
            }
            done += 1;
            if next.cursor_after.is_none() {
                tracing::debug!(
                    windows = report.windows,
                    requests = report.requests,
                    orders = report.orders_seen,
                    new = report.new_transitions,
                    "poll"
                );
                return Ok(report);
            }
        }
    }

    async fn window(
        &self,
        i: usize,
        total: usize,
        planned: &PlannedWindow,
        report: &mut CycleReport,
    ) -> Result<(), CycleError> {
        if total > 1 {
            match planned.window {
                Window::Absolute { start, end } => tracing::info!(
                    "catch-up {} of {total} windows: {} .. {}",
                    i + 1,
                    start.format("%Y-%m-%dT%H:%M:%SZ"),
                    end.format("%Y-%m-%dT%H:%M:%SZ")
                ),
                Window::Relative { since } => tracing::info!(
                    "catch-up {} of {total} windows: {} .. now",
                    i + 1,
                    since.format("%Y-%m-%dT%H:%M:%SZ")
                ),
            }
        }
        let fetched = self.client.status_changes(&planned.window).await?;
        self.metrics.beat();
        let cursor = planned.cursor_after.unwrap_or(fetched.asked_at);
        let summary = self.record(fetched.orders, cursor).await?;
        report.requests += fetched.requests;
        report.orders_seen += summary.seen;
        report.new_transitions += summary.new_transitions();
        report.cursor = Some(cursor);
        for (status, n) in &summary.new_by_status {
            self.metrics.transitions(status, *n);
        }
        for t in &summary.sample {
            tracing::info!(
                event = %event_id(t.order_id, &t.status),
                order_id = t.order_id,
                status = %t.status,
                previous_status = t.previous_status.as_deref().unwrap_or("-"),
                "transition"
            );
        }
        let extra = summary
            .new_transitions()
            .saturating_sub(summary.sample.len() as u64);
        if extra > 0 {
            tracing::info!(
                count = extra,
                "and {extra} more transitions (see `orderwatch events`)"
            );
        }
        tracing::trace!(
            window = i + 1,
            requests = fetched.requests,
            orders = summary.seen,
            new = summary.new_transitions(),
            queued = summary.queued,
            "window recorded"
        );
        Ok(())
    }

    /// Records a window's answer in chunks of [`CHUNK`] orders, sorted by
    /// order id (stable, so one order's entries keep their answer order):
    /// sorted chunks are looked up with one range scan and inserted in index
    /// order, and the sinks start delivering after the first chunk. Only the
    /// last chunk moves the cursor (see `Db::record_chunk`).
    async fn record(
        &self,
        mut orders: Vec<OrderChange>,
        cursor: DateTime<Utc>,
    ) -> Result<RecordSummary, CycleError> {
        orders.sort_by_key(|o| o.order_id);
        let orders = Arc::new(orders);
        let seen_at = Utc::now();
        let total = orders.len();
        let chunks = total.div_ceil(CHUNK).max(1);
        let mut summary = RecordSummary::default();
        for c in 0..chunks {
            let range = c * CHUNK..((c + 1) * CHUNK).min(total);
            let last = c + 1 == chunks;
            let chunk = Chunk {
                orders: Arc::clone(&orders),
                range,
                cursor: last.then_some(cursor),
                seen_at,
            };
            let part = self.store.record(chunk, Arc::clone(&self.routes)).await?;
            self.metrics.beat();
            if part.queued > 0 {
                self.wake.all();
            }
            summary.absorb(part);
        }
        Ok(summary)
    }
}

/// Orders recorded per transaction.
const CHUNK: usize = 10_000;
