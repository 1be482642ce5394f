//! The SQLite store, orderwatch's embedded default: one file, WAL mode, a
//! lock file beside it for the single daemon.
//!
//! [`Db`] is a synchronous connection on which every query lives; its
//! methods are spread over one file per concern (recording, the outbox, the
//! in-order sinks' cursors, read-only views). [`SqliteStore`] implements the
//! async [`Store`] contract with two connections, one that writes
//! (recording, ledger updates) and one that only reads (what is due,
//! statistics), each used on tokio's blocking pool so SQLite never blocks
//! the runtime. WAL lets the reader work while the writer holds a long
//! transaction, so a sink reads and delivers a big catch-up on one core
//! while the poller records the rest of it on the other. Other processes
//! (`orderwatch events`, `deliveries`, `redeliver`) open the same file
//! beside a running daemon.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

mod alert_copy;
mod alerts;
mod checkpoint;
mod db;
mod fresh;
mod known;
mod lookup;
mod outbox;
mod portable;
mod query;
mod queue;
mod record;
mod retention;
mod route;
mod rows;
#[cfg(test)]
mod tests;

use checkpoint::{Checkpointer, Thresholds};
pub use db::{DaemonLock, Db, SCHEMA_VERSION, lock_for_daemon};

use crate::store::{
    AlertEntry, Chunk, Chunks, Committed, DeliveryFilter, DeliveryRow, EventFilter, Lookup,
    LookupBacklog, LookupOutcome, Mark, OutboxEntry, Pause, PollHealth, RecordSummary, Redeliver,
    Routes, SinkRoute, SinkStats, Store, StoreError, StoreReport, VersionProbe,
};
use crate::transition::TransitionRow;

/// The SQLite backend of [`Store`].
#[derive(Clone, Debug)]
pub struct SqliteStore {
    path: PathBuf,
    /// Device and inode of the database when it was opened: a store
    /// deleted or replaced under the daemon is noticed at the next write.
    identity: Option<(u64, u64)>,
    writer: Arc<Mutex<Db>>,
    reader: Arc<Mutex<Db>>,
    /// The daemon's store checkpoints its log on a thread of its own;
    /// dropped last, so its connection closes last (see `checkpoint.rs`).
    checkpointer: Option<Arc<Checkpointer>>,
}

impl SqliteStore {
    /// Opens (creating with mode 0600 and migrating if needed) the store and
    /// its reading connection: the daemon's way in. Blocking.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_checkpointing(path, Thresholds::default())
    }

    fn open_checkpointing(path: &Path, at: Thresholds) -> Result<SqliteStore, StoreError> {
        let mut writer = Db::open(path)?;
        let checkpointer = Checkpointer::start(&mut writer, at)?;
        let mut store = SqliteStore::with_writer(path, writer)?;
        store.checkpointer = Some(Arc::new(checkpointer));
        Ok(store)
    }

    /// Opens an existing store for a command: nothing is created, migrated
    /// or adopted (see [`Db::open_existing`]). Blocking.
    pub fn open_existing(path: &Path, outdated_ok: bool) -> Result<SqliteStore, StoreError> {
        let writer = Db::open_existing(path, outdated_ok)?;
        SqliteStore::with_writer(path, writer)
    }

    fn with_writer(path: &Path, writer: Db) -> Result<SqliteStore, StoreError> {
        let reader = Db::open_reader(path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            identity: db::identity(path),
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            checkpointer: None,
        })
    }

    /// Runs `f` on the blocking pool with the writing connection, once
    /// sure the path still names the database that was opened: writing to
    /// a deleted (or replaced) file would record into nothing.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        let (path, identity) = (self.path.clone(), self.identity);
        on(Arc::clone(&self.writer), move |db| {
            still_there(&path, identity)?;
            f(db)
        })
        .await
    }

    /// Runs a read-only `f` on the blocking pool with the reading
    /// connection; it sees everything committed before it starts.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        on(Arc::clone(&self.reader), move |db| f(db)).await
    }
}

/// Whether `path` still names the database opened as `identity`.
fn still_there(path: &Path, identity: Option<(u64, u64)>) -> Result<(), StoreError> {
    if db::identity(path) != identity {
        return Err(StoreError::Replaced {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Set when the future that owns it is dropped: tells work it started on
/// the blocking pool to stop at its next step.
#[derive(Default)]
struct StopOnDrop(Arc<AtomicBool>);

impl StopOnDrop {
    fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Takes a connection's lock. A panic while holding it leaves the
/// connection usable, so a poisoned lock is taken all the same.
fn hold(conn: &Mutex<Db>) -> MutexGuard<'_, Db> {
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

async fn on<T, F>(conn: Arc<Mutex<Db>>, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || f(&mut hold(&conn)))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[async_trait]
impl Store for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    async fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.write(|db| db.cursor()).await
    }

    async fn rewind_cursor(&self, to: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(move |db| db.rewind_cursor(to)).await
    }

    async fn record(&self, chunk: Chunk, routes: Routes) -> Result<RecordSummary, StoreError> {
        self.write(move |db| db.record_chunk(&chunk, &routes)).await
    }

    /// One call on the blocking pool records every chunk. The writing
    /// connection is released between two chunks (a sink's ledger write
    /// may go first), but the next chunk does not wait for a turn on the
    /// runtime: while a catch-up's sinks keep both cores busy, that turn
    /// took milliseconds per chunk.
    async fn record_chunks(
        &self,
        chunks: Chunks,
        routes: Routes,
        committed: Committed,
    ) -> Result<RecordSummary, StoreError> {
        let stop = StopOnDrop::default();
        let stopped = stop.flag();
        let (writer, path, identity) = (Arc::clone(&self.writer), self.path.clone(), self.identity);
        let recorded = tokio::task::spawn_blocking(move || {
            let mut summary = RecordSummary::default();
            for chunk in chunks {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let part = {
                    let mut db = hold(&writer);
                    still_there(&path, identity)?;
                    db.record_chunk(&chunk, &routes)?
                };
                committed(&part);
                summary.absorb(part);
            }
            Ok(summary)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        drop(stop);
        recorded
    }

    async fn due_after(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
        into: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let route = route.clone();
        self.read(move |db| db.due_for(&route, now, limit, after, into))
            .await
    }

    async fn next_due(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError> {
        let route = route.clone();
        self.read(move |db| db.next_due_for(&route)).await
    }

    async fn prune_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.write(move |db| db.prune_delivered(before, limit))
            .await
    }

    async fn purge_dead(
        &self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let sink = sink.map(str::to_string);
        self.write(move |db| db.purge_dead(sink.as_deref(), before, limit))
            .await
    }

    async fn mark(&self, sink: &str, marks: Vec<(i64, Mark)>, now: i64) -> Result<(), StoreError> {
        let sink = sink.to_string();
        self.write(move |db| db.mark(&sink, &marks, now)).await
    }

    async fn expire(
        &self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        let (sink, error) = (sink.to_string(), error.to_string());
        self.write(move |db| db.expire(&sink, cutoff, &error, now))
            .await
    }

    async fn retry_now(&self, sink: &str, now: i64) -> Result<usize, StoreError> {
        let sink = sink.to_string();
        self.write(move |db| db.retry_now(&sink, now)).await
    }

    async fn requeued_since(&self, sink: &str, since: i64) -> Result<bool, StoreError> {
        let sink = sink.to_string();
        self.read(move |db| db.requeued_since(&sink, since)).await
    }

    async fn pause(&self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        let (sink, reason) = (sink.to_string(), reason.to_string());
        self.write(move |db| db.pause(&sink, &reason, now)).await
    }

    async fn pause_of(&self, sink: &str) -> Result<Option<Pause>, StoreError> {
        let sink = sink.to_string();
        self.read(move |db| {
            Ok(db
                .paused_since(&sink)?
                .map(|(since, reason)| Pause { since, reason }))
        })
        .await
    }

    async fn lookups_due(&self, now: i64, limit: usize) -> Result<Vec<Lookup>, StoreError> {
        self.read(move |db| db.lookups_due(now, limit)).await
    }

    async fn lookups_done(
        &self,
        done: Vec<(Lookup, LookupOutcome)>,
        now: i64,
    ) -> Result<(), StoreError> {
        // Nothing stored depends on `now` (retries carry their own time).
        let _ = now;
        self.write(move |db| db.lookups_done(&done)).await
    }

    async fn lookup_backlog(&self) -> Result<LookupBacklog, StoreError> {
        self.read(|db| db.lookup_backlog()).await
    }

    async fn release_held(&self) -> Result<u64, StoreError> {
        self.write(|db| db.release_held()).await
    }

    async fn set_alert_sinks(&self, sinks: &[String]) -> Result<(), StoreError> {
        let sinks = sinks.to_vec();
        self.write(move |db| db.set_alert_sinks(&sinks)).await
    }

    async fn poll_health(
        &self,
        health: &PollHealth,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let health = health.clone();
        self.write(move |db| db.poll_health(&health, now)).await
    }

    async fn alerts_due(
        &self,
        sink: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertEntry>, StoreError> {
        let sink = sink.to_string();
        self.read(move |db| db.alerts_due(&sink, now, limit)).await
    }

    async fn next_alert_due(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        let sink = sink.to_string();
        self.read(move |db| db.next_alert_due(&sink)).await
    }

    async fn mark_alerts(
        &self,
        sink: &str,
        marks: Vec<(i64, Mark)>,
        now: i64,
    ) -> Result<(), StoreError> {
        let sink = sink.to_string();
        self.write(move |db| db.mark_alerts(&sink, &marks, now))
            .await
    }

    async fn redeliver(
        &self,
        route: &SinkRoute,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        let (route, what) = (route.clone(), what.clone());
        self.write(move |db| db.redeliver(&route, &what, now)).await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<TransitionRow>, StoreError> {
        let filter = filter.clone();
        self.read(move |db| db.events(&filter)).await
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        let filter = filter.clone();
        self.read(move |db| db.deliveries(&filter)).await
    }

    async fn sink_stats(&self, routes: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError> {
        let routes = routes.to_vec();
        self.read(move |db| db.sink_stats(&routes)).await
    }

    fn version_probe(&self) -> Option<VersionProbe> {
        // The reading connection sees every other connection's commits
        // move it: this process's writer's and other processes'.
        let reader = Arc::clone(&self.reader);
        Some(Box::new(move || hold(&reader).data_version()))
    }

    async fn report(&self, deep: bool) -> Result<StoreReport, StoreError> {
        let location = self.location();
        self.read(move |db| {
            Ok(StoreReport {
                location,
                schema_version: db.schema_version()?,
                transitions: db.transition_count()?,
                cursor: db.cursor()?,
                damage: if deep { db.quick_check()? } else { None },
            })
        })
        .await
    }
}
