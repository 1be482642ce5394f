//! Living under systemd: readiness and watchdog notifications, signals, and
//! the `/metrics` + `/healthz` endpoint. Outside systemd the notifications
//! are no-ops (no `$NOTIFY_SOCKET`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use sd_notify::NotifyState;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::daemon::{Request, RoleCell, role};
use crate::metrics::Metrics;
use crate::store::{SharedStore, SinkRoute};
use crate::transition::now_ms;

fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

/// READY=1 with a first status line.
pub fn ready(status: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// STATUS=, shown by `systemctl status`.
pub fn status(status: &str) {
    notify(&[NotifyState::Status(status)]);
}

pub fn watchdog() {
    notify(&[NotifyState::Watchdog]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// RELOADING=1 with the CLOCK_MONOTONIC timestamp systemd asks for.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(t) => notify(&[NotifyState::Reloading, t]),
        Err(_) => notify(&[NotifyState::Reloading]),
    }
}

/// How often to ping, if systemd set `WatchdogSec=`: half the timeout.
pub fn watchdog_interval() -> Option<Duration> {
    ping_interval(sd_notify::watchdog_enabled()?)
}

/// The shortest ping interval: a `WatchdogSec=` below twice this cannot be
/// honoured without spinning, so it is pinged this often (and said so).
const MIN_PING: Duration = Duration::from_millis(50);

/// Half the watchdog timeout, within reason: `WATCHDOG_USEC=0` turns the
/// watchdog off (a zero period would stop the daemon), and an absurdly
/// short timeout is pinged every [`MIN_PING`] rather than in a busy loop.
fn ping_interval(timeout: Duration) -> Option<Duration> {
    if timeout.is_zero() {
        tracing::warn!("WATCHDOG_USEC=0: no watchdog timeout, so the watchdog is not fed");
        return None;
    }
    let half = timeout / 2;
    if half < MIN_PING {
        tracing::warn!(
            timeout_us = timeout.as_micros() as u64,
            "WatchdogSec= is shorter than {}ms; pinging every {}ms, which may be too late for systemd",
            (MIN_PING * 2).as_millis(),
            MIN_PING.as_millis()
        );
        return Some(MIN_PING);
    }
    Some(half)
}

/// SIGTERM, SIGINT and SIGHUP as one stream.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    pub async fn next(&mut self) -> Request {
        tokio::select! {
            _ = self.term.recv() => Request::Shutdown,
            _ = self.int.recv() => Request::Shutdown,
            _ = self.hup.recv() => Request::Reload,
        }
    }
}

/// The configured sinks, shared with the metrics endpoint and replaced on
/// reload, so a sink added by SIGHUP gets its outbox gauges at once.
#[derive(Clone, Default)]
pub struct SinkNames(Arc<std::sync::RwLock<Arc<Vec<SinkRoute>>>>);

impl SinkNames {
    pub fn new(routes: Vec<SinkRoute>) -> SinkNames {
        SinkNames(Arc::new(std::sync::RwLock::new(Arc::new(routes))))
    }

    pub fn set(&self, routes: Vec<SinkRoute>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routes);
    }

    pub fn get(&self) -> Arc<Vec<SinkRoute>> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Clone)]
struct Endpoint {
    metrics: Arc<Metrics>,
    store: SharedStore,
    sinks: SinkNames,
    role: RoleCell,
    /// `host:pid`, as the store's leadership row names nodes.
    node: Arc<str>,
}

/// What the endpoint shows: counters, the store to read gauges from (a
/// standby reads the shared store too, so every node shows the same
/// outbox and cursor), the sinks, and this node's role.
pub struct Shown {
    pub metrics: Arc<Metrics>,
    pub store: SharedStore,
    pub sinks: SinkNames,
    pub role: RoleCell,
    pub node: String,
}

/// Binds the metrics listener (so a taken port fails the start, loudly).
pub async fn bind_metrics(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `/metrics` and `/healthz` until `shutdown`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    shown: Shown,
    shutdown: CancellationToken,
) {
    let state = Endpoint {
        metrics: shown.metrics,
        store: shown.store,
        sinks: shown.sinks,
        role: shown.role,
        node: Arc::from(shown.node),
    };
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/healthz", get(healthz))
        .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "metrics endpoint stopped");
    }
}

/// The body is OpenMetrics text (what prometheus-client writes), which the
/// Prometheus 0.0.4 text parser also reads; the content type follows what
/// the scraper asks for, so Prometheus gets the stricter OpenMetrics parser
/// and `curl` or a browser get plain text.
async fn metrics_page(State(s): State<Endpoint>, headers: HeaderMap) -> impl IntoResponse {
    let names = s.sinks.get();
    let read = async { Ok((s.store.sink_stats(&names).await?, s.store.cursor().await?)) };
    let read: Result<_, crate::store::StoreError> = read.await;
    match read {
        Ok((stats, cursor)) => {
            let body = s
                .metrics
                .render(&stats, cursor.map(|c| c.timestamp_millis()), now_ms());
            let openmetrics = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let content_type = if openmetrics {
                OPENMETRICS_CONTENT_TYPE
            } else {
                TEXT_CONTENT_TYPE
            };
            (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "/metrics: cannot read the store");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read the store: {e}\n"),
            )
                .into_response()
        }
    }
}

const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// 200 or 503 with one line of text on SQLite (see [`role::health`]);
/// JSON naming the role and the leader on a store with standbys.
async fn healthz(State(s): State<Endpoint>) -> impl IntoResponse {
    let health = role::health(&s.role.get(), &s.node, s.metrics.health(now_ms()));
    let status = if health.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let content_type = if health.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], health.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_watchdog_timeouts_neither_stop_the_daemon_nor_spin_it() {
        assert_eq!(ping_interval(Duration::ZERO), None);
        assert_eq!(ping_interval(Duration::from_micros(1)), Some(MIN_PING));
        assert_eq!(ping_interval(Duration::from_millis(60)), Some(MIN_PING));
        assert_eq!(
            ping_interval(Duration::from_secs(120)),
            Some(Duration::from_secs(60))
        );
    }
}
