//! `type = "file"`: CloudEvents as JSON lines, appended and fsync'd before a
//! delivery counts as done.
//!
//! The file is reopened on SIGHUP and whenever the path no longer names the
//! open file (moved by logrotate, deleted), so rotation needs no
//! `copytruncate`. A batch that fails half-way is cut back off the file, so a
//! retry never leaves a torn line behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;

use super::kind::{BuildContext, BuildError, Kind, Outcome, Sink, SinkSettings, written};
use crate::config::field::{dir_writable, parent_dir};
use crate::config::table::SinkTable;
use crate::event::EventWriter;
use crate::store::OutboxEntry;

pub static KIND: Kind = Kind {
    name: "file",
    parse,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {
    path: Option<PathBuf>,
}

#[derive(Debug)]
struct Settings {
    path: PathBuf,
}

fn parse(table: &mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>> {
    let keys: Keys = table.keys()?;
    match keys.path {
        None => {
            table.problem(
                "path",
                "missing; a file sink needs the path of its JSON-lines file",
            );
            None
        }
        Some(p) if p.as_os_str().is_empty() || p.file_name().is_none() => {
            table.problem("path", format!("{p:?} is not a file path"));
            None
        }
        Some(path) => Some(Arc::new(Settings { path })),
    }
}

impl SinkSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn in_order(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn files(&self) -> Vec<&Path> {
        vec![&self.path]
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError> {
        writable(&self.path).map_err(|e| {
            BuildError::key(
                "path",
                format!("{:?}: {e}", self.path.display().to_string()),
            )
        })?;
        Ok(Arc::new(FileSink {
            path: self.path.clone(),
            source: ctx.source.to_string(),
            file: Arc::new(Mutex::new(None)),
            reopen: Arc::new(AtomicBool::new(false)),
        }))
    }
}

struct FileSink {
    path: PathBuf,
    source: String,
    file: Arc<Mutex<Option<File>>>,
    reopen: Arc<AtomicBool>,
}

/// The file can be appended to (or created in its directory). Creates
/// nothing: a probe file is removed again.
fn writable(path: &Path) -> Result<(), String> {
    if path.exists() {
        return std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .map_err(|e| format!("cannot be appended to: {e}"));
    }
    dir_writable(parent_dir(path))
}

/// Opens for appending; new files are created 0640, never world-readable.
/// A torn last line is cut off first (see [`cut_torn_tail`]).
fn open(path: &PathBuf) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o640)
        .open(path)?;
    cut_torn_tail(&file)?;
    Ok(file)
}

/// A SIGKILL (or power cut) can interrupt a `write` half-way, leaving a last
/// line without its newline. That batch was never marked delivered, so it is
/// written again; appending after the fragment would glue it to the next
/// event and leave a line no reader can parse. Every complete line ends in
/// `\n`, so everything after the last newline is such a fragment: cut it off.
fn cut_torn_tail(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.read_exact_at(part, start)?;
        if let Some(i) = part.iter().rposition(|b| *b == b'\n') {
            end = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    if end < len {
        tracing::warn!(
            bytes = len - end,
            "cutting a torn last line (an interrupted write) off the events file; its events are written again"
        );
        file.set_len(end)?;
    }
    Ok(())
}

/// Whether `path` still names the open file.
fn same_file(path: &PathBuf, file: &File) -> bool {
    match (std::fs::metadata(path), file.metadata()) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn append(
    path: &PathBuf,
    slot: &mut Option<File>,
    reopen: bool,
    buf: &[u8],
) -> std::io::Result<()> {
    let stale = match slot.as_ref() {
        Some(f) => reopen || !same_file(path, f),
        None => true,
    };
    if stale {
        *slot = None;
        *slot = Some(open(path)?);
    }
    let Some(file) = slot.as_mut() else {
        return Err(std::io::Error::other("file not open"));
    };
    let before = file.metadata()?.len();
    let written = file.write_all(buf).and_then(|()| file.sync_data());
    if let Err(e) = written {
        // Cut a partial batch off again; the whole batch is retried.
        let _ = file.set_len(before);
        *slot = None;
        return Err(e);
    }
    Ok(())
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: Vec<OutboxEntry>) -> Vec<Outcome> {
        let n = batch.len();
        let path = self.path.clone();
        let file = Arc::clone(&self.file);
        let source = self.source.clone();
        let reopen = self.reopen.swap(false, Ordering::SeqCst);
        let result = tokio::task::spawn_blocking(move || {
            let mut buf = Vec::with_capacity(batch.len() * 340);
            let mut events = EventWriter::new(&source);
            for e in &batch {
                events.write(&mut buf, &e.transition);
                buf.push(b'\n');
            }
            let mut slot = file.lock().unwrap_or_else(|e| e.into_inner());
            append(&path, &mut slot, reopen, &buf)
        })
        .await;
        vec![written(result, &format!("append to {}", self.path.display())); n]
    }

    /// Large batches: one write and one fsync per batch is what makes a
    /// big catch-up cheap (16k events are about 5 MB).
    fn batch_size(&self) -> usize {
        16_384
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn appends_create_private_files_and_follow_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let mut slot = None;
        append(&path, &mut slot, false, b"one\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o007, 0, "world bits set: {mode:o}");
        // logrotate moves the file away: the next append starts a new one.
        std::fs::rename(&path, dir.path().join("events.jsonl.1")).unwrap();
        append(&path, &mut slot, false, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two\n");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("events.jsonl.1")).unwrap(),
            "one\n"
        );
    }

    #[test]
    fn a_torn_last_line_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        // A complete line, then a write interrupted half-way.
        let long = "x".repeat(5000);
        std::fs::write(&path, format!("one\n{{\"id\":\"{long}")).unwrap();
        let mut slot = None;
        append(&path, &mut slot, false, b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        // A fragment and no complete line at all: the file starts over.
        std::fs::write(&path, long.as_bytes()).unwrap();
        let mut slot = None;
        append(&path, &mut slot, false, b"three\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
        // Whole lines are left alone.
        let mut slot = None;
        append(&path, &mut slot, false, b"four\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\nfour\n");
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
        let mut slot = None;
        assert!(append(&path, &mut slot, false, b"x\n").is_err());
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        append(&path, &mut slot, false, b"x\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "x\n");
    }
}
