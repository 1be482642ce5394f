//! `orderwatch deliveries` and `orderwatch redeliver`: reading and steering
//! the per-sink delivery ledger, beside a running daemon.

use std::path::Path;

use anyhow::anyhow;

use super::{Failure, Outcome, load_config, open_store, print_table, show_time};
use crate::cli::{DeliveriesArgs, RedeliverArgs, StateArg};
use crate::config::Config;
use crate::event::parse_event_id;
use crate::store::{DeliveryFilter, DeliveryState, Redeliver, now_ms};

pub fn deliveries(config_flag: Option<&Path>, args: &DeliveriesArgs) -> Outcome {
    let config = load_config(config_flag)?;
    if let Some(name) = &args.sink {
        known_sink(&config, name)?;
    }
    let db = open_store(&config)?;
    let filter = DeliveryFilter {
        sink: args.sink.clone(),
        state: args.state.map(|s| match s {
            StateArg::Pending => DeliveryState::Pending,
            StateArg::Delivered => DeliveryState::Delivered,
            StateArg::Dead => DeliveryState::Dead,
        }),
        limit: args.limit as usize,
    };
    let rows = db.deliveries(&filter).map_err(Failure::runtime)?;
    if args.json {
        for r in &rows {
            let line = serde_json::json!({
                "sink": r.sink,
                "event": r.event_id(),
                "state": r.state.as_str(),
                "attempts": r.attempts,
                "queued_at": show_time(r.created_at),
                "next_attempt_at": (r.state == DeliveryState::Pending).then(|| show_time(r.next_attempt_at)),
                "done_at": r.done_at.map(show_time),
                "last_error": r.last_error,
            });
            println!("{line}");
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

pub fn redeliver(config_flag: Option<&Path>, args: &RedeliverArgs) -> Outcome {
    let config = load_config(config_flag)?;
    let sink = known_sink(&config, &args.sink)?.clone();
    let what = if let Some(id) = &args.event {
        let (order_id, status) = parse_event_id(id).ok_or_else(|| {
            Failure::usage(anyhow!(
                "--event {id:?}: expected an event id such as \"264:canceled\""
            ))
        })?;
        Redeliver::Event { order_id, status }
    } else if args.dead {
        Redeliver::Dead
    } else if let Some(d) = args.since {
        Redeliver::Since(now_ms() - d.as_millis() as i64)
    } else {
        return Err(Failure::usage(anyhow!(
            "one of --event, --dead or --since is required"
        )));
    };
    let mut db = open_store(&config)?;
    let was_paused = db.paused(&sink.name).map_err(Failure::runtime)?;
    let n = db
        .redeliver(&sink, &what, now_ms())
        .map_err(Failure::runtime)?;
    if let Some(reason) = was_paused {
        println!("sink {} resumed (it was paused: {reason})", sink.name);
    }
    if n == 0 {
        if let Redeliver::Event { order_id, status } = &what {
            return Err(Failure::runtime(anyhow!(
                "no event {order_id}:{status} in the store; `orderwatch events --order {order_id}` lists its transitions"
            )));
        }
    }
    println!(
        "{n} deliveries queued for sink {}; a running daemon sends them within a second or two",
        sink.name
    );
    Ok(())
}

fn known_sink<'a>(
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
