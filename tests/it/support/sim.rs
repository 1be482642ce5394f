//! The CertCentral simulator as the tests use it: the library's types,
//! re-exported from this one place, the configurations tests ask for, and
//! plain HTTP requests to it (for the simulator's own tests).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::Denver;
pub use orderwatch::simulator::{
    Fault, RecordedQuery, Simulator, SimulatorConfig, SimulatorHandle,
};
use serde_json::Value;

use super::KEY;

/// A quiet simulator that answers in pages of at most `size` orders.
pub fn paged(size: usize) -> SimulatorConfig {
    SimulatorConfig {
        page_size: Some(size),
        ..SimulatorConfig::default()
    }
}

// Talking to a simulator over plain HTTP, as any client would.

/// A reqwest client for plain HTTP.
pub fn client() -> reqwest::Client {
    // reqwest is built without a bundled TLS provider; plain HTTP still needs
    // one installed to build a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A quiet simulator with the default account.
pub async fn start() -> SimulatorHandle {
    start_with(SimulatorConfig::default()).await
}

pub async fn start_with(cfg: SimulatorConfig) -> SimulatorHandle {
    Simulator::start(cfg).await.expect("simulator starts")
}

pub fn status_changes_url(h: &SimulatorHandle, query: &str) -> String {
    format!("{}/order/certificate/status-changes?{query}", h.base_url())
}

/// `GET status-changes?query` with `key` (or none): the status and the
/// JSON body.
pub async fn get_with_key(h: &SimulatorHandle, query: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(status_changes_url(h, query));
    if let Some(key) = key {
        req = req.header("X-DC-DEVKEY", key);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body arrives");
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    (status, json)
}

/// `GET status-changes?query` with the right key.
pub async fn get(h: &SimulatorHandle, query: &str) -> (u16, Value) {
    get_with_key(h, query, Some(KEY)).await
}

/// `PUT order/certificate/{order_id}/status` with `body`: the status and
/// the body as text.
pub async fn cancel(h: &SimulatorHandle, order_id: &str, body: &str) -> (u16, String) {
    let resp = client()
        .put(format!(
            "{}/order/certificate/{order_id}/status",
            h.base_url()
        ))
        .header("X-DC-DEVKEY", KEY)
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .expect("request succeeds");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body arrives"))
}

pub async fn json_of(resp: reqwest::Response) -> Value {
    let body = resp.bytes().await.expect("the whole body arrives");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}

/// The code of an error answer, which must hold exactly one error with a
/// message and nothing else.
pub fn error_code(v: &Value) -> String {
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "only `errors`: {v}"
    );
    let errors = v["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["message"].is_string(), "{v}");
    errors[0]["code"]
        .as_str()
        .expect("code is a string")
        .to_owned()
}

/// The order ids of an answer, in answer order.
pub fn order_ids(v: &Value) -> Vec<i64> {
    v["orders"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["order_id"].as_i64()).collect())
        .unwrap_or_default()
}

/// A Mountain-time wall-clock reading that is not ambiguous.
pub fn mt(s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").expect("valid time");
    Denver
        .from_local_datetime(&naive)
        .single()
        .expect("unambiguous")
        .with_timezone(&Utc)
}

pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}
