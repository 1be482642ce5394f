//! What a chunk's sightings amount to on PostgreSQL: the orders' current
//! status and certificate in one query, the comparison every backend shares
//! (`store::sighting`), and the numbering of returns in one more.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_postgres::Transaction;

use crate::store::sighting::{Current, Sighting};
use crate::transition::{Dedupe, OrderChange};

/// A sighting that changes what the store knows of an order: a transition
/// (unless first-sighting mode finds its status recorded before), or only
/// a certificate to remember.
pub(super) struct Candidate<'a> {
    pub(super) change: &'a OrderChange,
    pub(super) previous: Option<Arc<str>>,
    pub(super) transition: bool,
    /// The order's earlier transitions to this status (set by [`number`]).
    pub(super) occurrence: u32,
}

/// Chunks at least this large, sorted by order id, are looked up by range.
const SCAN_THRESHOLD: usize = 2048;

/// The current status and certificate of each order of the chunk.
pub(super) async fn known_orders(
    tx: &Transaction<'_>,
    changes: &[OrderChange],
) -> Result<HashMap<i64, Current>, tokio_postgres::Error> {
    let (Some(first), Some(last)) = (changes.first(), changes.last()) else {
        return Ok(HashMap::new());
    };
    // A large chunk sorted by order id (the poller's) is one range scan of
    // the primary key; anything else is looked up by its ids.
    let rows = if changes.len() >= SCAN_THRESHOLD && changes.is_sorted_by_key(|c| c.order_id) {
        tx.query(
            "SELECT order_id, status, certificate_id FROM orders WHERE order_id BETWEEN $1 AND $2",
            &[&first.order_id, &last.order_id],
        )
        .await?
    } else {
        let mut ids: Vec<i64> = changes.iter().map(|c| c.order_id).collect();
        ids.sort_unstable();
        ids.dedup();
        tx.query(
            "SELECT order_id, status, certificate_id FROM orders WHERE order_id = ANY($1)",
            &[&ids],
        )
        .await?
    };
    // Statuses are few: share one string per status.
    let mut names: Vec<Arc<str>> = Vec::new();
    let mut known = HashMap::with_capacity(rows.len());
    for r in rows {
        let status: &str = r.get(1);
        let name = match names.iter().find(|n| &***n == status) {
            Some(n) => Arc::clone(n),
            None => {
                names.push(Arc::from(status));
                Arc::clone(&names[names.len() - 1])
            }
        };
        known.insert(r.get::<_, i64>(0), Current::new(name, r.get(2)));
    }
    Ok(known)
}

/// The sightings that change what is known of their order, in answer
/// order, each with the status the order had before (counting earlier
/// ones of the chunk).
pub(super) fn plan<'a>(
    changes: &'a [OrderChange],
    known: &HashMap<i64, Current>,
    dedupe: Dedupe,
) -> Vec<Candidate<'a>> {
    let mut last: HashMap<i64, Current> = HashMap::new();
    let mut out = Vec::new();
    for change in changes {
        let current = last
            .get(&change.order_id)
            .or_else(|| known.get(&change.order_id));
        let transition = match current.map(|c| c.compare(change, dedupe)) {
            // The common re-poll case: nothing changed since last time.
            Some(Sighting::Repeat) => continue,
            Some(Sighting::Refresh) => false,
            Some(Sighting::Transition) | None => true,
        };
        let previous = current.map(|c| Arc::clone(&c.status));
        let next = Current::after(current, change);
        last.insert(change.order_id, next);
        out.push(Candidate {
            change,
            previous,
            transition,
            occurrence: 0,
        });
    }
    out
}

/// Numbers the transitions of known orders: the k-th return of an order
/// to a status gets occurrence k, counting what is recorded and what came
/// earlier in the chunk.
pub(super) async fn number(
    tx: &Transaction<'_>,
    candidates: &mut [Candidate<'_>],
) -> Result<(), tokio_postgres::Error> {
    let (orders, statuses): (Vec<i64>, Vec<&str>) = candidates
        .iter()
        .filter(|c| c.transition && c.previous.is_some())
        .map(|c| (c.change.order_id, &*c.change.status))
        .unzip();
    let mut next: HashMap<(i64, String), u32> = HashMap::new();
    if !orders.is_empty() {
        let rows = tx
            .query(
                "SELECT t.order_id, t.status, max(t.occurrence) FROM transitions t
                 JOIN (SELECT DISTINCT o, s FROM unnest($1::bigint[], $2::text[]) AS u (o, s)) u
                   ON t.order_id = u.o AND t.status = u.s
                 GROUP BY t.order_id, t.status",
                &[&orders, &statuses],
            )
            .await?;
        for r in rows {
            let max: i32 = r.get(2);
            next.insert((r.get(0), r.get(1)), max.max(0) as u32 + 1);
        }
    }
    for c in candidates.iter_mut().filter(|c| c.transition) {
        let slot = next
            .entry((c.change.order_id, c.change.status.to_string()))
            .or_insert(0);
        c.occurrence = *slot;
        *slot += 1;
    }
    Ok(())
}
