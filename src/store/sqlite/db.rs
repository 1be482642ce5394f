//! The SQLite connection: opening (created 0600), pragmas, migrations, the
//! daemon's lock file, and turning SQLite's error codes into [`StoreError`]s
//! that say what to do.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use crate::store::StoreError;

/// Migrations, applied in order; `PRAGMA user_version` is the index of the
/// last one applied.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/0001_init.sql"),
    include_str!("../../../migrations/0002_sink_cursor.sql"),
    include_str!("../../../migrations/0003_retention.sql"),
    include_str!("../../../migrations/0004_returns.sql"),
    include_str!("../../../migrations/0005_enrich.sql"),
    include_str!("../../../migrations/0006_alerts.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// `PRAGMA application_id` of an orderwatch store ("OWCH"): how a command
/// tells its store from another application's database at the same path.
pub const APPLICATION_ID: i32 = 0x4f57_4348;

/// Keeps the daemon's exclusive lock for as long as it lives.
#[derive(Debug)]
pub struct DaemonLock {
    _file: File,
    pub path: PathBuf,
}

/// Takes the daemon lock beside the database (`<db>.lock`), so a second
/// daemon on the same store is refused instead of double-delivering. The
/// lock file sits beside the *real* database, symlinks resolved, so a
/// second daemon reaching it through another path finds the same lock.
pub fn lock_for_daemon(db_path: &Path) -> Result<DaemonLock, StoreError> {
    let real = real_path(db_path);
    let mut lock = real.as_os_str().to_owned();
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

/// `path` with symlinks resolved: the file itself if it exists, else its
/// directory resolved plus its name.
fn real_path(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// Device and inode of the file at `path`: the store's identity.
pub(super) fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// SQLite would only say "unable to open database file".
fn is_a_directory(path: &Path) -> StoreError {
    StoreError::Open {
        path: path.to_path_buf(),
        error: std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "it is a directory; [store] path names the database file, e.g. /var/lib/orderwatch/orderwatch.db",
        ),
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
            return Err(is_a_directory(path));
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
        // Before anything changes the file (WAL, migrations): refuse
        // another application's database.
        db.ours()?;
        db.configure()?;
        db.migrate()?;
        Ok(db)
    }

    /// Opens an existing store for a command beside the daemon: nothing is
    /// created, migrated or adopted. A missing file, another application's
    /// database, or (unless `outdated_ok`) a store needing an upgrade is
    /// refused with what to do.
    pub fn open_existing(path: &Path, outdated_ok: bool) -> Result<Db, StoreError> {
        match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Missing {
                    path: path.to_path_buf(),
                });
            }
            Err(e) => return Err(open_error(path, e)),
            Ok(m) if m.is_dir() => return Err(is_a_directory(path)),
            Ok(_) => {}
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| classify(path, "opening the database", e))?;
        let db = Db {
            conn,
            path: path.to_path_buf(),
        };
        db.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(|e| db.err("setting the busy timeout", e))?;
        let found = db.ours()?;
        if found == 0 {
            return Err(StoreError::Missing {
                path: path.to_path_buf(),
            });
        }
        if found > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION && !outdated_ok {
            return Err(StoreError::Outdated {
                path: path.to_path_buf(),
                found,
                current: SCHEMA_VERSION,
            });
        }
        Ok(db)
    }

    /// The schema version of an orderwatch store (0: an empty database),
    /// refusing a database of another application: one with tables but no
    /// orderwatch schema version, or another application id.
    fn ours(&self) -> Result<u32, StoreError> {
        let version: u32 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.err("reading the schema version", e))?;
        let app: i32 = self
            .conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| self.err("reading the application id", e))?;
        let tables: i64 = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| self.err("reading the schema", e))?;
        let foreign = |detail: String| StoreError::Foreign {
            path: self.path.clone(),
            detail,
        };
        if app != 0 && app != APPLICATION_ID {
            return Err(foreign(format!("its application id is {app:#x}")));
        }
        if version == 0 && tables > 0 {
            return Err(foreign(format!(
                "it has {tables} tables but no orderwatch schema"
            )));
        }
        Ok(version)
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

    /// Applies the missing migrations in one transaction. Foreign keys are
    /// off meanwhile, as SQLite's procedure for rebuilding a table that
    /// others reference requires (`0004` rebuilds `transitions`), and
    /// checked before the commit, so a migration can never leave a dangling
    /// reference behind.
    fn migrate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.conn
            .pragma_update(None, "foreign_keys", "OFF")
            .map_err(|e| classify(&path, "preparing the migration", e))?;
        let applied = self.apply_migrations();
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| classify(&path, "enabling foreign keys", e))?;
        applied
    }

    fn apply_migrations(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| classify(&path, "starting the migration", e))?;
        let found: u32 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| classify(&path, "reading the schema version", e))?;
        let app: i32 = tx
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| classify(&path, "reading the application id", e))?;
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
        if app != APPLICATION_ID {
            // Marks the store as orderwatch's (stores from before the
            // marker have a schema version, which is as good a sign).
            tx.pragma_update(None, "application_id", APPLICATION_ID)
                .map_err(|e| classify(&path, "marking the store", e))?;
        }
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(|e| classify(&path, "checking references after the migration", e))?;
        if let Some(table) = dangling {
            return Err(StoreError::Corrupt {
                path,
                detail: format!(
                    "after migrating, table {table} refers to rows that do not exist; the migration was rolled back"
                ),
            });
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
