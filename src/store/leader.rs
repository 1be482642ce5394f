//! Leadership: of all the nodes sharing one store, only the leader polls
//! and delivers. The daemon asks a [`Leadership`] for a [`Lease`] (waiting
//! as a standby until it gets one), works through the lease's store (whose
//! writes are fenced by the lease's term), and goes back to standby when
//! the lease is lost.
//!
//! SQLite's leadership is its lock file: one host, one daemon, no standby
//! (a second daemon is refused, as before). PostgreSQL's is a lease row
//! with a term number; see `postgres/mod.rs` for why no transition is lost
//! or recorded twice across a failover.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{SharedStore, StoreError, sqlite};

/// Who leads, for standby status lines (`leader is db-2:4711`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    /// `host:pid` of the leading node.
    pub holder: String,
    /// Grows by one at each takeover.
    pub term: i64,
    /// When this term began.
    pub since: DateTime<Utc>,
    /// Whether the leader is alive as far as the store can tell (its lease
    /// is current and its session connected); `false`: a standby is about
    /// to take over.
    pub live: bool,
}

/// Leadership of one store.
#[async_trait]
pub trait Leadership: Send + Sync + std::fmt::Debug {
    /// Waits until this node leads, then returns its lease. Connection
    /// failures are retried with backoff (and logged); only problems a wait
    /// cannot cure (SQLite's lock held by another process, a store from a
    /// newer orderwatch) are returned.
    async fn acquire(&self) -> Result<Lease, StoreError>;

    /// Takes the lease if nobody holds it; `None` when another node leads.
    async fn try_acquire(&self) -> Result<Option<Lease>, StoreError>;

    /// The current leader, if any.
    async fn leader(&self) -> Result<Option<Leader>, StoreError>;

    /// The store as a standby reads it (status, metrics), unfenced; `None`
    /// where a node without the lease does not open the store at all
    /// (SQLite: one daemon per store, a second one is refused).
    fn standby_store(&self) -> Option<SharedStore>;
}

/// This node's leadership, until it is dropped (which hands leadership
/// over at once) or lost.
pub struct Lease {
    term: i64,
    store: SharedStore,
    lost: CancellationToken,
    why: Arc<Mutex<Option<String>>>,
    describe: String,
    _guard: Box<dyn Send + Sync>,
}

impl Lease {
    /// A lease of `term`. `store` is fenced by it; `lost` is cancelled (and
    /// `why` says why) when leadership ends; `guard` holds it while alive.
    pub fn new(
        term: i64,
        store: SharedStore,
        lost: CancellationToken,
        why: Arc<Mutex<Option<String>>>,
        describe: String,
        guard: impl Send + Sync + 'static,
    ) -> Lease {
        Lease {
            term,
            store,
            lost,
            why,
            describe,
            _guard: Box::new(guard),
        }
    }

    pub fn term(&self) -> i64 {
        self.term
    }

    /// Where the keeper writes why the lease was lost, for another handle
    /// fenced by this lease.
    pub(crate) fn why_handle(&self) -> Arc<Mutex<Option<String>>> {
        Arc::clone(&self.why)
    }

    /// The store to poll and deliver with: every write that records a
    /// window, moves a cursor or marks a delivery fails with
    /// [`StoreError::Fenced`] once another node has taken over.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }

    /// Cancelled when leadership is lost (the lease connection dropped,
    /// renewal failed for too long, or another node took over).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    /// Why leadership was lost, once it was.
    pub fn why_lost(&self) -> Option<String> {
        if !self.lost.is_cancelled() {
            return None;
        }
        let why = self.why.lock().unwrap_or_else(|e| e.into_inner()).clone();
        Some(why.unwrap_or_else(|| "leadership ended".to_string()))
    }

    /// What holds it, for messages ("lock file …", "lease term 4 on …").
    pub fn describe(&self) -> &str {
        &self.describe
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease")
            .field("term", &self.term)
            .field("describe", &self.describe)
            .field("lost", &self.lost.is_cancelled())
            .finish_non_exhaustive()
    }
}

/// `host:pid` of this process, naming it in the store's leadership row.
pub fn node_identity() -> String {
    let host = hostname()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string());
    format!("{host}:{}", std::process::id())
}

/// The kernel's host name, by `gethostname(2)`: the unit's `ProcSubset=pid`
/// hides `/proc/sys/kernel/hostname`, and a standby's `leader is <host:pid>`
/// must name a host an operator recognises.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most
    // that many bytes and we read only up to the first NUL within it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec()).ok()
}

/// SQLite: the lock file beside the database is the leadership. Term 1
/// always; it is never lost while the process lives.
#[derive(Debug)]
pub(super) struct SqliteLeadership {
    pub path: PathBuf,
}

impl SqliteLeadership {
    fn take(&self) -> Result<Lease, StoreError> {
        // The lock first: a second daemon must not even migrate.
        let lock = sqlite::lock_for_daemon(&self.path)?;
        let store = sqlite::SqliteStore::open(&self.path)?;
        Ok(Lease::new(
            1,
            Arc::new(store),
            CancellationToken::new(),
            Arc::default(),
            format!("lock file {}", lock.path.display()),
            lock,
        ))
    }
}

#[async_trait]
impl Leadership for SqliteLeadership {
    async fn acquire(&self) -> Result<Lease, StoreError> {
        let this = SqliteLeadership {
            path: self.path.clone(),
        };
        tokio::task::spawn_blocking(move || this.take())
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    async fn try_acquire(&self) -> Result<Option<Lease>, StoreError> {
        match self.acquire().await {
            Ok(lease) => Ok(Some(lease)),
            Err(StoreError::Locked { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn leader(&self) -> Result<Option<Leader>, StoreError> {
        let path = self.path.clone();
        let held = tokio::task::spawn_blocking(move || sqlite::lock_for_daemon(&path))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        Ok(match held {
            Ok(_) => None,
            Err(StoreError::Locked { lock, .. }) => Some(Leader {
                holder: format!(
                    "another orderwatch on this host (lock file {})",
                    lock.display()
                ),
                term: 1,
                since: DateTime::<Utc>::UNIX_EPOCH,
                live: true,
            }),
            Err(e) => return Err(e),
        })
    }

    fn standby_store(&self) -> Option<SharedStore> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_node_is_named_by_its_host_and_pid_without_reading_proc() {
        let node = super::node_identity();
        let (host, pid) = node.rsplit_once(':').unwrap();
        assert_eq!(pid, std::process::id().to_string());
        assert_eq!(Some(host.to_string()), super::hostname());
        assert_ne!(host, "unknown-host");
    }
}
