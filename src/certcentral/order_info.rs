//! `GET {base_url}/order/certificate/{order_id}`: CertCentral's order
//! info, for events with order details (`[enrich]`).
//!
//! One attempt per call: the enricher keeps its own retry schedule in the
//! store, so a failing lookup never blocks it (or the poller). Every call
//! waits for the enricher's share of the budget first, then for the
//! client's shared pacer, so lookups never take more than their share and
//! polls and `cancel` are paced with them as one budget; a 429 holds every
//! request of the client, as for polls.

use std::time::Duration;

use super::{ApiError, Client};
use crate::http::snippet;
use crate::pacer::Pacer;

/// Order info answers are a few KiB; anything far larger is not one.
const MAX_ORDER_INFO: u64 = 1 << 20;

impl Client {
    /// The order's info as CertCentral answers it, or `None` for 404
    /// (no such order, or not visible to this key).
    pub async fn order_info(
        &self,
        order_id: i64,
        budget: &Pacer,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let url = format!("{}/order/certificate/{order_id}", self.base_url);
        budget.acquire().await;
        self.pacer.acquire().await;
        let result = self.get_order_info(&url).await;
        if let Err(e) = &result {
            self.count(e);
            if e.is_rate_limit() {
                let wait = e.retry_after().unwrap_or(super::RATE_LIMIT_BACKOFF);
                self.pacer.back_off(wait.min(Duration::from_secs(300)));
            }
        }
        result
    }

    async fn get_order_info(&self, url: &str) -> Result<Option<serde_json::Value>, ApiError> {
        let resp = self
            .http
            .get(url)
            .header("X-DC-DEVKEY", self.key_header())
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(url, e))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.error_answer(url, resp).await);
        }
        let body = self.read_capped(url, resp, MAX_ORDER_INFO).await?;
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) if v.is_object() => Ok(Some(v)),
            Ok(_) => Err(ApiError::Malformed {
                url: url.to_string(),
                status: status.as_u16(),
                detail: "expected a JSON object (an order)".into(),
            }),
            Err(e) => Err(ApiError::Malformed {
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("{e}: {}", snippet(&body)),
            }),
        }
    }

    /// Reads a body of at most `limit` bytes.
    async fn read_capped(
        &self,
        url: &str,
        mut resp: reqwest::Response,
        limit: u64,
    ) -> Result<Vec<u8>, ApiError> {
        let too_large = || ApiError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(url, e))?
        {
            if body.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
