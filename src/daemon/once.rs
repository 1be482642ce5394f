//! `run --once`: one cycle while every sink drains, then the sinks finish
//! what is pending. Recording and delivering overlap, so a huge catch-up
//! reaches the sinks while it is still being recorded; with `[enrich]`,
//! the sinks finish only after the enrichment stage released everything
//! the cycle held.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::generation::{Loops, Prepared};
use super::{Control, Daemon, RunError};
use crate::sink::{Mode, Wake, Watched};
use crate::store::SinkRoute;

impl Daemon {
    pub(super) async fn run_once(&self, p: Prepared, control: &Control) -> Result<(), RunError> {
        let token = CancellationToken::new();
        let recorded = CancellationToken::new();
        let routes = p.routes();
        // Deliveries that go dead during this run fail it (exit 1), so cron
        // and scripts learn that something was given up.
        let dead_before = self.dead_by_sink(&routes).await?;
        let mut loops = self.start_loops(
            p.sinks.clone(),
            &p.config.digicert.base_url,
            &token,
            Mode::Drain,
            recorded.clone(),
        );
        let cycle_done = CancellationToken::new();
        let wake = self.start_once_enricher(&p, &mut loops, &token, &cycle_done, &recorded);
        let poller = self.poller(&p, wake);
        let cycle = tokio::select! {
            r = poller.cycle() => Some(r),
            _ = control.next() => None,
        };
        // The sinks may finish once the enrichment stage has released what
        // the cycle held (it then cancels `recorded`).
        cycle_done.cancel();
        loops.wake.all();
        let cycle = match cycle {
            None => {
                token.cancel();
                while loops.tasks.join_next().await.is_some() {}
                return Ok(());
            }
            Some(Ok(report)) => {
                tracing::info!(
                    windows = report.windows,
                    requests = report.requests,
                    orders = report.orders_seen,
                    new = report.new_transitions,
                    "poll cycle done; delivering what is pending"
                );
                Ok(())
            }
            Some(Err(e)) => {
                tracing::error!(code = %e.code(), error = %e, "poll cycle failed; delivering what is pending anyway");
                Err(e)
            }
        };
        self.drain(&mut loops, &token, control, &routes).await?;
        cycle.map_err(|e| RunError::Runtime(e.into()))?;
        self.no_new_dead(&routes, &dead_before).await
    }

    /// Lets the sinks finish what is pending, until `--drain-timeout` or a
    /// second stop request; fails when a loop failed, or when the timeout
    /// left deliveries pending.
    async fn drain(
        &self,
        loops: &mut Loops,
        token: &CancellationToken,
        control: &Control,
        routes: &[SinkRoute],
    ) -> Result<(), RunError> {
        let deadline = self
            .opts
            .drain_timeout
            .map(|d| tokio::time::Instant::now() + d);
        let mut timed_out = false;
        loop {
            tokio::select! {
                done = loops.tasks.join_next() => match done {
                    None => break,
                    Some(Ok(Err(e))) => {
                        token.cancel();
                        return Err(RunError::Runtime(anyhow::Error::new(e).context("a delivery loop failed")));
                    }
                    Some(_) => {}
                },
                _ = control.next(), if !token.is_cancelled() => token.cancel(),
                _ = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                    timed_out = true;
                    token.cancel();
                }
            }
        }
        if timed_out {
            let stats = self
                .store
                .sink_stats(routes)
                .await
                .map_err(|e| RunError::Runtime(e.into()))?;
            let pending: u64 = stats.iter().map(|s| s.pending).sum();
            if pending > 0 {
                return Err(RunError::Runtime(anyhow::anyhow!(
                    "--drain-timeout elapsed with {pending} deliveries still pending; they go out on the next run"
                )));
            }
        }
        Ok(())
    }

    /// The enrichment stage for `run --once`, among `loops`: it looks up
    /// what the cycle holds until the cycle is done and nothing is held,
    /// then lets the sinks finish (`recorded`). With `[enrich]` off it
    /// releases what an earlier configuration held instead. Returns the
    /// wake-ups for the poller.
    fn start_once_enricher(
        &self,
        p: &Prepared,
        loops: &mut Loops,
        stop: &CancellationToken,
        cycle_done: &CancellationToken,
        recorded: &CancellationToken,
    ) -> Wake {
        let held = Arc::new(Notify::new());
        let (sinks, cycle_done, recorded) =
            (loops.wake.clone(), cycle_done.clone(), recorded.clone());
        match self.enricher(p, sinks.clone(), Arc::clone(&held), Watched::default()) {
            Some(enricher) => {
                let stop = stop.clone();
                loops.tasks.spawn(async move {
                    let drained = enricher.drain(cycle_done, stop).await;
                    recorded.cancel();
                    sinks.all();
                    drained
                });
            }
            None => {
                let store = Arc::clone(&self.store);
                loops.tasks.spawn(async move {
                    crate::enrich::release_held(store, sinks.clone()).await?;
                    cycle_done.cancelled().await;
                    recorded.cancel();
                    sinks.all();
                    Ok(())
                });
            }
        }
        loops.wake.with(held)
    }

    async fn dead_by_sink(&self, routes: &[SinkRoute]) -> Result<Vec<(String, u64)>, RunError> {
        let stats = self
            .store
            .sink_stats(routes)
            .await
            .map_err(|e| RunError::Runtime(e.into()))?;
        Ok(stats.into_iter().map(|s| (s.sink, s.dead)).collect())
    }

    /// Fails if a sink has more dead deliveries than `before`.
    async fn no_new_dead(
        &self,
        routes: &[SinkRoute],
        before: &[(String, u64)],
    ) -> Result<(), RunError> {
        let after = self.dead_by_sink(routes).await?;
        let grew: Vec<String> = after
            .iter()
            .filter_map(|(sink, dead)| {
                let was = before
                    .iter()
                    .find(|(s, _)| s == sink)
                    .map_or(0, |(_, d)| *d);
                (*dead > was).then(|| format!("{} for sink {sink}", dead - was))
            })
            .collect();
        if grew.is_empty() {
            return Ok(());
        }
        Err(RunError::Runtime(anyhow::anyhow!(
            "deliveries went dead during this run ({}); see `orderwatch deliveries --state dead`, resend with `orderwatch redeliver --sink NAME --dead`",
            grew.join(", ")
        )))
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
