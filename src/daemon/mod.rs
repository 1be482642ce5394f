//! The daemon: wires config, change source, store, poller and sinks
//! together, and owns the process lifecycle: leadership, readiness, the
//! watchdog, reload, shutdown and `run --once`.
//!
//! It takes its [`Control`] from outside (`orderwatch run` turns signals
//! into it), so it runs in-process in tests, on tokio's paused clock.
//!
//! A *generation* is one configuration's running poller and sinks. A reload
//! with a valid config stops the current generation gracefully and starts
//! the next on the same store; with an invalid one it keeps running, says
//! why, and only reopens files.
//!
//! Only the node that leads its store runs a generation (see `term.rs`):
//! it works through its lease's store, whose writes are fenced by the
//! lease's term, and when the lease is lost it stops at once and stands by
//! again. On SQLite the lock file is the lease and is never lost.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

mod control;
mod generation;
mod once;
mod reload;
mod retention;
pub mod role;
mod serve;
mod term;
#[cfg(test)]
mod tests;
mod watchdog;

pub use control::{Control, Request};
pub use role::{Role, RoleCell};
pub use watchdog::stall_limit;

use crate::certcentral::{ChangeSource, Client};
use crate::config::{Config, Secret, StoreConfig};
use crate::metrics::Metrics;
use crate::pacer::Pacer;
use crate::service::{self, SinkNames};
use crate::store::{self, Leadership, Lease, SharedStore, WriterLock};
use crate::transition::Clock;
use crate::wake::{PollWake, WakeAuth};
use generation::Prepared;

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
    /// Leadership of the store; `None`: the one `[store]` names (in-process
    /// tests pass one they steer).
    pub leadership: Option<Arc<dyn Leadership>>,
}

impl Default for RunOptions {
    fn default() -> RunOptions {
        RunOptions {
            once: false,
            drain_timeout: None,
            config_path: None,
            source: certcentral_source(),
            clock: Clock::System,
            leadership: None,
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
    let key = config.digicert.api_key.load_header().map_err(|e| {
        RunError::Config(anyhow::anyhow!(
            "{}: cannot read the DigiCert API key from {}: {e}",
            config.source.display(),
            config.digicert.api_key
        ))
    })?;
    Ok((config, key))
}

/// What outlives generations: the store, metrics, the request budget, the
/// role, and what the process was started with. Cheap to clone: a term's
/// copy ([`Daemon::leading`]) differs only in its store.
#[derive(Clone)]
struct Daemon {
    opts: RunOptions,
    /// The store this node reads (status, metrics): a standby's unfenced
    /// handle, or SQLite's. In a term's copy, the lease's fenced store, so
    /// every write of the generation is fenced.
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
    /// Leader, standby or the only node, shared with `/healthz`.
    role: RoleCell,
    /// `host:pid`, as the store names this node.
    node: String,
    /// Rung by `POST /wake`, answered by every generation's poller.
    poll_wake: Arc<PollWake>,
    /// Who may ring it; each generation sets it from its config.
    wake_auth: WakeAuth,
    wake_addr: Option<SocketAddr>,
}

/// How this process holds its store.
enum Hold {
    /// `run --once`: the writer lock (or lease) for this one run.
    Once(WriterLock),
    /// The daemon: the leadership it waits for, and its lease if it
    /// already holds one (SQLite takes its lock file at the start).
    Lead {
        leadership: Arc<dyn Leadership>,
        lease: Option<Lease>,
    },
}

/// Runs the daemon (or one cycle with `once`) with a loaded config and key
/// until `control` asks it to stop.
pub async fn run(
    config: Config,
    api_key: Secret,
    opts: RunOptions,
    control: Control,
) -> Result<(), RunError> {
    let (daemon, prepared, hold) = Daemon::open(config, api_key, opts).await?;
    let (leadership, lease) = match hold {
        Hold::Once(_lock) => {
            let result = daemon.run_once(prepared, &control).await;
            daemon.root.cancel();
            return result;
        }
        Hold::Lead { leadership, lease } => (leadership, lease),
    };
    tracing::info!(
        store = %daemon.store.location(),
        api = %prepared.config.digicert.base_url,
        sinks = prepared.config.sinks.len(),
        interval = %humantime::format_duration(prepared.config.poll.interval),
        node = %daemon.node,
        "orderwatch started"
    );
    // The store is open and the config valid: systemd may consider us up,
    // leader or standby.
    service::ready(match daemon.role.get() {
        Role::Sole => "started; first poll under way",
        _ => "started; looking for the leader",
    });
    daemon.serve(prepared, leadership, lease, &control).await
}

impl Daemon {
    /// Everything before the first generation: the request budget, the
    /// secrets, the store (locked for `--once`, else its leadership) and
    /// the metrics endpoint.
    async fn open(
        config: Config,
        api_key: Secret,
        opts: RunOptions,
    ) -> Result<(Daemon, Prepared, Hold), RunError> {
        let metrics = Arc::new(Metrics::new(config.poll.interval));
        let pacer = Arc::new(Pacer::new(config.digicert.max_requests_per_minute));
        let store_config = config.store.clone();
        let metrics_addr = config.metrics.as_ref().map(|m| m.listen);
        let wake_addr = config.wake.as_ref().map(|w| w.listen);
        // Secrets and sinks first: a bad one refuses the start before the
        // store is touched. So does a store directory that does not exist
        // (exit 2, as `check` says: a restart cannot fix `[store] path`).
        if let StoreConfig::Sqlite { path } = &store_config
            && let Some(problem) = crate::config::field::store_dir_missing(path)
        {
            return Err(RunError::Config(anyhow::anyhow!(
                "{}: store.path: {problem}",
                config.source.display()
            )));
        }
        let prepared = generation::prepare(&opts, &pacer, &metrics, config, api_key)?;
        let runtime = |e: store::StoreError| RunError::Runtime(e.into());
        let node = store::node_identity();
        let (store, hold, role) = if opts.once {
            let (store, lock) = store::open_writer(&store_config).await.map_err(runtime)?;
            (store, Hold::Once(lock), Role::Sole)
        } else {
            let leadership = match &opts.leadership {
                Some(l) => Arc::clone(l),
                None => store::leadership(&store_config, node.clone())
                    .await
                    .map_err(runtime)?,
            };
            match leadership.standby_store() {
                Some(store) => {
                    let hold = Hold::Lead {
                        leadership,
                        lease: None,
                    };
                    (store, hold, Role::Joining)
                }
                // No standby on this store: lead now or be refused.
                None => {
                    let lease = leadership.acquire().await.map_err(runtime)?;
                    let store = Arc::clone(lease.store());
                    let hold = Hold::Lead {
                        leadership,
                        lease: Some(lease),
                    };
                    (store, hold, Role::Sole)
                }
            }
        };
        let daemon = Daemon {
            store,
            metrics,
            pacer,
            root: CancellationToken::new(),
            store_config,
            metrics_addr,
            sink_names: SinkNames::new(prepared.routes()),
            role: RoleCell::new(role),
            node,
            poll_wake: PollWake::new(),
            wake_auth: WakeAuth::default(),
            wake_addr,
            opts,
        };
        daemon.serve_metrics().await?;
        if !daemon.opts.once {
            daemon.guard_wakes(&prepared);
            daemon.serve_wake().await?;
        }
        Ok((daemon, prepared, hold))
    }

    /// This daemon as one term's generation sees it: the lease's fenced
    /// store in place of the node's reading one.
    fn leading(&self, lease: &Lease) -> Daemon {
        Daemon {
            store: Arc::clone(lease.store()),
            ..self.clone()
        }
    }
}
