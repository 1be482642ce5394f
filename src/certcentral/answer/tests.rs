//! The strict reader of status-changes answers: what is accepted, and the
//! message for each thing that is not.

use super::*;
use crate::certcentral::orders::OrderList;

fn parse(body: &[u8]) -> Result<Answer, String> {
    super::parse(body, &mut Statuses::default())
}

fn orders(body: &str) -> Vec<(i64, Option<i64>, String)> {
    let mut statuses = Statuses::default();
    let answer = super::parse(body.as_bytes(), &mut statuses).unwrap();
    let list = OrderList::new(answer.orders, statuses);
    list.to_changes()
        .into_iter()
        .map(|o| (o.order_id, o.certificate_id, o.status.to_string()))
        .collect()
}

fn error(body: &str) -> String {
    match parse(body.as_bytes()) {
        Err(e) => e,
        Ok(a) => panic!("expected an error for {body}, got {a:?}"),
    }
}

#[test]
fn the_seed_example_parses() {
    let got = orders(
        r#"{"orders":[{"order_id":265,"certificate_id":112233,"status":"issued"},{"order_id":264,"certificate_id":112232,"status":"canceled"}]}"#,
    );
    assert_eq!(
        got,
        vec![
            (265, Some(112233), "issued".into()),
            (264, Some(112232), "canceled".into())
        ]
    );
}

#[test]
fn empty_object_means_nothing_changed() {
    let a = parse(b"{}").unwrap();
    assert!(a.orders.is_empty() && a.page.is_none() && a.error.is_none());
}

#[test]
fn fields_without_an_orders_list_are_an_error_not_an_empty_window() {
    // A proxy's maintenance object or a renamed list says nothing about
    // the window; taken as "nothing changed" it would move the cursor.
    for body in [
        r#"{"error":"Service temporarily unavailable"}"#,
        r#"{"message":"maintenance","orders_list":[{"order_id":1}]}"#,
        r#"{"Orders":[{"order_id":5,"certificate_id":1,"status":"issued"}]}"#,
    ] {
        let e = error(body);
        assert!(e.contains("no \"orders\" list"), "{body}: {e}");
    }
    assert!(error(r#"{"a":1,"b":2}"#).contains("2 other fields"));
    // A page object alone is an empty paginated answer.
    let a = parse(br#"{"page":{"total":0,"limit":100,"offset":0}}"#).unwrap();
    assert!(a.orders.is_empty());
}

#[test]
fn extra_fields_are_ignored_and_unknown_statuses_pass_through_lowercased() {
    let got = orders(
        r#"{"orders":[{"order_id":1,"certificate_id":2,"status":"On_Hold","product":{"x":[1]}}],"extra":true}"#,
    );
    assert_eq!(got, vec![(1, Some(2), "on_hold".into())]);
}

#[test]
fn page_object_is_read() {
    let a = parse(br#"{"orders":[],"page":{"total":10,"limit":5,"offset":5}}"#).unwrap();
    assert_eq!(
        a.page,
        Some(Page {
            total: 10,
            limit: 5,
            offset: Some(5)
        })
    );
}

#[test]
fn a_null_page_is_no_page_but_a_malformed_one_is_an_error() {
    let a = parse(br#"{"orders":[{"order_id":1,"status":"issued"}],"page":null}"#).unwrap();
    assert_eq!((a.orders.len(), a.page), (1, None));
    assert!(error(r#"{"orders":[],"page":{"total":"ten"}}"#).contains("invalid type"));
}

#[test]
fn errors_in_a_200_answer_are_reported() {
    let a = parse(br#"{"errors":[{"code":"time_frame_too_long","message":"too long"}]}"#).unwrap();
    assert_eq!(
        a.error,
        Some(("time_frame_too_long".into(), "too long".into()))
    );
}

#[test]
fn missing_or_null_certificate_id_is_allowed() {
    let got = orders(
        r#"{"orders":[{"order_id":1,"status":"pending"},{"order_id":2,"certificate_id":null,"status":"pending"}]}"#,
    );
    assert_eq!(got[0].1, None);
    assert_eq!(got[1].1, None);
}

#[test]
fn bad_order_ids_name_the_element() {
    assert!(
        error(r#"{"orders":[{"order_id":"12","status":"issued"}]}"#)
            .contains("orders[0].order_id: expected a positive integer, got the string \"12\"")
    );
    assert!(
        error(r#"{"orders":[{"order_id":1,"status":"x"},{"order_id":-5,"status":"issued"}]}"#)
            .contains("orders[1].order_id")
    );
    assert!(
        error(r#"{"orders":[{"order_id":9223372036854775808,"status":"issued"}]}"#)
            .contains("9223372036854775808")
    );
    assert!(error(r#"{"orders":[{"order_id":null,"status":"issued"}]}"#).contains("got null"));
    assert!(error(r#"{"orders":[{"status":"issued"}]}"#).contains("order_id is missing"));
    assert!(error(r#"{"orders":[{"order_id":1.5,"status":"issued"}]}"#).contains("1.5"));
    assert!(
        error(r#"{"orders":[{"order_id":123456789012345678901234,"status":"issued"}]}"#)
            .contains("e23 (beyond 64-bit integers)")
    );
}

#[test]
fn bad_certificate_ids_and_statuses_name_the_order() {
    assert!(
        error(r#"{"orders":[{"order_id":7,"certificate_id":"x","status":"issued"}]}"#)
            .contains("(order 7).certificate_id")
    );
    assert!(
        error(r#"{"orders":[{"order_id":7,"certificate_id":1}]}"#)
            .contains("(order 7).status is missing")
    );
    assert!(error(r#"{"orders":[{"order_id":7,"status":""}]}"#).contains("(order 7).status"));
    assert!(error(r#"{"orders":[{"order_id":7,"status":5}]}"#).contains("(order 7).status"));
}

#[test]
fn wrong_shapes_are_errors() {
    assert!(error(r#"{"orders":null}"#).contains("list of orders"));
    assert!(error("[]").contains("JSON object"));
    assert!(error("").contains("empty body"));
    assert!(error("<html><body>502 Bad Gateway</body></html>").contains("expected value"));
    assert!(error(r#"{"orders":[{"order_id":1,"status":"issued"}"#).contains("EOF"));
    assert!(error(r#"{"orders":[]} trailing"#).contains("trailing"));
    assert!(
        error(r#"{"orders":[5]}"#).contains("orders")
            || error(r#"{"orders":[5]}"#).contains("struct")
    );
}

#[test]
fn an_order_that_is_not_an_object_is_refused_by_its_index() {
    // serde alone would read `[id, certificate, status]` as an order.
    let e = error(r#"{"orders":[{"order_id":1,"status":"x"},[7,70,"issued"]]}"#);
    assert!(
        e.contains("invalid type: sequence, expected orders[1] to be an order object"),
        "{e}"
    );
    let e = error(r#"{"orders":[5]}"#);
    assert!(
        e.contains("expected orders[0] to be an order object"),
        "{e}"
    );
    let e = error(r#"{"orders":[{"order_id":1,"order_id":2,"status":"x"}]}"#);
    assert!(e.contains("duplicate field `order_id`"), "{e}");
    // Deep nesting in an ignored field is skipped without recursion.
    let deep = format!(
        r#"{{"orders":[{{"order_id":1,"status":"x","extra":{}0{}}}]}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(orders(&deep), vec![(1, None, "x".into())]);
}

#[test]
fn the_same_order_twice_is_kept_in_answer_order() {
    let got = orders(
        r#"{"orders":[{"order_id":3,"status":"pending"},{"order_id":3,"status":"issued"}]}"#,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].2, "issued");
}

#[test]
fn statuses_are_interned() {
    let mut statuses = Statuses::default();
    let a = super::parse(
        br#"{"orders":[{"order_id":1,"status":"issued"},{"order_id":2,"status":" Issued"}]}"#,
        &mut statuses,
    )
    .unwrap();
    assert_eq!(a.orders[0].status, a.orders[1].status);
    assert_eq!(statuses.len(), 1);
}

#[test]
fn a_blank_or_duplicate_status_names_the_order() {
    assert!(
        error(r#"{"orders":[{"order_id":7,"status":"  "}]}"#).contains("got the string \"  \"")
    );
    let e = error(r#"{"orders":[{"order_id":7,"status":"x","status":"y"}]}"#);
    assert!(e.contains("duplicate field `status`"), "{e}");
    let e =
        error(r#"{"orders":[{"order_id":7,"certificate_id":1,"certificate_id":1,"status":"y"}]}"#);
    assert!(e.contains("duplicate field `certificate_id`"), "{e}");
}

#[test]
fn a_whitespace_body_is_empty_but_whitespace_before_garbage_is_not() {
    assert_eq!(error(" \n\t "), "empty body");
    assert!(error("  x").contains("expected value"));
}
