//! The disk under the file sink failing: the events directory removed at
//! run time, an unwritable events file, a full disk, logrotate's `create`
//! without SIGHUP; and the modes orderwatch creates its files with.
//!
//! A failed append is logged with its cause and retried with backoff; the
//! events stay pending in the ledger, the daemon keeps running, the file
//! holds whole lines only, and once the disk works again every event is
//! written once. Faults are made as `support::disk` describes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::support::disk::{FullDisk, Immutable, fill, prefill};
use crate::support::{
    Daemon, Sink, World, ago, event_ids, eventually, ids, is_root, read_jsonl, read_jsonl_so_far,
    skip, store, unique,
};

/// A file sink `archive` writing to `events`, retrying every 100-500 ms.
fn archive(events: &std::path::Path) -> Sink {
    Sink::file("archive", events)
        .with("backoff_initial", "100ms")
        .with("backoff_max", "500ms")
}

/// A world with a file sink writing to `out/events.jsonl`.
async fn world_with_events_dir() -> (World, PathBuf) {
    let mut w = World::new().await;
    let dir = w.path("out");
    std::fs::create_dir(&dir).expect("dir");
    let events = dir.join("events.jsonl");
    w.add_sink(archive(&events));
    (w, events)
}

/// Waits until the log shows at least `n` failed deliveries; returns it.
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
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(Duration::from_secs(30), || read_jsonl_so_far(&events).len()
            == 1)
        .await
    );

    std::fs::remove_dir_all(events.parent().expect("dir")).expect("remove");
    w.sim.set_status(1, 11, "issued", ago(1));
    w.sim.set_status(2, 12, "pending", ago(1));
    let log = delivery_failures(&daemon, 2).await;
    assert!(
        log.contains(&format!("cannot append to {}", events.display())),
        "{log}"
    );
    assert!(log.contains("No such file or directory"), "{log}");
    assert!(daemon.is_running(), "{log}");
    let pending = w.deliveries(&["--sink", "archive", "--state", "pending"]);
    assert_eq!(pending.len(), 2, "{pending:#?}");

    std::fs::create_dir(events.parent().expect("dir")).expect("recreate");
    let back = eventually(Duration::from_secs(30), || {
        read_jsonl_so_far(&events).len() == 2
    })
    .await;
    assert!(back, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&events)), ["1:issued", "2:pending"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_events_file_keeps_events_pending_until_it_is_writable() {
    let (w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(Duration::from_secs(30), || read_jsonl_so_far(&events).len()
            == 1)
        .await
    );

    // Root writes through any mode: make the file immutable. Elsewhere a
    // read-only file takes the old one's place.
    let mut frozen = Immutable::set(std::slice::from_ref(&events));
    if frozen.is_none() {
        let old = events.with_extension("old");
        std::fs::rename(&events, &old).expect("move");
        std::fs::copy(&old, &events).expect("copy");
        std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o444)).expect("chmod");
        if is_root() {
            return skip("ROOT", "neither chattr nor chmod can stop root here");
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
    assert!(daemon.is_running(), "{log}");
    assert_eq!(ids(&read_jsonl(&events)), ["1:pending"]);

    match frozen.as_mut() {
        Some(f) => f.release(),
        None => std::fs::set_permissions(&events, std::fs::Permissions::from_mode(0o640))
            .expect("chmod"),
    }
    let written = eventually(Duration::from_secs(30), || {
        read_jsonl_so_far(&events).len() == 2
    })
    .await;
    assert!(written, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&events)), ["1:pending", "1:issued"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_events_file_keeps_events_pending_without_a_torn_line() {
    const ORDERS: i64 = 300;
    let mut w = World::new().await;
    let out_dir = w.path("out");
    let events = out_dir.join("events.jsonl");
    let filler = out_dir.join("filler");
    let limit = 4 << 20;
    // Room for a few KiB: the one batch of 300 events (~100 KiB) is written
    // in part before the disk is full, so each attempt has to cut its
    // partial batch off again. (With no room at all the first byte would
    // fail and there would be nothing to cut.)
    let room = 8 * 1024;
    let disk = FullDisk::new(&out_dir, 256 * 1024);
    match &disk {
        FullDisk::Tmpfs(_) => {
            fill(&filler);
            let full = std::fs::metadata(&filler).expect("filler").len();
            let file = std::fs::OpenOptions::new().write(true).open(&filler);
            file.and_then(|f| f.set_len(full - room))
                .expect("free a little space");
        }
        // The daemon may not write the events file past `limit`; the store
        // stays far below it. Start the file with whole lines up to `room`
        // below the limit.
        FullDisk::FileSizeLimit(_) => prefill(&events, limit - room),
    }
    let disk = match disk {
        FullDisk::FileSizeLimit(_) => FullDisk::FileSizeLimit(limit),
        t => t,
    };
    let original = std::fs::read(&events).unwrap_or_default();
    let before = read_jsonl(&events).len();
    w.add_sink(archive(&events));
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
    assert!(daemon.is_running(), "{log}");
    // Between attempts the file is exactly what it was: whole lines only,
    // none of them new. A read can land inside an attempt, between its
    // partial write and the cut, so wait for a moment between attempts.
    let intact = eventually(Duration::from_secs(10), || {
        std::fs::read(&events).unwrap_or_default() == original
    })
    .await;
    assert!(
        intact,
        "a partial batch stayed in the file:\n{}",
        daemon.log_text()
    );
    assert_eq!(store::transition_count(&w.store()), ORDERS as u64);
    let pending = w.deliveries(&["--sink", "archive", "--state", "pending"]);
    assert_eq!(pending.len() as i64, ORDERS);

    if matches!(disk, FullDisk::Tmpfs(_)) {
        std::fs::remove_file(&filler).expect("free space");
    } else {
        disk.grow(&daemon);
    }
    let written = eventually(Duration::from_secs(30), || {
        read_jsonl_so_far(&events).len() as i64 == before as i64 + ORDERS
    })
    .await;
    assert!(written, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    let new: Vec<String> = ids(&read_jsonl(&events)).into_iter().skip(before).collect();
    assert_eq!(unique(new), event_ids(1..1 + ORDERS, "pending"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_create_without_sighup_sends_new_events_to_the_new_file() {
    let (w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    let mut daemon = w.spawn_ready().await;
    assert!(
        eventually(Duration::from_secs(30), || read_jsonl_so_far(&events).len()
            == 1)
        .await
    );

    // logrotate's `create`: move the file away, create an empty one.
    let rotated = events.with_extension("jsonl.1");
    std::fs::rename(&events, &rotated).expect("rotate");
    std::fs::File::create(&events).expect("create");
    w.sim.set_status(1, 11, "issued", ago(1));
    w.sim.set_status(2, 12, "pending", ago(1));
    let moved_on = eventually(Duration::from_secs(30), || {
        read_jsonl_so_far(&events).len() == 2
    })
    .await;
    assert!(moved_on, "{}", daemon.log_text());
    assert!(daemon.terminate(Duration::from_secs(20)).success());
    assert_eq!(ids(&read_jsonl(&rotated)), ["1:pending"]);
    assert_eq!(ids(&read_jsonl(&events)), ["1:issued", "2:pending"]);
}

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
async fn two_writers_on_one_file_or_a_sink_on_the_store_are_refused_before_anything_is_written() {
    // Two sinks on one file, the second through a symlink.
    let (mut w, events) = world_with_events_dir().await;
    w.sim.set_status(1, 11, "pending", ago(60));
    std::fs::write(&events, "").expect("events file");
    let link = w.path("link.jsonl");
    std::os::unix::fs::symlink(&events, &link).expect("symlink");
    w.add_sink(Sink::file("copy", &link));
    for args in [&["check"][..], &["run", "--once"][..]] {
        let out = w.run(args);
        let err = crate::support::text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("sinks[1] (\"copy\").path"), "{err}");
        assert!(
            err.contains("the same file as sinks[0] (\"archive\").path"),
            "{err}"
        );
    }
    assert!(w.sim.queries().is_empty(), "nothing was polled");
    assert_eq!(std::fs::read(&events).expect("events"), b"");

    // A sink writing into the store, or into the WAL beside it.
    for suffix in ["", "-wal"] {
        let mut w = World::new().await;
        w.file_sink();
        w.sim.set_status(1, 11, "pending", ago(60));
        w.once();
        let store = w.store();
        let before = std::fs::read(&store).expect("store");
        let target = PathBuf::from(format!("{}{suffix}", store.display()));
        w.add_sink(Sink::file("oops", &target));
        for args in [&["check"][..], &["run", "--once"][..]] {
            let out = w.run(args);
            let err = crate::support::text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{suffix} {args:?}: {err}");
            assert!(err.contains("sinks[1] (\"oops\").path"), "{err}");
            assert!(err.contains("the same file as store.path"), "{err}");
        }
        assert_eq!(std::fs::read(&store).expect("store"), before);
    }
}
