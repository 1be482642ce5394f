//! Appending whole lines to a file orderwatch may share with nobody, and
//! never cutting a byte it did not write.
//!
//! A SIGKILL (or power cut) can interrupt a write half-way, leaving a last
//! line without its newline. That batch was never marked delivered, so it is
//! written again; appending after the fragment would glue it to the next
//! event. So a fragment is cut off, but only when it is orderwatch's own:
//! within a process the appender knows the file's length after its last
//! fsync, and a fragment left by an earlier process is recognised by the
//! start every event line has. Anything else after the last newline (a file
//! that was never an events file, a database, another program's log) is
//! refused with a message, and the file is left exactly as it was.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How every event line starts (see `crate::event`).
pub(super) const LINE_START: &[u8] = b"{\"specversion\":\"1.0\",\"id\":";

/// The events file and what orderwatch knows it wrote to it.
pub(super) struct Appender {
    path: PathBuf,
    open: Option<Opened>,
    /// May cut a torn last line of an earlier run: the daemon's own sinks
    /// only. A guest (`test-sink`) may be looking at a daemon's write in
    /// progress, which a cut would destroy after the daemon synced it.
    cut_torn: bool,
}

struct Opened {
    file: File,
    /// The file's length after this appender's last successful fsync.
    synced: u64,
}

impl Appender {
    pub fn new(path: PathBuf) -> Appender {
        Appender {
            path,
            open: None,
            cut_torn: true,
        }
    }

    /// An appender that never cuts a torn last line: it refuses to append
    /// after one instead (a daemon may be writing it right now).
    pub fn guest(path: PathBuf) -> Appender {
        Appender {
            cut_torn: false,
            ..Appender::new(path)
        }
    }

    /// Appends `buf` (whole lines) and fsyncs. Reopens first when asked
    /// (SIGHUP) or when the path no longer names the open file (rotated,
    /// deleted). On failure nothing of `buf` stays in the file.
    pub fn append(&mut self, buf: &[u8], reopen: bool) -> std::io::Result<()> {
        let stale = match &self.open {
            Some(o) => reopen || !same_file(&self.path, &o.file),
            None => true,
        };
        if stale {
            self.open = None;
            self.open = Some(Opened::open(&self.path, self.cut_torn)?);
        }
        let Some(o) = self.open.as_mut() else {
            return Err(std::io::Error::other("file not open"));
        };
        let before = o.file.metadata()?.len();
        if before != o.synced {
            // Someone else wrote (or truncated) the file since our last
            // fsync: whatever they left must end a line before we append.
            check_tail(&self.path, &o.file, before, false)?;
        }
        let written = o.file.write_all(buf).and_then(|()| o.file.sync_data());
        if let Err(e) = written {
            cut_own(&o.file, before, buf);
            self.open = None;
            return Err(e);
        }
        o.synced = before + buf.len() as u64;
        Ok(())
    }
}

impl Opened {
    /// Opens for appending (created 0640, never world-readable), refusing
    /// what is not a regular file, and deals with a last line without its
    /// newline (see the module docs).
    fn open(path: &Path, cut_torn: bool) -> std::io::Result<Opened> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o640)
            // A FIFO must not block the sink (or `check`) forever.
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        if !file.metadata()?.is_file() {
            return Err(std::io::Error::other(format!(
                "{} is not a regular file; a file sink writes a JSON-lines file",
                path.display()
            )));
        }
        let len = file.metadata()?.len();
        let synced = check_tail(path, &file, len, cut_torn)?;
        Ok(Opened { file, synced })
    }
}

/// What `check` (and the start) can tell about an existing events file
/// without changing it: it is a regular file orderwatch may append to, and
/// does not end in bytes orderwatch did not write.
pub(super) fn inspect(path: &Path) -> Result<(), String> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot be appended to: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot be examined: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file; a file sink writes a JSON-lines file".to_string());
    }
    let end = after_last_newline(&file, meta.len()).map_err(|e| format!("cannot be read: {e}"))?;
    let mut start = vec![0u8; (meta.len() - end).min(LINE_START.len() as u64) as usize];
    file.read_exact_at(&mut start, end)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if end < meta.len() && !is_ours(&start) {
        return Err(format!(
            "does not end with a newline and its last {} bytes were not written by orderwatch; end it with a newline or move it aside",
            meta.len() - end
        ));
    }
    Ok(())
}

/// Whether a fragment starts like an event line orderwatch writes.
fn is_ours(start: &[u8]) -> bool {
    LINE_START.starts_with(start) || start.starts_with(LINE_START)
}

/// Looks at what follows the last newline of the first `len` bytes. Nothing:
/// fine. With `cut_ours`, a fragment of an event line (an interrupted write
/// of an earlier run) is cut off. Anything else is refused. Returns the
/// length the file has afterwards.
fn check_tail(path: &Path, file: &File, len: u64, cut_ours: bool) -> std::io::Result<u64> {
    let end = after_last_newline(file, len)?;
    if end == len {
        return Ok(len);
    }
    let mut start = vec![0u8; (len - end).min(LINE_START.len() as u64) as usize];
    file.read_exact_at(&mut start, end)?;
    if !cut_ours && is_ours(&start) {
        return Err(std::io::Error::other(format!(
            "{} ends in the middle of an event line: the daemon is writing to it, or an earlier \
             run was interrupted (the daemon cuts such a fragment when it next opens the file); \
             not appending now, try again",
            path.display()
        )));
    }
    if cut_ours && is_ours(&start) {
        tracing::warn!(
            file = %path.display(),
            bytes = len - end,
            "cutting a torn last line (an interrupted write) off the events file; its events are written again"
        );
        file.set_len(end)?;
        return Ok(end);
    }
    Err(std::io::Error::other(format!(
        "{} does not end with a newline and its last {} bytes were not written by orderwatch; \
         refusing to append to it or cut it: end it with a newline or move it aside",
        path.display(),
        len - end
    )))
}

/// The offset just after the last newline in the first `len` bytes (0 if none).
fn after_last_newline(file: &File, len: u64) -> std::io::Result<u64> {
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// After a failed write, cuts the file back to `before`, but only if what
/// follows `before` is (a prefix of) `buf`: bytes someone else appended
/// meanwhile are never cut.
fn cut_own(file: &File, before: u64, buf: &[u8]) {
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return;
    };
    if len <= before {
        return;
    }
    let mut tail = vec![0u8; (len - before).min(buf.len() as u64) as usize];
    let read = file.read_exact_at(&mut tail, before).is_ok();
    if read && len - before <= buf.len() as u64 && buf.starts_with(&tail) {
        let _ = file.set_len(before);
    } else {
        tracing::error!(
            "the events file changed under a failed write; leaving it as it is (the batch is retried)"
        );
    }
}

/// Whether `path` still names the open file.
fn same_file(path: &Path, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}
