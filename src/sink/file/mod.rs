//! `type = "file"`: CloudEvents as JSON lines, appended and fsync'd before a
//! delivery counts as done.
//!
//! The file is reopened on SIGHUP and whenever the path no longer names the
//! open file (moved by logrotate, deleted), so rotation needs no
//! `copytruncate`. A batch that fails half-way is cut back off the file, so a
//! retry never leaves a torn line behind; bytes orderwatch did not write are
//! never cut (see `appender.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Deserialize;

mod appender;
#[cfg(test)]
mod tests;

use appender::Appender;

use super::kind::{
    Batch, BuildContext, BuildError, Kind, Message, Outcome, Sent, Sink, SinkSettings, written,
};
use super::lines::Lines;
use crate::config::field::{dir_writable, parent_dir};
use crate::config::table::SinkTable;

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
            file: Arc::new(Mutex::new(if ctx.owner {
                Appender::new(self.path.clone())
            } else {
                Appender::guest(self.path.clone())
            })),
            reopen: Arc::new(AtomicBool::new(false)),
            lines: Arc::new(Lines::new(ctx.source, BATCH)),
        }))
    }
}

struct FileSink {
    path: PathBuf,
    file: Arc<Mutex<Appender>>,
    reopen: Arc<AtomicBool>,
    /// The rendered lines of the last full batch, reused by the next one.
    lines: Arc<Lines>,
}

/// Events per batch.
const BATCH: usize = 16_384;

/// The file can be appended to (or created in its directory). Creates
/// nothing: a probe file is removed again.
fn writable(path: &Path) -> Result<(), String> {
    if path.exists() {
        return appender::inspect(path);
    }
    dir_writable(parent_dir(path))
}

#[async_trait]
impl Sink for FileSink {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let n = batch.len();
        let file = Arc::clone(&self.file);
        let reopen = self.reopen.swap(false, Ordering::SeqCst);
        let lines = Arc::clone(&self.lines);
        let result = tokio::task::spawn_blocking(move || {
            let buf = lines.render(&batch);
            let mut appender = file.lock().unwrap_or_else(|e| e.into_inner());
            let result = appender.append(&buf, reopen);
            lines.give_back(buf, batch.len());
            result
        })
        .await;
        vec![written(result, &format!("append to {}", self.path.display())); n]
    }

    /// Appends the message as one line, under the same lock as batches.
    async fn send(&self, message: &Message<'_>) -> Sent {
        let file = Arc::clone(&self.file);
        let reopen = self.reopen.swap(false, Ordering::SeqCst);
        let mut line = message.body.to_vec();
        line.push(b'\n');
        let result = tokio::task::spawn_blocking(move || {
            let mut appender = file.lock().unwrap_or_else(|e| e.into_inner());
            appender.append(&line, reopen)
        })
        .await;
        let outcome = written(result, &format!("append to {}", self.path.display()));
        let answer = match &outcome {
            Outcome::Delivered => format!("appended to {} and synced", self.path.display()),
            Outcome::Retry { error, .. } | Outcome::Dead { error } | Outcome::Gone { error } => {
                error.clone()
            }
        };
        Sent { outcome, answer }
    }

    /// Large batches: one write and one fsync per batch is what makes a
    /// big catch-up cheap (16k events are about 5 MB).
    fn batch_size(&self) -> usize {
        BATCH
    }

    fn concurrency(&self) -> usize {
        1
    }

    fn reopen(&self) {
        self.reopen.store(true, Ordering::SeqCst);
    }
}
