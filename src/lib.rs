//! orderwatch: watch a DigiCert CertCentral account for certificate-order status
//! changes and deliver every new transition, reliably, to webhooks, stdout and files.
//!
//! The data path is: [`config`] → [`poller`] ([`window`] planner → [`certcentral`]
//! client) → [`store`] (dedupe, cursor, outbox, one transaction) → [`sink`]s.
//! The binary in `main.rs` only parses the command line and calls into [`cmd`].

pub mod alert;
pub mod backoff;
pub mod certcentral;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod enrich;
pub mod event;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod pacer;
pub mod poller;
pub mod service;
pub mod simulator;
pub mod sink;
pub mod store;
pub mod transition;
pub mod wake;
pub mod window;
