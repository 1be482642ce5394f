//! `orderwatch check`: everything `run` would refuse to start over, checked
//! up front and reported together (this is the unit's `ExecStartPre=`).

use std::path::Path;

use super::{Failure, Outcome, config_path};
use crate::config::{Config, SinkKind};
use crate::sink::signature::SigningKey;
use crate::store::Db;

/// Checks that need the environment (secrets, directories, the store).
/// Returns a summary line per item, or every problem found.
pub fn inspect(config: &Config) -> Result<Vec<String>, Vec<String>> {
    let mut lines = Vec::new();
    let mut problems = Vec::new();
    let d = &config.digicert;
    match d.api_key.load() {
        Ok(_) => lines.push(format!(
            "digicert: {} (API key from {})",
            d.base_url, d.api_key
        )),
        Err(e) => problems.push(format!("digicert API key ({}): {e}", d.api_key)),
    }
    let p = &config.poll;
    lines.push(format!(
        "poll: every {}, overlap {}, initial lookback {}, windows of at most {}; absolute ranges in {}; at most {} requests/min",
        humantime::format_duration(p.interval),
        humantime::format_duration(p.overlap),
        humantime::format_duration(p.initial_lookback),
        humantime::format_duration(p.max_window),
        d.timezone.name(),
        d.max_requests_per_minute,
    ));
    match Db::open(&config.store.path) {
        Ok(db) => {
            let cursor = db.cursor().ok().flatten();
            let count = db.transition_count().unwrap_or(0);
            lines.push(format!(
                "store: {} (schema {}, {} transitions, cursor {})",
                config.store.path.display(),
                db.schema_version().unwrap_or(0),
                count,
                cursor.map_or(
                    "not set: the first poll looks back initial_lookback".to_string(),
                    |c| c.format("%Y-%m-%dT%H:%M:%SZ").to_string()
                )
            ));
        }
        Err(e) => problems.push(format!("store.path: {e}")),
    }
    if let Some(m) = &config.metrics {
        lines.push(format!("metrics: http://{}/metrics and /healthz", m.listen));
    }
    if config.sinks.is_empty() {
        lines.push(
            "sinks: none configured; transitions are recorded but delivered nowhere".to_string(),
        );
    }
    for s in &config.sinks {
        let filter = match &s.statuses {
            None => "all statuses".to_string(),
            Some(l) => format!("statuses {}", l.join(", ")),
        };
        match &s.kind {
            SinkKind::Stdout => lines.push(format!("sink {}: stdout ({filter})", s.name)),
            SinkKind::File { path } => match writable(path) {
                Ok(()) => lines.push(format!("sink {}: file {} ({filter})", s.name, path.display())),
                Err(e) => problems.push(format!("sink {:?} path {}: {e}", s.name, path.display())),
            },
            SinkKind::Webhook {
                url,
                secret,
                timeout,
                concurrency,
            } => match secret.load() {
                Err(e) => problems.push(format!("sink {:?} secret ({secret}): {e}", s.name)),
                Ok(value) => match SigningKey::from_secret(value.expose()) {
                    Err(e) => problems.push(format!("sink {:?} secret ({secret}): {e}", s.name)),
                    Ok(_) => lines.push(format!(
                        "sink {}: webhook {url} ({filter}; concurrency {concurrency}, timeout {}, give up after {})",
                        s.name,
                        humantime::format_duration(*timeout),
                        humantime::format_duration(s.retry.give_up_after)
                    )),
                },
            },
        }
    }
    if problems.is_empty() {
        Ok(lines)
    } else {
        Err(problems)
    }
}

/// The file sink's file can be appended to (or created in its directory).
fn writable(path: &Path) -> Result<(), String> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| format!("cannot be appended to: {e}"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!("directory {} does not exist", dir.display()));
    }
    tempfile::NamedTempFile::new_in(dir)
        .map(|_| ())
        .map_err(|e| format!("directory {} is not writable: {e}", dir.display()))
}

pub fn run(config_flag: Option<&Path>) -> Outcome {
    let path = config_path(config_flag);
    let config = Config::load(&path).map_err(Failure::usage)?;
    match inspect(&config) {
        Ok(lines) => {
            println!("{}: ok", path.display());
            for l in lines {
                println!("  {l}");
            }
            Ok(())
        }
        Err(problems) => {
            let mut msg = format!("{}: {} problem(s):", path.display(), problems.len());
            for p in problems {
                msg.push_str("\n  - ");
                msg.push_str(&p);
            }
            Err(Failure::usage(anyhow::anyhow!(msg)))
        }
    }
}
