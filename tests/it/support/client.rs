//! The window planner and the CertCentral client, used in-process by the
//! catch-up test that probes every window edge around a DST change (far
//! too many windows to drive through the binary).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::America::Denver;
use orderwatch::certcentral::Client;
use orderwatch::config::{Config, Secret};
use orderwatch::pacer::Pacer;
use orderwatch::window::{Window, plan};

use super::{KEY, World};

/// A client for the world's simulator, configured from its config file.
pub struct Api {
    client: Client,
}

impl Api {
    /// A client with the world's `[digicert]` settings and no pacing to
    /// speak of.
    pub fn new(w: &World) -> Api {
        let config = Config::load(&w.config).expect("config");
        let client = Client::new(
            &config.digicert,
            Secret::new(KEY),
            Arc::new(Pacer::new(60_000)),
        )
        .expect("client");
        Api { client }
    }

    /// Order ids of the changes in an absolute window (Mountain time on
    /// the wire); panics with the error if the window is refused.
    pub async fn absolute_window(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<i64> {
        self.client
            .status_changes(&Window::Absolute { start, end })
            .await
            .unwrap_or_else(|e| panic!("window {start}..{end} refused: {e}"))
            .orders
            .iter()
            .map(|o| o.order_id)
            .collect()
    }
}

/// The absolute catch-up windows the planner gives a first start at `now`
/// with `initial_lookback`, with the world's `[poll]` settings otherwise.
pub fn catch_up_windows(
    w: &World,
    now: DateTime<Utc>,
    initial_lookback: Duration,
) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut poll = Config::load(&w.config).expect("config").poll;
    poll.initial_lookback = initial_lookback;
    plan(None, now, &poll, Denver)
        .into_iter()
        .filter_map(|p| match p.window {
            Window::Absolute { start, end } => Some((start, end)),
            Window::Relative { .. } => None,
        })
        .collect()
}
