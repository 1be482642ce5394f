//! Recording one window's answer: dedupe, transitions, outbox rows and the
//! cursor, in one transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Db, StoreError};
use crate::config::SinkConfig;

/// One order as CertCentral reported it: its *current* status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderChange {
    pub order_id: i64,
    pub certificate_id: Option<i64>,
    /// Lower-case; shared between the many orders of one status.
    pub status: Arc<str>,
}

/// A recorded transition (a row of `transitions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRow {
    pub seq: i64,
    pub order_id: i64,
    pub status: String,
    pub certificate_id: Option<i64>,
    pub previous_status: Option<String>,
    /// When orderwatch first saw it, unix ms.
    pub seen_at: i64,
}

/// What recording a window did.
#[derive(Debug, Default, Clone)]
pub struct RecordSummary {
    /// Orders in the answer.
    pub seen: usize,
    /// New transitions by status.
    pub new_by_status: BTreeMap<String, u64>,
    /// The first few new transitions, for the log.
    pub sample: Vec<TransitionRow>,
    /// Outbox rows written.
    pub queued: u64,
}

impl RecordSummary {
    pub fn new_transitions(&self) -> u64 {
        self.new_by_status.values().sum()
    }
}

/// How many new transitions a summary keeps for logging one line each.
pub const SAMPLE: usize = 100;

impl Db {
    /// The cursor: every change up to this instant has been seen.
    pub fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let ms: Option<i64> = self
            .conn
            .query_row("SELECT position FROM cursor WHERE id = 1", [], |r| r.get(0))
            .optional()
            .map_err(|e| self.err("reading the cursor", e))?;
        Ok(ms.and_then(DateTime::from_timestamp_millis))
    }

    /// Records a window's orders. New `(order_id, status)` pairs become
    /// transitions with an outbox row for every sink that wants them; the
    /// cursor moves to `cursor` (never backwards). All or nothing.
    pub fn record_window(
        &mut self,
        changes: &[OrderChange],
        cursor: DateTime<Utc>,
        seen_at: DateTime<Utc>,
        sinks: &[SinkConfig],
    ) -> Result<RecordSummary, StoreError> {
        let path: &std::path::Path = &self.path;
        let err = move |context: &'static str| move |e| super::classify(path, context, e);
        let seen_ms = seen_at.timestamp_millis();
        let mut summary = RecordSummary {
            seen: changes.len(),
            ..RecordSummary::default()
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err("starting the cycle transaction"))?;
        {
            let mut last_status = tx
                .prepare_cached("SELECT status FROM orders WHERE order_id = ?1")
                .map_err(err("preparing the order lookup"))?;
            let mut insert_transition = tx
                .prepare_cached(
                    "INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (order_id, status) DO NOTHING",
                )
                .map_err(err("preparing the transition insert"))?;
            let mut upsert_order = tx
                .prepare_cached(
                    "INSERT INTO orders (order_id, certificate_id, status, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (order_id) DO UPDATE SET
                        certificate_id = coalesce(excluded.certificate_id, certificate_id),
                        status = excluded.status, updated_at = excluded.updated_at",
                )
                .map_err(err("preparing the order update"))?;
            let mut insert_outbox = tx
                .prepare_cached(
                    "INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?4)",
                )
                .map_err(err("preparing the outbox insert"))?;

            for change in changes {
                let previous: Option<String> = last_status
                    .query_row([change.order_id], |r| r.get(0))
                    .optional()
                    .map_err(err("looking up an order"))?;
                let status: &str = &change.status;
                if previous.as_deref() == Some(status) {
                    // The common re-poll case: nothing changed since last time.
                    continue;
                }
                let inserted = insert_transition
                    .execute(params![
                        change.order_id,
                        status,
                        change.certificate_id,
                        previous,
                        seen_ms
                    ])
                    .map_err(err("recording a transition"))?;
                // Read before the order upsert, which sets its own rowid.
                let seq = tx.last_insert_rowid();
                upsert_order
                    .execute(params![
                        change.order_id,
                        change.certificate_id,
                        status,
                        seen_ms
                    ])
                    .map_err(err("updating an order"))?;
                if inserted == 0 {
                    // A status this order had before (A → B → A): not a new
                    // transition, but the next one's previous_status is A.
                    continue;
                }
                for sink in sinks.iter().filter(|s| s.wants(status)) {
                    insert_outbox
                        .execute(params![sink.name, seq, change.order_id, seen_ms])
                        .map_err(err("queueing a delivery"))?;
                    summary.queued += 1;
                }
                *summary.new_by_status.entry(status.to_string()).or_default() += 1;
                if summary.sample.len() < SAMPLE {
                    summary.sample.push(TransitionRow {
                        seq,
                        order_id: change.order_id,
                        status: status.to_string(),
                        certificate_id: change.certificate_id,
                        previous_status: previous,
                        seen_at: seen_ms,
                    });
                }
            }
            tx.execute(
                "INSERT INTO cursor (id, position) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET position = max(position, excluded.position)",
                [cursor.timestamp_millis()],
            )
            .map_err(err("moving the cursor"))?;
        }
        tx.commit().map_err(err("committing the cycle"))?;
        Ok(summary)
    }
}
