//! The strict reader of status-changes answers: what is accepted, and the
//! message for each thing that is not.

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
    let a =
        parse(br#"{"orders":[{"order_id":1,"status":"issued"},{"order_id":2,"status":"issued"}]}"#)
            .unwrap();
    assert!(Arc::ptr_eq(&a.orders[0].status, &a.orders[1].status));
}

/// A page of `ids` (all `pending`) at `offset` of a list of `total`.
fn page(ids: &[i64], offset: u64, total: u64) -> Answer {
    Answer {
        orders: ids
            .iter()
            .map(|&id| OrderChange {
                order_id: id,
                certificate_id: None,
                status: Arc::from("pending"),
            })
            .collect(),
        page: Some(Page {
            total,
            limit: 8,
            offset,
        }),
        error: None,
    }
}

fn ids_of(orders: &[OrderChange]) -> Vec<i64> {
    orders.iter().map(|o| o.order_id).collect()
}

#[test]
fn pages_overlap_and_the_overlap_is_kept_once() {
    let list: Vec<i64> = (1..=20).collect();
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    assert_eq!(f.offset(), 0);
    assert_eq!(f.take(page(&list[0..8], 0, 20), &mut got), NextPage::At(6));
    assert_eq!(
        f.take(page(&list[6..14], 6, 20), &mut got),
        NextPage::At(12)
    );
    assert_eq!(
        f.take(page(&list[12..20], 12, 20), &mut got),
        NextPage::Done
    );
    assert_eq!(ids_of(&got), list);
}

#[test]
fn an_order_leaving_the_list_between_pages_hides_no_other() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    assert_eq!(
        f.take(page(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 12), &mut got),
        NextPage::At(6)
    );
    // Order 3 changed and left: 9 moved up to position 7, 10 to 8.
    assert_eq!(
        f.take(page(&[8, 9, 10, 11, 12], 6, 11), &mut got),
        NextPage::Done
    );
    assert_eq!(ids_of(&got), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn a_shift_beyond_the_overlap_restarts_the_window() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    assert_eq!(
        f.take(page(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 16), &mut got),
        NextPage::At(6)
    );
    // Three orders left: what is now at offset 6 was never seen.
    assert_eq!(
        f.take(page(&[10, 11, 12, 13, 14, 15, 16], 6, 13), &mut got),
        NextPage::Restart
    );
    assert_eq!(f.offset(), 0);
    assert!(
        ids_of(&got).contains(&10),
        "orders of the broken page are kept"
    );
}

#[test]
fn an_overlap_order_with_a_new_status_does_not_count_as_seen() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    f.take(page(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 16), &mut got);
    let mut next = page(&[7, 8, 9, 10, 11, 12, 13, 14], 6, 16);
    for o in &mut next.orders[..2] {
        o.status = Arc::from("issued");
    }
    assert_eq!(f.take(next, &mut got), NextPage::Restart);
    assert_eq!(got.iter().filter(|o| o.order_id == 7).count(), 2);
}

#[test]
fn an_empty_page_where_more_were_promised_restarts() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    f.take(page(&[1, 2, 3, 4, 5, 6, 7, 8], 0, 9), &mut got);
    assert_eq!(f.take(page(&[], 6, 3), &mut got), NextPage::Restart);
}

#[test]
fn unpaged_answers_and_single_order_pages_always_advance() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    let whole = Answer {
        orders: page(&[1, 2], 0, 2).orders,
        page: None,
        error: None,
    };
    assert_eq!(f.take(whole, &mut got), NextPage::Done);
    let mut f = PageFollower::default();
    assert_eq!(f.take(page(&[1], 0, 3), &mut got), NextPage::At(1));
    assert_eq!(f.take(page(&[2], 1, 3), &mut got), NextPage::At(2));
}
