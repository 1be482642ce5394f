//! The orders of one window in compact form, and the statuses they share.
//!
//! A catch-up window of a large account can list a million orders, and they
//! must all be held until the whole answer has arrived and proved well-formed
//! (a malformed answer records nothing). So an order is kept as 24 bytes —
//! its id, its certificate id and the index of its status in a small table —
//! rather than as JSON text or as an [`OrderChange`] with its own pointer.
//! Memory then grows with the number of orders, never with the size of the
//! text that carried them. Orders become [`OrderChange`]s a chunk at a time,
//! just before they are recorded.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use crate::transition::OrderChange;

/// One order of an answer: 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactOrder {
    pub order_id: i64,
    /// 0 when the answer gave none (a real one is always positive).
    certificate_id: i64,
    /// Index into the window's [`Statuses`].
    pub status: u32,
}

impl CompactOrder {
    pub fn new(order_id: i64, certificate_id: Option<i64>, status: u32) -> CompactOrder {
        CompactOrder {
            order_id,
            certificate_id: certificate_id.unwrap_or(0),
            status,
        }
    }

    pub fn certificate_id(&self) -> Option<i64> {
        (self.certificate_id > 0).then_some(self.certificate_id)
    }
}

/// Raw spellings looked up by a linear scan before a hash map takes over:
/// a real account has about ten statuses, and comparing a few short
/// strings is cheaper than hashing one, a million times per catch-up.
const SCANNED_SPELLINGS: usize = 32;

/// The statuses of one window, each normalized once (trimmed, lower-cased,
/// anything outside `[a-z0-9_]` escaped: see `transition::status_name`)
/// and shared by every order that has it.
#[derive(Debug, Default, Clone)]
pub struct Statuses {
    /// Normalized names; a [`CompactOrder::status`] indexes this.
    names: Vec<Arc<str>>,
    /// Raw spellings seen so far and the name each normalizes to.
    spellings: Vec<(Box<str>, u32)>,
    /// Spellings beyond [`SCANNED_SPELLINGS`] (only a hostile answer has them).
    more: HashMap<Box<str>, u32>,
}

impl Statuses {
    /// The index of the status spelled `raw` (not blank), adding it if new.
    pub fn intern(&mut self, raw: &str) -> u32 {
        if let Some((_, i)) = self.spellings.iter().find(|(s, _)| **s == *raw) {
            return *i;
        }
        if let Some(i) = self.more.get(raw) {
            return *i;
        }
        let normal = crate::transition::status_name(raw);
        let index = match self.names.iter().position(|n| **n == *normal) {
            Some(i) => i as u32,
            None => {
                self.names.push(Arc::from(normal));
                (self.names.len() - 1) as u32
            }
        };
        if self.spellings.len() < SCANNED_SPELLINGS {
            self.spellings.push((raw.into(), index));
        } else {
            self.more.insert(raw.into(), index);
        }
        index
    }

    /// The normalized status at `index`.
    pub fn name(&self, index: u32) -> &Arc<str> {
        &self.names[index as usize]
    }

    /// How many distinct statuses.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Every order of one window, in answer order until [`OrderList::sort`].
#[derive(Debug, Default)]
pub struct OrderList {
    orders: Vec<CompactOrder>,
    statuses: Statuses,
}

impl OrderList {
    pub fn new(orders: Vec<CompactOrder>, statuses: Statuses) -> OrderList {
        OrderList { orders, statuses }
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, CompactOrder> {
        self.orders.iter()
    }

    pub fn statuses(&self) -> &Statuses {
        &self.statuses
    }

    /// Sorts by order id, keeping one order's entries in answer order (they
    /// are that order's successive statuses). An answer that is already
    /// sorted costs one pass and no scratch memory.
    pub fn sort(&mut self) {
        if !self.orders.is_sorted_by_key(|o| o.order_id) {
            self.orders.sort_by_key(|o| o.order_id);
        }
    }

    /// The orders in `range` as the store takes them.
    pub fn changes(&self, range: Range<usize>) -> Vec<OrderChange> {
        self.orders[range]
            .iter()
            .map(|o| OrderChange {
                order_id: o.order_id,
                certificate_id: o.certificate_id(),
                status: Arc::clone(self.statuses.name(o.status)),
            })
            .collect()
    }

    /// All of them as the store takes them (tests and small windows).
    pub fn to_changes(&self) -> Vec<OrderChange> {
        self.changes(0..self.orders.len())
    }
}

/// Orders already in the store's vocabulary (fakes of the API in tests).
impl From<Vec<OrderChange>> for OrderList {
    fn from(changes: Vec<OrderChange>) -> OrderList {
        let mut statuses = Statuses::default();
        let orders = changes
            .iter()
            .map(|c| CompactOrder::new(c.order_id, c.certificate_id, statuses.intern(&c.status)))
            .collect();
        OrderList { orders, statuses }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_order_is_24_bytes() {
        assert_eq!(std::mem::size_of::<CompactOrder>(), 24);
    }

    #[test]
    fn spellings_of_one_status_share_one_name() {
        let mut s = Statuses::default();
        let a = s.intern("Issued");
        let b = s.intern(" issued ");
        let c = s.intern("pending");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(&**s.name(a), "issued");
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn many_spellings_still_intern_correctly() {
        let mut s = Statuses::default();
        for i in 0..200 {
            assert_eq!(s.intern(&format!("s{i}")), i);
            assert_eq!(s.intern(&format!("S{i}")), i);
        }
        assert_eq!(s.intern("s150"), 150);
        assert_eq!(s.len(), 200);
    }

    #[test]
    fn sorting_keeps_one_orders_statuses_in_answer_order() {
        let mut s = Statuses::default();
        let (p, i) = (s.intern("pending"), s.intern("issued"));
        let mut list = OrderList::new(
            vec![
                CompactOrder::new(9, None, p),
                CompactOrder::new(3, Some(30), p),
                CompactOrder::new(3, Some(30), i),
                CompactOrder::new(1, None, i),
            ],
            s,
        );
        list.sort();
        let got: Vec<(i64, Option<i64>, String)> = list
            .to_changes()
            .into_iter()
            .map(|c| (c.order_id, c.certificate_id, c.status.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, None, "issued".into()),
                (3, Some(30), "pending".into()),
                (3, Some(30), "issued".into()),
                (9, None, "pending".into()),
            ]
        );
    }
}
