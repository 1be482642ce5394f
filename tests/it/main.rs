//! orderwatch's integration tests, as one test binary.
//!
//! Every module here protects one guarantee and runs the real `orderwatch`
//! binary (or, for the simulator and a few planner checks, the library)
//! against an in-process CertCentral simulator, local receivers and a temp
//! directory; nothing reaches beyond 127.0.0.0/8. `tests/README.md` maps
//! hostile inputs to the tests that cover them.
//!
//! One binary instead of one per file: the whole crate is linked once, not
//! twenty times, and the helpers in `support` are compiled once. Tests that
//! cannot run here (no root powers, no `systemd-analyze`) say so on stderr
//! with a `skipped:` line, visible in plain `cargo test` output; see
//! [`support::skip`].

mod support;
/// The throwaway PostgreSQL server (one per test binary) of the store's own
/// tests, for the tests of the daemon and commands on a PostgreSQL store.
#[path = "../../src/store/postgres/testdb.rs"]
mod testdb;

// The API and its faults.
mod api_faults;
mod cancel;
mod catchup;
mod hostile_answers;
mod hostile_api;
mod pages;

// Recording: dedupe, crash safety, the store under a hostile disk.
mod crash;
mod dedupe;
mod enrich;
mod failover;
mod hostile_events_file;
mod hostile_store;
mod postgres_daemon;
mod store_copy;

// Delivery to sinks and the ledger.
mod alerts;
mod exec;
mod hostile_receivers;
mod ledger;
mod nats;
mod retention;
mod secret_rotation;
mod test_sink;
mod webhook;
mod webhook_failures;

// Operating it: commands, config, logs, metrics, signals, systemd.
mod check_online;
mod cli_usage;
mod config_check;
mod demo;
mod events;
mod logs;
mod metrics;
mod signals;
mod systemd_runtime;
mod systemd_unit;
mod wake;

// The simulator every other test relies on.
mod simulator_cancel;
mod simulator_faults;
mod simulator_limits;
mod simulator_options;
mod simulator_order_info;
mod simulator_status_changes;
mod simulator_tls;
