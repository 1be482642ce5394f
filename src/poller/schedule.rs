//! The poll schedule: a cycle every `interval`, start to start, woken
//! early by `POST /wake`, with the watchdog fed while it waits and the
//! operational sinks told of outages.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{CycleError, IDLE_BEAT, LastCycle, Poller};
use crate::alert::{PollHealth, PollWatch};
use crate::store::StoreError;
use crate::transition::now_ms;
use crate::wake::PollWake;

/// How wakes reach a poller: the doorbell, and how soon after the last
/// cycle's start a wake may start the next.
#[derive(Debug, Clone)]
pub struct WakeSchedule {
    pub bell: Arc<PollWake>,
    pub min_gap: Duration,
}

impl Poller {
    /// The schedule: a cycle every `interval`, start to start, never two at
    /// once; a cycle that overruns the interval is followed at once by the
    /// next, and missed ticks do not pile up. A wake ([`PollWake`]) starts a
    /// cycle early, but never sooner than `min_gap` after the last one
    /// started, and the schedule then counts from it. Returns when `stop` is
    /// cancelled, abandoning a cycle in progress (what it committed stays;
    /// the rest is repeated next time). Each cycle's end is published on
    /// `last`. Returns an error only when the store can no longer be used at
    /// all, or no longer by this node (it does not lead any more):
    /// [`StoreError::is_fatal`].
    pub async fn run_until_stopped(
        &self,
        stop: CancellationToken,
        last: watch::Sender<Option<LastCycle>>,
    ) -> Result<(), StoreError> {
        let mut ticker = tokio::time::interval(self.poll.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut cycles = 0u64;
        let mut last_start: Option<Instant> = None;
        let mut watch = PollWatch::new(self.poll_failures);
        loop {
            let woken = loop {
                self.metrics.beat();
                tokio::select! {
                    _ = ticker.tick() => break false,
                    _ = rung(self.wakeups.as_ref()) => break true,
                    _ = tokio::time::sleep(IDLE_BEAT) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
            };
            if let (true, Some(w)) = (woken, &self.wakeups) {
                let earliest = last_start.map(|t| t + w.min_gap);
                tokio::select! {
                    _ = self.sleep_beating(earliest) => {}
                    _ = stop.cancelled() => return Ok(()),
                }
                tracing::debug!("woken: polling now");
                ticker.reset();
            }
            if let Some(w) = &self.wakeups {
                w.bell.take();
            }
            last_start = Some(Instant::now());
            let result = tokio::select! {
                r = self.cycle() => r,
                _ = stop.cancelled() => return Ok(()),
            };
            cycles += 1;
            let outcome = match result {
                Ok(report) => {
                    self.metrics.poll_ok(now_ms());
                    self.tell_health(&mut watch, PollWatch::succeeded).await?;
                    LastCycle::Ok { cycles, report }
                }
                Err(CycleError::Store(e)) if e.is_fatal() => return Err(e),
                Err(e) => {
                    self.metrics.poll_failed();
                    tracing::error!(code = %e.code(), error = %e, "poll cycle failed; the cursor stays, retrying at the next interval");
                    let error = format!("{}: {e}", e.code());
                    self.tell_health(&mut watch, |w| w.failed(now_ms(), &error))
                        .await?;
                    LastCycle::Failed {
                        cycles,
                        code: e.code(),
                    }
                }
            };
            last.send_replace(Some(outcome));
        }
    }

    /// Operational events: tells the store how polling is doing when
    /// `watch` says so (an outage past `poll_failures`, its end). Only a
    /// fatal store error (leadership lost) ends the poller; another is
    /// logged and the report is asked again at the next cycle.
    async fn tell_health(
        &self,
        watch: &mut PollWatch,
        what: impl FnOnce(&mut PollWatch) -> Option<PollHealth>,
    ) -> Result<(), StoreError> {
        let Some(health) = what(watch) else {
            return Ok(());
        };
        match self.store.poll_health(&health, now_ms()).await {
            Ok(written) => {
                watch.reported(&health);
                if let Some(id) = written {
                    tracing::info!(alert = %id, "told the operational sinks how polling is doing");
                }
                Ok(())
            }
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                watch.not_reported(&health);
                tracing::error!(error = %e, "cannot record how polling is doing; trying again at the next cycle");
                Ok(())
            }
        }
    }

    /// Sleeps until `at` (not at all for `None`), telling the watchdog that
    /// the wait is deliberate.
    async fn sleep_beating(&self, at: Option<Instant>) {
        let Some(at) = at else {
            return;
        };
        while Instant::now() < at {
            self.metrics.beat();
            tokio::time::sleep_until(at.min(Instant::now() + IDLE_BEAT)).await;
        }
    }
}

/// Resolves when a wake asks for a cycle; never without a wake endpoint.
async fn rung(wakeups: Option<&WakeSchedule>) {
    match wakeups {
        Some(w) => w.bell.rung().await,
        None => std::future::pending().await,
    }
}
