//! Sinks: where events go. Each kind lives in its own file and implements
//! the contract in [`kind`]; [`registry`] lists the kinds, one line each;
//! [`delivery`] is the per-sink loop that drains a sink's outbox.
//!
//! This module ties a configured sink to the rest: the store's view of it
//! ([`route`]), building it ([`build`], the same code for `run` and
//! `check`), and starting its delivery loop ([`start`]).

use std::sync::Arc;

use tokio::task::JoinSet;

pub mod delivery;
pub mod kind;
pub mod registry;
pub mod retry;

mod file;
mod stdout;
mod webhook;

pub use delivery::{LoopContext, Mode, Wake};
pub use kind::{Outcome, Sink};
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
        by_cursor: cfg.settings.in_order(),
    }
}

/// Builds the sink of `cfg`: reads its secrets, checks what can be checked
/// without sending anything. `source` is every event's `source` (the API
/// base URL). `check` runs exactly this, and drops the result.
pub fn build(cfg: &SinkConfig, source: &str) -> Result<Arc<dyn Sink>, BuildError> {
    cfg.settings.build(&BuildContext {
        name: &cfg.name,
        source,
        give_up_after: cfg.policy.give_up_after,
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

/// Starts the delivery loop of a built sink into `tasks`; returns its handle
/// and the `Notify` that wakes it after a commit.
pub fn start(
    cfg: &SinkConfig,
    sink: Arc<dyn Sink>,
    ctx: LoopContext,
    mode: Mode,
    tasks: &mut JoinSet<Result<(), StoreError>>,
) -> SinkHandle {
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
