//! Sinks: where events go. Each kind lives in its own file and implements
//! the contract in [`kind`]; [`registry`] lists the kinds, one line each;
//! [`delivery`] is the per-sink loop that drains a sink's outbox.
//!
//! This module ties a configured sink to the rest: the store's view of it
//! ([`route`]), building it ([`build`], the same code for `run` and
//! `check`), and starting its delivery loop ([`start`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinSet;

pub mod delivery;
pub mod kind;
pub mod registry;
pub mod retry;

mod exec;
mod file;
mod lines;
mod nats;
mod stdout;
mod webhook;

pub use delivery::watch::Watched;
pub use delivery::{LoopContext, Mode, Wake};
pub use kind::{Message, Outcome, Sent, Sink};
pub use retry::DeliveryPolicy;

use crate::config::SinkConfig;
use crate::store::{SinkRoute, StoreError};
use delivery::DeliveryLoop;
use kind::{BuildContext, BuildError};

/// How the store sees the sink of `cfg`: its name, filter, and whether it
/// delivers in recorded order (file, stdout), so the store keeps a cursor
/// for it instead of a row per event.
pub fn route(cfg: &SinkConfig) -> SinkRoute {
    SinkRoute {
        name: cfg.name.clone(),
        statuses: cfg.statuses.clone(),
        by_cursor: cfg.settings.in_order() && !cfg.operational,
        operational: cfg.operational,
    }
}

/// Builds the sink of `cfg`: reads its secrets, checks what can be checked
/// without sending anything. `source` is every event's `source` (the API
/// base URL). `check` runs exactly this, and drops the result.
pub fn build(cfg: &SinkConfig, source: &str) -> Result<Arc<dyn Sink>, BuildError> {
    build_as(cfg, source, true)
}

/// [`build`] for a command that runs beside the daemon (`test-sink`,
/// `check`): the sink never changes what the daemon may be writing.
pub fn build_guest(cfg: &SinkConfig, source: &str) -> Result<Arc<dyn Sink>, BuildError> {
    build_as(cfg, source, false)
}

fn build_as(cfg: &SinkConfig, source: &str, owner: bool) -> Result<Arc<dyn Sink>, BuildError> {
    cfg.settings.build(&BuildContext {
        name: &cfg.name,
        source,
        give_up_after: cfg.policy.give_up_after,
        owner,
    })
}

/// A running sink: its name and a way to ask it to reopen files.
pub struct SinkHandle {
    pub name: String,
    sink: Arc<dyn Sink>,
}

impl SinkHandle {
    /// Reopen files (SIGHUP after logrotate).
    pub fn reopen(&self) {
        self.sink.reopen()
    }
}

/// Starts the delivery loop of a built sink into `tasks` (an operational
/// sink's drains its alerts); returns its handle.
pub fn start(
    cfg: &SinkConfig,
    sink: Arc<dyn Sink>,
    ctx: LoopContext,
    mode: Mode,
    tasks: &mut JoinSet<Result<(), StoreError>>,
) -> SinkHandle {
    if cfg.operational {
        let runner = delivery::alerts::AlertLoop {
            name: cfg.name.clone(),
            sink: Arc::clone(&sink),
            policy: cfg.policy,
            ctx,
            mode,
        };
        tasks.spawn(runner.run());
        return SinkHandle {
            name: cfg.name.clone(),
            sink,
        };
    }
    let runner = DeliveryLoop {
        sink: Arc::clone(&sink),
        route: route(cfg),
        policy: cfg.policy,
        ctx,
        mode,
    };
    tasks.spawn(runner.run());
    SinkHandle {
        name: cfg.name.clone(),
        sink,
    }
}

/// Sink files that another writer owns too: another sink's file, or the
/// store or one of the files SQLite keeps beside it, compared after
/// symlinks. Each is a problem naming both keys; `check` lists them and
/// `run` refuses to start with them, since two writers on one file lose
/// lines and a sink appending to the store destroys it.
pub fn file_conflicts(config: &crate::config::Config) -> Vec<String> {
    let mut owners: Vec<(PathBuf, String)> = match &config.store {
        crate::config::StoreConfig::Sqlite { path } => ["", "-wal", "-shm", "-journal", ".lock"]
            .iter()
            .map(|suffix| {
                let mut p = path.as_os_str().to_owned();
                p.push(suffix);
                (resolved(Path::new(&p)), "store.path".to_string())
            })
            .collect(),
        // A PostgreSQL store has no file here for a sink to collide with.
        crate::config::StoreConfig::Postgres(_) => Vec::new(),
    };
    let mut problems = Vec::new();
    for (i, s) in config.sinks.iter().enumerate() {
        for file in s.settings.files() {
            let key = crate::config::sink_key(i, Some(&s.name), "path");
            let real = resolved(file);
            match owners.iter().find(|(p, _)| *p == real) {
                Some((_, other)) => problems.push(format!(
                    "{key}: {} is the same file as {other}; give every sink its own file, away from the store",
                    file.display()
                )),
                None => owners.push((real, key)),
            }
        }
    }
    problems
}

/// `path` with symlinks resolved, as far as the file system has it: an
/// existing file, else its existing directory plus the file name.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            std::fs::canonicalize(dir)
                .map(|d| d.join(name))
                .unwrap_or_else(|_| path.to_path_buf())
        }
        _ => path.to_path_buf(),
    }
}
