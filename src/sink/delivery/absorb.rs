//! After a round of requests: their outcomes written, the breaker tripped
//! or closed, and what another process changed (`orderwatch redeliver`)
//! taken into account.

use tokio::time::Instant;

use super::{Attempt, DeliveryLoop, State, round_ms};
use crate::sink::retry::{Breaker, Round};
use crate::store::StoreError;

impl DeliveryLoop {
    /// Takes every finished request (the first, and any others done by
    /// now), writes their outcomes, and adjusts the breaker.
    pub(super) async fn absorb(
        &self,
        st: &mut State,
        first: Option<Result<(tokio::task::Id, Attempt), tokio::task::JoinError>>,
    ) -> Result<(), StoreError> {
        // Answers to requests sent since the breaker last changed, and to
        // older ones (see `Breaker`): only the first kind moves it.
        let (mut fresh, mut older) = (Round::default(), Round::default());
        let mut finished: Vec<_> = first.into_iter().collect();
        while let Some(more) = st.inflight.try_join_next_with_id() {
            finished.push(more);
        }
        for joined in finished {
            let id = match &joined {
                Ok((id, _)) => *id,
                Err(e) => e.id(),
            };
            let carried = st.carrying.remove(&id);
            let epoch = carried.as_ref().map_or(st.breaker.epoch, |c| c.epoch);
            let round = if st.breaker.fresh(epoch) {
                &mut fresh
            } else {
                &mut older
            };
            match joined {
                Ok((_, (batch, outcomes))) => {
                    self.settle(&batch, outcomes, &mut st.unflushed, round)
                        .await?;
                    st.spare.recycle(batch, self.sink.batch_size());
                }
                Err(e) => {
                    // A sink panicked: its rows stay pending and go out
                    // again after the hold.
                    for seq in carried.map(|c| c.seqs).unwrap_or_default() {
                        st.unflushed.busy.remove(&seq);
                    }
                    round.failed += 1;
                    tracing::error!(sink = %self.name(), error = %e, "a delivery task failed; its deliveries stay pending");
                }
            }
        }
        let round = fresh.and(older);
        // A clean round: the freed slots take the next due rows (already
        // fetched, so already free of earlier pending rows of their orders)
        // and its outcomes are written behind, so the receiver is not kept
        // waiting on the ledger. Everything is still written before
        // anything is fetched again. A round with a failure is written at
        // once: the breaker and `expire_old` below act on it.
        let clean = round.failed == 0;
        if clean && !st.paused && !st.breaker.holding(Instant::now()) {
            let limit = st.breaker.limit(self.sink.concurrency());
            self.dispatch(st, limit);
        }
        if clean {
            self.write_behind(&mut st.unflushed);
        } else {
            self.flush(&mut st.unflushed).await?;
        }
        if round.gone {
            st.paused = true;
        }
        if fresh.failed > 0 {
            let first_failure = !st.breaker.failing();
            let hold = st.breaker.trip(
                &self.policy,
                round.retry_after,
                Instant::now(),
                self.now(),
                rand::random(),
            );
            if first_failure && !st.paused {
                tracing::warn!(sink = %self.name(), hold = %humantime::format_duration(round_ms(hold)),
                    "deliveries failing: holding the sink, then one request at a time until one succeeds");
            }
        } else {
            st.breaker.honour(older.retry_after, Instant::now());
        }
        if round.failed > 0 {
            // After the hold, read again what is due.
            st.queue.clear();
            self.expire_old(st.breaker.failing_since).await?;
        } else if fresh.delivered > 0 && st.breaker.failing() {
            let rounds = st.breaker.close(Instant::now());
            let moved = self.ctx.store.retry_now(self.name(), self.now()).await?;
            tracing::info!(sink = %self.name(), failed_rounds = rounds, retries_due_now = moved,
                "receiver recovered; delivering at full concurrency");
        }
        Ok(())
    }

    /// What another process may have changed: `orderwatch redeliver` lifts a
    /// pause, and its requeued rows end a failure hold at once (the operator
    /// says the receiver is fixed; without this a long outage could keep the
    /// sink waiting up to `backoff_max`).
    pub(super) async fn check_operator(
        &self,
        paused: &mut bool,
        breaker: &mut Breaker,
    ) -> Result<(), StoreError> {
        let was_paused = *paused;
        *paused = self.ctx.store.pause_of(self.name()).await?.is_some();
        if was_paused && !*paused {
            breaker.close(Instant::now());
            tracing::info!(sink = %self.name(), "sink resumed by `orderwatch redeliver`");
        } else if !*paused && breaker.failing() {
            let since = breaker.failing_since.unwrap_or(0);
            if self.ctx.store.requeued_since(self.name(), since).await? {
                breaker.close(Instant::now());
                tracing::info!(sink = %self.name(), "deliveries queued again by `orderwatch redeliver`; ending the failure hold");
            }
        }
        Ok(())
    }
}
