//! SQLite specifics: file modes, schema versions, damaged files, the lock
//! file, and the range-scan lookup of large chunks. Everything a backend
//! must do is in the shared suite, run here against SQLite.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::*;
use crate::store::suite::store_suite;
use crate::store::{EventFilter, SharedStore};
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
            .map(|t| (t.order_id, t.status, t.previous_status))
            .collect();
        v.sort();
        v
    };
    assert_eq!(key(&big), key(&small));
}
