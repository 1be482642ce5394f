//! A node's life on its store: stand by until it leads, lead until its
//! lease is lost, stand by again, until it is asked to stop.
//!
//! Every node connects and waits in [`Leadership::acquire`] as a hot
//! standby: its config is loaded and its sinks built, so taking over is
//! starting a generation, nothing more. A *term* is one lease: the
//! generation runs with the lease's store, whose writes fail with
//! [`crate::store::StoreError::Fenced`] once another node has taken over.
//!
//! When the lease is lost (its `lost()` token: the lease connection
//! dropped, renewal failed, another node took over) or any write of the
//! generation is fenced, the generation is abandoned at once, not stopped
//! gracefully: in-flight deliveries are dropped (they stay pending and the
//! new leader sends them) and the node stands by again. It cannot commit
//! anything after the takeover, because the store refuses it; the log says
//! so. A shutdown stops the generation gracefully and then drops the lease,
//! which hands leadership over at once.
//!
//! SQLite's lease is its lock file, taken before the daemon starts and never
//! lost ([`Role::Sole`]): a single term that lasts as long as the process.

use std::sync::Arc;
use std::time::Duration;

use super::generation::{Generation, Prepared};
use super::watchdog::Watchdog;
use super::{Control, Daemon, Request, Role, RunError, retention};
use crate::service;
use crate::store::{Leadership, Lease};
use crate::transition::now_ms;

/// How long a leader's status line may take to read from the store.
const STATUS_READ: Duration = Duration::from_secs(2);

/// How often a standby looks at who leads, for `STATUS=` and `/healthz`
/// (and feeds the watchdog: a standby is progressing while it can look).
const LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long one look may take before the store counts as unreachable.
const LOOK_TIMEOUT: Duration = Duration::from_secs(1);

/// How a term ended.
enum TermEnd {
    /// Asked to stop; deliveries had their grace period.
    Stopped,
    /// Something broke that standing by cannot fix: the process stops.
    Failed(anyhow::Error),
    /// Leadership is gone (why): stand by again.
    Lost(String),
}

impl Daemon {
    /// Leads or stands by until `control` asks to stop or a failure stops
    /// the process. `lease` is held already when the store allows no
    /// standby (SQLite).
    pub(super) async fn serve(
        &self,
        mut prepared: Prepared,
        leadership: Arc<dyn Leadership>,
        mut lease: Option<Lease>,
        control: &Control,
    ) -> Result<(), RunError> {
        let watchdog = Watchdog::from_env();
        loop {
            let held = match lease.take() {
                Some(held) => held,
                None => {
                    let waited = self
                        .stand_by(leadership.as_ref(), &mut prepared, control, &watchdog)
                        .await;
                    match waited {
                        Ok(Some(held)) => held,
                        Ok(None) => return self.stopped(None),
                        Err(e) => return self.stopped(Some(e)),
                    }
                }
            };
            match self.lead(held, &mut prepared, control, &watchdog).await {
                TermEnd::Stopped => return self.stopped(None),
                TermEnd::Failed(e) => return self.stopped(Some(e)),
                TermEnd::Lost(_) => {}
            }
        }
    }

    fn stopped(&self, failure: Option<anyhow::Error>) -> Result<(), RunError> {
        self.root.cancel();
        match failure {
            Some(e) => Err(RunError::Runtime(e)),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }

    /// A hot standby: waits for the lease while answering `control`,
    /// showing who leads and feeding the watchdog. `None`: asked to stop.
    async fn stand_by(
        &self,
        leadership: &dyn Leadership,
        prepared: &mut Prepared,
        control: &Control,
        watchdog: &Watchdog,
    ) -> Result<Option<Lease>, anyhow::Error> {
        self.metrics.set_leading(false, now_ms());
        self.role.set(Role::Joining);
        let acquire = leadership.acquire();
        tokio::pin!(acquire);
        let mut look = tokio::time::interval(LOOK_EVERY);
        let mut tick = ticker(watchdog);
        let mut shown = String::new();
        loop {
            tokio::select! {
                lease = &mut acquire => {
                    return lease
                        .map(Some)
                        .map_err(|e| anyhow::Error::new(e).context("cannot wait for leadership"));
                }
                request = control.next() => match request {
                    Request::Shutdown => {
                        tracing::info!("shutting down: this node was a standby");
                        service::stopping();
                        return Ok(None);
                    }
                    Request::Reload => {
                        service::reloading();
                        let status = self.reload_standby(prepared);
                        self.sink_names.set(prepared.routes());
                        service::ready(&status);
                        shown.clear();
                    }
                },
                _ = look.tick() => {
                    self.metrics.beat();
                    self.look(leadership, &mut shown).await;
                }
                _ = tick.tick(), if watchdog.interval.is_some() => {
                    let d = &prepared.config.digicert;
                    watchdog.tick(&self.metrics, d.timeout, d.max_requests_per_minute);
                }
            }
        }
    }

    /// One look at who leads: the role for `/healthz`, and `STATUS=` when
    /// its line changed.
    async fn look(&self, leadership: &dyn Leadership, shown: &mut String) {
        let previous = match self.role.get() {
            Role::Standby { leader, .. } => leader,
            _ => None,
        };
        let role = match tokio::time::timeout(LOOK_TIMEOUT, leadership.leader()).await {
            Ok(Ok(leader)) => Role::Standby {
                leader,
                trouble: None,
            },
            Ok(Err(e)) => Role::Standby {
                leader: previous,
                trouble: Some(e.to_string()),
            },
            Err(_) => Role::Standby {
                leader: previous,
                trouble: Some(format!(
                    "the store did not answer within {}",
                    humantime::format_duration(LOOK_TIMEOUT)
                )),
            },
        };
        let line = role.waiting_status();
        self.role.set(role);
        if line != *shown {
            service::status(&line);
            *shown = line;
        }
    }

    /// One term: runs a generation with the lease's store until the lease
    /// is lost, a write is fenced, the process is asked to stop or fails.
    async fn lead(
        &self,
        lease: Lease,
        prepared: &mut Prepared,
        control: &Control,
        watchdog: &Watchdog,
    ) -> TermEnd {
        let term = lease.term();
        if self.role.get() != Role::Sole {
            self.role.set(Role::Leader { term });
            tracing::info!(term, node = %self.node, "leading: polling and delivering");
            service::status(&format!("leader (term {term}), first poll under way"));
        }
        self.metrics.set_leading(true, now_ms());
        let leading = self.leading(&lease);
        let retention = self.root.child_token();
        tokio::spawn(retention::run(
            Arc::clone(lease.store()),
            prepared.config.keep_delivered,
            self.opts.clock,
            retention.clone(),
        ));
        let generation = leading.start(prepared.clone());
        let (generation, end) = leading
            .supervise(generation, &lease, prepared, control, watchdog)
            .await;
        retention.cancel();
        match &end {
            TermEnd::Stopped => {
                tracing::info!("shutting down: polling stopped, finishing in-flight deliveries");
                service::stopping();
                generation.stop().await;
            }
            TermEnd::Failed(e) => {
                tracing::error!(error = %format!("{e:#}"), "stopping after an internal failure");
                service::stopping();
                generation.stop().await;
            }
            TermEnd::Lost(why) => {
                generation.abandon().await;
                self.metrics.set_leading(false, now_ms());
                tracing::warn!(term, why = %why,
                    "fenced: this node no longer leads; it stopped polling and delivering at once and commits nothing after the takeover (its writes are fenced by term {term}); standing by");
            }
        }
        // Dropping the lease (after a graceful stop) hands over at once.
        drop(lease);
        end
    }

    /// The main loop of a term: requests from outside, the watchdog, status
    /// lines, the lease, and a generation's tasks ending.
    async fn supervise(
        &self,
        mut generation: Generation,
        lease: &Lease,
        prepared: &mut Prepared,
        control: &Control,
        watchdog: &Watchdog,
    ) -> (Generation, TermEnd) {
        let lost = lease.lost();
        let mut tick = ticker(watchdog);
        let end = loop {
            tokio::select! {
                _ = lost.cancelled() => {
                    break TermEnd::Lost(lease.why_lost().unwrap_or_default());
                }
                request = control.next() => match request {
                    Request::Shutdown => break TermEnd::Stopped,
                    Request::Reload => {
                        service::reloading();
                        let status;
                        (generation, status) = self.reload(generation, prepared).await;
                        self.sink_names.set(generation.routes.clone());
                        service::ready(&status);
                    }
                },
                _ = tick.tick(), if watchdog.interval.is_some() => {
                    let d = &generation.config.digicert;
                    watchdog.tick(&self.metrics, d.timeout, d.max_requests_per_minute);
                }
                Ok(()) = generation.last.changed() => {
                    let last = generation.last.borrow_and_update().clone();
                    // The status line reads the store; on a connection gone
                    // silent that read could wait for ever, and with it this
                    // loop, which must notice a lost lease, a stop or the
                    // watchdog. A line not shown in time is skipped.
                    let _ = tokio::time::timeout(STATUS_READ, self.show_status(&generation, last))
                        .await;
                }
                joined = &mut generation.poll => {
                    break match joined {
                        Ok(Err(e)) if e.ends_leadership() => TermEnd::Lost(e.to_string()),
                        Ok(Err(e)) => TermEnd::Failed(anyhow::Error::new(e).context("polling stopped")),
                        Err(e) if e.is_panic() => TermEnd::Failed(anyhow::anyhow!("the poller panicked: {e}")),
                        _ => TermEnd::Failed(anyhow::anyhow!("the poller stopped unexpectedly")),
                    };
                }
                Some(done) = generation.loops.tasks.join_next() => match done {
                    // A loop returns on its own only at shutdown; a one-off
                    // task, or a store watch with nothing to watch, sooner.
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.ends_leadership() => break TermEnd::Lost(e.to_string()),
                    Ok(Err(e)) => break TermEnd::Failed(anyhow::Error::new(e).context("a delivery loop failed")),
                    Err(e) => break TermEnd::Failed(anyhow::anyhow!("a delivery loop panicked: {e}")),
                },
            }
        };
        (generation, end)
    }
}

/// The watchdog's ticks (hourly and ignored without a watchdog).
fn ticker(watchdog: &Watchdog) -> tokio::time::Interval {
    tokio::time::interval(watchdog.interval.unwrap_or(Duration::from_secs(3600)))
}
