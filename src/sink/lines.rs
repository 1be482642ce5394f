//! A batch rendered as CloudEvent lines, for the sinks that write lines
//! (file, stdout), in a buffer kept from one full batch to the next.
//!
//! A catch-up writes full batches one after the other. Each needs a buffer
//! of megabytes, and a new one is a new mapping whose every page faults in
//! (see `return_large_buffers_to_the_system` in `main.rs`); so a full
//! batch's buffer is kept for the next. A smaller batch means the backlog
//! is gone: its buffer is freed, and an idle daemon holds none.

use std::sync::Mutex;

use crate::event::EventWriter;
use crate::store::OutboxEntry;

/// About the length of one rendered line, to size the buffer at once.
const LINE_BYTES: usize = 340;

/// How a sink renders its batches: the events' `source`, and the buffer of
/// the last full batch, if any.
#[derive(Debug)]
pub(super) struct Lines {
    source: String,
    full: usize,
    kept: Mutex<Vec<u8>>,
}

impl Lines {
    /// Lines of events from `source`, for a sink whose full batches hold
    /// `full` events.
    pub(super) fn new(source: &str, full: usize) -> Lines {
        Lines {
            source: source.to_string(),
            full,
            kept: Mutex::default(),
        }
    }

    /// `batch` as lines (each ending in `\n`), in the kept buffer if any.
    pub(super) fn render(&self, batch: &[OutboxEntry]) -> Vec<u8> {
        let mut buf = std::mem::take(&mut *self.kept.lock().unwrap_or_else(|e| e.into_inner()));
        buf.clear();
        buf.reserve(batch.len() * LINE_BYTES);
        let mut events = EventWriter::new(&self.source);
        for e in batch {
            events.write(&mut buf, &e.transition);
            buf.push(b'\n');
        }
        buf
    }

    /// Takes back the buffer of a batch of `events` once written: kept if
    /// the batch was full, else freed.
    pub(super) fn give_back(&self, buf: Vec<u8>, events: usize) {
        if events >= self.full {
            *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = buf;
        }
    }

    #[cfg(test)]
    pub(super) fn kept_capacity(&self) -> usize {
        self.kept.lock().map(|b| b.capacity()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_one_line_in_batch_order() {
        let lines = Lines::new("https://example.net/services/v2", 4);
        let batch: Vec<OutboxEntry> = (1..=3).map(OutboxEntry::untried).collect();
        let text = String::from_utf8(lines.render(&batch)).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].to_string())
            .collect();
        assert_eq!(
            ids,
            ["\"1001:issued\"", "\"1002:issued\"", "\"1003:issued\""]
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn the_next_batch_is_written_into_a_full_batchs_storage() {
        let lines = Lines::new("s", 3);
        let full: Vec<OutboxEntry> = (1..=3).map(OutboxEntry::untried).collect();
        let buf = lines.render(&full);
        let ptr = buf.as_ptr();
        lines.give_back(buf, full.len());

        let again = lines.render(&full[..1]);
        assert_eq!(again.as_ptr(), ptr, "the same storage");
        assert_eq!(
            String::from_utf8_lossy(&again).lines().count(),
            1,
            "old lines gone"
        );
        assert_eq!(lines.kept_capacity(), 0, "taken while in use");
        // A short batch: the backlog is gone, nothing is kept.
        lines.give_back(again, 1);
        assert_eq!(lines.kept_capacity(), 0);
    }
}
