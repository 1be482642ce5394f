//! An in-process fake of the CertCentral endpoints orderwatch uses:
//! `GET /services/v2/order/certificate/status-changes`,
//! `GET /services/v2/order/certificate/{order_id}` (order info, see
//! `order_info`) and `PUT /services/v2/order/certificate/{order_id}/status`.
//!
//! It is the only fake in the codebase — `orderwatch simulate`, `orderwatch
//! demo` and every integration test talk to it — so it is faithful to the
//! upstream facts in `CONTRACT.md` and strict wherever upstream is
//! ambiguous: a client that passes against this simulator should not be
//! surprised by the real API.
//!
//! # Error codes
//!
//! Every error body is `{"errors":[{"code":"...","message":"..."}]}` with
//! `Content-Type: application/json`:
//!
//! | status | code | when |
//! |---|---|---|
//! | 401 | `invalid_api_key` | `X-DC-DEVKEY` missing or wrong (checked first) |
//! | 400 | `missing_filter` | none of `minutes`, `seconds`, `filters[status_last_updated]` |
//! | 400 | `invalid_filter` | malformed/negative count, malformed range, start after end, a Mountain-time instant that does not exist (DST gap), a repeated parameter, relative and absolute filters combined |
//! | 400 | `time_frame_too_long` | over 7 days (`minutes` > 10080, `minutes*60+seconds` > 604800, real span of a range > 604800 s) |
//! | 400 | `invalid_param` | `offset`/`limit` malformed or `limit=0` (pagination on); cancel `note` not a string |
//! | 404 | `not_found` | unknown or non-numeric order id, unknown path |
//! | 405 | `method_not_allowed` | known path, wrong method |
//! | 400 | `invalid_json` | cancel body not a JSON object |
//! | 400 | `missing_param` | cancel `status` or `note` missing, null or empty (message names it) |
//! | 400 | `invalid_status` | cancel `status` not exactly `CANCELED` |
//! | 400 | `invalid_order_status` | order not `pending`/`waiting_pickup` |
//! | 413 | `payload_too_large` | cancel body unreadable or over 64 KiB |
//! | 429 | `request_limit_exceeded` | the key's rate limits are exceeded (any endpoint, checked after the key; see `limits`) |
//!
//! Absolute ranges are read in `America/Denver` (or UTC−6 all year with
//! [`RangeReading::FixedUtcMinus6`]); see `mountain` for the
//! deliberately strict DST rules. Their end second is inclusive up to the
//! next second, as upstream stores whole seconds.
//!
//! Layout: `query` and `mountain` read requests (pure), `book` holds the
//! orders and answers range queries, `schedule` knows statuses and random
//! changes, `http` has the axum handlers, `fault` the injected misbehaviour
//! and `server` the listener, `serve`/`start` and [`SimulatorHandle`],
//! `limits` the rate limits and the `Date` header, `tls` the HTTPS mode.

mod announce;
mod book;
mod error;
mod fault;
mod http;
mod limits;
mod mountain;
mod order_info;
mod query;
mod schedule;
mod server;
mod status;
mod tls;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;

use book::OrderBook;
pub use fault::Fault;
pub use limits::{Limit, RateLimits, ThrottledRequest};
pub use mountain::RangeReading;
pub use server::SimulatorHandle;
use status::Status;
pub use tls::TlsIdentity;

/// The first order id the simulator invents; explicit ids given to
/// [`Simulator::set_status`] or [`Simulator::bulk_insert`] push later
/// invented ids above themselves so they never collide.
pub const FIRST_ORDER_ID: i64 = 1000;

/// How a simulator behaves. `Default` is CertCentral at its strictest, as
/// documented: a quiet, empty account with key `sim-key`, DigiCert's rate
/// limits enforced ([`RateLimits::digicert`]), answers paginated in pages of
/// [`DEFAULT_PAGE_SIZE`], absolute ranges read in `America/Denver`. The
/// kinder behaviours (no limits, no pages) and the nastier ones (unstable
/// order, a skewed clock, a fixed UTC−6 reading, TLS) are opt-in, each with
/// its field.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// The value `X-DC-DEVKEY` must carry.
    pub api_key: String,
    /// Seed of every random decision, so runs are reproducible.
    pub seed: u64,
    /// Average random changes per minute while serving; 0 disables them.
    pub rate_per_min: f64,
    /// Orders created at start, with changes spread over the last hour.
    pub initial_orders: usize,
    /// `Some(n)` (the default: [`DEFAULT_PAGE_SIZE`]) answers status-changes
    /// in `offset`/`limit` pages of at most `n` orders with a `page` object;
    /// `None` returns everything at once, without `page` (kinder than
    /// upstream, for tests about something else).
    pub page_size: Option<usize>,
    /// DigiCert's per-key rate limits, enforced on every endpoint; `None`
    /// turns them off (the benchmark, big loads that are about something
    /// else; say why where you do it).
    pub rate_limits: Option<RateLimits>,
    /// Off by default. On: orders whose last change falls in the same
    /// second come in a different order on every request, and the orders of
    /// each page are shuffled (deterministic by `seed`), as a database
    /// without a total order gives them.
    pub unstable_order: bool,
    /// How far the simulator's clock (its "now", relative windows, changes
    /// made while serving, the `Date` header) is ahead of this machine's
    /// (negative: behind). Zero by default.
    pub clock_skew: chrono::TimeDelta,
    /// How absolute `filters[status_last_updated]` ranges are read:
    /// `America/Denver` by default, or "MDT" taken literally (UTC−6 all
    /// year).
    pub range_reading: RangeReading,
    /// Serve HTTPS with this certificate instead of plain HTTP.
    pub tls: Option<TlsIdentity>,
}

/// Upstream's page size for Services API lists: `limit` defaults to and is
/// capped at 1000.
pub const DEFAULT_PAGE_SIZE: usize = 1000;

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            api_key: String::from("sim-key"),
            seed: 1,
            rate_per_min: 0.0,
            initial_orders: 0,
            page_size: Some(DEFAULT_PAGE_SIZE),
            rate_limits: Some(RateLimits::digicert()),
            unstable_order: false,
            clock_skew: chrono::TimeDelta::zero(),
            range_reading: RangeReading::AmericaDenver,
            tls: None,
        }
    }
}

impl SimulatorConfig {
    /// No rate limits: for a caller that sends more than CertCentral would
    /// take (a benchmark, a load far beyond a real account's) and is not
    /// testing how it is paced.
    pub fn without_rate_limits(mut self) -> SimulatorConfig {
        self.rate_limits = None;
        self
    }
}

/// A status-changes request as the simulator saw it, so tests can assert on
/// the windows a client asks for (and that its key went nowhere else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedQuery {
    /// When the request arrived (simulator clock).
    pub at: DateTime<Utc>,
    /// `minutes` if it parsed as an integer (also when it was then refused,
    /// e.g. as negative or too long).
    pub minutes: Option<i64>,
    /// `seconds` if it parsed as an integer (also when it was then refused).
    pub seconds: Option<i64>,
    /// The absolute range as the simulator read it (UTC, both inclusive),
    /// if `filters[status_last_updated]` was well-formed — also when it was
    /// then refused as too long.
    pub range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The query string exactly as received (still percent-encoded).
    pub raw_query: String,
    /// `offset` if it parsed as an integer (recorded even when pagination
    /// is off and it was ignored).
    pub offset: Option<u64>,
    /// `limit` if it parsed as an integer (recorded even when ignored).
    pub limit: Option<u64>,
    /// HTTP status answered; 0 when a [`Fault::Hang`] meant no answer.
    pub status: u16,
    /// Orders in the answer body (0 for errors and [`Fault::Respond`]).
    pub orders_returned: usize,
    /// `X-DC-DEVKEY` as received.
    pub api_key_sent: Option<String>,
}

/// A cancel request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelRequest {
    /// The `{order_id}` path segment, percent-decoded, as sent.
    pub order_id: String,
    /// The request body (lossy UTF-8).
    pub body: String,
    /// HTTP status answered; 0 when a [`Fault::Hang`] meant no answer.
    pub status: u16,
    /// `X-DC-DEVKEY` as received.
    pub api_key_sent: Option<String>,
}

/// An order info request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderInfoRequest {
    /// The `{order_id}` path segment, as sent.
    pub order_id: String,
    /// HTTP status answered; 0 when a [`Fault::Hang`] meant no answer.
    pub status: u16,
    /// `X-DC-DEVKEY` as received.
    pub api_key_sent: Option<String>,
}

/// Everything mutable, behind one lock: handlers hold it only for the time
/// it takes to read or change the book.
#[derive(Debug)]
struct State {
    book: OrderBook,
    rng: StdRng,
    notes: std::collections::HashMap<i64, String>,
    faults: VecDeque<Fault>,
    cancel_faults: VecDeque<Fault>,
    order_info_faults: VecDeque<Fault>,
    queries: Vec<RecordedQuery>,
    cancels: Vec<CancelRequest>,
    order_infos: Vec<OrderInfoRequest>,
    /// Where changes are announced, if anywhere.
    wake: Option<announce::WakeTarget>,
    /// Recent requests per API key, for the rate limits.
    meter: limits::Meter,
    /// Requests refused with 429 by the rate limits.
    throttled: Vec<ThrottledRequest>,
    /// Status-changes requests answered so far: with `unstable_order`, each
    /// one orders ties its own way.
    answers: u64,
}

#[derive(Debug)]
struct Inner {
    cfg: SimulatorConfig,
    state: Mutex<State>,
}

/// The simulated CertCentral account plus its HTTP face. Cloning is cheap and
/// every clone controls the same account, so a test can keep one while the
/// server task holds another.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

/// A summary only: a million-order account must not end up in a test's
/// failure message.
impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Simulator");
        d.field("config", &self.inner.cfg);
        match self.inner.state.try_lock() {
            Ok(state) => d.field("orders", &state.book.len()),
            Err(_) => d.field("orders", &"<busy>"),
        };
        d.finish()
    }
}

impl Simulator {
    /// A simulator with `cfg.initial_orders` seeded orders from the last hour.
    pub fn new(cfg: SimulatorConfig) -> Simulator {
        let mut book = OrderBook::new(FIRST_ORDER_ID);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let now = Utc::now() + cfg.clock_skew;
        schedule::seed_initial_orders(&mut book, &mut rng, cfg.initial_orders, now);
        let state = State {
            book,
            rng,
            notes: Default::default(),
            faults: VecDeque::new(),
            cancel_faults: VecDeque::new(),
            order_info_faults: VecDeque::new(),
            queries: Vec::new(),
            cancels: Vec::new(),
            order_infos: Vec::new(),
            wake: None,
            meter: limits::Meter::default(),
            throttled: Vec::new(),
            answers: 0,
        };
        Simulator {
            inner: Arc::new(Inner {
                cfg,
                state: Mutex::new(state),
            }),
        }
    }

    /// A poisoned lock only means a panic elsewhere; the data is still
    /// consistent enough for a fake, so keep serving.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn config(&self) -> &SimulatorConfig {
        &self.inner.cfg
    }

    /// The simulator's clock: the real wall clock plus `clock_skew`.
    /// Relative windows are counted back from it, like upstream counts back
    /// from its own clock, and answers carry it in `Date`.
    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.config().clock_skew
    }

    /// Creates order `order_id` or records a change of it at `at`. `at` may
    /// lie in the past; the history stays sorted and the latest entry is the
    /// current status. Unknown status names are kept verbatim.
    pub fn set_status(&self, order_id: i64, certificate_id: i64, status: &str, at: DateTime<Utc>) {
        self.lock()
            .book
            .set_status(order_id, certificate_id, Status::parse(status), at);
        self.announce(order_id);
    }

    /// Loads `count` orders `first_order_id..first_order_id+count`, each with
    /// `certificate_id = order_id + 100_000_000`, all in `status` since `at`
    /// — fast enough for million-order accounts.
    pub fn bulk_insert(&self, first_order_id: i64, count: usize, status: &str, at: DateTime<Utc>) {
        self.lock()
            .book
            .bulk_insert(first_order_id, count, &Status::parse(status), at);
    }

    /// Applies `n` seeded random changes now (new orders or realistic
    /// transitions) and returns `(order_id, new status)` for each.
    pub fn random_changes(&self, n: usize) -> Vec<(i64, String)> {
        let now = self.now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let changes: Vec<(i64, String)> = (0..n)
            .map(|_| {
                let (id, status) = schedule::random_change(&mut state.book, &mut state.rng, now);
                (id, status.as_str().to_owned())
            })
            .collect();
        drop(guard);
        if let Some((id, _)) = changes.last() {
            // One announcement per batch: a wake is a wake.
            self.announce(*id);
        }
        changes
    }

    /// The current status of an order.
    pub fn status_of(&self, order_id: i64) -> Option<String> {
        self.lock()
            .book
            .current(order_id)
            .map(|(_, s)| s.as_str().to_owned())
    }

    /// Every recorded change of an order, oldest first.
    pub fn history(&self, order_id: i64) -> Vec<(DateTime<Utc>, String)> {
        self.lock()
            .book
            .history(order_id)
            .into_iter()
            .map(|(t, s)| (t, s.as_str().to_owned()))
            .collect()
    }

    /// The note of a successful cancellation of this order.
    pub fn note_of(&self, order_id: i64) -> Option<String> {
        self.lock().notes.get(&order_id).cloned()
    }

    /// Number of orders in the account.
    pub fn order_count(&self) -> usize {
        self.lock().book.len()
    }

    /// Queues a fault for the next status-changes request that has none yet.
    pub fn push_fault(&self, f: Fault) {
        self.lock().faults.push_back(f);
    }

    /// Queues a fault for the next cancel request. [`Fault::Respond`]
    /// answers instead and the order is left alone; the other variants let
    /// the cancellation happen and then lose the answer (the connection is
    /// closed — after the given duration for `Hang`, at once otherwise), the
    /// case a client retrying a cancel must survive.
    pub fn push_cancel_fault(&self, f: Fault) {
        self.lock().cancel_faults.push_back(f);
    }

    /// Every status-changes request so far, oldest first.
    pub fn queries(&self) -> Vec<RecordedQuery> {
        self.lock().queries.clone()
    }

    /// Every cancel request so far, oldest first.
    pub fn cancels(&self) -> Vec<CancelRequest> {
        self.lock().cancels.clone()
    }

    /// The key clients must send.
    pub fn api_key(&self) -> String {
        self.config().api_key.clone()
    }
}
