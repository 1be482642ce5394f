//! The daemon: wires config, client, store, poller and sinks together, and
//! owns the process lifecycle (readiness, watchdog, signals, reload, shutdown).
//!
//! A *generation* is one configuration's running poller and sinks. SIGHUP
//! with a valid config stops the current generation gracefully and starts the
//! next on the same store; with an invalid one it keeps running, says why,
//! and only reopens files.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::certcentral::Client;
use crate::config::{Config, Secret, SinkConfig};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::poller::Poller;
use crate::service::{self, Request, Signals, SinkNames};
use crate::sink::{self, LoopContext, Mode, SinkHandle, Wake};
use crate::store::{self, SharedStore, SinkRoute, StoreError};
use crate::transition::now_ms;

/// How long in-flight deliveries may finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Margin on top of the longest expected silence of a healthy poller.
const STALL_SLACK: Duration = Duration::from_secs(30);

/// How long the poller may show no sign of progress ([`Metrics::beat`])
/// before it counts as wedged and the systemd watchdog is no longer fed (so
/// systemd restarts it).
///
/// A healthy poller beats every few seconds: idle ticks, before every
/// request, during retry sleeps, after every commit. The longest legitimate
/// silences are one request (bounded by `[digicert] timeout`, body included)
/// and one pacing wait (a request's share of a minute). A limit of only
/// `WatchdogSec=` would restart a daemon whose operator raised the request
/// timeout above it; the limit is never shorter than the watchdog timeout.
pub fn stall_limit(
    watchdog_timeout: Duration,
    request_timeout: Duration,
    requests_per_minute: u32,
) -> Duration {
    let pacing = Duration::from_secs(60) / requests_per_minute.max(1);
    watchdog_timeout.max(request_timeout + pacing + STALL_SLACK)
}

/// How `run` behaves.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// One cycle, drain every sink, exit.
    pub once: bool,
    /// With `once`: stop draining after this long (rows stay pending).
    pub drain_timeout: Option<Duration>,
    /// Re-read on SIGHUP; `None` (the demo) only reopens files.
    pub config_path: Option<PathBuf>,
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

/// Everything secret a generation needs, read up front so a bad secret
/// refuses the start (or the reload) instead of failing later.
struct Prepared {
    config: Config,
    client: Client,
    sinks: Vec<(SinkConfig, sink::AnySink)>,
}

fn prepare(
    config: Config,
    api_key: Secret,
    pacer: Arc<Pacer>,
    metrics: &Arc<Metrics>,
) -> Result<Prepared, RunError> {
    let client = Client::new(&config.digicert, api_key, pacer)
        .map_err(|e| RunError::Config(e.into()))?
        .with_metrics(Arc::clone(metrics));
    let mut sinks = Vec::new();
    for s in &config.sinks {
        let built = sink::build(s, &config.digicert.base_url).map_err(RunError::Config)?;
        sinks.push((s.clone(), built));
    }
    Ok(Prepared {
        config,
        client,
        sinks,
    })
}

/// Loads the config file and its API key.
pub fn load(path: &std::path::Path) -> Result<(Config, Secret), RunError> {
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

struct Generation {
    token: CancellationToken,
    tasks: JoinSet<Result<(), StoreError>>,
    sinks: Vec<SinkHandle>,
    routes: Vec<SinkRoute>,
    /// Returns only when cancelled; finishing otherwise means it panicked.
    poll: tokio::task::JoinHandle<()>,
    /// See [`stall_limit`]; depends on this generation's config.
    request_timeout: Duration,
    requests_per_minute: u32,
}

impl Generation {
    fn start(
        p: Prepared,
        store: &SharedStore,
        metrics: &Arc<Metrics>,
        parent: &CancellationToken,
    ) -> Generation {
        let token = parent.child_token();
        let mut tasks = JoinSet::new();
        let sink_configs: Vec<_> = p.sinks.iter().map(|(c, _)| c.clone()).collect();
        let routes: Vec<SinkRoute> = sink_configs.iter().map(sink::route).collect();
        let (sinks, wake) = spawn_sinks(p.sinks, store, metrics, &token, None, &mut tasks);
        metrics.set_interval(p.config.poll.interval);
        let request_timeout = p.config.digicert.timeout;
        let requests_per_minute = p.config.digicert.max_requests_per_minute;
        let poller = Poller {
            client: p.client,
            store: store.clone(),
            poll: p.config.poll,
            tz: p.config.digicert.timezone,
            routes: routes.clone().into(),
            metrics: Arc::clone(metrics),
            wake,
        };
        let poll = tokio::spawn(poll_loop(poller, token.clone()));
        Generation {
            token,
            tasks,
            sinks,
            routes,
            poll,
            request_timeout,
            requests_per_minute,
        }
    }

    /// Stops polling, lets deliveries finish within the grace period.
    async fn stop(mut self) {
        self.token.cancel();
        // Already awaited by the main loop if the poller died.
        if !self.poll.is_finished() {
            let _ = self.poll.await;
        }
        while let Some(done) = self.tasks.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "a delivery loop failed while stopping"),
                Err(e) => tracing::error!(error = %e, "a delivery loop panicked while stopping"),
            }
        }
    }

    fn reopen(&self) {
        for s in &self.sinks {
            s.reopen();
        }
    }
}

/// The schedule: a cycle every `interval`, start to start, never two at once.
async fn poll_loop(poller: Poller, token: CancellationToken) {
    let mut ticker = tokio::time::interval(poller.poll.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        // Beat while idle too: a long interval is not a hang.
        loop {
            poller.metrics.beat();
            tokio::select! {
                _ = ticker.tick() => break,
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = token.cancelled() => return,
            }
        }
        let result = tokio::select! {
            r = poller.cycle() => r,
            _ = token.cancelled() => return,
        };
        match result {
            Ok(report) => {
                poller.metrics.poll_ok(now_ms());
                let pending = poller
                    .store
                    .sink_stats(&poller.routes)
                    .await
                    .map(|s| s.iter().map(|x| x.pending).sum::<u64>())
                    .unwrap_or(0);
                let lag = report
                    .cursor
                    .map(|c| (chrono::Utc::now() - c).num_seconds().max(0))
                    .unwrap_or(0);
                service::status(&format!(
                    "polling every {}, cursor lag {lag}s, {pending} pending deliveries",
                    humantime::format_duration(poller.poll.interval)
                ));
            }
            Err(e) => {
                poller.metrics.poll_failed();
                tracing::error!(code = %e.code(), error = %e, "poll cycle failed; the cursor stays, retrying at the next interval");
                service::status(&format!("last poll failed: {}", e.code()));
            }
        }
    }
}

/// Runs the daemon (or one cycle with `once`) with a loaded config and key.
pub async fn run(config: Config, api_key: Secret, opts: RunOptions) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::new(config.poll.interval));
    let pacer = Arc::new(Pacer::new(config.digicert.max_requests_per_minute));
    let prepared = prepare(config, api_key, Arc::clone(&pacer), &metrics)?;
    let store_path = prepared.config.store.path.clone();
    let (store, lock) = store::open_writer(&prepared.config.store)
        .await
        .map_err(|e| RunError::Runtime(e.into()))?;
    let root = CancellationToken::new();
    let mut signals = Signals::new()
        .context("cannot install signal handlers")
        .map_err(RunError::Runtime)?;

    let sink_names = SinkNames::new(names_of(&prepared.config));
    let metrics_addr = prepared.config.metrics.as_ref().map(|m| m.listen);
    if let Some(addr) = metrics_addr {
        let listener = service::bind_metrics(addr)
            .await
            .with_context(|| format!("metrics.listen: cannot listen on {addr}"))
            .map_err(RunError::Runtime)?;
        tokio::spawn(service::serve_metrics(
            listener,
            Arc::clone(&metrics),
            store.clone(),
            sink_names.clone(),
            root.clone(),
        ));
        tracing::info!(%addr, "serving /metrics and /healthz");
    }

    if opts.once {
        let result = run_once(prepared, &store, &metrics, &mut signals, &opts).await;
        root.cancel();
        drop(lock);
        return result;
    }

    tracing::info!(
        store = %store_path.display(),
        api = %prepared.config.digicert.base_url,
        sinks = prepared.config.sinks.len(),
        interval = %humantime::format_duration(prepared.config.poll.interval),
        "orderwatch started"
    );
    let mut generation = Generation::start(prepared, &store, &metrics, &root);
    // The store is open and the config valid: systemd may consider us up.
    service::ready("started; first poll under way");
    let watchdog = service::watchdog_interval();
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));

    let failure = loop {
        tokio::select! {
            request = signals.next() => match request {
                Request::Shutdown => break None,
                Request::Reload => {
                    service::reloading();
                    let (next, status) = reload(generation, &opts, &store_path, metrics_addr, &pacer, &store, &metrics, &root).await;
                    generation = next;
                    sink_names.set(generation.routes.clone());
                    service::ready(&status);
                }
            },
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Pinged every half timeout, so the timeout is twice that.
                let timeout = watchdog.map_or(Duration::MAX, |w| w * 2);
                let limit = stall_limit(timeout, generation.request_timeout, generation.requests_per_minute);
                let quiet = metrics.since_beat_ms(now_ms());
                if quiet < limit.as_millis() as i64 {
                    service::watchdog();
                } else {
                    tracing::error!(quiet_ms = quiet, limit_ms = limit.as_millis() as u64, "the poller made no progress; not feeding the watchdog so systemd restarts us");
                    service::status(&format!("poller stalled for {}s; waiting for the watchdog", quiet / 1000));
                }
            }
            joined = &mut generation.poll => {
                let why = match joined {
                    Err(e) if e.is_panic() => anyhow::anyhow!("the poller panicked: {e}"),
                    _ => anyhow::anyhow!("the poller stopped unexpectedly"),
                };
                break Some(why);
            }
            Some(done) = generation.tasks.join_next() => match done {
                // A loop returns on its own only at shutdown.
                Ok(Ok(())) => {}
                Ok(Err(e)) => break Some(anyhow::Error::new(e).context("a delivery loop failed")),
                Err(e) => break Some(anyhow::anyhow!("a delivery loop panicked: {e}")),
            },
        }
    };
    if let Some(e) = failure {
        tracing::error!(error = %format!("{e:#}"), "stopping after an internal failure");
        service::stopping();
        generation.stop().await;
        root.cancel();
        drop(lock);
        return Err(RunError::Runtime(e));
    }
    tracing::info!("shutting down: polling stopped, finishing in-flight deliveries");
    service::stopping();
    generation.stop().await;
    root.cancel();
    drop(lock);
    tracing::info!("stopped");
    Ok(())
}

fn names_of(config: &Config) -> Vec<SinkRoute> {
    config.sinks.iter().map(sink::route).collect()
}

#[allow(clippy::too_many_arguments)]
async fn reload(
    current: Generation,
    opts: &RunOptions,
    store_path: &std::path::Path,
    metrics_addr: Option<std::net::SocketAddr>,
    pacer: &Arc<Pacer>,
    store: &SharedStore,
    metrics: &Arc<Metrics>,
    root: &CancellationToken,
) -> (Generation, String) {
    current.reopen();
    let Some(path) = &opts.config_path else {
        tracing::info!("SIGHUP: reopened files");
        return (current, "files reopened".to_string());
    };
    let next = load(path).and_then(|(config, key)| {
        if config.store.path != store_path {
            tracing::warn!(old = %store_path.display(), new = %config.store.path.display(), "store.path changed; keeping the open store until a restart");
        }
        if config.metrics.as_ref().map(|m| m.listen) != metrics_addr {
            tracing::warn!("metrics.listen changed; it takes effect at the next restart");
        }
        prepare(config, key, Arc::clone(pacer), metrics)
    });
    match next {
        Ok(prepared) => {
            current.stop().await;
            tracing::info!(config = %path.display(), sinks = prepared.sinks.len(), "SIGHUP: configuration reloaded");
            let status = format!("configuration reloaded from {}", path.display());
            (Generation::start(prepared, store, metrics, root), status)
        }
        Err(e) => {
            let why = one_line(&e.to_string());
            tracing::error!(error = %why, "SIGHUP: the new configuration is not valid; keeping the running one (files reopened)");
            let status = format!("reload refused, running the previous configuration: {why}");
            (current, status)
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

/// Starts a delivery loop for each sink; returns their handles and the
/// [`Wake`] the poller pokes after each commit. With `recorded`, the loops
/// drain (`run --once`) and may finish once it is cancelled.
fn spawn_sinks(
    sinks: Vec<(SinkConfig, sink::AnySink)>,
    store: &SharedStore,
    metrics: &Arc<Metrics>,
    token: &CancellationToken,
    recorded: Option<&CancellationToken>,
    tasks: &mut JoinSet<Result<(), StoreError>>,
) -> (Vec<SinkHandle>, Wake) {
    let mode = if recorded.is_some() {
        Mode::Drain
    } else {
        Mode::Daemon
    };
    let recorded = recorded.cloned().unwrap_or_else(|| {
        let done = CancellationToken::new();
        done.cancel();
        done
    });
    let mut handles = Vec::with_capacity(sinks.len());
    let mut wakes = Vec::with_capacity(sinks.len());
    for (cfg, s) in sinks {
        let wake = Arc::new(Notify::new());
        let ctx = LoopContext {
            store: store.clone(),
            metrics: Arc::clone(metrics),
            wake: Arc::clone(&wake),
            recorded: recorded.clone(),
            shutdown: token.clone(),
            grace: SHUTDOWN_GRACE,
        };
        handles.push(s.spawn(&cfg, ctx, mode, tasks));
        wakes.push(wake);
    }
    (handles, Wake::new(wakes))
}

/// `run --once`: one cycle while every sink drains, then the sinks finish
/// what is pending (recording and delivering overlap, so a huge catch-up
/// reaches the sinks while it is still being recorded).
async fn run_once(
    p: Prepared,
    store: &SharedStore,
    metrics: &Arc<Metrics>,
    signals: &mut Signals,
    opts: &RunOptions,
) -> Result<(), RunError> {
    let token = CancellationToken::new();
    let recorded = CancellationToken::new();
    let sink_configs: Vec<_> = p.sinks.iter().map(|(c, _)| c.clone()).collect();
    let mut tasks = JoinSet::new();
    let (_handles, wake) =
        spawn_sinks(p.sinks, store, metrics, &token, Some(&recorded), &mut tasks);
    let poller = Poller {
        client: p.client,
        store: store.clone(),
        poll: p.config.poll,
        tz: p.config.digicert.timezone,
        routes: sink_configs
            .iter()
            .map(sink::route)
            .collect::<Vec<_>>()
            .into(),
        metrics: Arc::clone(metrics),
        wake: wake.clone(),
    };
    let cycle = tokio::select! {
        r = poller.cycle() => Some(r),
        _ = signals.next() => None,
    };
    recorded.cancel();
    wake.all();
    let cycle = match cycle {
        None => {
            token.cancel();
            while tasks.join_next().await.is_some() {}
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
    let deadline = opts.drain_timeout.map(|d| tokio::time::Instant::now() + d);
    let mut timed_out = false;
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Err(e))) => {
                    token.cancel();
                    return Err(RunError::Runtime(anyhow::Error::new(e).context("a delivery loop failed")));
                }
                Some(_) => {}
            },
            _ = signals.next() => token.cancel(),
            _ = sleep_until(deadline), if deadline.is_some() && !timed_out => {
                timed_out = true;
                token.cancel();
            }
        }
    }
    if timed_out {
        let routes: Vec<SinkRoute> = sink_configs.iter().map(sink::route).collect();
        let stats = store
            .sink_stats(&routes)
            .await
            .map_err(|e| RunError::Runtime(e.into()))?;
        let pending: u64 = stats.iter().map(|s| s.pending).sum();
        if pending > 0 {
            return Err(RunError::Runtime(anyhow::anyhow!(
                "--drain-timeout elapsed with {pending} deliveries still pending; they go out on the next run"
            )));
        }
    }
    cycle.map_err(|e| RunError::Runtime(e.into()))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_error_becomes_one_readable_line() {
        let e = "c.toml: TOML parse error at line 4, column 1\n  |\n4 | intervall = \"1s\"\n  | ^^^^^^^^^\nunknown field `intervall`, expected `interval`\n";
        assert_eq!(
            one_line(e),
            "c.toml: TOML parse error at line 4, column 1; 4 | intervall = \"1s\"; unknown field `intervall`, expected `interval`"
        );
    }

    #[test]
    fn the_stall_limit_covers_one_request_and_one_pacing_wait() {
        let s = Duration::from_secs;
        // Default config: a 30 s request timeout, 60 requests a minute.
        assert_eq!(stall_limit(s(120), s(30), 60), s(120));
        // A request timeout above the watchdog timeout must not get us killed.
        assert_eq!(stall_limit(s(60), s(300), 60), s(331));
        // Slow pacing: one request a minute.
        assert_eq!(stall_limit(s(10), s(30), 1), s(120));
    }
}
