//! Crash safety: the real binary, SIGKILLed at random points over a few
//! thousand orders and restarted again and again, loses no transition,
//! invents none, and leaves a file sink with every event, whole lines only.
//!
//! The scenario is built so that every status the simulator ever gives an
//! order is visible to some poll: orders only change while no daemon runs,
//! and only orders whose current status the store already recorded are
//! changed again. The API reports current statuses only, so without that
//! rule an intermediate status could legitimately go unseen; with it, the
//! store must end up holding exactly the simulator's histories.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::Value;

use crate::support::sim::{Fault, paged};
use crate::support::{World, ago, eventually, read_jsonl, store, text};

/// Orders loaded before the first start.
const PENDING_ORDERS: usize = 2000;
const APPROVAL_ORDERS: usize = 1000;
/// Kill-and-restart rounds before the final clean `run --once`.
const ROUNDS: usize = 16;
/// Existing orders changed between two rounds (at most).
const CHANGES_PER_ROUND: usize = 250;
/// Orders created between two rounds.
const NEW_PER_ROUND: i64 = 15;
/// Simulator page size: a window is answered in several pages, so a kill can
/// land between pages of one window.
const PAGE_SIZE: usize = 800;
const SEED: u64 = 0x0c0ffee;
const SINK: &str = "archive";

/// Where a round's SIGKILL is aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// After a seeded random delay: before the first request, mid-fetch,
    /// mid-commit, mid-delivery or idle, wherever it falls.
    Random(u64),
    /// While the simulator is still dribbling an answer (`Fault::SlowBody`):
    /// certainly mid-cycle, with nothing of the window committed.
    MidFetch(u64),
    /// The instant the events file grows: after the append, usually before
    /// the delivery is marked done.
    MidDelivery,
}

/// Realistic next statuses. [`change_orders`] leaves out those the order
/// already had, so every change is a new `(order_id, status)` pair: a
/// revisit (A → B → A) would make "current status recorded" ambiguous.
fn next_statuses(current: &str) -> &'static [&'static str] {
    match current {
        "pending" => &[
            "waiting_pickup",
            "needs_approval",
            "issued",
            "rejected",
            "canceled",
        ],
        "needs_approval" => &["pending", "rejected", "canceled"],
        "waiting_pickup" => &["issued", "canceled"],
        "issued" => &["revoked", "expired"],
        _ => &[],
    }
}

fn certificate_of(order_id: i64) -> i64 {
    order_id + 100_000_000
}

/// What the store holds right now: `(order_id, status)` pairs, and the ids
/// of deliveries to the file sink still pending.
fn store_snapshot(db_path: &Path) -> (HashSet<(i64, String)>, HashSet<String>) {
    (
        store::transitions(db_path),
        store::pending_for_cursor_sink(db_path, SINK),
    )
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Ids in the events file, tolerating a torn last line (a torn line is
/// checked for, and fails the test, at the end).
fn file_ids(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| e["id"].as_str().map(str::to_string))
        .collect()
}

/// Runs the daemon and kills it as `aim` says. Returns the daemon's log.
async fn run_and_kill(w: &World, aim: Aim) -> String {
    let mut daemon = w.spawn();
    match aim {
        Aim::Random(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            daemon.kill();
        }
        Aim::MidFetch(ms) => {
            let before = w.sim.queries().len();
            w.sim.push_fault(Fault::SlowBody(Duration::from_millis(5)));
            let asked =
                eventually(Duration::from_secs(30), || w.sim.queries().len() > before).await;
            assert!(
                asked,
                "the daemon never asked the simulator; log:\n{}",
                daemon.log_text()
            );
            tokio::time::sleep(Duration::from_millis(ms)).await;
            daemon.kill();
        }
        Aim::MidDelivery => {
            // Poll the file's size in a tight loop on a blocking thread: the
            // gap between the append and the ledger update is short.
            let path = w.events_file();
            let start = file_len(&path);
            let (killed, grew) = tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut grew = false;
                while !grew && Instant::now() < deadline {
                    grew = file_len(&path) != start;
                    if !grew {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                daemon.kill();
                (daemon, grew)
            })
            .await
            .expect("killer thread");
            // Something is always due here (every round creates orders), so
            // a run that never writes is a failure, not bad luck.
            assert!(
                grew,
                "the daemon delivered nothing within 30 s; log:\n{}",
                killed.log_text()
            );
            daemon = killed;
        }
    }
    daemon.log_text()
}

/// Changes up to [`CHANGES_PER_ROUND`] orders whose current status is
/// already recorded, and creates [`NEW_PER_ROUND`] orders. Returns how many
/// existing orders changed.
fn change_orders(
    w: &World,
    rng: &mut StdRng,
    orders: &mut Vec<i64>,
    next_id: &mut i64,
    stored: &HashSet<(i64, String)>,
) -> usize {
    let now = Utc::now();
    let mut eligible: Vec<i64> = orders
        .iter()
        .copied()
        .filter(|id| {
            let current = w.sim.status_of(*id).expect("known order");
            stored.contains(&(*id, current.clone())) && !next_statuses(&current).is_empty()
        })
        .collect();
    let mut changed = 0;
    while changed < CHANGES_PER_ROUND && !eligible.is_empty() {
        let id = eligible.swap_remove(rng.random_range(0..eligible.len()));
        let history: Vec<String> = w.sim.history(id).into_iter().map(|(_, s)| s).collect();
        let current = history.last().cloned().unwrap_or_default();
        let choices: Vec<&str> = next_statuses(&current)
            .iter()
            .copied()
            .filter(|s| !history.iter().any(|h| h == s))
            .collect();
        if choices.is_empty() {
            continue;
        }
        let next = choices[rng.random_range(0..choices.len())];
        w.sim.set_status(id, certificate_of(id), next, now);
        changed += 1;
    }
    for _ in 0..NEW_PER_ROUND {
        let id = *next_id;
        *next_id += 1;
        w.sim.set_status(id, certificate_of(id), "pending", now);
        orders.push(id);
    }
    changed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_and_invents_no_transition() {
    let mut w = World::with_sim(paged(PAGE_SIZE)).await;
    w.file_sink();
    // Inside the 10-minute overlap, so every cycle's answer holds every
    // order: large answers in several pages, long commits.
    w.sim.bulk_insert(1, PENDING_ORDERS, "pending", ago(300));
    w.sim.bulk_insert(
        1 + PENDING_ORDERS as i64,
        APPROVAL_ORDERS,
        "needs_approval",
        ago(240),
    );
    let mut orders: Vec<i64> = (1..=(PENDING_ORDERS + APPROVAL_ORDERS) as i64).collect();
    let mut next_id = 1_000_000;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut mid_delivery_kills = 0;
    let mut committed_rounds = 0;
    let mut seen_before = 0;

    for round in 0..ROUNDS {
        let aim = match round % 4 {
            1 => Aim::MidFetch(rng.random_range(0..300)),
            3 => Aim::MidDelivery,
            _ => Aim::Random(rng.random_range(0..800)),
        };
        let log = run_and_kill(&w, aim).await;
        assert!(
            !log.contains("panicked"),
            "round {round}: the daemon panicked:\n{log}"
        );
        let (stored, pending) = store_snapshot(&w.store());
        let in_file = file_ids(&w.events_file());
        // Appended but not yet marked delivered: the next run repeats them.
        let repeated = pending.intersection(&in_file).count();
        if repeated > 0 {
            mid_delivery_kills += 1;
        }
        if stored.len() > seen_before {
            committed_rounds += 1;
        }
        seen_before = stored.len();
        let changed = change_orders(&w, &mut rng, &mut orders, &mut next_id, &stored);
        eprintln!(
            "round {round:2}: {aim:?}: {} transitions stored, {} pending, {repeated} appended but not marked; then changed {changed} orders",
            stored.len(),
            pending.len()
        );
    }
    eprintln!(
        "{committed_rounds} of {ROUNDS} runs committed something; {mid_delivery_kills} kills landed between an append and its ledger update"
    );
    // The scenario exercised what it is for: kills after commits, and kills
    // between an append and its ledger update (the repeat path). The file
    // sink moves its cursor only after the fsync, so each MidDelivery round
    // lands there almost surely; all four missing means the aim is broken.
    assert!(
        committed_rounds > 0,
        "no run committed anything before its kill"
    );
    assert!(
        mid_delivery_kills > 0,
        "no kill landed between an append and its ledger update"
    );

    w.once();

    // What the simulator says happened: every status of every order, each
    // visible to some poll by construction (see the module comment).
    let mut expected: BTreeMap<(i64, String), (Option<String>, i64)> = BTreeMap::new();
    for &id in &orders {
        let history = w.sim.history(id);
        assert!(!history.is_empty(), "order {id} has no history");
        let mut previous: Option<String> = None;
        for (_, status) in history {
            expected.insert((id, status.clone()), (previous.clone(), certificate_of(id)));
            previous = Some(status);
        }
    }

    // (d) `orderwatch events` lists each transition once.
    let stored_events = w.stored_events();
    let mut stored: BTreeMap<String, Value> = BTreeMap::new();
    for e in &stored_events {
        let id = e["id"].as_str().expect("event id").to_string();
        assert!(
            stored.insert(id.clone(), e.clone()).is_none(),
            "`orderwatch events` lists {id} twice"
        );
    }
    let stored_pairs: BTreeSet<(i64, String)> = stored_events
        .iter()
        .map(|e| {
            (
                e["data"]["order_id"].as_i64().expect("order_id"),
                e["data"]["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();

    // (a) nothing lost: every status in the simulator's histories is stored.
    let lost: Vec<_> = expected
        .keys()
        .filter(|k| !stored_pairs.contains(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} transitions lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    // (b) nothing invented: every stored pair is in a history.
    let invented: Vec<_> = stored_pairs
        .iter()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        invented.is_empty(),
        "{} transitions invented, e.g. {:?}",
        invented.len(),
        &invented[..invented.len().min(10)]
    );
    // And each carries the status the order really had before it.
    for e in &stored_events {
        let data = &e["data"];
        let key = (
            data["order_id"].as_i64().expect("order_id"),
            data["status"].as_str().expect("status").to_string(),
        );
        let (previous, certificate) = &expected[&key];
        assert_eq!(
            data["previous_status"].as_str(),
            previous.as_deref(),
            "previous_status of {}; the simulator's history: {:?}; stored: {:?}",
            e["id"],
            w.sim.history(key.0),
            stored_events
                .iter()
                .filter(|s| s["data"]["order_id"].as_i64() == Some(key.0))
                .map(|s| (
                    &s["data"]["previous_status"],
                    &s["data"]["status"],
                    &s["time"]
                ))
                .collect::<Vec<_>>()
        );
        assert_eq!(data["certificate_id"].as_i64(), Some(*certificate));
    }

    // (c) the file holds every stored event, whole lines only (read_jsonl
    // fails on a torn line), each line equal to the stored event.
    let lines = read_jsonl(&w.events_file());
    let mut copies: HashMap<String, usize> = HashMap::new();
    for line in &lines {
        let id = line["id"].as_str().expect("event id in file").to_string();
        let Some(event) = stored.get(&id) else {
            panic!("the file holds {id}, which the store does not");
        };
        assert_eq!(line, event, "file line for {id} differs from the store");
        *copies.entry(id).or_default() += 1;
    }
    let missing: Vec<_> = stored
        .keys()
        .filter(|id| !copies.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} stored events never reached the file, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let duplicated = copies.values().filter(|n| **n > 1).count();
    let extra: usize = copies.values().map(|n| n - 1).sum();
    eprintln!(
        "{} transitions stored, {} lines in the file: {duplicated} events written more than once ({extra} extra lines)",
        stored.len(),
        lines.len()
    );

    // Each order's events first reach the file in the order they were recorded.
    let mut first_seen: HashMap<i64, Vec<String>> = HashMap::new();
    let mut written = HashSet::new();
    for line in &lines {
        let id = line["id"].as_str().unwrap_or_default().to_string();
        if written.insert(id.clone()) {
            let order = line["data"]["order_id"].as_i64().unwrap_or_default();
            first_seen.entry(order).or_default().push(id);
        }
    }
    for (order, ids) in &first_seen {
        let history: Vec<String> = w
            .sim
            .history(*order)
            .into_iter()
            .map(|(_, s)| format!("{order}:{s}"))
            .collect();
        assert_eq!(ids, &history, "order {order} reached the file out of order");
    }

    // Nothing is left pending after the clean run.
    let (_, pending) = store_snapshot(&w.store());
    assert!(
        pending.is_empty(),
        "{} deliveries still pending",
        pending.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_is_refused_while_the_first_runs() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "issued", ago(30));
    let mut first = w.spawn_ready().await;

    for args in [&["run"][..], &["run", "--once"][..]] {
        let out = w.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "`orderwatch {}` beside a running daemon: {stderr}",
            args.join(" ")
        );
        assert!(stderr.contains("lock"), "message names the lock: {stderr}");
        assert!(
            stderr.contains(&w.store().display().to_string()),
            "message names the store: {stderr}"
        );
        assert!(
            stderr.contains("another orderwatch daemon"),
            "message says why: {stderr}"
        );
    }

    // The first daemon is unaffected and still delivers.
    assert!(
        eventually(Duration::from_secs(30), || !w.file_events().is_empty()).await,
        "first daemon stopped delivering:\n{}",
        first.log_text()
    );
    let status = first.terminate(Duration::from_secs(30));
    assert!(status.success(), "first daemon: {status:?}");

    // With the first one gone, the store is free again.
    w.once();
}

/// The lock dies with its holder: a SIGKILLed daemon leaves no stale lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_leaves_no_stale_lock() {
    let w = World::new().await;
    let mut first = w.spawn_ready().await;
    first.kill();
    let out = w.once();
    assert!(out.status.success());
}
