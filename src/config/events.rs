//! `[events]` and `[enrich]`: which sightings of an order become events,
//! and what an event carries besides the transition.

use std::time::Duration;

use serde::Deserialize;

use super::field::Problems;
use crate::transition::Dedupe;

/// `[events]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvents {
    pub dedupe: Option<String>,
}

/// `[events]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventsConfig {
    pub dedupe: Dedupe,
}

/// `[enrich]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnrich {
    pub order_details: Option<bool>,
    pub statuses: Option<Vec<String>>,
    pub max_share: Option<f64>,
    pub give_up_after: Option<String>,
}

/// `[enrich]` with `order_details = true`: each new transition's event
/// carries `data.order`, from CertCentral's order info endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichConfig {
    /// Lower-case statuses whose transitions are looked up; `None`: all.
    pub statuses: Option<Vec<String>>,
    /// The part of `max_requests_per_minute` lookups may use, in (0, 1].
    pub max_share: f64,
    /// A lookup still failing this long after its transition was recorded
    /// gives up: the event goes out with `"order": null`.
    pub give_up_after: Duration,
}

impl EnrichConfig {
    /// Lookups a minute at most, given the client's budget.
    pub fn lookups_per_minute(&self, max_requests_per_minute: u32) -> u32 {
        let share = (f64::from(max_requests_per_minute) * self.max_share).floor() as u32;
        share.max(1)
    }
}

pub(super) fn parse_enrich(
    raw: Option<RawEnrich>,
    problems: &mut Problems,
) -> Option<EnrichConfig> {
    let raw = raw?;
    let share = raw.max_share.unwrap_or(0.5);
    if !(share > 0.0 && share <= 1.0) {
        problems.add(
            "enrich.max_share",
            format!(
                "must be more than 0 and at most 1 (the part of max_requests_per_minute lookups may use), got {share}"
            ),
        );
    }
    let give_up_after = problems.positive(
        "enrich.give_up_after",
        raw.give_up_after.as_deref(),
        Duration::from_secs(3600),
    );
    let statuses = raw.statuses.and_then(|list| {
        if list.is_empty() || list.iter().any(|s| s.trim().is_empty()) {
            problems.add(
                "enrich.statuses",
                "must name at least one status and no empty one; remove the key to look up every transition",
            );
            return None;
        }
        Some(list.iter().map(|s| s.trim().to_ascii_lowercase()).collect())
    });
    if raw.order_details != Some(true) {
        return None;
    }
    Some(EnrichConfig {
        statuses,
        max_share: share.clamp(f64::MIN_POSITIVE, 1.0),
        give_up_after,
    })
}

pub(super) fn parse(raw: RawEvents, problems: &mut Problems) -> EventsConfig {
    let dedupe = match raw.dedupe.as_deref() {
        None => Dedupe::default(),
        Some("change") => Dedupe::Change,
        Some("first_sighting") => Dedupe::FirstSighting,
        Some(other) => {
            problems.add(
                "events.dedupe",
                format!(
                    "unknown mode {other:?}; expected \"change\" (every change of status or certificate is an event, the default) or \"first_sighting\" (only the first time an order reaches each status)"
                ),
            );
            Dedupe::default()
        }
    };
    EventsConfig { dedupe }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};
    use crate::transition::Dedupe;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |k: &str| (k == "STATE_DIRECTORY").then(|| "/var/lib/orderwatch".to_string());
        Config::parse(text, Path::new("/etc/ow.toml"), &env)
    }

    #[test]
    fn dedupe_defaults_to_change_and_takes_first_sighting() {
        assert_eq!(parse("").unwrap().events.dedupe, Dedupe::Change);
        let strict = parse("[events]\ndedupe = \"first_sighting\"\n").unwrap();
        assert_eq!(strict.events.dedupe, Dedupe::FirstSighting);
    }

    #[test]
    fn order_details_are_off_unless_asked_for_and_default_to_half_the_budget() {
        assert_eq!(parse("").unwrap().enrich, None);
        assert_eq!(
            parse("[enrich]\norder_details = false\n").unwrap().enrich,
            None
        );
        let on = parse("[enrich]\norder_details = true\n")
            .unwrap()
            .enrich
            .unwrap();
        assert_eq!(on.statuses, None);
        assert_eq!(on.max_share, 0.5);
        assert_eq!(on.give_up_after, std::time::Duration::from_secs(3600));
        assert_eq!(on.lookups_per_minute(60), 30);
        assert_eq!(on.lookups_per_minute(1), 1);
        let some = parse(
            "[enrich]\norder_details = true\nstatuses = [\" Issued\", \"revoked\"]\nmax_share = 0.25\ngive_up_after = \"10m\"\n",
        )
        .unwrap()
        .enrich
        .unwrap();
        assert_eq!(some.statuses, Some(vec!["issued".into(), "revoked".into()]));
        assert_eq!(some.lookups_per_minute(180), 45);
    }

    #[test]
    fn bad_enrich_settings_name_their_keys() {
        for (text, key) in [
            (
                "[enrich]\norder_details = true\nmax_share = 0\n",
                "enrich.max_share",
            ),
            (
                "[enrich]\norder_details = true\nmax_share = 1.5\n",
                "enrich.max_share",
            ),
            (
                "[enrich]\norder_details = true\nmax_share = nan\n",
                "enrich.max_share",
            ),
            (
                "[enrich]\norder_details = true\nstatuses = []\n",
                "enrich.statuses",
            ),
            (
                "[enrich]\norder_details = true\ngive_up_after = \"0s\"\n",
                "enrich.give_up_after",
            ),
            ("[enrich]\norder_details = \"yes\"\n", "expected a boolean"),
            ("[enrich]\nmax_shar = 0.5\n", "max_shar"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn an_unknown_dedupe_mode_names_the_key_and_both_modes() {
        let err = parse("[events]\ndedupe = \"never\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("events.dedupe"), "{err}");
        assert!(err.contains("\"never\""), "{err}");
        assert!(
            err.contains("\"change\"") && err.contains("\"first_sighting\""),
            "{err}"
        );
        let unknown = parse("[events]\nreturns = true\n").unwrap_err().to_string();
        assert!(unknown.contains("returns"), "{unknown}");
    }
}
