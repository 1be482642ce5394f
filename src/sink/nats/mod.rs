//! `type = "nats"`: each event published to a NATS JetStream stream, done
//! only once JetStream acknowledges that it stored it.
//!
//! Each message carries `Nats-Msg-Id: <event id>`. Event ids are stable,
//! so a publish repeated after a lost ack, a crash or a `redeliver` is
//! dropped by JetStream as a duplicate (within the stream's duplicate
//! window): orderwatch's at-least-once delivery becomes exactly-once in
//! the stream, for any number of consumers.
//!
//! This file reads and checks the keys; `subject.rs` holds the subject
//! template and headers (pure), `publish.rs` the connection and what a
//! publish's result means for the delivery. The sink never creates streams:
//! which stream stores the events, for how long and with which duplicate
//! window is the operator's decision (see the README).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use async_nats::ServerAddr;
use serde::Deserialize;

use super::kind::{BuildContext, BuildError, Kind, Sink, SinkSettings};
use crate::config::field::read_small_file;
use crate::config::secret::{Secret, SecretSource, warn_if_shared};
use crate::config::table::SinkTable;

mod outcome;
mod publish;
mod subject;

use publish::{Login, NatsSink};
use subject::SubjectTemplate;

pub static KIND: Kind = Kind {
    name: "nats",
    parse,
};

/// The subject when the table sets none.
const DEFAULT_SUBJECT: &str = "certcentral.orders.{status}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    url: Option<String>,
    subject: Option<String>,
    credentials_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    max_in_flight: Option<u32>,
}

/// How the sink authenticates. Holds where secrets come from, never a
/// secret, so it may be shown.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    None,
    Token(SecretSource),
    User {
        user: String,
        password: SecretSource,
    },
    /// A `.creds` file: a user JWT and the NKEY seed that signs the
    /// server's challenge.
    Credentials(SecretSource),
}

impl Auth {
    /// For `check` and messages.
    fn describe(&self) -> String {
        match self {
            Auth::None => "no authentication".to_string(),
            Auth::Token(s) => format!("token from {s}"),
            Auth::User { user, password } => format!("user {user:?}, password from {password}"),
            Auth::Credentials(s) => format!("credentials (.creds) from {s}"),
        }
    }
}

#[derive(Debug)]
struct Settings {
    servers: Vec<ServerAddr>,
    subject: SubjectTemplate,
    auth: Auth,
    max_in_flight: usize,
}

fn parse(table: &mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>> {
    settings(table).map(|s| Arc::new(s) as Arc<dyn SinkSettings>)
}

fn settings(table: &mut SinkTable<'_>) -> Option<Settings> {
    let keys: Keys = table.keys()?;
    let servers = match keys.url.as_deref() {
        None => {
            table.problem(
                "url",
                "missing; a nats sink needs its server(s), e.g. \"nats://127.0.0.1:4222\" (several separated by commas)",
            );
            None
        }
        Some(text) => servers(text).map_err(|e| table.problem("url", e)).ok(),
    };
    let subject = SubjectTemplate::parse(keys.subject.as_deref().unwrap_or(DEFAULT_SUBJECT))
        .map_err(|e| table.problem("subject", e))
        .ok();
    let auth = auth(table, &keys);
    let max_in_flight = table.count("max_in_flight", keys.max_in_flight, 256, 1, 4096);
    Some(Settings {
        servers: servers?,
        subject: subject?,
        auth: auth?,
        max_in_flight,
    })
}

/// `url`: one or more comma-separated `nats://` or `tls://` servers.
/// Credentials in it are refused: they belong in `token_env`,
/// `password_file` and friends, which never reach a log or `check`.
fn servers(text: &str) -> Result<Vec<ServerAddr>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        if item.is_empty() {
            return Err(format!(
                "{text:?} has an empty server; separate servers by single commas"
            ));
        }
        if item.contains('@') {
            return Err(
                "holds credentials (user:password@ or token@); remove them and set token_env/token_file, user with password_env/password_file, or credentials_file instead"
                    .to_string(),
            );
        }
        let addr = ServerAddr::from_str(item).map_err(|e| format!("{item:?}: {e}"))?;
        let url = addr.clone().into_inner();
        if !matches!(addr.scheme(), "nats" | "tls") {
            return Err(format!(
                "{item:?} is not a nats:// or tls:// URL (websockets are not supported)"
            ));
        }
        if addr.host().is_empty() {
            return Err(format!("{item:?} names no host"));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "{item:?} has a path, query or fragment; a NATS server URL is scheme://host:port"
            ));
        }
        out.push(addr);
    }
    Ok(out)
}

/// The authentication keys: at most one way, each complete.
fn auth(table: &mut SinkTable<'_>, keys: &Keys) -> Option<Auth> {
    let token = keys.token_env.is_some() || keys.token_file.is_some();
    let password = keys.password_env.is_some() || keys.password_file.is_some();
    let login = keys.user.is_some() || password;
    let ways = [keys.credentials_file.is_some(), token, login];
    if ways.iter().filter(|w| **w).count() > 1 {
        let key = if keys.credentials_file.is_some() {
            "credentials_file"
        } else {
            "token_env"
        };
        table.problem(
            key,
            "set one way to authenticate: credentials_file, token_env/token_file, or user with password_env/password_file",
        );
        return None;
    }
    let credential = format!("nats-{}", table.name().unwrap_or_default());
    if let Some(path) = &keys.credentials_file {
        return Some(Auth::Credentials(SecretSource::File(path.clone())));
    }
    if token {
        let source = table.secret(
            "token",
            keys.token_env.clone(),
            keys.token_file.clone(),
            &credential,
            "",
        )?;
        return Some(Auth::Token(source));
    }
    if login {
        let Some(user) = keys.user.clone() else {
            table.problem(
                "user",
                "missing; password_env/password_file need the user they belong to",
            );
            return None;
        };
        if user.is_empty() || user.chars().any(|c| c.is_whitespace() || c.is_control()) {
            table.problem(
                "user",
                format!("{user:?} is not a NATS user name (empty, or has spaces)"),
            );
            return None;
        }
        let missing = format!(
            "missing; user {user:?} needs a password: set password_env or password_file, or provide the systemd credential \"{credential}\""
        );
        let password = table.secret(
            "password",
            keys.password_env.clone(),
            keys.password_file.clone(),
            &credential,
            &missing,
        )?;
        return Some(Auth::User { user, password });
    }
    // No key: the systemd credential, if any, is a token; else the server
    // takes anyone (a local server, or one open to its network).
    Some(
        table
            .credential(&credential)
            .map_or(Auth::None, Auth::Token),
    )
}

impl Settings {
    /// The servers for messages: `nats://10.0.0.1:4222, tls://…`.
    fn shown_servers(&self) -> String {
        shown_servers(&self.servers)
    }

    /// Reads the secret of `auth`, naming its key when it cannot.
    fn login(&self) -> Result<Login, BuildError> {
        let read = |stem: &str, source: &SecretSource, what: &str| {
            source.load().map_err(|e| {
                BuildError::secret(stem, source, format!("cannot read the NATS {what}: {e}"))
            })
        };
        Ok(match &self.auth {
            Auth::None => Login::None,
            Auth::Token(s) => Login::Token(read("token", s, "token")?),
            Auth::User { user, password } => {
                Login::User(user.clone(), read("password", password, "password")?)
            }
            Auth::Credentials(source) => Login::Credentials(read_creds(source)?),
        })
    }
}

/// The largest `.creds` file read: a user JWT and a seed are about 1 KiB.
const MAX_CREDS_SIZE: u64 = 64 * 1024;

/// Reads and parses a `.creds` file (without trimming: the parser wants
/// the line break after its last marker), bounded and only if it is a
/// regular file, like every secret file. Sends nothing.
fn read_creds(source: &SecretSource) -> Result<Secret, BuildError> {
    let path = match source {
        SecretSource::File(p) => p.as_path(),
        SecretSource::Credential { dir, name } => &dir.join(name),
        SecretSource::Env(_) => {
            return Err(BuildError::secret(
                "credentials",
                source,
                "a .creds file must be a file",
            ));
        }
    };
    let text = read_small_file(path, MAX_CREDS_SIZE).map_err(|e| {
        BuildError::secret(
            "credentials",
            source,
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    warn_if_shared(path);
    let creds = Secret::new(text);
    // Parses the JWT and the seed; the errors name neither.
    async_nats::ConnectOptions::new()
        .credentials(creds.expose())
        .map_err(|e| {
            BuildError::secret(
                "credentials",
                source,
                format!(
                    "{} is not a NATS .creds file (a user JWT and an NKEY seed): {e}",
                    path.display()
                ),
            )
        })?;
    Ok(creds)
}

fn shown_servers(servers: &[ServerAddr]) -> String {
    let shown: Vec<String> = servers
        .iter()
        .map(|s| {
            if s.host().contains(':') {
                format!("{}://[{}]:{}", s.scheme(), s.host(), s.port())
            } else {
                format!("{}://{}:{}", s.scheme(), s.host(), s.port())
            }
        })
        .collect();
    shown.join(", ")
}

impl SinkSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn describe(&self) -> String {
        format!(
            "nats {} subject {} ({}; up to {} publishes awaiting their ack)",
            self.shown_servers(),
            self.subject,
            self.auth.describe(),
            self.max_in_flight
        )
    }

    fn secrets(&self) -> Vec<(&'static str, &SecretSource)> {
        match &self.auth {
            Auth::None => Vec::new(),
            Auth::Token(s) => vec![("token", s)],
            Auth::User { password, .. } => vec![("password", password)],
            Auth::Credentials(s) => vec![("credentials", s)],
        }
    }

    /// Reads the secrets and checks a `.creds` file; connects to nothing:
    /// the connection is made by the first delivery.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError> {
        let login = self.login()?;
        Ok(Arc::new(NatsSink::new(
            ctx,
            self.servers.clone(),
            self.shown_servers(),
            self.subject.clone(),
            login,
            self.auth.describe(),
            self.max_in_flight,
        )))
    }
}

#[cfg(test)]
mod tests;
