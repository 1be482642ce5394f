//! `orderwatch store copy`: moving an install between SQLite and
//! PostgreSQL. Everything the store knows goes across as it is: the cursor,
//! every order's last status, every transition with its `seq` (sinks'
//! cursors and the ledger refer to it), occurrence and order details, the
//! transitions still held for their details, the sinks' pauses and cursors,
//! the whole delivery ledger, and the alerts (operational events) with
//! their ledger. The new store then carries on exactly where
//! the old one stopped: no transition is delivered again, none is missed.
//!
//! Both ends are held like a daemon holds them (SQLite's lock file, the
//! PostgreSQL leadership lease) for the whole copy, so a daemon running on
//! either is refused, and none can start halfway. The target is written in
//! one transaction: a failed copy leaves it as it was.

use tokio::sync::mpsc;

use super::postgres::{PgLeadership, PgStore};
use super::sqlite::{DaemonLock, SqliteStore, lock_for_daemon};
use super::{Leadership, Lease, StoreError, node_identity};
use crate::config::StoreConfig;
use crate::transition::TransitionRow;

/// Rows per batch on the way across.
pub(crate) const BATCH: usize = 5000;

/// An order's last status (table `orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    pub order_id: i64,
    pub certificate_id: Option<i64>,
    pub status: String,
    pub updated_at: i64,
}

/// A sink's stored state (table `sinks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRow {
    pub name: String,
    pub paused_at: Option<i64>,
    pub paused_reason: Option<String>,
    pub delivered_through: Option<i64>,
}

/// A row of the delivery ledger (table `outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub sink: String,
    pub seq: i64,
    pub order_id: i64,
    pub state: String,
    pub attempts: i64,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub first_failure_at: Option<i64>,
    pub last_error: Option<String>,
    pub done_at: Option<i64>,
}

/// A transition held until its order is looked up (table `enrichment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    pub seq: i64,
    pub order_id: i64,
    pub held_at: i64,
    pub next_attempt_at: i64,
    pub attempts: i64,
    pub last_error: Option<String>,
}

/// An operational event (table `alerts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub seq: i64,
    pub id: String,
    pub key: String,
    pub kind: String,
    pub about: Option<String>,
    pub data: String,
    pub created_at: i64,
}

/// One piece of a store on its way to another, in an order that keeps
/// references valid (transitions before the ledger rows naming them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Batch {
    Cursor(i64),
    Orders(Vec<OrderRow>),
    Transitions(Vec<TransitionRow>),
    Held(Vec<HeldRow>),
    Sinks(Vec<SinkRow>),
    Outbox(Vec<OutboxRow>),
    Alerts(Vec<AlertRow>),
    /// Rows of `alert_outbox` (their `seq` is the alert's; `order_id` is 0).
    AlertOutbox(Vec<OutboxRow>),
}

/// How much a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub cursor: bool,
    pub orders: u64,
    pub transitions: u64,
    pub sinks: u64,
    pub outbox: u64,
    /// Transitions held for their order's details.
    pub held: u64,
    /// Operational events (their deliveries count as ledger rows).
    pub alerts: u64,
}

impl Counts {
    pub fn is_empty(&self) -> bool {
        *self == Counts::default()
    }

    pub(crate) fn add(&mut self, batch: &Batch) {
        match batch {
            Batch::Cursor(_) => self.cursor = true,
            Batch::Orders(v) => self.orders += v.len() as u64,
            Batch::Transitions(v) => self.transitions += v.len() as u64,
            Batch::Held(v) => self.held += v.len() as u64,
            Batch::Sinks(v) => self.sinks += v.len() as u64,
            Batch::Outbox(v) | Batch::AlertOutbox(v) => self.outbox += v.len() as u64,
            Batch::Alerts(v) => self.alerts += v.len() as u64,
        }
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} transitions, {} orders, {} ledger rows, {} sinks, cursor {}",
            self.transitions,
            self.orders,
            self.outbox,
            self.sinks,
            if self.cursor { "set" } else { "not set" }
        )?;
        if self.held > 0 {
            write!(f, ", {} waiting for order details", self.held)?;
        }
        if self.alerts > 0 {
            write!(f, ", {} alerts", self.alerts)?;
        }
        Ok(())
    }
}

/// One end of a copy, held against daemons for as long as it lives.
pub enum End {
    Sqlite {
        store: SqliteStore,
        _lock: DaemonLock,
    },
    Postgres {
        store: PgStore,
        _lease: Lease,
    },
}

impl End {
    /// Opens (creating and migrating if need be) the store of `config` and
    /// takes its writer lock; refused while a daemon holds it.
    pub async fn open(config: &StoreConfig) -> Result<End, StoreError> {
        match config {
            StoreConfig::Sqlite { path } => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || {
                    let lock = lock_for_daemon(&path)?;
                    let store = SqliteStore::open(&path)?;
                    Ok(End::Sqlite { store, _lock: lock })
                })
                .await
                .map_err(|e| StoreError::Task(e.to_string()))?
            }
            StoreConfig::Postgres(pg) => {
                let leadership = PgLeadership::open(pg, node_identity()).await?;
                let Some(lease) = leadership.try_acquire().await? else {
                    let leader = leadership.leader().await?.map_or_else(
                        || "unknown".to_string(),
                        |l| format!("{}, term {}", l.holder, l.term),
                    );
                    return Err(StoreError::Led {
                        location: pg.target.location().to_string(),
                        leader,
                    });
                };
                // Fenced: a copy that lost the lease meanwhile (its keeper's
                // connection dropped, a daemon took over) commits nothing.
                Ok(End::Postgres {
                    store: leadership.fenced_by(&lease),
                    _lease: lease,
                })
            }
        }
    }

    pub async fn counts(&self) -> Result<Counts, StoreError> {
        match self {
            End::Sqlite { store, .. } => store.counts().await,
            End::Postgres { store, .. } => store.counts().await,
        }
    }

    /// Sends the whole store, batch by batch.
    pub async fn export(&self, to: mpsc::Sender<Batch>) -> Result<Counts, StoreError> {
        match self {
            End::Sqlite { store, .. } => store.export(to).await,
            End::Postgres { store, .. } => store.export(to).await,
        }
    }

    /// Writes what arrives in one transaction, after emptying the store
    /// when `replace`.
    pub async fn import(
        &self,
        from: mpsc::Receiver<Batch>,
        replace: bool,
    ) -> Result<Counts, StoreError> {
        match self {
            End::Sqlite { store, .. } => store.import(from, replace).await,
            End::Postgres { store, .. } => store.import(from, replace).await,
        }
    }

    pub fn location(&self) -> String {
        use super::Store;
        match self {
            End::Sqlite { store, .. } => store.location(),
            End::Postgres { store, .. } => store.location(),
        }
    }
}

/// Copies the store of `from` into `to`; a non-empty target is refused
/// unless `replace`. Returns what was copied.
pub async fn copy(
    from: &StoreConfig,
    to: &StoreConfig,
    replace: bool,
) -> Result<Counts, StoreError> {
    let source = End::open(from).await?;
    let target = End::open(to).await?;
    let there = target.counts().await?;
    if !there.is_empty() && !replace {
        return Err(StoreError::NotEmpty {
            location: target.location(),
            what: there.to_string(),
        });
    }
    let (tx, rx) = mpsc::channel(4);
    let (sent, written) = tokio::join!(source.export(tx), target.import(rx, replace));
    // An import failure closes the channel, which fails the export: report
    // the cause, not the symptom.
    let written = written?;
    let sent = sent?;
    if sent != written {
        return Err(StoreError::Task(format!(
            "copied {written}, but the source holds {sent}"
        )));
    }
    Ok(written)
}

/// The error of a send whose receiver went away (the import failed).
pub(crate) fn aborted(location: &str) -> StoreError {
    StoreError::Task(format!(
        "copy from {location} aborted: the target stopped receiving"
    ))
}
