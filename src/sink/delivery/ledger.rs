//! Writing what happened to the ledger: each attempt's outcome becomes a
//! mark (delivered, retry at a time, dead), is logged and counted, and
//! marks are written in one transaction per round. A clean round is written
//! behind: the loop sends the next requests while it commits, and the
//! rounds that finish meanwhile share the next commit. A 410 pauses the
//! sink; a receiver failing longer than `give_up_after` has its backlog
//! given up.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::{DeliveryLoop, round_ms};
use crate::sink::kind::Outcome;
use crate::sink::retry::{Round, millis, resolve};
use crate::store::{Mark, OutboxEntry, StoreError};

/// Outcomes of finished deliveries not yet written to the ledger.
#[derive(Default)]
pub(super) struct Unflushed {
    pub marks: Vec<(i64, Mark)>,
    /// Seqs in `marks`, in the write under way and in flight: never
    /// fetched again meanwhile.
    pub busy: HashSet<i64>,
    /// The write under way, if any (at most one, so commits keep the order
    /// in which outcomes came).
    writing: Option<Writing>,
}

/// A ledger write the loop does not wait for, and the seqs it carries.
struct Writing {
    commit: Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>,
    seqs: Vec<i64>,
}

impl Unflushed {
    /// Outcomes known but not yet committed: a crash would send these
    /// again, besides what is in flight.
    pub fn unwritten(&self) -> usize {
        self.marks.len() + self.writing.as_ref().map_or(0, |w| w.seqs.len())
    }

    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Waits for the write under way (forever if there is none: guard
    /// with [`Unflushed::is_writing`]); cancel-safe, the write goes on.
    pub async fn written(&mut self) -> Result<(), StoreError> {
        match &mut self.writing {
            Some(w) => w.commit.as_mut().await,
            None => std::future::pending().await,
        }
    }

    /// The write under way finished with `result`: its seqs may be
    /// fetched again.
    pub fn finished(&mut self, result: Result<(), StoreError>) -> Result<(), StoreError> {
        if let Some(w) = self.writing.take() {
            for seq in &w.seqs {
                self.busy.remove(seq);
            }
        }
        result
    }
}

impl DeliveryLoop {
    /// Turns outcomes into ledger marks and adds them up in `round`.
    pub(super) async fn settle(
        &self,
        batch: &[OutboxEntry],
        outcomes: Vec<Outcome>,
        unflushed: &mut Unflushed,
        round: &mut Round,
    ) -> Result<(), StoreError> {
        let now = self.now();
        let delivered_before = round.delivered;
        for (entry, outcome) in batch.iter().zip(outcomes.iter()) {
            let mark = resolve(entry, outcome, &self.policy, now, rand::random());
            if let Outcome::Retry {
                retry_after: Some(ra),
                ..
            } = outcome
            {
                round.retry_after = round.retry_after.max(Some(*ra));
            }
            self.count(entry, &mark, outcome, now, round).await?;
            unflushed.marks.push((entry.seq(), mark));
        }
        // Counted once per batch: settling runs once per delivered event.
        let delivered = round.delivered - delivered_before;
        if delivered > 0 {
            self.ctx
                .metrics
                .delivery(self.name(), "delivered", delivered as u64);
        }
        if batch.len() != outcomes.len() {
            // A sink must answer for every entry; any it skipped stay pending.
            round.failed += 1;
            tracing::error!(sink = %self.name(), "sink returned {} outcomes for {} deliveries", outcomes.len(), batch.len());
            for e in batch.iter().skip(outcomes.len()) {
                unflushed.busy.remove(&e.seq());
            }
        }
        Ok(())
    }

    /// Logs and counts one attempt's mark; a 410 pauses the sink.
    async fn count(
        &self,
        entry: &OutboxEntry,
        mark: &Mark,
        outcome: &Outcome,
        now: i64,
        round: &mut Round,
    ) -> Result<(), StoreError> {
        let name = self.name();
        let id = EventIdOf(entry);
        let attempt = entry.attempts + 1;
        match (mark, outcome) {
            (Mark::Delivered, _) => {
                round.delivered += 1;
                tracing::debug!(sink = %name, event = %id, attempt, "delivered");
            }
            (
                Mark::Retry {
                    error,
                    next_attempt_at,
                },
                _,
            ) => {
                round.failed += 1;
                self.ctx.metrics.delivery(name, "retry", 1);
                let wait = Duration::from_millis((next_attempt_at - now).max(0).unsigned_abs());
                tracing::warn!(sink = %name, event = %id, attempt, error = %error,
                    retry_in = %humantime::format_duration(round_ms(wait)), "delivery failed; will retry");
            }
            (Mark::Dead { error }, Outcome::Gone { .. }) => {
                round.failed += 1;
                round.gone = true;
                self.ctx.metrics.delivery(name, "gone", 1);
                tracing::error!(sink = %name, event = %id, attempt, error = %error,
                    "receiver answered 410 Gone: sink PAUSED, nothing more is sent to it until `orderwatch redeliver --sink {name} --dead`");
                let reason = format!("event {id}: {error}");
                self.ctx.store.pause(name, &reason, now).await?;
            }
            (Mark::Dead { error }, outcome) => {
                // A receiver that rejects one event (a 4xx) is answering:
                // that event's problem is not the receiver's health, so it
                // does not hold the sink. Retries given up are failures.
                if matches!(outcome, Outcome::Retry { .. }) {
                    round.failed += 1;
                }
                self.ctx.metrics.delivery(name, "dead", 1);
                tracing::error!(sink = %name, event = %id, attempt, error = %error,
                    "delivery is dead; see `orderwatch deliveries --state dead`, resend with `orderwatch redeliver --sink {name} --dead`");
            }
        }
        Ok(())
    }

    /// Writes every outcome known: the write under way, then the rest.
    pub(super) async fn flush(&self, unflushed: &mut Unflushed) -> Result<(), StoreError> {
        if unflushed.is_writing() {
            let result = unflushed.written().await;
            unflushed.finished(result)?;
        }
        if unflushed.marks.is_empty() {
            return Ok(());
        }
        let marks = std::mem::take(&mut unflushed.marks);
        for (seq, _) in &marks {
            unflushed.busy.remove(seq);
        }
        self.ctx.store.mark(self.name(), marks, self.now()).await
    }

    /// Starts writing the outcomes known, unless a write is under way (they
    /// go with the next one, when that one is done).
    pub(super) fn write_behind(&self, unflushed: &mut Unflushed) {
        if unflushed.is_writing() || unflushed.marks.is_empty() {
            return;
        }
        let marks = std::mem::take(&mut unflushed.marks);
        let seqs = marks.iter().map(|(seq, _)| *seq).collect();
        let (store, name, now) = (
            Arc::clone(&self.ctx.store),
            self.name().to_string(),
            self.now(),
        );
        unflushed.writing = Some(Writing {
            commit: Box::pin(async move { store.mark(&name, marks, now).await }),
            seqs,
        });
    }

    /// Once the receiver has been failing for `give_up_after`, gives up
    /// every delivery whose first failed attempt is that old, even if it
    /// is not due again yet (a backoff, or waiting behind the one probe of
    /// a held sink). Deliveries never tried are kept: `give_up_after`
    /// counts from a delivery's first failure, not from its queueing.
    pub(super) async fn expire_old(&self, failing_since: Option<i64>) -> Result<(), StoreError> {
        let Some(since) = failing_since else {
            return Ok(());
        };
        let give_up = self.policy.give_up_after;
        let now = self.now();
        let cutoff = now.saturating_sub(millis(give_up));
        if since > cutoff {
            return Ok(());
        }
        let error = format!(
            "gave up after {} while the receiver was failing",
            humantime::format_duration(give_up)
        );
        let n = self
            .ctx
            .store
            .expire(self.name(), cutoff, &error, now)
            .await?;
        if n > 0 {
            self.ctx.metrics.delivery(self.name(), "dead", n as u64);
            tracing::error!(sink = %self.name(), count = n, give_up_after = %humantime::format_duration(give_up),
                "gave up deliveries: the receiver has been failing for longer than give_up_after; see `orderwatch deliveries --state dead`");
        }
        Ok(())
    }
}

/// An entry's event id for log lines, formatted only if a line is written.
struct EventIdOf<'a>(&'a OutboxEntry);

impl std::fmt::Display for EventIdOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0.order_id(), self.0.transition.status)
    }
}
