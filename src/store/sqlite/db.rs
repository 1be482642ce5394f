//! The SQLite connection: opening (created 0600), pragmas, migrations, the
//! daemon's lock file, and turning SQLite's error codes into [`StoreError`]s
//! that say what to do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::store::StoreError;

/// Migrations, applied in order; `PRAGMA user_version` is the index of the
/// last one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_init.sql"),
    include_str!("../../../migrations/0002_sink_cursor.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

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
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
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
    pub(super) fn open_reader(path: &Path) -> Result<Db, StoreError> {
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

    pub(super) fn err(&self, context: &'static str, e: rusqlite::Error) -> StoreError {
        classify(&self.path, context, e)
    }
}

/// Turns SQLite's error codes into errors that say what to do.
pub(super) fn classify(path: &Path, context: &'static str, e: rusqlite::Error) -> StoreError {
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
            error: e.to_string(),
        },
        _ => StoreError::Sql {
            path,
            context,
            error: e.to_string(),
        },
    }
}
