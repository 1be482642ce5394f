//! The delivery loop in-process, on tokio's paused clock, with a scripted
//! sink and a real SQLite store: the retry schedule, hold-and-probe, the
//! 410 pause, a store failing while outcomes are written, draining and the
//! shutdown grace period. An hour of backoff runs in milliseconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::*;
use crate::store::guarded::Guarded;
use crate::store::sqlite::SqliteStore;
use crate::store::{Chunk, Redeliver, Routes, SinkStats, Store};
use crate::transition::OrderChange;

/// 2027-01-15T08:00:00Z: where the tests' clock starts.
const START_MS: i64 = 1_800_000_000_000;

/// One call of the scripted sink.
#[derive(Debug, Clone)]
struct Call {
    event: String,
    /// Tokio time since the test started.
    at: Duration,
    /// Requests in flight when this one started (itself included).
    inflight: usize,
    outcome: Outcome,
}

/// The script: the answer to call number `n` (from 0) for an event id.
type Answer = Box<dyn Fn(usize, &str) -> Outcome + Send + Sync>;

/// A sink whose answers come from a script: `answer(call_number, event)`.
struct Scripted {
    start: Instant,
    /// How long a request for an event id takes.
    delay: Box<dyn Fn(&str) -> Duration + Send + Sync>,
    batch: usize,
    concurrency: usize,
    inflight: AtomicUsize,
    calls: Mutex<Vec<Call>>,
    answer: Answer,
}

impl Scripted {
    fn new(
        concurrency: usize,
        delay: Duration,
        answer: impl Fn(usize, &str) -> Outcome + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Scripted::batched(1, concurrency, delay, answer)
    }

    /// Batches of `batch` events (an in-order sink's way); each event is
    /// answered on its own.
    fn batched(
        batch: usize,
        concurrency: usize,
        delay: Duration,
        answer: impl Fn(usize, &str) -> Outcome + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            start: Instant::now(),
            delay: Box::new(move |_| delay),
            batch,
            concurrency,
            inflight: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        })
    }

    /// One event at a time, each request taking `delay(event)`.
    fn timed(
        concurrency: usize,
        delay: impl Fn(&str) -> Duration + Send + Sync + 'static,
        answer: impl Fn(usize, &str) -> Outcome + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            start: Instant::now(),
            delay: Box::new(delay),
            batch: 1,
            concurrency,
            inflight: AtomicUsize::new(0),
            calls: Mutex::new(Vec::new()),
            answer: Box::new(answer),
        })
    }

    /// `1:issued` answered at once, every other event after `others`.
    fn first_at_once(
        concurrency: usize,
        others: Duration,
        answer: impl Fn(usize, &str) -> Outcome + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Scripted::timed(
            concurrency,
            move |event| {
                if event == "1:issued" {
                    Duration::ZERO
                } else {
                    others
                }
            },
            answer,
        )
    }

    /// When each attempt at `event` went out.
    fn attempts(&self, event: &str) -> Vec<Duration> {
        let calls = self.calls();
        calls
            .iter()
            .filter(|c| c.event == event)
            .map(|c| c.at)
            .collect()
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn delivered(&self) -> Vec<String> {
        let calls = self.calls();
        calls
            .into_iter()
            .filter(|c| c.outcome == Outcome::Delivered)
            .map(|c| c.event)
            .collect()
    }
}

#[async_trait]
impl Sink for Scripted {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let mut out = Vec::new();
        for e in batch.iter() {
            let inflight = self.inflight.fetch_add(1, Ordering::SeqCst) + 1;
            let at = self.start.elapsed();
            let event = e.transition.event_id();
            tokio::time::sleep((self.delay)(&event)).await;
            let n = self.calls.lock().unwrap().len();
            let outcome = (self.answer)(n, &event);
            self.calls.lock().unwrap().push(Call {
                event,
                at,
                inflight,
                outcome: outcome.clone(),
            });
            self.inflight.fetch_sub(1, Ordering::SeqCst);
            out.push(outcome);
        }
        out
    }

    /// The loop never sends single messages; answered like a delivery.
    async fn send(&self, message: &crate::sink::kind::Message<'_>) -> crate::sink::kind::Sent {
        let n = self.calls.lock().unwrap().len();
        crate::sink::kind::Sent {
            outcome: (self.answer)(n, message.id),
            answer: String::new(),
        }
    }

    fn batch_size(&self) -> usize {
        self.batch
    }

    fn concurrency(&self) -> usize {
        self.concurrency
    }
}

fn retry(after: Option<Duration>) -> Outcome {
    Outcome::Retry {
        error: "HTTP 503: busy".into(),
        retry_after: after,
    }
}

fn policy() -> DeliveryPolicy {
    DeliveryPolicy {
        backoff_initial: Duration::from_secs(5),
        backoff_max: Duration::from_secs(3600),
        give_up_after: Duration::from_secs(3 * 86400),
    }
}

fn route() -> SinkRoute {
    SinkRoute {
        name: "hook".into(),
        statuses: None,
        by_cursor: false,
        operational: false,
    }
}

/// A store, a clock and the loop's context, with nothing running yet.
struct World {
    _dir: tempfile::TempDir,
    store: SharedStore,
    clock: Clock,
    shutdown: CancellationToken,
    wake: Arc<Notify>,
    route: SinkRoute,
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ow.db")).unwrap();
        World::with_store(dir, Arc::new(store))
    }

    fn with_store(dir: tempfile::TempDir, store: SharedStore) -> World {
        World {
            _dir: dir,
            store,
            clock: Clock::tokio(START_MS),
            shutdown: CancellationToken::new(),
            wake: Arc::new(Notify::new()),
            route: route(),
        }
    }

    /// The same world for an in-order sink (a file's way: a cursor, no rows).
    fn in_order(mut self) -> World {
        self.route.by_cursor = true;
        self
    }

    /// Records new orders (each its own transition) for the test route and
    /// wakes the loop, as the poller does.
    async fn record(&self, orders: std::ops::Range<i64>, status: &str) {
        self.record_unannounced(orders, status).await;
        self.wake.notify_one();
    }

    /// Records without waking the loop: only a store watch can notice.
    async fn record_unannounced(&self, orders: std::ops::Range<i64>, status: &str) {
        let changes = orders
            .map(|order_id| OrderChange {
                order_id,
                certificate_id: None,
                status: Arc::from(status),
            })
            .collect();
        let now = DateTime::<Utc>::from_timestamp_millis(self.clock.now_ms()).unwrap();
        let chunk = Chunk::whole(changes, Some(now), now);
        self.store
            .record(chunk, Routes::from([self.route.clone()]))
            .await
            .unwrap();
    }

    fn start(
        &self,
        sink: Arc<dyn Sink>,
        mode: Mode,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        self.start_watched(sink, mode, Watched::default())
    }

    /// A daemon loop woken by a store watch, as `orderwatch run` starts it
    /// (on the real clock: the watch is a thread).
    fn start_with_watch(&self, sink: Arc<dyn Sink>) -> tokio::task::JoinHandle<()> {
        let watched = Watched::default();
        let loops = Wake::new(vec![Arc::clone(&self.wake)]);
        let watch = watch::run(
            Arc::clone(&self.store),
            loops,
            watched.clone(),
            self.shutdown.clone(),
        );
        let running = self.start_watched(sink, Mode::Daemon, watched);
        tokio::spawn(async move {
            watch.await;
            running.await.unwrap().unwrap();
        })
    }

    fn start_watched(
        &self,
        sink: Arc<dyn Sink>,
        mode: Mode,
        watched: Watched,
    ) -> tokio::task::JoinHandle<Result<(), StoreError>> {
        let recorded = CancellationToken::new();
        recorded.cancel();
        let ctx = LoopContext {
            store: Arc::clone(&self.store),
            metrics: Arc::new(Metrics::new(Duration::from_secs(60))),
            wake: Arc::clone(&self.wake),
            recorded,
            shutdown: self.shutdown.clone(),
            grace: Duration::from_secs(5),
            clock: self.clock,
            source: Arc::from("s"),
            watched,
        };
        let runner = DeliveryLoop {
            sink,
            route: self.route.clone(),
            policy: policy(),
            ctx,
            mode,
        };
        tokio::spawn(runner.run())
    }

    async fn stats(&self) -> SinkStats {
        self.store
            .sink_stats(std::slice::from_ref(&self.route))
            .await
            .unwrap()[0]
            .clone()
    }

    /// Runs a draining loop for `sink` until it ends by itself (within ten
    /// minutes of tokio time), which it must do without a store error.
    async fn drain(&self, sink: Arc<dyn Sink>) {
        let running = self.start(sink, Mode::Drain);
        tokio::time::timeout(Duration::from_secs(600), running)
            .await
            .expect("a draining loop ends by itself")
            .unwrap()
            .unwrap();
    }

    /// Waits (in tokio time) until `done` holds; fails after `limit`.
    async fn until(&self, limit: Duration, mut done: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while !done().await {
            assert!(Instant::now() < deadline, "not done within {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_backoff_schedule_until_the_first_success() {
    let w = World::new().await;
    w.record(1..2, "issued").await;
    let sink = Scripted::new(8, Duration::ZERO, |n, _| {
        if n < 3 {
            retry(None)
        } else {
            Outcome::Delivered
        }
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(600), async || {
        sink.delivered().len() == 1
    })
    .await;
    let at: Vec<Duration> = sink.calls().iter().map(|c| c.at).collect();
    assert_eq!(at.len(), 4, "{at:?}");
    // Full jitter: the k-th wait is at most 5 s * 2^(k-1) (plus the loop's
    // 1 s idle poll), and never shorter than the breaker's minimum hold.
    for (k, pair) in at.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let bound = Duration::from_secs(5 << k) + IDLE_POLL + Duration::from_millis(100);
        assert!(gap >= super::super::retry::MIN_HOLD, "wait {k}: {gap:?}");
        assert!(gap <= bound, "wait {k}: {gap:?} > {bound:?}");
    }
    let st = w.stats().await;
    assert_eq!((st.pending, st.dead), (0, 0));
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_holds_the_whole_sink() {
    let w = World::new().await;
    w.record(1..4, "issued").await;
    let sink = Scripted::new(1, Duration::ZERO, |n, _| {
        if n == 0 {
            retry(Some(Duration::from_secs(90)))
        } else {
            Outcome::Delivered
        }
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(600), async || {
        sink.delivered().len() == 3
    })
    .await;
    let calls = sink.calls();
    // Nothing at all went out while the receiver asked for 90 s.
    assert!(
        calls[1].at - calls[0].at >= Duration::from_secs(90),
        "{calls:?}"
    );
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failing_receiver_gets_one_probe_at_a_time_then_full_concurrency() {
    let w = World::new().await;
    w.record(1..41, "issued").await;
    // The first six requests fail: the first round of four, then probes.
    let sink = Scripted::new(4, Duration::from_millis(200), |n, _| {
        if n < 6 {
            retry(None)
        } else {
            Outcome::Delivered
        }
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(3600), async || {
        sink.delivered().len() == 40
    })
    .await;
    let calls = sink.calls();
    assert!(
        calls[..4].iter().all(|c| c.inflight >= 1) && calls[..4].iter().any(|c| c.inflight > 1),
        "the first round runs at full concurrency: {calls:?}"
    );
    // After the first failed round and until a probe succeeds: one at a time.
    for c in &calls[4..7] {
        assert_eq!(c.inflight, 1, "probe {c:?} in {calls:#?}");
    }
    assert!(
        calls[7..].iter().any(|c| c.inflight > 1),
        "full concurrency again after a success: {calls:#?}"
    );
    let mut delivered = sink.delivered();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 40, "every event delivered once");
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// The breaker moves on answers to requests sent since it last changed:
/// the others of the first round, still out when it tripped, neither end
/// nor lengthen the hold.
#[tokio::test(start_paused = true)]
async fn a_success_sent_before_the_breaker_tripped_does_not_end_a_retry_after() {
    let w = World::new().await;
    w.record(1..9, "issued").await;
    // 1:issued is answered 429 Retry-After 60 s at once; the other seven,
    // sent at the same moment, are answered 200 half a second later.
    let sink =
        Scripted::first_at_once(8, Duration::from_millis(500), |n, event| match (n, event) {
            (0, "1:issued") => retry(Some(Duration::from_secs(60))),
            _ => Outcome::Delivered,
        });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(600), async || {
        sink.delivered().len() == 8
    })
    .await;
    let tries = sink.attempts("1:issued");
    assert_eq!(tries.len(), 2, "{:#?}", sink.calls());
    assert!(
        tries[1] - tries[0] >= Duration::from_secs(60),
        "retried after {:?}, within its Retry-After",
        tries[1] - tries[0]
    );
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn failures_of_one_round_in_flight_lengthen_the_hold_once() {
    let w = World::new().await;
    w.record(1..9, "issued").await;
    // Eight requests out at once, all failing, their answers spread over
    // 0.7 s: one failed round, not eight (2^7 initial backoffs of hold).
    let sink = Scripted::timed(
        8,
        |event| {
            let order: u64 = event
                .split(':')
                .next()
                .and_then(|o| o.parse().ok())
                .unwrap_or(0);
            Duration::from_millis(100 * order.saturating_sub(1))
        },
        |n, _| {
            if n < 8 {
                retry(None)
            } else {
                Outcome::Delivered
            }
        },
    );
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(7200), async || sink.calls().len() > 8)
        .await;
    let calls = sink.calls();
    let probe = calls[8].at;
    // The first trip holds at most backoff_initial (5 s, full jitter) from
    // the first answer (at 0 s); the loop looks every second.
    assert!(
        probe <= Duration::from_secs(5) + IDLE_POLL + Duration::from_millis(100),
        "the first probe went out at {probe:?}"
    );
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_later_failure_of_the_same_round_does_not_shorten_a_retry_after() {
    let w = World::new().await;
    w.record(1..3, "issued").await;
    // 1:issued: 429 with Retry-After 60 s at once; 2:issued, sent with
    // it: 503 without one, a second later.
    let sink = Scripted::first_at_once(2, Duration::from_secs(1), |n, event| match (n, event) {
        (_, "1:issued") if n < 2 => retry(Some(Duration::from_secs(60))),
        (_, "2:issued") if n < 2 => retry(None),
        _ => Outcome::Delivered,
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(600), async || {
        sink.delivered().len() == 2
    })
    .await;
    let calls = sink.calls();
    assert!(
        calls[2].at >= Duration::from_secs(60),
        "the next request went out at {:?}: {calls:#?}",
        calls[2].at
    );
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_410_pauses_the_sink_until_redeliver() {
    let w = World::new().await;
    w.record(1..4, "issued").await;
    let sink = Scripted::new(1, Duration::ZERO, |n, _| {
        if n == 0 {
            Outcome::Gone {
                error: "HTTP 410 Gone".into(),
            }
        } else {
            Outcome::Delivered
        }
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(60), async || {
        w.store.pause_of("hook").await.unwrap().is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(sink.calls().len(), 1, "nothing is sent to a paused sink");
    let st = w.stats().await;
    assert!(st.paused);
    assert_eq!((st.pending, st.dead), (2, 1));

    w.store
        .redeliver(&route(), &Redeliver::Dead, w.clock.now_ms())
        .await
        .unwrap();
    w.until(Duration::from_secs(30), async || {
        sink.delivered().len() == 3
    })
    .await;
    assert_eq!(w.store.pause_of("hook").await.unwrap(), None);
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn draining_finishes_once_nothing_is_pending() {
    let w = World::new().await;
    w.record(1..6, "issued").await;
    let sink = Scripted::new(2, Duration::from_millis(10), |_, _| Outcome::Delivered);
    w.drain(sink.clone()).await;
    assert_eq!(sink.delivered().len(), 5);
    assert_eq!(w.stats().await.pending, 0);
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_in_flight_deliveries_finish_within_the_grace_period() {
    let w = World::new().await;
    w.record(1..2, "issued").await;
    let quick = Scripted::new(1, Duration::from_secs(3), |_, _| Outcome::Delivered);
    let running = w.start(quick.clone(), Mode::Daemon);
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(quick.delivered().len(), 1);
    assert_eq!(w.stats().await.pending, 0, "the outcome was written");

    // Slower than the grace period: the delivery stays pending for next time.
    let w = World::new().await;
    w.record(1..2, "issued").await;
    let slow = Scripted::new(1, Duration::from_secs(60), |_, _| Outcome::Delivered);
    let running = w.start(slow.clone(), Mode::Daemon);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = Instant::now();
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
    assert!(stopping.elapsed() <= Duration::from_secs(6));
    assert_eq!(w.stats().await.pending, 1);
}

/// A store whose `mark` fails `failing` times, then works: like a full
/// disk that frees up.
fn flaky_marks(inner: SharedStore, failing: usize) -> Guarded {
    let failing = AtomicUsize::new(failing);
    let guard = move |write: &'static str| {
        let fail = write == "mark"
            && failing
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
            return Err(StoreError::Full {
                path: "flaky.db".into(),
            });
        }
        Ok(())
    };
    Guarded {
        inner,
        guard: Arc::new(guard),
        mark_takes: Duration::ZERO,
        looks: Default::default(),
    }
}

async fn flaky_world(failures: usize) -> World {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(&dir.path().join("ow.db")).unwrap());
    let store = Arc::new(flaky_marks(inner, failures));
    World::with_store(dir, store)
}

#[tokio::test(start_paused = true)]
async fn a_store_failing_while_marking_repeats_deliveries_and_loses_none() {
    let w = flaky_world(2).await;
    w.record(1..6, "issued").await;
    let sink = Scripted::new(8, Duration::ZERO, |_, _| Outcome::Delivered);
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(120), async || {
        w.stats().await.pending == 0
    })
    .await;
    let delivered = sink.delivered();
    let mut unique = delivered.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 5, "every event delivered");
    // The outcomes that could not be written were attempted again.
    assert!(delivered.len() > 5, "{delivered:?}");
    assert!(
        !running.is_finished(),
        "a failing store does not stop the loop"
    );
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_draining_loop_gives_up_when_the_store_keeps_failing() {
    let w = flaky_world(usize::MAX).await;
    w.record(1..3, "issued").await;
    let sink = Scripted::new(1, Duration::ZERO, |_, _| Outcome::Delivered);
    let running = w.start(sink.clone(), Mode::Drain);
    let ended = tokio::time::timeout(Duration::from_secs(600), running)
        .await
        .expect("gives up")
        .unwrap();
    assert!(matches!(ended, Err(StoreError::Full { .. })), "{ended:?}");
    assert_eq!(w.stats().await.pending, 2, "nothing was lost");
}

#[tokio::test(start_paused = true)]
async fn events_the_receiver_rejects_do_not_hold_the_others() {
    let w = World::new().await;
    w.record(1..101, "issued").await;
    // One event in ten is refused with a 400; the rest are taken.
    let sink = Scripted::new(8, Duration::from_millis(100), |_, event| {
        if event.starts_with('9') || event.starts_with("10:") {
            Outcome::Dead {
                error: "HTTP 400 Bad Request".into(),
            }
        } else {
            Outcome::Delivered
        }
    });
    let running = w.start(sink.clone(), Mode::Daemon);
    w.until(Duration::from_secs(60), async || sink.calls().len() == 100)
        .await;
    let last = sink.calls().iter().map(|c| c.at).max().unwrap();
    // 100 requests of 100 ms at concurrency 8 take about 1.3 s; a single
    // hold (5 s backoff, then one probe at a time) would take far longer.
    assert!(last < Duration::from_secs(3), "held: {last:?}");
    assert!(sink.calls().iter().all(|c| c.inflight <= 8));
    let st = w.stats().await;
    assert_eq!((st.pending, st.dead), (0, 12));
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn an_in_order_sink_reads_ahead_and_drops_what_it_read_when_a_batch_fails() {
    let read_ahead = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&read_ahead);
    let guard = move |call: &'static str| {
        if call == "due_after" {
            counted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    };
    let w = guarded_world(guard, Duration::ZERO).in_order();
    w.record(1..1001, "issued").await;
    // Batches of 600: the second (400) is read while the first is in
    // flight. The first fails once, so what was read ahead must not go
    // out before it.
    let sink = Scripted::batched(600, 1, Duration::from_millis(1), |n, _| {
        if n < 600 {
            retry(None)
        } else {
            Outcome::Delivered
        }
    });
    w.drain(sink.clone()).await;
    let expected: Vec<String> = (1..1001).map(|id| format!("{id}:issued")).collect();
    assert_eq!(
        sink.delivered(),
        expected,
        "each event once, in recorded order"
    );
    assert!(
        read_ahead.load(Ordering::SeqCst) > 0,
        "the next batch was read while one was in flight"
    );
    assert_eq!(w.stats().await.pending, 0);
}

/// A world on a SQLite store that asks `guard` before each write (and
/// each read of what is due), and whose ledger writes take `mark_takes`
/// (tokio time); see `store/guarded.rs`.
fn guarded_world(
    guard: impl Fn(&'static str) -> Result<(), StoreError> + Send + Sync + 'static,
    mark_takes: Duration,
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(&dir.path().join("ow.db")).unwrap());
    let store = Guarded {
        inner,
        guard: Arc::new(guard),
        mark_takes,
        looks: Default::default(),
    };
    World::with_store(dir, Arc::new(store))
}

/// A store whose every ledger write takes `mark_takes` (tokio time).
async fn slow_ledger_world(mark_takes: Duration) -> World {
    guarded_world(|_| Ok(()), mark_takes)
}

/// Runs 40 events through a 4-wide sink whose requests take `request`
/// (by event id), draining; returns the sink once every event is
/// delivered exactly once.
async fn forty_through_a_slow_ledger(
    w: &World,
    request: impl Fn(&str) -> Duration + Send + Sync + 'static,
) -> Arc<Scripted> {
    w.record(1..41, "issued").await;
    let sink = Scripted::new(4, Duration::ZERO, |_, _| Outcome::Delivered);
    let sink = Arc::new(Scripted {
        delay: Box::new(request),
        ..Arc::into_inner(sink).unwrap()
    });
    w.drain(sink.clone()).await;
    let mut delivered = sink.delivered();
    delivered.sort();
    delivered.dedup();
    assert_eq!(delivered.len(), 40, "every event delivered");
    assert_eq!(sink.calls().len(), 40, "each once");
    assert_eq!(w.stats().await.pending, 0);
    sink
}

#[tokio::test(start_paused = true)]
async fn outcomes_are_written_behind_the_next_requests() {
    // Ledger writes of 100 ms. Event 1 is answered after 10 ms and the
    // write of its outcome runs from 10 to 110 ms; events 2 to 4 take
    // 50 ms, the rest 10 ms. Slots freed during that write take the next
    // events at once (at 20, 30 and 40 ms) instead of waiting for it,
    // until 4 outcomes wait to be written.
    let w = slow_ledger_world(Duration::from_millis(100)).await;
    let sink = forty_through_a_slow_ledger(&w, |event| match event {
        "2:issued" | "3:issued" | "4:issued" => Duration::from_millis(50),
        _ => Duration::from_millis(10),
    })
    .await;
    let first_write = Duration::from_millis(11)..Duration::from_millis(110);
    let during: Vec<Duration> = sink
        .calls()
        .iter()
        .map(|c| c.at)
        .filter(|at| first_write.contains(at))
        .collect();
    assert_eq!(
        during,
        [20, 30, 40].map(Duration::from_millis),
        "sent while the first write was under way"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_ledger_bounds_what_goes_out_before_it_is_written() {
    // Ledger writes of 1 s, requests of 10 ms, 4 at a time: while the
    // first write is under way, the loop sends at most one more round, so
    // a crash would repeat at most twice the concurrency.
    let w = slow_ledger_world(Duration::from_secs(1)).await;
    let sink = forty_through_a_slow_ledger(&w, |_| Duration::from_millis(10)).await;
    let early = sink
        .calls()
        .iter()
        .filter(|c| c.at < Duration::from_secs(1))
        .count();
    assert_eq!(early, 8, "requests sent before the first write was done");
}

#[test]
fn a_full_batch_leaves_its_storage_to_the_next_and_a_short_one_frees_it() {
    let batch = |n: i64| -> Batch { Arc::new((1..=n).map(OutboxEntry::untried).collect()) };
    let mut spare = Spare::default();

    spare.recycle(batch(64), 64);
    let kept = spare.take();
    assert!(
        kept.is_empty() && kept.capacity() >= 64,
        "a full batch's storage is kept, emptied"
    );

    // Still held elsewhere (a sink kept its copy): left alone.
    let shared = batch(64);
    let _held = Arc::clone(&shared);
    spare.recycle(shared, 64);
    assert_eq!(spare.take().capacity(), 0);

    // The backlog is gone: a short batch's storage is not kept.
    spare.recycle(batch(10), 64);
    assert_eq!(spare.take().capacity(), 0, "an idle loop holds no storage");
}

/// A store that counts the loop's looks at it: what is due, when next,
/// whether paused or requeued.
fn counted_world() -> (World, Arc<AtomicUsize>) {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(SqliteStore::open(&dir.path().join("ow.db")).unwrap());
    let looks = Arc::new(AtomicUsize::new(0));
    let store = Guarded {
        inner,
        guard: Arc::new(|_| Ok(())),
        mark_takes: Duration::ZERO,
        looks: Arc::clone(&looks),
    };
    (World::with_store(dir, Arc::new(store)), looks)
}

/// Waits until the loop stopped looking at the store for a while (its
/// last wake-up is over); the looks so far.
async fn settled(looks: &AtomicUsize) -> usize {
    for _ in 0..20 {
        let before = looks.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if looks.load(Ordering::SeqCst) == before {
            return before;
        }
    }
    panic!("the loop never stopped looking at the store");
}

/// With the store watch, an idle loop does not look at the store at all,
/// and yet delivers within about a second what was committed behind its
/// back: by this process without a wake-up, or by another process
/// (`orderwatch redeliver`). Without the watch's wake-ups it would wait
/// for its once-a-minute look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_idle_loop_looks_at_the_store_only_when_it_changed() {
    let (w, looks) = counted_world();
    let sink = Scripted::new(1, Duration::ZERO, |_, _| Outcome::Delivered);
    let running = w.start_with_watch(sink.clone());
    let soon = Duration::from_secs(5);
    w.record(1..2, "issued").await;
    w.until(soon, async || sink.delivered().len() == 1).await;

    let idle = settled(&looks).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(looks.load(Ordering::SeqCst), idle, "an idle loop looked");

    w.record_unannounced(2..3, "issued").await;
    w.until(soon, async || sink.delivered().len() == 2).await;

    let other = SqliteStore::open_existing(&w._dir.path().join("ow.db"), false).unwrap();
    let queued = other
        .redeliver(&w.route, &Redeliver::Since(0), w.clock.now_ms())
        .await
        .unwrap();
    assert_eq!(queued, 2);
    w.until(soon, async || sink.delivered().len() == 4).await;
    assert_eq!(
        sink.delivered(),
        ["1:issued", "2:issued", "1:issued", "2:issued"]
    );
    w.shutdown.cancel();
    running.await.unwrap();
}

/// Without the watch (a PostgreSQL store, or one failing to answer it),
/// an idle loop looks at the store every second itself.
#[tokio::test(start_paused = true)]
async fn an_unwatched_idle_loop_looks_every_second() {
    let (w, looks) = counted_world();
    let sink = Scripted::new(1, Duration::ZERO, |_, _| Outcome::Delivered);
    let running = w.start(sink, Mode::Daemon);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = looks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let n = looks.load(Ordering::SeqCst) - before;
    assert!((10..=40).contains(&n), "{n} looks in 10 s");
    w.shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// A retrying event with a later event of its order waiting behind it:
/// the loop sleeps until the retry instead of going round (each round a
/// read of the store) because the later one's own time has come. A store
/// that refuses reads after a budget turns such a spin into a failure
/// rather than a test that never ends on the paused clock. Whether the
/// breaker's hold ends before the retry falls due depends on both jitters,
/// so the scenario runs 20 times.
#[tokio::test(start_paused = true)]
async fn an_event_waiting_behind_a_retry_of_its_order_does_not_spin_the_loop() {
    for _ in 0..20 {
        waiting_behind_a_retry().await;
    }
}

async fn waiting_behind_a_retry() {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reads);
    let guard = move |call: &'static str| {
        let read = matches!(call, "due_after" | "next_due");
        if read && counted.fetch_add(1, Ordering::SeqCst) >= 1_000 {
            return Err(StoreError::Task("read budget spent: the loop spins".into()));
        }
        Ok(())
    };
    let w = guarded_world(guard, Duration::ZERO);
    w.record(1..4, "pending").await;
    w.record(1..4, "issued").await;
    let fails = Arc::new(AtomicUsize::new(0));
    let sink = Scripted::new(4, Duration::from_millis(5), move |_, event| {
        if event == "2:pending" && fails.fetch_add(1, Ordering::SeqCst) < 2 {
            retry(None)
        } else {
            Outcome::Delivered
        }
    });
    w.drain(sink.clone()).await;
    let delivered = sink.delivered();
    assert_eq!(delivered.len(), 6, "{delivered:?}");
    let pos = |e: &str| delivered.iter().position(|d| d == e).unwrap();
    assert!(pos("2:pending") < pos("2:issued"), "{delivered:?}");
    let reads = reads.load(Ordering::SeqCst);
    assert!(reads < 200, "{reads} reads of what is due");
}
