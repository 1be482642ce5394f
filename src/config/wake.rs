//! `[wake]`: the endpoint that wakes the poller for an immediate cycle.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use super::field::Problems;
use super::secret::SecretSource;

/// The systemd credential the wake key is read from when neither
/// `key_env` nor `key_file` is set.
pub const WAKE_KEY_CREDENTIAL: &str = "wake-key";
/// The header CertCentral's account webhooks carry their secret in, so a
/// CertCentral webhook can wake orderwatch directly.
pub const DEFAULT_WAKE_HEADER: &str = "X-WEBHOOK-KEY";
/// Shorter keys are refused: the endpoint may face the internet (through
/// a proxy) and a short key can be guessed.
pub const MIN_WAKE_KEY_LEN: usize = 16;

/// `[wake]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWake {
    pub listen: Option<String>,
    pub min_gap: Option<String>,
    pub key_env: Option<String>,
    pub key_file: Option<PathBuf>,
    pub header: Option<String>,
}

/// `[wake]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeConfig {
    /// Where `POST /wake` is served.
    pub listen: SocketAddr,
    /// At most one extra cycle per this long, however many wakes arrive.
    pub min_gap: Duration,
    /// The shared secret a wake must carry, if any (located, not read).
    pub key: Option<SecretSource>,
    /// The header the key arrives in.
    pub header: String,
}

impl WakeConfig {
    /// Where this machine reaches the endpoint: the listen address, with a
    /// wildcard (`0.0.0.0`, `::`) replaced by loopback.
    pub fn local_url(&self) -> String {
        let mut addr = self.listen;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{addr}/wake")
    }
}

pub(super) fn parse(
    raw: Option<RawWake>,
    problems: &mut Problems,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<WakeConfig> {
    let raw = raw?;
    let Some(text) = raw.listen.as_deref() else {
        if raw.key_env.is_some() || raw.key_file.is_some() || raw.min_gap.is_some() {
            problems.add(
                "wake.listen",
                "missing; [wake] needs an address to listen on, e.g. \"127.0.0.1:9465\"",
            );
        }
        return None;
    };
    let listen = match SocketAddr::from_str(text) {
        Ok(a) => Some(a),
        Err(_) => {
            problems.add(
                "wake.listen",
                format!("invalid address {text:?}; expected IP:PORT such as \"127.0.0.1:9465\""),
            );
            None
        }
    };
    let min_gap = problems.positive(
        "wake.min_gap",
        raw.min_gap.as_deref(),
        Duration::from_secs(5),
    );
    let key = match (raw.key_env, raw.key_file) {
        (Some(_), Some(_)) => {
            problems.add("wake.key_file", "set either key_env or key_file, not both");
            None
        }
        (Some(var), None) => problems.env_var("wake.key_env", &var),
        (None, Some(file)) => Some(SecretSource::File(file)),
        (None, None) => env("CREDENTIALS_DIRECTORY")
            .filter(|dir| Path::new(dir).join(WAKE_KEY_CREDENTIAL).exists())
            .map(|dir| SecretSource::Credential {
                dir: PathBuf::from(dir),
                name: WAKE_KEY_CREDENTIAL.to_string(),
            }),
    };
    let header = raw
        .header
        .unwrap_or_else(|| DEFAULT_WAKE_HEADER.to_string());
    if axum::http::HeaderName::from_str(&header).is_err() {
        problems.add(
            "wake.header",
            format!(
                "{header:?} is not an HTTP header name; expected e.g. \"{DEFAULT_WAKE_HEADER}\""
            ),
        );
    }
    Some(WakeConfig {
        listen: listen?,
        min_gap,
        key,
        header,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |k: &str| (k == "STATE_DIRECTORY").then(|| "/var/lib/orderwatch".to_string());
        Config::parse(text, Path::new("/etc/ow.toml"), &env)
    }

    #[test]
    fn wake_is_off_by_default_and_listens_where_told() {
        assert_eq!(parse("").unwrap().wake, None);
        let on = parse("[wake]\nlisten = \"127.0.0.1:9465\"\n")
            .unwrap()
            .wake
            .unwrap();
        assert_eq!(on.min_gap, Duration::from_secs(5));
        assert_eq!(on.key, None);
        assert_eq!(on.header, DEFAULT_WAKE_HEADER);
        assert_eq!(on.local_url(), "http://127.0.0.1:9465/wake");
        let any = parse("[wake]\nlisten = \"0.0.0.0:80\"\nkey_env = \"K\"\nheader = \"X-Wake\"\nmin_gap = \"1s\"\n")
            .unwrap()
            .wake
            .unwrap();
        assert_eq!(any.local_url(), "http://127.0.0.1:80/wake");
        assert_eq!(any.key, Some(SecretSource::Env("K".into())));
        assert_eq!(
            (any.header.as_str(), any.min_gap),
            ("X-Wake", Duration::from_secs(1))
        );
        let v6 = parse("[wake]\nlisten = \"[::]:9465\"\n")
            .unwrap()
            .wake
            .unwrap();
        assert_eq!(v6.local_url(), "http://[::1]:9465/wake");
    }

    #[test]
    fn bad_wake_settings_name_their_keys() {
        for (text, key) in [
            ("[wake]\nlisten = \"localhost\"\n", "wake.listen"),
            ("[wake]\nkey_env = \"K\"\n", "wake.listen"),
            (
                "[wake]\nlisten = \"127.0.0.1:1\"\nmin_gap = \"0s\"\n",
                "wake.min_gap",
            ),
            (
                "[wake]\nlisten = \"127.0.0.1:1\"\nkey_env = \"K\"\nkey_file = \"/k\"\n",
                "wake.key_file",
            ),
            (
                "[wake]\nlisten = \"127.0.0.1:1\"\nheader = \"bad header\"\n",
                "wake.header",
            ),
            (
                "[wake]\nlisten = \"127.0.0.1:1\"\nkey = \"inline\"\n",
                "key",
            ),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
            assert!(!err.contains("inline"), "a secret was repeated: {err}");
        }
    }
}
