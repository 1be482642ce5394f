//! One `[[sinks]]` table as a sink kind sees it: the keys that are its own,
//! and helpers that validate them with messages naming the sink and key.
//!
//! The common keys (`name`, `type`, `statuses`, the retry policy) are read
//! by the config module; everything else in the table belongs to the kind,
//! which declares it as a serde struct with `deny_unknown_fields` and reads
//! it with [`SinkTable::keys`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::field::{Problems, RedactedUrl, is_loopback, shown_url, sink_key};
use super::secret::SecretSource;

/// The kind-specific part of one `[[sinks]]` table.
pub struct SinkTable<'a> {
    index: usize,
    name: Option<&'a str>,
    kind: &'static str,
    rest: toml::Table,
    problems: &'a mut Problems,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> SinkTable<'a> {
    pub fn new(
        index: usize,
        name: Option<&'a str>,
        kind: &'static str,
        rest: toml::Table,
        problems: &'a mut Problems,
        env: &'a dyn Fn(&str) -> Option<String>,
    ) -> SinkTable<'a> {
        SinkTable {
            index,
            name,
            kind,
            rest,
            problems,
            env,
        }
    }

    /// `sinks[1] ("archive").path`.
    pub fn key(&self, key: &str) -> String {
        sink_key(self.index, self.name, key)
    }

    /// The sink's name, if it has a valid one.
    pub fn name(&self) -> Option<&str> {
        self.name
    }

    pub fn problem(&mut self, key: &str, message: impl Into<String>) {
        let key = self.key(key);
        self.problems.add(key, message);
    }

    /// Reads the kind's own keys into `T`, a serde struct with
    /// `deny_unknown_fields`: a key of another kind, or a typo, is named
    /// as "not a key of a \"file\" sink".
    pub fn keys<T: DeserializeOwned>(&mut self) -> Option<T> {
        let table = std::mem::take(&mut self.rest);
        // The table has lost its TOML positions, so the error names the key
        // (`sinks[0] ("c").timeout: invalid type: integer `10`, ...`).
        match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table)) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let message = e.into_inner().message().trim().to_string();
                match unknown_field(&message) {
                    Some(field) => {
                        let kind = self.kind;
                        self.problem(&field, format!("is not a key of a {kind:?} sink"));
                    }
                    None if path != "." => self.problem(&path, message.replace('\n', "; ")),
                    None => {
                        let label = match self.name {
                            Some(n) => format!("sinks[{}] ({n:?})", self.index),
                            None => format!("sinks[{}]", self.index),
                        };
                        self.problems.add(label, message.replace('\n', "; "));
                    }
                }
                None
            }
        }
    }

    /// A duration key of this sink (see [`Problems::duration`]).
    pub fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let key = self.key(key);
        self.problems.duration(&key, value, default)
    }

    /// A duration key that must be greater than zero.
    pub fn positive(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let key = self.key(key);
        self.problems.positive(&key, value, default)
    }

    /// A count between `min` and `max` (inclusive), `default` if unset.
    pub fn count(
        &mut self,
        key: &str,
        value: Option<u32>,
        default: u32,
        min: u32,
        max: u32,
    ) -> usize {
        let n = value.unwrap_or(default);
        if !(min..=max).contains(&n) {
            self.problem(key, format!("must be between {min} and {max}, got {n}"));
        }
        n.clamp(min, max) as usize
    }

    /// Where a secret comes from: `{stem}_env` or `{stem}_file`, else the
    /// systemd credential `credential` when the service manager provided
    /// it. `None` (with a problem saying `missing`) when there is none.
    pub fn secret(
        &mut self,
        stem: &str,
        env_var: Option<String>,
        file: Option<PathBuf>,
        credential: &str,
        missing: &str,
    ) -> Option<SecretSource> {
        match (env_var, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    &format!("{stem}_file"),
                    format!("set either {stem}_env or {stem}_file, not both"),
                );
                None
            }
            (Some(var), None) => {
                let key = self.key(&format!("{stem}_env"));
                self.problems.env_var(key, &var)
            }
            (None, Some(file)) => Some(SecretSource::File(file)),
            (None, None) => match self.credential(credential) {
                Some(source) => Some(source),
                None => {
                    self.problem(&format!("{stem}_env"), missing);
                    None
                }
            },
        }
    }

    /// The systemd credential `name`, if the service manager provided it
    /// (in `$CREDENTIALS_DIRECTORY`). For secrets that are optional, such
    /// as a NATS token: their absence is no problem.
    pub fn credential(&self, name: &str) -> Option<SecretSource> {
        let dir = (self.env)("CREDENTIALS_DIRECTORY")?;
        Path::new(&dir)
            .join(name)
            .exists()
            .then(|| SecretSource::Credential {
                dir: PathBuf::from(dir),
                name: name.to_string(),
            })
    }

    /// An `http(s)` URL, its credentials hidden in every message. Plain
    /// http is accepted only to loopback unless `allow_insecure`: anything
    /// in the URL or the request (credentials, signatures, events) would
    /// cross the network in clear.
    pub fn http_url(
        &mut self,
        key: &str,
        text: Option<&str>,
        allow_insecure: bool,
        missing: &str,
    ) -> Option<RedactedUrl> {
        let Some(text) = text else {
            self.problem(key, missing);
            return None;
        };
        let url = match reqwest::Url::parse(text) {
            Ok(u) => u,
            Err(e) => {
                // The text may hold credentials: show it with them hidden.
                self.problem(key, format!("invalid URL {}: {e}", shown_url(text)));
                return None;
            }
        };
        let shown = RedactedUrl::new(url.clone());
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            self.problem(key, format!("{shown} is not an http(s) URL"));
            return None;
        }
        if url.scheme() == "http" && !is_loopback(&url) && !allow_insecure {
            self.problem(
                key,
                format!(
                    "{shown} uses plain http to a host that is not this machine, so events (and any credentials in the URL) would cross the network in clear; use https, or set allow_insecure_http = true"
                ),
            );
            return None;
        }
        Some(shown)
    }
}

/// The field serde names in "unknown field `url`, expected ...".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let end = rest.find('`')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_the_unknown_field() {
        assert_eq!(
            unknown_field("unknown field `url`, expected `path`").as_deref(),
            Some("url")
        );
        assert_eq!(unknown_field("invalid type: string"), None);
    }
}
