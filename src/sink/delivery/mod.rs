//! The per-sink delivery loop: one task per sink drains that sink's outbox,
//! so a slow or dead sink never holds up the poller or another sink.
//!
//! A sink kind only says what one attempt did ([`Outcome`]); the loop owns
//! everything else: what is due, per-order ordering, concurrency, retries,
//! giving up, pausing, and writing each outcome to the ledger.
//!
//! While a receiver fails, a sink-wide breaker holds everything back and
//! probes with one request at a time, so a backlog never hammers a receiver
//! that is down, and its `Retry-After` holds the whole sink.
//!
//! Invariants:
//! * a delivery is fetched only when no earlier delivery of its order is
//!   pending (`Store::due`), and outcomes are written before every fetch,
//!   so one order's events go out one at a time, in recorded order,
//!   whatever the concurrency;
//! * outcomes are written behind the requests: while one round's commit is
//!   under way the next requests go out and the rounds finishing meanwhile
//!   share the next commit, but no request starts while more than
//!   `concurrency` batches' outcomes are unwritten. A crash repeats at most
//!   what was in flight or unwritten: twice the concurrency;
//! * nothing here waits on a receiver: requests run in their own tasks.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod absorb;
pub mod alerts;
mod ledger;
pub mod watch;

use super::kind::{Batch, Outcome, Sink};
use super::retry::{Breaker, DeliveryPolicy, Round};
use crate::backoff;
use crate::metrics::Metrics;
use crate::store::{OutboxEntry, Pause, SharedStore, SinkRoute, StoreError};
use crate::transition::Clock;
use ledger::Unflushed;
use watch::Watched;

/// Store failures in a row after which `run --once` stops delivering.
const STORE_RETRIES_ONCE: u32 = 4;
/// Rows fetched per outbox query beyond what is in flight.
const PREFETCH: usize = 512;
/// While idle, paused or holding, look at the store this often for rows
/// queued by another process (`orderwatch redeliver`) or a lifted pause,
/// unless the store watch ([`watch`]) tells when something changed.
const IDLE_POLL: Duration = Duration::from_secs(1);

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

    /// These loops and one more listener (the enrichment stage, which the
    /// poller wakes when it held transitions).
    pub fn with(&self, extra: Arc<Notify>) -> Wake {
        let mut all: Vec<Arc<Notify>> = self.0.iter().cloned().collect();
        all.push(extra);
        Wake::new(all)
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
    /// The ledger's clock: the system's, or tokio's in tests.
    pub clock: Clock,
    /// Every event's `source` (the API base URL): alerts are rendered here.
    pub source: Arc<str>,
    /// Whether the store watch wakes this loop on every change (then an
    /// idle loop sleeps until its next due time).
    pub watched: Watched,
}

/// One sink's delivery loop.
pub struct DeliveryLoop {
    pub sink: Arc<dyn Sink>,
    pub route: SinkRoute,
    pub policy: DeliveryPolicy,
    pub ctx: LoopContext,
    pub mode: Mode,
}

/// A finished `deliver` call: the batch and one outcome per entry.
type Attempt = (Batch, Vec<Outcome>);

/// What one run of the loop keeps between iterations.
struct State {
    inflight: JoinSet<Attempt>,
    /// What each request task carries: its seqs, to release them if it
    /// panics, and the breaker epoch it was sent in.
    carrying: HashMap<tokio::task::Id, Carried>,
    queue: VecDeque<OutboxEntry>,
    spare: Spare,
    unflushed: Unflushed,
    breaker: Breaker,
    paused: bool,
    /// Woken since the last look at the pause: the store may have changed.
    woken: bool,
    last_check: Instant,
}

/// One request task's seqs and the breaker epoch it was sent in.
struct Carried {
    seqs: Vec<i64>,
    epoch: u64,
}

impl DeliveryLoop {
    fn name(&self) -> &str {
        &self.route.name
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now_ms()
    }

    /// Runs the loop; a store error (disk full, read-only, I/O) does not end
    /// it: the deliveries stay pending in the store, the loop says so, waits
    /// with backoff and starts over from what the store says. Outcomes not
    /// yet written are lost with the attempt, so those deliveries go out again
    /// (at-least-once). `run --once` gives up after a few tries.
    pub async fn run(self) -> Result<(), StoreError> {
        let mut failures: u32 = 0;
        loop {
            let Err(e) = self.run_once().await else {
                return Ok(());
            };
            if e.is_fatal() {
                // A node that no longer leads says so once, in the daemon.
                if !e.ends_leadership() {
                    tracing::error!(sink = %self.name(), error = %e, "delivery loop stopped");
                }
                return Err(e);
            }
            failures = failures.saturating_add(1);
            if self.mode == Mode::Drain && failures >= STORE_RETRIES_ONCE {
                tracing::error!(sink = %self.name(), error = %e, "delivery loop stopped: the store keeps failing");
                return Err(e);
            }
            let wait =
                backoff::exponential(Duration::from_secs(1), Duration::from_secs(30), failures);
            tracing::error!(sink = %self.name(), error = %e, retry_in = %humantime::format_duration(wait),
                "cannot update the delivery ledger; deliveries stay pending and the sink starts over");
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.ctx.shutdown.cancelled() => return Ok(()),
            }
        }
    }

    /// The loop until shutdown (or, draining, until nothing is pending); a
    /// store error ends it and [`DeliveryLoop::run`] starts it over.
    async fn run_once(&self) -> Result<(), StoreError> {
        let mut st = State {
            inflight: JoinSet::new(),
            carrying: HashMap::new(),
            queue: VecDeque::new(),
            spare: Spare::default(),
            unflushed: Unflushed::default(),
            breaker: Breaker::new(Instant::now()),
            paused: self.paused_at_start().await?,
            woken: false,
            last_check: Instant::now(),
        };
        loop {
            if self.ctx.shutdown.is_cancelled() {
                return self.finish(st.inflight, st.unflushed).await;
            }
            if st.woken || st.last_check.elapsed() >= self.ctx.watched.look_every() {
                st.woken = false;
                st.last_check = Instant::now();
                self.check_operator(&mut st.paused, &mut st.breaker).await?;
            }
            let holding = st.breaker.holding(Instant::now());
            let limit = st.breaker.limit(self.sink.concurrency());
            let open = !st.paused && !holding && st.inflight.len() < limit;
            if open && st.queue.is_empty() {
                self.refill(&mut st, limit).await?;
            }
            if open {
                self.dispatch(&mut st, limit);
            }
            if !open && !st.paused && !holding {
                self.prefetch(&mut st).await?;
            }
            if st.inflight.is_empty() && st.queue.is_empty() {
                self.flush(&mut st.unflushed).await?;
                if self.drained(st.paused).await? {
                    return Ok(());
                }
            }
            let idle = if st.inflight.is_empty() && !st.unflushed.is_writing() {
                self.idle_wait(st.paused, holding, st.breaker.hold_until)
                    .await?
            } else {
                IDLE_POLL
            };
            tokio::select! {
                first = st.inflight.join_next_with_id(), if !st.inflight.is_empty() => {
                    self.absorb(&mut st, first).await?;
                }
                result = st.unflushed.written(), if st.unflushed.is_writing() => {
                    st.unflushed.finished(result)?;
                    self.write_behind(&mut st.unflushed);
                }
                _ = self.ctx.wake.notified() => st.woken = true,
                _ = self.ctx.recorded.cancelled(), if self.mode == Mode::Drain && !self.ctx.recorded.is_cancelled() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = self.ctx.shutdown.cancelled() => {}
            }
        }
    }

    /// Writes what finished, then reads what is due now (minus what is
    /// still in flight or unwritten).
    async fn refill(&self, st: &mut State, limit: usize) -> Result<(), StoreError> {
        self.flush(&mut st.unflushed).await?;
        let want = PREFETCH.max(self.sink.batch_size() * limit);
        let due = self.ctx.store.due(&self.route, self.now(), want).await?;
        let busy = &st.unflushed.busy;
        st.queue
            .extend(due.into_iter().filter(|e| !busy.contains(&e.seq())));
        Ok(())
    }

    /// An in-order sink at its concurrency reads its next batch while the
    /// last one is in flight (a file sink writes and syncs it meanwhile),
    /// so the next one starts as soon as it is done. If the one in flight
    /// fails, `absorb` drops what was read ahead: the next batch waits
    /// behind the failed one's retry.
    async fn prefetch(&self, st: &mut State) -> Result<(), StoreError> {
        if !self.route.by_cursor || !st.queue.is_empty() {
            return Ok(());
        }
        let Some(&after) = st.carrying.values().flat_map(|c| &c.seqs).max() else {
            return Ok(());
        };
        let want = self.sink.batch_size().max(1);
        let due = self
            .ctx
            .store
            .due_after(&self.route, self.now(), want, after, st.spare.take())
            .await?;
        if due.is_empty() {
            // Nothing behind the batch in flight: the backlog is gone, and
            // its storage goes back to the system (an idle loop holds none).
        } else if st.queue.is_empty() {
            // Becomes the next batch as it is, storage and all.
            st.queue = VecDeque::from(due);
        } else {
            st.queue.extend(due);
        }
        Ok(())
    }

    /// Starts requests for queued batches up to the concurrency limit, as
    /// long as at most `limit` batches' outcomes are unwritten (written
    /// behind by `absorb`), which bounds what a crash sends again.
    fn dispatch(&self, st: &mut State, limit: usize) {
        let batch = self.sink.batch_size().max(1);
        while st.inflight.len() < limit
            && !st.queue.is_empty()
            && st.unflushed.unwritten() <= limit * batch
        {
            let n = batch.min(st.queue.len());
            let entries = if self.route.by_cursor && n == st.queue.len() {
                // No copy: an in-order sink's read-ahead is its next batch.
                Vec::from(std::mem::take(&mut st.queue))
            } else {
                let mut entries = st.spare.take();
                entries.extend(st.queue.drain(..n));
                entries
            };
            let batch = Arc::new(entries);
            let seqs: Vec<i64> = batch.iter().map(OutboxEntry::seq).collect();
            st.unflushed.busy.extend(seqs.iter().copied());
            let sink = Arc::clone(&self.sink);
            let task = st.inflight.spawn(async move {
                let outcomes = sink.deliver(Arc::clone(&batch)).await;
                (batch, outcomes)
            });
            let epoch = st.breaker.epoch;
            st.carrying.insert(task.id(), Carried { seqs, epoch });
        }
    }

    /// `run --once`: done once the cycle is over and nothing is pending
    /// (or the sink is paused).
    async fn drained(&self, paused: bool) -> Result<bool, StoreError> {
        Ok(self.mode == Mode::Drain
            && self.ctx.recorded.is_cancelled()
            && (paused || self.ctx.store.next_due(&self.route).await?.is_none()))
    }

    /// How long to sleep when nothing is in flight: until the next row is
    /// due, the hold ends, or the next look (every second, or with the
    /// store watch on, once a minute: it wakes the loop on a change).
    async fn idle_wait(
        &self,
        paused: bool,
        holding: bool,
        hold_until: Instant,
    ) -> Result<Duration, StoreError> {
        let look = self.ctx.watched.look_every();
        if paused {
            return Ok(look);
        }
        if holding {
            return Ok(hold_until
                .saturating_duration_since(Instant::now())
                .min(look));
        }
        let next = self.ctx.store.next_due(&self.route).await?;
        Ok(self.ctx.watched.idle_until(next, self.now()))
    }

    /// Reads the stored pause, saying loudly at start that nothing will be
    /// sent: a pause outlives restarts.
    async fn paused_at_start(&self) -> Result<bool, StoreError> {
        let pause = self.ctx.store.pause_of(self.name()).await?;
        if let Some(Pause { since, reason }) = &pause {
            let name = self.name();
            tracing::error!(sink = %name, since = %crate::event::format_time(*since), reason = %reason,
                "sink is PAUSED (its receiver answered 410 Gone); nothing is sent to it until `orderwatch redeliver --sink {name} --dead`");
        }
        Ok(pause.is_some())
    }

    /// Shutdown: give in-flight deliveries the grace period, record what
    /// finished. Anything still in flight stays pending and goes out after
    /// the restart (at-least-once).
    async fn finish(
        &self,
        mut inflight: JoinSet<Attempt>,
        mut unflushed: Unflushed,
    ) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.ctx.grace;
        let mut round = Round::default();
        while !inflight.is_empty() {
            match tokio::time::timeout_at(deadline, inflight.join_next()).await {
                Ok(Some(Ok((batch, outcomes)))) => {
                    self.settle(&batch, outcomes, &mut unflushed, &mut round)
                        .await?;
                }
                Ok(Some(Err(_))) => {}
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(sink = %self.name(), in_flight = inflight.len(), "grace period over; unfinished deliveries stay pending");
                    inflight.abort_all();
                    break;
                }
            }
        }
        self.flush(&mut unflushed).await
    }
}

/// The storage of a finished full batch, kept for the next batch (see
/// [`Batch`]).
#[derive(Default)]
struct Spare(Vec<OutboxEntry>);

impl Spare {
    fn take(&mut self) -> Vec<OutboxEntry> {
        std::mem::take(&mut self.0)
    }

    /// Keeps `batch`'s storage if the batch was full (a backlog is being
    /// worked off) and nobody else holds it. A smaller batch means the
    /// backlog is gone: its storage is freed, and an idle loop holds none.
    fn recycle(&mut self, batch: Batch, full: usize) {
        if batch.len() < full {
            return;
        }
        if let Ok(mut entries) = Arc::try_unwrap(batch) {
            entries.clear();
            self.0 = entries;
        }
    }
}

/// A duration rounded to milliseconds, for logs.
fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
