//! The file as written: every key optional, unknown keys refused by serde.

use std::path::PathBuf;

use serde::Deserialize;

use super::SizeValue;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub digicert: Option<RawDigicert>,
    pub poll: Option<RawPoll>,
    pub store: Option<RawStore>,
    pub metrics: Option<RawMetrics>,
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
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub listen: Option<String>,
}

/// One `[[sinks]]` table. Flat on purpose: a key that belongs to another sink
/// type gets a message naming the type ("is not a key of a \"file\" sink")
/// instead of serde's generic "unknown field".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSink {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub statuses: Option<Vec<String>>,
    pub url: Option<String>,
    pub secret_env: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub timeout: Option<String>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub give_up_after: Option<String>,
    pub concurrency: Option<u32>,
    pub path: Option<PathBuf>,
}

impl RawSink {
    /// Whether the type-specific key `key` was written.
    pub fn has(&self, key: &str) -> bool {
        match key {
            "url" => self.url.is_some(),
            "secret_env" => self.secret_env.is_some(),
            "secret_file" => self.secret_file.is_some(),
            "timeout" => self.timeout.is_some(),
            "concurrency" => self.concurrency.is_some(),
            "path" => self.path.is_some(),
            _ => false,
        }
    }
}
