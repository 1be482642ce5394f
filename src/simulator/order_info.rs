//! `GET /services/v2/order/certificate/{order_id}`: order info, shaped as
//! DigiCert documents it, for every order of the simulated account.
//!
//! The details are invented but stable: names, organization, container and
//! product follow from the order id; serial number and thumbprint from the
//! certificate id (so a reissue changes them); dates from the order's
//! history. An order that was never issued has no serial number,
//! thumbprint or validity, as upstream omits them. Answers carry the
//! extra fields upstream sends (CSR, key size, contacts' ids, price), which
//! a client must ignore. Faults are queued separately
//! ([`Simulator::push_order_info_fault`]).
//!
//! Errors: 401 `invalid_api_key` (checked first), 404 `not_found` for an
//! unknown or non-numeric order id.

use axum::extract::{Request, State};
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::ApiError;
use super::fault::{self, Fault, json_response};
use super::http::{api_key_sent, connection};
use super::status::Status;
use super::{OrderInfoRequest, Simulator};

const PREFIX: &str = "/services/v2/order/certificate/";
const CONTAINERS: &[&str] = &["Headquarters", "Research Lab", "College of Science"];
const PRODUCTS: &[(&str, &str)] = &[
    ("ssl_plus", "Standard SSL"),
    ("ssl_multi_domain", "Multi-Domain SSL"),
    ("ssl_ev_basic", "EV SSL"),
];

impl Simulator {
    /// Queues a fault for the next order info request that has none yet.
    pub fn push_order_info_fault(&self, f: Fault) {
        self.lock().order_info_faults.push_back(f);
    }

    /// Every order info request so far, oldest first.
    pub fn order_info_requests(&self) -> Vec<OrderInfoRequest> {
        self.lock().order_infos.clone()
    }

    /// The answer for `raw_id`, as the fault-free endpoint gives it.
    fn order_info_answer(&self, raw_id: &str, key: Option<&str>) -> Result<Value, ApiError> {
        if key != Some(self.config().api_key.as_str()) {
            return Err(ApiError::new(
                401,
                "invalid_api_key",
                "The specified API key is invalid.",
            ));
        }
        let not_found =
            || ApiError::new(404, "not_found", format!("Order {raw_id} was not found."));
        if raw_id.is_empty() || !raw_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(not_found());
        }
        let id: i64 = raw_id.parse().map_err(|_| not_found())?;
        let state = self.lock();
        let (certificate_id, status) = state.book.current(id).ok_or_else(not_found)?;
        let history = state.book.history(id);
        Ok(describe(id, certificate_id, &status, &history))
    }
}

/// `n` hex digits derived from `seed`: stable, and different per seed.
fn hex(seed: &str, n: usize) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    let text: String = digest.iter().map(|b| format!("{b:02X}")).collect();
    text[..n.min(text.len())].to_string()
}

fn describe(
    id: i64,
    certificate_id: i64,
    status: &Status,
    history: &[(DateTime<Utc>, Status)],
) -> Value {
    let created = history.first().map_or_else(Utc::now, |(t, _)| *t);
    let issued = history
        .iter()
        .rev()
        .find(|(_, s)| *s == Status::Issued)
        .map(|(t, _)| *t);
    let name = format!("order{id}.example.com");
    let slot = id.rem_euclid(3) as usize;
    let (product_id, product_name) = PRODUCTS[slot];
    let mut certificate = json!({
        "id": certificate_id,
        "common_name": name,
        "dns_names": [name.clone(), format!("www.{name}")],
        "date_created": created.to_rfc3339(),
        "csr": "-----BEGIN CERTIFICATE REQUEST-----\nMIIC(simulated)\n-----END CERTIFICATE REQUEST-----",
        "organization": {"id": 112_200 + id.rem_euclid(7)},
        "server_platform": {"id": -1, "name": "OTHER"},
        "signature_hash": "sha256",
        "key_size": 2048,
        "ca_cert": {"id": "5D1C1B2D3F7A0A4B", "name": "DigiCert Global G2 TLS RSA SHA256 2020 CA1"}
    });
    if let Some(at) = issued {
        let from = at.date_naive();
        let till = from + TimeDelta::days(396);
        let extra = json!({
            "thumbprint": hex(&format!("thumbprint {certificate_id}"), 40),
            "serial_number": hex(&format!("serial {certificate_id}"), 32),
            "date_issued": at.to_rfc3339(),
            "valid_from": from.format("%Y-%m-%d").to_string(),
            "valid_till": till.format("%Y-%m-%d").to_string(),
            "days_remaining": (till - Utc::now().date_naive()).num_days().max(0),
        });
        if let (Some(c), Some(e)) = (certificate.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
    }
    json!({
        "id": id,
        "certificate": certificate,
        "status": status.as_str(),
        "is_renewal": false,
        "date_created": created.to_rfc3339(),
        "organization": {
            "id": 112_200 + id.rem_euclid(7),
            "name": format!("Example Org {}", id.rem_euclid(7)),
            "city": "Lehi",
            "is_active": true
        },
        "validity_years": 1,
        "container": {"id": 5 + slot as i64, "name": CONTAINERS[slot], "is_active": true},
        "product": {
            "name_id": product_id,
            "name": product_name,
            "type": "ssl_certificate",
            "validation_type": "ov"
        },
        "organization_contact": {"first_name": "Sim", "last_name": "Ulator"},
        "price": 1250,
        "payment_method": "balance"
    })
}

pub(super) async fn order_info(State(sim): State<Simulator>, req: Request) -> Response {
    let raw_id = req
        .uri()
        .path()
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .to_owned();
    let key = api_key_sent(req.headers());
    let conn = connection(&req);
    let fault = sim.lock().order_info_faults.pop_front();
    let (status, body) = match sim.order_info_answer(&raw_id, key.as_deref()) {
        Ok(v) => (200, v.to_string().into_bytes()),
        Err(e) => (e.status, e.body()),
    };
    let recorded = match &fault {
        Some(Fault::Respond { status, .. }) => *status,
        Some(Fault::Hang(_)) => 0,
        _ => status,
    };
    sim.lock().order_infos.push(OrderInfoRequest {
        order_id: raw_id,
        status: recorded,
        api_key_sent: key,
    });
    if fault.is_none() {
        return json_response(status, body);
    }
    fault::deliver(fault, status, body, conn).await
}
