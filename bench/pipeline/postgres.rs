//! PostgreSQL rows (issue 12): the ingest of N new transitions into a
//! PostgreSQL store on loopback next to the same ingest into SQLite in the
//! same run (the ratio is context, not a target: a shared store pays a
//! round trip per statement and a server's durability), and the failover
//! time of two nodes whose leader is SIGKILLed again and again, from the
//! kill to the standby's takeover committed in the store, against
//! `[store] failover`. Both run on the throwaway server of
//! `src/store/postgres/testdb.rs`; without PostgreSQL they are skipped with
//! a printed reason.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use orderwatch::simulator::{Simulator, SimulatorConfig};

use crate::Args;
use crate::answer::{self, AnswerServer};
use crate::child::{self, count_lines, secs};
use crate::report::{Report, Row};
use crate::testdb::{self, TestDb, TestServer};

/// The failover every node is configured with.
const FAILOVER: Duration = Duration::from_secs(3);

/// The ingest row and the failover row.
pub async fn rows(args: &Args, report: &mut Report) {
    let Some(server) = testdb::server("benchmark PostgreSQL rows") else {
        eprintln!(
            "skipped: PostgreSQL rows (ingest into PostgreSQL, failover time): no PostgreSQL server (apt-get install postgresql)"
        );
        return;
    };
    let n = if args.quick { 50_000 } else { 1_000_000 };
    ingest(args.runs, n, server, report).await;
    failover(if args.quick { 3 } else { 10 }, server, report).await;
}

/// `[store]` for `db`, with `failover` if given (else the default).
///
/// The ingest row keeps the default: a fenced write's statements may take
/// a third of the failover time, and at the failover row's 3 s a chunk of
/// 10,000 orders on a busy machine can take longer than 1 s and fail the
/// cycle (the row then measures nothing).
fn store_section(db: &TestDb, failover: Option<Duration>) -> String {
    let mut s = format!(
        "url = \"{}\"\npassword_file = \"{}\"\n",
        db.url,
        db.password_file.display(),
    );
    if let Some(f) = failover {
        s.push_str(&format!("failover = \"{}s\"\n", f.as_secs()));
    }
    s
}

/// `run --once` recording `n` new transitions into a fresh store, SQLite
/// and PostgreSQL alternately, best of `runs` each.
async fn ingest(runs: usize, n: usize, server: &TestServer, report: &mut Report) {
    eprintln!("ingest of {n} orders into PostgreSQL and SQLite:");
    let at = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    let answer = AnswerServer::start(answer::build(n, at).await).await;
    let (mut sqlite, mut pg) = (Duration::MAX, Duration::MAX);
    for _ in 0..runs {
        let dir = tempfile::tempdir().expect("tmp");
        let events = dir.path().join("events.jsonl");
        let sink = child::file_sink(&events);
        let config = child::write_config(dir.path(), &answer.base_url(), "1m", &sink);
        sqlite = sqlite.min(once(&config, &events, n).await);

        let db = server.database().await;
        let dir = tempfile::tempdir().expect("tmp");
        let events = dir.path().join("events.jsonl");
        let sink = child::file_sink(&events);
        let config = child::write_config_with_store(
            dir.path(),
            &answer.base_url(),
            "1m",
            &store_section(&db, None),
            &sink,
        );
        pg = pg.min(once(&config, &events, n).await);
        drop_database(server, &db).await;
    }
    let mut row = Row::new(
        format!("ingest {n} new into PostgreSQL (loopback) vs SQLite"),
        secs(pg),
        format!("SQLite {}", secs(sqlite)),
    );
    row.ratio = pg.as_secs_f64() / sqlite.as_secs_f64();
    report.push(row);
}

/// One `run --once` that must deliver `n` events to `events`; its wall time.
async fn once(config: &Path, events: &Path, n: usize) -> Duration {
    let run = child::run_once(config).await;
    assert_eq!(count_lines(events), n, "every transition in the file");
    run.wall
}

async fn drop_database(server: &TestServer, db: &TestDb) {
    let admin = server.superuser().await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", db.name))
        .await
    {
        eprintln!("cannot drop {}: {e}", db.name);
    }
}

/// Two nodes on one store while the account keeps changing; the leader is
/// SIGKILLed `kills` times (a new node joins after each kill). Measures from
/// the kill to the moment the store shows the next term.
async fn failover(kills: usize, server: &TestServer, report: &mut Report) {
    eprintln!("failover over {kills} leader kills:");
    // Failover time is measured, not pacing: no rate limits (several nodes
    // restarting in a loop would otherwise share one key's budget).
    let sim = Simulator::start(SimulatorConfig {
        rate_per_min: 600.0,
        initial_orders: 200,
        ..SimulatorConfig::default().without_rate_limits()
    })
    .await
    .expect("simulator");
    let db = server.database().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = store_section(&db, Some(FAILOVER));
    let spawn = |i: usize| -> Child {
        let node = dir.path().join(format!("node-{i}"));
        std::fs::create_dir_all(&node).expect("node dir");
        let sink = child::file_sink(&node.join("events.jsonl"));
        let config = child::write_config_with_store(&node, &sim.base_url(), "1s", &store, &sink);
        child::orderwatch(&config, &["run"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a node")
    };
    let lease = connect(&db).await;
    let mut nodes = vec![spawn(0), spawn(1)];
    let (mut term, mut holder) = next_term(&lease, 0, Duration::from_secs(30)).await;
    let mut took = Vec::with_capacity(kills);
    for k in 0..kills {
        // The newest node connects and stands by; the leader polls meanwhile.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let Some(i) = nodes
            .iter()
            .position(|c| holder.ends_with(&format!(":{}", c.id())))
        else {
            panic!("the leader {holder} is none of the nodes");
        };
        let mut leader = nodes.remove(i);
        let killed = Instant::now();
        let _ = leader.kill();
        (term, holder) = next_term(&lease, term, FAILOVER * 10).await;
        took.push(killed.elapsed());
        let _ = leader.wait();
        nodes.push(spawn(k + 2));
    }
    for mut n in nodes {
        let _ = n.kill();
        let _ = n.wait();
    }
    took.sort();
    let (median, max) = (took[took.len() / 2], took[took.len() - 1]);
    let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1000.0);
    report.push(
        Row::new(
            format!("failover: SIGKILLed leader to takeover, {kills} kills"),
            format!("median {}, max {}", ms(median), ms(max)),
            format!("failover {}", secs(FAILOVER)),
        )
        .at_most(max.as_secs_f64() / FAILOVER.as_secs_f64(), 1.0),
    );
}

/// A connection to `db` as its owner, to watch the leadership row.
async fn connect(db: &TestDb) -> tokio_postgres::Client {
    let password = std::fs::read_to_string(&db.password_file).expect("password file");
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(db.port)
        .user(testdb::ROLE)
        .password(password.trim())
        .dbname(&db.name)
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the benchmark database");
    tokio::spawn(connection);
    client
}

/// Waits until the store shows a term after `term`; its term and holder.
async fn next_term(client: &tokio_postgres::Client, term: i64, limit: Duration) -> (i64, String) {
    let deadline = Instant::now() + limit;
    loop {
        // Before the first node migrated the store there is no row yet.
        let row = client
            .query_opt("SELECT term, holder FROM leadership WHERE id = 1", &[])
            .await;
        if let Ok(Some(row)) = row {
            let (now, holder): (i64, String) = (row.get(0), row.get(1));
            if now > term {
                return (now, holder);
            }
        }
        assert!(Instant::now() < deadline, "no takeover within {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
