//! A local webhook receiver on a random port: verifies Standard Webhooks
//! signatures on its own (independently of orderwatch's signer), records what
//! arrives, and answers from a script of responses.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
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
    /// A status with this body (e.g. a 400 explaining what is wrong).
    Body(u16, String),
    /// Record the delivery as accepted (200) at once, then wait this long
    /// before answering: a receiver that has processed an event whose
    /// answer the sender may never see.
    AcceptThenStall(Duration),
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
    /// When the request arrived (before any scripted delay).
    pub arrived: Instant,
    /// The body exactly as it arrived, for checks by other verifiers.
    pub raw_body: Vec<u8>,
    /// The `webhook-signature` header as it arrived.
    pub signature: String,
    /// The `Authorization` header, if any (URL credentials arrive as Basic auth).
    pub authorization: Option<String>,
    /// The query string of the request URL, if any.
    pub query: Option<String>,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    /// Answer used once the script is empty.
    default: Option<Reply>,
    deliveries: Vec<Delivery>,
    /// Requests seen, answered or not (a `Hang` is never answered).
    arrivals: usize,
    /// Answers for one event id (`webhook-id`), before anything else.
    by_id: HashMap<String, VecDeque<Reply>>,
    /// The answer for one event id once its script runs out.
    default_by_id: HashMap<String, Reply>,
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

    /// Answers for the next requests carrying event `id`, in order; they
    /// take precedence over everything else. Then come the general script,
    /// the per-id default and the general default.
    pub fn script_for(&self, id: &str, replies: impl IntoIterator<Item = Reply>) {
        self.lock()
            .by_id
            .entry(id.to_string())
            .or_default()
            .extend(replies);
    }

    /// The answer for event `id` once its own script and the general
    /// script run out (before the general default).
    pub fn set_default_for(&self, id: &str, reply: Reply) {
        self.lock().default_by_id.insert(id.to_string(), reply);
    }

    /// The answer once the script runs out (default: 200).
    pub fn set_default(&self, reply: Reply) {
        self.lock().default = Some(reply);
    }

    /// Requests that arrived so far, including those still unanswered.
    pub fn arrivals(&self) -> usize {
        self.lock().arrivals
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

    /// How many times each event id was accepted.
    pub fn accepted_counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.accepted() {
            *counts.entry(d.id).or_insert(0) += 1;
        }
        counts
    }

    /// The event ids accepted at least once.
    pub fn accepted_ids(&self) -> HashSet<String> {
        self.accepted().into_iter().map(|d| d.id).collect()
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

async fn handle(
    State(r): State<Receiver>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
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
        inner.arrivals += 1;
        inner
            .by_id
            .get_mut(&id)
            .and_then(VecDeque::pop_front)
            .or_else(|| inner.script.pop_front())
            .or_else(|| inner.default_by_id.get(&id).cloned())
            .or_else(|| inner.default.clone())
            .unwrap_or(Reply::Status(200))
    };
    let record = |status: u16| Delivery {
        id: id.clone(),
        timestamp: ts.parse().unwrap_or(0),
        signature_ok,
        content_type: h("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        answered: status,
        arrived,
        raw_body: body.to_vec(),
        signature: sig.clone(),
        authorization: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        query: query.clone(),
    };
    let mut text = "scripted".to_string();
    let mut recorded = false;
    let (status, extra) = match &reply {
        Reply::Status(s) => (*s, None),
        Reply::Body(s, b) => {
            text = b.clone();
            (*s, None)
        }
        Reply::RetryAfter(s, v) => (*s, Some(v.clone())),
        Reply::Slow(d) => {
            tokio::time::sleep(*d).await;
            (200, None)
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (200, None)
        }
        Reply::AcceptThenStall(d) => {
            r.lock().deliveries.push(record(200));
            recorded = true;
            tokio::time::sleep(*d).await;
            (200, None)
        }
    };
    if !recorded {
        r.lock().deliveries.push(record(status));
    }
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match extra {
        Some(v) => (code, [("retry-after", v)], text).into_response(),
        None => (code, text).into_response(),
    }
}

/// Writes [`SECRET`] to `secret.txt` in `dir` (for `secret_file`);
/// writing it again is harmless.
pub fn write_secret(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("secret.txt");
    std::fs::write(&path, format!("{SECRET}\n")).expect("write secret");
    path
}
