//! The simulated account's orders and the index that answers status-changes
//! queries.
//!
//! Invariant: every order has a non-empty history sorted by time, and
//! `index` holds exactly one `(last change, order id)` key per order. A query
//! is then a range scan over `index`, which keeps a million-order account
//! fast, and the scan order is the answer order.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use super::schedule::Status;

/// One simulated certificate order.
#[derive(Debug)]
pub(crate) struct Order {
    certificate_id: i64,
    /// `(when, status)`, sorted by time; the last entry is the current status.
    history: Vec<(DateTime<Utc>, Status)>,
    /// Position in `OrderBook::active` while the status is not terminal.
    active_slot: Option<usize>,
}

impl Order {
    fn last(&self) -> Option<&(DateTime<Utc>, Status)> {
        self.history.last()
    }
}

/// Which part of a window's answer to return, already capped to the page size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageRequest {
    pub offset: u64,
    pub limit: u64,
}

/// A serialized status-changes answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub body: Vec<u8>,
    pub returned: usize,
}

/// All orders of the simulated account.
#[derive(Debug)]
pub(crate) struct OrderBook {
    orders: HashMap<i64, Order>,
    /// `(last change in µs since the epoch, order id)` for every order.
    index: BTreeSet<(i64, i64)>,
    /// Ids of orders in a non-terminal status, for picking a random order to
    /// advance in O(1); kept in insertion order so picks are reproducible.
    active: Vec<i64>,
    next_order_id: i64,
}

impl OrderBook {
    /// An empty account whose invented orders start at `first_order_id`.
    pub(crate) fn new(first_order_id: i64) -> OrderBook {
        OrderBook {
            orders: HashMap::new(),
            index: BTreeSet::new(),
            active: Vec::new(),
            next_order_id: first_order_id,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.orders.len()
    }

    /// A fresh order id above every id in use.
    pub(crate) fn allocate_order_id(&mut self) -> i64 {
        let id = self.next_order_id;
        self.next_order_id = self.next_order_id.saturating_add(1);
        id
    }

    pub(crate) fn active_ids(&self) -> &[i64] {
        &self.active
    }

    /// `(certificate id, current status)` of an order.
    pub(crate) fn current(&self, id: i64) -> Option<(i64, Status)> {
        let order = self.orders.get(&id)?;
        let (_, status) = order.last()?;
        Some((order.certificate_id, status.clone()))
    }

    pub(crate) fn history(&self, id: i64) -> Vec<(DateTime<Utc>, Status)> {
        self.orders
            .get(&id)
            .map(|o| o.history.clone())
            .unwrap_or_default()
    }

    /// Records that order `id` had `status` at `at`, creating the order if
    /// needed. `at` may lie before the order's last change: the history stays
    /// sorted and only the latest entry counts as the current status.
    pub(crate) fn set_status(
        &mut self,
        id: i64,
        certificate_id: i64,
        status: Status,
        at: DateTime<Utc>,
    ) {
        if id >= self.next_order_id {
            self.next_order_id = id.saturating_add(1);
        }
        let order = self.orders.entry(id).or_insert_with(|| Order {
            certificate_id,
            history: Vec::with_capacity(1),
            active_slot: None,
        });
        order.certificate_id = certificate_id;
        if let Some((old_at, _)) = order.last() {
            self.index.remove(&(old_at.timestamp_micros(), id));
        }
        let pos = order.history.partition_point(|(t, _)| *t <= at);
        order.history.insert(pos, (at, status));
        let Some((new_at, current)) = order.last() else {
            return;
        };
        self.index.insert((new_at.timestamp_micros(), id));
        let terminal = current.is_terminal();
        match (order.active_slot, terminal) {
            (None, false) => {
                order.active_slot = Some(self.active.len());
                self.active.push(id);
            }
            (Some(slot), true) => {
                order.active_slot = None;
                self.active.swap_remove(slot);
                if let Some(&moved) = self.active.get(slot) {
                    if let Some(moved_order) = self.orders.get_mut(&moved) {
                        moved_order.active_slot = Some(slot);
                    }
                }
            }
            _ => {}
        }
    }

    /// Adds `count` orders `first..first+count`, all in `status` since `at`.
    /// New ids skip the per-order index insert: their keys are already sorted
    /// and are merged into the index in one pass. Ids that already exist go
    /// through `set_status`.
    pub(crate) fn bulk_insert(
        &mut self,
        first: i64,
        count: usize,
        status: &Status,
        at: DateTime<Utc>,
    ) {
        let t0 = std::time::Instant::now();
        let micros = at.timestamp_micros();
        let terminal = status.is_terminal();
        self.orders.reserve(count);
        let mut fresh = Vec::with_capacity(count);
        let mut existing = Vec::new();
        for offset in 0..count {
            let Some(id) = i64::try_from(offset)
                .ok()
                .and_then(|o| first.checked_add(o))
            else {
                break;
            };
            if self.orders.contains_key(&id) {
                existing.push(id);
                continue;
            }
            let active_slot = if terminal {
                None
            } else {
                self.active.push(id);
                Some(self.active.len() - 1)
            };
            self.orders.insert(
                id,
                Order {
                    certificate_id: id.saturating_add(100_000_000),
                    history: vec![(at, status.clone())],
                    active_slot,
                },
            );
            fresh.push((micros, id));
            if id >= self.next_order_id {
                self.next_order_id = id.saturating_add(1);
            }
        }
        eprintln!("orders {:?}", t0.elapsed());
        let mut merged: BTreeSet<(i64, i64)> = fresh.into_iter().collect();
        eprintln!("collect {:?}", t0.elapsed());
        self.index.append(&mut merged);
        eprintln!("append {:?}", t0.elapsed());
        for id in existing {
            self.set_status(id, id.saturating_add(100_000_000), status.clone(), at);
        }
    }

    /// Serializes the orders whose last change lies in `from_us..=to_us`
    /// (µs since the epoch, both inclusive), ordered by (last change, order
    /// id). Without `page` it is the plain upstream answer, `{}` when empty;
    /// with `page` it carries a `page` object and only that slice of orders.
    pub(crate) fn answer(&self, from_us: i64, to_us: i64, page: Option<PageRequest>) -> Answer {
        if from_us > to_us {
            return Answer {
                body: b"{}".to_vec(),
                returned: 0,
            };
        }
        let range = || self.index.range((from_us, i64::MIN)..=(to_us, i64::MAX));
        let t0 = std::time::Instant::now();
        let total = range().count();
        eprintln!("count {:?}", t0.elapsed());
        if total == 0 {
            return Answer {
                body: b"{}".to_vec(),
                returned: 0,
            };
        }
        let (skip, take) = match page {
            Some(p) => (
                usize::try_from(p.offset).unwrap_or(usize::MAX),
                usize::try_from(p.limit).unwrap_or(usize::MAX),
            ),
            None => (0, usize::MAX),
        };
        let expected = total.saturating_sub(skip).min(take);
        let mut body = Vec::with_capacity(expected.saturating_mul(72).saturating_add(96));
        body.extend_from_slice(b"{\"orders\":[");
        let mut returned = 0;
        for &(_, id) in range().skip(skip).take(take) {
            let Some(order) = self.orders.get(&id) else {
                continue;
            };
            let Some((_, status)) = order.last() else {
                continue;
            };
            if returned > 0 {
                body.push(b',');
            }
            body.extend_from_slice(b"{\"order_id\":");
            write_int(&mut body, id);
            body.extend_from_slice(b",\"certificate_id\":");
            write_int(&mut body, order.certificate_id);
            body.extend_from_slice(b",\"status\":");
            write_json_str(&mut body, status.as_str());
            body.push(b'}');
            returned += 1;
        }
        body.push(b']');
        eprintln!("write {:?}", t0.elapsed());
        if let Some(p) = page {
            body.extend_from_slice(b",\"page\":{\"total\":");
            write_int(&mut body, i64::try_from(total).unwrap_or(i64::MAX));
            body.extend_from_slice(b",\"limit\":");
            write_int(&mut body, i64::try_from(p.limit).unwrap_or(i64::MAX));
            body.extend_from_slice(b",\"offset\":");
            write_int(&mut body, i64::try_from(p.offset).unwrap_or(i64::MAX));
            body.push(b'}');
        }
        body.push(b'}');
        Answer { body, returned }
    }
}

/// Decimal digits of `n`, without going through `fmt` (this runs a million
/// times per big answer).
fn write_int(buf: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if n < 0 {
        buf.push(b'-');
    }
    buf.extend_from_slice(&digits[i..]);
}

/// A JSON string literal; the fast path covers every known status name.
fn write_json_str(buf: &mut Vec<u8>, s: &str) {
    let plain = s
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
    if plain {
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        let quoted = serde_json::to_string(s).unwrap_or_else(|_| String::from("\"\""));
        buf.extend_from_slice(quoted.as_bytes());
    }
}

#[cfg(test)]
mod tests {
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
        );
        assert_eq!(
            body(&a),
            r#"{"orders":[{"order_id":9,"certificate_id":90,"status":"issued"},{"order_id":3,"certificate_id":30,"status":"pending"},{"order_id":5,"certificate_id":50,"status":"pending"}]}"#
        );
        assert_eq!(a.returned, 3);
    }

    #[test]
    fn empty_window_answers_empty_object() {
        let book = OrderBook::new(1);
        assert_eq!(body(&book.answer(0, 10, None)), "{}");
        assert_eq!(body(&book.answer(10, 0, None)), "{}");
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
        );
        assert_eq!(
            body(&past),
            r#"{"orders":[],"page":{"total":3,"limit":2,"offset":9}}"#
        );
    }
}
