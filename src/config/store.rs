//! `[store]`: `path` for SQLite (the default, under `$STATE_DIRECTORY`) or
//! `url` for PostgreSQL with its password source and failover time. The URL
//! is checked here, offline, so a typo is a config error (exit 2) rather
//! than a connection failure at start.

use std::path::PathBuf;
use std::time::Duration;

use super::field::shown_url;
use super::raw::RawStore;
use super::validate::Validator;
use super::*;

/// The shortest `failover`: the lease is renewed several times within it,
/// and a busy database should not cost a node its leadership.
const MIN_FAILOVER: Duration = Duration::from_secs(3);
/// The longest `failover`: beyond it, an outage of the leader is no failover.
const MAX_FAILOVER: Duration = Duration::from_secs(3600);

impl Validator {
    pub(super) fn store(
        &mut self,
        raw: RawStore,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<StoreConfig> {
        match (&raw.path, &raw.url) {
            (Some(_), Some(_)) => {
                self.problem(
                    "store.path and store.url",
                    "set one of them: path for a SQLite file, url for PostgreSQL",
                );
                None
            }
            (_, Some(url)) => self.postgres(url, &raw, env),
            (path, None) => {
                for key in ["password_env", "password_file", "failover"] {
                    if raw_has(&raw, key) {
                        self.problem(
                            format!("store.{key}"),
                            "applies to a PostgreSQL store only (store.url); a SQLite store (store.path) has no password or failover",
                        );
                    }
                }
                self.sqlite(path.clone(), env)
            }
        }
    }

    fn sqlite(
        &mut self,
        path: Option<PathBuf>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<StoreConfig> {
        if let Some(path) = path {
            if path.as_os_str().is_empty() {
                self.problem("store.path", "must not be empty");
                return None;
            }
            return Some(StoreConfig::Sqlite { path });
        }
        // systemd may list several directories separated by ':'; ours is the first.
        match env("STATE_DIRECTORY").and_then(|d| d.split(':').next().map(PathBuf::from)) {
            Some(dir) if !dir.as_os_str().is_empty() => Some(StoreConfig::Sqlite {
                path: dir.join("orderwatch.db"),
            }),
            _ => {
                self.problem(
                    "store.path",
                    "not set and $STATE_DIRECTORY is not set either; set [store] path = \"/var/lib/orderwatch/orderwatch.db\" (systemd's StateDirectory= sets the variable)",
                );
                None
            }
        }
    }

    fn postgres(
        &mut self,
        url: &str,
        raw: &RawStore,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<StoreConfig> {
        let target = match PgTarget::parse(url) {
            Ok(t) => Some(t),
            Err(e) => {
                // The text may hold a password: shown redacted.
                self.problem("store.url", format!("{}: {e}", shown_url(url)));
                None
            }
        };
        let password = match (&raw.password_env, &raw.password_file) {
            (Some(_), Some(_)) => {
                self.problem(
                    "store.password_file",
                    "set either password_env or password_file, not both",
                );
                None
            }
            (Some(var), None) => self.problems.env_var("store.password_env", var).map(Some),
            (None, Some(file)) => Some(Some(SecretSource::File(file.clone()))),
            (None, None) => Some(default_password(env)),
        };
        let failover = self.duration("store.failover", raw.failover.as_deref(), DEFAULT_FAILOVER);
        if !(MIN_FAILOVER..=MAX_FAILOVER).contains(&failover) {
            self.problem(
                "store.failover",
                format!(
                    "{} is outside {}..{}; the default is {}",
                    humantime::format_duration(failover),
                    humantime::format_duration(MIN_FAILOVER),
                    humantime::format_duration(MAX_FAILOVER),
                    humantime::format_duration(DEFAULT_FAILOVER),
                ),
            );
        }
        Some(StoreConfig::Postgres(Box::new(PostgresConfig {
            target: target?,
            password: password?,
            failover,
        })))
    }
}

/// The systemd credential `postgres-password` when the service manager
/// provided one; otherwise no password.
fn default_password(env: &dyn Fn(&str) -> Option<String>) -> Option<SecretSource> {
    let dir = PathBuf::from(env("CREDENTIALS_DIRECTORY")?);
    dir.join(POSTGRES_PASSWORD_CREDENTIAL)
        .exists()
        .then(|| SecretSource::Credential {
            dir,
            name: POSTGRES_PASSWORD_CREDENTIAL.to_string(),
        })
}

fn raw_has(raw: &RawStore, key: &str) -> bool {
    match key {
        "password_env" => raw.password_env.is_some(),
        "password_file" => raw.password_file.is_some(),
        "failover" => raw.failover.is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parse_with(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/orderwatch/test.toml"), env)
    }

    fn errors(text: &str) -> String {
        match parse_with(text, &|_| None) {
            Err(e) => e.to_string(),
            Ok(c) => panic!("expected an error, got {c:?}"),
        }
    }

    fn postgres(text: &str, env: &dyn Fn(&str) -> Option<String>) -> PostgresConfig {
        match parse_with(text, env).map(|c| c.store) {
            Ok(StoreConfig::Postgres(pg)) => *pg,
            other => panic!("expected a PostgreSQL store, got {other:?}"),
        }
    }

    #[test]
    fn a_url_selects_postgresql_with_default_failover_and_no_password() {
        let pg = postgres(
            "[store]\nurl = \"postgresql://ow@db:5433/orders\"\n",
            &|_| None,
        );
        assert_eq!(pg.target.location(), "postgresql://ow@db:5433/orders");
        assert_eq!((pg.failover, pg.password), (DEFAULT_FAILOVER, None));
        let pg = postgres(
            "[store]\nurl = \"postgresql://ow@db/o\"\npassword_env = \"PGPW\"\nfailover = \"30s\"\n",
            &|_| None,
        );
        assert_eq!(pg.password, Some(SecretSource::Env("PGPW".into())));
        assert_eq!(pg.failover, Duration::from_secs(30));
    }

    #[test]
    fn the_systemd_credential_is_the_default_password() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(POSTGRES_PASSWORD_CREDENTIAL), "pw").unwrap();
        let creds = dir.path().display().to_string();
        let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| creds.clone());
        let pg = postgres("[store]\nurl = \"postgresql://ow@db/o\"\n", &env);
        assert_eq!(
            pg.password,
            Some(SecretSource::Credential {
                dir: dir.path().to_path_buf(),
                name: POSTGRES_PASSWORD_CREDENTIAL.into()
            })
        );
    }

    #[test]
    fn path_and_url_together_and_misplaced_keys_are_refused_by_name() {
        let both = errors("[store]\npath = \"/x.db\"\nurl = \"postgresql://ow@db/o\"\n");
        assert!(both.contains("store.path and store.url"), "{both}");
        let sqlite = errors("[store]\npath = \"/x.db\"\npassword_env = \"X\"\nfailover = \"5s\"\n");
        assert!(
            sqlite.contains("store.password_env") && sqlite.contains("store.failover"),
            "{sqlite}"
        );
        let two = errors(
            "[store]\nurl = \"postgresql://ow@db/o\"\npassword_env = \"X\"\npassword_file = \"/p\"\n",
        );
        assert!(two.contains("store.password_file"), "{two}");
        let fast = errors("[store]\nurl = \"postgresql://ow@db/o\"\nfailover = \"1s\"\n");
        assert!(fast.contains("store.failover"), "{fast}");
    }

    #[test]
    fn a_password_in_the_url_is_refused_and_never_shown() {
        let err = errors("[store]\nurl = \"postgresql://ow:hunter2@db/o?sslmode=verify-full\"\n");
        assert!(
            err.contains("store.url") && err.contains("password_env"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let err = errors("[store]\nurl = \"postgresql://ow@db/o?sslmode=sometimes\"\n");
        assert!(
            err.contains("store.url") && err.contains("sslmode"),
            "{err}"
        );
    }

    #[test]
    fn debug_of_a_postgresql_config_shows_where_not_secrets() {
        let c = parse_with(
            "[store]\nurl = \"postgresql://ow@db/o?sslmode=require\"\npassword_file = \"/run/pw\"\n",
            &|_| None,
        )
        .unwrap();
        let shown = format!("{c:?}");
        assert!(shown.contains("postgresql://ow@db:5432/o"), "{shown}");
        assert!(
            c.secret_sources()
                .iter()
                .any(|(label, _)| label == "PostgreSQL password")
        );
    }
}
