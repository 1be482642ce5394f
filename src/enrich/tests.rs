//! The enrichment stage on tokio's paused clock, with a scripted order info
//! source and a real SQLite store: details are stored with the held
//! transitions and released to the sinks; 404 releases at once with
//! `null`; failures back off and give up with `null`; lookups keep to
//! their share of the budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::certcentral::{ApiError, Fetched};
use crate::store::sqlite::SqliteStore;
use crate::store::{Chunk, EventFilter};
use crate::transition::OrderChange;
use crate::window::Window;

const T0: i64 = 1_800_000_000_000;

/// Order info by order id; an order without an answer fails with 503.
#[derive(Default)]
struct Orders {
    answers: Mutex<HashMap<i64, Option<Value>>>,
    calls: Mutex<Vec<i64>>,
}

#[async_trait::async_trait]
impl ChangeSource for Orders {
    async fn status_changes(&self, _window: &Window) -> Result<Fetched, ApiError> {
        Ok(Fetched {
            orders: Vec::<OrderChange>::new().into(),
            asked_at: Utc::now(),
            requests: 1,
            api_time: None,
            covered_from: None,
        })
    }

    async fn order_info(&self, order_id: i64, budget: &Pacer) -> Result<Option<Value>, ApiError> {
        budget.acquire().await;
        self.calls.lock().unwrap().push(order_id);
        match self.answers.lock().unwrap().get(&order_id) {
            Some(answer) => Ok(answer.clone()),
            None => Err(ApiError::Api {
                url: "http://127.0.0.1:9/services/v2/order/certificate".into(),
                status: 503,
                code: "http_503".into(),
                message: "down".into(),
                retry_after: None,
            }),
        }
    }
}

struct Stage {
    store: SharedStore,
    orders: Arc<Orders>,
    metrics: Arc<Metrics>,
    /// One clock for every run, so a second run goes on where the first
    /// stopped.
    clock: Clock,
    _dir: tempfile::TempDir,
}

fn config(give_up_after: Duration) -> EnrichConfig {
    EnrichConfig {
        statuses: None,
        max_share: 0.5,
        give_up_after,
    }
}

impl Stage {
    fn new() -> Stage {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ow.db")).unwrap();
        Stage {
            store: Arc::new(store),
            orders: Arc::new(Orders::default()),
            metrics: Arc::new(Metrics::new(Duration::from_secs(60))),
            clock: Clock::tokio(T0),
            _dir: dir,
        }
    }

    /// Records new transitions of `orders` to `status`, all held.
    async fn record(&self, orders: impl IntoIterator<Item = i64>, status: &str) {
        let changes: Vec<OrderChange> = orders
            .into_iter()
            .map(|order_id| OrderChange {
                order_id,
                certificate_id: Some(order_id + 1000),
                status: Arc::from(status),
            })
            .collect();
        let at = DateTime::from_timestamp_millis(T0).unwrap();
        let mut chunk = Chunk::whole(changes, Some(at), at);
        chunk.hold = Hold::All;
        self.store.record(chunk, Arc::from([])).await.unwrap();
    }

    /// Runs the stage (60 lookups a minute of budget, half of it theirs)
    /// for `long` of paused time.
    async fn run_for(&self, config: EnrichConfig, long: Duration) {
        let enricher = Enricher {
            source: Arc::clone(&self.orders) as Arc<dyn ChangeSource>,
            store: Arc::clone(&self.store),
            per_minute: config.lookups_per_minute(60),
            budget: Arc::new(Pacer::new(config.lookups_per_minute(60))),
            config,
            metrics: Arc::clone(&self.metrics),
            sinks: Wake::default(),
            held: Arc::new(Notify::new()),
            clock: self.clock,
            watched: Default::default(),
        };
        let stop = CancellationToken::new();
        let running = tokio::spawn(enricher.run_until_stopped(stop.clone()));
        let began = tokio::time::Instant::now();
        tokio::time::sleep(long).await;
        eprintln!(
            "ran {:?}, {} calls",
            began.elapsed(),
            self.orders.calls.lock().unwrap().len()
        );
        stop.cancel();
        running.await.unwrap().unwrap();
    }

    /// `data.order` of each order's transition, by order id.
    async fn details(&self) -> HashMap<i64, Option<String>> {
        let filter = EventFilter {
            limit: 100_000,
            ..EventFilter::default()
        };
        let events = self.store.events(&filter).await.unwrap();
        events
            .into_iter()
            .map(|t| (t.order_id, t.details))
            .collect()
    }

    fn counted(&self, outcome: &str) -> u64 {
        let text = self.metrics.render(&[], None, 0);
        let needle = format!("orderwatch_enrich_lookups_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&needle))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

fn issued(order_id: i64) -> Value {
    json!({
        "id": order_id,
        "certificate": {"common_name": format!("o{order_id}.example"), "serial_number": "0A"},
        "status": "issued"
    })
}

#[tokio::test(start_paused = true)]
async fn held_transitions_get_their_order_details_and_a_404_gets_null_at_once() {
    let s = Stage::new();
    s.orders.answers.lock().unwrap().insert(1, Some(issued(1)));
    s.orders.answers.lock().unwrap().insert(2, None);
    s.record([1, 2], "issued").await;
    s.run_for(config(Duration::from_secs(3600)), Duration::from_secs(5))
        .await;
    let details = s.details().await;
    assert_eq!(
        details[&1].as_deref(),
        Some(r#"{"common_name":"o1.example","serial_number":"0A"}"#)
    );
    assert_eq!(details[&2].as_deref(), Some(NO_DETAILS));
    assert_eq!(s.orders.calls.lock().unwrap().len(), 2);
    assert_eq!((s.counted("ok"), s.counted("not_found")), (1, 1));
    assert_eq!(
        s.store.lookup_backlog().await.unwrap(),
        LookupBacklog::default()
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_lookup_backs_off_and_gives_up_with_null_after_give_up_after() {
    let s = Stage::new();
    s.record([7], "issued").await;
    // An hour of failures: still held just before, released with null after.
    s.run_for(config(Duration::from_secs(3600)), Duration::from_secs(3590))
        .await;
    assert_eq!(s.details().await[&7], None);
    let attempts = s.orders.calls.lock().unwrap().len();
    // 5 s doubling (half jittered) to 5 min: a few dozen tries in an hour,
    // not one a second.
    assert!((8..=40).contains(&attempts), "{attempts} attempts");
    s.run_for(config(Duration::from_secs(3600)), Duration::from_secs(30))
        .await;
    assert_eq!(s.details().await[&7].as_deref(), Some(NO_DETAILS));
    assert_eq!(s.counted("given_up"), 1);
    assert!(s.counted("retry") >= 8);
}

#[tokio::test(start_paused = true)]
async fn lookups_keep_to_their_share_of_the_request_budget() {
    let s = Stage::new();
    for id in 1..=200 {
        s.orders
            .answers
            .lock()
            .unwrap()
            .insert(id, Some(issued(id)));
    }
    s.record(1..=200, "issued").await;
    // 60 requests a minute, half for lookups: 30 a minute (plus the burst).
    s.run_for(config(Duration::from_secs(3600)), Duration::from_secs(120))
        .await;
    let calls = s.orders.calls.lock().unwrap().len();
    assert!((55..=70).contains(&calls), "{calls} lookups in two minutes");
    // Every answer but those still in flight at the stop is stored.
    let stored = s.details().await.values().filter(|d| d.is_some()).count();
    assert!((calls.saturating_sub(CONCURRENCY)..=calls).contains(&stored));
    let backlog = s.store.lookup_backlog().await.unwrap();
    assert_eq!(backlog.orders as usize, 200 - stored);
    let text = s.metrics.render(&[], None, 0);
    let gauge: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("orderwatch_enrich_backlog "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the backlog gauge");
    assert!(
        (200 - stored..=200).contains(&gauge),
        "{gauge} held, {stored} stored"
    );
}

#[test]
fn hold_follows_the_configured_statuses() {
    assert_eq!(hold(None), Hold::Nothing);
    assert_eq!(hold(Some(&config(Duration::from_secs(1)))), Hold::All);
    let some = EnrichConfig {
        statuses: Some(vec!["issued".into()]),
        ..config(Duration::from_secs(1))
    };
    assert!(hold(Some(&some)).takes("ISSUED"));
    assert!(!hold(Some(&some)).takes("pending"));
}
