//! Following pages: overlaps, shifting pages, and answers that lie about their total.

use super::*;

const PENDING: u32 = 0;
const ISSUED: u32 = 1;

/// A page of `ids` (all `pending`) at `offset` of a list of `total`.
fn page(ids: &[i64], offset: u64, total: u64) -> Answer {
    Answer {
        orders: ids
            .iter()
            .map(|&id| CompactOrder::new(id, None, PENDING))
            .collect(),
        page: Some(Page {
            total,
            limit: 8,
            offset: Some(offset),
        }),
        error: None,
    }
}

fn ids_of(orders: &[CompactOrder]) -> Vec<i64> {
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
        o.status = ISSUED;
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

#[test]
fn an_absurd_total_is_refused_at_the_first_page() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    let ids: Vec<i64> = (1..=8).collect();
    let next = f.take(page(&ids, 0, 1_000_000_000_000_000_000), &mut got);
    assert!(
        matches!(&next, NextPage::Refuse(why) if why.contains("more than the 10000 pages")),
        "{next:?}"
    );
}

#[test]
fn a_total_that_keeps_growing_is_refused() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    let mut next = f.take(page(&(1..=8).collect::<Vec<_>>(), 0, 16), &mut got);
    let mut total = 16;
    // Each page repeats the overlap, adds new orders and raises the total.
    for round in 0..50 {
        let NextPage::At(offset) = next else {
            assert!(
                matches!(&next, NextPage::Refuse(why) if why.contains("page.total grew")),
                "{next:?}"
            );
            assert!(round > 0);
            return;
        };
        total += 40;
        let ids: Vec<i64> = (offset as i64 + 1..=offset as i64 + 8).collect();
        next = f.take(page(&ids, offset, total), &mut got);
    }
    panic!("still paging after 50 pages: {next:?}");
}

#[test]
fn a_page_that_adds_nothing_while_more_is_promised_is_refused() {
    let list: Vec<i64> = (1..=20).collect();
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    assert_eq!(f.take(page(&list[0..8], 0, 20), &mut got), NextPage::At(6));
    // The next page only repeats what the overlap already holds.
    let next = f.take(page(&list[6..8], 6, 20), &mut got);
    assert!(
        matches!(&next, NextPage::Refuse(why) if why.contains("added no order")),
        "{next:?}"
    );
}

#[test]
fn far_more_pages_than_the_first_total_needs_are_refused() {
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    // A total of 16 that never shrinks while pages keep coming, each with
    // new orders: 2 pages promised, refused well before 50.
    let mut next = f.take(page(&(1..=8).collect::<Vec<_>>(), 0, 16), &mut got);
    for n in 0..50 {
        let NextPage::At(offset) = next else {
            assert!(
                matches!(&next, NextPage::Refuse(why) if why.contains("needs about 2")),
                "{next:?}"
            );
            assert!(n >= 10, "refused too early, after {n} pages");
            return;
        };
        let ids: Vec<i64> = (offset as i64 + 1..=offset as i64 + 8).collect();
        // An offset past the total would end it: keep claiming more.
        next = f.take(page(&ids, offset, offset + 16), &mut got);
    }
    panic!("still paging: {next:?}");
}

#[test]
fn a_server_that_ignores_offset_is_refused_not_taken_for_the_next_page() {
    // The first page again, whatever offset is asked, and it says so.
    let mut f = PageFollower::default();
    let mut got = Vec::new();
    assert_eq!(
        f.take(page(&[1, 2, 3, 4], 0, 12), &mut got),
        NextPage::At(3)
    );
    let next = f.take(page(&[1, 2, 3, 4], 0, 12), &mut got);
    let NextPage::Refuse(why) = next else {
        panic!("expected a refusal, got {next:?}");
    };
    assert!(
        why.contains("offset 3") && why.contains("page.offset 0"),
        "{why}"
    );
}

#[test]
fn an_empty_first_page_that_promises_orders_is_refused() {
    let mut f = PageFollower::default();
    let next = f.take(page(&[], 0, 500), &mut Vec::new());
    assert!(
        matches!(&next, NextPage::Refuse(why) if why.contains("page.total says 500")),
        "{next:?}"
    );
    // An empty list that says it is empty is a window with no change.
    let mut f = PageFollower::default();
    assert_eq!(f.take(page(&[], 0, 0), &mut Vec::new()), NextPage::Done);
}
