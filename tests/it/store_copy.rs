//! `orderwatch store copy`: a SQLite store with transitions (returns and
//! order details among them, some still held for their lookup), a cursor, a
//! ledger in every state, an in-order sink's cursor and a pause goes to
//! PostgreSQL and back, and comes back identical, table by table. A
//! non-empty target is refused unless `--force`, and a store a daemon holds
//! is refused. Uses the throwaway server of `src/store/postgres/testdb.rs`.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use crate::testdb;
use chrono::DateTime;
use orderwatch::config::StoreConfig;
use orderwatch::store::copy::{Batch, End};
use orderwatch::store::sqlite::{SqliteStore, lock_for_daemon};
use orderwatch::store::{Chunk, Hold, LookupOutcome, Mark, SinkRoute, Store};
use orderwatch::transition::OrderChange;

fn orderwatch(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orderwatch"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env("DIGICERT_API_KEY", "unused")
        .output()
        .expect("run orderwatch")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A store with something in every table.
async fn populate(path: &Path) {
    let store = SqliteStore::open(path).unwrap();
    let hook = SinkRoute {
        name: "hook".into(),
        statuses: None,
        by_cursor: false,
        operational: false,
    };
    let file = SinkRoute {
        name: "file".into(),
        statuses: Some(vec!["issued".into()]),
        by_cursor: true,
        operational: false,
    };
    let routes: Arc<[SinkRoute]> = Arc::from(vec![hook.clone(), file.clone()]);
    for round in 0..3i64 {
        let changes: Vec<OrderChange> = (1..=50)
            .map(|i| OrderChange {
                order_id: i,
                certificate_id: (i % 7 != 0).then_some(i * 10),
                status: Arc::from(["pending", "issued", "revoked"][round as usize]),
            })
            .collect();
        let seen = DateTime::from_timestamp(1_800_000_000 + round * 60, 0).unwrap();
        let chunk = Chunk::whole(changes, Some(seen), seen);
        store.record(chunk, Arc::clone(&routes)).await.unwrap();
    }
    // An operational sink: the dead delivery and the pause below become
    // alerts, with their own ledger rows.
    store.set_alert_sinks(&["ops".into()]).await.unwrap();
    let due = store.due(&hook, i64::MAX, 10).await.unwrap();
    let marks = vec![
        (due[0].seq(), Mark::Delivered),
        (
            due[1].seq(),
            Mark::Retry {
                next_attempt_at: 1_900_000_000_000,
                error: "HTTP 503".into(),
            },
        ),
        (
            due[2].seq(),
            Mark::Dead {
                error: "HTTP 400".into(),
            },
        ),
    ];
    store.mark("hook", marks, 1_800_000_500_000).await.unwrap();
    let pending = store.due(&file, 0, 5).await.unwrap();
    let marks = pending.iter().map(|e| (e.seq(), Mark::Delivered)).collect();
    store.mark("file", marks, 1_800_000_600_000).await.unwrap();
    store
        .pause("hook", "HTTP 410 Gone", 1_800_000_700_000)
        .await
        .unwrap();
    // Returns (issued again after revoked, with a new certificate), held
    // for their order's details: some released with them, the rest held.
    let again: Vec<OrderChange> = (1..=10)
        .map(|i| OrderChange {
            order_id: i,
            certificate_id: Some(i * 10 + 1),
            status: Arc::from("issued"),
        })
        .collect();
    let seen = DateTime::from_timestamp(1_800_000_000 + 240, 0).unwrap();
    let mut chunk = Chunk::whole(again, Some(seen), seen);
    chunk.hold = Hold::All;
    store.record(chunk, Arc::clone(&routes)).await.unwrap();
    let lookups = store.lookups_due(i64::MAX, 4).await.unwrap();
    let released = lookups
        .into_iter()
        .map(|l| {
            let details = r#"{"common_name":"order.example.com"}"#.to_string();
            (l, LookupOutcome::Release { details })
        })
        .collect();
    store.lookups_done(released, 0).await.unwrap();
    let alerts = store.alerts_due("ops", i64::MAX, 10).await.unwrap();
    assert_eq!(alerts.len(), 2, "a dead delivery and a pause: {alerts:?}");
}

/// Every table of a SQLite store, in key order.
async fn dump(path: &Path) -> Vec<Batch> {
    let end = End::open(&StoreConfig::Sqlite {
        path: path.to_path_buf(),
    })
    .await
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let (sent, all) = tokio::join!(end.export(tx), async {
        let mut all = Vec::new();
        while let Some(b) = rx.recv().await {
            all.push(b);
        }
        all
    });
    sent.unwrap();
    all
}

#[tokio::test]
async fn sqlite_to_postgresql_and_back_keeps_everything() {
    let Some(db) = testdb::database("store copy").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.db");
    populate(&original).await;
    let sqlite_config = dir.path().join("sqlite.toml");
    std::fs::write(
        &sqlite_config,
        format!("[store]\npath = {:?}\n", original.display().to_string()),
    )
    .unwrap();
    let password = db.password_file.display().to_string();
    let to_pg = [
        "store",
        "copy",
        "--to",
        &db.url,
        "--password-file",
        &password,
    ];

    // A daemon on the source: refused, nothing copied.
    let lock = lock_for_daemon(&original).unwrap();
    let out = orderwatch(&sqlite_config, &to_pg);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another orderwatch daemon"),
        "{}",
        text(&out)
    );
    drop(lock);

    let out = orderwatch(&sqlite_config, &to_pg);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("160 transitions"), "{}", text(&out));
    assert!(text(&out).contains("2 alerts"), "{}", text(&out));
    assert!(
        text(&out).contains("6 waiting for order details"),
        "{}",
        text(&out)
    );
    // Again: the target is not empty now.
    let out = orderwatch(&sqlite_config, &to_pg);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--force"), "{}", text(&out));
    let forced: Vec<&str> = to_pg.iter().copied().chain(["--force"]).collect();
    let out = orderwatch(&sqlite_config, &forced);
    assert!(out.status.success(), "{}", text(&out));

    // And back, from a config whose store is the PostgreSQL one.
    let pg_config = dir.path().join("pg.toml");
    std::fs::write(
        &pg_config,
        format!(
            "[store]\nurl = {:?}\npassword_file = {password:?}\n",
            db.url
        ),
    )
    .unwrap();
    let back = dir.path().join("back.db");
    let back_text = back.display().to_string();
    let out = orderwatch(&pg_config, &["store", "copy", "--to", &back_text]);
    assert!(out.status.success(), "{}", text(&out));
    let out = orderwatch(&pg_config, &["events", "--limit", "1000"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 161);

    let (before, after) = (dump(&original).await, dump(&back).await);
    assert!(before.len() >= 6, "every table has rows: {before:?}");
    assert!(
        before
            .iter()
            .any(|b| matches!(b, Batch::Held(h) if h.len() == 6))
    );
    assert!(
        before
            .iter()
            .any(|b| matches!(b, Batch::Alerts(a) if a.len() == 2)),
        "the alerts are among what is copied: {before:?}"
    );
    assert_eq!(before, after);
}

/// Mistakes in `--to` and the password flags are usage errors (exit 2)
/// worded for the command line, found before any store is opened.
#[test]
fn password_mistakes_on_the_command_line_are_usage_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("orderwatch.toml");
    let store = dir.path().join("orderwatch.db");
    std::fs::write(
        &config,
        format!("[store]\npath = {:?}\n", store.display().to_string()),
    )
    .expect("config");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--to", "postgresql://ow:hunter2@127.0.0.1:1/ow"],
            "give it with --password-env VAR or --password-file PATH",
        ),
        (
            &[
                "--to",
                "postgresql://ow@127.0.0.1:1/ow",
                "--password-env",
                "OW_TEST_NEVER_SET",
            ],
            "--password-env: environment variable OW_TEST_NEVER_SET is not set",
        ),
        (
            &[
                "--to",
                "postgresql://ow@127.0.0.1:1/ow",
                "--password-env",
                "s3cr3t pass",
            ],
            "--password-env: is not the name of an environment variable",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["store", "copy"];
        all.extend_from_slice(args);
        let out = orderwatch(&config, &all);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {said}");
        assert!(said.contains(expected), "{args:?}: {said}");
        assert!(
            !said.contains("hunter2") && !said.contains("s3cr3t"),
            "{said}"
        );
    }
    assert!(!store.exists(), "nothing was opened");
}
