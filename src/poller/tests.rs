//! The poller against a CertCentral whose clock is not this machine's: the
//! windows and the cursor follow CertCentral's clock, so a local clock that
//! is behind, or a cursor a fast clock left in the future, never costs a
//! change.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::certcentral::Fetched;
use crate::config::PollConfig;
use crate::store::sqlite::SqliteStore;
use crate::transition::OrderChange;

/// An account whose clock runs `offset` from ours, behind a client that
/// learns that clock from its first answer (as `certcentral::Client` does
/// from `Date`). Each order changed at a moment of the account's clock; a
/// relative window is counted back from its now, as CertCentral does, so
/// asking for too few seconds misses changes.
struct SkewedAccount {
    offset: TimeDelta,
    changes: Mutex<Vec<(OrderChange, DateTime<Utc>)>>,
    clock: crate::certcentral::ApiClock,
}

impl SkewedAccount {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    /// Order `id` reached `status` `ago` before the account's now.
    fn changed(&self, id: i64, status: &str, ago: TimeDelta) {
        let change = OrderChange {
            order_id: id,
            certificate_id: Some(id + 100),
            status: Arc::from(status),
        };
        let at = self.now() - ago;
        self.changes.lock().unwrap().push((change, at));
    }
}

#[async_trait::async_trait]
impl ChangeSource for SkewedAccount {
    async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError> {
        let asked_at = Utc::now();
        let api_now = self.now();
        let (from, to) = match *window {
            // "The last N seconds", N measured by the client's idea of the
            // account's clock.
            Window::Relative { since } => (api_now - (self.clock.now() - since), api_now),
            Window::Absolute { start, end } => (start, end),
        };
        self.clock.learn(asked_at, api_now);
        let orders: Vec<OrderChange> = self
            .changes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at >= from && *at <= to)
            .map(|(c, _)| c.clone())
            .collect();
        Ok(Fetched {
            orders: orders.into(),
            asked_at,
            requests: 1,
            api_time: Some(api_now),
            covered_from: matches!(window, Window::Relative { .. }).then_some(from),
        })
    }

    fn api_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn api_offset(&self) -> Option<TimeDelta> {
        self.clock.offset()
    }
}

fn poller(dir: &tempfile::TempDir, account: Arc<SkewedAccount>) -> Poller {
    let store = SqliteStore::open(&dir.path().join("ow.db")).unwrap();
    Poller {
        source: account,
        store: Arc::new(store),
        poll: PollConfig {
            interval: Duration::from_secs(60),
            overlap: Duration::from_secs(600),
            initial_lookback: Duration::from_secs(3600),
            max_window: Duration::from_secs(7 * 86400),
        },
        tz: chrono_tz::America::Denver,
        routes: Arc::from([]),
        dedupe: crate::transition::Dedupe::default(),
        hold: crate::store::Hold::Nothing,
        metrics: Arc::new(Metrics::new(Duration::from_secs(60))),
        wake: Wake::default(),
        poll_failures: crate::config::DEFAULT_POLL_FAILURES,
        wakeups: None,
    }
}

async fn recorded(p: &Poller) -> Vec<String> {
    let filter = crate::store::EventFilter {
        limit: 100,
        ..Default::default()
    };
    let mut ids: Vec<String> = p
        .store
        .events(&filter)
        .await
        .unwrap()
        .iter()
        .map(|t| t.event_id())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_local_clock_behind_certcentral_misses_nothing_after_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let account = Arc::new(SkewedAccount {
        offset: TimeDelta::hours(2),
        changes: Mutex::default(),
        clock: Default::default(),
    });
    let p = poller(&dir, Arc::clone(&account));
    // An earlier run, by CertCentral's clock, saw everything up to 30
    // minutes ago; then orderwatch was down.
    let cursor = account.now() - TimeDelta::minutes(30);
    p.store.rewind_cursor(cursor).await.unwrap();
    account.changed(1, "issued", TimeDelta::minutes(20));
    account.changed(2, "pending", TimeDelta::minutes(1));
    p.cycle().await.unwrap();
    assert_eq!(recorded(&p).await, ["1:issued", "2:pending"]);
    let after = p.store.cursor().await.unwrap().unwrap();
    assert!(after >= account.now() - TimeDelta::seconds(5), "{after}");
    // The next cycle needs no second try: the offset is known.
    account.changed(3, "pending", TimeDelta::seconds(1));
    p.cycle().await.unwrap();
    assert_eq!(recorded(&p).await, ["1:issued", "2:pending", "3:pending"]);
}

#[tokio::test]
async fn a_cursor_a_fast_clock_left_in_the_future_is_set_back_in_the_same_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let account = Arc::new(SkewedAccount {
        offset: TimeDelta::zero(),
        changes: Mutex::default(),
        clock: Default::default(),
    });
    let p = poller(&dir, Arc::clone(&account));
    // A daemon ran with a clock an hour fast, then NTP set it right; it was
    // down for the last 40 minutes, while order 7 changed.
    p.store
        .rewind_cursor(Utc::now() + TimeDelta::hours(1))
        .await
        .unwrap();
    account.changed(7, "issued", TimeDelta::minutes(30));
    // One cycle (`run --once`) is enough.
    p.cycle().await.unwrap();
    assert_eq!(recorded(&p).await, ["7:issued"]);
    let cursor = p.store.cursor().await.unwrap().unwrap();
    assert!(cursor <= Utc::now() + TimeDelta::seconds(5), "{cursor}");
}

#[tokio::test]
async fn a_local_clock_ahead_of_certcentral_keeps_the_cursor_in_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let account = Arc::new(SkewedAccount {
        offset: TimeDelta::hours(-3),
        changes: Mutex::default(),
        clock: Default::default(),
    });
    let p = poller(&dir, Arc::clone(&account));
    account.changed(1, "pending", TimeDelta::minutes(5));
    p.cycle().await.unwrap();
    let cursor = p.store.cursor().await.unwrap().unwrap();
    // By CertCentral's clock, not ours: no cursor three hours ahead.
    assert!(
        (cursor - account.now()).num_seconds().abs() <= 5,
        "{cursor}"
    );
    account.changed(1, "issued", TimeDelta::seconds(1));
    p.cycle().await.unwrap();
    assert_eq!(recorded(&p).await, ["1:issued", "1:pending"]);
}
