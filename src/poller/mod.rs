//! The poller: one cycle ([`Poller::cycle`]) plans the windows since the
//! cursor, fetches each, records each (which also moves the cursor) and
//! wakes the sinks; [`Poller::run_until_stopped`] runs cycles on schedule.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use crate::certcentral::orders::OrderList;
use crate::certcentral::{ApiError, ChangeSource};
use crate::config::PollConfig;
use crate::metrics::Metrics;
use crate::sink::Wake;
use crate::store::{Chunk, Committed, Hold, RecordSummary, Routes, SharedStore, StoreError};
use crate::transition::Dedupe;
use crate::window::{PlannedWindow, Window, plan};

/// How often one cycle plans its remaining windows again after its
/// relative window outgrew the API's 7 days.
const MAX_REPLANS: u32 = 3;
/// A cursor this far past CertCentral's now still counts as now: the
/// offset learned from `Date` is only good to a second or two.
const FUTURE_SLACK: i64 = 60;
/// Orders recorded per transaction.
const CHUNK: usize = 10_000;
/// While waiting for the next cycle, tell the watchdog this often that the
/// wait is deliberate: a long interval is not a hang.
const IDLE_BEAT: Duration = Duration::from_secs(5);

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

/// How the last scheduled cycle ended, for whoever shows status (the
/// daemon's `STATUS=` line) or waits for a cycle (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LastCycle {
    /// Cycles run so far, and the report of the last.
    Ok { cycles: u64, report: CycleReport },
    /// Cycles run so far, and the error code of the last.
    Failed { cycles: u64, code: String },
}

impl LastCycle {
    pub fn cycles(&self) -> u64 {
        match self {
            LastCycle::Ok { cycles, .. } | LastCycle::Failed { cycles, .. } => *cycles,
        }
    }
}

/// Polls CertCentral and records what it finds.
#[derive(Clone)]
pub struct Poller {
    pub source: Arc<dyn ChangeSource>,
    pub store: SharedStore,
    pub poll: PollConfig,
    pub tz: Tz,
    /// Where new transitions go: the sinks of this configuration generation.
    pub routes: Routes,
    /// Which sightings are transitions (`[events] dedupe`).
    pub dedupe: Dedupe,
    /// Which new transitions wait for their order's details (`[enrich]`).
    pub hold: Hold,
    pub metrics: Arc<Metrics>,
    /// Notified after every commit that queued deliveries or held
    /// transitions (the enricher listens too).
    pub wake: Wake,
    /// Wakes for an early cycle (`[wake]`), if the endpoint is on.
    pub wakeups: Option<WakeSchedule>,
    /// Failed cycles in a row that the operational sinks hear of
    /// (`[alerts] poll_failures`).
    pub poll_failures: u32,
}

/// How a window went.
enum Fetch {
    /// Recorded, with the cursor where the plan said.
    Recorded,
    /// Recorded, but it began later than planned by CertCentral's clock (a
    /// local clock behind it): the cursor stays, and the rest is planned
    /// again in CertCentral's time.
    Short,
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
        // Before CertCentral's first answer its clock is unknown: a cursor
        // that turns out to be in the future is only seen after a window.
        let knew_clock = self.source.api_offset().is_some();
        loop {
            let now = self.source.api_now();
            let cursor = self.checked_cursor(now).await?;
            let windows = plan(cursor, now, &self.poll, self.tz);
            let Some(next) = windows.first().copied() else {
                return Ok(report);
            };
            let total = done + windows.len();
            if done == 0 && replans == 0 && total > 1 {
                self.announce_catch_up(&next, total, now);
            }
            report.windows = total;
            match self.window(done, total, &next, &mut report).await {
                Ok(Fetch::Recorded) => {}
                Ok(Fetch::Short) if replans < MAX_REPLANS => {
                    replans += 1;
                    continue;
                }
                Ok(Fetch::Short) => {
                    tracing::warn!(
                        "CertCentral's clock kept moving away from ours during the cycle; the cursor stays, the next cycle asks again"
                    );
                    return Ok(report);
                }
                Err(CycleError::Api(e @ ApiError::Expired { .. })) if replans < MAX_REPLANS => {
                    replans += 1;
                    tracing::warn!(error = %e, "planning the rest of the cycle again");
                    continue;
                }
                Err(e) => return Err(e),
            }
            done += 1;
            if next.cursor_after.is_none()
                && !knew_clock
                && replans < MAX_REPLANS
                && self.cursor_in_future(self.source.api_now()).await?
            {
                replans += 1;
                continue;
            }
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

    /// The stored cursor, unless it lies in the future by CertCentral's
    /// clock: this machine's clock was ahead when it was taken (by an older
    /// orderwatch, or before the first answer of this run) and has been
    /// stepped back since. How long polling then really stopped cannot be
    /// known, so the cursor is set back as on a first start, by
    /// `initial_lookback`: transitions already recorded are not repeated.
    async fn checked_cursor(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, CycleError> {
        let cursor = self.store.cursor().await?;
        let Some(c) = cursor else {
            return Ok(None);
        };
        if !self.in_future(c, now) {
            return Ok(cursor);
        }
        let back = now
            .checked_sub_signed(delta(self.poll.initial_lookback))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        tracing::warn!(
            cursor = %c.format("%Y-%m-%dT%H:%M:%SZ"),
            ahead_s = (c - now).num_seconds(),
            "the cursor is in the future by CertCentral's clock: this machine's clock was ahead and has been set back; looking back initial_lookback ({}) again so nothing is missed",
            humantime::format_duration(self.poll.initial_lookback)
        );
        self.store.rewind_cursor(back).await?;
        Ok(Some(back))
    }

    /// Whether the stored cursor lies in the future by CertCentral's clock.
    async fn cursor_in_future(&self, now: DateTime<Utc>) -> Result<bool, CycleError> {
        Ok(self
            .store
            .cursor()
            .await?
            .is_some_and(|c| self.in_future(c, now)))
    }

    fn in_future(&self, cursor: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.source.api_offset().is_some() && cursor > now + TimeDelta::seconds(FUTURE_SLACK)
    }

    fn announce_catch_up(&self, next: &PlannedWindow, total: usize, now: DateTime<Utc>) {
        let from = match next.window {
            Window::Absolute { start, .. } | Window::Relative { since: start } => start,
        };
        let gap = Duration::from_secs((now - from).num_seconds().max(0).unsigned_abs());
        tracing::info!(
            windows = total,
            from = %from.format("%Y-%m-%dT%H:%M:%SZ"),
            "catching up {} in {total} windows of at most {}",
            humantime::format_duration(gap),
            humantime::format_duration(self.poll.max_window),
        );
    }

    async fn window(
        &self,
        i: usize,
        total: usize,
        planned: &PlannedWindow,
        report: &mut CycleReport,
    ) -> Result<Fetch, CycleError> {
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
        let fetched = self.source.status_changes(&planned.window).await?;
        self.metrics.beat();
        let short = match (planned.window, fetched.covered_from) {
            (Window::Relative { since }, Some(from)) => from > since + TimeDelta::seconds(2),
            _ => false,
        };
        let cursor = match planned.cursor_after {
            _ if short => None,
            Some(end) => Some(end),
            // Where the first request ended, by CertCentral's clock.
            None => Some(fetched.api_time.unwrap_or_else(|| {
                fetched.asked_at + self.source.api_offset().unwrap_or_default()
            })),
        };
        let summary = self.record(fetched.orders, cursor).await?;
        report.requests += fetched.requests;
        report.orders_seen += summary.seen;
        report.new_transitions += summary.new_transitions();
        report.cursor = cursor.or(report.cursor);
        for (status, n) in &summary.new_by_status {
            self.metrics.transitions(status, *n);
        }
        log_transitions(&summary);
        tracing::trace!(
            window = i + 1,
            requests = fetched.requests,
            orders = summary.seen,
            new = summary.new_transitions(),
            queued = summary.queued,
            "window recorded"
        );
        if short {
            tracing::info!(
                since = %fetched.covered_from.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_default(),
                "by CertCentral's clock the window began later than planned (this machine's clock is behind); asking again from the cursor"
            );
            return Ok(Fetch::Short);
        }
        Ok(Fetch::Recorded)
    }

    /// Records a window's answer in chunks of [`CHUNK`] orders, sorted by
    /// order id (stable, so one order's entries keep their answer order):
    /// sorted chunks are looked up with one range scan and inserted in index
    /// order, and the sinks start delivering after the first chunk. Only the
    /// last chunk moves the cursor (see `Store::record`). The answer stays
    /// compact; each chunk becomes [`OrderChange`](crate::transition::OrderChange)s
    /// only when it is recorded.
    async fn record(
        &self,
        mut orders: OrderList,
        cursor: Option<DateTime<Utc>>,
    ) -> Result<RecordSummary, CycleError> {
        orders.sort();
        let seen_at = Utc::now();
        let total = orders.len();
        let n = total.div_ceil(CHUNK).max(1);
        let (dedupe, hold) = (self.dedupe, self.hold.clone());
        let chunks = (0..n).map(move |c| {
            let last = c + 1 == n;
            let mut chunk = Chunk::whole(
                orders.changes(c * CHUNK..((c + 1) * CHUNK).min(total)),
                cursor.filter(|_| last),
                seen_at,
            );
            chunk.dedupe = dedupe;
            chunk.hold = hold.clone();
            chunk
        });
        let (metrics, wake) = (Arc::clone(&self.metrics), self.wake.clone());
        let committed: Committed = Arc::new(move |part: &RecordSummary| {
            metrics.beat();
            if part.queued > 0 || part.held > 0 {
                wake.all();
            }
        });
        let summary = self
            .store
            .record_chunks(Box::new(chunks), Arc::clone(&self.routes), committed)
            .await?;
        Ok(summary)
    }
}

/// One log line per new transition (the first hundred of a window), then a
/// count of the rest.
fn log_transitions(summary: &RecordSummary) {
    for t in &summary.sample {
        tracing::info!(
            event = %t.event_id(),
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
}

/// A config duration as a chrono delta (config durations are capped at 100
/// years, so this never saturates in practice).
fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

mod schedule;
pub use schedule::WakeSchedule;

#[cfg(test)]
mod tests;
