//! The file as written: every key optional, unknown keys refused by serde.

use std::path::PathBuf;

use serde::Deserialize;

use super::SizeValue;
use super::alerts::RawAlerts;
use super::events::{RawEnrich, RawEvents};
use super::sinks::RawSink;
use super::wake::RawWake;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub digicert: Option<RawDigicert>,
    pub poll: Option<RawPoll>,
    pub store: Option<RawStore>,
    pub metrics: Option<RawMetrics>,
    pub events: Option<RawEvents>,
    pub enrich: Option<RawEnrich>,
    pub wake: Option<RawWake>,
    pub alerts: Option<RawAlerts>,
    #[serde(default)]
    pub sinks: Vec<RawSink>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDigicert {
    pub base_url: Option<String>,
    pub instance: Option<String>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub timezone: Option<String>,
    pub max_requests_per_minute: Option<u32>,
    pub max_response_size: Option<SizeValue>,
    pub allow_insecure_http: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub retries: Option<u32>,
    pub retry_initial: Option<String>,
    pub retry_max: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPoll {
    pub interval: Option<String>,
    pub overlap: Option<String>,
    pub initial_lookback: Option<String>,
    pub max_window: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub failover: Option<String>,
    pub keep_delivered: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}
