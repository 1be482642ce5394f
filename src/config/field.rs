//! The building blocks of config validation that every part of the file
//! uses, sink kinds included: a [`Problem`] naming its key, durations with
//! bounds, URLs whose credentials never reach a message.
//!
//! This file depends on nothing else of orderwatch's config, so a sink
//! kind's own file can validate its keys with it without importing the
//! config module that lists the kinds.

use std::fmt;
use std::time::Duration;

/// No duration in a config may be longer than this. Anything longer is a
/// typo, and would overflow the clock arithmetic built on it (a first
/// start looking back `initial_lookback = "18446744073709551615s"` cannot
/// even name its first day).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The TOML key, e.g. `poll.max_window` or `sinks[1] ("archive").path`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found so far; validation goes on after one, so an
/// operator fixes a config in one round trip, not five.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// `key = "NAME"` (a `*_env` key) as the source of a secret, or a
    /// problem at `key` when `NAME` cannot be a variable's name (see
    /// [`super::secret::env_source`]).
    pub fn env_var(&mut self, key: impl Into<String>, var: &str) -> Option<super::SecretSource> {
        match super::secret::env_source(var) {
            Ok(source) => Some(source),
            Err(problem) => {
                self.add(key, problem);
                None
            }
        }
    }

    /// A humantime duration (`"30s"`, `"10m"`, `"7d"`), `default` if unset.
    pub fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let Some(text) = value else {
            return default;
        };
        match humantime::parse_duration(text) {
            Ok(d) if d > MAX_DURATION => {
                self.add(
                    key,
                    format!("{text:?} is longer than the 100 years any setting may be"),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.add(
                    key,
                    format!(
                        "invalid duration {text:?} ({e}); expected e.g. \"30s\", \"10m\", \"7d\""
                    ),
                );
                default
            }
        }
    }

    /// A duration that must be greater than zero.
    pub fn positive(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        let d = self.duration(key, value, default);
        if d.is_zero() {
            self.add(
                key,
                format!("must be greater than zero, got {:?}", value.unwrap_or("0s")),
            );
            return default;
        }
        d
    }
}

/// The key of a sink's setting in messages: `sinks[1] ("archive").path`.
pub fn sink_key(index: usize, name: Option<&str>, key: &str) -> String {
    match name {
        Some(n) => format!("sinks[{index}] ({n:?}).{key}"),
        None => format!("sinks[{index}].{key}"),
    }
}

/// A URL that may carry credentials (`https://user:pass@host/?token=...`).
/// `Display` and `Debug` hide the user, password and query so none reaches a log.
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(reqwest::Url);

impl RedactedUrl {
    pub fn new(url: reqwest::Url) -> RedactedUrl {
        RedactedUrl(url)
    }
    /// The real URL, for the HTTP client only.
    pub fn expose(&self) -> &reqwest::Url {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        // A user name can be a token too (https://TOKEN@host/).
        if !shown.username().is_empty() {
            let _ = shown.set_username("redacted");
        }
        if shown.password().is_some() {
            let _ = shown.set_password(Some("redacted"));
        }
        if shown.query().is_some() {
            shown.set_query(Some("redacted"));
        }
        write!(f, "{shown}")
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A URL as typed, for an error message: the part before the last `@` of
/// the authority (`user:password@`) and the query are hidden, because the
/// text could not be parsed and may still carry credentials.
pub fn shown_url(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(i) => format!("[redacted]{}", &authority[i..]),
        None => authority.to_string(),
    };
    let path = match path.find('?') {
        Some(i) => format!("{}?[redacted]", &path[..i]),
        None => path.to_string(),
    };
    format!("{:?}", format!("{scheme}{authority}{path}"))
}

/// Whether `url` names this machine (`127.0.0.0/8`, `::1`, `localhost`):
/// the only place plain http is accepted without an explicit opt-in.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The directory a file lives in (`.` for a bare file name).
/// What keeps a SQLite store at `path` from starting, if anything: its
/// directory missing ([`store_dir_missing`]), or not writable. The daemon
/// creates `<db>.lock`, `<db>-wal` and `<db>-shm` beside the database, so a
/// store that opens in a read-only directory fails at start (or at the
/// first checkpoint) with SQLite's vaguest message.
pub fn store_dir_problem(path: &std::path::Path) -> Option<String> {
    if let Some(missing) = store_dir_missing(path) {
        return Some(missing);
    }
    let store_dir = parent_dir(path);
    dir_writable(store_dir).err().map(|e| {
        format!(
            "{}: {e}; the store needs to create its lock, -wal and -shm files there: make the directory writable by the orderwatch user",
            path.display()
        )
    })
}

/// A store path whose directory does not exist: a mistake in `[store]
/// path` that no restart fixes, so `run` refuses it as configuration
/// (exit 2), as `check` does. (A directory that exists but is read-only is
/// the disk's state, which can change: `run` exits 1 and is restarted.)
pub fn store_dir_missing(path: &std::path::Path) -> Option<String> {
    let store_dir = parent_dir(path);
    if store_dir.is_dir() || path.exists() {
        return None;
    }
    let why = std::fs::read_dir(store_dir)
        .err()
        .map_or_else(|| "not a directory".to_string(), |e| e.to_string());
    Some(format!(
        "{}: cannot use directory {}: {why}; create it (writable by the orderwatch user) or point [store] path elsewhere",
        path.display(),
        store_dir.display()
    ))
}

pub fn parent_dir(path: &std::path::Path) -> &std::path::Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    }
}

/// A new file can be created in `dir`. Leaves nothing behind.
pub fn dir_writable(dir: &std::path::Path) -> Result<(), String> {
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    // A probe file of our own: tempfile's errors name its random file and
    // hide the OS error, which is what the operator needs to see.
    let probe = dir.join(format!(".orderwatch-check-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe);
    match created {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!("directory {} is not writable: {e}", dir.display())),
    }
}

/// Reads a small text file the config names (the config itself, a secret),
/// refusing what would eat memory or block: a file over `limit` bytes
/// (`/dev/zero`), or anything that is not a regular file (a FIFO would
/// block `check`, and with it `ExecStartPre=`, forever).
pub fn read_small_file(path: &std::path::Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(
            "not a regular file (a FIFO, device or directory)",
        ));
    }
    let mut text = String::new();
    let read = file.take(limit + 1).read_to_string(&mut text)?;
    if read as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes, which no such file needs"
        )));
    }
    Ok(text)
}
