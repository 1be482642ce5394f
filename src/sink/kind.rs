//! What a sink kind is: how it reads its keys from the config, what it
//! builds from them, and how the sink it builds delivers a batch. A kind
//! lives in one file (`stdout.rs`, `file.rs`, `webhook.rs`, ...) that
//! implements this contract, plus one line in `registry.rs`.
//!
//! The delivery loop (`delivery.rs`) owns everything else: what is due,
//! per-order ordering, concurrency, retries, giving up, pausing and the
//! ledger. A kind only says what one attempt did ([`Outcome`]).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::config::secret::SecretSource;
use crate::config::table::SinkTable;
use crate::store::OutboxEntry;

/// What happened to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Try again later (network error, timeout, 408, 429, 5xx, 3xx, I/O error).
    Retry {
        error: String,
        retry_after: Option<Duration>,
    },
    /// Never retry (other 4xx).
    Dead {
        error: String,
    },
    /// 410 Gone: dead, and the sink pauses until `orderwatch redeliver`.
    Gone {
        error: String,
    },
}

/// The outcome of a blocking write of a whole batch (file, stdout): every
/// entry shares it. `what` says what was tried ("append to /path"), for the
/// ledger's last error.
pub fn written(result: Result<std::io::Result<()>, tokio::task::JoinError>, what: &str) -> Outcome {
    match result {
        Ok(Ok(())) => Outcome::Delivered,
        Ok(Err(e)) => Outcome::Retry {
            error: format!("cannot {what}: {e}"),
            retry_after: None,
        },
        Err(e) => Outcome::Retry {
            error: format!("cannot {what}: the writer failed: {e}"),
            retry_after: None,
        },
    }
}

/// One event that is not a recorded transition (`orderwatch test-sink`'s
/// test event), already rendered, with what a sink may need besides its
/// JSON (an exec sink's variables).
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub id: &'a str,
    /// The CloudEvents `type`.
    pub kind: &'a str,
    /// The CloudEvent JSON, without a trailing newline.
    pub body: &'a [u8],
    /// The order it is about, if any.
    pub order_id: Option<i64>,
    pub status: Option<&'a str>,
    pub previous_status: Option<&'a str>,
}

/// What sending one [`Message`] did, and what the destination answered
/// ("HTTP 200 OK: thanks", "exit 0: deployed"), for a person to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub outcome: Outcome,
    pub answer: String,
}

/// Events for one `deliver` call. A `Vec` rather than a slice, so the
/// delivery loop can take the storage back once the attempt is over and
/// fill it with the next batch: a file sink's batches are 16,384 events
/// (2.4 MB), and a new buffer per batch is a new mapping whose every page
/// faults in.
pub type Batch = Arc<Vec<OutboxEntry>>;

/// A built sink: delivers batches of events.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    /// Delivers a batch; returns one outcome per entry, in order.
    async fn deliver(&self, batch: Batch) -> Vec<Outcome>;
    /// Sends one message outside the outbox, through the same path
    /// `deliver` takes for each event (signing and headers, the command,
    /// the file's lock), and reports the destination's answer. Nothing is
    /// recorded and nothing is retried: the caller shows the result.
    async fn send(&self, message: &Message<'_>) -> Sent;
    /// Connects to the destination without delivering anything (`orderwatch
    /// check --online`): a webhook's TCP and TLS handshake, say. `Ok(None)`
    /// when there is nothing to connect to beyond what `build` checked (a
    /// file, stdout, a command); `Ok(Some(what))` says what was reached.
    async fn reach(&self) -> Result<Option<String>, String> {
        Ok(None)
    }
    /// Entries per `deliver` call.
    fn batch_size(&self) -> usize;
    /// `deliver` calls in flight at once.
    fn concurrency(&self) -> usize;
    /// Reopen files (SIGHUP after logrotate). Default: nothing to reopen.
    fn reopen(&self) {}
}

/// What a kind needs to build its sink besides its own settings.
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    /// The sink's name, for messages.
    pub name: &'a str,
    /// Every event's `source`: the API base URL.
    pub source: &'a str,
    /// How long the sink keeps retrying a delivery; nothing should make it
    /// wait longer (a receiver's `Retry-After`, say).
    pub give_up_after: Duration,
    /// Built for the daemon, which owns what the sink writes: only then may
    /// a file sink cut a torn last line (an interrupted write) off its file.
    /// `test-sink` and `check` may run beside a daemon that is writing.
    pub owner: bool,
}

/// One sink's validated, kind-specific settings, as the config holds them.
pub trait SinkSettings: fmt::Debug + Send + Sync {
    /// The kind's name, as in `type = "..."`.
    fn kind(&self) -> &'static str;

    /// Whether the sink delivers in recorded order, one batch at a time
    /// (file, stdout): the store then keeps a cursor for it, not a row per event.
    fn in_order(&self) -> bool {
        false
    }

    /// One line for `orderwatch check`: where events go, and how.
    fn describe(&self) -> String;

    /// The secrets the sink reads, each with the key stem it came from
    /// (`secret` for `secret_env` / `secret_file`).
    fn secrets(&self) -> Vec<(&'static str, &SecretSource)> {
        Vec::new()
    }

    /// Files the sink writes, so `check` can refuse two sinks (or a sink
    /// and the store) on the same file.
    fn files(&self) -> Vec<&Path> {
        Vec::new()
    }

    /// Builds the sink: reads secrets, checks what can be checked without
    /// sending anything (a writable directory, an executable command),
    /// prepares clients. `check` calls this too and drops the result, so
    /// it must not deliver, connect or create anything.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError>;
}

/// Why a sink cannot be built: what in its table is at fault, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// Appended to the sink's label in messages: `.path`, `.secret_env`,
    /// or ` (systemd credential "webhook-hook")`.
    pub at: String,
    pub message: String,
}

impl BuildError {
    /// A problem with the key `key` of the sink's table.
    pub fn key(key: &str, message: impl Into<String>) -> BuildError {
        BuildError {
            at: format!(".{key}"),
            message: message.into(),
        }
    }

    /// A problem with the secret read from `source` (`{stem}_env`,
    /// `{stem}_file` or a systemd credential). The message never holds the
    /// secret: only where it came from and what is wrong.
    pub fn secret(stem: &str, source: &SecretSource, message: impl Into<String>) -> BuildError {
        BuildError {
            at: source.key_suffix(stem),
            message: message.into(),
        }
    }

    /// The error as one line, for a sink labelled `sinks[2] ("hook")`.
    pub fn render(&self, label: &str) -> String {
        format!("{label}{}: {}", self.at, self.message)
    }
}

/// A sink kind: its `type` name and how it reads its table.
pub struct Kind {
    pub name: &'static str,
    /// Reads and validates the kind's own keys; problems go to the table.
    pub parse: fn(&mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>>,
}
