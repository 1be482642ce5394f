//! Connections to a PostgreSQL store: the pool, single connections (the
//! leadership lease keeps its own), migrations under an advisory lock, and
//! turning PostgreSQL's errors into [`StoreError`]s that say what to do.

use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{PostgresConfig, Secret};
use crate::http::error_chain;
use crate::store::StoreError;

/// Migrations, applied in order; `schema_version.version` is the index of
/// the last one applied. Numbered like SQLite's (see the first file).
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_sink_cursor.sql"),
    include_str!("../../../migrations/postgres/0003_retention.sql"),
    include_str!("../../../migrations/postgres/0004_returns.sql"),
    include_str!("../../../migrations/postgres/0005_enrich.sql"),
    include_str!("../../../migrations/postgres/0006_alerts.sql"),
];

/// The schema version this build writes; the same as SQLite's.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Advisory lock keys of orderwatch (`pg_advisory_lock(NAMESPACE, k)`):
/// [`MIGRATION_LOCK`] serializes migrations; a non-negative `k` is the
/// liveness lock of the leader of term `k`.
pub(super) const NAMESPACE: i32 = 0x6f77_6174; // "owat"
pub(super) const MIGRATION_LOCK: i32 = -1;

/// How long a pooled connection may take to answer its check before it is
/// dropped and another one made.
const RECYCLE_TIMEOUT: Duration = Duration::from_secs(3);

/// Everything needed to open connections to one store.
#[derive(Clone)]
pub(super) struct Connector {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
    pub location: String,
}

impl Connector {
    /// Reads the password and the TLS roots: the only I/O before connecting.
    pub fn new(pg: &PostgresConfig) -> Result<Connector, StoreError> {
        let location = pg.target.location().to_string();
        let password: Option<Secret> = match &pg.password {
            None => None,
            Some(source) => Some(source.load().map_err(|e| StoreError::Unreachable {
                location: location.clone(),
                error: format!("cannot read the password from {source}: {e}"),
            })?),
        };
        let tls = super::tls::connector(&pg.target).map_err(|error| StoreError::Unreachable {
            location: location.clone(),
            error,
        })?;
        Ok(Connector {
            config: pg
                .target
                .connect_config(password.as_ref().map(Secret::expose)),
            tls,
            location,
        })
    }

    /// A pool of at most `size` connections.
    pub fn pool(&self, size: usize) -> Result<Pool, StoreError> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            // A pooled connection is asked a round trip before it is
            // handed out (within `RECYCLE_TIMEOUT`): one that went silent
            // is dropped and replaced, not given to the next generation's
            // poller to hang on.
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let wait = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(Duration::from_secs(10));
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(wait * 3))
            .create_timeout(Some(wait))
            .recycle_timeout(Some(RECYCLE_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unreachable {
                location: self.location.clone(),
                error: e.to_string(),
            })
    }

    /// One connection of its own, outside the pool; its driver task ends
    /// (and `closed` fires) when the connection drops.
    pub async fn connect(
        &self,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio::sync::oneshot::Receiver<String>,
        ),
        StoreError,
    > {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| classify(&self.location, "connecting", &e))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let why = match connection.await {
                Ok(()) => "the connection was closed".to_string(),
                Err(e) => error_chain(&e),
            };
            let _ = tx.send(why);
        });
        Ok((client, rx))
    }
}

/// Applies the migrations this build knows, refusing a store written by a
/// newer orderwatch. Serialized by an advisory lock held for the
/// transaction, so nodes starting together migrate once, one after the other.
pub(super) async fn migrate(
    client: &mut tokio_postgres::Client,
    location: &str,
) -> Result<u32, StoreError> {
    let err = |context| move |e: tokio_postgres::Error| classify(location, context, &e);
    let tx = client
        .transaction()
        .await
        .map_err(err("starting the migration"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&NAMESPACE, &MIGRATION_LOCK],
    )
    .await
    .map_err(err("waiting for another node's migration"))?;
    let found = schema_version(&tx, location).await?.unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(too_new(location, found));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql)
            .await
            .map_err(err("applying a migration"))?;
        let version = (i + 1) as i32;
        tx.execute("UPDATE schema_version SET version = $1", &[&version])
            .await
            .map_err(err("recording the schema version"))?;
        tracing::info!(store = %location, version, "applied store migration");
    }
    tx.commit().await.map_err(err("committing the migration"))?;
    Ok(SCHEMA_VERSION)
}

/// For a command beside the daemon: the database holds an orderwatch store
/// at exactly this build's schema. Nothing is created or migrated: a
/// newer binary's `orderwatch events` must not upgrade the schema under
/// older nodes still running, nor a mistyped database get tables.
pub(super) async fn check_version(
    client: &tokio_postgres::Client,
    location: &str,
) -> Result<(), StoreError> {
    let path = PathBuf::from(location);
    let Some(found) = schema_version(client, location).await? else {
        return Err(StoreError::Missing { path });
    };
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(too_new(location, found)),
        std::cmp::Ordering::Less => Err(StoreError::Outdated {
            path,
            found,
            current: SCHEMA_VERSION,
        }),
    }
}

/// The schema version the store is at; `None` when it has no
/// `schema_version` table (no orderwatch store yet).
pub(super) async fn schema_version<C: GenericClient + Sync>(
    client: &C,
    location: &str,
) -> Result<Option<u32>, StoreError> {
    let err = |e: tokio_postgres::Error| classify(location, "reading the schema version", &e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let found: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM schema_version", &[])
        .await
        .map_err(err)?
        .get(0);
    Ok(Some(found.max(0) as u32))
}

/// A store at schema version `found`, newer than this build knows.
pub(super) fn too_new(location: &str, found: u32) -> StoreError {
    StoreError::TooNew {
        path: PathBuf::from(location),
        found,
        supported: SCHEMA_VERSION,
    }
}

/// Turns a PostgreSQL or connection error into one that says what to do.
pub(super) fn classify(
    location: &str,
    context: &'static str,
    e: &tokio_postgres::Error,
) -> StoreError {
    let location = location.to_string();
    let Some(db) = e.as_db_error() else {
        // No answer from the server: the network, TLS, or a closed connection.
        return StoreError::Unreachable {
            location,
            error: format!("{context}: {}", error_chain(e)),
        };
    };
    let error = format!("{} ({})", db.message(), db.code().code());
    let code = db.code();
    if *code == SqlState::DISK_FULL {
        return StoreError::Full {
            path: PathBuf::from(location),
        };
    }
    if [
        SqlState::INVALID_PASSWORD,
        SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        SqlState::INVALID_CATALOG_NAME,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(code)
    {
        return StoreError::Unreachable { location, error };
    }
    let hint = if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        "; the role needs the privileges listed in the README (own the database, or be granted them)"
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        "; this server is a read-only standby: point [store] url at the primary (target_session_attrs=read-write)"
    } else {
        ""
    };
    StoreError::Postgres {
        location,
        context,
        error,
        hint,
    }
}

/// A pool failure: no connection could be had.
pub(super) fn pool_error(location: &str, e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => classify(location, "connecting", &e),
        other => StoreError::Unreachable {
            location: location.to_string(),
            error: other.to_string(),
        },
    }
}
