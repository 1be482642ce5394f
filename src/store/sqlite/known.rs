//! What the store knows of the orders in a chunk being recorded: their
//! current status and certificate, looked up in bulk for large sorted
//! chunks (what a sighting amounts to is `store::sighting`).

use std::collections::HashMap;
use std::num::NonZeroI64;
use std::sync::Arc;

use rusqlite::OptionalExtension;

pub(super) use crate::store::sighting::{Current, Sighting};
use crate::transition::OrderChange;

/// The current status and certificate of the orders in a chunk.
///
/// Re-polling a large account is mostly "nothing changed", so the lookup
/// matters: for a large chunk sorted by order id, one ordered range scan of
/// `orders` replaces a point query per order. Statuses are interned (an
/// account has a handful), keeping the table to 24 bytes per order.
pub(super) enum KnownOrders {
    /// Point queries (small or unsorted chunks), and what this chunk set.
    Point(HashMap<i64, Current>),
    /// A sorted snapshot of the chunk's id range, plus the last order this
    /// chunk set: the chunk is sorted, so one order's entries are adjacent.
    Scanned {
        rows: Vec<(i64, Option<NonZeroI64>, u32)>,
        names: Vec<Arc<str>>,
        last_set: Option<(i64, Current)>,
        /// Where the previous lookup ended in `rows`.
        next: usize,
    },
}

/// Chunks at least this large, sorted by order id, are looked up by range scan.
const SCAN_THRESHOLD: usize = 2048;

impl KnownOrders {
    pub(super) fn load(
        tx: &rusqlite::Transaction<'_>,
        changes: &[OrderChange],
    ) -> rusqlite::Result<KnownOrders> {
        let sorted = changes.is_sorted_by_key(|c| c.order_id);
        let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
            return Ok(KnownOrders::Point(HashMap::new()));
        };
        if changes.len() < SCAN_THRESHOLD || !sorted {
            return Ok(KnownOrders::Point(HashMap::new()));
        }
        let mut names: Vec<Arc<str>> = Vec::new();
        let mut rows = Vec::with_capacity(changes.len());
        let mut stmt = tx.prepare_cached(
            "SELECT order_id, status, certificate_id FROM orders
             WHERE order_id BETWEEN ?1 AND ?2 ORDER BY order_id",
        )?;
        let mut q = stmt.query([first.order_id, last.order_id])?;
        while let Some(r) = q.next()? {
            let id: i64 = r.get(0)?;
            let status = r.get_ref(1)?.as_str().unwrap_or_default();
            let certificate = r.get::<_, Option<i64>>(2)?.and_then(NonZeroI64::new);
            let index = match names.iter().position(|n| &**n == status) {
                Some(i) => i,
                None => {
                    names.push(Arc::from(status));
                    names.len() - 1
                }
            };
            rows.push((id, certificate, index as u32));
        }
        Ok(KnownOrders::Scanned {
            rows,
            names,
            last_set: None,
            next: 0,
        })
    }

    /// The current status of `order_id`, counting what this chunk recorded.
    pub(super) fn current(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        order_id: i64,
    ) -> rusqlite::Result<Option<Current>> {
        match self {
            KnownOrders::Point(updated) => {
                if let Some(c) = updated.get(&order_id) {
                    return Ok(Some(c.clone()));
                }
                let mut stmt = tx.prepare_cached(
                    "SELECT status, certificate_id FROM orders WHERE order_id = ?1",
                )?;
                let found: Option<(String, Option<i64>)> = stmt
                    .query_row([order_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                Ok(found.map(|(status, certificate)| Current::new(Arc::from(status), certificate)))
            }
            KnownOrders::Scanned {
                rows,
                names,
                last_set,
                next,
            } => {
                if let Some((id, c)) = last_set
                    && *id == order_id
                {
                    return Ok(Some(c.clone()));
                }
                // Lookups come in ascending order: walk forward.
                while *next < rows.len() && rows[*next].0 < order_id {
                    *next += 1;
                }
                Ok(rows
                    .get(*next)
                    .filter(|(id, _, _)| *id == order_id)
                    .and_then(|(_, certificate, name)| {
                        Some(Current {
                            status: Arc::clone(names.get(*name as usize)?),
                            certificate_id: *certificate,
                        })
                    }))
            }
        }
    }

    /// Remembers what this chunk recorded for an order: its status, and
    /// its certificate unless the sighting had none (then the one it had
    /// `before`, as the store keeps it).
    pub(super) fn set(&mut self, change: &OrderChange, before: Option<&Current>) {
        match self {
            KnownOrders::Point(updated) => {
                let old = updated.get(&change.order_id).or(before);
                let next = Current::after(old, change);
                updated.insert(change.order_id, next);
            }
            KnownOrders::Scanned {
                rows,
                names,
                last_set,
                next,
            } => {
                let old = match last_set {
                    Some((id, c)) if *id == change.order_id => Some(c.clone()),
                    _ => rows
                        .get(*next)
                        .filter(|(id, _, _)| *id == change.order_id)
                        .and_then(|(_, certificate, name)| {
                            Some(Current {
                                status: Arc::clone(names.get(*name as usize)?),
                                certificate_id: *certificate,
                            })
                        }),
                };
                let old = old.as_ref().or(before);
                *last_set = Some((change.order_id, Current::after(old, change)));
            }
        }
    }
}
