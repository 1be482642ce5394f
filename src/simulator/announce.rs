//! Telling a daemon about changes, like CertCentral's account webhooks do:
//! after each change the simulator can `POST` to a wake URL (orderwatch's
//! `[wake]` endpoint), so demos and the latency benchmark see pushed polls.
//!
//! The request says only that something changed (an event name and the
//! order id, like CertCentral's `{"event": ..., "data": {...}}`); the
//! daemon must still poll to learn what.

use super::Simulator;

/// Where (and with which key header) changes are announced.
#[derive(Debug, Clone)]
pub(crate) struct WakeTarget {
    url: String,
    key: Option<(String, String)>,
}

impl Simulator {
    /// From now on, `POST` to `url` after every change, with `key` as
    /// `(header, value)` if given. `None` stops announcing.
    pub fn announce_changes_to(&self, url: Option<String>, key: Option<(String, String)>) {
        self.lock().wake = url.map(|url| WakeTarget { url, key });
    }

    /// Announces a change of `order_id`, if a target is set and a tokio
    /// runtime is there to send it (without one there is no daemon to
    /// wake either). Fire and forget: a daemon that is down misses it, as
    /// it would miss CertCentral's.
    pub(crate) fn announce(&self, order_id: i64) {
        let Some(target) = self.lock().wake.clone() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let Ok(client) = crate::http::client_builder(std::time::Duration::from_secs(5)).build()
            else {
                return;
            };
            let body = serde_json::json!({
                "event": "order_status_changed",
                "data": { "order_id": order_id },
            });
            let mut request = client
                .post(&target.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
            if let Some((header, value)) = &target.key {
                request = request.header(header.as_str(), value.as_str());
            }
            if let Err(e) = request.send().await {
                tracing::debug!(error = %e, url = %target.url, "simulator: cannot announce a change");
            }
        });
    }
}
