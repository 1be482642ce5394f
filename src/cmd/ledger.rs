//! `orderwatch deliveries` and `orderwatch redeliver`: reading and steering
//! the per-sink delivery ledger, beside a running daemon.
//!
//! Both open the store like any CLI command (no daemon lock; WAL lets them
//! read and write while the daemon runs). A running daemon notices rows
//! queued by `redeliver`, and a lifted pause, within about a second.

use std::path::Path;

use anyhow::anyhow;

use super::{Failure, load_config, open_store, print_table, show_time};
use crate::cli::{DeliveriesArgs, RedeliverArgs, StateArg};
use crate::config::Config;
use crate::sink;
use crate::store::{
    DeliveryFilter, DeliveryRow, DeliveryState, EventFilter, Pause, Redeliver, SharedStore,
};
use crate::transition::{now_ms, parse_event_id};

pub async fn deliveries(config_flag: Option<&Path>, args: &DeliveriesArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    if let Some(name) = &args.sink {
        known_sink(&config, name)?;
    }
    let store = open_store(&config).await?;
    if let (true, Some(age)) = (args.purge_dead, args.older_than) {
        return purge_dead(&store, args.sink.as_deref(), age).await;
    }
    let filter = DeliveryFilter {
        sink: args.sink.clone(),
        state: args.state.map(|s| match s {
            StateArg::Pending => DeliveryState::Pending,
            StateArg::Delivered => DeliveryState::Delivered,
            StateArg::Dead => DeliveryState::Dead,
        }),
        limit: args.limit as usize,
        routes: config.sinks.iter().map(sink::route).collect(),
    };
    let rows = store.deliveries(&filter).await.map_err(Failure::runtime)?;
    // A paused sink explains why its rows stay pending; say so on stderr so
    // `--json` output stays machine-readable.
    warn_paused(&store, &config, args.sink.as_deref()).await?;
    if args.json {
        for r in &rows {
            println!("{}", json_line(r));
        }
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no deliveries match");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let when = match r.state {
                DeliveryState::Pending => format!("next {}", show_time(r.next_attempt_at)),
                _ => r.done_at.map_or("-".into(), show_time),
            };
            vec![
                r.sink.clone(),
                r.event_id(),
                r.state.as_str().to_string(),
                r.attempts.to_string(),
                when,
                r.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        &["SINK", "EVENT", "STATE", "ATTEMPTS", "WHEN", "LAST ERROR"],
        &table,
    );
    Ok(())
}

/// `deliveries --purge-dead --older-than AGE`: deletes old dead rows in
/// batches (short transactions beside a running daemon).
async fn purge_dead(
    store: &SharedStore,
    sink: Option<&str>,
    age: std::time::Duration,
) -> Result<(), Failure> {
    const BATCH: usize = 1_000;
    let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
    let before = now_ms().saturating_sub(age_ms);
    let mut total = 0;
    loop {
        let n = store
            .purge_dead(sink, before, BATCH)
            .await
            .map_err(Failure::runtime)?;
        total += n;
        if n < BATCH {
            break;
        }
    }
    println!(
        "deleted {total} dead deliveries {} given up more than {} ago",
        sink.map_or("of every sink".to_string(), |s| format!("of sink {s}")),
        humantime::format_duration(age)
    );
    Ok(())
}

/// One ledger row as a JSON object. Times are RFC 3339 (UTC, milliseconds);
/// `next_attempt_at` is set only while the delivery is pending, `done_at`
/// only once it is delivered or dead.
fn json_line(r: &DeliveryRow) -> serde_json::Value {
    serde_json::json!({
        "sink": r.sink,
        "event": r.event_id(),
        "order_id": r.order_id,
        "status": r.status,
        "state": r.state.as_str(),
        "attempts": r.attempts,
        "queued_at": format_time_ms(r.created_at),
        "next_attempt_at": (r.state == DeliveryState::Pending).then(|| format_time_ms(r.next_attempt_at)),
        "done_at": r.done_at.map(format_time_ms),
        "last_error": r.last_error,
    })
}

/// Unix ms as RFC 3339 with milliseconds (`2026-11-24T10:02:03.456Z`).
fn format_time_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

async fn warn_paused(
    store: &SharedStore,
    config: &Config,
    only: Option<&str>,
) -> Result<(), Failure> {
    for sink in &config.sinks {
        if only.is_some_and(|n| n != sink.name) {
            continue;
        }
        if let Some(Pause { since, reason }) =
            store.pause_of(&sink.name).await.map_err(Failure::runtime)?
        {
            eprintln!(
                "sink {} is PAUSED since {} ({reason}); nothing is sent to it until `orderwatch redeliver --sink {} --dead` (or --event/--since)",
                sink.name,
                show_time(since),
                sink.name
            );
        }
    }
    Ok(())
}

pub async fn redeliver(config_flag: Option<&Path>, args: &RedeliverArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let sink = known_sink(&config, &args.sink)?.clone();
    let what = if let Some(id) = args.event.as_ref().filter(|_| sink.operational) {
        // An operational sink's events are alerts, named by their "ow:" id.
        if !id.starts_with(crate::store::alert::ID_PREFIX) {
            return Err(Failure::usage(anyhow!(
                "--event {id:?}: sink {} is operational and receives only alerts; expected an alert id such as \"ow:dead:hook:264:issued:1\" (see `orderwatch deliveries --sink {}`)",
                sink.name,
                sink.name
            )));
        }
        Redeliver::Alert(id.clone())
    } else if let Some(id) = &args.event {
        let id = parse_event_id(id).ok_or_else(|| {
            Failure::usage(anyhow!(
                "--event {id:?}: expected an event id such as \"264:canceled\" or \"264:issued:1\""
            ))
        })?;
        Redeliver::Event(id)
    } else if args.dead {
        Redeliver::Dead
    } else if let Some(d) = args.since {
        let back = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Redeliver::Since(now_ms().saturating_sub(back))
    } else {
        return Err(Failure::usage(anyhow!(
            "one of --event, --dead or --since is required"
        )));
    };
    let store = open_store(&config).await?;
    let was_paused = store.pause_of(&sink.name).await.map_err(Failure::runtime)?;
    if let Redeliver::Event(id) = &what {
        // Checked first, so a typo neither queues nothing silently nor
        // lifts a pause the operator meant to keep.
        let known = store
            .events(&EventFilter {
                order_id: Some(id.order_id),
                status: Some(id.status.clone()),
                since: None,
                limit: 1000,
            })
            .await
            .map_err(Failure::runtime)?;
        if !known.iter().any(|t| t.occurrence == id.occurrence) {
            return Err(Failure::runtime(anyhow!(
                "no event {id} in the store; `orderwatch events --order {}` lists its transitions",
                id.order_id
            )));
        }
    }
    let n = store
        .redeliver(&sink::route(&sink), &what, now_ms())
        .await
        .map_err(Failure::runtime)?;
    if let (Redeliver::Alert(id), 0) = (&what, n) {
        return Err(Failure::runtime(anyhow!(
            "no alert {id} for sink {} in the store; `orderwatch deliveries --sink {}` lists its alerts",
            sink.name,
            sink.name
        )));
    }
    if let Some(Pause { reason, .. }) = was_paused {
        println!("sink {} resumed (it was paused: {reason})", sink.name);
    }
    println!(
        "{n} deliveries queued for sink {}; a running daemon sends them within a second or two",
        sink.name
    );
    Ok(())
}

/// The configured sink `name`, or a usage error listing the sinks there are.
pub(super) fn known_sink<'a>(
    config: &'a Config,
    name: &str,
) -> Result<&'a crate::config::SinkConfig, Failure> {
    config.sinks.iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
        Failure::usage(anyhow!(
            "no sink named {name:?} in {}; configured sinks: {}",
            config.source.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        ))
    })
}
