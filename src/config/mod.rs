//! The TOML configuration: raw serde types, defaults, and validation into typed
//! values.
//!
//! Parsing is two-phase on purpose. [`Config::load`] reads and validates the
//! file and everything that can be checked without touching secrets; secrets
//! are only *located* ([`SecretSource`]) and are read when a command needs them
//! ([`SecretSource::load`]). That way `orderwatch events` works on a box where
//! the API key is not exported in the operator's shell, while `check` and `run`
//! still refuse to start without it.
//!
//! Every problem names the file and the key; all problems of a file are reported
//! at once so an operator fixes a config in one round trip, not five.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod alerts;
mod ca;
mod events;
pub mod field;
mod raw;
pub mod secret;
mod sinks;
mod store;
pub mod table;
mod validate;
mod wake;

pub use alerts::{AlertsConfig, DEFAULT_POLL_FAILURES};
pub use ca::CaFile;
pub use events::{EnrichConfig, EventsConfig};
pub use field::{MAX_DURATION, Problem, RedactedUrl, dir_writable, parent_dir, sink_key};
pub use secret::{Secret, SecretSource};
pub use sinks::SinkConfig;
pub use wake::{DEFAULT_WAKE_HEADER, MIN_WAKE_KEY_LEN, WAKE_KEY_CREDENTIAL, WakeConfig};

pub use crate::store::postgres::PgTarget;

use raw::RawConfig;
pub use validate::SizeValue;
use validate::Validator;
#[cfg(test)]
use validate::parse_size;

/// Where `--config` falls back to when neither the flag nor `$ORDERWATCH_CONFIG` is set.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/orderwatch/orderwatch.toml";
/// The largest config file read: a real one is a few KiB.
const MAX_CONFIG_SIZE: u64 = 1 << 20;
/// DigiCert's US instance, the default.
pub const US_BASE_URL: &str = "https://www.digicert.com/services/v2";
/// DigiCert's European instance (`instance = "eu"`).
pub const EU_BASE_URL: &str = "https://certcentral.digicert.eu/services/v2";
/// The API refuses any time frame longer than this (10080 minutes).
pub const API_MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// DigiCert's rolling limit is 1000 requests per 5 minutes per key; 180/min plus
/// the pacer's small burst stays under it with room for a `cancel` or two.
pub const MAX_REQUESTS_PER_MINUTE: u32 = 180;
/// The systemd credential name the API key is read from when nothing else is configured.
pub const API_KEY_CREDENTIAL: &str = "digicert-api-key";
/// The environment variable the API key is read from by default.
pub const DEFAULT_API_KEY_ENV: &str = "DIGICERT_API_KEY";
/// The systemd credential a PostgreSQL store's password is read from when
/// neither `password_env` nor `password_file` is set.
pub const POSTGRES_PASSWORD_CREDENTIAL: &str = "postgres-password";
/// `[store] failover` when not set.
pub const DEFAULT_FAILOVER: Duration = Duration::from_secs(15);

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration came from (named in every later error).
    pub source: PathBuf,
    pub digicert: DigicertConfig,
    pub poll: PollConfig,
    pub store: StoreConfig,
    /// `[store] keep_delivered`: delivered ledger rows older than this are
    /// deleted, whichever backend holds them.
    pub keep_delivered: Duration,
    pub metrics: Option<MetricsConfig>,
    pub events: EventsConfig,
    /// Order details in events (`[enrich] order_details = true`).
    pub enrich: Option<EnrichConfig>,
    pub wake: Option<WakeConfig>,
    /// `[alerts]`: when operational sinks hear about polling trouble.
    pub alerts: AlertsConfig,
    pub sinks: Vec<SinkConfig>,
}

/// `[digicert]`: how to reach CertCentral.
#[derive(Debug, Clone)]
pub struct DigicertConfig {
    /// Without a trailing slash, e.g. `https://www.digicert.com/services/v2`.
    pub base_url: String,
    pub api_key: SecretSource,
    pub timeout: Duration,
    /// Zone in which absolute `filters[status_last_updated]` ranges are written.
    pub timezone: chrono_tz::Tz,
    pub max_requests_per_minute: u32,
    /// Answers larger than this are refused instead of exhausting memory.
    pub max_response_bytes: u64,
    /// Retries of one request within a cycle (network errors, timeouts, 5xx, 429).
    pub retries: u32,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// `ca_file`: CAs trusted for `base_url` besides the system's.
    pub ca_file: Option<CaFile>,
}

/// `[poll]`: the schedule and the window geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollConfig {
    pub interval: Duration,
    pub overlap: Duration,
    pub initial_lookback: Duration,
    pub max_window: Duration,
}

/// `[store]`: which database holds the store. `path` (SQLite, one file on
/// one host) and `url` (PostgreSQL, shared by several nodes) exclude each
/// other.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    Sqlite { path: PathBuf },
    Postgres(Box<PostgresConfig>),
}

impl StoreConfig {
    /// Where the store lives, for messages (a PostgreSQL URL without secrets).
    pub fn location(&self) -> String {
        match self {
            StoreConfig::Sqlite { path } => path.display().to_string(),
            StoreConfig::Postgres(pg) => pg.target.location().to_string(),
        }
    }

    /// The key that chose the backend, for messages: `store.path` or `store.url`.
    pub fn key(&self) -> &'static str {
        match self {
            StoreConfig::Sqlite { .. } => "store.path",
            StoreConfig::Postgres(_) => "store.url",
        }
    }
}

/// `[store] url = "postgresql://..."` and its companions.
#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    pub target: PgTarget,
    /// `None`: no password (trust, peer or certificate authentication).
    pub password: Option<SecretSource>,
    /// How soon a standby takes over from a leader that stopped answering.
    pub failover: Duration,
}

impl PostgresConfig {
    /// A config for `target` with the defaults (`store copy --to` uses it).
    pub fn new(target: PgTarget, password: Option<SecretSource>) -> PostgresConfig {
        PostgresConfig {
            target,
            password,
            failover: DEFAULT_FAILOVER,
        }
    }
}

/// `[store] keep_delivered` unless set: long enough to answer "was this
/// delivered?" for a quarter, short enough that a busy webhook sink's
/// ledger stays small.
pub const DEFAULT_KEEP_DELIVERED: Duration = Duration::from_secs(90 * 24 * 3600);

/// `[metrics]`.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

/// Why a configuration could not be used. Always names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `error` is not named `source` on purpose: the message already shows
    /// it, and a source would make `{:#}` print it twice.
    #[error(
        "cannot read config file {path}: {error}; pass --config PATH or set $ORDERWATCH_CONFIG (default {DEFAULT_CONFIG_PATH})"
    )]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {}", render_problems(.problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => one.to_string(),
        many => {
            let mut out = format!("{} problems:", many.len());
            for p in many {
                out.push_str("\n  - ");
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

/// `line L, column C: what is wrong`, from a TOML or serde error.
///
/// toml's own `Display` quotes the offending source line, and that line may
/// hold a secret someone wrote where it does not belong (`api_key = "..."`
/// is an unknown key); the position and the message (which names the key)
/// are enough to find it, so the line itself is never repeated.
fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim_end().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let (line, column) = line_column(text, span.start);
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Which config file to use: `--config`, then `$ORDERWATCH_CONFIG`, then the default.
pub fn locate(flag: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match env("ORDERWATCH_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// Reads the process environment; the seam that lets unit tests supply their own.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and validates `path` against the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            field::read_small_file(path, MAX_CONFIG_SIZE).map_err(|error| ConfigError::Read {
                path: path.to_path_buf(),
                error,
            })?;
        Config::parse(&text, path, &process_env)
    }

    /// Parses and validates config text. `env` answers environment lookups
    /// (`$STATE_DIRECTORY`, `$CREDENTIALS_DIRECTORY`).
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, &e),
        })?;
        let mut v = Validator::default();
        let config = v.config(raw, path, env);
        match config {
            Some(c) if v.problems.0.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                problems: v.problems.0,
            }),
        }
    }

    /// Every secret this config refers to, with a label for messages.
    pub fn secret_sources(&self) -> Vec<(String, &SecretSource)> {
        let mut out = vec![("digicert API key".to_string(), &self.digicert.api_key)];
        if let StoreConfig::Postgres(pg) = &self.store
            && let Some(p) = &pg.password
        {
            out.push(("PostgreSQL password".to_string(), p));
        }
        if let Some(key) = self.wake.as_ref().and_then(|w| w.key.as_ref()) {
            out.push(("wake key".to_string(), key));
        }
        for s in &self.sinks {
            for (stem, source) in s.settings.secrets() {
                out.push((format!("{stem} of sink \"{}\"", s.name), source));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
