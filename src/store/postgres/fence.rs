//! Fencing: the check that a leader still leads, inside each of its write
//! transactions.
//!
//! Every write of a leader (record a chunk, mark deliveries, expire, retry
//! now, pause) runs in a transaction whose first statement reads the term
//! with `SELECT ... FOR KEY SHARE` and fails with [`StoreError::Fenced`]
//! unless it is the lease's own. A takeover's `FOR UPDATE` conflicts with
//! that lock, and in READ COMMITTED a locking read that waited sees the
//! newest row. So every write transaction is wholly before the takeover
//! (it commits, the takeover waits for it) or wholly after it (it reads the
//! new term and aborts): the old leader cannot commit anything once the new
//! term exists. (The renewal only updates `expires_at`, a lock that does not
//! conflict with `FOR KEY SHARE`, so renewing never waits for a long write.)
//! A leader paused inside a transaction cannot hold up a takeover for long:
//! fenced transactions set `idle_in_transaction_session_timeout` and
//! `statement_timeout`, so the server ends them on its own.
//!
//! # Why no transition is lost or recorded twice across a failover
//!
//! * *Recorded twice*: a sighting is a transition only if it differs from
//!   the order's current status as committed, its occurrence is counted
//!   from the committed transitions in the same transaction, and `UNIQUE
//!   (order_id, status, occurrence)` makes a second row for the same
//!   transition impossible whoever writes it; a chunk's dedupe, its
//!   transitions, orders, outbox rows and cursor commit together or not at
//!   all.
//! * *Lost*: a transition is lost only if the cursor passed it before it was
//!   committed. The cursor moves only in the transaction that commits the
//!   window's last chunk, so whatever the old leader committed is complete,
//!   and whatever it did not commit left the cursor behind it: the new
//!   leader, starting from the cursor it reads after taking over, polls that
//!   window again (the overlap covers it) and records what is missing.
//! * *Deliveries*: an outbox row (or an in-order sink's cursor) leaves
//!   `pending` only by a committed mark. The old leader's marks either
//!   committed before the takeover (the new leader sees them) or abort; an
//!   event it sent but could not mark is pending, so the new leader sends it
//!   again: the duplicates at a sink are at most what was in flight.
//!
//! Both guarantees hold even if two nodes believed they led at once; the
//! lease only keeps that rare and short.

use std::sync::{Arc, Mutex};

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use crate::store::StoreError;

/// The term a leader's writes must still hold, and its local view of it.
#[derive(Clone)]
pub(super) struct Fence {
    pub(super) term: i64,
    lost: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl PgStore {
    /// This handle with writes fenced by `term`.
    pub(super) fn fenced(
        &self,
        term: i64,
        lost: CancellationToken,
        why: Arc<Mutex<Option<String>>>,
    ) -> PgStore {
        PgStore {
            fence: Some(Fence { term, lost, why }),
            ..self.clone()
        }
    }

    /// The fencing check, first in every leader write transaction (see the
    /// module comment).
    pub(super) async fn fence(&self, tx: &Transaction<'_>) -> Result<(), StoreError> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        if fence.lost.is_cancelled() {
            let why = fence.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
            return Err(StoreError::LeaseLost {
                location: self.location.to_string(),
                term: fence.term,
                why: why.unwrap_or_else(|| "leadership ended".to_string()),
            });
        }
        let limit = format!("{}ms", self.stall_limit.as_millis().max(1000));
        let row = tx
            .query_one(
                "SELECT term, holder,
                        set_config('idle_in_transaction_session_timeout', $1, true),
                        set_config('statement_timeout', $1, true)
                 FROM leadership WHERE id = 1 FOR KEY SHARE",
                &[&limit],
            )
            .await
            .map_err(self.err("checking this node's leadership"))?;
        let current: i64 = row.get(0);
        if current != fence.term {
            return Err(StoreError::Fenced {
                location: self.location.to_string(),
                term: fence.term,
                current,
                leader: row.get(1),
            });
        }
        Ok(())
    }

    /// One fenced statement in its own transaction; returns rows affected.
    pub(super) async fn fenced_execute(
        &self,
        context: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(self.err(context))?;
        self.fence(&tx).await?;
        let n = tx.execute(sql, params).await.map_err(self.err(context))?;
        tx.commit().await.map_err(self.err(context))?;
        Ok(n as usize)
    }
}
