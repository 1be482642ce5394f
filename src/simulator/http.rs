//! The axum face of the simulator: routing, authentication, both endpoints.
//!
//! Error codes besides those of `query` (status-changes filters):
//!
//! * 401 `invalid_api_key` — `X-DC-DEVKEY` missing or wrong (checked first).
//! * 404 `not_found` — unknown order, an order id that is not a decimal
//!   number (no such order can exist, so "not found" is the honest answer),
//!   or an unknown path.
//! * 405 `method_not_allowed` — known path, wrong method.
//! * 400 `invalid_json` — cancel body is not a JSON object.
//! * 400 `missing_param` — cancel `status` or `note` missing, null or empty
//!   (the message names the field).
//! * 400 `invalid_param` — cancel `note` is not a string.
//! * 400 `invalid_status` — cancel `status` is not exactly `CANCELED`.
//! * 400 `invalid_order_status` — the order is not `pending`/`waiting_pickup`.
//! * 413 `payload_too_large` — cancel body unreadable or over 64 KiB.
//! * 500 `internal_error` — the simulator itself failed (never expected).
//!
//! Cancel validation order: key, order id syntax, body, order existence,
//! order status.

use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, put};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;

use super::error::{ApiError, error_body};
use super::fault::{self, Fault, json_response};
use super::query::{self, Frame};
use super::server::ConnTag;
use super::status::Status;
use super::{CancelRequest, RecordedQuery, Simulator, mountain};

/// Path of the status-changes endpoint.
pub(crate) const STATUS_CHANGES_PATH: &str = "/services/v2/order/certificate/status-changes";
const ORDER_PREFIX: &str = "/services/v2/order/certificate/";
const MAX_CANCEL_BODY: usize = 64 * 1024;

/// What the real (fault-free) status-changes answer is, plus what to record.
struct Outcome {
    status: u16,
    body: Vec<u8>,
    returned: usize,
    minutes: Option<i64>,
    seconds: Option<i64>,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    offset: Option<u64>,
    limit: Option<u64>,
}

impl Simulator {
    /// Both endpoints under `/services/v2`, plus JSON 404/405 answers for
    /// everything else, all behind the rate limits and with the
    /// simulator's `Date` (see `limits`). Served through [`Simulator::serve`] the `Hang` fault
    /// closes connections cleanly; served any other way it degrades to
    /// headers followed by an aborted body.
    pub fn router(&self) -> Router {
        Router::new()
            .route(STATUS_CHANGES_PATH, get(status_changes))
            .route(
                "/services/v2/order/certificate/{order_id}",
                get(super::order_info::order_info),
            )
            .route(
                "/services/v2/order/certificate/{order_id}/status",
                put(cancel),
            )
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                super::limits::gate,
            ))
            .with_state(self.clone())
    }

    fn check_key(&self, sent: Option<&str>) -> Result<(), ApiError> {
        match sent {
            None => Err(ApiError::new(
                401,
                "invalid_api_key",
                "No API key was provided in the X-DC-DEVKEY header.",
            )),
            Some(k) if k == self.config().api_key => Ok(()),
            Some(_) => Err(ApiError::new(
                401,
                "invalid_api_key",
                "The API key is invalid.",
            )),
        }
    }

    /// The real status-changes answer; runs on a blocking thread because a
    /// big account's answer takes a while to serialize.
    fn answer_status_changes(&self, raw: &str, key: Option<&str>, now: DateTime<Utc>) -> Outcome {
        let params = query::split_query(raw);
        let p = params.as_ref().ok();
        let int = |v: Option<&String>| v.and_then(|v| v.parse::<i64>().ok());
        let count = |v: Option<&String>| v.and_then(|v| v.parse::<u64>().ok());
        let mut outcome = Outcome {
            status: 200,
            body: Vec::new(),
            returned: 0,
            minutes: int(p.and_then(|p| p.minutes.as_ref())),
            seconds: int(p.and_then(|p| p.seconds.as_ref())),
            range: p
                .and_then(|p| p.filter.as_deref())
                .and_then(|f| mountain::read_range(f, self.config().range_reading).ok()),
            offset: count(p.and_then(|p| p.offset.as_ref())),
            limit: count(p.and_then(|p| p.limit.as_ref())),
        };
        match self.window_answer(params, key, now) {
            Ok(answer) => {
                outcome.body = answer.body;
                outcome.returned = answer.returned;
            }
            Err(e) => {
                outcome.status = e.status;
                outcome.body = e.body();
            }
        }
        outcome
    }

    fn window_answer(
        &self,
        params: Result<query::RawParams, ApiError>,
        key: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<super::book::Answer, ApiError> {
        self.check_key(key)?;
        let params = params?;
        let frame = query::frame(&params, self.config().range_reading)?;
        let page = match self.config().page_size {
            Some(size) => Some(query::page(&params, size)?),
            None => None,
        };
        let (from_us, to_us) = match frame {
            Frame::Relative { seconds } => {
                let from = i64::try_from(seconds)
                    .ok()
                    .and_then(TimeDelta::try_seconds)
                    .and_then(|back| now.checked_sub_signed(back))
                    .map_or(i64::MIN, |t| t.timestamp_micros());
                (from, now.timestamp_micros())
            }
            // Upstream stores whole seconds, so an inclusive end second
            // covers everything up to the next one.
            Frame::Absolute { start, end } => (
                start.timestamp_micros(),
                end.timestamp_micros().saturating_add(999_999),
            ),
        };
        let mut state = self.lock();
        state.answers += 1;
        let unstable = self
            .config()
            .unstable_order
            .then(|| self.config().seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ state.answers);
        Ok(state.book.answer(from_us, to_us, page, unstable))
    }

    /// Validates and applies a cancel request; `Ok` means 204.
    fn apply_cancel(&self, raw_id: &str, body: &[u8], key: Option<&str>) -> Result<(), ApiError> {
        self.check_key(key)?;
        let not_found =
            || ApiError::new(404, "not_found", format!("Order {raw_id} was not found."));
        if raw_id.is_empty() || !raw_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_found());
        }
        let id: i64 = raw_id.parse().map_err(|_| not_found())?;
        let note = validate_cancel_body(body)?;
        let now = self.now();
        let mut state = self.lock();
        let (certificate_id, current) = state.book.current(id).ok_or_else(not_found)?;
        if !current.is_cancelable() {
            return Err(ApiError::bad_request(
                "invalid_order_status",
                format!(
                    "Order {id} is {}; only pending or waiting_pickup orders can be canceled.",
                    current.as_str()
                ),
            ));
        }
        state
            .book
            .set_status(id, certificate_id, Status::Canceled, now);
        state.notes.insert(id, note);
        Ok(())
    }
}

/// `{"status":"CANCELED","note":"..."}` → the note.
fn validate_cancel_body(body: &[u8]) -> Result<String, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(
            "invalid_json",
            format!("The request body is not valid JSON: {e}."),
        )
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "The request body must be a JSON object.",
        ));
    };
    let missing =
        |name: &str| ApiError::bad_request("missing_param", format!("{name} is required."));
    match fields.get("status") {
        None | Some(Value::Null) => return Err(missing("status")),
        Some(Value::String(s)) if s.is_empty() => return Err(missing("status")),
        Some(Value::String(s)) if s == "CANCELED" => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_status",
                format!("status must be \"CANCELED\" (case-sensitive), got {other}."),
            ));
        }
    }
    match fields.get("note") {
        None | Some(Value::Null) => Err(missing("note")),
        Some(Value::String(s)) if s.trim().is_empty() => Err(missing("note")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(
            "invalid_param",
            "note must be a string.",
        )),
    }
}

pub(super) fn api_key_sent(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-dc-devkey")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

pub(super) fn connection(req: &Request) -> Option<ConnTag> {
    req.extensions()
        .get::<ConnectInfo<ConnTag>>()
        .map(|c| c.0.clone())
}

async fn status_changes(State(sim): State<Simulator>, req: Request) -> Response {
    let raw_query = req.uri().query().unwrap_or_default().to_owned();
    let key = api_key_sent(req.headers());
    let conn = connection(&req);
    let fault = sim.lock().faults.pop_front();
    let at = sim.now();
    let worker = sim.clone();
    let (q, k) = (raw_query.clone(), key.clone());
    let outcome =
        tokio::task::spawn_blocking(move || worker.answer_status_changes(&q, k.as_deref(), at))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "simulator status-changes task failed");
                let err = ApiError::new(500, "internal_error", "The simulator failed to answer.");
                Outcome {
                    status: err.status,
                    body: err.body(),
                    returned: 0,
                    minutes: None,
                    seconds: None,
                    range: None,
                    offset: None,
                    limit: None,
                }
            });
    let (status, returned) = match &fault {
        Some(Fault::Respond { status, .. }) => (*status, 0),
        Some(Fault::Hang(_)) => (0, 0),
        _ => (outcome.status, outcome.returned),
    };
    sim.lock().queries.push(RecordedQuery {
        at,
        minutes: outcome.minutes,
        seconds: outcome.seconds,
        range: outcome.range,
        raw_query,
        offset: outcome.offset,
        limit: outcome.limit,
        status,
        orders_returned: returned,
        api_key_sent: key,
    });
    fault::deliver(fault, outcome.status, outcome.body, conn).await
}

async fn cancel(State(sim): State<Simulator>, req: Request) -> Response {
    let path = req.uri().path();
    let segment = path
        .strip_prefix(ORDER_PREFIX)
        .and_then(|rest| rest.strip_suffix("/status"))
        .unwrap_or_default();
    let order_id = query::percent_decode(segment);
    let key = api_key_sent(req.headers());
    let conn = connection(&req);
    let fault = sim.lock().cancel_faults.pop_front();
    let record = |body: &str, status: u16| {
        sim.lock().cancels.push(CancelRequest {
            order_id: order_id.clone(),
            body: body.to_owned(),
            status,
            api_key_sent: key.clone(),
        });
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_CANCEL_BODY).await else {
        record("", 413);
        let message = "The request body could not be read or exceeds 64 KiB.";
        return json_response(413, error_body("payload_too_large", message));
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    if let Some(Fault::Respond { status, .. }) = &fault {
        record(&text, *status);
        return fault::deliver(fault, 0, Vec::new(), conn).await;
    }
    let (status, answer) = match sim.apply_cancel(&order_id, &body, key.as_deref()) {
        Ok(()) => {
            sim.announce(order_id.parse().unwrap_or_default());
            (204, Vec::new())
        }
        Err(e) => (e.status, e.body()),
    };
    match fault {
        None => {
            record(&text, status);
            json_response(status, answer)
        }
        Some(Fault::Hang(d)) => {
            record(&text, 0);
            fault::hang(d, conn).await
        }
        Some(_) => {
            record(&text, 0);
            fault::hang(Duration::ZERO, conn).await
        }
    }
}

async fn not_found() -> Response {
    json_response(404, error_body("not_found", "No such endpoint."))
}

async fn method_not_allowed() -> Response {
    json_response(
        405,
        error_body(
            "method_not_allowed",
            "Method not allowed for this endpoint.",
        ),
    )
}
