//! What the HA tests (`failover.rs`) share: an account that keeps
//! changing ([`Churn`]), a world with a webhook and a file sink on
//! PostgreSQL, and the checks every failover must pass: each transition
//! recorded once and at every sink, duplicates only what an ended term had
//! in flight, and a digest of the store to show that nothing was committed.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::cluster::{Cluster, use_postgres};
use super::receiver::Receiver;
use super::sim::Simulator;
use super::{World, eventually, unique};
use crate::testdb::{self, TestDb};

/// Webhook requests in flight per node.
pub const CONCURRENCY: usize = 4;

/// An account in use: a new pending order every `every`, each issued
/// `issue_after` later. Each status stays current for many poll intervals
/// and longer than any leaderless gap, so whichever node leads sees every
/// one: the transitions the store must end up with are exactly those made.
pub struct Churn {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<BTreeSet<String>>,
}

impl Churn {
    pub fn start(sim: Simulator, every: Duration, issue_after: Duration) -> Churn {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut made = BTreeSet::new();
            let mut to_issue: VecDeque<(Instant, i64)> = VecDeque::new();
            let mut next = 1_000;
            while !stopped.load(Ordering::SeqCst) {
                sim.set_status(next, next + 100_000, "pending", Utc::now());
                made.insert(format!("{next}:pending"));
                to_issue.push_back((Instant::now() + issue_after, next));
                next += 1;
                while let Some(&(due, order)) = to_issue.front() {
                    if due > Instant::now() {
                        break;
                    }
                    to_issue.pop_front();
                    sim.set_status(order, order + 100_000, "issued", Utc::now());
                    made.insert(format!("{order}:issued"));
                }
                tokio::time::sleep(every).await;
            }
            made
        });
        Churn { stop, task }
    }

    /// Stops changing orders; returns every transition made.
    pub async fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("the churn task ends")
    }
}

/// A world with a webhook sink `hook` (to `rx`, `CONCURRENCY` requests at
/// a time) and a file sink `archive`, on `db`.
pub async fn world(rx: &Receiver, db: &TestDb, failover: &str) -> World {
    let mut w = World::new().await;
    let hook = w
        .hook("hook", &rx.url())
        .with("concurrency", CONCURRENCY as i64);
    w.add_sink(hook);
    w.file_sink();
    use_postgres(&mut w, db, failover);
    w
}

/// Waits until every transition made reached the receiver and the files
/// (all nodes' files together), then checks that nothing else did and that
/// the store recorded each exactly once.
pub async fn everything_arrives_once_in_the_store(
    w: &World,
    rx: &Receiver,
    c: &Cluster,
    made: &BTreeSet<String>,
) {
    let in_files = || -> BTreeSet<String> {
        (0..c.runs.len())
            .flat_map(|id| c.runs[id].file_ids())
            .collect()
    };
    let arrived = eventually(Duration::from_secs(90), || {
        rx.accepted_ids().len() >= made.len() && in_files().len() >= made.len()
    })
    .await;
    let at_hook: BTreeSet<String> = rx.accepted_ids().into_iter().collect();
    assert!(
        arrived,
        "not everything arrived: {} made, {} at the webhook, {} in the files; missing at the webhook: {:?}\n{}",
        made.len(),
        at_hook.len(),
        in_files().len(),
        made.difference(&at_hook).take(10).collect::<Vec<_>>(),
        c.logs()
    );
    assert_eq!(&at_hook, made, "the webhook got exactly what was made");
    assert_eq!(&in_files(), made, "the files hold exactly what was made");
    let recorded = unique(w.recorded_ids());
    assert_eq!(&recorded, made, "the store recorded each transition once");
}

/// Duplicates at the webhook are only what ended terms had in flight:
/// every copy of an event but one is among the last `2 × CONCURRENCY`
/// requests of a process whose term ended abruptly (`ended`): at most
/// `CONCURRENCY` requests in flight and as many answered but not yet
/// written to the ledger.
pub fn webhook_duplicates_were_in_flight(rx: &Receiver, ended: &[usize]) -> usize {
    let deliveries = rx.accepted();
    let run_of =
        |q: &Option<String>| -> Option<usize> { q.as_deref()?.strip_prefix("run=")?.parse().ok() };
    let mut in_flight = vec![false; deliveries.len()];
    for &run in ended {
        let of_run: Vec<usize> = (0..deliveries.len())
            .filter(|&i| run_of(&deliveries[i].query) == Some(run))
            .collect();
        for &i in of_run.iter().rev().take(2 * CONCURRENCY) {
            in_flight[i] = true;
        }
    }
    let mut settled: HashMap<&str, usize> = HashMap::new();
    for (i, d) in deliveries.iter().enumerate() {
        if !in_flight[i] {
            *settled.entry(d.id.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<_> = settled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "delivered twice outside what was in flight: {twice:?}"
    );
    let dups = deliveries.len() - rx.accepted_ids().len();
    assert!(dups <= ended.len() * 2 * CONCURRENCY, "{dups} duplicates");
    dups
}

/// Duplicates across the nodes' files are only the tail an ended process
/// wrote after its last committed mark: in each such file, the events also
/// found in another file form one block at its end (at most one poll's
/// worth), and no event appears twice outside those blocks.
pub fn file_duplicates_were_in_flight(c: &Cluster, ended: &[usize]) -> usize {
    let files: Vec<Vec<String>> = (0..c.runs.len()).map(|id| c.runs[id].file_ids()).collect();
    let mut tail_of = vec![0usize; files.len()];
    for &run in ended {
        let elsewhere = |id: &String| {
            files
                .iter()
                .enumerate()
                .any(|(other, f)| other != run && f.contains(id))
        };
        tail_of[run] = files[run]
            .iter()
            .rev()
            .take_while(|id| elsewhere(id))
            .count();
        assert!(
            tail_of[run] <= 500,
            "run {run} repeated {} events",
            tail_of[run]
        );
    }
    let mut settled: HashMap<&str, usize> = HashMap::new();
    for (run, f) in files.iter().enumerate() {
        for id in &f[..f.len() - tail_of[run]] {
            *settled.entry(id.as_str()).or_default() += 1;
        }
    }
    let twice: Vec<_> = settled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "written twice outside what was in flight: {twice:?}"
    );
    tail_of.iter().sum()
}

/// What the store holds (transitions, cursor, ledger, sink state), as one
/// digest: equal digests, nothing committed in between.
pub async fn digest(db: &TestDb) -> String {
    let password = std::fs::read_to_string(&db.password_file).expect("password file");
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(db.port)
        .user(testdb::ROLE)
        .password(password.trim())
        .dbname(&db.name)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT md5(concat_ws('|',
                (SELECT string_agg(concat_ws(',', seq, order_id, status, seen_at), ';' ORDER BY seq) FROM transitions),
                (SELECT string_agg(position::text, ';') FROM cursor),
                (SELECT string_agg(concat_ws(',', sink, seq, state, attempts, next_attempt_at, done_at, last_error), ';'
                    ORDER BY sink, seq) FROM outbox),
                (SELECT string_agg(concat_ws(',', name, paused_at, delivered_through), ';' ORDER BY name) FROM sinks)))",
            &[],
        )
        .await
        .expect("digest the store");
    row.get(0)
}
