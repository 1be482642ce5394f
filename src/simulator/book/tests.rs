//! Unit and property tests of the order book.

use super::*;
use chrono::TimeDelta;

fn body(a: &Answer) -> String {
    String::from_utf8_lossy(&a.body).into_owned()
}

#[test]
fn integers_are_written_like_display() {
    for n in [0, 7, -7, 10, 1234567890, i64::MAX, i64::MIN] {
        let mut buf = Vec::new();
        write_int(&mut buf, n);
        assert_eq!(String::from_utf8_lossy(&buf), n.to_string());
    }
}

#[test]
fn odd_status_names_are_escaped() {
    let mut buf = Vec::new();
    write_json_str(&mut buf, "a\"b\\c\u{e9}");
    let back: String = serde_json::from_slice(&buf).unwrap_or_default();
    assert_eq!(back, "a\"b\\c\u{e9}");
}

#[test]
fn answer_lists_orders_by_last_change_then_id() {
    let mut book = OrderBook::new(1);
    let t = Utc::now();
    book.set_status(5, 50, Status::Pending, t + TimeDelta::seconds(2));
    book.set_status(9, 90, Status::Issued, t + TimeDelta::seconds(1));
    book.set_status(3, 30, Status::Pending, t + TimeDelta::seconds(2));
    let a = book.answer(
        t.timestamp_micros(),
        (t + TimeDelta::seconds(3)).timestamp_micros(),
        None,
        None,
    );
    assert_eq!(
        body(&a),
        r#"{"orders":[{"order_id":9,"certificate_id":90,"status":"issued"},{"order_id":3,"certificate_id":30,"status":"pending"},{"order_id":5,"certificate_id":50,"status":"pending"}]}"#
    );
    assert_eq!(a.returned, 3);
}

fn ids_of(a: &Answer) -> Vec<i64> {
    let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
    v["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_i64().unwrap())
        .collect()
}

#[test]
fn an_unstable_answer_reorders_ties_and_pages_but_keeps_seconds_in_order() {
    let mut book = OrderBook::new(1);
    let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    // Ten orders in each of three seconds (at different microseconds).
    for i in 0..30i64 {
        let at = t + TimeDelta::seconds(i / 10) + TimeDelta::microseconds(i % 10);
        book.set_status(i + 1, i + 101, Status::Pending, at);
    }
    let (from, to) = (
        t.timestamp_micros(),
        (t + TimeDelta::seconds(3)).timestamp_micros(),
    );
    let all = |seed| ids_of(&book.answer(from, to, None, Some(seed)));
    let (a, b) = (all(1), all(2));
    assert_eq!(all(1), a, "the same seed gives the same order");
    assert_ne!(a, b, "another request orders ties its own way");
    let stable = ids_of(&book.answer(from, to, None, None));
    assert_eq!(stable, (1..=30).collect::<Vec<_>>());
    assert_ne!(a, stable);
    // Pages of 10 hold exactly one second each, in second order, shuffled.
    for (n, seed) in [(0u64, 3u64), (1, 4), (2, 5)] {
        let page = Some(PageRequest {
            offset: n * 10,
            limit: 10,
        });
        let mut got = ids_of(&book.answer(from, to, page, Some(seed)));
        let first = got.clone();
        got.sort_unstable();
        let expected: Vec<i64> = (1..=10).map(|i| i + 10 * n as i64).collect();
        assert_eq!(got, expected, "page {n}");
        assert_ne!(first, expected, "page {n} is not shuffled");
    }
}

#[test]
fn empty_window_answers_empty_object() {
    let book = OrderBook::new(1);
    assert_eq!(body(&book.answer(0, 10, None, None)), "{}");
    assert_eq!(body(&book.answer(10, 0, None, None)), "{}");
}

#[test]
fn a_change_in_the_past_does_not_replace_the_current_status() {
    let mut book = OrderBook::new(1);
    let t = Utc::now();
    book.set_status(1, 2, Status::Issued, t);
    book.set_status(1, 2, Status::Pending, t - TimeDelta::hours(1));
    assert_eq!(book.current(1), Some((2, Status::Issued)));
    assert_eq!(book.history(1).len(), 2);
    assert_eq!(book.index.len(), 1);
}

#[test]
fn active_list_tracks_non_terminal_orders() {
    let mut book = OrderBook::new(1);
    let t = Utc::now();
    book.bulk_insert(10, 5, &Status::Pending, t);
    book.set_status(11, 0, Status::Canceled, t);
    book.set_status(14, 0, Status::Rejected, t);
    let mut active = book.active_ids().to_vec();
    active.sort_unstable();
    assert_eq!(active, vec![10, 12, 13]);
    for (slot, id) in book.active_ids().iter().enumerate() {
        assert_eq!(book.orders[id].active_slot, Some(slot));
    }
    assert_eq!(book.allocate_order_id(), 15);
}

#[test]
fn pages_carry_total_limit_and_offset() {
    let mut book = OrderBook::new(1);
    let t = Utc::now();
    book.bulk_insert(1, 3, &Status::Issued, t);
    let us = t.timestamp_micros();
    let a = book.answer(
        us,
        us,
        Some(PageRequest {
            offset: 2,
            limit: 2,
        }),
        None,
    );
    assert_eq!(
        body(&a),
        r#"{"orders":[{"order_id":3,"certificate_id":100000003,"status":"issued"}],"page":{"total":3,"limit":2,"offset":2}}"#
    );
    let past = book.answer(
        us,
        us,
        Some(PageRequest {
            offset: 9,
            limit: 2,
        }),
        None,
    );
    assert_eq!(
        body(&past),
        r#"{"orders":[],"page":{"total":3,"limit":2,"offset":9}}"#
    );
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const STATUSES: [&str; 9] = [
        "pending",
        "waiting_pickup",
        "needs_approval",
        "issued",
        "rejected",
        "canceled",
        "revoked",
        "expired",
        "mystery",
    ];

    /// One scripted change: (order id, status index, seconds after a base
    /// time, whether to load it as a bulk of three).
    fn op() -> impl Strategy<Value = (i64, usize, i64, bool)> {
        (
            0i64..25,
            0usize..STATUSES.len(),
            0i64..120,
            proptest::bool::weighted(0.1),
        )
    }

    fn check_invariants(book: &OrderBook) {
        assert_eq!(book.index.len(), book.orders.len());
        for (id, order) in &book.orders {
            let (at, status) = order.last().expect("history is never empty");
            assert!(order.history.windows(2).all(|w| w[0].0 <= w[1].0));
            let listed = book
                .index
                .get(&(at.timestamp_micros(), *id))
                .expect("indexed at its last change");
            assert_eq!(
                (listed.certificate_id, &listed.status),
                (order.certificate_id, status)
            );
            match order.active_slot {
                Some(slot) => assert_eq!(book.active.get(slot), Some(id)),
                None => assert!(status.is_terminal()),
            }
            assert_eq!(order.active_slot.is_some(), !status.is_terminal());
        }
        assert_eq!(
            book.active.len(),
            book.orders
                .values()
                .filter(|o| o.active_slot.is_some())
                .count()
        );
    }

    proptest! {
        #[test]
        fn any_script_keeps_the_index_consistent(ops in proptest::collection::vec(op(), 0..60)) {
            let base = Utc::now();
            let mut book = OrderBook::new(1000);
            for (id, status, secs, bulk) in ops {
                let at = base + TimeDelta::seconds(secs);
                let status = Status::parse(STATUSES[status]);
                if bulk {
                    book.bulk_insert(id, 3, &status, at);
                } else {
                    book.set_status(id, id + 7, status, at);
                }
                check_invariants(&book);
            }
            prop_assert!(book.allocate_order_id() >= 1000);
            let all = book.answer(i64::MIN, i64::MAX, None, None);
            prop_assert_eq!(all.returned, book.len());
        }

        #[test]
        fn pages_partition_the_window(count in 0usize..40, size in 1u64..9) {
            let at = Utc::now();
            let mut book = OrderBook::new(1);
            book.bulk_insert(1, count, &Status::Issued, at);
            let us = at.timestamp_micros();
            let mut seen = 0;
            let mut offset = 0;
            while offset < count as u64 {
                let page = book.answer(us, us, Some(PageRequest { offset, limit: size }), None);
                seen += page.returned;
                offset += size;
            }
            prop_assert_eq!(seen, count);
        }
    }
}
