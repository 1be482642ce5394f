//! The simulator's order info endpoint over real HTTP: the documented shape
//! for an issued order (stable, and changed by a reissue), no serial number
//! or validity before issuance, 404 and 401 in upstream's error shape, and
//! queued faults.

use chrono::{TimeDelta, Utc};
use serde_json::Value;

use crate::support::KEY;
use crate::support::sim::{Fault, SimulatorHandle, client, error_code, json_of, start};

async fn order_info(h: &SimulatorHandle, order_id: &str, key: Option<&str>) -> (u16, Value) {
    let mut req = client().get(format!("{}/order/certificate/{order_id}", h.base_url()));
    if let Some(key) = key {
        req = req.header("X-DC-DEVKEY", key);
    }
    let resp = req.send().await.expect("request succeeds");
    let status = resp.status().as_u16();
    (status, json_of(resp).await)
}

#[tokio::test]
async fn an_issued_order_has_the_documented_fields_and_a_reissue_changes_its_certificate() {
    let h = start().await;
    let then = Utc::now() - TimeDelta::days(2);
    h.set_status(264, 112232, "pending", then);
    h.set_status(264, 112232, "issued", then + TimeDelta::hours(1));
    let (status, info) = order_info(&h, "264", Some(KEY)).await;
    assert_eq!(status, 200);
    assert_eq!(info["id"], 264);
    assert_eq!(info["status"], "issued");
    let c = &info["certificate"];
    assert_eq!(c["id"], 112232);
    assert_eq!(c["common_name"], "order264.example.com");
    assert_eq!(c["dns_names"][1], "www.order264.example.com");
    for field in [
        "serial_number",
        "thumbprint",
        "date_issued",
        "valid_from",
        "valid_till",
    ] {
        assert!(c[field].is_string(), "{field}: {c}");
    }
    assert_eq!(c["thumbprint"].as_str().unwrap().len(), 40);
    assert_eq!(
        c["valid_from"].as_str(),
        Some(
            (then + TimeDelta::hours(1))
                .format("%Y-%m-%d")
                .to_string()
                .as_str()
        )
    );
    for (object, field) in [
        ("product", "name_id"),
        ("organization", "name"),
        ("container", "id"),
    ] {
        assert!(!info[object][field].is_null(), "{object}.{field}: {info}");
    }
    // Stable while nothing changes; a reissue brings another serial number.
    assert_eq!(order_info(&h, "264", Some(KEY)).await.1, info);
    h.set_status(
        264,
        112240,
        "reissue_pending",
        Utc::now() - TimeDelta::minutes(2),
    );
    h.set_status(264, 112240, "issued", Utc::now() - TimeDelta::minutes(1));
    let (_, reissued) = order_info(&h, "264", Some(KEY)).await;
    assert_ne!(
        reissued["certificate"]["serial_number"],
        info["certificate"]["serial_number"]
    );
    let recorded = h.order_info_requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[0].api_key_sent.as_deref(), Some(KEY));
}

#[tokio::test]
async fn a_pending_order_has_no_serial_number_thumbprint_or_validity_yet() {
    let h = start().await;
    h.set_status(7, 107, "pending", Utc::now());
    let (status, info) = order_info(&h, "7", Some(KEY)).await;
    assert_eq!(status, 200);
    let c = info["certificate"].as_object().expect("certificate");
    for field in [
        "serial_number",
        "thumbprint",
        "date_issued",
        "valid_from",
        "valid_till",
    ] {
        assert!(!c.contains_key(field), "{field} before issuance: {info}");
    }
    assert_eq!(c["common_name"], "order7.example.com");
}

#[tokio::test]
async fn unknown_orders_are_404_and_a_wrong_key_is_401() {
    let h = start().await;
    h.set_status(7, 107, "pending", Utc::now());
    for id in ["8", "x7", "-7"] {
        let (status, body) = order_info(&h, id, Some(KEY)).await;
        assert_eq!(
            (status, error_code(&body).as_str()),
            (404, "not_found"),
            "{id}"
        );
    }
    let (status, body) = order_info(&h, "7", Some("wrong")).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "invalid_api_key")
    );
    let (status, _) = order_info(&h, "7", None).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_queued_fault_answers_one_order_info_request() {
    let h = start().await;
    h.set_status(7, 107, "issued", Utc::now());
    h.push_order_info_fault(Fault::status(503, "service_unavailable"));
    let (status, body) = order_info(&h, "7", Some(KEY)).await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (503, "service_unavailable")
    );
    assert_eq!(order_info(&h, "7", Some(KEY)).await.0, 200);
    // Status-changes faults are another queue.
    let statuses: Vec<u16> = h.order_info_requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 200]);
}
