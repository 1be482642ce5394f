//! The store's vocabulary: what goes in (a chunk of a window's answer) and
//! what comes out (due deliveries, ledger rows, statistics). Plain data, the
//! same for every backend.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::lookup::Hold;
use super::route::SinkRoute;
use crate::transition::{Dedupe, EventId, OrderChange, TransitionRow, event_id};

/// One piece of a window's answer, recorded in one transaction. Only a
/// window's last chunk carries its `cursor`: a crash between chunks repeats
/// the window (its recorded chunks dedupe), it never skips one.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The whole answer, sorted by order id; this chunk is `range` of it.
    pub orders: Arc<Vec<OrderChange>>,
    pub range: Range<usize>,
    /// Where the cursor moves once this chunk is recorded (the last chunk only).
    pub cursor: Option<DateTime<Utc>>,
    /// When orderwatch saw these changes: every new transition's `time`.
    pub seen_at: DateTime<Utc>,
    /// Which sightings are transitions.
    pub dedupe: Dedupe,
    /// Which new transitions wait for their order's details.
    pub hold: Hold,
}

impl Chunk {
    /// A whole window in one chunk.
    pub fn whole(
        orders: Vec<OrderChange>,
        cursor: Option<DateTime<Utc>>,
        seen_at: DateTime<Utc>,
    ) -> Chunk {
        let range = 0..orders.len();
        Chunk {
            orders: Arc::new(orders),
            range,
            cursor,
            seen_at,
            dedupe: Dedupe::default(),
            hold: Hold::default(),
        }
    }

    /// The orders of this chunk.
    pub fn changes(&self) -> &[OrderChange] {
        &self.orders[self.range.clone()]
    }
}

/// The sinks of one configuration generation, shared by every chunk.
pub type Routes = Arc<[SinkRoute]>;

/// A sink paused because its receiver answered 410 Gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// Unix ms.
    pub since: i64,
    pub reason: String,
}

/// What `orderwatch check` reports about a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReport {
    /// Where it is ("/var/lib/orderwatch/orderwatch.db").
    pub location: String,
    pub schema_version: u32,
    pub transitions: u64,
    pub cursor: Option<DateTime<Utc>>,
    /// The first complaint of an integrity check, if the store is damaged.
    pub damage: Option<String>,
}

/// A pending delivery with the transition it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    pub attempts: u32,
    /// When it was queued (unix ms).
    pub created_at: i64,
    /// When its first attempt failed (unix ms): the give-up clock runs from
    /// here, so a delivery that waited in the outbox (daemon stopped, sink
    /// paused) still gets its full `give_up_after` of retries.
    pub first_failure_at: Option<i64>,
    pub transition: TransitionRow,
}

impl OutboxEntry {
    pub fn seq(&self) -> i64 {
        self.transition.seq
    }
    pub fn order_id(&self) -> i64 {
        self.transition.order_id
    }

    /// For tests: a delivery never tried of event `seq`, order `seq + 1000`
    /// going from `pending` to `issued` (event id `"{seq + 1000}:issued"`).
    #[cfg(test)]
    pub(crate) fn untried(seq: i64) -> OutboxEntry {
        OutboxEntry {
            attempts: 0,
            created_at: 1_795_514_523_000,
            first_failure_at: None,
            transition: crate::transition::TransitionRow {
                seq,
                order_id: seq + 1000,
                status: "issued".into(),
                occurrence: 0,
                certificate_id: Some(seq + 2000),
                previous_status: Some("pending".into()),
                seen_at: 1_795_514_523_000,
                details: None,
            },
        }
    }
}

/// The result of one attempt, as the ledger records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Delivered,
    Retry { next_attempt_at: i64, error: String },
    Dead { error: String },
}

/// Which deliveries `orderwatch redeliver` queues again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeliver {
    /// One event, by its id (`"264:canceled"`, `"264:issued:1"`).
    Event(EventId),
    /// Every dead delivery of the sink.
    Dead,
    /// Every event first seen at or after this instant (unix ms).
    Since(i64),
    /// One alert, by its id (`"ow:dead:hook:264:issued:1"`), for an
    /// operational sink.
    Alert(String),
}

/// Which transitions `orderwatch events` lists.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub order_id: Option<i64>,
    pub status: Option<String>,
    /// Seen at or after (unix ms).
    pub since: Option<i64>,
    pub limit: usize,
}

/// A delivery's state in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    Pending,
    Delivered,
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Dead => "dead",
        }
    }

    pub(crate) fn parse(s: &str) -> DeliveryState {
        match s {
            "delivered" => DeliveryState::Delivered,
            "dead" => DeliveryState::Dead,
            _ => DeliveryState::Pending,
        }
    }
}

/// Which ledger rows `orderwatch deliveries` lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub sink: Option<String>,
    pub state: Option<DeliveryState>,
    pub limit: usize,
    /// The configured sinks: in-order sinks keep no row for an event that
    /// went out at the first try (or waits after their cursor), so the
    /// ledger derives those from their cursor. Without them only stored
    /// rows are listed.
    pub routes: Vec<SinkRoute>,
}

/// One row of the delivery ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub sink: String,
    /// The transition's recording order.
    pub seq: i64,
    pub order_id: i64,
    pub status: String,
    pub occurrence: u32,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: i64,
    pub next_attempt_at: i64,
    pub done_at: Option<i64>,
    pub last_error: Option<String>,
    /// For a delivery of an alert to an operational sink: the alert's id
    /// (`seq` is then the alert's, `status` its type, `order_id` 0).
    pub alert: Option<String>,
}

impl DeliveryRow {
    pub fn event_id(&self) -> String {
        match &self.alert {
            Some(id) => id.clone(),
            None => event_id(self.order_id, &self.status, self.occurrence),
        }
    }
}

/// Outbox figures of one sink, for metrics and status lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStats {
    pub sink: String,
    pub pending: u64,
    pub dead: u64,
    /// Creation time of the oldest pending delivery (unix ms).
    pub oldest_pending: Option<i64>,
    pub paused: bool,
}

/// What recording a window did.
#[derive(Debug, Default, Clone)]
pub struct RecordSummary {
    /// Orders in the answer.
    pub seen: usize,
    /// New transitions by status.
    pub new_by_status: BTreeMap<String, u64>,
    /// The first few new transitions, for the log.
    pub sample: Vec<TransitionRow>,
    /// Outbox rows written.
    pub queued: u64,
    /// New transitions held for a lookup of their order.
    pub held: u64,
}

impl RecordSummary {
    pub fn new_transitions(&self) -> u64 {
        self.new_by_status.values().sum()
    }

    /// Adds up the summary of another chunk of the same window.
    pub fn absorb(&mut self, other: RecordSummary) {
        self.seen += other.seen;
        self.queued += other.queued;
        self.held += other.held;
        for (status, n) in other.new_by_status {
            *self.new_by_status.entry(status).or_default() += n;
        }
        let room = SAMPLE.saturating_sub(self.sample.len());
        self.sample.extend(other.sample.into_iter().take(room));
    }
}

/// How many new transitions a summary keeps for logging one line each.
pub const SAMPLE: usize = 100;
