//! The leadership lease on PostgreSQL (the argument is in `mod.rs`): a
//! standby probes, takes over in one transaction, and the leader renews its
//! lease on a connection of its own until it drops the lease or loses it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::PgStore;
use super::db::{self, Connector, NAMESPACE};
use crate::config::PostgresConfig;
use crate::store::{Leader, Leadership, Lease, StoreError};

/// A connection of the lease's own: the session advisory lock lives on it.
struct Conn {
    client: tokio_postgres::Client,
    closed: oneshot::Receiver<String>,
}

/// Leadership of a PostgreSQL store for the node `identity` (`host:pid`).
pub struct PgLeadership {
    store: PgStore,
    pub(super) connector: Connector,
    identity: String,
    failover: Duration,
    /// The standby's probing connection, reused between probes; it becomes
    /// the lease's connection on takeover.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl std::fmt::Debug for PgLeadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLeadership")
            .field("store", &self.store)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl PgLeadership {
    /// Connects and migrates; takes no leadership yet.
    pub async fn open(
        config: &PostgresConfig,
        identity: String,
    ) -> Result<PgLeadership, StoreError> {
        let connector = Connector::new(config)?;
        let store = PgStore::open_with(&connector, config.failover).await?;
        Ok(PgLeadership {
            store,
            connector,
            identity,
            failover: config.failover,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    /// The store with its writes fenced by `lease` (held by this node):
    /// once another node took over, they fail instead of landing.
    pub fn fenced_by(&self, lease: &Lease) -> PgStore {
        self.store
            .fenced(lease.term(), lease.lost(), lease.why_handle())
    }

    /// The unfenced store, for a standby's reads (status, metrics).
    pub fn store(&self) -> &PgStore {
        &self.store
    }

    /// How long a lease lasts without renewal.
    fn ttl(&self) -> Duration {
        self.failover * 2 / 3
    }

    /// How often a standby looks at the lease.
    fn poll(&self) -> Duration {
        (self.failover / 15).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }

    fn err(&self, context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError + '_ {
        move |e| db::classify(&self.connector.location, context, &e)
    }

    /// One look at the lease; takes it over when it is free or expired.
    /// Bounded by `failover`: a connection that went silent (its packets
    /// dropped, not refused) is given up and the next look makes another,
    /// instead of this standby waiting on it for ever while the leader it
    /// watches may be gone.
    async fn attempt(&self) -> Result<Option<Lease>, StoreError> {
        let mut slot = self.conn.lock().await;
        match tokio::time::timeout(self.failover, self.look(&mut slot)).await {
            Ok(result) => result,
            Err(_) => {
                *slot = None;
                Err(self.silent("looking at the leadership lease"))
            }
        }
    }

    /// The store did not answer within `failover`.
    fn silent(&self, doing: &str) -> StoreError {
        StoreError::Unreachable {
            location: self.connector.location.clone(),
            error: format!(
                "{doing}: no answer within {}; trying another connection",
                humantime::format_duration(self.failover)
            ),
        }
    }

    async fn look(&self, slot: &mut Option<Conn>) -> Result<Option<Lease>, StoreError> {
        if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
            let (client, closed) = self.connector.connect().await?;
            *slot = Some(Conn { client, closed });
        }
        let Some(conn) = slot.as_mut() else {
            return Ok(None);
        };
        let row = conn
            .client
            .query_one(
                "SELECT expires_at > now(), pg_try_advisory_xact_lock($1, term::int)
                 FROM leadership WHERE id = 1",
                &[&NAMESPACE],
            )
            .await
            .map_err(self.err("looking at the leadership lease"))?;
        let (live, vacant): (bool, bool) = (row.get(0), row.get(1));
        if live && !vacant {
            return Ok(None);
        }
        let started = Instant::now();
        let term = match self.take_over(&mut conn.client).await {
            Ok(Some(term)) => term,
            Ok(None) => return Ok(None),
            Err(e) => {
                // A session lock may have been taken: drop the connection.
                *slot = None;
                return Err(e);
            }
        };
        let Some(conn) = slot.take() else {
            return Ok(None);
        };
        tracing::info!(store = %self.connector.location, term, node = %self.identity, "this node now leads");
        Ok(Some(self.lease(conn, term, started)))
    }

    /// The takeover transaction: lock the row (waiting for the old leader's
    /// write transactions to end), check again, take the liveness lock of
    /// the next term, write it. `None` if someone else leads after all.
    pub(super) async fn take_over(
        &self,
        client: &mut tokio_postgres::Client,
    ) -> Result<Option<i64>, StoreError> {
        let wait = format!("{}ms", self.failover.as_millis());
        let ttl_ms = self.ttl().as_millis() as f64;
        let tx = client
            .transaction()
            .await
            .map_err(self.err("starting a takeover"))?;
        tx.execute("SELECT set_config('lock_timeout', $1, true)", &[&wait])
            .await
            .map_err(self.err("starting a takeover"))?;
        let row = tx
            .query_one(
                "SELECT term, expires_at > now() FROM leadership WHERE id = 1 FOR UPDATE",
                &[],
            )
            .await
            .map_err(self.err("locking the leadership lease"))?;
        let (term, live): (i64, bool) = (row.get(0), row.get(1));
        // A node of an older build must not lead a store a newer one has
        // migrated (a rolling upgrade): it would write what it does not
        // know the schema of. It says so and stops, rather than take over.
        let location = &self.connector.location;
        let version = db::schema_version(&tx, location).await?.unwrap_or(0);
        if version > super::SCHEMA_VERSION {
            return Err(db::too_new(location, version));
        }
        if live {
            let vacant: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1, $2::bigint::int)",
                    &[&NAMESPACE, &term],
                )
                .await
                .map_err(self.err("looking for the leader's session"))?
                .get(0);
            if !vacant {
                return Ok(None);
            }
        }
        let next = term + 1;
        let mine: bool = tx
            .query_one(
                "SELECT pg_try_advisory_lock($1, $2::bigint::int)",
                &[&NAMESPACE, &next],
            )
            .await
            .map_err(self.err("taking the leader's lock"))?
            .get(0);
        if !mine {
            return Ok(None);
        }
        tx.execute(
            "UPDATE leadership SET term = $1, holder = $2, since = now(),
                expires_at = now() + $3::float8 * interval '1 millisecond'
             WHERE id = 1",
            &[&next, &self.identity, &ttl_ms],
        )
        .await
        .map_err(self.err("taking over the leadership lease"))?;
        tx.commit()
            .await
            .map_err(self.err("committing the takeover"))?;
        Ok(Some(next))
    }

    /// Who holds the lease, on a pooled connection.
    async fn read_leader(&self) -> Result<Option<Leader>, StoreError> {
        let client = self.store.client().await?;
        let row = client
            .query_one(
                "SELECT term, holder, (extract(epoch FROM since) * 1000)::bigint, expires_at > now(),
                        pg_try_advisory_xact_lock($1, term::int)
                 FROM leadership WHERE id = 1",
                &[&NAMESPACE],
            )
            .await
            .map_err(self.err("reading the leadership lease"))?;
        let term: i64 = row.get(0);
        if term == 0 {
            return Ok(None);
        }
        let (live, vacant): (bool, bool) = (row.get(3), row.get(4));
        Ok(Some(Leader {
            holder: row.get(1),
            term,
            since: chrono::DateTime::from_timestamp_millis(row.get(2)).unwrap_or_default(),
            live: live && !vacant,
        }))
    }

    /// The lease of `term`, renewed in the background on `conn`.
    fn lease(&self, conn: Conn, term: i64, started: Instant) -> Lease {
        let lost = CancellationToken::new();
        let why: Arc<Mutex<Option<String>>> = Arc::default();
        let stop = CancellationToken::new();
        let keeper = Keeper {
            client: conn.client,
            term,
            ttl: self.ttl(),
            location: self.connector.location.clone(),
            lost: lost.clone(),
            why: Arc::clone(&why),
        };
        tokio::spawn(keeper.run(conn.closed, stop.clone(), started + self.ttl()));
        let store = self.store.fenced(term, lost.clone(), Arc::clone(&why));
        let describe = format!(
            "leadership lease term {term} on {}",
            self.connector.location
        );
        Lease::new(
            term,
            Arc::new(store),
            lost,
            why,
            describe,
            stop.drop_guard(),
        )
    }
}

/// Renews a lease until it is dropped (`stop`) or lost.
struct Keeper {
    client: tokio_postgres::Client,
    term: i64,
    ttl: Duration,
    location: String,
    lost: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
}

impl Keeper {
    /// `deadline`: when the lease surely ends without a renewal, counted
    /// from before the statement that set it (the server counts from its
    /// transaction start, which is later).
    async fn run(
        self,
        mut closed: oneshot::Receiver<String>,
        stop: CancellationToken,
        mut deadline: Instant,
    ) {
        let every = self.ttl / 4;
        let ttl_ms = self.ttl.as_millis() as f64;
        loop {
            tokio::select! {
                // Dropped: returning drops the connection, which frees the
                // session lock, so a standby takes over at its next probe.
                _ = stop.cancelled() => return,
                why = &mut closed => {
                    let why = why.unwrap_or_else(|_| "the connection ended".to_string());
                    return self.lose(format!("the lease connection dropped: {why}"));
                }
                _ = tokio::time::sleep(every) => {}
            }
            let sent = Instant::now();
            // Never past the deadline: a renewal still pending then may
            // already be too late, and the lease must be given up by the
            // time the server lets a standby take it.
            let left = deadline.saturating_duration_since(sent);
            let renewed = tokio::time::timeout(
                every.min(left),
                self.client.execute(
                    "UPDATE leadership SET expires_at = now() + $2::float8 * interval '1 millisecond'
                     WHERE id = 1 AND term = $1",
                    &[&self.term, &ttl_ms],
                ),
            )
            .await;
            match renewed {
                Ok(Ok(1)) => deadline = sent + self.ttl,
                Ok(Ok(_)) => return self.lose("another node took over".to_string()),
                Ok(Err(e)) => {
                    tracing::warn!(store = %self.location, term = self.term, error = %crate::http::error_chain(&e), "cannot renew the leadership lease");
                }
                Err(_) => {
                    tracing::warn!(store = %self.location, term = self.term, "renewing the leadership lease takes too long");
                }
            }
            if Instant::now() + every >= deadline {
                return self.lose(format!(
                    "the lease could not be renewed within {}",
                    humantime::format_duration(self.ttl)
                ));
            }
        }
    }

    fn lose(&self, why: String) {
        tracing::warn!(store = %self.location, term = self.term, why = %why, "this node lost its leadership");
        *self.why.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
        self.lost.cancel();
    }
}

#[async_trait]
impl Leadership for PgLeadership {
    async fn acquire(&self) -> Result<Lease, StoreError> {
        let mut backoff = self.poll();
        let mut seen: Option<(String, i64)> = None;
        loop {
            match self.attempt().await {
                Ok(Some(lease)) => return Ok(lease),
                Ok(None) => {
                    backoff = self.poll();
                    if let Ok(Some(leader)) = self.leader().await {
                        let now = (leader.holder.clone(), leader.term);
                        if seen.as_ref() != Some(&now) {
                            tracing::info!(store = %self.connector.location, leader = %leader.holder, term = leader.term, "standby: another node leads");
                            seen = Some(now);
                        }
                    }
                }
                Err(e @ (StoreError::TooNew { .. } | StoreError::Task(_))) => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = %humantime::format_duration(backoff), "standby: cannot reach the store");
                    // At most `failover` apart: once the database is back,
                    // some node leads again within about that long.
                    backoff = (backoff * 2).min(self.failover);
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    async fn try_acquire(&self) -> Result<Option<Lease>, StoreError> {
        self.attempt().await
    }

    fn standby_store(&self) -> Option<crate::store::SharedStore> {
        Some(Arc::new(self.store.clone()))
    }

    async fn leader(&self) -> Result<Option<Leader>, StoreError> {
        tokio::time::timeout(self.failover, self.read_leader())
            .await
            .unwrap_or_else(|_| Err(self.silent("reading the leadership lease")))
    }
}
