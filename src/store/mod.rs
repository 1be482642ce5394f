//! The SQLite store: dedupe state, the cursor and the per-sink outbox.
//!
//! Invariant: the cursor moves only in the transaction that records the
//! window's new transitions and their outbox rows. A crash at any point
//! repeats work; it never loses a transition.
//!
//! [`Db`] is the synchronous connection every query lives on (the CLI uses it
//! directly). [`Store`] is the daemon's async handle: it runs `Db` calls on
//! tokio's blocking pool so SQLite never blocks the runtime. Other processes
//! (`orderwatch events`, `deliveries`, `redeliver`) may open the same file
//! while the daemon runs: WAL mode lets them read and write alongside it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

mod outbox;
mod query;
mod record;
mod route;

pub use crate::transition::now_ms;
pub use outbox::{Mark, OutboxEntry, Redeliver};
pub use query::{DeliveryFilter, DeliveryRow, DeliveryState, EventFilter, SinkStats};
pub use record::{OrderChange, RecordSummary, TransitionRow};
pub use route::SinkRoute;

/// Migrations, applied in order; `PRAGMA user_version` is the index of the
/// last one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/0001_init.sql"),
    include_str!("../../migrations/0002_sink_cursor.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Why the store cannot be used, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `error` is not named `source`: the message shows it already, and a
    /// source would make `{:#}` print it twice.
    #[error(
        "cannot open store {path}: {error}; check that the directory exists and is writable by the orderwatch user"
    )]
    Open {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "store {path} is in use by another orderwatch daemon (lock file {lock} is held); stop the other daemon or point [store] path elsewhere"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error(
        "store {path} is not a SQLite database or is corrupted ({detail}); move it aside (a new store starts again from initial_lookback) or restore a backup"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "store {path} has schema version {found}, newer than the {supported} this orderwatch understands; upgrade orderwatch or use a backup made by this version"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("store {path} is read-only; make it and its directory writable by the orderwatch user")]
    ReadOnly { path: PathBuf },
    #[error("store {path}: the disk is full; free space, nothing recorded so far was lost")]
    Full { path: PathBuf },
    /// An I/O error or failure to open a file SQLite needs (the store, its
    /// -wal or -shm): the disk, its free space or permissions.
    #[error(
        "store {path}: {context}: {error}; check the disk (free space, errors in the kernel log) and that the store's directory is writable by the orderwatch user"
    )]
    Io {
        path: PathBuf,
        context: &'static str,
        error: rusqlite::Error,
    },
    #[error("store {path}: {context}: {error}")]
    Sql {
        path: PathBuf,
        context: &'static str,
        error: rusqlite::Error,
    },
    #[error("store task failed: {0}")]
    Task(String),
}

/// Keeps the daemon's exclusive lock for as long as it lives.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the daemon lock beside the database (`<db>.lock`), so a second
/// daemon on the same store is refused instead of double-delivering.
pub fn lock_for_daemon(db_path: &Path) -> Result<DaemonLock, StoreError> {
    let mut lock = db_path.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock)
        .map_err(|source| open_error(db_path, source))?;
    match file.try_lock() {
        Ok(()) => Ok(DaemonLock {
            _file: file,
            path: lock,
        }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: db_path.to_path_buf(),
            lock,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(open_error(db_path, source)),
    }
}

fn open_error(path: &Path, source: std::io::Error) -> StoreError {
    if source.kind() == std::io::ErrorKind::ReadOnlyFilesystem || source.raw_os_error() == Some(30)
    {
        return StoreError::ReadOnly {
            path: path.to_path_buf(),
        };
    }
    StoreError::Open {
        path: path.to_path_buf(),
        error: source,
    }
}

/// A synchronous connection to the store.
pub struct Db {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

impl Db {
    /// Opens (creating with mode 0600 if needed) and migrates the store.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        if path.is_dir() {
            // SQLite would only say "unable to open database file".
            return Err(StoreError::Open {
                path: path.to_path_buf(),
                error: std::io::Error::new(
                    std::io::ErrorKind::IsADirectory,
                    "it is a directory; [store] path names the database file, e.g. /var/lib/orderwatch/orderwatch.db",
                ),
            });
        }
        if !path.exists() {
            // Create it ourselves so the database, and the -wal/-shm files
            // SQLite derives from it, are never world-readable.
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| open_error(path, source))?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| classify(path, "opening the database", e))?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.configure()?;
        db.migrate()?;
        Ok(db)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A second connection to an open store, for reading beside the writer.
    fn open_reader(path: &Path) -> Result<Db, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| classify(path, "opening a reading connection", e))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| db.err("setting the busy timeout", e))?;
        db.conn
            .pragma_update(None, "query_only", "ON")
            .map_err(|e| db.err("making the reader read-only", e))?;
        Ok(db)
    }

    fn configure(&mut self) -> Result<(), StoreError> {
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| self.err("setting the busy timeout", e))?;
        // WAL lets the CLI read and write beside the daemon. NORMAL is safe in
        // WAL mode against process crashes; a power cut may undo the last
        // commits, which only means repeating work (cursor and outbox roll back together).
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| self.err("enabling WAL", e))?;
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.err("setting synchronous", e))?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| self.err("enabling foreign keys", e))?;
        Ok(())
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&path, "starting the migration", e))?;
        let found: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| classify(&path, "reading the schema version", e))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.execute_batch(sql)
                .map_err(|e| classify(&path, "applying a migration", e))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(|e| classify(&path, "recording the schema version", e))?;
            tracing::info!(store = %path.display(), version = i + 1, "applied store migration");
        }
        tx.commit()
            .map_err(|e| classify(&path, "committing the migration", e))
    }

    /// SQLite's `PRAGMA quick_check`: `None` when the file is sound, else its
    /// first complaint. Reads the whole file, so only `check` runs it.
    pub fn quick_check(&self) -> Result<Option<String>, StoreError> {
        let first: String = self
            .conn
            .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
            .map_err(|e| self.err("checking the database file", e))?;
        Ok((first != "ok").then_some(first))
    }

    /// Schema version on disk.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err("reading the schema version", e))
    }

    fn err(&self, context: &'static str, e: rusqlite::Error) -> StoreError {
        classify(&self.path, context, e)
    }
}

/// Turns SQLite's error codes into errors that say what to do.
fn classify(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
    let path = path.to_path_buf();
    match e.sqlite_error_code() {
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::DiskFull) => StoreError::Full { path },
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path,
            detail: e.to_string(),
        },
        Some(ErrorCode::SystemIoFailure) | Some(ErrorCode::CannotOpen) => StoreError::Io {
            path,
            context,
            error: e,
        },
        _ => StoreError::Sql {
            path,
            context,
            error: e,
        },
    }
}

/// The daemon's async handle on the store: one connection that writes
/// (recording, ledger updates) and one that only reads (what is due, stats).
/// WAL lets the reader work while the writer holds a long transaction, so a
/// sink reads and delivers a big catch-up on one core while the poller
/// records the rest of it on the other.
#[derive(Clone, Debug)]
pub struct Store {
    db: Arc<Mutex<Db>>,
    reader: Arc<Mutex<Db>>,
}

impl Store {
    /// Wraps an open (migrated) store and opens its reader connection.
    pub fn new(db: Db) -> Result<Store, StoreError> {
        let reader = Db::open_reader(db.path())?;
        Ok(Store {
            db: Arc::new(Mutex::new(db)),
            reader: Arc::new(Mutex::new(reader)),
        })
    }

    /// Runs `f` on the blocking pool with the writing connection.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        Store::on(Arc::clone(&self.db), f).await
    }

    /// Runs a read-only `f` on the blocking pool with the reading
    /// connection; it sees everything committed before it starts.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Db) -> Result<T, StoreError> + Send + 'static,
    {
        Store::on(Arc::clone(&self.reader), move |db| f(db)).await
    }

    async fn on<T, F>(conn: Arc<Mutex<Db>>, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db) -> Result<T, StoreError> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

#[cfg(test)]
mod tests;
