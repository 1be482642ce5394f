//! What a running daemon shows and serves: `/metrics` and `/healthz`,
//! `POST /wake`, and `STATUS=` after each cycle.

use std::sync::Arc;

use anyhow::Context;

use super::generation::Generation;
use super::{Daemon, RunError};
use crate::poller::LastCycle;
use crate::service;

impl Daemon {
    pub(super) async fn serve_metrics(&self) -> Result<(), RunError> {
        let Some(addr) = self.metrics_addr else {
            return Ok(());
        };
        let listener = service::bind_metrics(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))
            .map_err(RunError::Runtime)?;
        let shown = service::Shown {
            metrics: Arc::clone(&self.metrics),
            store: Arc::clone(&self.store),
            sinks: self.sink_names.clone(),
            role: self.role.clone(),
            node: self.node.clone(),
        };
        tokio::spawn(service::serve_metrics(listener, shown, self.root.clone()));
        tracing::info!(%addr, "serving /metrics and /healthz");
        Ok(())
    }

    /// Serves `POST /wake` if `[wake] listen` is set. Not for `run --once`,
    /// which polls once anyway.
    pub(super) async fn serve_wake(&self) -> Result<(), RunError> {
        let Some(addr) = self.wake_addr else {
            return Ok(());
        };
        let listener = crate::wake::bind(addr)
            .await
            .with_context(|| format!("wake.listen: cannot listen on {addr}"))
            .map_err(RunError::Runtime)?;
        tokio::spawn(crate::wake::serve(
            listener,
            Arc::clone(&self.poll_wake),
            self.wake_auth.clone(),
            Arc::clone(&self.metrics),
            self.root.clone(),
        ));
        tracing::info!(%addr, "serving POST /wake");
        Ok(())
    }

    /// `STATUS=` after a cycle: the schedule, how far behind the cursor is,
    /// and what waits for delivery.
    pub(super) async fn show_status(&self, generation: &Generation, last: Option<LastCycle>) {
        let line = match last {
            Some(LastCycle::Ok { report, .. }) => {
                let pending = self
                    .store
                    .sink_stats(&generation.routes)
                    .await
                    .map(|s| s.iter().map(|x| x.pending).sum::<u64>())
                    .unwrap_or(0);
                let lag = report
                    .cursor
                    .map(|c| (chrono::Utc::now() - c).num_seconds().max(0))
                    .unwrap_or(0);
                format!(
                    "polling every {}, cursor lag {lag}s, {pending} pending deliveries",
                    humantime::format_duration(generation.config.poll.interval)
                )
            }
            Some(LastCycle::Failed { code, .. }) => format!("last poll failed: {code}"),
            None => return,
        };
        service::status(&self.role.get().leading_status(&line));
    }
}
