//! SQLite specifics: file modes, schema versions, damaged files, the lock
//! file, and the range-scan lookup of large chunks. Everything a backend
//! must do is in the shared suite, run here against SQLite.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::store::StoreError;
use crate::store::suite::store_suite;
use crate::store::{Chunk, Committed, EventFilter, RecordSummary, SharedStore};
use crate::transition::OrderChange;

/// A fresh SQLite store in a temporary directory (removed with the guard).
async fn fresh() -> Option<(tempfile::TempDir, SharedStore)> {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("ow.db")).unwrap();
    Some((dir, Arc::new(store)))
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

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

fn open() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("ow.db")).unwrap();
    (dir, db)
}

#[test]
fn a_new_store_is_migrated_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, db) = open();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.cursor().unwrap(), None);
    let mode = std::fs::metadata(dir.path().join("ow.db"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn a_newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Db::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Db::open(&path).unwrap_err().to_string();
    assert!(
        err.contains("schema version 99") && err.contains("upgrade orderwatch"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = Db::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

#[test]
fn a_directory_or_a_path_under_a_file_is_refused_with_the_reason_once() {
    let dir = tempfile::tempdir().unwrap();
    let err = Db::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    let file = dir.path().join("plain");
    std::fs::write(&file, "x").unwrap();
    let err = Db::open(&file.join("ow.db")).unwrap_err();
    let shown = format!("{:#}", anyhow::Error::new(err));
    assert!(shown.contains("plain/ow.db"), "{shown}");
    assert_eq!(shown.matches("Not a directory").count(), 1, "{shown}");
}

#[test]
fn a_second_daemon_lock_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let first = lock_for_daemon(&path).unwrap();
    let err = lock_for_daemon(&path).unwrap_err().to_string();
    assert!(err.contains("another orderwatch daemon"), "{err}");
    drop(first);
    assert!(lock_for_daemon(&path).is_ok());
}

#[test]
fn large_sorted_chunks_dedupe_like_small_ones() {
    // Above SCAN_THRESHOLD the lookup is a range scan; the outcome must be
    // the same as order-by-order lookups.
    let (_d1, mut big) = open();
    let (_d2, mut small) = open();
    let first: Vec<OrderChange> = (1..=5000).map(|i| change(i, "pending")).collect();
    let mut second: Vec<OrderChange> = (1..=6000)
        .map(|i| change(i, if i % 3 == 0 { "issued" } else { "pending" }))
        .collect();
    // The same order twice in one answer, and an A → B → A return.
    second.insert(10, change(10, "needs_approval"));
    second.insert(12, change(11, "needs_approval"));
    second.insert(13, change(11, "pending"));
    // Reissues finished between two polls: same status, another certificate.
    for c in second.iter_mut().filter(|c| c.order_id % 7 == 0) {
        c.certificate_id = Some(c.order_id + 2000);
    }
    second.sort_by_key(|c| c.order_id);
    let a = big.record_window(&first, at(0), at(0), &[]).unwrap();
    let b = big.record_window(&second, at(1), at(1), &[]).unwrap();
    let mut small_new = 0;
    for c in first.iter() {
        small_new += small
            .record_window(std::slice::from_ref(c), at(0), at(0), &[])
            .unwrap()
            .new_transitions();
    }
    assert_eq!(a.new_transitions(), small_new);
    let mut small_second = 0;
    for c in second.iter() {
        small_second += small
            .record_window(std::slice::from_ref(c), at(1), at(1), &[])
            .unwrap()
            .new_transitions();
    }
    assert_eq!(b.new_transitions(), small_second);
    let all = EventFilter {
        limit: 100_000,
        ..EventFilter::default()
    };
    let key = |db: &Db| {
        let mut v: Vec<_> = db
            .events(&all)
            .unwrap()
            .into_iter()
            .map(|t| (t.event_id(), t.previous_status, t.certificate_id))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&big), key(&small));
    assert!(key(&big).iter().any(|(id, _, _)| id == "7:pending:1"));
}

/// A store as orderwatch 0.1 left it: schema 2, one order issued and
/// delivered, one pending with a delivery still queued.
fn version_2_store(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(include_str!("../../../migrations/0001_init.sql"))
        .unwrap();
    conn.execute_batch(include_str!("../../../migrations/0002_sink_cursor.sql"))
        .unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute_batch(
        "INSERT INTO cursor VALUES (1, 1800000000000);
         INSERT INTO orders VALUES (1, 1001, 'issued', 1), (2, 1002, 'pending', 1);
         INSERT INTO transitions (seq, order_id, status, certificate_id, previous_status, seen_at)
            VALUES (1, 1, 'pending', 1001, NULL, 1), (2, 2, 'pending', 1002, NULL, 1),
                   (3, 1, 'issued', 1001, 'pending', 2);
         INSERT INTO outbox (sink, seq, order_id, state, created_at, next_attempt_at)
            VALUES ('hook', 1, 1, 'delivered', 1, 1), ('hook', 2, 2, 'pending', 1, 1),
                   ('hook', 3, 1, 'delivered', 2, 2);",
    )
    .unwrap();
}

#[tokio::test]
async fn a_version_2_store_migrates_without_emitting_anything_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    version_2_store(&path);
    let store: SharedStore = Arc::new(SqliteStore::open(&path).unwrap());
    assert_eq!(
        store.report(true).await.unwrap().schema_version,
        SCHEMA_VERSION
    );
    let hook = crate::store::SinkRoute {
        name: "hook".into(),
        statuses: None,
        by_cursor: false,
        operational: false,
    };
    // Ids and seqs are what they were; the queued delivery is still due.
    let mut before: Vec<_> = store
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.seq, t.event_id()))
        .collect();
    before.sort();
    assert_eq!(
        before,
        [
            (1, "1:pending".to_string()),
            (2, "2:pending".to_string()),
            (3, "1:issued".to_string())
        ]
    );
    let due = store.due(&hook, i64::MAX, 10).await.unwrap();
    assert_eq!(due.iter().map(|e| e.seq()).collect::<Vec<_>>(), [2]);
    // Re-polling what 0.1 recorded emits nothing; a reissue is news.
    let routes: crate::store::Routes = vec![hook.clone()].into();
    let repoll = vec![change(1, "issued"), change(2, "pending")];
    let same = store
        .record(
            crate::store::Chunk::whole(repoll, Some(at(60)), at(60)),
            Arc::clone(&routes),
        )
        .await
        .unwrap();
    assert_eq!(same.new_transitions(), 0);
    let reissued = OrderChange {
        certificate_id: Some(1501),
        ..change(1, "issued")
    };
    let news = store
        .record(
            crate::store::Chunk::whole(vec![reissued], Some(at(120)), at(120)),
            routes,
        )
        .await
        .unwrap();
    assert_eq!(news.sample[0].event_id(), "1:issued:1");
    assert_eq!(news.sample[0].seq, 4);
}

#[test]
fn returns_are_counted_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    for (i, status) in [
        "issued",
        "reissue_pending",
        "issued",
        "reissue_pending",
        "issued",
    ]
    .into_iter()
    .enumerate()
    {
        // A fresh connection each time, as after a restart.
        let mut db = Db::open(&path).unwrap();
        let t = at(i as i64 * 60);
        let summary = db.record_window(&[change(5, status)], t, t, &[]).unwrap();
        assert_eq!(summary.new_transitions(), 1, "{status} #{i}");
    }
    let db = Db::open(&path).unwrap();
    let mut ids: Vec<_> = db
        .events(&EventFilter {
            limit: 100,
            ..EventFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|t| t.event_id())
        .collect();
    ids.reverse();
    assert_eq!(
        ids,
        [
            "5:issued",
            "5:reissue_pending",
            "5:issued:1",
            "5:reissue_pending:1",
            "5:issued:2"
        ]
    );
}

#[test]
fn commands_open_only_existing_current_orderwatch_stores() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    // Missing: refused, and nothing is created.
    let err = SqliteStore::open_existing(&path, false).unwrap_err();
    assert!(matches!(err, StoreError::Missing { .. }), "{err}");
    assert!(!path.exists());
    // Outdated: refused unless asked (check), never migrated.
    drop(Db::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);
    let err = SqliteStore::open_existing(&path, false).unwrap_err();
    assert!(
        matches!(err, StoreError::Outdated { found: 1, .. }),
        "{err}"
    );
    SqliteStore::open_existing(&path, true).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 1, "a command never migrates");
}

#[test]
fn another_applications_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
        .unwrap();
    drop(conn);
    let before = std::fs::read(&path).unwrap();
    for err in [
        Db::open(&path).unwrap_err(),
        SqliteStore::open_existing(&path, true).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("1 tables but no orderwatch schema"),
            "{err}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), before, "the file changed");
    assert!(!dir.path().join("app.db-wal").exists(), "switched to WAL");
    // Another application id is refused even without tables.
    let other = dir.path().join("other.db");
    let conn = rusqlite::Connection::open(&other).unwrap();
    conn.pragma_update(None, "application_id", 0x1234).unwrap();
    drop(conn);
    let err = Db::open(&other).unwrap_err();
    assert!(
        err.to_string().contains("application id is 0x1234"),
        "{err}"
    );
}

#[test]
fn a_store_is_marked_as_orderwatchs_and_old_stores_are_adopted() {
    let (_d, db) = open();
    let app: i32 = db
        .conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .unwrap();
    assert_eq!(app, db::APPLICATION_ID);
}

#[test]
fn the_daemon_lock_follows_the_real_file_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    drop(Db::open(&path).unwrap());
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    let first = lock_for_daemon(&path).unwrap();
    let err = lock_for_daemon(&link).unwrap_err().to_string();
    assert!(err.contains("another orderwatch daemon"), "{err}");
    drop(first);
    assert!(lock_for_daemon(&link).is_ok());
}

#[tokio::test]
async fn writing_to_a_store_deleted_or_replaced_under_it_is_refused() {
    use crate::store::{Chunk, Store};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let store = SqliteStore::open(&path).unwrap();
    let one = || Chunk::whole(vec![change(1, "pending")], Some(at(0)), at(0));
    store.record(one(), Arc::from([])).await.unwrap();
    std::fs::remove_file(&path).unwrap();
    let err = store.record(one(), Arc::from([])).await.unwrap_err();
    assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
    assert!(err.is_fatal());
    // Replaced by another file (a restored backup) just the same.
    drop(Db::open(&path).unwrap());
    let err = store.record(one(), Arc::from([])).await.unwrap_err();
    assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
    // A whole window of chunks too, before its first commit.
    let told = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = Arc::clone(&told);
    let err = store
        .record_chunks(
            Box::new([one(), one()].into_iter()),
            Arc::from([]),
            Arc::new(move |_: &RecordSummary| {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Replaced { .. }), "{err}");
    assert_eq!(told.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// Chunks handed out one at a time; says when the recording let go of them.
struct Handout {
    chunks: std::vec::IntoIter<Chunk>,
    done: std::sync::mpsc::Sender<()>,
}

impl Iterator for Handout {
    type Item = Chunk;
    fn next(&mut self) -> Option<Chunk> {
        self.chunks.next()
    }
}

impl Drop for Handout {
    fn drop(&mut self) {
        let _ = self.done.send(());
    }
}

/// A window whose recording is dropped (a shutdown) stops after the chunk
/// under way: later chunks are not recorded behind the caller's back, and
/// the cursor, which only the last chunk moves, stays.
#[tokio::test]
async fn a_dropped_window_stops_after_the_chunk_under_way() {
    use std::sync::mpsc::channel;
    use std::time::Duration;
    let (_dir, store) = fresh().await.unwrap();
    let answer = Arc::new((1..=3).map(|id| change(id, "pending")).collect::<Vec<_>>());
    let chunks: Vec<Chunk> = (0..3)
        .map(|i| Chunk {
            orders: Arc::clone(&answer),
            range: i..i + 1,
            cursor: (i == 2).then(|| at(9)),
            seen_at: at(0),
            dedupe: crate::transition::Dedupe::Change,
            hold: crate::store::Hold::Nothing,
        })
        .collect();
    let (done, finished) = channel();
    let handout = Handout {
        chunks: chunks.into_iter(),
        done,
    };
    let (committed_tx, committed) = channel();
    let (go_on, wait) = channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let told: Committed = Arc::new(move |_: &RecordSummary| {
        committed_tx.send(()).unwrap();
        // Hold the blocking thread until the caller has gone.
        let _ = wait.lock().unwrap().recv_timeout(Duration::from_secs(10));
    });
    let recording = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .record_chunks(Box::new(handout), Arc::from([]), told)
                .await
        })
    };
    tokio::task::spawn_blocking(move || committed.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    recording.abort();
    assert!(recording.await.unwrap_err().is_cancelled());
    go_on.send(()).unwrap();
    tokio::task::spawn_blocking(move || finished.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.report(false).await.unwrap().transitions, 1);
    assert_eq!(store.cursor().await.unwrap(), None);
}

/// The store watch's probe moves on every commit by another connection
/// (this process's writer, another process) and not on a read, so an idle
/// daemon wakes its loops when, and only when, something changed.
#[tokio::test]
async fn the_version_moves_on_every_commit_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ow.db");
    let store = SqliteStore::open(&path).unwrap();
    let mut probe = store.version_probe().expect("SQLite tells changes");
    let start = probe().unwrap();
    assert_eq!(probe().unwrap(), start, "nothing was committed");
    store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(probe().unwrap(), start, "a read commits nothing");

    store.pause("hook", "410", 1).await.unwrap();
    let written = probe().unwrap();
    assert_ne!(written, start, "the daemon's own writer committed");
    assert_eq!(probe().unwrap(), written);

    // `orderwatch redeliver` and friends open the file beside the daemon.
    let other = SqliteStore::open_existing(&path, false).unwrap();
    other.pause("archive", "410", 2).await.unwrap();
    assert_ne!(probe().unwrap(), written, "another process committed");
}

/// SQLite steps (in hundreds of VM instructions) that `f` takes on `db`.
fn steps<T>(db: &mut Db, f: impl FnOnce(&mut Db) -> T) -> (T, usize) {
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = Arc::clone(&count);
    db.conn
        .progress_handler(
            100,
            Some(move || {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                false
            }),
        )
        .unwrap();
    let out = f(db);
    db.conn.progress_handler(0, None::<fn() -> bool>).unwrap();
    (out, count.load(std::sync::atomic::Ordering::Relaxed))
}

#[test]
fn questions_about_pending_deliveries_do_not_walk_the_delivered_ledger() {
    // Delivered rows stay for `keep_delivered` (90 days by default): a busy
    // sink's ledger is mostly delivered rows, and what is pending, due or
    // failing must cost what is pending, not what was ever delivered.
    const DELIVERED: i64 = 20_000;
    let (_dir, mut db) = open();
    db.conn
        .execute_batch(&format!(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {DELIVERED} + 1)
             INSERT INTO transitions (seq, order_id, status, occurrence, seen_at)
               SELECT i, 5000 + i, 'issued', 0, 1 FROM n;
             INSERT INTO sinks (name) VALUES ('hook');
             INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at, state, done_at, attempts)
               SELECT 'hook', seq, order_id, 1, 1, 'delivered', 2, 1 FROM transitions WHERE seq <= {DELIVERED};
             INSERT INTO outbox (sink, seq, order_id, created_at, next_attempt_at, first_failure_at, attempts)
               VALUES ('hook', {DELIVERED} + 1, 5001 + {DELIVERED}, 1, 1, 1, 1);
             COMMIT;"
        ))
        .unwrap();
    let route = crate::store::suite::rows("hook", None);
    // A plan through the primary key visits every delivered row: at least
    // 20,000 rows, several instructions each, so hundreds of steps.
    let cheap = |what: &str, steps: usize| assert!(steps < 20, "{what}: {steps} hundred VM steps");

    for (sink, kind) in [
        (route.clone(), ""),
        (crate::store::suite::in_order("hook", None), ", in order"),
    ] {
        let (due, n) = steps(&mut db, |db| db.due(&sink, 10, 512, 0).unwrap());
        assert_eq!(due.len(), 1);
        cheap(&format!("due{kind}"), n);
        let (next, n) = steps(&mut db, |db| db.next_due(&sink).unwrap());
        assert_eq!(next, Some(1));
        cheap(&format!("next due{kind}"), n);
    }
    let (stats, n) = steps(&mut db, |db| {
        db.sink_stats(std::slice::from_ref(&route)).unwrap()
    });
    assert_eq!(stats[0].pending, 1);
    cheap("sink statistics", n);
    let (given_up, n) = steps(&mut db, |db| db.expire("hook", 5, "too old", 10).unwrap());
    assert_eq!(given_up, 1);
    cheap("giving up old deliveries", n);
}
