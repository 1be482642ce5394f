//! The daemon: wires config, change source, store, poller and sinks
//! together, and owns the process lifecycle: readiness, the watchdog,
//! reload, shutdown and `run --once`.
//!
//! It takes its [`Control`] from outside (`orderwatch run` turns signals
//! into it), so it runs in-process in tests, on tokio's paused clock.
//!
//! A *generation* is one configuration's running poller and sinks. A reload
//! with a valid config stops the current generation gracefully and starts
//! the next on the same store; with an invalid one it keeps running, says
//! why, and only reopens files.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

mod control;
mod generation;
mod once;
mod retention;
#[cfg(test)]
mod tests;
mod watchdog;

pub use control::{Control, Request};
pub use watchdog::stall_limit;

use crate::certcentral::{ChangeSource, Client};
use crate::config::{Config, Secret, StoreConfig};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::poller::LastCycle;
use crate::service::{self, SinkNames};
use crate::store::{self, SharedStore, WriterLock};
use crate::transition::Clock;
use crate::wake::{PollWake, WakeAuth};
use generation::Generation;
use watchdog::Watchdog;

/// How long in-flight deliveries may finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Builds a generation's change source from its config. `run` uses the
/// CertCentral client ([`certcentral_source`]); in-process tests pass a
/// scripted one.
pub type SourceFactory = Arc<
    dyn Fn(&Config, Secret, Arc<Pacer>, Arc<Metrics>) -> anyhow::Result<Arc<dyn ChangeSource>>
        + Send
        + Sync,
>;

/// The CertCentral client as the change source.
pub fn certcentral_source() -> SourceFactory {
    Arc::new(|config, key, pacer, metrics| {
        let client = Client::new(&config.digicert, key, pacer)?.with_metrics(metrics);
        Ok(Arc::new(client))
    })
}

/// How `run` behaves.
#[derive(Clone)]
pub struct RunOptions {
    /// One cycle, drain every sink, exit.
    pub once: bool,
    /// With `once`: stop draining after this long (rows stay pending).
    pub drain_timeout: Option<Duration>,
    /// Re-read on reload; `None` (the demo) only reopens files.
    pub config_path: Option<PathBuf>,
    /// Where changes come from.
    pub source: SourceFactory,
    /// The delivery ledger's clock.
    pub clock: Clock,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            once: false,
            drain_timeout: None,
            config_path: None,
            source: certcentral_source(),
            clock: Clock::System,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("once", &self.once)
            .field("drain_timeout", &self.drain_timeout)
            .field("config_path", &self.config_path)
            .finish_non_exhaustive()
    }
}

/// Why `run` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration or secrets: exit 2.
    #[error(transparent)]
    Config(anyhow::Error),
    /// Anything else: exit 1.
    #[error(transparent)]
    Runtime(anyhow::Error),
}

/// Loads the config file and its API key.
pub fn load(path: &Path) -> Result<(Config, Secret), RunError> {
    let config = Config::load(path).map_err(|e| RunError::Config(e.into()))?;
    let key = config.digicert.api_key.load().map_err(|e| {
        RunError::Config(anyhow::anyhow!(
            "{}: cannot read the DigiCert API key from {}: {e}",
            config.source.display(),
            config.digicert.api_key
        ))
    })?;
    Ok((config, key))
}

/// What outlives generations: the store and its lock, metrics, the request
/// budget, and what the process was started with.
struct Daemon {
    opts: RunOptions,
    store: SharedStore,
    metrics: Arc<Metrics>,
    pacer: Arc<Pacer>,
    /// Cancelled when the process stops: ends the metrics endpoint.
    root: CancellationToken,
    /// Settings that take effect only at a restart (a reload warns).
    store_config: StoreConfig,
    metrics_addr: Option<SocketAddr>,
    /// The running sinks, shared with the metrics endpoint.
    sink_names: SinkNames,
    /// Rung by `POST /wake`, answered by every generation's poller.
    poll_wake: Arc<PollWake>,
    /// Who may ring it; each generation sets it from its config.
    wake_auth: WakeAuth,
    wake_addr: Option<SocketAddr>,
}

/// Runs the daemon (or one cycle with `once`) with a loaded config and key
/// until `control` asks it to stop.
pub async fn run(
    config: Config,
    api_key: Secret,
    opts: RunOptions,
    control: Control,
) -> Result<(), RunError> {
    let (daemon, prepared, _lock) = Daemon::open(config, api_key, opts).await?;
    if daemon.opts.once {
        let result = daemon.run_once(prepared, &control).await;
        daemon.root.cancel();
        return result;
    }
    tracing::info!(
        store = %daemon.store.location(),
        api = %prepared.config.digicert.base_url,
        sinks = prepared.config.sinks.len(),
        interval = %humantime::format_duration(prepared.config.poll.interval),
        "orderwatch started"
    );
    let keep_delivered = prepared.config.keep_delivered;
    let generation = daemon.start(prepared);
    tokio::spawn(retention::run(
        daemon.store.clone(),
        keep_delivered,
        daemon.opts.clock,
        daemon.root.clone(),
    ));
    // The store is open and the config valid: systemd may consider us up.
    service::ready("started; first poll under way");
    daemon.supervise(generation, &control).await
}

impl Daemon {
    /// Everything before the first generation: the request budget, the
    /// secrets, the store (locked) and the metrics endpoint.
    async fn open(
        config: Config,
        api_key: Secret,
        opts: RunOptions,
    ) -> Result<(Daemon, generation::Prepared, WriterLock), RunError> {
        let metrics = Arc::new(Metrics::new(config.poll.interval));
        let pacer = Arc::new(Pacer::new(config.digicert.max_requests_per_minute));
        let store_config = config.store.clone();
        let metrics_addr = config.metrics.as_ref().map(|m| m.listen);
        let wake_addr = config.wake.as_ref().map(|w| w.listen);
        // Secrets and sinks first: a bad one refuses the start before the
        // store is touched.
        let prepared = generation::prepare(&opts, &pacer, &metrics, config, api_key)?;
        let (store, lock) = store::open_writer(&store_config)
            .await
            .map_err(|e| RunError::Runtime(e.into()))?;
        let daemon = Daemon {
            store,
            metrics,
            pacer,
            root: CancellationToken::new(),
            store_config,
            metrics_addr,
            sink_names: SinkNames::new(prepared.routes()),
            poll_wake: PollWake::new(),
            wake_auth: WakeAuth::default(),
            wake_addr,
            opts,
        };
        daemon.serve_metrics().await?;
        if !daemon.opts.once {
            daemon.serve_wake().await?;
        }
        Ok((daemon, prepared, lock))
    }

    async fn serve_metrics(&self) -> Result<(), RunError> {
        let Some(addr) = self.metrics_addr else {
            return Ok(());
        };
        let listener = service::bind_metrics(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))
            .map_err(RunError::Runtime)?;
        tokio::spawn(service::serve_metrics(
            listener,
            Arc::clone(&self.metrics),
            Arc::clone(&self.store),
            self.sink_names.clone(),
            self.root.clone(),
        ));
        tracing::info!(%addr, "serving /metrics and /healthz");
        Ok(())
    }

    /// Serves `POST /wake` if `[wake] listen` is set. Not for `run --once`,
    /// which polls once anyway.
    async fn serve_wake(&self) -> Result<(), RunError> {
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

    /// The main loop: requests from outside, the watchdog, status lines,
    /// and a generation's tasks dying (which stops the daemon).
    async fn supervise(
        &self,
        mut generation: Generation,
        control: &Control,
    ) -> Result<(), RunError> {
        let watchdog = Watchdog::from_env();
        let mut tick =
            tokio::time::interval(watchdog.interval.unwrap_or(Duration::from_secs(3600)));
        let failure = loop {
            tokio::select! {
                request = control.next() => match request {
                    control::Request::Shutdown => break None,
                    control::Request::Reload => {
                        service::reloading();
                        let status;
                        (generation, status) = self.reload(generation).await;
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
                    self.show_status(&generation, last).await;
                }
                joined = &mut generation.poll => {
                    break Some(match joined {
                        Ok(Err(e)) => anyhow::Error::new(e).context("polling stopped"),
                        Err(e) if e.is_panic() => anyhow::anyhow!("the poller panicked: {e}"),
                        _ => anyhow::anyhow!("the poller stopped unexpectedly"),
                    });
                }
                Some(done) = generation.loops.tasks.join_next() => match done {
                    // A loop returns on its own only at shutdown.
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => break Some(anyhow::Error::new(e).context("a delivery loop failed")),
                    Err(e) => break Some(anyhow::anyhow!("a delivery loop panicked: {e}")),
                },
            }
        };
        match &failure {
            Some(e) => {
                tracing::error!(error = %format!("{e:#}"), "stopping after an internal failure")
            }
            None => {
                tracing::info!("shutting down: polling stopped, finishing in-flight deliveries")
            }
        }
        service::stopping();
        generation.stop().await;
        self.root.cancel();
        match failure {
            Some(e) => Err(RunError::Runtime(e)),
            None => {
                tracing::info!("stopped");
                Ok(())
            }
        }
    }

    /// `STATUS=` after a cycle: the schedule, how far behind the cursor is,
    /// and what waits for delivery.
    async fn show_status(&self, generation: &Generation, last: Option<LastCycle>) {
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
        service::status(&line);
    }

    /// Reopens files and, with a config file to read, replaces the running
    /// generation by one of the new config if it is valid. Returns the
    /// generation that runs now and a status line.
    async fn reload(&self, current: Generation) -> (Generation, String) {
        current.reopen();
        let Some(path) = &self.opts.config_path else {
            tracing::info!("SIGHUP: reopened files");
            return (current, "files reopened".to_string());
        };
        let next = load(path).and_then(|(config, key)| {
            if config.store != self.store_config {
                tracing::warn!(old = %self.store_config.location(), new = %config.store.location(), "{} changed; keeping the open store until a restart", config.store.key());
            }
            if config.metrics.as_ref().map(|m| m.listen) != self.metrics_addr {
                tracing::warn!("metrics.listen changed; it takes effect at the next restart");
            }
            if config.wake.as_ref().map(|w| w.listen) != self.wake_addr {
                tracing::warn!("wake.listen changed; it takes effect at the next restart");
            }
            self.prepare(config, key)
        });
        match next {
            Ok(prepared) => {
                current.stop().await;
                tracing::info!(config = %path.display(), sinks = prepared.sinks.len(), "SIGHUP: configuration reloaded");
                let status = format!("configuration reloaded from {}", path.display());
                (self.start(prepared), status)
            }
            Err(e) => {
                let why = one_line(&e.to_string());
                tracing::error!(error = %why, "SIGHUP: the new configuration is not valid; keeping the running one (files reopened)");
                let status = format!("reload refused, running the previous configuration: {why}");
                (current, status)
            }
        }
    }
}

/// A multi-line error (TOML parse errors quote the offending line and point
/// at it) as one line, for a log line that journald and log shippers keep
/// together and for STATUS=, which is one line.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| {
            !l.trim_matches(|c: char| c == '|' || c == '^' || c.is_whitespace())
                .is_empty()
        })
        .collect::<Vec<_>>()
        .join("; ")
}
