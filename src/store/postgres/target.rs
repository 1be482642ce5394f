//! Where a PostgreSQL store lives: `[store] url`, read the way libpq reads
//! it, validated offline (so `orderwatch check` can refuse a bad URL without
//! touching the network), and turned into a connection config and a rustls
//! TLS setup.
//!
//! tokio-postgres understands most of libpq's URL, but only `disable`,
//! `prefer` and `require` for `sslmode`, and nothing of `sslrootcert`. Those
//! two are taken out of the query here and served by [`super::tls`]; the rest
//! goes to tokio-postgres unchanged, so multi-host URLs, `connect_timeout`,
//! `target_session_attrs` and friends work as documented for libpq.
//!
//! A password never sits in the URL (it would end up in the TOML, in `ps`
//! for `store copy --to`, in shell history): it is refused, and comes from
//! `password_env`, `password_file` or the systemd credential instead.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

/// libpq's `sslmode` values that orderwatch serves (`allow` is not one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, else plain; the certificate is not checked.
    Prefer,
    /// TLS, certificate not checked (checked against `sslrootcert` when one is
    /// given, as libpq does).
    Require,
    /// TLS, the certificate chains to a trusted root; any host name.
    VerifyCa,
    /// TLS, the certificate chains to a trusted root and names the host.
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode, String> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode=allow is not supported (it tries plain text first); use prefer, require or verify-full"
                        .to_string(),
                );
            }
            other => {
                return Err(format!(
                    "sslmode={other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::Prefer => "prefer",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Which certificates a verifying mode trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Roots {
    /// The system's trust store (`sslrootcert=system`, or no `sslrootcert`).
    System,
    /// A PEM file of CA certificates (`sslrootcert=/path/ca.pem`).
    File(PathBuf),
}

/// A parsed `[store] url`.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: TlsMode,
    roots: Option<Roots>,
    shown: String,
}

impl PgTarget {
    /// Parses and checks a `postgresql://` URL without any I/O.
    pub fn parse(text: &str) -> Result<PgTarget, String> {
        let text = text.trim();
        let Some((base, query)) = split_url(text) else {
            return Err(
                "expected a URL such as \"postgresql://orderwatch@db.example.net:5432/orderwatch\""
                    .to_string(),
            );
        };
        let (tls, roots, rest) = tls_params(query)?;
        let mut url = base.to_string();
        if !rest.is_empty() {
            url.push('?');
            url.push_str(&rest.join("&"));
        }
        let mut config =
            tokio_postgres::Config::from_str(&url).map_err(|e| crate::http::error_chain(&e))?;
        if config.get_password().is_some() {
            return Err(password_refused());
        }
        if config.get_hosts().is_empty() {
            return Err("names no host: postgresql://ROLE@HOST:5432/DATABASE".to_string());
        }
        let Some(user) = config.get_user().map(str::to_string) else {
            return Err("names no role: postgresql://ROLE@HOST:5432/DATABASE".to_string());
        };
        config.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        if config.get_application_name().is_none() {
            config.application_name("orderwatch");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        // A connection whose peer went silent (a NAT or firewall dropped its
        // state, the database moved) must fail within seconds, not after
        // the kernel's two hours of keepalive idle or its ~15 minutes of
        // retransmissions: a standby probing on it would never take over,
        // and a leader's pool would hand it out again. Unless the URL says
        // otherwise (`keepalives_idle`, `tcp_user_timeout`, ...).
        if config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60)
            && config.get_keepalives_interval().is_none()
            && config.get_keepalives_retries().is_none()
        {
            config
                .keepalives(true)
                .keepalives_idle(Duration::from_secs(5))
                .keepalives_interval(Duration::from_secs(2))
                .keepalives_retries(3);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(Duration::from_secs(10));
        }
        let shown = show(&config, &user);
        Ok(PgTarget {
            config,
            tls,
            roots,
            shown,
        })
    }

    /// `postgresql://role@host:port/database`: for messages, never a secret.
    pub fn location(&self) -> &str {
        &self.shown
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.tls
    }

    pub fn roots(&self) -> Option<&Roots> {
        self.roots.as_ref()
    }

    /// Whether the certificate is checked against trusted roots.
    pub fn verifies(&self) -> bool {
        matches!(self.tls, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }

    /// The connection config with the password (if any) set.
    pub(crate) fn connect_config(&self, password: Option<&str>) -> tokio_postgres::Config {
        let mut config = self.config.clone();
        if let Some(p) = password {
            config.password(p);
        }
        config
    }
}

impl fmt::Display for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTarget")
            .field("location", &self.shown)
            .field("tls", &self.tls)
            .field("roots", &self.roots)
            .finish()
    }
}

impl PartialEq for PgTarget {
    fn eq(&self, other: &PgTarget) -> bool {
        self.shown == other.shown && self.tls == other.tls && self.roots == other.roots
    }
}

/// The refusal of a URL with a password, worded for `[store] url`.
pub(crate) fn password_refused() -> String {
    "must not carry a password (it would sit in the config file); set password_env, password_file or the systemd credential \"postgres-password\"".to_string()
}

/// Takes libpq's TLS parameters out of a URL's query: the mode (with
/// libpq's adjustments for `sslrootcert`), the roots, and the other pairs.
fn tls_params(query: &str) -> Result<(TlsMode, Option<Roots>, Vec<&str>), String> {
    let mut mode: Option<TlsMode> = None;
    let mut roots = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match key {
            "sslmode" => mode = Some(TlsMode::parse(&value)?),
            "sslrootcert" if value == "system" => roots = Some(Roots::System),
            "sslrootcert" if value.is_empty() => {
                return Err(
                    "sslrootcert is empty; name a PEM file of CA certificates, or \"system\""
                        .to_string(),
                );
            }
            "sslrootcert" => roots = Some(Roots::File(PathBuf::from(value))),
            "password" => return Err(password_refused()),
            "sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir" => {
                return Err(format!(
                    "{key} is not supported (client certificates); authenticate with a password (password_env, password_file or the systemd credential \"postgres-password\")"
                ));
            }
            _ => rest.push(pair),
        }
    }
    // libpq: sslrootcert=system without a mode means verify-full.
    let mut tls = match (mode, &roots) {
        (Some(m), _) => m,
        (None, Some(Roots::System)) => TlsMode::VerifyFull,
        (None, _) => TlsMode::Prefer,
    };
    // libpq: a root certificate given with sslmode=require verifies the chain.
    if tls == TlsMode::Require && matches!(roots, Some(Roots::File(_))) {
        tls = TlsMode::VerifyCa;
    }
    // libpq: sslrootcert=system implies verify-full and refuses weaker modes.
    if roots == Some(Roots::System) && tls != TlsMode::VerifyFull {
        if matches!(tls, TlsMode::Disable | TlsMode::Prefer | TlsMode::Require) {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (not {})",
                tls.as_str()
            ));
        }
        tls = TlsMode::VerifyFull;
    }
    Ok((tls, roots, rest))
}

/// `(everything before '?', the query)` of a `postgresql://` or `postgres://` URL.
fn split_url(text: &str) -> Option<(&str, &str)> {
    if !(text.starts_with("postgresql://") || text.starts_with("postgres://")) {
        return None;
    }
    Some(text.split_once('?').unwrap_or((text, "")))
}

/// Decodes `%XX` escapes (libpq does not read `+` as a space).
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad %-escape in {value:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

fn show(config: &tokio_postgres::Config, user: &str) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{}/{db}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_url_defaults_to_prefer_and_shows_no_secret() {
        let t = PgTarget::parse("postgresql://ow@db.example.net/orders").unwrap();
        assert_eq!(t.location(), "postgresql://ow@db.example.net:5432/orders");
        assert_eq!(t.tls_mode(), TlsMode::Prefer);
        assert!(!t.verifies());
    }

    #[test]
    fn sslmode_and_sslrootcert_follow_libpq() {
        let full = PgTarget::parse("postgres://ow@h:6543/d?sslmode=verify-full").unwrap();
        assert_eq!((full.tls_mode(), full.roots()), (TlsMode::VerifyFull, None));
        let ca = PgTarget::parse("postgresql://ow@h/d?sslmode=require&sslrootcert=%2Fetc%2Fca.pem")
            .unwrap();
        assert_eq!(
            ca.tls_mode(),
            TlsMode::VerifyCa,
            "require + a root file verifies"
        );
        assert_eq!(ca.roots(), Some(&Roots::File("/etc/ca.pem".into())));
        let system =
            PgTarget::parse("postgresql://ow@h/d?sslrootcert=system&sslmode=verify-ca").unwrap();
        assert_eq!(system.tls_mode(), TlsMode::VerifyFull);
        for bad in [
            "sslmode=allow",
            "sslmode=bogus",
            "sslrootcert=system&sslmode=require",
        ] {
            let err = PgTarget::parse(&format!("postgresql://ow@h/d?{bad}")).err();
            assert!(err.is_some(), "{bad}");
        }
    }

    #[test]
    fn passwords_client_certificates_and_missing_parts_are_refused() {
        for (url, why) in [
            ("postgresql://ow:hunter2@h/d", "password"),
            ("postgresql://ow@h/d?password=hunter2", "password"),
            ("postgresql://ow@h/d?sslcert=/c.pem", "sslcert"),
            ("postgresql://h/d", "no role"),
            ("mysql://ow@h/d", "expected a URL"),
            ("postgresql://ow@h/d?frobnicate=1", "frobnicate"),
            ("postgresql://ow@h/d?sslrootcert=%zz", "escape"),
        ] {
            let err = PgTarget::parse(url).err().unwrap_or_default();
            assert!(err.contains(why), "{url}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn other_libpq_parameters_pass_through() {
        let t = PgTarget::parse(
            "postgresql://ow@a:5432,b:5433/d?target_session_attrs=read-write&application_name=x&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(t.location(), "postgresql://ow@a:5432,b:5433/d");
        let c = t.connect_config(Some("pw"));
        assert_eq!(c.get_application_name(), Some("x"));
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_password(), Some(&b"pw"[..]));
        assert!(!format!("{t:?}").contains("pw\""));
    }
}
