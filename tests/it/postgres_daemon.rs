//! The daemon on a PostgreSQL store (`[store] url`): `run --once` records
//! and delivers, commands read the same store, a run while another node
//! leads is refused naming the leader, and once that node lets go the next
//! run carries on from the shared cursor without repeating anything.
//! Uses the throwaway server of `src/store/postgres/testdb.rs`.

use std::time::Duration;

use orderwatch::config::{PgTarget, PostgresConfig, SecretSource};
use orderwatch::store::Leadership;
use orderwatch::store::postgres::PgLeadership;

use crate::support::{World, ago, text};
use crate::testdb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_on_postgresql_records_delivers_and_respects_another_leader() {
    let Some(db) = testdb::database("the daemon on PostgreSQL").await else {
        return;
    };
    let mut w = World::new().await;
    w.file_sink();
    w.unset("store.path").set("store.url", db.url.clone()).set(
        "store.password_file",
        db.password_file.display().to_string(),
    );
    w.sim.set_status(264, 112232, "pending", ago(120));
    w.sim.set_status(265, 112233, "issued", ago(60));
    w.once();
    assert_eq!(w.file_ids(), vec!["264:pending", "265:issued"]);
    let listed = w.run(&["events"]);
    assert!(
        text(&listed.stdout).contains("264"),
        "{}",
        text(&listed.stdout)
    );
    assert!(
        !w.path("orderwatch.db").exists(),
        "no SQLite file on the side"
    );

    // Another node leads: this one is refused and names it.
    let mut config = PostgresConfig::new(
        PgTarget::parse(&db.url).unwrap(),
        Some(SecretSource::File(db.password_file.clone())),
    );
    config.failover = Duration::from_secs(3);
    let other = PgLeadership::open(&config, "db-node-2:4711".into())
        .await
        .unwrap();
    let lease = other.acquire().await.unwrap();
    w.sim.set_status(264, 112232, "canceled", ago(1));
    let refused = w.run(&["run", "--once"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stderr));
    assert!(
        text(&refused.stderr).contains("led by another orderwatch (db-node-2:4711"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(w.file_ids().len(), 2, "nothing delivered while refused");

    // It lets go: the next run takes over at once and carries on.
    drop(lease);
    w.once();
    assert_eq!(
        w.file_ids(),
        vec!["264:pending", "265:issued", "264:canceled"]
    );
}
