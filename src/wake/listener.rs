//! `POST /wake`: the HTTP face of [`PollWake`].
//!
//! The key (if configured) is compared in constant time, as HMAC tags
//! checked with `hmac`'s constant-time verification, so response timing
//! says nothing about how much of a guess was right. Rejections are logged
//! at most once a minute, so a flood of forged wakes cannot flood the log.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

use super::{PollWake, Wakeup};
use crate::config::Secret;
use crate::metrics::Metrics;
use crate::transition::now_ms;

/// What tags keys: any fixed text does, the key is the HMAC key.
const TAG_TEXT: &[u8] = b"orderwatch wake key";

/// Who may wake the poller: anyone, or whoever sends the key in the
/// header. Shared with the daemon, which replaces it on reload.
#[derive(Clone, Default)]
pub struct WakeAuth(Arc<RwLock<Option<Required>>>);

struct Required {
    header: HeaderName,
    tag: Vec<u8>,
}

impl std::fmt::Debug for WakeAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header = self
            .0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|r| r.header.to_string());
        f.debug_struct("WakeAuth")
            .field("header", &header)
            .finish_non_exhaustive()
    }
}

fn tag(key: &[u8]) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    mac.update(TAG_TEXT);
    Some(mac.finalize().into_bytes().to_vec())
}

impl WakeAuth {
    /// Requires `key` in `header` from now on; `None` lets anyone wake.
    pub fn set(&self, required: Option<(HeaderName, &Secret)>) {
        let next = required.and_then(|(header, key)| {
            Some(Required {
                header,
                tag: tag(key.expose().as_bytes())?,
            })
        });
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = next;
    }

    /// Whether a request with these headers may wake the poller.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let guard = self.0.read().unwrap_or_else(|e| e.into_inner());
        let Some(required) = guard.as_ref() else {
            return true;
        };
        let Some(presented) = headers.get(&required.header) else {
            return false;
        };
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(presented.as_bytes()) else {
            return false;
        };
        mac.update(TAG_TEXT);
        mac.verify_slice(&required.tag).is_ok()
    }

    fn header(&self) -> String {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or_else(String::new, |r| r.header.to_string())
    }
}

#[derive(Clone)]
struct Endpoint {
    wake: Arc<PollWake>,
    auth: WakeAuth,
    metrics: Arc<Metrics>,
    /// Unix ms of the last rejection logged, and rejections since.
    last_logged: Arc<AtomicI64>,
    unlogged: Arc<AtomicU64>,
}

/// Binds the wake listener (so a taken port fails the start, loudly).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// Serves `POST /wake` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    wake: Arc<PollWake>,
    auth: WakeAuth,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let state = Endpoint {
        wake,
        auth,
        metrics,
        last_logged: Arc::new(AtomicI64::new(0)),
        unlogged: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/wake", post(wake_up))
        .with_state(state);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "wake endpoint stopped");
    }
}

/// The body is never read: a wake carries no data.
async fn wake_up(State(s): State<Endpoint>, headers: HeaderMap) -> (StatusCode, &'static str) {
    if !s.auth.admits(&headers) {
        s.metrics.wake("rejected");
        log_rejection(&s);
        return (StatusCode::UNAUTHORIZED, "missing or wrong wake key\n");
    }
    s.metrics.wake("accepted");
    match s.wake.wake() {
        Wakeup::Scheduled => (StatusCode::OK, "ok: a poll cycle is due\n"),
        Wakeup::Coalesced => {
            s.metrics.wake("coalesced");
            (StatusCode::OK, "ok: a poll cycle was already due\n")
        }
    }
}

fn log_rejection(s: &Endpoint) {
    let now = now_ms();
    let unlogged = s.unlogged.fetch_add(1, Ordering::Relaxed) + 1;
    let last = s.last_logged.load(Ordering::Relaxed);
    if now - last < 60_000
        || s.last_logged
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    s.unlogged.store(0, Ordering::Relaxed);
    tracing::warn!(
        header = %s.auth.header(),
        rejected = unlogged,
        "rejected wake requests without the right key (logged at most once a minute; see orderwatch_wakes_total{{outcome=\"rejected\"}})"
    );
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn start(auth: WakeAuth) -> (String, Arc<PollWake>, Arc<Metrics>, CancellationToken) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let url = format!("http://{}/wake", listener.local_addr().unwrap());
        let wake = PollWake::new();
        let metrics = Arc::new(Metrics::new(Duration::from_secs(60)));
        let stop = CancellationToken::new();
        tokio::spawn(serve(
            listener,
            Arc::clone(&wake),
            auth,
            Arc::clone(&metrics),
            stop.clone(),
        ));
        (url, wake, metrics, stop)
    }

    fn counted(metrics: &Metrics, outcome: &str) -> bool {
        metrics.render(&[], None, 0).contains(&format!(
            "orderwatch_wakes_total{{outcome=\"{outcome}\"}} 1"
        ))
    }

    #[tokio::test]
    async fn a_wake_without_a_key_configured_rings_and_the_body_is_ignored() {
        let (url, wake, metrics, stop) = start(WakeAuth::default()).await;
        let client = crate::http::client_builder(Duration::from_secs(5))
            .build()
            .unwrap();
        let resp = client
            .post(&url)
            .body(
                "{\"event\":\"certificate_issued\",\"data\":{\"order_id\":\"not even a number\"}}",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        tokio::time::timeout(Duration::from_secs(1), wake.rung())
            .await
            .expect("the poller was woken");
        let again = client.post(&url).send().await.unwrap();
        assert_eq!(
            again.text().await.unwrap(),
            "ok: a poll cycle was already due\n"
        );
        assert!(counted(&metrics, "coalesced"));
        assert_eq!(client.get(&url).send().await.unwrap().status(), 405);
        stop.cancel();
    }

    #[tokio::test]
    async fn a_wrong_or_missing_key_is_refused_with_401_and_counted() {
        let auth = WakeAuth::default();
        let key = Secret::new("0123456789abcdef-wake-key");
        auth.set(Some((HeaderName::from_static("x-webhook-key"), &key)));
        let (url, wake, metrics, stop) = start(auth.clone()).await;
        let client = crate::http::client_builder(Duration::from_secs(5))
            .build()
            .unwrap();
        let missing = client.post(&url).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        let wrong = client
            .post(&url)
            .header("X-WEBHOOK-KEY", "0123456789abcdef-wake-kex")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let prefix = client
            .post(&url)
            .header("X-WEBHOOK-KEY", "0123456789abcdef-wake-ke")
            .send()
            .await
            .unwrap();
        assert_eq!(prefix.status(), 401);
        let quiet = tokio::time::timeout(Duration::from_millis(50), wake.rung()).await;
        assert!(quiet.is_err(), "a rejected wake rang");
        let right = client
            .post(&url)
            .header("x-webhook-key", key.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(right.status(), 200);
        assert!(counted(&metrics, "accepted"));
        assert!(
            metrics
                .render(&[], None, 0)
                .contains("orderwatch_wakes_total{outcome=\"rejected\"} 3")
        );
        // A reload that drops the key opens the door.
        auth.set(None);
        assert_eq!(client.post(&url).send().await.unwrap().status(), 200);
        assert!(!format!("{auth:?}").contains("wake-key"));
        stop.cancel();
    }
}
