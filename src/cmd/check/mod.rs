//! `orderwatch check`: everything `run` would refuse to start over, checked
//! up front and reported together (this is the unit's `ExecStartPre=`).

use std::path::Path;

use super::{Failure, config_path};
use crate::config::{Config, PostgresConfig, SecretSource, StoreConfig};
use crate::sink;
use crate::store;
use crate::store::postgres::{Roots, TlsMode};

mod events;
mod online;

/// What `check` found: a summary line per item, and every problem.
#[derive(Debug, Default)]
pub struct Findings {
    pub lines: Vec<String>,
    pub problems: Vec<String>,
}

/// Checks that need the environment (secrets, directories, the store).
/// Returns a summary line per item, or every problem found.
pub async fn inspect(config: &Config) -> Result<Vec<String>, Vec<String>> {
    let mut found = Findings::default();
    digicert(config, &mut found);
    store(config, &mut found).await;
    if let Some(m) = &config.metrics {
        found
            .lines
            .push(format!("metrics: http://{}/metrics and /healthz", m.listen));
    }
    events::events(config, &mut found);
    sinks(config, &mut found);
    if found.problems.is_empty() {
        Ok(found.lines)
    } else {
        Err(found.problems)
    }
}

/// The API key can be read; the schedule in one line.
fn digicert(config: &Config, found: &mut Findings) {
    let d = &config.digicert;
    match d.api_key.load_header() {
        Ok(_) => found.lines.push(format!(
            "digicert: {} (API key from {})",
            d.base_url, d.api_key
        )),
        Err(e) => found.problems.push(format!(
            "{}: cannot read the DigiCert API key: {e}{}",
            secret_key("digicert", "api_key", &d.api_key),
            match &d.api_key {
                SecretSource::Env(_) =>
                    "; export it, or set api_key_file, or provide the systemd credential \"digicert-api-key\"",
                _ => "",
            }
        )),
    }
    let p = &config.poll;
    found.lines.push(format!(
        "poll: every {}, overlap {}, initial lookback {}, windows of at most {}; absolute ranges in {}; at most {} requests/min",
        humantime::format_duration(p.interval),
        humantime::format_duration(p.overlap),
        humantime::format_duration(p.initial_lookback),
        humantime::format_duration(p.max_window),
        d.timezone.name(),
        d.max_requests_per_minute,
    ));
}

/// The store is usable: see [`sqlite_store`] and [`postgres_store`].
async fn store(config: &Config, found: &mut Findings) {
    match &config.store {
        StoreConfig::Sqlite { path } => sqlite_store(path, found).await,
        StoreConfig::Postgres(pg) => postgres_store(pg, found),
    }
}

/// A SQLite store opens, is sound, and its directory takes the files the
/// daemon creates beside it.
async fn sqlite_store(path: &Path, found: &mut Findings) {
    // Damage in a page the daemon would only read later (or a file cut
    // short) shows up here, before the service starts.
    let report = match store::open_for_check(path).await {
        Ok(Some(s)) => s.report(true).await,
        Ok(None) => {
            found.lines.push(format!(
                "store: {} (not there yet; the daemon creates it at its first start)",
                path.display()
            ));
            return check_store_dir(path, found);
        }
        Err(e) => Err(e),
    };
    match report {
        Ok(report) => {
            if let Some(damage) = &report.damage {
                found.problems.push(format!(
                    "store.path: {} is damaged ({damage}); move it aside (a new store starts again from initial_lookback) or restore a backup",
                    report.location
                ));
            }
            let upgrade = if report.schema_version < store::SCHEMA_VERSION {
                format!(", upgraded to {} at the next start", store::SCHEMA_VERSION)
            } else {
                String::new()
            };
            found.lines.push(format!(
                "store: {} (schema {}{upgrade}, {} transitions, cursor {})",
                report.location,
                report.schema_version,
                report.transitions,
                report.cursor.map_or(
                    "not set: the first poll looks back initial_lookback".to_string(),
                    |c| c.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                )
            ));
        }
        Err(e) => found.problems.push(format!("store.path: {e}")),
    }
    check_store_dir(path, found);
}

/// The store's directory takes the files the daemon creates beside it.
fn check_store_dir(path: &Path, found: &mut Findings) {
    if let Some(problem) = crate::config::field::store_dir_problem(path) {
        found.problems.push(format!("store.path: {problem}"));
    }
}

/// A PostgreSQL store, checked offline: the URL (parsed with the config),
/// the password and the TLS roots. `check` is the unit's `ExecStartPre=`:
/// a database that is down for a moment must not turn into "bad config"
/// (exit 2); `run` reports it (exit 1) and systemd retries.
fn postgres_store(pg: &PostgresConfig, found: &mut Findings) {
    let mut ok = true;
    if let Some(source) = &pg.password
        && let Err(e) = source.load()
    {
        ok = false;
        found.problems.push(format!(
            "{}: cannot read the PostgreSQL password: {e}",
            secret_key("store", "password", source)
        ));
    }
    if let Err(e) = store::postgres::check_tls(&pg.target) {
        ok = false;
        found.problems.push(format!("store.url: {e}"));
    }
    if ok {
        let tls = match (pg.target.tls_mode(), pg.target.roots()) {
            (TlsMode::Disable, _) => "no TLS".to_string(),
            (TlsMode::Prefer | TlsMode::Require, _) => format!(
                "TLS {} (certificate not checked; use sslmode=verify-full)",
                pg.target.tls_mode().as_str()
            ),
            (mode, Some(Roots::File(f))) => {
                format!("TLS {} against {}", mode.as_str(), f.display())
            }
            (mode, _) => format!("TLS {} against the system's CAs", mode.as_str()),
        };
        let password = pg
            .password
            .as_ref()
            .map_or("no password".to_string(), |s| format!("password from {s}"));
        found.lines.push(format!(
            "store: {} (PostgreSQL, {tls}, {password}, failover {}; not contacted by check)",
            pg.target,
            humantime::format_duration(pg.failover)
        ));
    }
}

/// Every sink builds, with the same code as `run` (nothing is sent), and
/// no two writers share a file.
fn sinks(config: &Config, found: &mut Findings) {
    found.problems.extend(sink::file_conflicts(config));
    if config.sinks.is_empty() {
        found.lines.push(
            "sinks: none configured; transitions are recorded but delivered nowhere".to_string(),
        );
    }
    for (i, s) in config.sinks.iter().enumerate() {
        let filter = match &s.statuses {
            // An operational sink receives orderwatch's alerts, no transition.
            _ if s.operational => "operational: orderwatch's alerts only".to_string(),
            None => "all statuses".to_string(),
            Some(l) => format!("statuses {}", l.join(", ")),
        };
        match sink::build_guest(s, &config.digicert.base_url) {
            Ok(_) => found.lines.push(format!(
                "sink {}: {} ({filter}; give up after {})",
                s.name,
                s.settings.describe(),
                humantime::format_duration(s.policy.give_up_after)
            )),
            Err(e) => found
                .problems
                .push(e.render(&format!("sinks[{i}] ({:?})", s.name))),
        }
    }
}

/// The config key a secret came from: `digicert.api_key_env`,
/// `sinks[0] ("hook").secret_file`, or the systemd credential's name.
fn secret_key(table: &str, stem: &str, source: &SecretSource) -> String {
    format!("{table}{}", source.key_suffix(stem))
}

pub async fn run(config_flag: Option<&Path>, online: bool) -> Result<(), Failure> {
    let path = config_path(config_flag);
    let config = Config::load(&path).map_err(Failure::usage)?;
    let lines = match inspect(&config).await {
        Ok(lines) => lines,
        Err(problems) => {
            return Err(Failure::usage(anyhow::anyhow!(listed(
                &format!("{}: {} problem(s):", path.display(), problems.len()),
                &problems
            ))));
        }
    };
    println!("{}: ok", path.display());
    for l in lines {
        println!("  {l}");
    }
    if !online {
        return Ok(());
    }
    let found = online::reach(&config).await;
    println!("online:");
    for l in &found.lines {
        println!("  {l}");
    }
    if found.problems.is_empty() {
        return Ok(());
    }
    Err(Failure::runtime(anyhow::anyhow!(listed(
        &format!(
            "{}: {} failure(s) online:",
            path.display(),
            found.problems.len()
        ),
        &found.problems
    ))))
}

/// A heading and one `  - ` line per item.
fn listed(heading: &str, items: &[String]) -> String {
    let mut msg = heading.to_string();
    for p in items {
        msg.push_str("\n  - ");
        msg.push_str(p);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_named_by_the_key_they_came_from() {
        let env = SecretSource::Env("K".into());
        let file = SecretSource::File("/k".into());
        assert_eq!(
            secret_key("digicert", "api_key", &env),
            "digicert.api_key_env"
        );
        assert_eq!(
            secret_key("sinks[0] (\"h\")", "secret", &file),
            "sinks[0] (\"h\").secret_file"
        );
    }

    #[test]
    fn a_postgresql_store_is_checked_offline_password_and_roots() {
        let dir = tempfile::tempdir().unwrap();
        let missing_ca = dir.path().join("ca.pem");
        let url = format!(
            "postgresql://ow@db.example.net/o?sslmode=verify-full&sslrootcert={}",
            missing_ca.display()
        );
        let pg = PostgresConfig::new(
            crate::config::PgTarget::parse(&url).unwrap(),
            Some(SecretSource::File(dir.path().join("pw"))),
        );
        let mut found = Findings::default();
        postgres_store(&pg, &mut found);
        let problems = &found.problems;
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("store.password_file"),
            "{problems:?}"
        );
        assert!(problems[1].contains("ca.pem"), "{problems:?}");
        std::fs::write(dir.path().join("pw"), "secret").unwrap();
        let plain = PostgresConfig::new(
            crate::config::PgTarget::parse("postgresql://ow@db.example.net/o").unwrap(),
            Some(SecretSource::File(dir.path().join("pw"))),
        );
        let mut found = Findings::default();
        postgres_store(&plain, &mut found);
        let (lines, problems) = (&found.lines, &found.problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert!(
            lines[0].contains("not contacted") && lines[0].contains("prefer"),
            "{lines:?}"
        );
        assert!(!lines[0].contains("secret"), "{lines:?}");
    }
}
