//! A local webhook receiver on a random port: verifies Standard Webhooks
//! signatures on its own (independently of orderwatch's signer), records what
//! arrives, and answers from a script of responses.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

/// A secret in the Standard Webhooks format, for configs.
pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// A status with `Retry-After: <value>`.
    RetryAfter(u16, String),
    /// Wait this long, then 200.
    Slow(Duration),
    /// Never answer (the client's timeout must fire).
    Hang,
}

/// What arrived.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: i64,
    pub signature_ok: bool,
    pub content_type: String,
    pub body: Value,
    /// The status we answered.
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    /// Answer used once the script is empty.
    default: Option<Reply>,
    deliveries: Vec<Delivery>,
}

/// The receiver; clones share state.
#[derive(Clone)]
pub struct Receiver {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
    key: Arc<Vec<u8>>,
}

impl Receiver {
    /// Starts on 127.0.0.1:0, answering 200 unless scripted otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("receiver address");
        let key = STANDARD
            .decode(SECRET.trim_start_matches("whsec_"))
            .expect("test secret is base64");
        let r = Receiver {
            inner: Arc::new(Mutex::new(Inner::default())),
            addr,
            key: Arc::new(key),
        };
        let app = Router::new()
            .route("/hook", post(handle))
            .with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Answers for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// The answer once the script runs out (default: 200).
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = Some(reply);
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.lock().deliveries.clone()
    }

    /// Deliveries we answered with 2xx.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries()
            .into_iter()
            .filter(|d| (200..300).contains(&d.answered))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn verify(&self, id: &str, ts: &str, body: &[u8], header: &str) -> bool {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key) else {
            return false;
        };
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
        header.split(' ').any(|s| s == expected)
    }
}

async fn handle(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let signature_ok = r.verify(&id, &ts, &body, &sig);
    let reply = {
        let mut inner = r.lock();
        inner
            .script
            .pop_front()
            .or_else(|| inner.default.clone())
            .unwrap_or(Reply::Status(200))
    };
    let (status, extra) = match &reply {
        Reply::Status(s) => (*s, None),
        Reply::RetryAfter(s, v) => (*s, Some(v.clone())),
        Reply::Slow(d) => {
            tokio::time::sleep(*d).await;
            (200, None)
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (200, None)
        }
    };
    r.lock().deliveries.push(Delivery {
        id,
        timestamp: ts.parse().unwrap_or(0),
        signature_ok,
        content_type: h("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: status,
    });
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match extra {
        Some(v) => (code, [("retry-after", v)], "scripted").into_response(),
        None => (code, "scripted").into_response(),
    }
}
