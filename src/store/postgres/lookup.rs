//! Held transitions and the lookups that release them (`[enrich]`), as
//! SQLite's `lookup.rs` does; releasing and rescheduling are leader writes,
//! fenced like every other.

use super::PgStore;
use crate::store::{Lookup, LookupBacklog, LookupOutcome, StoreError};

impl PgStore {
    /// Orders with a held transition due at `now`, oldest first.
    pub(super) async fn due_lookups(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<Lookup>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT order_id, array_agg(seq ORDER BY seq), max(attempts), min(held_at),
                    (SELECT last_error FROM enrichment l
                     WHERE l.order_id = e.order_id AND l.last_error IS NOT NULL
                     ORDER BY l.seq DESC LIMIT 1)
                 FROM enrichment e GROUP BY order_id
                 HAVING min(next_attempt_at) <= $1
                 ORDER BY min(seq) LIMIT $2",
                &[&now, &(limit as i64)],
            )
            .await
            .map_err(self.err("reading due lookups"))?;
        Ok(rows
            .iter()
            .map(|r| Lookup {
                order_id: r.get(0),
                seqs: r.get(1),
                attempts: r.get::<_, i32>(2).max(0) as u32,
                held_since: r.get(3),
                last_error: r.get(4),
            })
            .collect())
    }

    /// Stores the outcomes of lookups in one fenced transaction.
    pub(super) async fn finish_lookups(
        &self,
        done: &[(Lookup, LookupOutcome)],
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting the lookup update"))?;
        self.fence(&tx).await?;
        for (lookup, outcome) in done {
            match outcome {
                LookupOutcome::Release { details } => {
                    tx.execute(
                        "UPDATE transitions SET details = $2 WHERE seq = ANY($1)",
                        &[&lookup.seqs, details],
                    )
                    .await
                    .map_err(self.err("storing order details"))?;
                    tx.execute(
                        "DELETE FROM enrichment WHERE seq = ANY($1)",
                        &[&lookup.seqs],
                    )
                    .await
                    .map_err(self.err("releasing held transitions"))?;
                }
                LookupOutcome::Retry {
                    next_attempt_at,
                    error,
                } => {
                    tx.execute(
                        "UPDATE enrichment SET attempts = attempts + 1, next_attempt_at = $2,
                            last_error = $3 WHERE seq = ANY($1)",
                        &[&lookup.seqs, next_attempt_at, error],
                    )
                    .await
                    .map_err(self.err("scheduling a lookup again"))?;
                }
            }
        }
        tx.commit().await.map_err(self.err("committing lookups"))
    }

    /// Held transitions, their orders, and when the next lookup is due.
    pub(super) async fn held_backlog(&self) -> Result<LookupBacklog, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT count(*), count(DISTINCT order_id), min(next_attempt_at) FROM enrichment",
                &[],
            )
            .await
            .map_err(self.err("measuring the lookup backlog"))?;
        Ok(LookupBacklog {
            transitions: row.get::<_, i64>(0).max(0) as u64,
            orders: row.get::<_, i64>(1).max(0) as u64,
            next_due: row.get(2),
        })
    }

    /// Releases every held transition without details (fenced).
    pub(super) async fn release_all_held(&self) -> Result<u64, StoreError> {
        self.fenced_execute("releasing held transitions", "DELETE FROM enrichment", &[])
            .await
            .map(|n| n as u64)
    }
}
