//! The store's vocabulary for order details: which new transitions are
//! held until their order has been looked up, what a due lookup is, and
//! how one ended. Plain data, the same for every backend.

use std::sync::Arc;

/// Which new transitions wait for their order's details before any sink
/// sees them (`[enrich] order_details` and `statuses`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Hold {
    /// Enrichment is off: nothing is held.
    #[default]
    Nothing,
    /// Every new transition.
    All,
    /// Transitions to one of these (lower-case) statuses.
    Statuses(Arc<[String]>),
}

impl Hold {
    /// Whether a new transition to `status` is held.
    pub fn takes(&self, status: &str) -> bool {
        match self {
            Hold::Nothing => false,
            Hold::All => true,
            Hold::Statuses(list) => list.iter().any(|s| s.eq_ignore_ascii_case(status)),
        }
    }
}

/// One order whose held transitions wait for a lookup: they share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub order_id: i64,
    /// The held transitions of the order this lookup releases.
    pub seqs: Vec<i64>,
    /// Attempts so far (of the one tried most).
    pub attempts: u32,
    /// When the oldest of them was recorded (unix ms): the give-up clock.
    pub held_since: i64,
    /// The last failure, for the give-up message.
    pub last_error: Option<String>,
}

/// How a lookup ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupOutcome {
    /// Release the transitions with this `data.order` (JSON text: an
    /// object, or `null` after a 404 or giving up).
    Release { details: String },
    /// Try again at `next_attempt_at` (unix ms); the transitions stay held.
    Retry { next_attempt_at: i64, error: String },
}

/// How much lookup work is waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LookupBacklog {
    /// Held transitions.
    pub transitions: u64,
    /// Orders they belong to: lookups still to make.
    pub orders: u64,
    /// When the next lookup is due (unix ms), if any is waiting.
    pub next_due: Option<i64>,
}
