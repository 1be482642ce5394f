//! The doorbell on its own, and a poller woken by it on tokio's paused
//! clock: wakes start early cycles, never sooner than `min_gap` after the
//! last start, coalesce, and move the schedule.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::certcentral::{ApiError, ChangeSource, Fetched};
use crate::config::PollConfig;
use crate::metrics::Metrics;
use crate::poller::{Poller, WakeSchedule};
use crate::sink::Wake;
use crate::store::sqlite::SqliteStore;
use crate::transition::Dedupe;
use crate::window::Window;

#[tokio::test]
async fn wakes_before_the_cycle_starts_are_one_and_a_wake_during_it_asks_again() {
    let w = PollWake::new();
    assert_eq!(w.wake(), Wakeup::Scheduled);
    assert_eq!(w.wake(), Wakeup::Coalesced);
    assert_eq!(w.wake(), Wakeup::Coalesced);
    tokio::time::timeout(Duration::from_secs(1), w.rung())
        .await
        .expect("rung");
    w.take();
    // The cycle runs; a wake now asks for the next one.
    assert_eq!(w.wake(), Wakeup::Scheduled);
    tokio::time::timeout(Duration::from_secs(1), w.rung())
        .await
        .expect("rung again");
}

#[tokio::test]
async fn a_cycle_that_starts_on_schedule_answers_the_wakes_before_it() {
    let w = PollWake::new();
    assert_eq!(w.wake(), Wakeup::Scheduled);
    // The interval ticked first: that cycle covers the wake.
    w.take();
    let quiet = tokio::time::timeout(Duration::from_millis(50), w.rung()).await;
    assert!(quiet.is_err(), "a covered wake rang again");
}

/// A stand-in account that answers every window with nothing, noting when
/// each call started (tokio time since the test began).
struct Account {
    start: Instant,
    delay: Duration,
    calls: Mutex<Vec<Duration>>,
}

#[async_trait::async_trait]
impl ChangeSource for Account {
    async fn status_changes(&self, _window: &Window) -> Result<Fetched, ApiError> {
        self.calls.lock().unwrap().push(self.start.elapsed());
        tokio::time::sleep(self.delay).await;
        Ok(Fetched {
            orders: Vec::<crate::transition::OrderChange>::new().into(),
            asked_at: Utc::now(),
            requests: 1,
            api_time: None,
            covered_from: None,
        })
    }
}

struct Running {
    account: Arc<Account>,
    bell: Arc<PollWake>,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Call times, in whole seconds.
    fn calls(&self) -> Vec<u64> {
        self.account
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|d| d.as_secs())
            .collect()
    }
}

/// A poller polling every minute, waking at most every 5 s, each cycle
/// taking `delay`.
fn poller(delay: Duration) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ow.db")).unwrap();
    let account = Arc::new(Account {
        start: Instant::now(),
        delay,
        calls: Mutex::new(Vec::new()),
    });
    let bell = PollWake::new();
    let poller = Poller {
        source: Arc::clone(&account) as Arc<dyn ChangeSource>,
        store: Arc::new(store),
        poll: PollConfig {
            interval: Duration::from_secs(60),
            overlap: Duration::from_secs(600),
            initial_lookback: Duration::from_secs(3600),
            max_window: Duration::from_secs(7 * 86_400),
        },
        tz: chrono_tz::America::Denver,
        routes: Arc::from([]),
        dedupe: Dedupe::Change,
        hold: crate::store::Hold::Nothing,
        metrics: Arc::new(Metrics::new(Duration::from_secs(60))),
        wake: Wake::default(),
        poll_failures: crate::config::DEFAULT_POLL_FAILURES,
        wakeups: Some(WakeSchedule {
            bell: Arc::clone(&bell),
            min_gap: Duration::from_secs(5),
        }),
    };
    let stop = CancellationToken::new();
    let (tx, _rx) = watch::channel(None);
    let token = stop.clone();
    tokio::spawn(async move { poller.run_until_stopped(token, tx).await });
    Running {
        account,
        bell,
        stop,
        _dir: dir,
    }
}

async fn at(run: &Running, secs: u64) {
    tokio::time::sleep_until(run.account.start + Duration::from_secs(secs)).await;
}

#[tokio::test(start_paused = true)]
async fn a_wake_polls_at_once_coalesces_and_moves_the_schedule() {
    let run = poller(Duration::ZERO);
    at(&run, 10).await;
    assert_eq!(run.bell.wake(), Wakeup::Scheduled);
    at(&run, 12).await;
    // Three wakes 2 s after the last cycle began: one cycle, at 10 + 5 s.
    assert_eq!(run.bell.wake(), Wakeup::Scheduled);
    assert_eq!(run.bell.wake(), Wakeup::Coalesced);
    assert_eq!(run.bell.wake(), Wakeup::Coalesced);
    at(&run, 200).await;
    run.stop.cancel();
    // The schedule counts from the last woken cycle: 15 + 60, + 60.
    assert_eq!(run.calls(), [0, 10, 15, 75, 135, 195]);
}

#[tokio::test(start_paused = true)]
async fn a_wake_during_a_cycle_asks_for_one_more_after_it() {
    let run = poller(Duration::from_secs(3));
    at(&run, 20).await;
    run.bell.wake();
    // The woken cycle runs from 20 to 23; a change announced at 21 may be
    // newer than what it asked for.
    at(&run, 21).await;
    assert_eq!(run.bell.wake(), Wakeup::Scheduled);
    at(&run, 22).await;
    assert_eq!(run.bell.wake(), Wakeup::Coalesced);
    at(&run, 60).await;
    run.stop.cancel();
    // Never two at once: the next starts at 25 (20 + min_gap), after 23.
    assert_eq!(run.calls(), [0, 20, 25]);
}
