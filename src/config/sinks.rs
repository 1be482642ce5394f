//! `[[sinks]]`: the keys every sink has (`name`, `type`, `statuses`, the
//! retry policy), read here; the rest of each table goes to its kind (see
//! `sink::registry`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::field::{Problems, sink_key};
use super::table::SinkTable;
use crate::sink::kind::SinkSettings;
use crate::sink::registry;
use crate::sink::retry::DeliveryPolicy;

/// One `[[sinks]]` entry, validated.
#[derive(Clone)]
pub struct SinkConfig {
    pub name: String,
    /// Lower-case statuses this sink wants; `None` means all.
    pub statuses: Option<Vec<String>>,
    pub policy: DeliveryPolicy,
    /// `operational = true`: the sink receives orderwatch's own alerts
    /// (see `store/alert.rs`) and no transitions.
    pub operational: bool,
    /// What the kind read from the rest of the table.
    pub settings: Arc<dyn SinkSettings>,
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("statuses", &self.statuses)
            .field("policy", &self.policy)
            .field("operational", &self.operational)
            .field("settings", &self.settings)
            .finish()
    }
}

impl SinkConfig {
    /// The kind's name, as in `type = "..."`.
    pub fn kind(&self) -> &'static str {
        self.settings.kind()
    }

    /// Whether an event with this status goes to this sink.
    pub fn wants(&self, status: &str) -> bool {
        match &self.statuses {
            None => true,
            Some(list) => list.iter().any(|s| s.eq_ignore_ascii_case(status)),
        }
    }
}

/// One `[[sinks]]` table as written: the common keys, and the kind's own
/// keys left in `rest` (checked by the kind, so a key of another kind is
/// named as such).
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawSink {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub statuses: Option<Vec<String>>,
    pub backoff_initial: Option<String>,
    pub backoff_max: Option<String>,
    pub give_up_after: Option<String>,
    pub operational: Option<bool>,
    #[serde(flatten)]
    pub rest: toml::Table,
}

/// Validates every sink; problems go to `problems`, sinks with any are left out.
pub(super) fn parse_all(
    raw: Vec<RawSink>,
    problems: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<SinkConfig> {
    let mut sinks = Vec::new();
    let mut names = HashSet::new();
    for (i, raw_sink) in raw.into_iter().enumerate() {
        // Named before the rest is read, so a duplicate is reported with a
        // sink's other problems, not only once they are fixed.
        if let Some(name) = raw_sink.name.as_deref().filter(|n| valid_sink_name(n))
            && !names.insert(name.to_string())
        {
            problems.add(
                format!("sinks[{i}].name"),
                format!("duplicate sink name {name:?}; every sink needs a unique name"),
            );
        }
        if let Some(sink) = parse(i, raw_sink, problems, env) {
            sinks.push(sink);
        }
    }
    sinks
}

fn parse(
    index: usize,
    raw: RawSink,
    problems: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<SinkConfig> {
    let key = |k: &str| sink_key(index, raw.name.as_deref(), k);
    let name = match raw.name.clone() {
        None => {
            problems.add(key("name"), "missing; every sink needs a unique name");
            None
        }
        Some(n) if !valid_sink_name(&n) => {
            problems.add(
                key("name"),
                format!("invalid name {n:?}; use letters, digits, '-', '_' or '.' (at most 64)"),
            );
            None
        }
        Some(n) => Some(n),
    };
    let policy = policy(&key, &raw, problems);
    let statuses = statuses(&key("statuses"), raw.statuses, problems);
    let operational = raw.operational.unwrap_or(false);
    if operational && statuses.is_some() {
        problems.add(
            key("statuses"),
            "an operational sink receives only orderwatch's own alerts, no transitions; remove `statuses`, or send transitions to another sink",
        );
    }
    let kind = kind(&key, raw.kind.as_deref(), problems)?;
    let mut table = SinkTable::new(index, name.as_deref(), kind.name, raw.rest, problems, env);
    let settings = (kind.parse)(&mut table);
    Some(SinkConfig {
        name: name?,
        statuses,
        policy,
        operational,
        settings: settings?,
    })
}

/// A sink's backoff and give-up settings, with their defaults.
fn policy(key: &dyn Fn(&str) -> String, raw: &RawSink, problems: &mut Problems) -> DeliveryPolicy {
    let policy = DeliveryPolicy {
        backoff_initial: problems.positive(
            &key("backoff_initial"),
            raw.backoff_initial.as_deref(),
            Duration::from_secs(5),
        ),
        backoff_max: problems.positive(
            &key("backoff_max"),
            raw.backoff_max.as_deref(),
            Duration::from_secs(3600),
        ),
        give_up_after: problems.positive(
            &key("give_up_after"),
            raw.give_up_after.as_deref(),
            Duration::from_secs(3 * 24 * 3600),
        ),
    };
    if policy.backoff_max < policy.backoff_initial {
        problems.add(
            key("backoff_max"),
            "must not be smaller than backoff_initial",
        );
    }
    policy
}

/// The registered sink kind `type` names.
fn kind(
    key: &dyn Fn(&str) -> String,
    kind: Option<&str>,
    problems: &mut Problems,
) -> Option<&'static crate::sink::kind::Kind> {
    match kind {
        None => {
            problems.add(
                key("type"),
                format!("missing; expected {}", registry::names()),
            );
            None
        }
        Some(t) => match registry::find(t) {
            Some(kind) => Some(kind),
            None => {
                problems.add(
                    key("type"),
                    format!("unknown sink type {t:?}; expected {}", registry::names()),
                );
                None
            }
        },
    }
}

fn statuses(key: &str, raw: Option<Vec<String>>, problems: &mut Problems) -> Option<Vec<String>> {
    let list = raw?;
    if list.is_empty() {
        problems.add(
            key,
            "is empty, so the sink would receive nothing; remove the key to receive every status",
        );
        return None;
    }
    if list.iter().any(|s| s.trim().is_empty()) {
        problems.add(key, "contains an empty status");
    }
    // Spelled as recorded statuses are, so a filter always matches them.
    Some(
        list.iter()
            .map(|s| crate::transition::status_name(s))
            .collect(),
    )
}

fn valid_sink_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
