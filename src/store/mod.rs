//! The store: dedupe memory, the polling cursor and the per-sink delivery
//! ledger, behind one contract ([`Store`]) that the poller, the delivery
//! loops, the metrics endpoint and the commands use. SQLite
//! ([`sqlite::SqliteStore`]) is the embedded default; PostgreSQL
//! ([`postgres::PgStore`]) is the store several nodes share, one of them
//! leading ([`Leadership`], [`Lease`]: writes fenced by a term number).
//! [`open`], [`open_writer`] and [`leadership`] pick the backend from
//! `[store]`; `copy` moves a store between the two.
//!
//! Invariants every backend keeps:
//! * The cursor never passes what is recorded: a window's new transitions,
//!   and what each sink needs to deliver them, are committed before (or in
//!   the same transaction as) the cursor move that covers them. A crash at
//!   any point repeats work; it never loses a transition.
//! * A transition is recorded once: a sighting is compared with the order's
//!   current status and certificate, and only a difference is a transition
//!   (in first-sighting mode, only the first sighting of `(order_id,
//!   status)`); `(order_id, status, occurrence)` is unique.
//! * One order's events reach a sink in the order they were recorded: a
//!   delivery is due only while no earlier delivery of its order to that
//!   sink is pending.
//! * Deliveries are at-least-once: a delivery leaves `pending` only by an
//!   outcome written with [`Store::mark`] (or given up by [`Store::expire`]).
//! * A held transition (see [`Hold`]) reaches no sink until
//!   [`Store::lookups_done`] or [`Store::release_held`] releases it, and
//!   the transitions after it of the same order wait too (for an in-order
//!   sink: every transition after it that the sink takes).
//!
//! * An alert (an operational event, see [`alert`]) is written in the
//!   transaction of the state change that causes it (a delivery marked or
//!   given up dead, a pause, a poll outage), queued for every operational
//!   sink except the one it is about; alert deliveries cause no alerts.
//!
//! The behaviour is pinned by one suite (`suite/`) that every backend runs.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub mod alert;
pub mod copy;
mod error;
#[cfg(test)]
pub mod guarded;
mod leader;
mod lookup;
mod model;
pub mod postgres;
mod route;
mod sighting;
pub mod sqlite;
#[cfg(test)]
mod suite;

pub use alert::{AlertEntry, PollHealth};
pub use error::StoreError;
pub use leader::{Leader, Leadership, Lease, node_identity};
pub use lookup::{Hold, Lookup, LookupBacklog, LookupOutcome};
pub use model::{
    Chunk, DeliveryFilter, DeliveryRow, DeliveryState, EventFilter, Mark, OutboxEntry, Pause,
    RecordSummary, Redeliver, Routes, SAMPLE, SinkStats, StoreReport,
};
pub use route::SinkRoute;
pub use sqlite::SCHEMA_VERSION;

use crate::config::StoreConfig;
use crate::transition::TransitionRow;

/// A shared handle on the open store.
pub type SharedStore = Arc<dyn Store>;

/// The chunks of one window, made one at a time as they are recorded (see
/// [`Store::record_chunks`]).
pub type Chunks = Box<dyn Iterator<Item = Chunk> + Send>;

/// Told each chunk's summary once that chunk is committed: wakes the sinks.
pub type Committed = Arc<dyn Fn(&RecordSummary) + Send + Sync>;

/// What the rest of orderwatch may ask of a store. Times are unix ms.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Where the store lives, for messages.
    fn location(&self) -> String;

    // --- polling ---

    /// Every change up to this instant has been seen.
    async fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError>;

    /// Sets the cursor back to `to`: the one way it moves backwards, for a
    /// cursor found in the future (this machine's clock was ahead and was
    /// stepped back), so the next windows reach back far enough again.
    async fn rewind_cursor(&self, to: DateTime<Utc>) -> Result<(), StoreError>;

    /// Records one chunk of a window in one transaction: new transitions,
    /// queued for each route that takes them, and the chunk's cursor (which
    /// never moves back).
    async fn record(&self, chunk: Chunk, routes: Routes) -> Result<RecordSummary, StoreError>;

    /// Records a window's chunks in order, each as [`Store::record`] does
    /// (one transaction each), calling `committed` with each chunk's
    /// summary once it is committed; stops at the first error. Dropping
    /// the future stops it after the chunk under way. A backend may run the
    /// whole sequence off the runtime, so that the next chunk starts the
    /// moment the last one committed (SQLite does).
    async fn record_chunks(
        &self,
        chunks: Chunks,
        routes: Routes,
        committed: Committed,
    ) -> Result<RecordSummary, StoreError> {
        let mut summary = RecordSummary::default();
        for chunk in chunks {
            let part = self.record(chunk, Arc::clone(&routes)).await?;
            committed(&part);
            summary.absorb(part);
        }
        Ok(summary)
    }

    // --- delivery ---

    /// What `route` should deliver now, oldest first, at most `limit`, and
    /// only the oldest pending delivery of each order.
    async fn due(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.due_after(route, now, limit, 0, Vec::new()).await
    }

    /// [`Store::due`] leaving out seqs up to `after` (0: none), for an
    /// in-order `route` whose deliveries up to `after` are in flight, and
    /// appended to `into`: the storage of a finished batch, so a backlog
    /// worked off in big batches does not map fresh memory for each. A file
    /// sink reads its next batch this way while the last one is being
    /// written and synced, instead of after.
    async fn due_after(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
        into: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// When `route`'s next delivery falls due (0: now), if any is pending.
    async fn next_due(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError>;

    /// Records the outcomes of attempts, all in one transaction, keyed by seq.
    async fn mark(&self, sink: &str, marks: Vec<(i64, Mark)>, now: i64) -> Result<(), StoreError>;

    /// Gives up every pending delivery of `sink` whose first failed attempt
    /// was before `cutoff` (never one that was not tried); `error` prefixes
    /// each one's last error. Returns how many.
    async fn expire(
        &self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Makes every pending retry of `sink` due now (its receiver recovered).
    async fn retry_now(&self, sink: &str, now: i64) -> Result<usize, StoreError>;

    /// Whether `orderwatch redeliver` queued deliveries of `sink` since `since`.
    async fn requeued_since(&self, sink: &str, since: i64) -> Result<bool, StoreError>;

    // --- retention ---

    /// Deletes at most `limit` delivered ledger rows done before `before`,
    /// in one short transaction; returns how many (fewer than `limit`: no
    /// more are due). Rows an in-order sink still needs are kept.
    async fn prune_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError>;

    /// Deletes at most `limit` dead ledger rows given up before `before`,
    /// of `sink` or every sink; dead rows of in-order sinks are kept (their
    /// cursor would make the event look delivered). Returns how many.
    async fn purge_dead(
        &self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError>;

    /// Pauses `sink` until `redeliver` (its receiver answered 410 Gone).
    async fn pause(&self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError>;

    /// Whether, since when and why `sink` is paused.
    async fn pause_of(&self, sink: &str) -> Result<Option<Pause>, StoreError>;

    // --- order details ---

    /// Held transitions due for a lookup at `now`, grouped by order (one
    /// lookup serves every held transition of an order), oldest first, at
    /// most `limit` orders.
    async fn lookups_due(&self, now: i64, limit: usize) -> Result<Vec<Lookup>, StoreError>;

    /// Records how lookups ended, in one transaction: released transitions
    /// get their details and become deliverable; the others wait for
    /// their next attempt.
    async fn lookups_done(
        &self,
        done: Vec<(Lookup, LookupOutcome)>,
        now: i64,
    ) -> Result<(), StoreError>;

    /// What waits for a lookup.
    async fn lookup_backlog(&self) -> Result<LookupBacklog, StoreError>;

    /// Releases every held transition without details (enrichment was
    /// turned off); returns how many.
    async fn release_held(&self) -> Result<u64, StoreError>;

    // --- operational events (alerts) ---

    /// Replaces the list of operational sinks, which every alert written
    /// from now on is queued for (except the sink it is about).
    async fn set_alert_sinks(&self, sinks: &[String]) -> Result<(), StoreError>;

    /// Reports how polling is doing: writes `orderwatch.poll.failed` for an
    /// outage not yet reported, `orderwatch.poll.recovered` at the end of a
    /// reported one, nothing otherwise. Returns the id of what it wrote.
    async fn poll_health(
        &self,
        health: &PollHealth,
        now: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Alerts operational sink `sink` should deliver now, oldest first.
    async fn alerts_due(
        &self,
        sink: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertEntry>, StoreError>;

    /// When `sink`'s next alert delivery falls due, if any is pending.
    async fn next_alert_due(&self, sink: &str) -> Result<Option<i64>, StoreError>;

    /// Records the outcomes of alert deliveries, keyed by alert seq. A dead
    /// one writes no alert of its own.
    async fn mark_alerts(
        &self,
        sink: &str,
        marks: Vec<(i64, Mark)>,
        now: i64,
    ) -> Result<(), StoreError>;

    // --- operators ---

    /// Queues deliveries again for `route` and lifts its pause; returns how
    /// many. For an operational route, its alert deliveries.
    async fn redeliver(
        &self,
        route: &SinkRoute,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError>;

    /// Recorded transitions, newest first.
    async fn events(&self, filter: &EventFilter) -> Result<Vec<TransitionRow>, StoreError>;

    /// Ledger rows, newest first.
    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError>;

    /// Outbox figures for each route.
    async fn sink_stats(&self, routes: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError>;

    /// Schema, size and cursor; with `deep`, an integrity check that reads
    /// the whole store (only `check` asks for it).
    async fn report(&self, deep: bool) -> Result<StoreReport, StoreError>;

    /// For the store watch (`sink/delivery/watch.rs`), which calls it on a
    /// thread of its own about once a second: a blocking read of a number
    /// that moves whenever anything is committed to the store, by this
    /// process or another (`orderwatch redeliver`). A daemon's idle loops
    /// then sleep until it moves instead of each querying the store every
    /// second. `None`: this backend cannot tell cheaply, and idle loops
    /// look every second.
    fn version_probe(&self) -> Option<VersionProbe> {
        None
    }
}

/// See [`Store::version_probe`].
pub type VersionProbe = Box<dyn FnMut() -> Result<i64, StoreError> + Send>;

/// The single-writer lock; released when dropped.
pub struct WriterLock {
    /// What holds it, e.g. the lock file beside a SQLite store.
    pub describe: String,
    _guard: Box<dyn Send + Sync>,
}

impl WriterLock {
    /// A lock held for as long as `guard` lives.
    pub fn new(describe: String, guard: impl Send + Sync + 'static) -> WriterLock {
        WriterLock {
            describe,
            _guard: Box::new(guard),
        }
    }
}

impl std::fmt::Debug for WriterLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterLock")
            .field("describe", &self.describe)
            .finish_non_exhaustive()
    }
}

/// Opens the configured store for the daemon: takes the single-writer lock
/// (only its holder polls and delivers; refused while another daemon holds
/// it), then opens, creating and migrating if needed.
///
/// On PostgreSQL the lock is the leadership lease, taken only if nobody
/// leads ([`StoreError::Led`] otherwise); the store returned is fenced by
/// it. A daemon that waits as a standby uses [`leadership`] instead.
pub async fn open_writer(config: &StoreConfig) -> Result<(SharedStore, WriterLock), StoreError> {
    let path = match config {
        StoreConfig::Sqlite { path } => path.clone(),
        StoreConfig::Postgres(pg) => {
            let leadership = postgres::PgLeadership::open(pg, node_identity()).await?;
            let Some(lease) = leadership.try_acquire().await? else {
                let leader = match leadership.leader().await? {
                    Some(l) => format!("{}, term {}", l.holder, l.term),
                    None => "unknown".to_string(),
                };
                return Err(StoreError::Led {
                    location: pg.target.location().to_string(),
                    leader,
                });
            };
            let store = Arc::clone(lease.store());
            return Ok((store, WriterLock::new(lease.describe().to_string(), lease)));
        }
    };
    let opened = tokio::task::spawn_blocking(move || {
        // The lock first: a second daemon must not even migrate.
        let lock = sqlite::lock_for_daemon(&path)?;
        let store = sqlite::SqliteStore::open(&path)?;
        let lock = WriterLock::new(format!("lock file {}", lock.path.display()), lock);
        Ok::<_, StoreError>((store, lock))
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))??;
    Ok((Arc::new(opened.0), opened.1))
}

/// Opens the configured store for a command beside the daemon (`events`,
/// `deliveries`, `redeliver`): it must exist, be orderwatch's and be at this
/// build's schema. Nothing is created, migrated or adopted: a mistyped path
/// or another application's database is refused with what to do. Its
/// writes are not fenced (they are an operator's, beside the leader's).
pub async fn open(config: &StoreConfig) -> Result<SharedStore, StoreError> {
    match config {
        StoreConfig::Sqlite { path } => {
            let path = path.clone();
            let store = tokio::task::spawn_blocking(move || {
                sqlite::SqliteStore::open_existing(&path, false)
            })
            .await
            .map_err(|e| StoreError::Task(e.to_string()))??;
            Ok(Arc::new(store))
        }
        StoreConfig::Postgres(pg) => Ok(Arc::new(postgres::PgStore::open_existing(pg).await?)),
    }
}

/// The leadership of the configured store, for a daemon that waits as a
/// standby until it leads. `identity` names this node (see
/// [`node_identity`]). Opening migrates a PostgreSQL store; SQLite's is
/// opened only once its lock is taken.
pub async fn leadership(
    config: &StoreConfig,
    identity: String,
) -> Result<Arc<dyn Leadership>, StoreError> {
    Ok(match config {
        StoreConfig::Sqlite { path } => Arc::new(leader::SqliteLeadership { path: path.clone() }),
        StoreConfig::Postgres(pg) => Arc::new(postgres::PgLeadership::open(pg, identity).await?),
    })
}

/// Opens a SQLite store for `check`: like [`open`], but a store at an older
/// schema is fine (the daemon upgrades it at start), and a missing one is
/// `None` (the daemon creates it). (`check` does not contact PostgreSQL.)
pub async fn open_for_check(path: &Path) -> Result<Option<SharedStore>, StoreError> {
    let path = path.to_path_buf();
    let opened =
        tokio::task::spawn_blocking(move || sqlite::SqliteStore::open_existing(&path, true))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
    match opened {
        Ok(store) => Ok(Some(Arc::new(store))),
        Err(StoreError::Missing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}
