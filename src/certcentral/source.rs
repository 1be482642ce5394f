//! What the poller and the enricher ask of CertCentral, as a trait a test
//! can stand in for.

use chrono::{DateTime, Utc};

use super::{ApiError, Client, OrderList};
use crate::pacer::Pacer;
use crate::window::Window;

/// What one window's requests returned.
#[derive(Debug)]
pub struct Fetched {
    /// In answer order, pages joined (see [`PageFollower`]).
    pub orders: OrderList,
    /// When the first request of the window was sent, by this machine's
    /// clock: for a relative window, everything up to here has been asked for.
    pub asked_at: DateTime<Utc>,
    pub requests: u32,
    /// CertCentral's own clock (its `Date` header) when it answered the
    /// first request, if it said.
    pub api_time: Option<DateTime<Utc>>,
    /// For a relative window, where its first request began by CertCentral's
    /// clock (`api_time` minus the span asked for): what it really covered.
    pub covered_from: Option<DateTime<Utc>>,
}

/// Where the poller gets order changes and the enricher order details:
/// the CertCentral client, or in tests a scripted stand-in (the daemon's
/// loops run in-process on tokio's paused clock, which real network I/O
/// would not survive).
#[async_trait::async_trait]
pub trait ChangeSource: Send + Sync {
    /// Every order of one window, all pages.
    async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError>;

    /// CertCentral's now, as well as the source knows its clock (see
    /// [`ApiClock`]); this machine's clock before the first answer.
    fn api_now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    /// The offset of CertCentral's clock from ours, once an answer said.
    fn api_offset(&self) -> Option<chrono::TimeDelta> {
        None
    }

    /// One order's info (`None`: 404), one attempt, after `budget` and
    /// the shared pacing allow it. A source that cannot look orders up
    /// says so; the enricher then gives up on time (`"order": null`).
    async fn order_info(
        &self,
        order_id: i64,
        budget: &Pacer,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        let _ = (order_id, budget);
        Err(ApiError::Unsupported {
            what: "looking up order details",
        })
    }
}

#[async_trait::async_trait]
impl ChangeSource for Client {
    async fn status_changes(&self, window: &Window) -> Result<Fetched, ApiError> {
        Client::status_changes(self, window).await
    }

    fn api_now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn api_offset(&self) -> Option<chrono::TimeDelta> {
        self.clock.offset()
    }

    async fn order_info(
        &self,
        order_id: i64,
        budget: &Pacer,
    ) -> Result<Option<serde_json::Value>, ApiError> {
        Client::order_info(self, order_id, budget).await
    }
}
