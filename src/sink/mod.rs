//! Sinks and the per-sink delivery loop.
//!
//! Every sink drains its own outbox in its own task, so a slow or dead sink
//! never holds up the poller or another sink. A sink kind only says how to
//! deliver a batch ([`Sink::deliver`]); the loop here owns everything else:
//! what is due, per-order ordering, concurrency, retries, giving up, pausing,
//! and recording each outcome in the ledger.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::config::{DeliveryPolicy, SinkConfig, SinkKind};
use crate::metrics::Metrics;
use crate::store::{Mark, OutboxEntry, Store, StoreError, now_ms};

pub mod file;
pub mod signature;
pub mod stdout;
pub mod webhook;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later (network error, timeout, 408, 429, 5xx, 3xx, I/O error).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Never retry (other 4xx).
    Dead {
        error: String,
    },
    /// 410 Gone: dead, and the sink pauses until `orderwatch redeliver`.
    Gone {
        error: String,
    },
}

/// A kind of sink.
pub trait Sink: Send + Sync + 'static {
    /// Delivers a batch; returns one outcome per entry, in order.
    fn deliver(&self, batch: Vec<OutboxEntry>) -> impl Future<Output = Vec<Outcome>> + Send;
    /// Entries per `deliver` call.
    fn batch_size(&self) -> usize;
    /// `deliver` calls in flight at once.
    fn concurrency(&self) -> usize;
    /// Reopen files (SIGHUP after logrotate). Default: nothing to reopen.
    fn reopen(&self) {}
}

/// How long a loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until shutdown.
    Daemon,
    /// Until nothing is pending (delivered, dead or paused): `run --once`.
    Drain,
}

/// How an attempt's outcome is written to the ledger. Pure.
pub fn resolve(
    entry: &OutboxEntry,
    outcome: &Outcome,
    policy: &DeliveryPolicy,
    now: i64,
    unit: f64,
) -> Mark {
    match outcome {
        Outcome::Delivered => Mark::Delivered,
        Outcome::Dead { error } | Outcome::Gone { error } => Mark::Dead {
            error: error.clone(),
        },
        Outcome::Retry { error, retry_after } => {
            let give_up_at = entry.created_at + policy.give_up_after.as_millis() as i64;
            let delay = backoff::next_delay(
                policy.backoff_initial,
                policy.backoff_max,
                entry.attempts + 1,
                *retry_after,
                unit,
            );
            let next = now + delay.as_millis() as i64;
            if now >= give_up_at {
                Mark::Dead {
                    error: format!(
                        "gave up after {}: {error}",
                        humantime::format_duration(policy.give_up_after)
                    ),
                }
            } else {
                Mark::Retry {
                    next_attempt_at: next,
                    error: error.clone(),
                }
            }
        }
    }
}

/// Everything a delivery loop needs besides its sink.
#[derive(Clone)]
pub struct LoopContext {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    /// Poked after each commit so new rows go out at once.
    pub wake: Arc<Notify>,
    pub shutdown: CancellationToken,
    /// In-flight deliveries get this long to finish after shutdown.
    pub grace: Duration,
}

/// Builds the sink for `cfg`; secrets are read here.
pub fn build(cfg: &SinkConfig, source: &str) -> Result<AnySink, anyhow::Error> {
    Ok(match &cfg.kind {
        SinkKind::Stdout => AnySink::Stdout(stdout::StdoutSink::new(source)),
        SinkKind::File { path } => AnySink::File(file::FileSink::new(path.clone(), source)),
        SinkKind::Webhook { .. } => AnySink::Webhook(webhook::WebhookSink::new(cfg, source)?),
    })
}

/// One of the sink kinds, so a daemon can hold a list of them.
pub enum AnySink {
    Stdout(stdout::StdoutSink),
    File(file::FileSink),
    Webhook(webhook::WebhookSink),
}

/// A running sink: its name and a way to ask it to reopen files.
pub struct SinkHandle {
    pub name: String,
    reopen: Arc<dyn Fn() + Send + Sync>,
}

impl SinkHandle {
    pub fn reopen(&self) {
        (self.reopen)()
    }
}

impl AnySink {
    /// Spawns the sink's delivery loop into `tasks`.
    pub fn spawn(
        self,
        cfg: &SinkConfig,
        ctx: LoopContext,
        mode: Mode,
        tasks: &mut JoinSet<Result<(), StoreError>>,
    ) -> SinkHandle {
        fn go<S: Sink>(
            sink: S,
            cfg: &SinkConfig,
            ctx: LoopContext,
            mode: Mode,
            tasks: &mut JoinSet<Result<(), StoreError>>,
        ) -> SinkHandle {
            let sink = Arc::new(sink);
            let for_reopen = Arc::clone(&sink);
            let runner = DeliveryLoop {
                sink,
                name: cfg.name.clone(),
                policy: cfg.retry,
                ctx,
                mode,
            };
            tasks.spawn(runner.run());
            SinkHandle {
                name: cfg.name.clone(),
                reopen: Arc::new(move || for_reopen.reopen()),
            }
        }
        match self {
            AnySink::Stdout(s) => go(s, cfg, ctx, mode, tasks),
            AnySink::File(s) => go(s, cfg, ctx, mode, tasks),
            AnySink::Webhook(s) => go(s, cfg, ctx, mode, tasks),
        }
    }
}

/// Rows fetched per outbox query beyond what is in flight.
const PREFETCH: usize = 512;
/// While idle, look at the store this often for rows queued by another
/// process (`orderwatch redeliver`) or a lifted pause.
const IDLE_POLL: Duration = Duration::from_secs(1);

struct DeliveryLoop<S: Sink> {
    sink: Arc<S>,
    name: String,
    policy: DeliveryPolicy,
    ctx: LoopContext,
    mode: Mode,
}

/// Outcomes of finished deliveries not yet written to the ledger.
#[derive(Default)]
struct Ledger {
    marks: Vec<(i64, Mark)>,
    /// Seqs in `marks` plus those in flight: never fetched again meanwhile.
    busy: HashSet<i64>,
}

impl<S: Sink> DeliveryLoop<S> {
    async fn run(self) -> Result<(), StoreError> {
        let name = self.name.clone();
        let result = self.run_inner().await;
        if let Err(e) = &result {
            tracing::error!(sink = %name, error = %e, "delivery loop stopped");
        }
        result
    }

    async fn run_inner(&self) -> Result<(), StoreError> {
        let mut inflight: JoinSet<(Vec<OutboxEntry>, Vec<Outcome>)> = JoinSet::new();
        let mut queue: VecDeque<OutboxEntry> = VecDeque::new();
        let mut ledger = Ledger::default();
        // Consecutive failed attempts: while > 0 the receiver is presumed
        // down and only one probe at a time goes out, spaced by backoff.
        let mut failures: u32 = 0;
        let mut hold_until = tokio::time::Instant::now();
        let mut paused = self.paused().await?;
        let mut last_pause_check = tokio::time::Instant::now();

        loop {
            if self.ctx.shutdown.is_cancelled() {
                return self.finish(inflight, ledger).await;
            }
            if last_pause_check.elapsed() >= IDLE_POLL {
                paused = self.paused().await?;
                last_pause_check = tokio::time::Instant::now();
            }
            let holding = tokio::time::Instant::now() < hold_until;
            let limit = if failures > 0 {
                1
            } else {
                self.sink.concurrency()
            };

            if queue.is_empty() && !paused && !holding && inflight.len() < limit {
                self.flush(&mut ledger).await?;
                let want = PREFETCH.max(self.sink.batch_size() * limit);
                let name = self.name.clone();
                let due = self
                    .ctx
                    .store
                    .run(move |db| db.due(&name, now_ms(), want))
                    .await?;
                queue.extend(due.into_iter().filter(|e| !ledger.busy.contains(&e.seq())));
            }

            while !paused && !holding && inflight.len() < limit && !queue.is_empty() {
                let n = self.sink.batch_size().min(queue.len());
                let batch: Vec<OutboxEntry> = queue.drain(..n).collect();
                ledger.busy.extend(batch.iter().map(OutboxEntry::seq));
                let sink = Arc::clone(&self.sink);
                inflight.spawn(async move {
                    let outcomes = sink.deliver(batch.clone()).await;
                    (batch, outcomes)
                });
            }

            if inflight.is_empty() && queue.is_empty() {
                self.flush(&mut ledger).await?;
                if self.mode == Mode::Drain && (paused || self.nothing_pending().await?) {
                    return Ok(());
                }
            }

            let idle = self.idle_wait(paused, holding, hold_until).await?;
            tokio::select! {
                joined = inflight.join_next(), if !inflight.is_empty() => {
                    if let Some(Ok((batch, outcomes))) = joined {
                        let ok = self.settle(batch, outcomes, &mut ledger).await?;
                        if ok {
                            failures = 0;
                        } else {
                            failures += 1;
                            let wait = backoff::full_jitter(
                                backoff::exponential(self.policy.backoff_initial, self.policy.backoff_max, failures),
                                rand::random(),
                            ).max(Duration::from_millis(100));
                            hold_until = tokio::time::Instant::now() + wait;
                            // Drop prefetched rows: after the hold, re-read what is due.
                            for e in queue.drain(..) {
                                ledger.busy.remove(&e.seq());
                            }
                            self.expire_old().await?;
                        }
                        if ledger.marks.len() >= 256 {
                            self.flush(&mut ledger).await?;
                        }
                    }
                }
                _ = self.ctx.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// How long to sleep when nothing finishes: until the next row is due,
    /// the hold ends, or the idle poll.
    async fn idle_wait(
        &self,
        paused: bool,
        holding: bool,
        hold_until: tokio::time::Instant,
    ) -> Result<Duration, StoreError> {
        if paused {
            return Ok(IDLE_POLL);
        }
        if holding {
            return Ok(hold_until
                .saturating_duration_since(tokio::time::Instant::now())
                .min(IDLE_POLL));
        }
        let name = self.name.clone();
        let next = self.ctx.store.run(move |db| db.next_due(&name)).await?;
        Ok(match next {
            Some(t) => {
                Duration::from_millis((t - now_ms()).clamp(0, IDLE_POLL.as_millis() as i64) as u64)
            }
            None => IDLE_POLL,
        })
    }

    /// Turns outcomes into ledger marks; returns false if any attempt failed.
    async fn settle(
        &self,
        batch: Vec<OutboxEntry>,
        outcomes: Vec<Outcome>,
        ledger: &mut Ledger,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let mut all_ok = true;
        for (entry, outcome) in batch.iter().zip(outcomes.iter()) {
            let mark = resolve(entry, outcome, &self.policy, now, rand::random());
            let id = crate::event::event_id(entry.order_id(), &entry.transition.status);
            match (&mark, outcome) {
                (Mark::Delivered, _) => self.ctx.metrics.delivery(&self.name, "delivered", 1),
                (
                    Mark::Retry {
                        error,
                        next_attempt_at,
                    },
                    _,
                ) => {
                    all_ok = false;
                    self.ctx.metrics.delivery(&self.name, "retry", 1);
                    tracing::warn!(sink = %self.name, event = %id, attempt = entry.attempts + 1, error = %error,
                        retry_in_s = (next_attempt_at - now) / 1000, "delivery failed; will retry");
                }
                (Mark::Dead { error }, Outcome::Gone { .. }) => {
                    all_ok = false;
                    self.ctx.metrics.delivery(&self.name, "gone", 1);
                    tracing::error!(sink = %self.name, event = %id, error = %error,
                        "receiver answered 410 Gone: sink PAUSED until `orderwatch redeliver --sink {}`", self.name);
                    let (name, reason) = (self.name.clone(), error.clone());
                    self.ctx
                        .store
                        .run(move |db| db.pause(&name, &reason, now))
                        .await?;
                }
                (Mark::Dead { error }, _) => {
                    all_ok = false;
                    self.ctx.metrics.delivery(&self.name, "dead", 1);
                    tracing::error!(sink = %self.name, event = %id, error = %error,
                        "delivery is dead; see `orderwatch deliveries --state dead`");
                }
            }
            ledger.marks.push((entry.seq(), mark));
        }
        if batch.len() != outcomes.len() {
            // A sink must answer for every entry; any it skipped stay pending.
            tracing::error!(sink = %self.name, "sink returned {} outcomes for {} deliveries", outcomes.len(), batch.len());
            for e in batch.iter().skip(outcomes.len()) {
                ledger.busy.remove(&e.seq());
            }
        }
        Ok(all_ok)
    }

    async fn flush(&self, ledger: &mut Ledger) -> Result<(), StoreError> {
        if ledger.marks.is_empty() {
            return Ok(());
        }
        let marks = std::mem::take(&mut ledger.marks);
        for (seq, _) in &marks {
            ledger.busy.remove(seq);
        }
        let name = self.name.clone();
        self.ctx
            .store
            .run(move |db| db.mark(&name, &marks, now_ms()))
            .await
    }

    async fn expire_old(&self) -> Result<(), StoreError> {
        let name = self.name.clone();
        let give_up = self.policy.give_up_after;
        let n = self
            .ctx
            .store
            .run(move |db| {
                let now = now_ms();
                let error = format!(
                    "gave up after {} while the receiver was failing",
                    humantime::format_duration(give_up)
                );
                db.expire(&name, now - give_up.as_millis() as i64, &error, now)
            })
            .await?;
        if n > 0 {
            self.ctx.metrics.delivery(&self.name, "dead", n as u64);
            tracing::error!(sink = %self.name, count = n, "gave up deliveries older than give_up_after");
        }
        Ok(())
    }

    async fn paused(&self) -> Result<bool, StoreError> {
        let name = self.name.clone();
        Ok(self
            .ctx
            .store
            .run(move |db| db.paused(&name))
            .await?
            .is_some())
    }

    async fn nothing_pending(&self) -> Result<bool, StoreError> {
        let name = self.name.clone();
        Ok(self
            .ctx
            .store
            .run(move |db| db.next_due(&name))
            .await?
            .is_none())
    }

    /// Shutdown: give in-flight deliveries the grace period, record what
    /// finished. Anything still in flight stays pending and goes out after
    /// the restart (at-least-once).
    async fn finish(
        &self,
        mut inflight: JoinSet<(Vec<OutboxEntry>, Vec<Outcome>)>,
        mut ledger: Ledger,
    ) -> Result<(), StoreError> {
        let deadline = tokio::time::Instant::now() + self.ctx.grace;
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(Ok((batch, outcomes)))) => {
                    self.settle(batch, outcomes, &mut ledger).await?;
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(sink = %self.name, in_flight = inflight.len(), "grace period over; unfinished deliveries stay pending");
                    inflight.abort_all();
                    break;
                }
            }
        }
        self.flush(&mut ledger).await
    }
}

#[cfg(test)]
mod tests;
