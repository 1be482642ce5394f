//! How big a SQLite store gets per million transitions: the figure the
//! README's retention paragraph quotes. Records N transitions (default one
//! million) queued for one webhook-like sink (a ledger row per event) and
//! one file-like sink (a cursor, no rows), marks every delivery done, and
//! prints the database's size in use before and after the delivered rows
//! are pruned (freed pages are reused by later inserts; the file does not
//! shrink without `VACUUM`).
//!
//! `cargo run --release --example store_size -- [N]`

use std::sync::Arc;

use orderwatch::store::sqlite::SqliteStore;
use orderwatch::store::{Chunk, Mark, SharedStore, SinkRoute};
use orderwatch::transition::OrderChange;

/// The statuses of a typical order's life, spread over the orders.
const STATUSES: [&str; 4] = ["pending", "issued", "revoked", "canceled"];

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes of the database in use and free (pages a later insert reuses),
/// after folding the WAL back into it.
fn size(path: &std::path::Path) -> Result<(u64, u64), rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    let pragma = |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let page = pragma("page_size")? as u64;
    let pages = pragma("page_count")? as u64;
    let free = pragma("freelist_count")? as u64;
    Ok(((pages - free) * page, free * page))
}

/// Records `n` transitions for `routes` into a new store; marks the first
/// route's deliveries done; returns the store and its path.
async fn fill(
    dir: &std::path::Path,
    name: &str,
    n: usize,
    routes: Vec<SinkRoute>,
) -> Result<(SharedStore, std::path::PathBuf), Box<dyn std::error::Error>> {
    let path = dir.join(name);
    let store: SharedStore = Arc::new(SqliteStore::open(&path)?);
    let routes: Arc<[SinkRoute]> = routes.into();
    let seen = chrono::Utc::now();
    for start in (0..n).step_by(10_000) {
        let orders: Vec<OrderChange> = (start..(start + 10_000).min(n))
            .map(|i| OrderChange {
                order_id: 100_000_000 + i as i64,
                certificate_id: Some(500_000_000 + i as i64),
                status: Arc::from(STATUSES[i % STATUSES.len()]),
            })
            .collect();
        store
            .record(Chunk::whole(orders, Some(seen), seen), Arc::clone(&routes))
            .await?;
    }
    if let Some(hook) = routes.iter().find(|r| !r.by_cursor) {
        let now = orderwatch::transition::now_ms();
        loop {
            let due = store.due(hook, i64::MAX, 10_000).await?;
            if due.is_empty() {
                break;
            }
            let marks = due.iter().map(|e| (e.seq(), Mark::Delivered)).collect();
            store.mark(&hook.name, marks, now).await?;
        }
    }
    Ok((store, path))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let hook = SinkRoute {
        name: "ops-hook".into(),
        statuses: None,
        by_cursor: false,
        operational: false,
    };
    let file = SinkRoute {
        name: "archive".into(),
        statuses: None,
        by_cursor: true,
        operational: false,
    };
    let per_million = |bytes: u64| mib(bytes) * 1e6 / n as f64;
    let (_, bare) = fill(dir.path(), "file.db", n, vec![file.clone()]).await?;
    let (bare_used, _) = size(&bare)?;
    let (store, hooked) = fill(dir.path(), "hook.db", n, vec![hook, file]).await?;
    let (hook_used, _) = size(&hooked)?;
    let mut pruned = 0;
    loop {
        let k = store.prune_delivered(i64::MAX, 10_000).await?;
        pruned += k;
        if k == 0 {
            break;
        }
    }
    let (after_used, after_free) = size(&hooked)?;
    println!("{n} transitions, {pruned} delivered webhook rows pruned");
    println!(
        "per million transitions: {:.0} MiB with file/stdout sinks only; each webhook (or exec) sink adds {:.0} MiB of delivered rows until keep_delivered prunes them; after pruning {:.0} MiB in use and {:.0} MiB free for reuse",
        per_million(bare_used),
        per_million(hook_used.saturating_sub(bare_used)),
        per_million(after_used),
        per_million(after_free),
    );
    Ok(())
}
