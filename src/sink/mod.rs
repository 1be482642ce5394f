//! Sinks and the per-sink delivery loop.
//!
//! Every sink drains its own outbox in its own task, so a slow or dead sink
//! never holds up the poller or another sink. A sink kind only says how to
//! deliver a batch ([`Sink::deliver`]); the loop here owns everything else:
//! what is due, per-order ordering, concurrency, retries, giving up, pausing,
//! and recording each outcome in the ledger.
//!
//! While a receiver fails, a sink-wide breaker holds everything back
//! and probes with one request at a time, so a backlog never hammers a
//! receiver that is down, and its `Retry-After` holds the whole sink.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::config::{DeliveryPolicy, SinkConfig, SinkKind};
use crate::metrics::Metrics;
use crate::store::{Mark, OutboxEntry, Pause, SharedStore, SinkRoute, StoreError};
use crate::transition::now_ms;

pub mod file;
mod retry;
pub mod signature;
pub mod stdout;
pub mod webhook;

#[cfg(test)]
use retry::MIN_HOLD;
pub use retry::resolve;
use retry::{Breaker, Round, millis};

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

/// The outcome of a blocking write of a whole batch (file, stdout): every
/// entry shares it. `what` says what was tried ("append to /path"), for the
/// ledger's last error.
pub fn written(result: Result<std::io::Result<()>, tokio::task::JoinError>, what: &str) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Delivered,
        Ok(Err(e)) => Outcome::Retry {
            error: format!("cannot {what}: {e}"),
            retry_after: None,
        },
        Err(e) => Outcome::Retry {
            error: format!("cannot {what}: the writer failed: {e}"),
            retry_after: None,
        },
    }
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

/// Wakes every delivery loop after a commit. Each loop has its own
/// `Notify`, poked with `notify_one`, which keeps a permit while the loop is
/// busy: a wake-up is never lost, so new events go out at once.
#[derive(Clone, Default, Debug)]
pub struct Wake(Arc<Vec<Arc<Notify>>>);

impl Wake {
    pub fn new(loops: Vec<Arc<Notify>>) -> Wake {
        Wake(Arc::new(loops))
    }

    pub fn all(&self) {
        for n in self.0.iter() {
            n.notify_one();
        }
    }
}

/// Everything a delivery loop needs besides its sink.
#[derive(Clone)]
pub struct LoopContext {
    pub store: SharedStore,
    pub metrics: Arc<Metrics>,
    /// This loop's own wake-up, poked (via [`Wake`]) after each commit.
    pub wake: Arc<Notify>,
    /// `run --once`: a draining loop may finish only once this is cancelled
    /// (the cycle is over), since recording and delivering overlap.
    pub recorded: CancellationToken,
    pub shutdown: CancellationToken,
    /// In-flight deliveries get this long to finish after shutdown.
    pub grace: Duration,
}

/// How the store sees the sink of `cfg`: its name, filter, and whether it
/// delivers in recorded order (file, stdout), so the store keeps a cursor
/// for it instead of a row per event.
pub fn route(cfg: &SinkConfig) -> SinkRoute {
    SinkRoute {
        name: cfg.name.clone(),
        statuses: cfg.statuses.clone(),
        by_cursor: matches!(cfg.kind, SinkKind::Stdout | SinkKind::File { .. }),
    }
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
                route: route(cfg),
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

/// Store failures in a row after which `run --once` stops delivering.
const STORE_RETRIES_ONCE: u32 = 4;

/// Rows fetched per outbox query beyond what is in flight.
const PREFETCH: usize = 512;
/// While idle, paused or holding, look at the store this often for rows
/// queued by another process (`orderwatch redeliver`) or a lifted pause.
const IDLE_POLL: Duration = Duration::from_secs(1);

struct DeliveryLoop<S: Sink> {
    sink: Arc<S>,
    name: String,
    route: SinkRoute,
    policy: DeliveryPolicy,
    ctx: LoopContext,
    mode: Mode,
}

/// A finished `deliver` call: the batch and one outcome per entry.
type Attempt = (Vec<OutboxEntry>, Vec<Outcome>);

/// Outcomes of finished deliveries not yet written to the ledger.
#[derive(Default)]
struct Ledger {
    marks: Vec<(i64, Mark)>,
    /// Seqs in `marks` plus those in flight: never fetched again meanwhile.
    busy: HashSet<i64>,
}

impl<S: Sink> DeliveryLoop<S> {
    /// Runs the loop; a store error (disk full, read-only, I/O) does not end
    /// it: the deliveries stay pending in the store, the loop says so, waits
    /// with backoff and starts over from what the store says. Outcomes not
    /// yet written are lost with the attempt, so those deliveries go out again
    /// (at-least-once). `run --once` gives up after a few tries.
    async fn run(self) -> Result<(), StoreError> {
        let mut failures: u32 = 0;
        loop {
            let Err(e) = self.run_inner().await else {
                return Ok(());
            };
            failures = failures.saturating_add(1);
            if self.mode == Mode::Drain && failures >= STORE_RETRIES_ONCE {
                tracing::error!(sink = %self.name, error = %e, "delivery loop stopped: the store keeps failing");
                return Err(e);
            }
            let wait =
                backoff::exponential(Duration::from_secs(1), Duration::from_secs(30), failures);
            tracing::error!(sink = %self.name, error = %e, retry_in = %humantime::format_duration(wait),
                "cannot update the delivery ledger; deliveries stay pending and the sink starts over");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// The loop. Invariants:
    /// * a row is fetched only when no earlier row of its order is pending
    ///   (`Db::due`), and outcomes are written before every fetch, so one
    ///   order's events go out one at a time, in recorded order, whatever
    ///   the concurrency;
    /// * outcomes are written after every round of finished requests, so a
    ///   crash repeats at most the requests that were in flight;
    /// * nothing here waits on a receiver: requests run in their own tasks.
    async fn run_inner(&self) -> Result<(), StoreError> {
        let mut inflight: JoinSet<Attempt> = JoinSet::new();
        // Which seqs each request task carries, to release them if it panics.
        let mut carrying: HashMap<tokio::task::Id, Vec<i64>> = HashMap::new();
        let mut queue: VecDeque<OutboxEntry> = VecDeque::new();
        let mut ledger = Ledger::default();
        let mut breaker = Breaker::new(Instant::now());
        let mut paused = self.paused_at_start().await?;
        let mut last_check = Instant::now();

        loop {
            if self.ctx.shutdown.is_cancelled() {
                return self.finish(inflight, ledger).await;
            }
            if last_check.elapsed() >= IDLE_POLL {
                last_check = Instant::now();
                self.check_operator(&mut paused, &mut breaker).await?;
            }
            let holding = breaker.holding(Instant::now());
            let limit = breaker.limit(self.sink.concurrency());

            if queue.is_empty() && !paused && !holding && inflight.len() < limit {
                self.flush(&mut ledger).await?;
                let want = PREFETCH.max(self.sink.batch_size() * limit);
                let route = self.route.clone();
                let due = self.ctx.store.due(&route, now_ms(), want).await?;
                queue.extend(due.into_iter().filter(|e| !ledger.busy.contains(&e.seq())));
            }

            while !paused && !holding && inflight.len() < limit && !queue.is_empty() {
                let n = self.sink.batch_size().max(1).min(queue.len());
                let batch: Vec<OutboxEntry> = queue.drain(..n).collect();
                let seqs: Vec<i64> = batch.iter().map(OutboxEntry::seq).collect();
                ledger.busy.extend(seqs.iter().copied());
                let sink = Arc::clone(&self.sink);
                let task = inflight.spawn(async move {
                    let outcomes = sink.deliver(batch.clone()).await;
                    (batch, outcomes)
                });
                carrying.insert(task.id(), seqs);
            }

            if inflight.is_empty() && queue.is_empty() {
                self.flush(&mut ledger).await?;
                if self.mode == Mode::Drain
                    && self.ctx.recorded.is_cancelled()
                    && (paused || self.nothing_pending().await?)
                {
                    return Ok(());
                }
            }

            let idle = if inflight.is_empty() {
                self.idle_wait(paused, holding, breaker.hold_until).await?
            } else {
                IDLE_POLL
            };
            tokio::select! {
                first = inflight.join_next_with_id(), if !inflight.is_empty() => {
                    let mut round = Round::default();
                    let mut finished: Vec<_> = first.into_iter().collect();
                    while let Some(more) = inflight.try_join_next_with_id() {
                        finished.push(more);
                    }
                    for joined in finished {
                        match joined {
                            Ok((id, (batch, outcomes))) => {
                                carrying.remove(&id);
                                self.settle(batch, outcomes, &mut ledger, &mut round).await?;
                            }
                            Err(e) => {
                                // A sink panicked: its rows stay pending and go
                                // out again after the hold.
                                for seq in carrying.remove(&e.id()).unwrap_or_default() {
                                    ledger.busy.remove(&seq);
                                }
                                round.failed += 1;
                                tracing::error!(sink = %self.name, error = %e, "a delivery task failed; its deliveries stay pending");
                            }
                        }
                    }
                    self.flush(&mut ledger).await?;
                    if round.gone {
                        paused = true;
                    }
                    if round.failed > 0 {
                        let first_failure = !breaker.failing();
                        let hold = breaker.trip(&self.policy, round.retry_after, Instant::now(), now_ms(), rand::random());
                        if first_failure && !paused {
                            tracing::warn!(sink = %self.name, hold = %humantime::format_duration(round_ms(hold)),
                                "deliveries failing: holding the sink, then one request at a time until one succeeds");
                        }
                        // After the hold, read again what is due.
                        queue.clear();
                        self.expire_old(breaker.failing_since).await?;
                    } else if round.delivered > 0 && breaker.failing() {
                        let rounds = breaker.close(Instant::now());
                        let moved = self.retry_now().await?;
                        tracing::info!(sink = %self.name, failed_rounds = rounds, retries_due_now = moved,
                            "receiver recovered; delivering at full concurrency");
                    }
                }
                _ = self.ctx.wake.notified() => {}
                _ = self.ctx.recorded.cancelled(), if self.mode == Mode::Drain && !self.ctx.recorded.is_cancelled() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// What another process may have changed: `orderwatch redeliver` lifts a
    /// pause, and its requeued rows end a failure hold at once (the operator
    /// says the receiver is fixed; without this a long outage could keep the
    /// sink waiting up to `backoff_max`).
    async fn check_operator(
        &self,
        paused: &mut bool,
        breaker: &mut Breaker,
    ) -> Result<(), StoreError> {
        let was_paused = *paused;
        *paused = self.paused().await?;
        if was_paused && !*paused {
            breaker.close(Instant::now());
            tracing::info!(sink = %self.name, "sink resumed by `orderwatch redeliver`");
        } else if !*paused && breaker.failing() {
            let (name, since) = (self.name.clone(), breaker.failing_since.unwrap_or(0));
            let requeued = self.ctx.store.requeued_since(&name, since).await?;
            if requeued {
                breaker.close(Instant::now());
                tracing::info!(sink = %self.name, "deliveries queued again by `orderwatch redeliver`; ending the failure hold");
            }
        }
        Ok(())
    }

    /// How long to sleep when nothing is in flight: until the next row is
    /// due, the hold ends, or the idle poll.
    async fn idle_wait(
        &self,
        paused: bool,
        holding: bool,
        hold_until: Instant,
    ) -> Result<Duration, StoreError> {
        if paused {
            return Ok(IDLE_POLL);
        }
        if holding {
            return Ok(hold_until
                .saturating_duration_since(Instant::now())
                .min(IDLE_POLL));
        }
        let route = self.route.clone();
        let next = self.ctx.store.next_due(&route).await?;
        Ok(match next {
            Some(t) => {
                Duration::from_millis((t - now_ms()).clamp(0, millis(IDLE_POLL)).unsigned_abs())
            }
            None => IDLE_POLL,
        })
    }

    /// Turns outcomes into ledger marks and adds them up in `round`.
    async fn settle(
        &self,
        batch: Vec<OutboxEntry>,
        outcomes: Vec<Outcome>,
        ledger: &mut Ledger,
        round: &mut Round,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        for (entry, outcome) in batch.iter().zip(outcomes.iter()) {
            let mark = resolve(entry, outcome, &self.policy, now, rand::random());
            let id = crate::transition::event_id(entry.order_id(), &entry.transition.status);
            let attempt = entry.attempts + 1;
            if let Outcome::Retry {
                retry_after: Some(ra),
                ..
            } = outcome
            {
                round.retry_after = round.retry_after.max(Some(*ra));
            }
            match (&mark, outcome) {
                (Mark::Delivered, _) => {
                    round.delivered += 1;
                    self.ctx.metrics.delivery(&self.name, "delivered", 1);
                    tracing::debug!(sink = %self.name, event = %id, attempt, "delivered");
                }
                (
                    Mark::Retry {
                        error,
                        next_attempt_at,
                    },
                    _,
                ) => {
                    round.failed += 1;
                    self.ctx.metrics.delivery(&self.name, "retry", 1);
                    let wait = Duration::from_millis((next_attempt_at - now).max(0).unsigned_abs());
                    tracing::warn!(sink = %self.name, event = %id, attempt, error = %error,
                        retry_in = %humantime::format_duration(round_ms(wait)), "delivery failed; will retry");
                }
                (Mark::Dead { error }, Outcome::Gone { .. }) => {
                    round.failed += 1;
                    round.gone = true;
                    self.ctx.metrics.delivery(&self.name, "gone", 1);
                    tracing::error!(sink = %self.name, event = %id, attempt, error = %error,
                        "receiver answered 410 Gone: sink PAUSED, nothing more is sent to it until `orderwatch redeliver --sink {} --dead`", self.name);
                    let (name, reason) = (self.name.clone(), format!("event {id}: {error}"));
                    self.ctx.store.pause(&name, &reason, now).await?;
                }
                (Mark::Dead { error }, _) => {
                    round.failed += 1;
                    self.ctx.metrics.delivery(&self.name, "dead", 1);
                    tracing::error!(sink = %self.name, event = %id, attempt, error = %error,
                        "delivery is dead; see `orderwatch deliveries --state dead`, resend with `orderwatch redeliver --sink {} --dead`", self.name);
                }
            }
            ledger.marks.push((entry.seq(), mark));
        }
        if batch.len() != outcomes.len() {
            // A sink must answer for every entry; any it skipped stay pending.
            round.failed += 1;
            tracing::error!(sink = %self.name, "sink returned {} outcomes for {} deliveries", outcomes.len(), batch.len());
            for e in batch.iter().skip(outcomes.len()) {
                ledger.busy.remove(&e.seq());
            }
        }
        Ok(())
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
        self.ctx.store.mark(&name, marks, now_ms()).await
    }

    /// Once the receiver has been failing for `give_up_after`, gives up
    /// every delivery that has been undeliverable that long, tried or not.
    async fn expire_old(&self, failing_since: Option<i64>) -> Result<(), StoreError> {
        let Some(since) = failing_since else {
            return Ok(());
        };
        let give_up = self.policy.give_up_after;
        let now = now_ms();
        let cutoff = now.saturating_sub(millis(give_up));
        if since > cutoff {
            return Ok(());
        }
        let name = self.name.clone();
        let error = format!(
            "gave up after {} while the receiver was failing",
            humantime::format_duration(give_up)
        );
        let n = self.ctx.store.expire(&name, cutoff, &error, now).await?;
        if n > 0 {
            self.ctx.metrics.delivery(&self.name, "dead", n as u64);
            tracing::error!(sink = %self.name, count = n, give_up_after = %humantime::format_duration(give_up),
                "gave up deliveries: the receiver has been failing for longer than give_up_after; see `orderwatch deliveries --state dead`");
        }
        Ok(())
    }

    async fn retry_now(&self) -> Result<usize, StoreError> {
        let name = self.name.clone();
        self.ctx.store.retry_now(&name, now_ms()).await
    }

    async fn paused(&self) -> Result<bool, StoreError> {
        let name = self.name.clone();
        Ok(self.ctx.store.pause_of(&name).await?.is_some())
    }

    /// Reads the stored pause, saying loudly at start that nothing will be
    /// sent: a pause outlives restarts.
    async fn paused_at_start(&self) -> Result<bool, StoreError> {
        let name = self.name.clone();
        let pause = self.ctx.store.pause_of(&name).await?;
        if let Some(Pause { since, reason }) = &pause {
            tracing::error!(sink = %self.name, since = %crate::event::format_time(*since), reason = %reason,
                "sink is PAUSED (its receiver answered 410 Gone); nothing is sent to it until `orderwatch redeliver --sink {} --dead`", self.name);
        }
        Ok(pause.is_some())
    }

    async fn nothing_pending(&self) -> Result<bool, StoreError> {
        let route = self.route.clone();
        Ok(self.ctx.store.next_due(&route).await?.is_none())
    }

    /// Shutdown: give in-flight deliveries the grace period, record what
    /// finished. Anything still in flight stays pending and goes out after
    /// the restart (at-least-once).
    async fn finish(
        &self,
        mut inflight: JoinSet<Attempt>,
        mut ledger: Ledger,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.ctx.grace;
        let mut round = Round::default();
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(Ok((batch, outcomes)))) => {
                    self.settle(batch, outcomes, &mut ledger, &mut round)
                        .await?;
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

/// A duration rounded to milliseconds, for logs.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
