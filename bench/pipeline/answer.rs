//! The answers the benchmark serves: produced once by the embedded simulator
//! (so they are exactly what it would send), then served from memory by a
//! tiny HTTP server, so that neither orderwatch nor the Python reference is
//! timed waiting for the simulator to build a million-order answer.

use std::net::SocketAddr;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use orderwatch::simulator::{Simulator, SimulatorConfig};

use crate::child::API_KEY;

const STATUSES: [&str; 5] = [
    "issued",
    "pending",
    "needs_approval",
    "canceled",
    "rejected",
];

/// Orders 1..=count, in blocks of 1000 sharing a status.
pub fn orders(count: usize) -> Vec<(i64, &'static str)> {
    (0..count)
        .map(|i| (i as i64 + 1, STATUSES[(i / 1000) % STATUSES.len()]))
        .collect()
}

/// One answer with every order (no pages) and no rate limits: the
/// benchmark measures parsing one big answer, not paging through it.
fn whole_answer() -> SimulatorConfig {
    SimulatorConfig {
        page_size: None,
        ..SimulatorConfig::default().without_rate_limits()
    }
}

/// A status-changes answer listing [`orders`]`(count)`, all changed at
/// `at` (so the simulator lists them by order id).
pub async fn build(count: usize, at: DateTime<Utc>) -> Bytes {
    let sim = Simulator::new(whole_answer());
    for block in orders(count).chunks(1000) {
        sim.bulk_insert(block[0].0, block.len(), block[0].1, at);
    }
    fetch(sim).await
}

/// An answer listing exactly `orders` (id, status), changed at `at`.
pub async fn build_from(orders: &[(i64, &str)], at: DateTime<Utc>) -> Bytes {
    let sim = Simulator::new(whole_answer());
    for (id, status) in orders {
        sim.set_status(*id, *id + 100_000_000, status, at);
    }
    fetch(sim).await
}

async fn fetch(sim: Simulator) -> Bytes {
    let handle = sim.spawn().await.expect("simulator");
    let url = format!(
        "{}/order/certificate/status-changes?minutes=60",
        handle.base_url()
    );
    let body = reqwest::Client::new()
        .get(&url)
        .header("X-DC-DEVKEY", API_KEY)
        .send()
        .await
        .expect("simulator answer")
        .bytes()
        .await
        .expect("simulator body");
    handle.stop().await;
    body
}

/// Serves `body` to every status-changes request until dropped.
pub struct AnswerServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

/// Serves `app` on a free loopback port until its task is aborted (dropping
/// the handle leaves it serving, for the rest of the run).
pub async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

impl AnswerServer {
    pub async fn start(body: Bytes) -> AnswerServer {
        let app = axum::Router::new().route(
            "/services/v2/order/certificate/status-changes",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([("content-type", "application/json")], body) }
            }),
        );
        let (addr, task) = serve(app).await;
        AnswerServer { addr, task }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/services/v2", self.addr)
    }

    pub fn url(&self) -> String {
        format!(
            "{}/order/certificate/status-changes?minutes=60",
            self.base_url()
        )
    }
}

impl Drop for AnswerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
