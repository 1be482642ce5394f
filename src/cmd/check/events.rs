//! The parts of `check` about what events carry and who may wake the
//! poller: the dedupe mode, the order details' share of the budget, and the
//! wake endpoint with its key (read and checked as `run` does).

use super::Findings;
use crate::config::Config;
use crate::transition::Dedupe;

/// What events carry and what may wake the poller; the wake key is read
/// and checked as `run` does.
pub(super) fn events(config: &Config, found: &mut Findings) {
    found.lines.push(match config.events.dedupe {
        Dedupe::Change => {
            "events: every change of status or certificate (returns get ids like 264:issued:1)"
                .to_string()
        }
        Dedupe::FirstSighting => "events: first sighting of each (order, status) only".to_string(),
    });
    if let Some(e) = &config.enrich {
        let rate = e.lookups_per_minute(config.digicert.max_requests_per_minute);
        found.lines.push(format!(
            "order details: looked up for {}, at most {rate} lookups a minute ({}% of {} requests), given up after {}",
            e.statuses
                .as_ref()
                .map_or_else(|| "every status".to_string(), |l| l.join(", ")),
            (e.max_share * 100.0).round(),
            config.digicert.max_requests_per_minute,
            humantime::format_duration(e.give_up_after)
        ));
    }
    let Some(w) = &config.wake else {
        return;
    };
    let who = match (&w.key, crate::wake::load_key(config)) {
        (_, Err(e)) => {
            found.problems.push(format!("{e:#}"));
            return;
        }
        (Some(source), Ok(_)) => format!("key from {source} in header {}", w.header),
        (None, Ok(_)) => {
            "no key: anyone who reaches it can wake the poller (a forged wake costs one poll)"
                .to_string()
        }
    };
    found.lines.push(format!(
        "wake: POST {} starts a poll, at most one extra per {}; {who}",
        w.local_url(),
        humantime::format_duration(w.min_gap)
    ));
}
