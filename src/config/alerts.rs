//! `[alerts]`: when orderwatch tells its operational sinks (`operational =
//! true`) about itself. Delivery deaths and 410 pauses are always told;
//! polling trouble once it has lasted `poll_failures` cycles in a row.

use serde::Deserialize;

use super::field::Problems;

/// Failed poll cycles in a row before `orderwatch.poll.failed`, unless set:
/// one failure is often a blip the next cycle's retries absorb; three at
/// the default 1-minute interval are a few minutes of blindness.
pub const DEFAULT_POLL_FAILURES: u32 = 3;

/// `[alerts]`, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlertsConfig {
    /// Failed poll cycles in a row that make an outage worth an alert.
    pub poll_failures: u32,
}

impl Default for AlertsConfig {
    fn default() -> AlertsConfig {
        AlertsConfig {
            poll_failures: DEFAULT_POLL_FAILURES,
        }
    }
}

/// `[alerts]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    pub poll_failures: Option<i64>,
}

pub(super) fn parse(raw: Option<RawAlerts>, problems: &mut Problems) -> AlertsConfig {
    let raw = raw.unwrap_or_default();
    let poll_failures = match raw.poll_failures {
        None => DEFAULT_POLL_FAILURES,
        Some(n) => match u32::try_from(n) {
            Ok(n) if (1..=10_000).contains(&n) => n,
            _ => {
                problems.add(
                    "alerts.poll_failures",
                    format!("{n} is out of range; expected a number of failed poll cycles in a row from 1 to 10000 (default {DEFAULT_POLL_FAILURES})"),
                );
                DEFAULT_POLL_FAILURES
            }
        },
    };
    AlertsConfig { poll_failures }
}
