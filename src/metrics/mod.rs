//! Prometheus metrics and the health signal.
//!
//! Counters are bumped where things happen; the outbox and cursor gauges are
//! read from the store when `/metrics` is scraped, so they are never stale and
//! cost nothing between scrapes. Metric names follow one pattern for every
//! sink (`orderwatch_deliveries_total{sink=...,outcome=...}`), as vector does.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

use crate::store::SinkStats;

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// Every metric orderwatch exports.
pub struct Metrics {
    registry: Registry,
    polls: Family<Labels, Counter>,
    api_errors: Family<Labels, Counter>,
    transitions: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    outbox_depth: Family<Labels, Gauge>,
    outbox_dead: Family<Labels, Gauge>,
    outbox_oldest: Family<Labels, FloatGauge>,
    sink_paused: Family<Labels, Gauge>,
    wakes: Family<Labels, Counter>,
    enrich_lookups: Family<Labels, Counter>,
    enrich_backlog: Gauge,
    cursor_lag: FloatGauge,
    last_success: FloatGauge,
    /// 1 while this node leads (polls and delivers), 0 while it stands by.
    leader: Gauge,
    /// Unix ms of the last successful poll cycle (0: none yet).
    last_success_ms: AtomicI64,
    started_ms: AtomicI64,
    interval_ms: AtomicI64,
    /// Unix ms of the poller's last sign of progress (watchdog).
    beat_ms: AtomicI64,
    render_lock: std::sync::Mutex<()>,
    /// Label values used so far for statuses and API error codes: a
    /// hostile API could otherwise mint a metric series per answer.
    statuses_seen: std::sync::Mutex<HashSet<String>>,
    api_error_codes: std::sync::Mutex<HashSet<String>>,
}

/// Distinct label values one family may take; later ones count as `other`.
const MAX_LABEL_VALUES: usize = 64;

/// `value` as a label: as it is when it is a plain word (`[a-z0-9_]`, as
/// every DigiCert status and error code is) and one of the first
/// [`MAX_LABEL_VALUES`] seen, else `other`.
fn bounded_label(seen: &std::sync::Mutex<HashSet<String>>, value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !plain {
        return "other".to_string();
    }
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.contains(value) || seen.len() < MAX_LABEL_VALUES {
        seen.insert(value.to_string());
        value.to_string()
    } else {
        "other".to_string()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    pub fn new(interval: Duration) -> Metrics {
        let mut registry = Registry::with_prefix("orderwatch");
        let polls: Family<Labels, Counter> =
            registered(&mut registry, "polls", "Poll cycles by outcome (ok, error)");
        let api_errors: Family<Labels, Counter> = registered(
            &mut registry,
            "api_errors",
            "Failed CertCentral requests by error code (the API's code, or http_<status>, network, timeout, malformed)",
        );
        let transitions: Family<Labels, Counter> = registered(
            &mut registry,
            "transitions",
            "New order status transitions recorded, by status",
        );
        let deliveries: Family<Labels, Counter> = registered(
            &mut registry,
            "deliveries",
            "Delivery attempts by sink and outcome (delivered, retry, dead, gone)",
        );
        let outbox_depth: Family<Labels, Gauge> =
            registered(&mut registry, "outbox_depth", "Pending deliveries per sink");
        let outbox_dead: Family<Labels, Gauge> = registered(
            &mut registry,
            "outbox_dead",
            "Dead deliveries per sink (see `orderwatch redeliver`)",
        );
        let outbox_oldest: Family<Labels, FloatGauge> = registered(
            &mut registry,
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest pending delivery per sink",
        );
        let sink_paused: Family<Labels, Gauge> = registered(
            &mut registry,
            "sink_paused",
            "1 while a sink is paused after 410 Gone",
        );
        let (wakes, enrich_lookups, enrich_backlog) = register_event_metrics(&mut registry);
        let cursor_lag: FloatGauge = registered(
            &mut registry,
            "cursor_lag_seconds",
            "How far behind now the polling cursor is",
        );
        let last_success: FloatGauge = registered(
            &mut registry,
            "last_successful_poll_timestamp_seconds",
            "Unix time of the last successful poll cycle",
        );
        let leader: Gauge = registered(
            &mut registry,
            "leader",
            "1 while this node leads (polls and delivers), 0 while it is a standby",
        );
        Metrics {
            registry,
            polls,
            api_errors,
            transitions,
            deliveries,
            outbox_depth,
            outbox_dead,
            outbox_oldest,
            sink_paused,
            wakes,
            enrich_lookups,
            enrich_backlog,
            cursor_lag,
            last_success,
            leader,
            last_success_ms: AtomicI64::new(0),
            started_ms: AtomicI64::new(crate::transition::now_ms()),
            interval_ms: AtomicI64::new(interval.as_millis() as i64),
            beat_ms: AtomicI64::new(crate::transition::now_ms()),
            render_lock: std::sync::Mutex::new(()),
            statuses_seen: std::sync::Mutex::default(),
            api_error_codes: std::sync::Mutex::default(),
        }
    }

    /// The poll interval changed (config reload).
    pub fn set_interval(&self, interval: Duration) {
        self.interval_ms
            .store(interval.as_millis() as i64, Ordering::Relaxed);
    }

    /// This node starts leading (`true`) or standing by. Health is judged
    /// per term: a node that takes over after hours as a standby is
    /// "starting" until its first poll, not unhealthy for lack of one.
    pub fn set_leading(&self, leading: bool, now_ms: i64) {
        self.leader.set(i64::from(leading));
        if leading {
            self.started_ms.store(now_ms, Ordering::Relaxed);
            self.last_success_ms.store(0, Ordering::Relaxed);
        }
    }

    /// The poller made progress (a request answered, a window committed, a
    /// tick): what the systemd watchdog is fed from.
    pub fn beat(&self) {
        self.beat_ms
            .store(crate::transition::now_ms(), Ordering::Relaxed);
    }

    /// Milliseconds since the poller last made progress.
    pub fn since_beat_ms(&self, now_ms: i64) -> i64 {
        now_ms - self.beat_ms.load(Ordering::Relaxed)
    }

    pub fn poll_ok(&self, now_ms: i64) {
        self.polls
            .get_or_create(&vec![("outcome", "ok".to_string())])
            .inc();
        self.last_success_ms.store(now_ms, Ordering::Relaxed);
        self.last_success.set(now_ms as f64 / 1000.0);
    }

    pub fn poll_failed(&self) {
        self.polls
            .get_or_create(&vec![("outcome", "error".to_string())])
            .inc();
    }

    pub fn api_error(&self, code: &str) {
        let label = bounded_label(&self.api_error_codes, code);
        self.api_errors.get_or_create(&vec![("code", label)]).inc();
    }

    pub fn transitions(&self, status: &str, n: u64) {
        let label = bounded_label(&self.statuses_seen, status);
        self.transitions
            .get_or_create(&vec![("status", label)])
            .inc_by(n);
    }

    pub fn delivery(&self, sink: &str, outcome: &'static str, n: u64) {
        self.deliveries
            .get_or_create(&vec![
                ("sink", sink.to_string()),
                ("outcome", outcome.to_string()),
            ])
            .inc_by(n);
    }

    /// A wake request: `accepted`, `rejected` or `coalesced`.
    pub fn wake(&self, outcome: &'static str) {
        self.wakes
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// An order info lookup: `ok`, `not_found`, `retry` or `given_up`.
    pub fn enrich_lookup(&self, outcome: &'static str) {
        self.enrich_lookups
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// Events waiting for their order's details.
    pub fn enrich_backlog(&self, held: u64) {
        self.enrich_backlog.set(held as i64);
    }

    /// Unix ms of the last successful poll, if any.
    pub fn last_success_ms(&self) -> Option<i64> {
        match self.last_success_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(ms),
        }
    }

    /// `Ok` while polls succeed; `Err(reason)` once the last success (or the
    /// start, before any) is older than three intervals.
    pub fn health(&self, now_ms: i64) -> Result<String, String> {
        let interval = self.interval_ms.load(Ordering::Relaxed).max(1);
        let limit = 3 * interval;
        match self.last_success_ms() {
            Some(t) if now_ms - t <= limit => Ok(format!(
                "ok: last successful poll {}s ago",
                (now_ms - t) / 1000
            )),
            Some(t) => Err(format!(
                "unhealthy: last successful poll {}s ago, more than 3 poll intervals ({}s)",
                (now_ms - t) / 1000,
                limit / 1000
            )),
            None => {
                let since_start = now_ms - self.started_ms.load(Ordering::Relaxed);
                if since_start <= limit {
                    Ok("starting: no poll has completed yet".to_string())
                } else {
                    Err(format!(
                        "unhealthy: no successful poll in the {}s since start",
                        since_start / 1000
                    ))
                }
            }
        }
    }

    /// Renders the text exposition after refreshing the store-derived gauges.
    /// Sinks no longer configured (removed by a reload) drop out of the
    /// per-sink gauges; their delivery counters stay, as counters should.
    pub fn render(&self, stats: &[SinkStats], cursor_ms: Option<i64>, now_ms: i64) -> String {
        // One render at a time, so a concurrent scrape never sees the
        // gauges between clearing and refilling.
        let _guard = self.render_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.outbox_depth.clear();
        self.outbox_dead.clear();
        self.outbox_oldest.clear();
        self.sink_paused.clear();
        for s in stats {
            let l = vec![("sink", s.sink.clone())];
            self.outbox_depth.get_or_create(&l).set(s.pending as i64);
            self.outbox_dead.get_or_create(&l).set(s.dead as i64);
            let age = s
                .oldest_pending
                .map_or(0.0, |t| ((now_ms - t).max(0)) as f64 / 1000.0);
            self.outbox_oldest.get_or_create(&l).set(age);
            self.sink_paused.get_or_create(&l).set(i64::from(s.paused));
        }
        if let Some(c) = cursor_ms {
            self.cursor_lag.set(((now_ms - c).max(0)) as f64 / 1000.0);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// The wake endpoint's and the enrichment stage's metrics.
/// Creates a metric, registers it under `name` with its help text, and
/// returns the handle that updates it.
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

fn register_event_metrics(
    registry: &mut Registry,
) -> (Family<Labels, Counter>, Family<Labels, Counter>, Gauge) {
    let wakes: Family<Labels, Counter> = registered(
        registry,
        "wakes",
        "POST /wake requests by outcome (accepted, rejected: wrong or missing key) and accepted wakes coalesced into a cycle already due",
    );
    let enrich_lookups: Family<Labels, Counter> = registered(
        registry,
        "enrich_lookups",
        "Order info lookups by outcome (ok, not_found, retry, given_up)",
    );
    let enrich_backlog: Gauge = registered(
        registry,
        "enrich_backlog",
        "Events held until their order's details are looked up",
    );
    (wakes, enrich_lookups, enrich_backlog)
}

#[cfg(test)]
mod tests;
