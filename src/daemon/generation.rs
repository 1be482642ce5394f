//! A *generation*: one configuration's running poller and delivery loops.
//! Everything secret or fallible is read up front ([`Daemon::prepare`]), so
//! a bad secret refuses the start (or the reload) instead of failing later.

use std::sync::Arc;

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::{Daemon, RunError, RunOptions, SHUTDOWN_GRACE};
use crate::certcentral::ChangeSource;
use crate::config::{Config, Secret, SinkConfig};
use crate::enrich::Enricher;
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::poller::{LastCycle, Poller, WakeSchedule};
use crate::sink::delivery::watch as store_watch;
use crate::sink::{self, LoopContext, Mode, Sink, SinkHandle, Wake, Watched};
use crate::store::{SinkRoute, StoreError};

/// A configuration with its change source and built sinks, ready to start
/// (again at each term: a node keeps it while it stands by).
#[derive(Clone)]
pub(super) struct Prepared {
    pub config: Config,
    pub source: Arc<dyn ChangeSource>,
    pub sinks: Vec<(SinkConfig, Arc<dyn Sink>)>,
    /// `[wake]`'s key, read and checked.
    pub wake_key: Option<Secret>,
}

impl Prepared {
    pub fn routes(&self) -> Vec<SinkRoute> {
        self.sinks.iter().map(|(c, _)| sink::route(c)).collect()
    }
}

/// Delivery loops of one generation: their tasks, handles and wake-ups.
pub(super) struct Loops {
    pub tasks: JoinSet<Result<(), StoreError>>,
    pub handles: Vec<SinkHandle>,
    pub wake: Wake,
    /// Whether the store watch wakes the loops (and the enrichment stage).
    pub watched: Watched,
}

pub(super) struct Generation {
    token: CancellationToken,
    pub loops: Loops,
    pub routes: Vec<SinkRoute>,
    /// Returns only when cancelled, or with a fatal store error; finishing
    /// otherwise means it panicked.
    pub poll: tokio::task::JoinHandle<Result<(), StoreError>>,
    /// How the last cycle ended, for `STATUS=`.
    pub last: watch::Receiver<Option<LastCycle>>,
    /// The running configuration (its timeouts set the watchdog's limit).
    pub config: Config,
}

/// Reads the secrets and builds the source and the sinks of `config`.
pub(super) fn prepare(
    opts: &RunOptions,
    pacer: &Arc<Pacer>,
    metrics: &Arc<Metrics>,
    config: Config,
    api_key: Secret,
) -> Result<Prepared, RunError> {
    let source = (opts.source)(&config, api_key, Arc::clone(pacer), Arc::clone(metrics))
        .map_err(RunError::Config)?;
    if let Some(conflict) = sink::file_conflicts(&config).into_iter().next() {
        return Err(RunError::Config(anyhow::anyhow!(
            "{}: {conflict}",
            config.source.display()
        )));
    }
    let mut sinks = Vec::new();
    for (i, s) in config.sinks.iter().enumerate() {
        let built = sink::build(s, &config.digicert.base_url).map_err(|e| {
            let label = format!("sinks[{i}] ({:?})", s.name);
            RunError::Config(anyhow::anyhow!(
                "{}: {}",
                config.source.display(),
                e.render(&label)
            ))
        })?;
        sinks.push((s.clone(), built));
    }
    let wake_key = crate::wake::load_key(&config).map_err(RunError::Config)?;
    Ok(Prepared {
        config,
        source,
        sinks,
        wake_key,
    })
}

impl Daemon {
    pub(super) fn prepare(&self, config: Config, api_key: Secret) -> Result<Prepared, RunError> {
        prepare(&self.opts, &self.pacer, &self.metrics, config, api_key)
    }

    /// Starts a delivery loop for each sink. `Mode::Drain` loops (`run
    /// --once`) may finish once `recorded` is cancelled; a daemon's are
    /// `watched` once [`Daemon::start`] starts the store watch.
    pub(super) fn start_loops(
        &self,
        sinks: Vec<(SinkConfig, Arc<dyn Sink>)>,
        source: &str,
        shutdown: &CancellationToken,
        mode: Mode,
        recorded: CancellationToken,
    ) -> Loops {
        let source: Arc<str> = Arc::from(source);
        let mut tasks = JoinSet::new();
        let mut handles = Vec::with_capacity(sinks.len());
        let mut wakes = Vec::with_capacity(sinks.len());
        let watched = Watched::default();
        tasks.spawn(register_alert_sinks(Arc::clone(&self.store), &sinks));
        for (cfg, built) in sinks {
            let wake = Arc::new(Notify::new());
            let ctx = LoopContext {
                store: Arc::clone(&self.store),
                metrics: Arc::clone(&self.metrics),
                wake: Arc::clone(&wake),
                recorded: recorded.clone(),
                shutdown: shutdown.clone(),
                grace: SHUTDOWN_GRACE,
                clock: self.opts.clock,
                source: Arc::clone(&source),
                watched: watched.clone(),
            };
            handles.push(sink::start(&cfg, built, ctx, mode, &mut tasks));
            wakes.push(wake);
        }
        Loops {
            tasks,
            handles,
            wake: Wake::new(wakes),
            watched,
        }
    }

    /// The poller of a prepared generation.
    pub(super) fn poller(&self, p: &Prepared, wake: Wake) -> Poller {
        Poller {
            source: Arc::clone(&p.source),
            store: Arc::clone(&self.store),
            poll: p.config.poll,
            tz: p.config.digicert.timezone,
            // Operational sinks get alerts, never transitions.
            routes: p
                .routes()
                .into_iter()
                .filter(|r| !r.operational)
                .collect::<Vec<_>>()
                .into(),
            poll_failures: p.config.alerts.poll_failures,
            dedupe: p.config.events.dedupe,
            hold: crate::enrich::hold(p.config.enrich.as_ref()),
            metrics: Arc::clone(&self.metrics),
            wake,
            wakeups: p.config.wake.as_ref().map(|w| WakeSchedule {
                bell: Arc::clone(&self.poll_wake),
                min_gap: w.min_gap,
            }),
        }
    }

    /// The enrichment stage of a prepared generation (`None` when `[enrich]`
    /// is off), waking `sinks` when it releases transitions and woken by
    /// `held` (and, while `watched`, by the store watch).
    pub(super) fn enricher(
        &self,
        p: &Prepared,
        sinks: Wake,
        held: Arc<Notify>,
        watched: Watched,
    ) -> Option<Enricher> {
        let config = p.config.enrich.clone()?;
        let per_minute = config.lookups_per_minute(p.config.digicert.max_requests_per_minute);
        Some(Enricher {
            source: Arc::clone(&p.source),
            store: Arc::clone(&self.store),
            config,
            budget: Arc::new(Pacer::new(per_minute)),
            per_minute,
            metrics: Arc::clone(&self.metrics),
            sinks,
            held,
            clock: self.opts.clock,
            watched,
        })
    }

    /// Starts the enrichment stage among `loops` (or, with `[enrich]` off,
    /// a task releasing what an earlier configuration held) and returns the
    /// wake-ups the poller pokes: the delivery loops and the stage.
    pub(super) fn start_enricher(
        &self,
        p: &Prepared,
        loops: &mut Loops,
        stop: &CancellationToken,
    ) -> Wake {
        let held = Arc::new(Notify::new());
        let watched = loops.watched.clone();
        match self.enricher(p, loops.wake.clone(), Arc::clone(&held), watched) {
            Some(e) => loops.tasks.spawn(e.run_until_stopped(stop.clone())),
            None => {
                let (store, sinks) = (Arc::clone(&self.store), loops.wake.clone());
                loops.tasks.spawn(async move {
                    // Not worth stopping the daemon over: the held events
                    // stay held, and the next start tries again.
                    if let Err(e) = crate::enrich::release_held(store, sinks).await {
                        tracing::error!(error = %e, "cannot release events that waited for order details");
                    }
                    Ok(())
                })
            }
        };
        loops.wake.with(held)
    }

    /// Who may ring `POST /wake`, from a prepared configuration: set when a
    /// generation starts, and already while a node stands by (a standby's
    /// endpoint is up too, and must check the same key).
    pub(super) fn guard_wakes(&self, p: &Prepared) {
        self.wake_auth
            .set(crate::wake::required(&p.config, p.wake_key.as_ref()));
    }

    /// Starts a generation: its delivery loops, then its poll schedule.
    pub(super) fn start(&self, p: Prepared) -> Generation {
        let token = self.root.child_token();
        let routes = p.routes();
        // Daemon loops never wait for a cycle to end before finishing.
        let recorded = CancellationToken::new();
        recorded.cancel();
        let sinks = p.sinks.clone();
        let source = p.config.digicert.base_url.clone();
        let mut loops = self.start_loops(sinks, &source, &token, Mode::Daemon, recorded);
        let wake = self.start_enricher(&p, &mut loops, &token);
        let watch = store_watch::run(
            Arc::clone(&self.store),
            wake.clone(),
            loops.watched.clone(),
            token.clone(),
        );
        loops.tasks.spawn(async move {
            watch.await;
            Ok(())
        });
        self.metrics.set_interval(p.config.poll.interval);
        self.guard_wakes(&p);
        let poller = self.poller(&p, wake);
        let (tx, last) = watch::channel(None);
        let stop = token.clone();
        let poll = tokio::spawn(async move { poller.run_until_stopped(stop, tx).await });
        Generation {
            token,
            loops,
            routes,
            poll,
            last,
            config: p.config,
        }
    }
}

/// Tells the store which sinks are operational, so the alerts written
/// from now on are queued for them. Until it commits, alerts go to the
/// list the last start left (the same, unless the config changed). Only a
/// fatal error (leadership lost) is returned; another is logged.
fn register_alert_sinks(
    store: crate::store::SharedStore,
    sinks: &[(SinkConfig, Arc<dyn Sink>)],
) -> impl std::future::Future<Output = Result<(), StoreError>> + use<> {
    let names: Vec<String> = sinks
        .iter()
        .filter(|(c, _)| c.operational)
        .map(|(c, _)| c.name.clone())
        .collect();
    async move {
        match store.set_alert_sinks(&names).await {
            Err(e) if e.is_fatal() => Err(e),
            Err(e) => {
                tracing::error!(error = %e, "cannot record which sinks are operational; alerts go to the ones the last start recorded");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}

impl Generation {
    /// Stops polling, lets deliveries finish within the grace period.
    pub async fn stop(mut self) {
        self.token.cancel();
        // Already awaited by the main loop if the poller died.
        if !self.poll.is_finished() {
            let _ = (&mut self.poll).await;
        }
        while let Some(done) = self.loops.tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "a delivery loop failed while stopping"),
                Err(e) => tracing::error!(error = %e, "a delivery loop panicked while stopping"),
            }
        }
    }

    /// Stops at once, without the grace period: this node no longer leads,
    /// so it must neither poll nor deliver any more, and nothing it would
    /// still write could commit. Deliveries in flight are dropped; they
    /// stay pending, and the new leader sends them (at-least-once).
    pub async fn abandon(mut self) {
        self.token.cancel();
        if !self.poll.is_finished() {
            self.poll.abort();
            let _ = (&mut self.poll).await;
        }
        self.loops.tasks.shutdown().await;
    }

    /// Reopens the sinks' files (SIGHUP after logrotate).
    pub fn reopen(&self) {
        for s in &self.loops.handles {
            s.reopen();
        }
    }
}
