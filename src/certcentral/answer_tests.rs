use super::*;

fn orders(body: &str) -> Vec<(i64, Option<i64>, String)> {
    parse(body.as_bytes())
        .unwrap()
        .orders
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
            offset: 5
        })
    );
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
fn the_same_order_twice_is_kept_in_answer_order() {
    let got = orders(
        r#"{"orders":[{"order_id":3,"status":"pending"},{"order_id":3,"status":"issued"}]}"#,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].2, "issued");
}

#[test]
fn statuses_are_interned() {
    let a =
        parse(br#"{"orders":[{"order_id":1,"status":"issued"},{"order_id":2,"status":"issued"}]}"#)
            .unwrap();
    assert!(Arc::ptr_eq(&a.orders[0].status, &a.orders[1].status));
}
