//! Why the store cannot be used, with what to do about it. One error type
//! for every backend: callers decide what to do by what went wrong (full,
//! read-only, corrupt, locked), never by which database said so.

use std::path::PathBuf;

/// A store failure. Every message names the store and says what to do.
///
/// Fields holding the underlying error are not named `source` on purpose:
/// the message shows them already, and a source would make `{:#}` print
/// them twice.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
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
    /// An I/O error or failure to open a file the database needs: the disk,
    /// its free space or permissions.
    #[error(
        "store {path}: {context}: {error}; check the disk (free space, errors in the kernel log) and that the store's directory is writable by the orderwatch user"
    )]
    Io {
        path: PathBuf,
        context: &'static str,
        error: String,
    },
    #[error("store {path}: {context}: {error}")]
    Sql {
        path: PathBuf,
        context: &'static str,
        error: String,
    },
    #[error(
        "store {path} does not exist; check [store] in the config (the daemon creates the store at its first start)"
    )]
    Missing { path: PathBuf },
    #[error(
        "{path} is not an orderwatch store ({detail}); orderwatch will not change another application's database: point [store] at a file of its own"
    )]
    Foreign { path: PathBuf, detail: String },
    #[error(
        "store {path} has schema version {found}, older than the {current} this orderwatch uses; start the daemon once (it upgrades the store), then run this command again"
    )]
    Outdated {
        path: PathBuf,
        found: u32,
        current: u32,
    },
    #[error(
        "store {path} was deleted or replaced while orderwatch had it open; what it records now would go to a file nobody reads, so it stops: restart it (a new store starts again from initial_lookback)"
    )]
    Replaced { path: PathBuf },
    #[error("store task failed: {0}")]
    Task(String),
    /// PostgreSQL could not be reached or refused the login. `location`
    /// names the host (never a password).
    #[error(
        "cannot connect to store {location}: {error}; check that PostgreSQL runs there and accepts this node, and the role, password and sslmode in [store]"
    )]
    Unreachable { location: String, error: String },
    /// A PostgreSQL statement failed; `hint` says what to do when the cause
    /// is known (a missing privilege, a read-only server).
    #[error("store {location}: {context}: {error}{hint}")]
    Postgres {
        location: String,
        context: &'static str,
        error: String,
        hint: &'static str,
    },
    /// Another node leads: only the leader polls and delivers.
    #[error(
        "store {location} is led by another orderwatch ({leader}); stop it, or wait: a standby takes over when the leader stops or its lease runs out"
    )]
    Led { location: String, leader: String },
    /// This node's leadership ended (another node took over, term `current`)
    /// before the transaction could commit: nothing of it was written.
    #[error(
        "store {location}: this node no longer leads (its term {term} was taken over by {leader}, term {current}); nothing was committed"
    )]
    Fenced {
        location: String,
        term: i64,
        current: i64,
        leader: String,
    },
    /// This node gave up its leadership (term `term`) before the
    /// transaction began: its lease could not be kept.
    #[error(
        "store {location}: this node no longer leads (term {term}: {why}); nothing was committed"
    )]
    LeaseLost {
        location: String,
        term: i64,
        why: String,
    },
    /// `orderwatch store copy` refuses a target that already holds data.
    #[error(
        "store {location} is not empty ({what}); copying would mix two histories; pass --force to replace its contents"
    )]
    NotEmpty { location: String, what: String },
}

impl StoreError {
    /// Errors no retry can fix while this generation runs, so the poller
    /// and the delivery loops stop at once instead of backing off: the
    /// store was replaced (the daemon stops), or this node no longer leads
    /// ([`StoreError::ends_leadership`]: it goes back to standby).
    pub fn is_fatal(&self) -> bool {
        matches!(self, StoreError::Replaced { .. }) || self.ends_leadership()
    }

    /// This node's writes are fenced: another node took over, or this one
    /// gave its lease up. Retrying cannot help; only a new lease can.
    pub fn ends_leadership(&self) -> bool {
        matches!(
            self,
            StoreError::Fenced { .. } | StoreError::LeaseLost { .. }
        )
    }
}
