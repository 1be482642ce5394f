//! The disk under the store failing or lying: a read-only store directory,
//! a store that turns unwritable while the daemon runs (while polling, and
//! while deliveries finish), a full disk under the store, a database
//! overwritten with garbage, truncated mid-page or damaged in the middle,
//! and a database from a newer orderwatch.
//!
//! Startup problems are refused (exit 1 for `run`, 2 for `check`) with a
//! message naming the store and what to do. Problems at run time fail the
//! cycle with that message, commit nothing half-way (a window is recorded
//! chunk by chunk, each chunk all or nothing, and the cursor never passes
//! what is recorded), keep the daemon running, and once the disk works
//! again every transition is recorded exactly once and delivered.
//!
//! The faults are made as `support::disk` describes (tmpfs, `chattr +i`,
//! `chmod`, `RLIMIT_FSIZE`); a test with no way to make its fault skips
//! visibly, and fails under `ORDERWATCH_REQUIRE_ROOT`.
//!
//! Two daemons on one store: `crash.rs`
//! (`a_second_daemon_on_the_same_store_is_refused_while_the_first_runs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use crate::support::disk::{FullDisk, Immutable, Tmpfs};
use crate::support::receiver::Reply;
use crate::support::{
    Daemon, World, ago, event_ids, eventually, failed_cycles, ids, is_root, output_within, skip,
    store, text, unique,
};

/// A command that must be refused: `code`, the fragments in stderr, no panic.
fn refused(out: &Output, code: i32, fragments: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for f in fragments {
        assert!(err.contains(f), "{f:?} not in:\n{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_directory_refuses_the_start_and_says_what_to_do() {
    let mut w = World::new().await;
    let dir = w.path("state");
    std::fs::create_dir(&dir).expect("dir");
    // Keep whichever guard made the directory read-only alive to the end.
    let _mounted;
    let _immutable;
    if let Some(m) = Tmpfs::mount(&dir, "ro,size=1m") {
        _mounted = m;
    } else if !is_root() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    } else if let Some(i) = Immutable::set(std::slice::from_ref(&dir)) {
        _immutable = i;
    } else {
        return skip("ROOT", "no mount, no chattr, and chmod does not bind root");
    }
    let store = dir.join("orderwatch.db");
    w.set("store.path", store.display().to_string());
    let path = store.display().to_string();

    let out = w.run(&["check"]);
    refused(
        &out,
        2,
        &["store.path", &path, "writable by the orderwatch user"],
    );
    let out = w.run(&["run", "--once"]);
    refused(&out, 1, &[&path, "writable by the orderwatch user"]);
    let mut daemon = w.spawn();
    let status = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("the daemon refuses to start");
    assert_eq!(status.code(), Some(1), "{}", daemon.log_text());
    assert!(daemon.log_text().contains(&path));
    assert!(w.sim.queries().is_empty(), "polled without a store");
    assert!(!store.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_read_only_between_runs_is_refused_until_writable_again() {
    let mut w = World::new().await;
    let dir = w.path("state");
    let Some(disk) = Tmpfs::mount(&dir, "size=8m") else {
        return skip("ROOT", "mount is not allowed (needs root)");
    };
    let store = dir.join("orderwatch.db");
    w.set("store.path", store.display().to_string());
    w.sim.set_status(1, 11, "pending", ago(60));
    w.once();
    let before = store::cursor(&store);
    w.sim.set_status(1, 11, "issued", ago(2));

    disk.remount("ro");
    let out = w.run(&["check"]);
    let not_writable = format!(
        "directory {} is not writable: Read-only file system",
        dir.display()
    );
    refused(
        &out,
        2,
        &[
            "store.path",
            &not_writable,
            "the store needs to create its lock, -wal and -shm files there",
        ],
    );
    let out = w.run(&["run", "--once"]);
    refused(&out, 1, &[&store.display().to_string(), "is read-only"]);

    disk.remount("rw");
    assert_eq!(store::cursor(&store), before);
    w.once();
    let mut got = ids(&w.stored_events());
    got.sort();
    assert_eq!(got, ["1:issued", "1:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_turning_unwritable_at_run_time_fails_cycles_and_loses_nothing() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn_ready().await;
    // Delivered and written down: freezing the store now cannot make the
    // sink send it again (at-least-once would allow that, this test not).
    let first = eventually(Duration::from_secs(30), || {
        w.file_events().len() == 1 && w.deliveries(&["--state", "pending"]).is_empty()
    })
    .await;
    assert!(first, "{}", daemon.log_text());
    let store = w.store();
    let Some(mut frozen) = Immutable::set(&db_and_wal(&store)) else {
        return skip(
            "ROOT",
            "chattr +i is not available (needs root and ext4/xfs/btrfs/tmpfs)",
        );
    };
    let failures_before = failed_cycles(&daemon.log_text()).len();
    w.sim.set_status(1, 11, "issued", ago(1));
    w.sim.set_status(2, 12, "pending", ago(1));
    let failing = eventually(Duration::from_secs(30), || {
        failed_cycles(&daemon.log_text()).len() >= failures_before + 2
    })
    .await;
    let log = daemon.log_text();
    assert!(failing, "{log}");
    for line in &failed_cycles(&log)[failures_before..] {
        assert!(line.contains("code=store"), "{line}");
        assert!(line.contains(&store.display().to_string()), "{line}");
    }
    assert!(daemon.is_running(), "{log}");
    assert_eq!(w.file_ids(), ["1:pending"]);

    frozen.release();
    let expected = ["1:pending", "1:issued", "2:pending"];
    let recovered = eventually(Duration::from_secs(30), || w.file_events().len() >= 3).await;
    assert!(recovered, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(w.file_ids(), expected);
    assert_eq!(store::transition_count(&store), 3);
}

/// The database and its WAL, the files a commit writes to. Not `-shm`:
/// SQLite maps it into memory, and a write to a mapped page of an
/// immutable file is a SIGBUS — a fault of the test, not of a disk.
fn db_and_wal(store: &Path) -> Vec<PathBuf> {
    ["", "-wal"]
        .iter()
        .map(|s| PathBuf::from(format!("{}{s}", store.display())))
        .filter(|p| p.exists())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_turning_unwritable_while_deliveries_finish_keeps_the_daemon_running() {
    let (mut w, rx) = World::with_webhook().await;
    rx.set_default(Reply::Status(503));
    w.set("sinks.hook.backoff_max", "300ms")
        .set("sinks.hook.concurrency", 1);
    w.sim.set_status(1, 11, "pending", ago(30));
    let mut daemon = w.spawn_ready().await;
    let failing = eventually(Duration::from_secs(30), || rx.deliveries().len() >= 2).await;
    assert!(failing, "{}", daemon.log_text());
    let Some(mut frozen) = Immutable::set(&db_and_wal(&w.store())) else {
        return skip(
            "ROOT",
            "chattr +i is not available (needs root and ext4/xfs/btrfs/tmpfs)",
        );
    };
    // The receiver takes the event, but its delivery cannot be recorded.
    rx.set_default(Reply::Status(200));
    let accepted = eventually(Duration::from_secs(30), || !rx.accepted().is_empty()).await;
    assert!(accepted, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(daemon.is_running(), "{}", daemon.log_text());

    frozen.release();
    let recorded = eventually(Duration::from_secs(30), || {
        w.deliveries(&["--sink", "hook", "--state", "delivered"])
            .len()
            == 1
    })
    .await;
    assert!(recorded, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_gives_up_with_exit_1_after_four_failed_ledger_writes_and_loses_nothing() {
    let (mut w, rx) = World::with_webhook().await;
    w.set("sinks.hook.concurrency", 1);
    // Each request is taken at once and answered two seconds later: time
    // to freeze the store while the first one is in flight.
    rx.set_default(Reply::AcceptThenStall(Duration::from_secs(2)));
    w.sim.set_status(1, 11, "pending", ago(30));
    let cmd = w.command(&["run", "--once"]);
    let run = tokio::task::spawn_blocking(move || output_within(cmd, Duration::from_secs(120)));
    let in_flight = eventually(Duration::from_secs(30), || !rx.accepted().is_empty()).await;
    let frozen = in_flight
        .then(|| Immutable::set(&db_and_wal(&w.store())))
        .flatten();
    let out = run.await.expect("run --once finishes");
    let log = text(&out.stderr);
    assert!(in_flight, "no delivery arrived:\n{log}");
    let Some(mut frozen) = frozen else {
        return skip(
            "ROOT",
            "chattr +i is not available (needs root and ext4/xfs/btrfs/tmpfs)",
        );
    };
    frozen.release();
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    let retried = log
        .lines()
        .filter(|l| l.contains("cannot update the delivery ledger"))
        .count();
    assert_eq!(
        retried, 3,
        "three retries, then the fourth failure gives up:\n{log}"
    );
    assert!(
        log.contains("delivery loop stopped: the store keeps failing"),
        "{log}"
    );

    // Nothing was lost: the delivery is still pending and the next run
    // sends it again (at-least-once: the receiver had it already).
    let pending = w.deliveries(&["--sink", "hook", "--state", "pending"]);
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["event"], "1:pending");
    rx.set_default(Reply::Status(200));
    w.once();
    let delivered = w.deliveries(&["--sink", "hook", "--state", "delivered"]);
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert!(rx.accepted_counts()["1:pending"] >= 2);
}

/// A store on a disk with room for `room` bytes (see `FullDisk`) and a
/// file sink: order 1's `pending` recorded, and `orders` new `issued`
/// orders (1000 on) waiting in one window.
struct FullStore {
    w: World,
    disk: FullDisk,
    store: PathBuf,
    /// The store's cursor before the new orders.
    before: Option<chrono::DateTime<chrono::Utc>>,
}

impl FullStore {
    async fn new(room: u64, orders: usize) -> FullStore {
        let mut w = World::new().await;
        w.file_sink();
        let dir = w.path("state");
        let disk = FullDisk::new(&dir, room);
        let store = dir.join("orderwatch.db");
        w.set("store.path", store.display().to_string());
        w.sim.set_status(1, 11, "pending", ago(60));
        w.once();
        let before = store::cursor(&store);
        w.sim.bulk_insert(1000, orders, "issued", ago(5));
        FullStore {
            w,
            disk,
            store,
            before,
        }
    }
}

/// Starts the daemon on `disk` and waits up to `wait` for two failed
/// cycles, each naming the store, its path and the disk's fault; the
/// daemon is still running.
async fn failing_daemon(w: &World, disk: &FullDisk, store: &Path, wait: Duration) -> Daemon {
    let mut daemon = w.spawn_with(&["run"], |c| disk.apply(c));
    let failing = eventually(wait, || failed_cycles(&daemon.log_text()).len() >= 2).await;
    let log = daemon.log_text();
    assert!(failing, "{log}");
    for line in failed_cycles(&log) {
        assert!(line.contains("code=store"), "{line}");
        assert!(line.contains(&store.display().to_string()), "{line}");
        assert!(line.contains(disk.cause()), "{line}");
    }
    assert!(daemon.is_running(), "{log}");
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_store_commits_nothing_half_way_and_recovers_once_space_is_freed() {
    const ORDERS: i64 = 10_000;
    // Far more than the disk has room for, all in one window.
    let FullStore {
        w,
        disk,
        store,
        before,
    } = FullStore::new(512 * 1024, ORDERS as usize).await;
    let mut daemon = failing_daemon(&w, &disk, &store, Duration::from_secs(30)).await;
    // The window's first chunk failed: not one row of it, and the cursor
    // where it was. (A failure in a later chunk keeps the chunks before it:
    // `a_full_disk_in_a_later_chunk_…`.)
    assert_eq!(store::transition_count(&store), 1);
    assert_eq!(store::cursor(&store), before);
    assert_eq!(w.file_ids(), ["1:pending"]);

    disk.grow(&daemon);
    let all = eventually(Duration::from_secs(60), || {
        w.file_events().len() as i64 > ORDERS
    })
    .await;
    assert!(all, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let mut expected = event_ids(1000..1000 + ORDERS, "issued");
    expected.insert("1:pending".into());
    assert_eq!(unique(w.file_ids()), expected);
    assert_eq!(store::transition_count(&store), ORDERS as u64 + 1);
}

/// `run --once` polls once: a store that cannot record fails the run
/// (exit 1, naming the store) instead of retrying, commits nothing of the
/// failed chunk and leaves the cursor, so the next run records it all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_with_a_full_store_exits_1_and_the_next_run_records_everything() {
    const ORDERS: i64 = 10_000;
    let FullStore {
        w,
        disk,
        store,
        before,
    } = FullStore::new(512 * 1024, ORDERS as usize).await;

    let mut cmd = w.command(&["run", "--once"]);
    disk.apply(&mut cmd);
    let out = output_within(cmd, Duration::from_secs(120));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let failed = failed_cycles(&err);
    assert_eq!(failed.len(), 1, "one cycle, no retry:\n{err}");
    assert!(failed[0].contains("code=store"), "{}", failed[0]);
    assert!(
        failed[0].contains(&store.display().to_string()),
        "{}",
        failed[0]
    );
    assert!(failed[0].contains(disk.cause()), "{}", failed[0]);
    assert_eq!(store::transition_count(&store), 1);
    assert_eq!(store::cursor(&store), before);

    if let FullDisk::Tmpfs(t) = &disk {
        t.remount("size=256m");
    }
    w.once();
    let mut expected = event_ids(1000..1000 + ORDERS, "issued");
    expected.insert("1:pending".into());
    assert_eq!(unique(w.recorded_ids()), expected);
    assert_eq!(store::transition_count(&store), ORDERS as u64 + 1);
    assert_eq!(unique(w.file_ids()), expected);
}

/// Orders per chunk the poller records in one transaction (`CHUNK` in
/// `src/poller`).
const CHUNK: u64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_in_a_later_chunk_keeps_the_chunks_before_it_and_the_cursor_behind() {
    // One window of five chunks: order 1 (already recorded) and 49,999 new.
    const ORDERS: u64 = 5 * CHUNK;
    // Room for the first chunk (about 1 MiB of database, and its WAL) but
    // not for all five: measured, 1.5 to 5 MiB fail in a later chunk.
    let FullStore {
        w,
        disk,
        store,
        before,
    } = FullStore::new(3 * 1024 * 1024, ORDERS as usize - 1).await;
    let mut daemon = failing_daemon(&w, &disk, &store, Duration::from_secs(60)).await;
    let log = daemon.log_text();
    // Whole chunks only, at least the first, never the last; the cursor
    // stays before the window, so the next cycle reads all of it again.
    let recorded = store::transition_count(&store);
    assert_eq!(recorded % CHUNK, 0, "a chunk recorded in part: {recorded}");
    assert!(
        (CHUNK..ORDERS).contains(&recorded),
        "{recorded} recorded\n{log}"
    );
    assert_eq!(store::cursor(&store), before);

    disk.grow(&daemon);
    let all = eventually(Duration::from_secs(120), || {
        store::transition_count(&store) == ORDERS && store::cursor(&store) > before
    })
    .await;
    assert!(all, "{}", daemon.log_text());
    let delivered = eventually(Duration::from_secs(120), || {
        unique(w.file_ids()).len() as u64 == ORDERS
    })
    .await;
    assert!(delivered, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    // Each transition recorded once: the chunks recorded before the
    // failure were repeats when the window was read again.
    let ids = w.recorded_ids();
    assert_eq!(ids.len() as u64, ORDERS);
    let mut expected = event_ids(1000..1000 + ORDERS as i64 - 1, "issued");
    expected.insert("1:pending".into());
    assert_eq!(unique(ids), expected);
    assert_eq!(unique(w.file_ids()), expected);
}

/// A store, created by a real run and closed cleanly (its WAL folded in).
async fn world_with_a_store() -> World {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.bulk_insert(1, 500, "pending", ago(60));
    w.once();
    assert!(!PathBuf::from(format!("{}-wal", w.store().display())).exists());
    w
}

/// `check` and `run` are both refused with `fragments`; nothing is polled.
fn start_refused(w: &World, fragments: &[&str]) {
    let asked = w.sim.queries().len();
    let out = w.run(&["check"]);
    refused(&out, 2, &[&["store.path"], fragments].concat());
    let out = w.run(&["run", "--once"]);
    refused(&out, 1, fragments);
    let out = w.run(&["run"]);
    refused(&out, 1, fragments);
    assert_eq!(w.sim.queries().len(), asked, "polled with a broken store");
}

const CORRUPT: &[&str] = &[
    "is not a SQLite database or is corrupted",
    "move it aside",
    "restore a backup",
];

/// Overwrites `store` from byte `from` to its end with garbage.
fn garble(store: &Path, from: usize) {
    let mut bytes = std::fs::read(store).expect("store");
    for (i, b) in bytes.iter_mut().enumerate().skip(from) {
        *b = (i * 7919 % 251) as u8;
    }
    std::fs::write(store, &bytes).expect("garbage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_overwritten_with_garbage_is_refused_with_what_to_do() {
    let w = world_with_a_store().await;
    garble(&w.store(), 0);
    let path = w.store().display().to_string();
    start_refused(&w, &[&[path.as_str()], CORRUPT].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_garbled_after_its_header_is_refused_with_what_to_do() {
    let w = world_with_a_store().await;
    // SQLite's 100-byte header survives; the schema page does not.
    garble(&w.store(), 100);
    let path = w.store().display().to_string();
    start_refused(&w, &[&[path.as_str()], CORRUPT].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_truncated_mid_page_is_refused_with_what_to_do() {
    let w = world_with_a_store().await;
    let store = w.store();
    let len = std::fs::metadata(&store).expect("store").len();
    assert!(len > 3 * 4096, "a store of {len} bytes");
    // One and a half pages: the header promises more than the file holds.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&store)
        .expect("open");
    file.set_len(4096 + 2048).expect("truncate");
    drop(file);
    let path = store.display().to_string();
    start_refused(&w, &[&[path.as_str()], CORRUPT].concat());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_orderwatch_is_refused_with_what_to_do() {
    let w = world_with_a_store().await;
    let store = w.store();
    let newer = store::SCHEMA_VERSION + 7;
    store::set_user_version(&store, newer);
    let size = std::fs::metadata(&store).expect("store").len();
    let path = store.display().to_string();
    start_refused(
        &w,
        &[
            path.as_str(),
            &format!("has schema version {newer}, newer than"),
            "upgrade orderwatch",
        ],
    );
    // Refused before anything was written to it.
    assert_eq!(store::user_version(&store), newer);
    assert_eq!(std::fs::metadata(&store).expect("store").len(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_finds_a_damaged_page_the_daemon_would_read_only_later() {
    let w = world_with_a_store().await;
    let store = w.store();
    let len = std::fs::metadata(&store).expect("store").len() as usize;
    assert!(len > 8 * 4096, "a store of {len} bytes");
    // Garbage in the middle: the header and the schema page are intact, so
    // opening the store still works; only reading that page would fail.
    let mut bytes = std::fs::read(&store).expect("store");
    let middle = (len / 4096 / 2) * 4096;
    for (i, b) in bytes[middle..middle + 4096].iter_mut().enumerate() {
        *b = (i * 7919 % 251) as u8;
    }
    std::fs::write(&store, &bytes).expect("damage");
    let out = w.run(&["check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for fragment in [
        "store.path",
        "is damaged",
        "move it aside",
        "restore a backup",
    ] {
        assert!(err.contains(fragment), "{fragment:?} missing: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_never_create_migrate_or_adopt_a_store_that_is_not_theirs() {
    let mut w = World::new().await;
    w.file_sink();
    // A mistyped path: every command says so, and nothing appears there.
    let typo = w.path("orderwatch.dbb");
    w.set("store.path", typo.display().to_string());
    for args in [
        &["events"][..],
        &["deliveries"][..],
        &["redeliver", "--sink", "archive", "--dead"][..],
    ] {
        refused(&w.run(args), 1, &["does not exist", "check [store]"]);
    }
    let out = w.run(&["check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("not there yet"),
        "{}",
        text(&out.stdout)
    );
    assert!(!typo.exists(), "a command created the store");

    // Another application's database: refused by every command, daemon
    // included, and left byte for byte as it was (no WAL, no tables).
    let app = w.path("app.db");
    let conn = rusqlite::Connection::open(&app).expect("app db");
    conn.execute_batch(
        "CREATE TABLE invoices (id INTEGER PRIMARY KEY); INSERT INTO invoices VALUES (7);",
    )
    .expect("app table");
    drop(conn);
    let before = std::fs::read(&app).expect("app db");
    w.set("store.path", app.display().to_string());
    for (args, code) in [
        (&["events"][..], 1),
        (&["check"][..], 2),
        (&["run", "--once"][..], 1),
    ] {
        refused(
            &w.run(args),
            code,
            &["is not an orderwatch store", "app.db"],
        );
    }
    assert_eq!(std::fs::read(&app).expect("app db"), before);
    assert!(!w.path("app.db-wal").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_through_a_symlink_is_refused() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut first = w.spawn_ready().await;
    let link = w.path("link.db");
    std::os::unix::fs::symlink(w.store(), &link).expect("symlink");
    w.set("store.path", link.display().to_string());
    let out = output_within(w.command(&["run"]), Duration::from_secs(30));
    refused(&out, 1, &["in use by another orderwatch daemon"]);
    assert!(first.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&w.file_events()), ["1:pending"], "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_deleted_while_the_daemon_runs_stops_it_with_what_happened() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn_ready().await;
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", w.store().display()));
    }
    w.sim.set_status(1, 11, "issued", ago(1));
    let status = daemon.wait_timeout(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(1),
        "still running:\n{}",
        daemon.log_text()
    );
    assert!(
        daemon.log_text().contains("deleted or replaced"),
        "{}",
        daemon.log_text()
    );
}
