//! A store that has run for years: a cycle of 1,000 changes on a store
//! already holding H transitions (10 million; 1 million with `--quick`)
//! against the same cycle on an empty store, and the store's size per
//! million transitions.
//!
//! The history is written straight into orderwatch's schema (its own
//! migrations, through `Db::open`): orders 1..=H/2, each `pending` then
//! `issued`, first seen over three years. Each measured cycle brings 1,000
//! orders spread over that range (different ones each run) to `revoked`:
//! on the old store these are transitions of known orders, touching pages
//! all over its tables and indexes. That is the worst case, and the gated
//! row. A second row, for context, brings the 1,000 most recent orders to
//! `expired` instead (a different 1,000 each run), as a real account's
//! changes mostly concern orders placed lately: their rows share pages.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::answer::{self, AnswerServer};
use crate::child::{self, count_lines, secs};
use crate::report::{Report, Row};

const CHANGES: usize = 1000;

pub async fn rows(runs: usize, transitions: u64, report: &mut Report) {
    let orders = transitions / 2;
    let old = tempfile::tempdir().expect("tmp");
    let db = old.path().join("orderwatch.db");
    let started = Instant::now();
    let path = db.clone();
    tokio::task::spawn_blocking(move || write_history(&path, orders))
        .await
        .expect("history")
        .expect("writing the history");
    let bytes = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "history of {transitions} transitions written in {}; {bytes} bytes",
        secs(started.elapsed())
    );

    let (mut best_old, mut best_recent, mut best_empty) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    for run in 0..runs {
        // 1,000 orders spread evenly over the history, a different set each run.
        let stride = (orders / CHANGES as u64).max(1);
        let spread: Vec<i64> = (0..CHANGES as u64)
            .map(|k| (1 + (k * stride + run as u64 * 7) % orders) as i64)
            .collect();
        let server = changes_server(&spread, "revoked").await;
        let empty = tempfile::tempdir().expect("tmp");
        best_empty = best_empty.min(cycle(empty.path(), &server).await);
        best_old = best_old.min(cycle(old.path(), &server).await);

        // The 1,000 most recent orders not changed by an earlier run, to
        // `expired`: a transition even for one this run's spread revoked.
        let newest = orders as i64 - (run * CHANGES) as i64;
        let recent: Vec<i64> = (newest - CHANGES as i64 + 1..=newest)
            .filter(|id| *id >= 1)
            .collect();
        let server = changes_server(&recent, "expired").await;
        best_recent = best_recent.min(cycle(old.path(), &server).await);
    }
    report.push(
        Row::new(
            format!(
                "{}M-transition store: 1,000-change cycle vs empty",
                transitions / 1_000_000
            ),
            secs(best_old),
            format!("empty {}", secs(best_empty)),
        )
        .at_most(best_old.as_secs_f64() / best_empty.as_secs_f64(), 1.5)
        .known_miss(3.2),
    );
    report.push(Row::new(
        format!(
            "{}M-transition store: the cycle on recent orders (context)",
            transitions / 1_000_000
        ),
        secs(best_recent),
        format!(
            "empty {} ({:.2}x)",
            secs(best_empty),
            best_recent.as_secs_f64() / best_empty.as_secs_f64()
        ),
    ));
    let per_million = bytes as f64 / (transitions as f64 / 1e6) / (1 << 20) as f64;
    report.push(Row::new(
        "store size per million transitions".to_string(),
        format!("{per_million:.0} MiB"),
        format!(
            "{:.0} MiB for {}M",
            bytes as f64 / (1 << 20) as f64,
            transitions / 1_000_000
        ),
    ));
}

/// Serves an answer that brings `ids` to `status`.
async fn changes_server(ids: &[i64], status: &'static str) -> AnswerServer {
    let picks: Vec<(i64, &str)> = ids.iter().map(|id| (*id, status)).collect();
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    AnswerServer::start(answer::build_from(&picks, at).await).await
}

/// One `run --once` in `dir` (store and events file there); its wall time.
async fn cycle(dir: &Path, server: &AnswerServer) -> Duration {
    let events = dir.join("events.jsonl");
    let before = count_lines(&events);
    let config = child::write_config(dir, &server.base_url(), "1m", &child::file_sink(&events));
    let run = child::run_once(&config).await;
    assert_eq!(
        count_lines(&events) - before,
        CHANGES,
        "each change delivered"
    );
    run.wall
}

/// Writes `orders` orders with two transitions each into a new store.
fn write_history(path: &Path, orders: u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    drop(orderwatch::store::sqlite::Db::open(path)?);
    let db = rusqlite::Connection::open(path)?;
    // Bulk-loading only: the store goes back to WAL before orderwatch opens it.
    db.pragma_update(None, "journal_mode", "OFF")?;
    db.pragma_update(None, "synchronous", "OFF")?;
    let three_years_ago = chrono::Utc::now().timestamp_millis() - 3 * 365 * 86_400_000;
    let step = (3 * 365 * 86_400_000) / orders.max(1) as i64;
    db.execute_batch("BEGIN")?;
    let series = "WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < ?1)";
    for (status, previous, offset) in [("pending", None, 0), ("issued", Some("pending"), 1)] {
        db.execute(
            &format!(
                "{series} INSERT INTO transitions (order_id, status, certificate_id, previous_status, seen_at)
                 SELECT x, ?2, x + 100000000, ?3, ?4 + x * ?5 + ?6 FROM s"
            ),
            rusqlite::params![orders as i64, status, previous, three_years_ago, step, offset],
        )?;
    }
    db.execute(
        &format!(
            "{series} INSERT INTO orders (order_id, certificate_id, status, updated_at)
             SELECT x, x + 100000000, 'issued', ?2 + x * ?3 FROM s"
        ),
        rusqlite::params![orders as i64, three_years_ago, step],
    )?;
    db.execute_batch("COMMIT")?;
    db.pragma_update(None, "journal_mode", "WAL")?;
    drop(db);
    // On disk before the first cycle, so no cycle's fsync waits for the
    // history's own write-back.
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}
