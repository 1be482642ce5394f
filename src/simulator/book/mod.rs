//! The simulated account's orders and the index that answers status-changes
//! queries.
//!
//! Invariant: every order has a non-empty history sorted by time, and
//! `index` holds exactly one `(last change, order id)` key per order, with a
//! copy of what the answer lists for it. A query is then a range scan over
//! `index` that touches nothing else, which keeps a million-order account
//! fast, and the scan order is the answer order.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::status::{CERTIFICATE_ID_OFFSET, Status};

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

/// What an answer lists for an order, kept next to its index key so a scan
/// never has to look the order up.
#[derive(Debug, Clone)]
struct Listed {
    certificate_id: i64,
    status: Status,
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
    index: BTreeMap<(i64, i64), Listed>,
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
            index: BTreeMap::new(),
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
        let listed = Listed {
            certificate_id,
            status: current.clone(),
        };
        self.index.insert((new_at.timestamp_micros(), id), listed);
        let terminal = current.is_terminal();
        match (order.active_slot, terminal) {
            (None, false) => {
                order.active_slot = Some(self.active.len());
                self.active.push(id);
            }
            (Some(slot), true) => {
                order.active_slot = None;
                self.active.swap_remove(slot);
                if let Some(&moved) = self.active.get(slot)
                    && let Some(moved_order) = self.orders.get_mut(&moved)
                {
                    moved_order.active_slot = Some(slot);
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
                    certificate_id: id.saturating_add(CERTIFICATE_ID_OFFSET),
                    history: vec![(at, status.clone())],
                    active_slot,
                },
            );
            let listed = Listed {
                certificate_id: id.saturating_add(CERTIFICATE_ID_OFFSET),
                status: status.clone(),
            };
            fresh.push(((micros, id), listed));
            if id >= self.next_order_id {
                self.next_order_id = id.saturating_add(1);
            }
        }
        let mut merged: BTreeMap<(i64, i64), Listed> = fresh.into_iter().collect();
        self.index.append(&mut merged);
        for id in existing {
            self.set_status(
                id,
                id.saturating_add(CERTIFICATE_ID_OFFSET),
                status.clone(),
                at,
            );
        }
    }

    /// Serializes the orders whose last change lies in `from_us..=to_us`
    /// (µs since the epoch, both inclusive), ordered by (last change, order
    /// id). Without `page` it is the plain upstream answer, `{}` when empty;
    /// with `page` it carries a `page` object and only that slice of orders.
    ///
    /// With `unstable = Some(seed)` the order is only as stable as a
    /// database without a total order keeps it: orders are sorted by the
    /// whole second of their last change (what upstream stores), ties in an
    /// order drawn from `seed`, and the page's orders are shuffled.
    pub(crate) fn answer(
        &self,
        from_us: i64,
        to_us: i64,
        page: Option<PageRequest>,
        unstable: Option<u64>,
    ) -> Answer {
        if from_us > to_us {
            return empty();
        }
        let range = || self.index.range((from_us, i64::MIN)..=(to_us, i64::MAX));
        let total = range().count();
        if total == 0 {
            return empty();
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
        let listed = range().map(|(&(_, id), l)| (id, l));
        let returned = match unstable {
            None => write_orders(&mut body, listed.skip(skip).take(take)),
            Some(seed) => {
                let mut all: Vec<(i64, u64, i64, &Listed)> = range()
                    .map(|(&(at, id), l)| (at.div_euclid(1_000_000), mix(seed, id), id, l))
                    .collect();
                all.sort_unstable_by_key(|&(second, tie, id, _)| (second, tie, id));
                let mut slice: Vec<(i64, &Listed)> = all
                    .into_iter()
                    .skip(skip)
                    .take(take)
                    .map(|(_, _, id, l)| (id, l))
                    .collect();
                slice.shuffle(&mut StdRng::seed_from_u64(seed));
                write_orders(&mut body, slice.into_iter())
            }
        };
        body.push(b']');
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

fn empty() -> Answer {
    Answer {
        body: b"{}".to_vec(),
        returned: 0,
    }
}

/// Writes `{"order_id":..,"certificate_id":..,"status":..}` for each order,
/// comma-separated; returns how many.
fn write_orders<'a>(body: &mut Vec<u8>, orders: impl Iterator<Item = (i64, &'a Listed)>) -> usize {
    let mut returned = 0;
    for (id, listed) in orders {
        if returned > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"order_id\":");
        write_int(body, id);
        body.extend_from_slice(b",\"certificate_id\":");
        write_int(body, listed.certificate_id);
        body.extend_from_slice(b",\"status\":");
        write_json_str(body, listed.status.as_str());
        body.push(b'}');
        returned += 1;
    }
    returned
}

/// A well-mixed 64-bit value of `(seed, id)` (splitmix64), the tie-breaker
/// of one unstable answer.
fn mix(seed: u64, id: i64) -> u64 {
    let mut z = seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
mod tests;
