//! The CertCentral simulator as the tests use it: the library's types,
//! re-exported from this one place, the configurations tests ask for, and
//! plain HTTP requests to it (for the simulator's own tests).
//!
//! `SimulatorConfig::default()` is CertCentral at its strictest (rate
//! limits, pages of 1000); a test that needs a kinder simulator says so
//! where it builds its config, and why.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use chrono_tz::America::Denver;
pub use orderwatch::simulator::{
    Fault, Limit, RangeReading, RateLimits, RecordedQuery, Simulator, SimulatorConfig,
    SimulatorHandle, TlsIdentity,
};
use serde_json::Value;

use super::KEY;

/// The header CertCentral reads the API key from.
pub const KEY_HEADER: &str = "X-DC-DEVKEY";

/// A quiet simulator that answers in pages of at most `size` orders.
pub fn paged(size: usize) -> SimulatorConfig {
    SimulatorConfig {
        page_size: Some(size),
        ..SimulatorConfig::default()
    }
}

/// A throwaway CA and a server certificate it signed for `127.0.0.1` and
/// `localhost`: the identity for [`SimulatorConfig::tls`] and the CA's
/// certificate as PEM, for a client to trust.
pub fn test_tls() -> (TlsIdentity, String) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "orderwatch simulator test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    params.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    let identity =
        TlsIdentity::from_pem(&cert.pem(), &key.serialize_pem()).expect("a usable identity");
    (identity, ca.pem())
}

/// A quiet simulator serving HTTPS with a fresh test CA: the handle and
/// the CA's PEM.
pub async fn start_tls() -> (SimulatorHandle, String) {
    let (identity, ca) = test_tls();
    let h = start_with(SimulatorConfig {
        tls: Some(identity),
        ..SimulatorConfig::default()
    })
    .await;
    (h, ca)
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
