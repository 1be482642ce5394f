//! The delivery loop of an operational sink (`operational = true`): it
//! drains the sink's alerts (see `store/alert.rs`) through the sink's
//! `send` path (signing and headers, the command, the file's lock), one at
//! a time, oldest first, with the sink's retry policy.
//!
//! Alerts are few, so this loop is simpler than the transitions' loop: no
//! batches, no concurrency, no breaker. What it shares with it: outcomes
//! are written before the next fetch, a crash repeats at most the alert in
//! flight, store errors are retried with backoff (fatal ones end it), a
//! 410 pauses the sink until `orderwatch redeliver`.
//!
//! Alert deliveries never raise alerts: a dead one, or a 410 from the
//! operational sink itself, is logged and counted
//! (`orderwatch_deliveries_total{sink,outcome="dead"|"gone"}`), and stays
//! in the ledger for `orderwatch redeliver --sink NAME --dead`.

use std::sync::Arc;
use std::time::Duration;

use super::{LoopContext, Mode, STORE_RETRIES_ONCE};
use crate::alert::render;
use crate::backoff;
use crate::sink::kind::{Message, Outcome, Sink};
use crate::sink::retry::{DeliveryPolicy, resolve};
use crate::store::{AlertEntry, Mark, StoreError};

/// The "status" of every alert, for sinks that route on it.
pub const ALERT_STATUS: &str = "alert";

/// Alerts fetched per query.
const BATCH: usize = 32;

/// One operational sink's loop.
pub struct AlertLoop {
    pub name: String,
    pub sink: Arc<dyn Sink>,
    pub policy: DeliveryPolicy,
    pub ctx: LoopContext,
    pub mode: Mode,
}

impl AlertLoop {
    fn now(&self) -> i64 {
        self.ctx.clock.now_ms()
    }

    /// Runs until shutdown (draining: until nothing is due); store errors
    /// are retried like the transitions' loop retries them.
    pub async fn run(self) -> Result<(), StoreError> {
        let mut failures: u32 = 0;
        loop {
            let Err(e) = self.run_once().await else {
                return Ok(());
            };
            if e.is_fatal() {
                return Err(e);
            }
            failures = failures.saturating_add(1);
            if self.mode == Mode::Drain && failures >= STORE_RETRIES_ONCE {
                tracing::error!(sink = %self.name, error = %e, "alert delivery stopped: the store keeps failing");
                return Err(e);
            }
            let wait =
                backoff::exponential(Duration::from_secs(1), Duration::from_secs(30), failures);
            tracing::error!(sink = %self.name, error = %e, retry_in = %humantime::format_duration(wait),
                "cannot update the alert ledger; alerts stay pending");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    async fn run_once(&self) -> Result<(), StoreError> {
        loop {
            if self.ctx.shutdown.is_cancelled() {
                return Ok(());
            }
            let paused = self.ctx.store.pause_of(&self.name).await?.is_some();
            if !paused {
                let due = self
                    .ctx
                    .store
                    .alerts_due(&self.name, self.now(), BATCH)
                    .await?;
                for alert in due {
                    if self.ctx.shutdown.is_cancelled() || !self.deliver(alert).await? {
                        break;
                    }
                }
            }
            let next = self.ctx.store.next_alert_due(&self.name).await?;
            if self.mode == Mode::Drain
                && self.ctx.recorded.is_cancelled()
                && (paused || next.is_none())
            {
                return Ok(());
            }
            let idle = if paused {
                self.ctx.watched.look_every()
            } else {
                self.ctx.watched.idle_until(next, self.now())
            };
            if idle.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = self.ctx.wake.notified() => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// Sends one alert and writes the outcome; false when the sink failed
    /// (the rest waits for the next round).
    async fn deliver(&self, alert: AlertEntry) -> Result<bool, StoreError> {
        let body = render(&alert, &self.ctx.source);
        let sent = self
            .sink
            .send(&Message {
                id: &alert.id,
                kind: &alert.kind,
                body: &body,
                order_id: None,
                // What a NATS subject's `{status}` and an exec sink's
                // ORDERWATCH_STATUS say: an alert, about no order.
                status: Some(ALERT_STATUS),
                previous_status: None,
            })
            .await;
        let now = self.now();
        let mark = resolve(&alert, &sent.outcome, &self.policy, now, rand::random());
        let (name, id) = (&self.name, &alert.id);
        let ok = match (&mark, &sent.outcome) {
            (Mark::Delivered, _) => {
                self.ctx.metrics.delivery(name, "delivered", 1);
                tracing::debug!(sink = %name, alert = %id, "alert delivered");
                true
            }
            (Mark::Retry { error, .. }, _) => {
                self.ctx.metrics.delivery(name, "retry", 1);
                tracing::warn!(sink = %name, alert = %id, error = %error, "alert delivery failed; will retry");
                false
            }
            (Mark::Dead { error }, Outcome::Gone { .. }) => {
                self.ctx.metrics.delivery(name, "gone", 1);
                tracing::error!(sink = %name, alert = %id, error = %error,
                    "operational sink answered 410 Gone: PAUSED until `orderwatch redeliver --sink {name} --dead` (no alert is raised about an alert sink)");
                self.ctx
                    .store
                    .pause(name, &format!("alert {id}: {error}"), now)
                    .await?;
                false
            }
            (Mark::Dead { error }, _) => {
                self.ctx.metrics.delivery(name, "dead", 1);
                tracing::error!(sink = %name, alert = %id, error = %error,
                    "alert delivery is dead (no alert is raised about an alert); resend with `orderwatch redeliver --sink {name} --dead`");
                true
            }
        };
        self.ctx
            .store
            .mark_alerts(name, vec![(alert.seq, mark)], now)
            .await?;
        Ok(ok)
    }
}
