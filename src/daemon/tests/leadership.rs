//! The daemon as leader or standby, in-process on tokio's paused clock,
//! with a [`Steered`] leadership the test grants, revokes or takes over,
//! and a store whose writes are fenced like PostgreSQL's after a takeover.
//! The real leadership (PostgreSQL, several processes) is tested in
//! `tests/it/failover.rs`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::store::guarded::Guarded;
use crate::store::sqlite::SqliteStore;
use crate::store::{Leader, StoreError};

/// A leadership the test steers. A lease is handed out only while granted.
#[derive(Debug)]
struct Steered {
    store: SharedStore,
    state: Mutex<Grant>,
    /// Calls of `acquire`: one per stint as a standby.
    acquires: AtomicUsize,
}

#[derive(Debug, Default)]
struct Grant {
    granted: bool,
    term: i64,
    /// The current lease's token and its store's fence.
    lost: Option<CancellationToken>,
    fence: Option<Arc<AtomicBool>>,
}

impl Steered {
    fn new(s: &Setup) -> Arc<Steered> {
        let store = SqliteStore::open(&s.path("ow.db")).unwrap();
        Arc::new(Steered {
            store: Arc::new(store),
            state: Mutex::new(Grant::default()),
            acquires: AtomicUsize::new(0),
        })
    }

    fn grant(&self) {
        self.state.lock().unwrap().granted = true;
    }

    /// The lease is lost and this node knows it (its `lost()` fires).
    fn revoke(&self) {
        let mut st = self.state.lock().unwrap();
        st.granted = false;
        if let Some(lost) = &st.lost {
            lost.cancel();
        }
    }

    /// Another node took over and this one has not noticed yet: only its
    /// writes tell it, by failing.
    fn take_over(&self) {
        let mut st = self.state.lock().unwrap();
        st.granted = false;
        if let Some(fence) = &st.fence {
            fence.store(true, Ordering::SeqCst);
        }
    }

    fn acquires(&self) -> usize {
        self.acquires.load(Ordering::SeqCst)
    }

    fn lease(&self) -> Option<Lease> {
        let mut st = self.state.lock().unwrap();
        if !st.granted {
            return None;
        }
        st.term += 1;
        let lost = CancellationToken::new();
        let fence = Arc::new(AtomicBool::new(false));
        st.lost = Some(lost.clone());
        st.fence = Some(Arc::clone(&fence));
        let store = fenceable(Arc::clone(&self.store), st.term, fence);
        Some(Lease::new(
            st.term,
            Arc::new(store),
            lost,
            Arc::new(Mutex::new(Some("revoked by the test".into()))),
            format!("steered lease term {}", st.term),
            (),
        ))
    }
}

#[async_trait]
impl Leadership for Steered {
    async fn acquire(&self) -> Result<Lease, StoreError> {
        self.acquires.fetch_add(1, Ordering::SeqCst);
        loop {
            if let Some(lease) = self.lease() {
                return Ok(lease);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn try_acquire(&self) -> Result<Option<Lease>, StoreError> {
        Ok(self.lease())
    }

    async fn leader(&self) -> Result<Option<Leader>, StoreError> {
        Ok(Some(Leader {
            holder: "other-node:7".into(),
            term: self.state.lock().unwrap().term,
            since: Utc::now(),
            live: true,
        }))
    }

    fn standby_store(&self) -> Option<SharedStore> {
        Some(Arc::clone(&self.store))
    }
}

/// A store whose writes fail as fenced once `fence` is set.
fn fenceable(inner: SharedStore, term: i64, fence: Arc<AtomicBool>) -> Guarded {
    let location = inner.location();
    let guard = move |call: &'static str| {
        // PostgreSQL fences writes; a loop's look at its next due time is
        // a read.
        if fence.load(Ordering::SeqCst) && call != "next_due" {
            return Err(StoreError::Fenced {
                location: location.clone(),
                term,
                current: term + 1,
                leader: "other-node:7".into(),
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

fn spawn(
    s: &Setup,
    config: Config,
    account: &Arc<Account>,
    steered: &Arc<Steered>,
    control: &Control,
) -> tokio::task::JoinHandle<Result<(), RunError>> {
    let mut opts = s.options(account, false);
    opts.leadership = Some(Arc::clone(steered) as Arc<dyn Leadership>);
    tokio::spawn(run(config, Secret::new("key"), opts, control.clone()))
}

#[tokio::test(start_paused = true)]
async fn a_standby_polls_and_delivers_nothing_until_it_leads() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let steered = Steered::new(&s);
    let control = Control::new();
    let running = spawn(&s, s.write(""), &account, &steered, &control);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert!(account.calls().is_empty(), "a standby polled");
    assert!(s.lines("events.jsonl").is_empty());
    assert_eq!(steered.acquires(), 1);

    steered.grant();
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 1
    })
    .await;
    control.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_lost_lease_stops_polling_and_delivering_at_once_until_the_node_leads_again() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let steered = Steered::new(&s);
    steered.grant();
    let control = Control::new();
    let running = spawn(&s, s.write(""), &account, &steered, &control);
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 1
    })
    .await;

    // A poll in progress when the lease goes is abandoned, not finished:
    // the next cycle starts a minute after the first and takes 20 s.
    let polls = account.calls().len();
    *account.delay.lock().unwrap() = Duration::from_secs(20);
    tokio::time::sleep(Duration::from_secs(70)).await;
    steered.revoke();
    account.set(2, "pending");
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(account.calls().len(), polls, "{:?}", account.calls());
    assert_eq!(
        s.lines("events.jsonl"),
        ["1:pending"],
        "delivered after the lease was lost"
    );
    assert_eq!(steered.acquires(), 2, "stands by again");
    assert!(!running.is_finished());

    // Leading again, it carries on from the store: each event once.
    *account.delay.lock().unwrap() = Duration::ZERO;
    steered.grant();
    until(Duration::from_secs(120), || {
        s.lines("events.jsonl").len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(180)).await;
    assert_eq!(s.lines("events.jsonl"), ["1:pending", "2:pending"]);
    control.shutdown();
    running.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_fenced_write_ends_the_term_and_the_node_stands_by() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let steered = Steered::new(&s);
    steered.grant();
    let control = Control::new();
    let running = spawn(&s, s.write(""), &account, &steered, &control);
    until(Duration::from_secs(30), || {
        s.lines("events.jsonl").len() == 1
    })
    .await;

    // Another node takes over; this one learns it from its next write.
    steered.take_over();
    account.set(2, "pending");
    let polls = account.calls().len();
    until(Duration::from_secs(120), || steered.acquires() == 2).await;
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        account.calls().len(),
        polls + 1,
        "polled after being fenced"
    );
    assert_eq!(s.lines("events.jsonl"), ["1:pending"]);
    assert!(!running.is_finished(), "a fenced node keeps running");

    steered.grant();
    until(Duration::from_secs(120), || {
        s.lines("events.jsonl").len() == 2
    })
    .await;
    control.shutdown();
    running.await.unwrap().unwrap();
    assert_eq!(s.lines("events.jsonl"), ["1:pending", "2:pending"]);
}

#[tokio::test(start_paused = true)]
async fn a_standby_reloads_the_config_it_will_lead_with_and_stops_at_once() {
    let s = Setup::new();
    let account = Account::new();
    account.set(1, "pending");
    let steered = Steered::new(&s);
    let control = Control::new();
    let running = spawn(&s, s.write(""), &account, &steered, &control);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let second = format!(
        "[[sinks]]\nname = \"second\"\ntype = \"file\"\npath = {:?}\n",
        s.path("second.jsonl")
    );
    s.write(&second);
    control.reload();
    tokio::time::sleep(Duration::from_secs(5)).await;
    steered.grant();
    until(Duration::from_secs(60), || {
        s.lines("second.jsonl").len() == 1
    })
    .await;

    // Standing by again, a shutdown returns without waiting for anything.
    steered.revoke();
    until(Duration::from_secs(30), || steered.acquires() == 2).await;
    control.shutdown();
    tokio::time::timeout(Duration::from_millis(10), running)
        .await
        .expect("a standby stops at once")
        .unwrap()
        .unwrap();
}
