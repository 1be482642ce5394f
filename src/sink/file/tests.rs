//! The events file: private modes, rotation, torn lines of our own cut off,
//! and files orderwatch did not write (no final newline, a FIFO, a database)
//! refused and left exactly as they were.

use std::os::unix::fs::PermissionsExt;

use super::appender::{Appender, LINE_START};
use super::*;
use crate::store::OutboxEntry;

/// A line as orderwatch writes it (the start is what matters here).
fn line(id: &str) -> Vec<u8> {
    let mut l = LINE_START.to_vec();
    l.extend_from_slice(format!("\"{id}\"}}\n").as_bytes());
    l
}

#[test]
fn appends_create_private_files_and_follow_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut a = Appender::new(path.clone());
    a.append(&line("1"), false).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "world bits set: {mode:o}");
    // logrotate moves the file away: the next append starts a new one.
    std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
    a.append(&line("2"), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), line("2"));
    assert_eq!(
        std::fs::read(dir.path().join("events.jsonl.1")).unwrap(),
        line("1")
    );
}

/// `test-sink` beside a daemon in the middle of a 5 MB batch sees a file
/// that ends mid-line: it must neither cut it (the daemon's write goes on,
/// and is then synced and marked delivered) nor append after it.
#[test]
fn a_guest_never_cuts_a_torn_line_it_may_be_watching_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut being_written = line("1");
    being_written.extend_from_slice(LINE_START);
    being_written.extend_from_slice(b"\"2\"");
    std::fs::write(&path, &being_written).unwrap();
    let err = Appender::guest(path.clone())
        .append(&line("test"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("in the middle of an event line"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), being_written, "untouched");
    // Once the line is whole, the guest appends after it.
    std::fs::write(&path, [line("1"), line("2")].concat()).unwrap();
    Appender::guest(path.clone())
        .append(&line("test"), false)
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [line("1"), line("2"), line("test")].concat()
    );
}

#[test]
fn a_torn_line_of_our_own_is_cut_off_before_appending() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    // A complete line, then a write of ours interrupted half-way (long
    // enough to span several read chunks).
    let mut torn = line("1");
    torn.extend_from_slice(LINE_START);
    torn.extend_from_slice("x".repeat(5000).as_bytes());
    std::fs::write(&path, &torn).unwrap();
    Appender::new(path.clone())
        .append(&line("2"), false)
        .unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        [line("1"), line("2")].concat()
    );
    // Interrupted even before the whole line start was written.
    std::fs::write(&path, &LINE_START[..5]).unwrap();
    Appender::new(path.clone())
        .append(&line("3"), false)
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), line("3"));
}

#[test]
fn a_file_without_a_final_newline_that_we_did_not_write_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    let foreign = "x".repeat(10_000);
    std::fs::write(&path, &foreign).unwrap();
    let err = Appender::new(path.clone())
        .append(&line("1"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not written by orderwatch"), "{err}");
    assert!(err.contains("10000 bytes"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);
    let err = writable(&path).unwrap_err();
    assert!(err.contains("move it aside"), "{err}");

    // Through a symlink, the target is just as safe.
    let link = dir.path().join("events.jsonl");
    std::os::unix::fs::symlink(&path, &link).unwrap();
    assert!(Appender::new(link).append(&line("1"), false).is_err());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), foreign);

    // Ending it with a newline is enough to be appended to.
    std::fs::write(&path, format!("{foreign}\n")).unwrap();
    Appender::new(path.clone())
        .append(&line("1"), false)
        .unwrap();
    assert!(writable(&path).is_ok());
}

#[test]
fn a_sqlite_database_as_the_events_path_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orderwatch.db");
    crate::store::sqlite::SqliteStore::open(&path).unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(
        Appender::new(path.clone())
            .append(&line("1"), false)
            .is_err()
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn another_writers_partial_line_is_not_cut_and_not_appended_to() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut a = Appender::new(path.clone());
    a.append(&line("1"), false).unwrap();
    // Someone else appends half a line to the same file.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"from\": \"someone else").unwrap();
    let err = a.append(&line("2"), false).unwrap_err().to_string();
    assert!(err.contains("not written by orderwatch"), "{err}");
    let mut expected = line("1");
    expected.extend_from_slice(b"{\"from\": \"someone else");
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.fifo");
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid C string; mkfifo has no other preconditions.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let err = writable(&path).unwrap_err();
    assert!(
        err.contains("not a regular file") || err.contains("cannot be appended to"),
        "{err}"
    );
    assert!(Appender::new(path).append(&line("1"), false).is_err());
}

#[test]
fn a_file_sink_needs_an_existing_writable_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert!(writable(&dir.path().join("events.jsonl")).is_ok());
    let err = writable(&dir.path().join("missing").join("events.jsonl")).unwrap_err();
    assert!(err.contains("does not exist"), "{err}");
    // A directory where the file should be cannot be appended to.
    let err = writable(dir.path()).unwrap_err();
    assert!(err.contains("cannot be appended to"), "{err}");
}

#[test]
fn a_missing_directory_is_an_error_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("events.jsonl");
    let mut a = Appender::new(path.clone());
    assert!(a.append(&line("1"), false).is_err());
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    a.append(&line("1"), false).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), line("1"));
}

/// `n` events, seqs from `first`.
fn entries(first: i64, n: usize) -> Batch {
    Arc::new(
        (first..first + n as i64)
            .map(OutboxEntry::untried)
            .collect(),
    )
}

#[tokio::test]
async fn a_backlog_reuses_its_line_buffer_and_an_idle_sink_holds_none() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let sink = FileSink {
        path: path.clone(),
        file: Arc::new(Mutex::new(Appender::new(path.clone()))),
        reopen: Arc::default(),
        lines: Arc::new(Lines::new("http://127.0.0.1/services/v2", BATCH)),
    };
    let held = || sink.lines.kept_capacity();
    let delivered = |outcomes: Vec<Outcome>| outcomes.iter().all(|o| *o == Outcome::Delivered);

    assert!(delivered(sink.deliver(entries(1, BATCH)).await));
    let kept = held();
    assert!(
        kept >= BATCH * 300,
        "a full batch's buffer is kept: {kept} bytes"
    );
    assert!(delivered(
        sink.deliver(entries(1 + BATCH as i64, BATCH)).await
    ));
    assert_eq!(held(), kept, "the next full batch reused it");
    // The backlog is gone: a short batch frees the buffer.
    assert!(delivered(
        sink.deliver(entries(1 + 2 * BATCH as i64, 10)).await
    ));
    assert_eq!(held(), 0, "the idle sink holds no buffer");

    // Every event once, in order: nothing of an earlier batch written twice.
    let text = std::fs::read_to_string(&path).unwrap();
    let seqs: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(seqs.len(), 2 * BATCH + 10);
    let expected: Vec<String> = (1..=(2 * BATCH + 10) as i64)
        .map(|seq| format!("{}:issued", seq + 1000))
        .collect();
    assert_eq!(seqs, expected);
}
