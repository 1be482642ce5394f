//! The enrichment stage: events a receiver can act on without an API key.
//!
//! With `[enrich] order_details = true`, a new transition is *held* in the
//! store from the transaction that records it (see [`Hold`]) until this
//! stage has looked its order up with CertCentral's order info endpoint and
//! stored the details with it: the poller never waits for lookups, and a
//! sink sees each event once, already enriched. Held transitions of one
//! order share a lookup.
//!
//! Lookups take at most `[enrich] max_share` of the client's request budget
//! (their own [`Pacer`], then the shared one, so polls always keep the rest
//! and a burst never starves them). A failing lookup is tried again with
//! backoff, kept in the store (so a restart does not forget it); after
//! `give_up_after` from its transition's recording, or at once after a
//! 404, the event goes out with `"order": null`, and the log and
//! `orderwatch_enrich_lookups_total` say why. Nothing is dropped, and
//! nothing waits forever because of enrichment.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub mod details;

use crate::backoff;
use crate::certcentral::ChangeSource;
use crate::config::EnrichConfig;
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::sink::{Wake, Watched};
use crate::store::{Hold, Lookup, LookupBacklog, LookupOutcome, SharedStore, StoreError};
use crate::transition::Clock;

/// Lookups in flight at once: the budget paces them; this only overlaps
/// their latency.
const CONCURRENCY: usize = 4;
/// Retries back off from here...
const RETRY_INITIAL: Duration = Duration::from_secs(5);
/// ...to at most this.
const RETRY_MAX: Duration = Duration::from_secs(300);
/// After a store failure, try again this much later.
const STORE_PAUSE: Duration = Duration::from_secs(5);
/// A backlog line at most this often.
const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(300);

/// `data.order` of a lookup that found nothing or gave up.
pub const NO_DETAILS: &str = "null";

/// Which new transitions to hold for `config`.
pub fn hold(config: Option<&EnrichConfig>) -> Hold {
    match config {
        None => Hold::Nothing,
        Some(c) => match &c.statuses {
            None => Hold::All,
            Some(list) => Hold::Statuses(list.clone().into()),
        },
    }
}

/// The enrichment stage of one configuration generation.
pub struct Enricher {
    pub source: Arc<dyn ChangeSource>,
    pub store: SharedStore,
    pub config: EnrichConfig,
    /// Lookups' share of the request budget.
    pub budget: Arc<Pacer>,
    /// Its rate, for the backlog's arithmetic.
    pub per_minute: u32,
    pub metrics: Arc<Metrics>,
    /// The delivery loops, woken when transitions are released.
    pub sinks: Wake,
    /// Poked (by the poller) when transitions were held.
    pub held: Arc<Notify>,
    pub clock: Clock,
    /// The longest wait between looks at the store: held transitions are
    /// announced, but a missed announcement must not cost more than a
    /// second; the store watch, while on, tells of every change.
    pub watched: Watched,
}

/// Lookups in flight, and the order each task is for (so a lookup still
/// in flight is not started twice, and a task that panicked frees its
/// order for another try).
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<(Lookup, LookupOutcome)>,
    orders: HashMap<tokio::task::Id, i64>,
}

impl InFlight {
    fn busy(&self, order_id: i64) -> bool {
        self.orders.values().any(|o| *o == order_id)
    }
}

impl Enricher {
    /// Looks orders up as their transitions are held, until `stop`. Store
    /// failures are logged and tried again: enrichment never stops the
    /// daemon, and held transitions stay held until it can go on. Only a
    /// store that can no longer be used at all ([`StoreError::is_fatal`],
    /// e.g. a lost leadership) ends it, with that error.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<(), StoreError> {
        self.run(None, stop).await
    }

    /// `run --once`: looks up until `recorded` (the cycle is over) and
    /// nothing is held any more (every held transition released, with
    /// details or after giving up), or `stop`.
    pub async fn drain(
        self,
        recorded: CancellationToken,
        stop: CancellationToken,
    ) -> Result<(), StoreError> {
        self.run(Some(recorded), stop).await
    }

    /// Keeps up to [`CONCURRENCY`] lookups in flight and stores each
    /// outcome as it comes, so a released event goes out at once. With
    /// `drain`, returns once it is cancelled and nothing is held.
    async fn run(
        self,
        drain: Option<CancellationToken>,
        stop: CancellationToken,
    ) -> Result<(), StoreError> {
        let this = Arc::new(self);
        let mut inflight = InFlight::default();
        let mut last_log = None;
        loop {
            let over = drain.as_ref().is_some_and(CancellationToken::is_cancelled);
            let wait = match this.refill(&mut inflight, &mut last_log).await {
                Ok(backlog) if over && backlog.transitions == 0 && inflight.tasks.is_empty() => {
                    return Ok(());
                }
                Ok(backlog) => this.wait_for(&backlog),
                Err(e) if drain.is_some() || e.is_fatal() => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "order details: cannot read the store; trying again");
                    STORE_PAUSE
                }
            };
            tokio::select! {
                Some(done) = inflight.tasks.join_next_with_id(), if !inflight.tasks.is_empty() => {
                    let (lookup, outcome) = match done {
                        Ok((id, finished)) => {
                            inflight.orders.remove(&id);
                            finished
                        }
                        Err(e) => {
                            // A lookup task panicked: its order is tried again.
                            inflight.orders.remove(&e.id());
                            tracing::error!(error = %e, "order details: a lookup failed unexpectedly; it is made again");
                            continue;
                        }
                    };
                    match this.finish(lookup, outcome).await {
                        Ok(()) => {}
                        Err(e) if drain.is_some() || e.is_fatal() => return Err(e),
                        Err(e) => tracing::error!(error = %e, "order details: cannot store a lookup; it is made again"),
                    }
                }
                _ = this.held.notified() => {}
                _ = cancelled(drain.as_ref()), if !over => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }

    /// Starts due lookups while there is room; the backlog (as a metric,
    /// and a line while it is long).
    async fn refill(
        self: &Arc<Self>,
        inflight: &mut InFlight,
        last_log: &mut Option<tokio::time::Instant>,
    ) -> Result<LookupBacklog, StoreError> {
        let room = CONCURRENCY.saturating_sub(inflight.tasks.len());
        if room > 0 {
            let now = self.clock.now_ms();
            let due = self
                .store
                .lookups_due(now, room + inflight.orders.len())
                .await?;
            let fresh: Vec<Lookup> = due
                .into_iter()
                .filter(|l| !inflight.busy(l.order_id))
                .take(room)
                .collect();
            for lookup in fresh {
                let order_id = lookup.order_id;
                let this = Arc::clone(self);
                let task = inflight
                    .tasks
                    .spawn(async move { this.look_up(lookup).await });
                inflight.orders.insert(task.id(), order_id);
            }
        }
        let backlog = self.store.lookup_backlog().await?;
        self.metrics.enrich_backlog(backlog.transitions);
        self.log_backlog(&backlog, last_log);
        Ok(backlog)
    }

    /// Stores one lookup's outcome; a release wakes the sinks.
    async fn finish(&self, lookup: Lookup, outcome: LookupOutcome) -> Result<(), StoreError> {
        let releases = matches!(outcome, LookupOutcome::Release { .. });
        self.store
            .lookups_done(vec![(lookup, outcome)], self.clock.now_ms())
            .await?;
        if releases {
            self.sinks.all();
        }
        Ok(())
    }

    /// How long to sleep with this backlog: until its next lookup is due,
    /// at most until the next look (lookups finishing, new held
    /// transitions and the store watch wake the loop sooner).
    fn wait_for(&self, backlog: &LookupBacklog) -> Duration {
        let idle = self.watched.look_every();
        // One reading of the clock: two could straddle `due`, and a
        // negative wait cast to u64 would be a sleep of ages.
        let now = self.clock.now_ms();
        match backlog.next_due {
            Some(due) if due > now => {
                Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(idle)
            }
            _ => idle,
        }
    }

    /// One order: give up, or ask CertCentral and read the answer.
    async fn look_up(&self, lookup: Lookup) -> (Lookup, LookupOutcome) {
        let deadline = lookup
            .held_since
            .saturating_add(self.config.give_up_after.as_millis() as i64);
        if self.clock.now_ms() >= deadline {
            self.metrics.enrich_lookup("given_up");
            tracing::warn!(
                order_id = lookup.order_id,
                events = lookup.seqs.len(),
                attempts = lookup.attempts,
                last_error = lookup.last_error.as_deref().unwrap_or("-"),
                "order details: gave up after {} ([enrich] give_up_after); the events go out with \"order\": null",
                humantime::format_duration(self.config.give_up_after)
            );
            return release(lookup, NO_DETAILS.to_string());
        }
        let answer = self.source.order_info(lookup.order_id, &self.budget).await;
        let outcome = match answer {
            Ok(Some(info)) => match details::extract(lookup.order_id, &info) {
                Ok((json, dropped)) => {
                    if !dropped.is_empty() {
                        tracing::warn!(order_id = lookup.order_id, fields = ?dropped, "order details: fields of an unexpected type were left out");
                    }
                    self.metrics.enrich_lookup("ok");
                    return release(lookup, json);
                }
                Err(why) => format!("unusable order info: {why}"),
            },
            Ok(None) => {
                self.metrics.enrich_lookup("not_found");
                tracing::info!(
                    order_id = lookup.order_id,
                    "order details: CertCentral has no such order (404); the events go out with \"order\": null"
                );
                return release(lookup, NO_DETAILS.to_string());
            }
            Err(e) => e.to_string(),
        };
        self.metrics.enrich_lookup("retry");
        let next = self.retry_at(lookup.attempts + 1).min(deadline);
        tracing::debug!(order_id = lookup.order_id, error = %outcome, "order details: lookup failed; trying again");
        let retry = LookupOutcome::Retry {
            next_attempt_at: next,
            error: outcome,
        };
        (lookup, retry)
    }

    /// When attempt `attempt + 1` is due: exponential, half of it jittered,
    /// so retries never come back at once.
    fn retry_at(&self, attempt: u32) -> i64 {
        let base = backoff::exponential(RETRY_INITIAL, RETRY_MAX, attempt);
        let unit: f64 = rand::random();
        let delay = base.mul_f64(0.5 + unit / 2.0);
        self.clock.now_ms() + delay.as_millis() as i64
    }

    /// While the backlog is more than a couple of minutes of lookups, says
    /// how long it will take, at most every [`BACKLOG_LOG_EVERY`].
    fn log_backlog(&self, backlog: &LookupBacklog, last: &mut Option<tokio::time::Instant>) {
        let rate = u64::from(self.per_minute.max(1));
        if backlog.orders <= 2 * rate || last.is_some_and(|t| t.elapsed() < BACKLOG_LOG_EVERY) {
            return;
        }
        *last = Some(tokio::time::Instant::now());
        let eta = Duration::from_secs(backlog.orders.div_ceil(rate) * 60);
        tracing::info!(
            orders = backlog.orders,
            events = backlog.transitions,
            "order details: {} lookups waiting, about {} at {rate} a minute ([enrich] max_share of max_requests_per_minute); their events go out as their lookups finish",
            backlog.orders,
            humantime::format_duration(eta)
        );
    }
}

/// With enrichment off, nothing may stay held (it was turned off while
/// transitions waited): they go out as they are, without `data.order`.
pub async fn release_held(store: SharedStore, sinks: Wake) -> Result<(), StoreError> {
    let released = store.release_held().await?;
    if released > 0 {
        tracing::warn!(
            events = released,
            "[enrich] is off: releasing events that waited for order details; they go out without them"
        );
        sinks.all();
    }
    Ok(())
}

/// Resolves when `token` is cancelled; never without one.
async fn cancelled(token: Option<&CancellationToken>) {
    match token {
        Some(t) => t.cancelled().await,
        None => std::future::pending().await,
    }
}

fn release(lookup: Lookup, details: String) -> (Lookup, LookupOutcome) {
    (lookup, LookupOutcome::Release { details })
}

#[cfg(test)]
mod tests;
