//! The PostgreSQL store: one database shared by several orderwatch nodes,
//! exactly one of which leads (polls and delivers) while the others wait as
//! hot standbys. Same tables and the same rules as SQLite (the shared suite
//! runs against both); what is new is leadership and fencing.
//!
//! # Leadership
//!
//! The `leadership` row holds a `term`, the `holder` (`host:pid`) and an
//! expiry. The leader renews the expiry every `ttl / 4` (`ttl` is two thirds
//! of `[store] failover`) on a connection of its own, on which it also holds
//! the session advisory lock `(NAMESPACE, term)`. A standby probes every
//! `failover / 15` (at most 1 s) and takes over when the lease has expired
//! (a stopped, partitioned or hung leader) or the advisory lock is free (the
//! leader's session is gone: process killed, connection dropped, clean
//! stop), whichever comes first. Taking over is one transaction: lock the
//! row `FOR UPDATE`, check again, take the advisory lock of the next term,
//! write `term + 1`. See `lease.rs`.
//!
//! # Fencing
//!
//! Every write of a leader is fenced by its term; `fence.rs` says how, and
//! why no transition is lost or recorded twice across a failover.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};

mod alert_copy;
mod alerts;
mod db;
mod fence;
mod lease;
mod lookup;
mod outbox;
mod portable;
mod query;
mod record;
mod retention;
mod rows;
mod sightings;
pub mod target;
mod tls;

#[cfg(test)]
pub(crate) mod testdb;
#[cfg(test)]
mod tests;

pub use db::SCHEMA_VERSION;
pub use lease::PgLeadership;
pub use target::{PgTarget, Roots, TlsMode};

use crate::config::PostgresConfig;
use crate::store::{
    AlertEntry, Chunk, DeliveryFilter, DeliveryRow, EventFilter, Lookup, LookupBacklog,
    LookupOutcome, Mark, OutboxEntry, Pause, PollHealth, RecordSummary, Redeliver, Routes,
    SinkRoute, SinkStats, Store, StoreError, StoreReport,
};
use crate::transition::TransitionRow;

/// Whether the TLS setup of `target` can be built (its `sslrootcert` is
/// readable and holds CA certificates), without connecting.
pub fn check_tls(target: &PgTarget) -> Result<(), String> {
    tls::connector(target).map(|_| ())
}

/// Connections kept open per node: the poller, a few sinks, metrics.
const POOL_SIZE: usize = 8;

/// The PostgreSQL backend of [`Store`]. A plain handle (commands, standby
/// reads) writes unfenced; the one a [`crate::store::Lease`] hands out
/// checks its term in every write transaction.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    location: Arc<str>,
    fence: Option<fence::Fence>,
    /// How long a fenced transaction may sit idle or run one statement.
    stall_limit: Duration,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .field("term", &self.fence.as_ref().map(|f| f.term))
            .finish()
    }
}

impl PgStore {
    /// Connects, migrates (under the migration lock) and returns an
    /// unfenced handle.
    pub async fn open(config: &PostgresConfig) -> Result<PgStore, StoreError> {
        let connector = db::Connector::new(config)?;
        PgStore::open_with(&connector, config.failover).await
    }

    /// Connects to a store that must exist at this build's schema, for a
    /// command beside the daemon (`events`, `deliveries`, `redeliver`):
    /// nothing is created or migrated (see `db::check_version`).
    pub async fn open_existing(config: &PostgresConfig) -> Result<PgStore, StoreError> {
        let connector = db::Connector::new(config)?;
        let (client, _closed) = connector.connect().await?;
        db::check_version(&client, &connector.location).await?;
        drop(client);
        PgStore::unfenced(&connector, config.failover)
    }

    async fn open_with(
        connector: &db::Connector,
        failover: Duration,
    ) -> Result<PgStore, StoreError> {
        let (mut client, _closed) = connector.connect().await?;
        db::migrate(&mut client, &connector.location).await?;
        drop(client);
        PgStore::unfenced(connector, failover)
    }

    /// A handle on `connector`'s database, its pool not yet connected.
    fn unfenced(connector: &db::Connector, failover: Duration) -> Result<PgStore, StoreError> {
        Ok(PgStore {
            pool: connector.pool(POOL_SIZE)?,
            location: Arc::from(connector.location.as_str()),
            fence: None,
            stall_limit: failover / 3,
        })
    }

    async fn client(&self) -> Result<Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| db::pool_error(&self.location, e))
    }

    fn err(&self, context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| db::classify(&self.location, context, &e)
    }

    async fn read_cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT position FROM cursor WHERE id = 1", &[])
            .await
            .map_err(self.err("reading the cursor"))?;
        Ok(row.and_then(|r| DateTime::from_timestamp_millis(r.get(0))))
    }

    async fn make_report(&self) -> Result<StoreReport, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT max(version) FROM schema_version), (SELECT count(*) FROM transitions)",
                &[],
            )
            .await
            .map_err(self.err("reading the store's figures"))?;
        drop(client);
        Ok(StoreReport {
            location: self.location.to_string(),
            schema_version: row.get::<_, Option<i32>>(0).unwrap_or(0).max(0) as u32,
            transitions: row.get::<_, i64>(1).max(0) as u64,
            cursor: self.read_cursor().await?,
            // PostgreSQL checks its own pages (data checksums, amcheck):
            // that is the database administrator's tool, not orderwatch's.
            damage: None,
        })
    }
}

#[async_trait]
impl Store for PgStore {
    fn location(&self) -> String {
        self.location.to_string()
    }

    async fn cursor(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.read_cursor().await
    }

    async fn rewind_cursor(&self, to: DateTime<Utc>) -> Result<(), StoreError> {
        self.fenced_execute(
            "setting the cursor back",
            "INSERT INTO cursor (id, position) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET position = excluded.position",
            &[&to.timestamp_millis()],
        )
        .await
        .map(|_| ())
    }

    async fn record(&self, chunk: Chunk, routes: Routes) -> Result<RecordSummary, StoreError> {
        self.record_chunk(&chunk, &routes).await
    }

    async fn due_after(
        &self,
        route: &SinkRoute,
        now: i64,
        limit: usize,
        after: i64,
        mut into: Vec<OutboxEntry>,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        into.extend(self.due_for(route, now, limit, after).await?);
        Ok(into)
    }

    async fn next_due(&self, route: &SinkRoute) -> Result<Option<i64>, StoreError> {
        self.next_due_for(route).await
    }

    async fn mark(&self, sink: &str, marks: Vec<(i64, Mark)>, now: i64) -> Result<(), StoreError> {
        self.mark_all(sink, &marks, now).await
    }

    async fn expire(
        &self,
        sink: &str,
        cutoff: i64,
        error: &str,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.expire_old(sink, cutoff, error, now).await
    }

    async fn retry_now(&self, sink: &str, now: i64) -> Result<usize, StoreError> {
        self.retry_all_now(sink, now).await
    }

    async fn prune_delivered(&self, before: i64, limit: usize) -> Result<usize, StoreError> {
        self.prune_old_delivered(before, limit).await
    }

    async fn purge_dead(
        &self,
        sink: Option<&str>,
        before: i64,
        limit: usize,
    ) -> Result<usize, StoreError> {
        self.purge_old_dead(sink, before, limit).await
    }

    async fn requeued_since(&self, sink: &str, since: i64) -> Result<bool, StoreError> {
        self.requeued(sink, since).await
    }

    async fn pause(&self, sink: &str, reason: &str, now: i64) -> Result<(), StoreError> {
        self.pause_sink(sink, reason, now).await
    }

    async fn pause_of(&self, sink: &str) -> Result<Option<Pause>, StoreError> {
        self.paused_since(sink).await
    }

    async fn set_alert_sinks(&self, sinks: &[String]) -> Result<(), StoreError> {
        self.replace_alert_sinks(sinks).await
    }

    async fn poll_health(
        &self,
        health: &PollHealth,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        self.record_poll_health(health, now).await
    }

    async fn alerts_due(
        &self,
        sink: &str,
        now: i64,
        limit: usize,
    ) -> Result<Vec<AlertEntry>, StoreError> {
        self.due_alerts(sink, now, limit).await
    }

    async fn next_alert_due(&self, sink: &str) -> Result<Option<i64>, StoreError> {
        self.next_due_alert(sink).await
    }

    async fn mark_alerts(
        &self,
        sink: &str,
        marks: Vec<(i64, Mark)>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.mark_alert_rows(sink, &marks, now).await
    }

    async fn redeliver(
        &self,
        route: &SinkRoute,
        what: &Redeliver,
        now: i64,
    ) -> Result<usize, StoreError> {
        self.requeue(route, what, now).await
    }

    async fn lookups_due(&self, now: i64, limit: usize) -> Result<Vec<Lookup>, StoreError> {
        self.due_lookups(now, limit).await
    }

    async fn lookups_done(
        &self,
        done: Vec<(Lookup, LookupOutcome)>,
        _now: i64,
    ) -> Result<(), StoreError> {
        self.finish_lookups(&done).await
    }

    async fn lookup_backlog(&self) -> Result<LookupBacklog, StoreError> {
        self.held_backlog().await
    }

    async fn release_held(&self) -> Result<u64, StoreError> {
        self.release_all_held().await
    }

    async fn events(&self, filter: &EventFilter) -> Result<Vec<TransitionRow>, StoreError> {
        self.list_events(filter).await
    }

    async fn deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<DeliveryRow>, StoreError> {
        self.list_deliveries(filter).await
    }

    async fn sink_stats(&self, routes: &[SinkRoute]) -> Result<Vec<SinkStats>, StoreError> {
        self.stats(routes).await
    }

    async fn report(&self, _deep: bool) -> Result<StoreReport, StoreError> {
        self.make_report().await
    }
}
