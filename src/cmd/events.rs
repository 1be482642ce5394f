//! `orderwatch events`: the transitions in the store.

use std::io::Write;
use std::path::Path;

use super::{Failure, load_config, open_store, print_table, show_time};
use crate::cli::EventsArgs;
use crate::event::EventWriter;
use crate::store::EventFilter;
use crate::transition::now_ms;

pub async fn run(config_flag: Option<&Path>, args: &EventsArgs) -> Result<(), Failure> {
    let config = load_config(config_flag)?;
    let store = open_store(&config).await?;
    let filter = EventFilter {
        order_id: args.order,
        status: args.status.as_deref().map(crate::transition::status_name),
        since: args
            .since
            .map(|d| now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        limit: args.limit as usize,
    };
    let rows = store.events(&filter).await.map_err(Failure::runtime)?;
    if args.json {
        let mut out = std::io::stdout().lock();
        let mut buf = Vec::new();
        let mut events = EventWriter::new(&config.digicert.base_url);
        for t in &rows {
            buf.clear();
            events.write(&mut buf, t);
            buf.push(b'\n');
            out.write_all(&buf).map_err(Failure::runtime)?;
        }
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!("no transitions match");
        return Ok(());
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            vec![
                show_time(t.seen_at),
                t.event_id(),
                t.order_id.to_string(),
                t.previous_status.clone().unwrap_or_else(|| "-".into()),
                t.status.clone(),
                t.certificate_id.map_or("-".into(), |c| c.to_string()),
            ]
        })
        .collect();
    print_table(
        &["SEEN", "EVENT", "ORDER", "FROM", "TO", "CERTIFICATE"],
        &table,
    );
    Ok(())
}
