//! WAL checkpoints off the writing connection.
//!
//! SQLite's automatic checkpoint runs inside the commit that pushes the
//! write-ahead log past 1,000 pages: the writer copies those pages into the
//! database and syncs both files before its commit returns. A large
//! catch-up commits every chunk, so the recorder waited on dozens of
//! checkpoints. Here the writer only wakes a thread of its own, with its own
//! connection, which checkpoints (PASSIVE: never waiting on the writer or a
//! reader) while the writer goes on.
//!
//! If that thread falls behind (or cannot checkpoint), the writer does it
//! itself once the log reaches [`Thresholds::writer_at`] pages, so the log
//! stays bounded either way. When the store is dropped, the thread makes a
//! last checkpoint and closes its connection; the last connection to close
//! syncs and removes the log, as SQLite always does.

use std::os::raw::c_int;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};

use super::Db;
use super::db::classify;
use crate::store::StoreError;

/// When the log (in pages) wakes the checkpointer, and when the writer
/// stops counting on it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    /// Pages written since the last checkpoint: SQLite's own automatic
    /// checkpoint threshold.
    pub wake_at: c_int,
    /// Pages in the log, about 64 MiB with 4 KiB pages. The log restarts
    /// from its beginning only after a checkpoint that copied all of it,
    /// which a checkpoint beside a writer that never pauses cannot do; the
    /// writer's own does, so this also bounds the file.
    pub writer_at: c_int,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            wake_at: 1000,
            writer_at: 16_384,
        }
    }
}

enum Signal {
    Wake,
    Stop,
}

/// The checkpointing thread of a store; dropping it stops the thread after
/// a last checkpoint.
pub(super) struct Checkpointer {
    signal: SyncSender<Signal>,
    thread: Option<JoinHandle<()>>,
    done: Arc<AtomicU64>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("checkpoints", &self.checkpoints())
            .finish()
    }
}

impl Checkpointer {
    /// Starts the thread and hands the writer's commits to it.
    pub(super) fn start(writer: &mut Db, at: Thresholds) -> Result<Checkpointer, StoreError> {
        let path = writer.path.clone();
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&path, flags)
            .map_err(|e| classify(&path, "opening the checkpointing connection", e))?;
        // One signal waiting is enough: a wake-up arriving while one is
        // pending is the same wake-up.
        let (signal, signals) = sync_channel(1);
        let wake = signal.clone();
        let log = Arc::new(LogPages::default());
        let seen = Arc::clone(&log);
        writer
            .conn
            .wal_hook(Some(move |wal: &mut Wal, pages: c_int| {
                if pages >= at.writer_at {
                    // An error here would fail a commit that already
                    // happened, so a busy checkpoint (the thread is at it)
                    // is left to the next commit.
                    let _ = wal.checkpoint();
                } else if seen.uncopied(pages) >= at.wake_at {
                    let _ = wake.try_send(Signal::Wake);
                }
                Ok(())
            }))
            .map_err(|e| classify(&path, "handing checkpoints to their thread", e))?;
        let done = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("wal-checkpoint".into())
            .spawn(move || run(&conn, &signals, &path, &counted, &log))
            .map_err(|e| StoreError::Task(format!("cannot start the checkpointing thread: {e}")))?;
        Ok(Checkpointer {
            signal,
            thread: Some(thread),
            done,
        })
    }

    /// Checkpoints the thread has made.
    pub(super) fn checkpoints(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        // Waits if a wake-up is pending: the thread takes it, then this.
        if self.signal.send(Signal::Stop).is_ok()
            && let Some(thread) = self.thread.take()
        {
            let _ = thread.join();
        }
    }
}

/// The writer's view of the log: how many of its pages the thread has not
/// copied yet, counting from the log's restart when it restarted.
///
/// The log restarts from its first page once a checkpoint copied all of it,
/// so the page count a commit reports can fall. The thread's last count
/// belongs to the old log then and is forgotten; kept, it would hide the
/// new log's first pages from the count until the thread's next checkpoint.
#[derive(Debug, Default)]
struct LogPages {
    /// Pages the thread's last checkpoint found copied.
    copied: AtomicI32,
    /// Pages in the log at the writer's last commit.
    last: AtomicI32,
}

impl LogPages {
    /// The thread checkpointed: `pages` of the current log are copied.
    fn copied(&self, pages: c_int) {
        self.copied.store(pages, Ordering::Relaxed);
    }

    /// A commit left `pages` in the log: how many are not copied yet.
    fn uncopied(&self, pages: c_int) -> c_int {
        if pages < self.last.swap(pages, Ordering::Relaxed) {
            // Restarted: nothing of this log was copied. (Should the thread
            // store a count of the new log meanwhile, this forgets it and
            // the thread is woken early once, which costs one checkpoint.)
            self.copied.store(0, Ordering::Relaxed);
        }
        let copied = self.copied.load(Ordering::Relaxed);
        if pages >= copied {
            pages - copied
        } else {
            pages
        }
    }
}

fn run(
    conn: &Connection,
    signals: &Receiver<Signal>,
    path: &Path,
    done: &AtomicU64,
    log: &LogPages,
) {
    let mut failing = false;
    loop {
        let stop = matches!(signals.recv(), Ok(Signal::Stop) | Err(_));
        match checkpoint(conn) {
            Ok(pages) => {
                log.copied(pages);
                done.fetch_add(1, Ordering::Relaxed);
                failing = false;
            }
            // Said once per outage: the writer checkpoints meanwhile.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(store = %path.display(), error = %e,
                    "cannot checkpoint the write-ahead log; the writer will once it grows");
            }
            Err(_) => {}
        }
        if stop {
            return;
        }
    }
}

/// Copies what it can of the log into the database; the pages of the log
/// copied so far.
fn checkpoint(conn: &Connection) -> rusqlite::Result<c_int> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(2))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::transition::OrderChange;

    fn bytes(path: &Path, suffix: &str) -> u64 {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        std::fs::metadata(file).map(|m| m.len()).unwrap_or(0)
    }

    /// Records `chunks` chunks of 1,000 new orders, one commit each.
    fn record(store: &SqliteStore, chunks: i64) {
        let at = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut db = store.writer.lock().unwrap();
        for c in 0..chunks {
            let changes: Vec<OrderChange> = (c * 1000..(c + 1) * 1000)
                .map(|order_id| OrderChange {
                    order_id,
                    certificate_id: Some(order_id + 1_000_000),
                    status: Arc::from("issued"),
                })
                .collect();
            db.record_window(&changes, at, at, &[]).unwrap();
        }
    }

    #[test]
    fn a_restarted_log_counts_from_its_first_page() {
        let log = LogPages::default();
        log.uncopied(1500);
        log.copied(1500);
        assert_eq!(log.uncopied(1600), 100, "copied pages are not counted");
        // The log restarted after that checkpoint: the old count is gone.
        assert_eq!(log.uncopied(50), 50);
        assert_eq!(log.uncopied(1600), 1600, "all of the new log is uncopied");
        log.copied(1000);
        assert_eq!(log.uncopied(1700), 700);
    }

    #[test]
    fn the_log_is_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ow.db");
        // The writer never checkpoints: whatever reaches the database file
        // was copied there by the thread.
        let at = Thresholds {
            wake_at: 100,
            writer_at: c_int::MAX,
        };
        let store = SqliteStore::open_checkpointing(&path, at).unwrap();
        let before = bytes(&path, "");
        record(&store, 20);
        let checkpointer = store.checkpointer.as_ref().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while checkpointer.checkpoints() == 0 || bytes(&path, "") <= before + 1_000_000 {
            assert!(Instant::now() < deadline, "no checkpoint within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn the_writer_checkpoints_when_the_thread_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ow.db");
        // The thread is never woken; the writer takes over at 200 pages.
        let at = Thresholds {
            wake_at: c_int::MAX,
            writer_at: 200,
        };
        let store = SqliteStore::open_checkpointing(&path, at).unwrap();
        record(&store, 40);
        let (db, wal) = (bytes(&path, ""), bytes(&path, "-wal"));
        assert!(db > 3_000_000, "the database holds the pages: {db} bytes");
        assert!(wal < 2_000_000, "the log stays bounded: {wal} bytes");
        assert_eq!(store.checkpointer.as_ref().unwrap().checkpoints(), 0);
    }

    #[test]
    fn a_dropped_store_leaves_everything_in_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ow.db");
        let store = SqliteStore::open(&path).unwrap();
        record(&store, 5);
        drop(store);
        assert_eq!(
            bytes(&path, "-wal"),
            0,
            "the log was checkpointed and removed"
        );
        let db = Db::open_existing(&path, false).unwrap();
        let count: i64 = db
            .conn
            .query_row("SELECT count(*) FROM transitions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5000);
    }
}
