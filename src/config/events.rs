//! `[events]`: which sightings of an order become events.

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
