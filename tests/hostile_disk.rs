//! The disk under the store and the file sink failing or lying: a read-only
//! store directory, a store that turns unwritable while the daemon runs, a
//! full disk under the store and under the events file, a database
//! overwritten with garbage or truncated mid-page, a database from a newer
//! orderwatch, an events directory removed at run time, an unwritable
//! events file, logrotate's `create`, and the modes files are created with.
//!
//! Startup problems are refused (exit 1 for `run`, 2 for `check`) with a
//! message naming the store and what to do. Problems at run time fail the
//! cycle or the delivery with that message, commit nothing half-way, keep
//! the daemon running, and once the disk works again every transition is
//! recorded and delivered exactly once.
//!
//! Read-only and full disks are made with a small tmpfs where `mount` is
//! allowed (root); elsewhere with `chmod` (read-only, as a non-root user),
//! `chattr +i` (root on ext4/xfs/btrfs) or `RLIMIT_FSIZE` on the daemon
//! (a full disk). `ORDERWATCH_TEST_NO_MOUNT=1` forces the fallbacks. A test
//! that has no way to make its fault prints "skipped: ..." and passes.
//!
//! Two daemons on one store: `crash.rs`
//! (`a_second_daemon_on_the_same_store_is_refused_while_the_first_runs`).

mod common;

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{Daemon, World, ago, eventually, ids, read_jsonl, text};
use orderwatch::store::sqlite::Db;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn quiet(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tmpfs mounted on a directory for one test, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. "size=512k" or "ro"); `None`
    /// where mounting is not allowed.
    fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        if std::env::var_os("ORDERWATCH_TEST_NO_MOUNT").is_some() {
            return None;
        }
        std::fs::create_dir_all(dir).expect("mount point");
        let mounted = quiet(
            Command::new("mount")
                .args(["-t", "tmpfs", "-o", options, "tmpfs"])
                .arg(dir),
        );
        mounted.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn remount(&self, options: &str) {
        let ok = quiet(
            Command::new("mount")
                .args(["-o", &format!("remount,{options}")])
                .arg(&self.dir),
        );
        assert!(ok, "cannot remount {} with {options}", self.dir.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        quiet(Command::new("umount").arg("-l").arg(&self.dir));
    }
}

/// `chattr +i` on some paths, undone on drop (so the temp dir can go).
struct Immutable {
    paths: Vec<PathBuf>,
}

impl Immutable {
    /// `None` where the attribute cannot be set (not root, or a file
    /// system without it).
    fn set(paths: &[PathBuf]) -> Option<Immutable> {
        if !is_root() || std::env::var_os("ORDERWATCH_TEST_NO_CHATTR").is_some() {
            return None;
        }
        let ok = quiet(Command::new("chattr").arg("+i").args(paths));
        let guard = Immutable {
            paths: paths.to_vec(),
        };
        if ok { Some(guard) } else { None }
    }

    fn release(&mut self) {
        if !self.paths.is_empty() {
            quiet(Command::new("chattr").arg("-i").args(&self.paths));
            self.paths.clear();
        }
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        self.release();
    }
}

fn skipped(test: &str, why: &str) {
    eprintln!("skipped: {test}: {why}");
}

/// Points `[store] path` of the world's config at `path`. (The world's
/// helpers that rewrite the config must not be called afterwards.)
fn move_store(w: &World, path: &Path) {
    let config = std::fs::read_to_string(&w.config).expect("config");
    let from = format!("path = \"{}\"", w.store().display());
    assert!(config.contains(&from));
    let to = format!("path = \"{}\"", path.display());
    std::fs::write(&w.config, config.replace(&from, &to)).expect("config");
}

fn open(store: &Path) -> Db {
    Db::open(store).expect("open the store")
}

fn cursor(store: &Path) -> Option<DateTime<Utc>> {
    open(store).cursor().expect("cursor")
}

fn recorded(store: &Path) -> u64 {
    open(store).transition_count().expect("count")
}

/// Lines of failed cycles in a log.
fn failed_cycles(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("poll cycle failed"))
        .collect()
}

fn still_running(d: &mut Daemon) -> bool {
    d.wait_timeout(Duration::ZERO).is_none()
}

/// A command that must be refused: `code`, the fragments in stderr, no panic.
fn refused(out: &Output, code: i32, fragments: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for f in fragments {
        assert!(err.contains(f), "{f:?} not in:\n{err}");
    }
}

/// Every id once, in a set (and fails on duplicates).
fn unique(list: Vec<String>) -> HashSet<String> {
    let n = list.len();
    let set: HashSet<String> = list.into_iter().collect();
    assert_eq!(set.len(), n, "duplicates");
    set
}

fn expected_ids(orders: std::ops::Range<i64>, status: &str) -> HashSet<String> {
    orders.map(|o| format!("{o}:{status}")).collect()
}

// ---------------------------------------------------------------- store ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_directory_refuses_the_start_and_says_what_to_do() {
    let test = "a_read_only_store_directory_refuses_the_start_and_says_what_to_do";
    let w = World::new().await;
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
        return skipped(test, "no mount, no chattr, and chmod does not bind root");
    }
    let store = dir.join("orderwatch.db");
    move_store(&w, &store);
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
    let test = "a_store_made_read_only_between_runs_is_refused_until_writable_again";
    let w = World::new().await;
    let dir = w.path("state");
    let Some(disk) = Tmpfs::mount(&dir, "size=8m") else {
        return skipped(test, "mount is not allowed");
    };
    let store = dir.join("orderwatch.db");
    move_store(&w, &store);
    w.sim.set_status(1, 11, "pending", ago(60));
    w.once();
    let before = cursor(&store);
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
    assert_eq!(cursor(&store), before);
    w.once();
    let mut got = ids(&w.stored_events());
    got.sort();
    assert_eq!(got, ["1:issued", "1:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_turning_unwritable_at_run_time_fails_cycles_and_loses_nothing() {
    let test = "a_store_turning_unwritable_at_run_time_fails_cycles_and_loses_nothing";
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn();
    let first = eventually(Duration::from_secs(30), || w.file_events().len() == 1).await;
    assert!(first, "{}", daemon.log_text());
    let store = w.store();
    let Some(mut frozen) = Immutable::set(&db_and_wal(&store)) else {
        return skipped(test, "chattr +i is not available here");
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
    assert!(still_running(&mut daemon), "{log}");
    assert_eq!(ids(&w.file_events()), ["1:pending"]);

    frozen.release();
    let expected = ["1:pending", "1:issued", "2:pending"];
    let recovered = eventually(Duration::from_secs(30), || w.file_events().len() >= 3).await;
    assert!(recovered, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&w.file_events()), expected);
    assert_eq!(recorded(&store), 3);
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
    use common::receiver::{Receiver, Reply, deliveries_json, webhook_toml, write_secret};
    let test = "a_store_turning_unwritable_while_deliveries_finish_keeps_the_daemon_running";
    let rx = Receiver::start().await;
    rx.set_default(Reply::Status(503));
    let mut w = World::new().await;
    let secret = write_secret(w.dir.path());
    w.sink_toml(&webhook_toml(
        "hook",
        &rx.url(),
        &secret,
        "timeout = \"5s\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"300ms\"\ngive_up_after = \"1h\"\nconcurrency = 1\n",
    ));
    w.sim.set_status(1, 11, "pending", ago(30));
    let mut daemon = w.spawn();
    let failing = eventually(Duration::from_secs(30), || rx.deliveries().len() >= 2).await;
    assert!(failing, "{}", daemon.log_text());
    let Some(mut frozen) = Immutable::set(&db_and_wal(&w.store())) else {
        return skipped(test, "chattr +i is not available here");
    };
    // The receiver takes the event, but its delivery cannot be recorded.
    rx.set_default(Reply::Status(200));
    let accepted = eventually(Duration::from_secs(30), || !rx.accepted().is_empty()).await;
    assert!(accepted, "{}", daemon.log_text());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(still_running(&mut daemon), "{}", daemon.log_text());

    frozen.release();
    let recorded = eventually(Duration::from_secs(30), || {
        deliveries_json(&w, &["--sink", "hook", "--state", "delivered"]).len() == 1
    })
    .await;
    assert!(recorded, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
}

/// How the store's disk is made full: a tiny tmpfs, or `RLIMIT_FSIZE` on
/// the daemon (any file it writes stops growing at the limit).
enum FullDisk {
    Tmpfs(Tmpfs),
    FileSizeLimit(u64),
}

impl FullDisk {
    fn new(dir: &Path, bytes: u64) -> FullDisk {
        match Tmpfs::mount(dir, &format!("size={}k", bytes / 1024)) {
            Some(t) => FullDisk::Tmpfs(t),
            None => {
                std::fs::create_dir_all(dir).expect("dir");
                FullDisk::FileSizeLimit(bytes)
            }
        }
    }

    /// Applies the limit to a daemon about to be spawned.
    fn apply(&self, cmd: &mut Command) {
        if let FullDisk::FileSizeLimit(bytes) = *self {
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    // Over the limit a write fails with EFBIG instead of
                    // killing the process (an ignored signal survives exec).
                    libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                    let mut lim = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_FSIZE, &mut lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    lim.rlim_cur = bytes.min(lim.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }

    /// Makes room: a bigger tmpfs, or no limit for the running daemon.
    fn grow(&self, daemon: &Daemon) {
        match self {
            FullDisk::Tmpfs(t) => t.remount("size=256m"),
            FullDisk::FileSizeLimit(_) => {
                let mut lim = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // SAFETY: valid pointers to rlimit structs.
                unsafe {
                    assert_eq!(
                        libc::prlimit(daemon.pid(), libc::RLIMIT_FSIZE, std::ptr::null(), &mut lim),
                        0
                    );
                    lim.rlim_cur = lim.rlim_max;
                    assert_eq!(
                        libc::prlimit(daemon.pid(), libc::RLIMIT_FSIZE, &lim, std::ptr::null_mut()),
                        0,
                        "{}",
                        std::io::Error::last_os_error()
                    );
                }
            }
        }
    }

    /// What the daemon's message says about the cause.
    fn cause(&self) -> &'static str {
        match self {
            FullDisk::Tmpfs(_) => "the disk is full; free space",
            // SQLite reports EFBIG as an I/O error, not as a full disk.
            FullDisk::FileSizeLimit(_) => "disk I/O error",
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_store_commits_nothing_half_way_and_recovers_once_space_is_freed() {
    const ORDERS: i64 = 10_000;
    let mut w = World::new().await;
    w.file_sink();
    let dir = w.path("state");
    let disk = FullDisk::new(&dir, 512 * 1024);
    let store = dir.join("orderwatch.db");
    move_store(&w, &store);
    w.sim.set_status(1, 11, "pending", ago(60));
    w.once();
    let before = cursor(&store);
    // Far more than the disk has room for, all in one window.
    w.sim.bulk_insert(1000, ORDERS as usize, "issued", ago(5));

    let mut daemon = w.spawn_with(&["run"], |c| disk.apply(c));
    let failing = eventually(Duration::from_secs(30), || {
        failed_cycles(&daemon.log_text()).len() >= 2
    })
    .await;
    let log = daemon.log_text();
    assert!(failing, "{log}");
    for line in failed_cycles(&log) {
        assert!(line.contains("code=store"), "{line}");
        assert!(line.contains(&store.display().to_string()), "{line}");
        assert!(line.contains(disk.cause()), "{line}");
    }
    assert!(still_running(&mut daemon), "{log}");
    // Not one row of the failed window, and the cursor where it was.
    assert_eq!(recorded(&store), 1);
    assert_eq!(cursor(&store), before);
    assert_eq!(ids(&w.file_events()), ["1:pending"]);

    disk.grow(&daemon);
    let all = eventually(Duration::from_secs(60), || {
        w.file_events().len() as i64 > ORDERS
    })
    .await;
    assert!(all, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(30)).success());
    let mut expected = expected_ids(1000..1000 + ORDERS, "issued");
    expected.insert("1:pending".into());
    assert_eq!(unique(ids(&w.file_events())), expected);
    assert_eq!(recorded(&store), ORDERS as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_events_file_keeps_events_pending_without_a_torn_line() {
    const ORDERS: i64 = 300;
    let mut w = World::new().await;
    let out_dir = w.path("out");
    let events = out_dir.join("events.jsonl");
    let filler = out_dir.join("filler");
    let limit = 4 << 20;
    let disk = FullDisk::new(&out_dir, 256 * 1024);
    match &disk {
        FullDisk::Tmpfs(_) => fill(&filler),
        // The daemon may not write the events file past `limit`; the store
        // stays far below it. Start the file with that many whole lines.
        FullDisk::FileSizeLimit(_) => prefill(&events, limit),
    }
    let disk = match disk {
        FullDisk::FileSizeLimit(_) => FullDisk::FileSizeLimit(limit),
        t => t,
    };
    let before = read_jsonl(&events).len();
    w.sink_toml(&format!(
        "[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\n",
        events.display()
    ));
    w.sim.bulk_insert(1, ORDERS as usize, "pending", ago(5));
    let mut daemon = w.spawn_with(&["run"], |c| disk.apply(c));

    let failing = eventually(Duration::from_secs(30), || {
        daemon
            .log_text()
            .lines()
            .filter(|l| l.contains("delivery failed; will retry"))
            .count()
            >= 2
    })
    .await;
    let log = daemon.log_text();
    assert!(failing, "{log}");
    assert!(
        log.contains(&format!("cannot append to {}", events.display())),
        "{log}"
    );
    assert!(
        log.contains("No space left on device") || log.contains("File too large"),
        "{log}"
    );
    assert!(still_running(&mut daemon), "{log}");
    // Whole lines only (read_jsonl fails on a torn one), none of them new.
    assert_eq!(read_jsonl(&events).len(), before);
    assert_eq!(recorded(&w.store()), ORDERS as u64);
    let pending =
        common::receiver::deliveries_json(&w, &["--sink", "archive", "--state", "pending"]);
    assert_eq!(pending.len() as i64, ORDERS);

    if matches!(disk, FullDisk::Tmpfs(_)) {
        std::fs::remove_file(&filler).expect("free space");
    } else {
        disk.grow(&daemon);
    }
    let written = eventually(Duration::from_secs(30), || {
        read_jsonl(&events).len() as i64 == before as i64 + ORDERS
    })
    .await;
    assert!(written, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    let new: Vec<String> = ids(&read_jsonl(&events)).into_iter().skip(before).collect();
    assert_eq!(unique(new), expected_ids(1..1 + ORDERS, "pending"));
}

/// Fills the file system of `path` until a write fails.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let block = vec![0u8; 4096];
    while f.write_all(&block).and_then(|()| f.sync_data()).is_ok() {}
}

/// Writes whole JSON lines of old events to `path` until it holds `bytes`.
fn prefill(path: &Path, bytes: u64) {
    let mut text = String::new();
    let mut n = 0u64;
    while (text.len() as u64) < bytes {
        text.push_str(&format!(
            "{{\"id\":\"0:old-{n}\",\"pad\":\"{}\"}}\n",
            "x".repeat(200)
        ));
        n += 1;
    }
    std::fs::write(path, text).expect("prefill");
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
    let newer = orderwatch::store::SCHEMA_VERSION + 7;
    {
        let conn = rusqlite::Connection::open(&store).expect("open");
        conn.pragma_update(None, "user_version", newer)
            .expect("set version");
    }
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
    let conn = rusqlite::Connection::open(&store).expect("open");
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, newer);
    assert_eq!(std::fs::metadata(&store).expect("store").len(), size);
}

// ------------------------------------------------------------ file sink ---

/// A world with a file sink writing to `out/events.jsonl`.
async fn world_with_events_dir() -> (World, PathBuf) {
    let mut w = World::new().await;
    let dir = w.path("out");
    std::fs::create_dir(&dir).expect("dir");
    let events = dir.join("events.jsonl");
    w.sink_toml(&format!(
        "[[sinks]]\nname = \"archive\"\ntype = \"file\"\npath = \"{}\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"500ms\"\n",
        events.display()
    ));
    (w, events)
}

/// Waits until the log has `n` more failed deliveries than `from`.
async fn delivery_failures(daemon: &Daemon, n: usize) -> String {
    let count = |log: &str| {
        log.lines()
            .filter(|l| l.contains("delivery failed; will retry"))
            .count()
    };
    let ok = eventually(Duration::from_secs(30), || count(&daemon.log_text()) >= n).await;
    let log = daemon.log_text();
    assert!(ok, "fewer than {n} failed deliveries:\n{log}");
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_events_directory_removed_at_run_time_keeps_events_pending_until_it_is_back() {
    let (w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn();
    assert!(eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 1).await);

    std::fs::remove_dir_all(events.parent().expect("dir")).expect("remove");
    w.sim.set_status(1, 11, "issued", ago(1));
    w.sim.set_status(2, 12, "pending", ago(1));
    let log = delivery_failures(&daemon, 2).await;
    assert!(
        log.contains(&format!("cannot append to {}", events.display())),
        "{log}"
    );
    assert!(log.contains("No such file or directory"), "{log}");
    assert!(still_running(&mut daemon), "{log}");
    let pending =
        common::receiver::deliveries_json(&w, &["--sink", "archive", "--state", "pending"]);
    assert_eq!(pending.len(), 2, "{pending:#?}");

    std::fs::create_dir(events.parent().expect("dir")).expect("recreate");
    let back = eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 2).await;
    assert!(back, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&events)), ["1:issued", "2:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_events_file_keeps_events_pending_until_it_is_writable() {
    let (w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn();
    assert!(eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 1).await);

    // Root writes through any mode: make the file immutable. Elsewhere a
    // read-only file takes the old one's place.
    let mut frozen = Immutable::set(std::slice::from_ref(&events));
    if frozen.is_none() {
        let old = events.with_extension("old");
        std::fs::rename(&events, &old).expect("move");
        std::fs::copy(&old, &events).expect("copy");
        std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        if is_root() {
            return skipped(
                "an_unwritable_events_file_keeps_events_pending_until_it_is_writable",
                "neither chattr nor chmod can stop root here",
            );
        }
    }
    w.sim.set_status(1, 11, "issued", ago(1));
    let log = delivery_failures(&daemon, 2).await;
    assert!(
        log.contains(&format!("cannot append to {}", events.display())),
        "{log}"
    );
    assert!(
        log.contains("Operation not permitted") || log.contains("Permission denied"),
        "{log}"
    );
    assert!(still_running(&mut daemon), "{log}");
    assert_eq!(ids(&read_jsonl(&events)), ["1:pending"]);

    match frozen.as_mut() {
        Some(f) => f.release(),
        None => std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o640))
            .expect("chmod"),
    }
    let written = eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 2).await;
    assert!(written, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&events)), ["1:pending", "1:issued"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_create_without_sighup_sends_new_events_to_the_new_file() {
    let (w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn();
    assert!(eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 1).await);

    // logrotate's `create`: move the file away, create an empty one.
    let rotated = events.with_extension("jsonl.1");
    std::fs::rename(&events, &rotated).expect("rotate");
    std::fs::File::create(&events).expect("create");
    w.sim.set_status(1, 11, "issued", ago(1));
    w.sim.set_status(2, 12, "pending", ago(1));
    let moved_on = eventually(Duration::from_secs(30), || read_jsonl(&events).len() == 2).await;
    assert!(moved_on, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&rotated)), ["1:pending"]);
    assert_eq!(ids(&read_jsonl(&events)), ["1:issued", "2:pending"]);
}

// ---------------------------------------------------------------- modes ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_its_wal_and_shm_and_the_events_file_are_never_world_readable() {
    let mut w = World::new().await;
    w.file_sink();
    w.sim.set_status(1, 11, "pending", ago(60));
    // With umask 000 the modes are exactly what orderwatch asks for.
    let mut daemon = w.spawn_with(&["run"], |c| {
        // SAFETY: umask is async-signal-safe.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
    });
    assert!(eventually(Duration::from_secs(30), || w.file_events().len() == 1).await);
    let store = w.store().display().to_string();
    let mode = |p: &str| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    // The WAL and shared-memory files exist while the daemon runs.
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let p = format!("{store}{suffix}");
        assert_eq!(mode(&p), 0o600, "{p}: {:o}", mode(&p));
    }
    let events = w.events_file().display().to_string();
    assert_eq!(mode(&events), 0o640, "{events}: {:o}", mode(&events));
    assert!(daemon.terminate(Duration::from_secs(20)).success());
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
    let err = common::text(&out.stderr);
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
