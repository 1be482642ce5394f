//! The part of CertCentral's order info an event carries as `data.order`.
//!
//! Only fields a receiver acts on without an API key: the names, serial
//! number and thumbprint, dates, and the product, organization and
//! container. A field the answer lacks is absent, never invented; one of
//! the wrong type is left out too (and named, so the log can say so),
//! since the rest of the details are still worth delivering.

use serde_json::{Map, Value};

/// Text fields of the answer's `certificate` object, in output order.
const CERTIFICATE_TEXT: &[&str] = &[
    "common_name",
    "date_issued",
    "serial_number",
    "thumbprint",
    "valid_from",
    "valid_till",
];

/// `data.order` for an order info answer, as compact JSON with a fixed
/// key order (so every sink and redelivery carries the same bytes), and
/// the fields left out for having the wrong type. An answer that is not
/// an object, has no `id`, or is about another order, is refused (and the
/// lookup tried again): a proxy's `{"message":"maintenance"}` with HTTP
/// 200 would otherwise release the event for good with empty details.
pub fn extract(order_id: i64, answer: &Value) -> Result<(String, Vec<String>), String> {
    let Some(top) = answer.as_object() else {
        return Err("the answer is not a JSON object".into());
    };
    match top.get("id") {
        None => return Err("the answer has no \"id\": it is not an order".into()),
        Some(id) if id.as_i64() != Some(order_id) => {
            return Err(format!("the answer is about order {id}, not {order_id}"));
        }
        Some(_) => {}
    }
    let mut out = Map::new();
    let mut dropped = Vec::new();
    let certificate = match top.get("certificate") {
        None => None,
        Some(Value::Object(c)) => Some(c),
        Some(_) => {
            dropped.push("certificate".to_string());
            None
        }
    };
    let c = certificate;
    // Alphabetical, interleaving the certificate's fields and the objects.
    text(&mut out, &mut dropped, c, "common_name");
    let named = [("id", Kind::Id), ("name", Kind::Text)];
    object(&mut out, &mut dropped, top, "container", &named);
    text(&mut out, &mut dropped, c, "date_issued");
    dns_names(&mut out, &mut dropped, c);
    object(&mut out, &mut dropped, top, "organization", &named);
    let product = [
        ("name", Kind::Text),
        ("name_id", Kind::Text),
        ("type", Kind::Text),
    ];
    object(&mut out, &mut dropped, top, "product", &product);
    for name in &CERTIFICATE_TEXT[2..] {
        text(&mut out, &mut dropped, c, name);
    }
    Ok((Value::Object(out).to_string(), dropped))
}

/// `certificate.<name>` if it is text.
fn text(
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
    certificate: Option<&Map<String, Value>>,
    name: &str,
) {
    match certificate.and_then(|c| c.get(name)) {
        None => {}
        Some(v @ Value::String(_)) => {
            out.insert(name.to_string(), v.clone());
        }
        Some(_) => dropped.push(format!("certificate.{name}")),
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Id,
    Text,
}

/// `key` of the answer's top level, with only `fields` kept; absent when
/// none of them is there.
fn object(
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
    top: &Map<String, Value>,
    key: &str,
    fields: &[(&str, Kind)],
) {
    let Some(v) = top.get(key) else {
        return;
    };
    let Some(inner) = v.as_object() else {
        dropped.push(key.to_string());
        return;
    };
    let mut kept = Map::new();
    for (name, kind) in fields {
        let Some(v) = inner.get(*name) else {
            continue;
        };
        let fits = match kind {
            Kind::Id => v.is_i64() || v.is_u64(),
            Kind::Text => v.is_string(),
        };
        if fits {
            kept.insert((*name).to_string(), v.clone());
        } else {
            dropped.push(format!("{key}.{name}"));
        }
    }
    if !kept.is_empty() {
        out.insert(key.to_string(), Value::Object(kept));
    }
}

fn dns_names(
    out: &mut Map<String, Value>,
    dropped: &mut Vec<String>,
    certificate: Option<&Map<String, Value>>,
) {
    let Some(v) = certificate.and_then(|c| c.get("dns_names")) else {
        return;
    };
    match v.as_array() {
        Some(list) if list.iter().all(Value::is_string) => {
            out.insert("dns_names".to_string(), v.clone());
        }
        _ => dropped.push("certificate.dns_names".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// DigiCert's documented example of an issued order, shortened.
    fn issued() -> Value {
        json!({
            "id": 123456,
            "certificate": {
                "id": 104,
                "thumbprint": "7D236B54D19D5EACF0881FAF24D51DFE5D23E945",
                "serial_number": "0669D46CAE78E2F7A3C7C8D6B6B1E5A4",
                "common_name": "example.com",
                "dns_names": ["example.com", "www.example.com"],
                "date_created": "2018-10-16T20:05:28+00:00",
                "date_issued": "2018-10-16T20:10:11+00:00",
                "valid_from": "2018-10-16",
                "valid_till": "2019-10-21",
                "csr": "-----BEGIN CERTIFICATE REQUEST-----",
                "organization": {"id": 112233},
                "signature_hash": "sha256",
                "key_size": 2048
            },
            "status": "issued",
            "organization": {"id": 112233, "name": "Epigyne Unwieldiness llc", "city": "Lehi"},
            "container": {"id": 5, "name": "College of Science", "is_active": true},
            "product": {"name_id": "ssl_plus", "name": "Standard SSL", "type": "ssl_certificate",
                        "validation_type": "ov"},
            "price": 1250
        })
    }

    #[test]
    fn an_issued_order_gives_the_documented_fields_in_a_fixed_order() {
        let (json, dropped) = extract(123456, &issued()).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        assert_eq!(
            json,
            r#"{"common_name":"example.com","container":{"id":5,"name":"College of Science"},"date_issued":"2018-10-16T20:10:11+00:00","dns_names":["example.com","www.example.com"],"organization":{"id":112233,"name":"Epigyne Unwieldiness llc"},"product":{"name":"Standard SSL","name_id":"ssl_plus","type":"ssl_certificate"},"serial_number":"0669D46CAE78E2F7A3C7C8D6B6B1E5A4","thumbprint":"7D236B54D19D5EACF0881FAF24D51DFE5D23E945","valid_from":"2018-10-16","valid_till":"2019-10-21"}"#
        );
        // Valid JSON, and the same bytes every time.
        let again = extract(123456, &issued()).unwrap().0;
        assert_eq!(json, again);
        let _: Value = serde_json::from_str(&json).unwrap();
    }

    #[test]
    fn fields_the_answer_lacks_are_absent_not_invented() {
        let pending = json!({
            "id": 7,
            "certificate": {"common_name": "a.example", "dns_names": ["a.example"]},
            "status": "pending",
            "product": {"name_id": "ssl_plus"}
        });
        let (json, dropped) = extract(7, &pending).unwrap();
        assert!(dropped.is_empty());
        assert_eq!(
            json,
            r#"{"common_name":"a.example","dns_names":["a.example"],"product":{"name_id":"ssl_plus"}}"#
        );
        assert_eq!(extract(7, &json!({"id": 7})).unwrap().0, "{}");
    }

    #[test]
    fn wrongly_typed_fields_are_left_out_and_named() {
        let odd = json!({
            "id": 7,
            "certificate": {"common_name": 5, "dns_names": ["a", 1], "serial_number": "01"},
            "organization": {"id": "112233", "name": "Org"},
            "container": [1],
            "product": {"name_id": null}
        });
        let (json, mut dropped) = extract(7, &odd).unwrap();
        dropped.sort();
        assert_eq!(
            dropped,
            [
                "certificate.common_name",
                "certificate.dns_names",
                "container",
                "organization.id",
                "product.name_id"
            ]
        );
        assert_eq!(
            json,
            r#"{"organization":{"name":"Org"},"serial_number":"01"}"#
        );
    }

    #[test]
    fn an_answer_that_is_not_an_order_or_about_another_is_refused() {
        assert!(extract(7, &json!([1, 2])).is_err());
        let other = extract(7, &json!({"id": 8})).unwrap_err();
        assert!(other.contains("order 8"), "{other}");
        assert!(extract(7, &json!({"id": "7"})).is_err());
        for not_an_order in [json!({}), json!({"message": "maintenance"})] {
            let e = extract(7, &not_an_order).unwrap_err();
            assert!(e.contains("no \"id\""), "{e}");
        }
    }
}
