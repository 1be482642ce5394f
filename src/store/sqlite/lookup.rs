//! Held transitions and the lookups that release them (`[enrich]`).
//!
//! A held transition has a row in `enrichment` from the transaction that
//! recorded it until the one that stores its details; the delivery
//! queries skip it meanwhile (see `outbox` and `route`).

use rusqlite::params;

use super::Db;
use super::db::classify;
use crate::store::{Lookup, LookupBacklog, LookupOutcome, StoreError};

impl Db {
    /// Orders with a held transition due at `now`, oldest first.
    pub fn lookups_due(&self, now: i64, limit: usize) -> Result<Vec<Lookup>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT order_id, group_concat(seq), max(attempts), min(held_at),
                    (SELECT last_error FROM enrichment l
                     WHERE l.order_id = e.order_id AND l.last_error IS NOT NULL
                     ORDER BY l.seq DESC LIMIT 1)
                 FROM enrichment e GROUP BY order_id
                 HAVING min(next_attempt_at) <= ?1
                 ORDER BY min(seq) LIMIT ?2",
            )
            .map_err(|e| self.err("preparing the lookup query", e))?;
        let rows = stmt
            .query_map(params![now, limit as i64], |r| {
                let seqs: String = r.get(1)?;
                let mut seqs: Vec<i64> = seqs.split(',').filter_map(|s| s.parse().ok()).collect();
                seqs.sort_unstable();
                Ok(Lookup {
                    order_id: r.get(0)?,
                    seqs,
                    attempts: r.get(2)?,
                    held_since: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(|e| self.err("reading due lookups", e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| self.err("reading due lookups", e))
    }

    /// Stores the outcomes of lookups in one transaction.
    pub fn lookups_done(&mut self, done: &[(Lookup, LookupOutcome)]) -> Result<(), StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| classify(path, context, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the lookup update"))?;
        for (lookup, outcome) in done {
            for seq in &lookup.seqs {
                match outcome {
                    LookupOutcome::Release { details } => {
                        tx.prepare_cached("UPDATE transitions SET details = ?2 WHERE seq = ?1")
                            .and_then(|mut q| q.execute(params![seq, details]))
                            .map_err(err("storing order details"))?;
                        tx.prepare_cached("DELETE FROM enrichment WHERE seq = ?1")
                            .and_then(|mut q| q.execute([seq]))
                            .map_err(err("releasing a held transition"))?;
                    }
                    LookupOutcome::Retry {
                        next_attempt_at,
                        error,
                    } => {
                        tx.prepare_cached(
                            "UPDATE enrichment SET attempts = attempts + 1,
                                next_attempt_at = ?2, last_error = ?3 WHERE seq = ?1",
                        )
                        .and_then(|mut q| q.execute(params![seq, next_attempt_at, error]))
                        .map_err(err("scheduling a lookup again"))?;
                    }
                }
            }
        }
        tx.commit().map_err(err("committing lookups"))
    }

    /// Held transitions, their orders, and when the next lookup is due.
    pub fn lookup_backlog(&self) -> Result<LookupBacklog, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*), count(DISTINCT order_id), min(next_attempt_at) FROM enrichment",
                [],
                |r| {
                    Ok(LookupBacklog {
                        transitions: r.get::<_, i64>(0)? as u64,
                        orders: r.get::<_, i64>(1)? as u64,
                        next_due: r.get(2)?,
                    })
                },
            )
            .map_err(|e| self.err("measuring the lookup backlog", e))
    }

    /// Releases every held transition without details.
    pub fn release_held(&mut self) -> Result<u64, StoreError> {
        self.conn
            .execute("DELETE FROM enrichment", [])
            .map(|n| n as u64)
            .map_err(|e| self.err("releasing held transitions", e))
    }
}
