//! The PostgreSQL store against a real server (see `testdb.rs`): the shared
//! suite, migrations (concurrent starts, a newer schema), TLS modes, and
//! leadership: one leader, takeover within `failover`, fencing of a leader
//! that wakes up after a takeover.

use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use tokio_util::sync::CancellationToken;

use super::testdb::{self, TestDb};
use super::*;
use crate::config::SecretSource;
use crate::store::suite::store_suite;
use crate::store::{Chunk, Leadership, SharedStore};
use crate::transition::OrderChange;

fn config(db: &TestDb, failover: Duration) -> PostgresConfig {
    let mut c = PostgresConfig::new(
        PgTarget::parse(&db.url).unwrap(),
        Some(SecretSource::File(db.password_file.clone())),
    );
    c.failover = failover;
    c
}

/// A fresh database with an open store (the guard keeps nothing: the
/// server outlives the test).
async fn fresh() -> Option<((), SharedStore)> {
    let db = testdb::database("postgres store suite").await?;
    let store = PgStore::open(&config(&db, Duration::from_secs(15)))
        .await
        .unwrap();
    Some(((), Arc::new(store)))
}

mod suite {
    use super::*;
    store_suite!(fresh());
}

fn change(order_id: i64, status: &str) -> OrderChange {
    OrderChange {
        order_id,
        certificate_id: Some(order_id + 1000),
        status: Arc::from(status),
    }
}

/// Runs `statement` on one of `store`'s connections (a test's hand on the
/// database: another node, an operator).
async fn sql(store: &PgStore, statement: &str) {
    store
        .client()
        .await
        .unwrap()
        .execute(statement, &[])
        .await
        .unwrap();
}

fn at(s: i64) -> DateTime<chrono::Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

#[tokio::test]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let Some(db) = testdb::database("migrations").await else {
        return;
    };
    let c = config(&db, Duration::from_secs(15));
    let opens = (0..4).map(|_| PgStore::open(&c));
    for opened in futures_util::future::join_all(opens).await {
        let report = opened.unwrap().report(true).await.unwrap();
        assert_eq!(report.schema_version, SCHEMA_VERSION);
    }
    assert_eq!(
        SCHEMA_VERSION,
        crate::store::sqlite::SCHEMA_VERSION,
        "both backends number their schema alike"
    );
    let admin = testdb::server("migrations").unwrap().superuser().await;
    drop(admin);
    let store = PgStore::open(&c).await.unwrap();
    sql(&store, "UPDATE schema_version SET version = 99").await;
    let err = PgStore::open(&c).await.unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("schema version 99") && text.contains("upgrade orderwatch"),
        "{text}"
    );
    assert!(text.contains(&db.name), "names the store: {text}");
}

#[tokio::test]
async fn tls_verify_full_checks_the_name_and_the_ca() {
    let Some(db) = testdb::database("tls").await else {
        return;
    };
    let password = Some(SecretSource::File(db.password_file.clone()));
    let verified = PostgresConfig::new(PgTarget::parse(&db.tls_url).unwrap(), password.clone());
    let store = PgStore::open(&verified).await.unwrap();
    assert_eq!(store.report(false).await.unwrap().transitions, 0);
    // The certificate names localhost, not 127.0.0.1.
    let wrong_name = db.tls_url.replace("localhost", "127.0.0.1");
    let wrong = PostgresConfig::new(PgTarget::parse(&wrong_name).unwrap(), password.clone());
    let err = PgStore::open(&wrong).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot connect") && err.contains("certificate"),
        "{err}"
    );
    // verify-ca accepts another name, as libpq does.
    let any_name = wrong_name.replace("verify-full", "verify-ca");
    let ca = PostgresConfig::new(PgTarget::parse(&any_name).unwrap(), password.clone());
    if let Err(e) = PgStore::open(&ca).await {
        panic!("verify-ca with another name: {e}");
    }
    // Against the system's roots the test CA is unknown.
    let system = db.tls_url.split("&sslrootcert").next().unwrap().to_string();
    let untrusted = PostgresConfig::new(PgTarget::parse(&system).unwrap(), password.clone());
    assert!(PgStore::open(&untrusted).await.is_err());
    // require encrypts without checking.
    let require = system.replace("verify-full", "require");
    let require = PostgresConfig::new(PgTarget::parse(&require).unwrap(), password);
    assert!(PgStore::open(&require).await.is_ok());
}

#[tokio::test]
async fn a_wrong_password_is_a_connection_error_that_never_shows_it() {
    let Some(db) = testdb::database("wrong password").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pw");
    std::fs::write(&file, "not-the-password\n").unwrap();
    let c = PostgresConfig::new(
        PgTarget::parse(&db.url).unwrap(),
        Some(SecretSource::File(file)),
    );
    let err = PgStore::open(&c).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{text}");
    assert!(
        text.contains("127.0.0.1") && !text.contains("not-the-password"),
        "{text}"
    );
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_standby_takes_over_when_its_session_drops() {
    let Some(db) = testdb::database("leadership").await else {
        return;
    };
    let failover = Duration::from_secs(3);
    let a = PgLeadership::open(&config(&db, failover), "node-a:1".into())
        .await
        .unwrap();
    let b = PgLeadership::open(&config(&db, failover), "node-b:2".into())
        .await
        .unwrap();
    let lease_a = a.acquire().await.unwrap();
    assert!(b.try_acquire().await.unwrap().is_none(), "only one leads");
    let leader = b.leader().await.unwrap().unwrap();
    assert_eq!((leader.holder.as_str(), leader.live), ("node-a:1", true));
    let standby = tokio::spawn(async move {
        let lease = b.acquire().await.unwrap();
        (lease, b)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!standby.is_finished(), "the standby waits");
    // The leader's lease connection drops (its host died, its network was cut).
    let server = testdb::server("leadership").unwrap();
    let started = std::time::Instant::now();
    let pid: i32 = lease_backend(server, &db, "node-a:1").await;
    server
        .superuser()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let (lease_b, b) = tokio::time::timeout(failover, standby)
        .await
        .expect("takeover within failover")
        .unwrap();
    let took = started.elapsed();
    assert!(took < failover, "{took:?}");
    assert_eq!(lease_b.term(), lease_a.term() + 1);
    tokio::time::timeout(failover, lease_a.lost().cancelled())
        .await
        .expect("the old leader learns it lost");
    assert!(
        lease_a.why_lost().unwrap().contains("dropped"),
        "{:?}",
        lease_a.why_lost()
    );
    let err = record(lease_a.store(), 1).await.unwrap_err();
    assert!(matches!(err, StoreError::LeaseLost { .. }), "{err}");
    let leader = b.leader().await.unwrap().unwrap();
    assert_eq!(
        (leader.holder.as_str(), leader.term),
        ("node-b:2", lease_b.term())
    );
    // A clean stop hands over at once.
    let c = PgLeadership::open(&config(&db, failover), "node-c:3".into())
        .await
        .unwrap();
    drop(lease_b);
    let lease_c = tokio::time::timeout(failover / 2, c.acquire())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease_c.term(), 3);
}

#[tokio::test]
async fn a_leader_that_wakes_up_after_a_takeover_cannot_commit() {
    let Some(db) = testdb::database("fencing").await else {
        return;
    };
    let failover = Duration::from_secs(3);
    let a = PgLeadership::open(&config(&db, failover), "node-a:1".into())
        .await
        .unwrap();
    // A takes over on a connection of its own and then stops renewing (a
    // paused process: its connection and session lock stay).
    let asleep: SharedStore = Arc::new(paused_leader(&a).await);
    let routes: crate::store::Routes = Arc::from(vec![crate::store::SinkRoute {
        name: "hook".into(),
        statuses: None,
        by_cursor: false,
        operational: false,
    }]);
    let chunk = Chunk::whole(vec![change(1, "pending")], Some(at(10)), at(10));
    asleep.record(chunk, Arc::clone(&routes)).await.unwrap();
    let due = asleep.due(&routes[0], i64::MAX, 10).await.unwrap();
    let b = PgLeadership::open(&config(&db, failover), "node-b:2".into())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let lease_b = tokio::time::timeout(failover * 2, b.acquire())
        .await
        .unwrap()
        .unwrap();
    assert!(
        started.elapsed() < failover,
        "took over after {:?}",
        started.elapsed()
    );
    // A wakes up: recording, moving the cursor and marking are all refused.
    let chunk = Chunk::whole(vec![change(2, "issued")], Some(at(99)), at(99));
    let err = asleep.record(chunk, Arc::clone(&routes)).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Fenced {
                term: 1,
                current: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("node-b:2"), "{err}");
    let marks = vec![(due[0].seq(), crate::store::Mark::Delivered)];
    let err = asleep.mark("hook", marks, 5).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(matches!(
        asleep.expire("hook", i64::MAX, "x", 6).await,
        Err(StoreError::Fenced { .. })
    ));
    assert!(matches!(
        asleep.pause("hook", "x", 6).await,
        Err(StoreError::Fenced { .. })
    ));
    // Nothing of it landed; the new leader records and delivers as usual.
    let s = lease_b.store();
    assert_eq!(s.cursor().await.unwrap(), Some(at(10)));
    assert_eq!(s.report(false).await.unwrap().transitions, 1);
    assert_eq!(s.due(&routes[0], i64::MAX, 10).await.unwrap().len(), 1);
    record(s, 3).await.unwrap();
    assert_eq!(s.report(false).await.unwrap().transitions, 2);
}

#[tokio::test]
async fn a_leader_stuck_inside_a_transaction_cannot_hold_up_a_takeover() {
    let Some(db) = testdb::database("stuck transaction").await else {
        return;
    };
    let failover = Duration::from_secs(3);
    let a = PgLeadership::open(&config(&db, failover), "node-a:1".into())
        .await
        .unwrap();
    // A begins a write, passes the fence, then stops (SIGSTOP) before committing.
    let fenced = paused_leader(&a).await;
    let mut client = fenced.client().await.unwrap();
    let tx = client.transaction().await.unwrap();
    fenced.fence(&tx).await.unwrap();
    let b = PgLeadership::open(&config(&db, failover), "node-b:2".into())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let lease_b = tokio::time::timeout(failover * 2, b.acquire())
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < failover * 2, "{:?}", started.elapsed());
    assert_eq!(lease_b.term(), 2);
    // The server ended A's idle transaction; its commit fails.
    assert!(tx.commit().await.is_err());
}

/// A leader of `node` that took over and then stopped renewing its lease,
/// as a paused process does: its lease connection (and session lock) stay.
async fn paused_leader(node: &PgLeadership) -> PgStore {
    let (mut raw, _closed) = node.connector.connect().await.unwrap();
    let term = node.take_over(&mut raw).await.unwrap().unwrap();
    // The connection must outlive the test, like a stopped process's.
    std::mem::forget(raw);
    node.store()
        .fenced(term, CancellationToken::new(), Arc::default())
}

/// The backend pid of `holder`'s lease connection (the one holding its
/// session advisory lock).
async fn lease_backend(server: &testdb::TestServer, db: &TestDb, holder: &str) -> i32 {
    let admin = server.superuser().await;
    let row = admin
        .query_one(
            "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE l.locktype = 'advisory' AND l.granted AND d.datname = $1 AND l.objsubid = 2",
            &[&db.name],
        )
        .await
        .unwrap_or_else(|e| panic!("finding {holder}'s lease session: {e}"));
    row.get(0)
}

async fn record(s: &SharedStore, order: i64) -> Result<RecordSummary, StoreError> {
    let chunk = Chunk::whole(vec![change(order, "issued")], Some(at(order)), at(order));
    s.record(chunk, Arc::from(Vec::new())).await
}

/// Shared buffers a query touched, and the rows it returned, from
/// `EXPLAIN (ANALYZE, BUFFERS)` of the very SQL the store runs.
async fn query_cost(
    store: &PgStore,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> (u64, u64) {
    let client = store.client().await.unwrap();
    let lines: Vec<String> = client
        .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), params)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let number = |line: &str, key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    // The first node and the first `Buffers:` line are the whole query's.
    let actual = lines[0].split("(actual").nth(1).unwrap_or_default();
    let rows = number(actual, " rows=");
    let buffers = lines
        .iter()
        .find(|l| l.trim_start().starts_with("Buffers: shared"))
        .map(|l| number(l, "hit=") + number(l, "read="))
        .unwrap_or_else(|| panic!("no buffer counts in:\n{}", lines.join("\n")));
    (buffers, rows)
}

#[tokio::test]
async fn pending_questions_cost_what_they_answer_even_on_a_table_never_analyzed() {
    let Some(db) = testdb::database("due plan").await else {
        return;
    };
    let store = PgStore::open(&config(&db, Duration::from_secs(15)))
        .await
        .unwrap();
    // 5,000 events delivered and a backlog of 5,000, written straight in:
    // a new deployment's first catch-up, before anything analyzed the table.
    store
        .client()
        .await
        .unwrap()
        .batch_execute(
            "INSERT INTO transitions (seq, order_id, status, certificate_id, seen_at)
               SELECT g, g, 'issued', g, 1800000000000 + g FROM generate_series(1, 10000) g;
             INSERT INTO sinks (name) VALUES ('hook') ON CONFLICT DO NOTHING;
             INSERT INTO outbox (sink, seq, order_id, state, attempts, created_at, next_attempt_at, done_at)
               SELECT 'hook', g, g, CASE WHEN g <= 5000 THEN 'delivered' ELSE 'pending' END,
                      0, 0, 0, CASE WHEN g <= 5000 THEN 1 END
               FROM generate_series(1, 10000) g;",
        )
        .await
        .unwrap();
    let due_sql = super::query::due_sql();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] =
        [&"hook", &i64::MAX, &512i64, &0i64, &false];
    let (buffers, rows) = query_cost(&store, &due_sql, &params).await;
    assert_eq!(rows, 512, "one fetch of due rows");
    // About eight buffers per row (its pending index entry, the check that
    // it is its order's oldest, its transition); scanning the backlog once
    // per row touched over 30,000.
    assert!(
        buffers < 16 * 512,
        "fetching 512 due rows touched {buffers} buffers"
    );
    let route = crate::store::suite::rows("hook", None);
    let due = store.due(&route, i64::MAX, 512).await.unwrap();
    assert_eq!(due.len(), 512);
    assert_eq!(due[0].seq(), 5001, "the oldest pending row comes first");
    assert!(due.windows(2).all(|w| w[0].seq() < w[1].seq()));
    // When the next one falls due: the first row of the pending index in
    // time order, not all of them (min() visited some 10,000 buffers here).
    let (buffers, rows) = query_cost(&store, super::query::next_due_sql(false), &[&"hook"]).await;
    assert_eq!(rows, 1);
    assert!(buffers < 50, "the next due time touched {buffers} buffers");
    store
        .client()
        .await
        .unwrap()
        .batch_execute("UPDATE outbox SET next_attempt_at = seq WHERE state = 'pending'")
        .await
        .unwrap();
    assert_eq!(store.next_due(&route).await.unwrap(), Some(5001));
}

#[tokio::test]
async fn an_in_order_sink_moves_its_cursor_while_a_chunk_is_being_recorded() {
    let Some(db) = testdb::database("sink row lock").await else {
        return;
    };
    let store = Arc::new(
        PgStore::open(&config(&db, Duration::from_secs(15)))
            .await
            .unwrap(),
    );
    let routes: crate::store::Routes =
        Arc::from(vec![crate::store::suite::in_order("archive", None)]);
    let shared: SharedStore = store.clone();
    let chunk = Chunk::whole(vec![change(1, "pending")], Some(at(10)), at(10));
    shared.record(chunk, Arc::clone(&routes)).await.unwrap();
    // A chunk being recorded: its transaction has set up the sinks' queues
    // and stays open (inserting thousands of transitions, say).
    let mut recorder = store.client().await.unwrap();
    let chunk = recorder.transaction().await.unwrap();
    super::record::prepare_routes(&chunk, &routes, 0)
        .await
        .unwrap();
    // Meanwhile the sink delivers seq 1 and moves its cursor past it.
    let moved = tokio::time::timeout(
        Duration::from_secs(5),
        shared.mark("archive", vec![(1, crate::store::Mark::Delivered)], 1),
    )
    .await;
    chunk.rollback().await.unwrap();
    assert!(
        matches!(moved, Ok(Ok(()))),
        "the sink's cursor move waited for the chunk being recorded: {moved:?}"
    );
    let cursor: Option<i64> = store
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT delivered_through FROM sinks WHERE name = 'archive'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(cursor, Some(1));
}

/// `events`, `deliveries` and `redeliver` open the store as it is: a
/// database without orderwatch's tables is not given them, and a schema
/// of another version is neither upgraded nor used.
#[tokio::test]
async fn a_command_beside_the_daemon_neither_creates_nor_migrates() {
    let Some(db) = testdb::database("open existing").await else {
        return;
    };
    let c = config(&db, Duration::from_secs(15));
    let err = PgStore::open_existing(&c).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    let daemon = PgStore::open(&c).await.unwrap();
    assert!(PgStore::open_existing(&c).await.is_ok());
    let older = format!("UPDATE schema_version SET version = {}", SCHEMA_VERSION - 1);
    sql(&daemon, &older).await;
    let err = PgStore::open_existing(&c).await.unwrap_err();
    assert!(matches!(err, StoreError::Outdated { .. }), "{err}");
    let version: i32 = daemon
        .client()
        .await
        .unwrap()
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, SCHEMA_VERSION as i32 - 1, "not migrated");
    sql(&daemon, "UPDATE schema_version SET version = 99").await;
    let err = PgStore::open_existing(&c).await.unwrap_err();
    assert!(matches!(err, StoreError::TooNew { found: 99, .. }), "{err}");
}

/// A node of an older build never takes over a store a newer one migrated.
#[tokio::test]
async fn an_older_node_does_not_take_over_a_newer_schema() {
    let Some(db) = testdb::database("takeover schema").await else {
        return;
    };
    let old = PgLeadership::open(&config(&db, Duration::from_secs(3)), "old:1".into())
        .await
        .unwrap();
    sql(old.store(), "UPDATE schema_version SET version = 99").await;
    let err = old
        .try_acquire()
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("schema version 99"), "{err}");
    assert_eq!(old.leader().await.unwrap(), None, "nobody took the lease");
}

/// `store copy --force` into a store whose lease another node took while
/// the copy ran: the copy's transaction (emptying the store and all)
/// commits nothing.
#[tokio::test]
async fn a_copy_that_lost_its_lease_commits_nothing() {
    let Some(db) = testdb::database("copy fenced").await else {
        return;
    };
    let target = PgLeadership::open(&config(&db, Duration::from_secs(15)), "copy:1".into())
        .await
        .unwrap();
    let routes: crate::store::Routes = Arc::from(Vec::new());
    let chunk = Chunk::whole(vec![change(1, "pending")], Some(at(10)), at(10));
    target.store().record(chunk, routes).await.unwrap();
    let lease = target.try_acquire().await.unwrap().unwrap();
    let copying = target.fenced_by(&lease);
    // Another node takes over (as after the copy's keeper lost its connection).
    sql(target.store(), "UPDATE leadership SET term = term + 1").await;
    let (send, receive) = tokio::sync::mpsc::channel(1);
    drop(send);
    let err = copying.import(receive, true).await.unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    let left = target.store().counts().await.unwrap();
    assert_eq!(left.transitions, 1, "the store was not emptied");
}
