//! `type = "stdout"`: one CloudEvent per line on standard output.

use std::io::Write;

use super::{Outcome, Sink, written};
use crate::event::EventWriter;
use crate::store::OutboxEntry;

pub struct StdoutSink {
    source: String,
}

impl StdoutSink {
    pub fn new(source: &str) -> StdoutSink {
        StdoutSink {
            source: source.to_string(),
        }
    }
}

impl Sink for StdoutSink {
    async fn deliver(&self, batch: Vec<OutboxEntry>) -> Vec<Outcome> {
        let mut buf = Vec::with_capacity(batch.len() * 340);
        let mut events = EventWriter::new(&self.source);
        for e in &batch {
            events.write(&mut buf, &e.transition);
            buf.push(b'\n');
        }
        let n = batch.len();
        // Blocking write: stdout may be a slow pipe.
        let result = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&buf).and_then(|()| out.flush())
        })
        .await;
        vec![written(result, "write to stdout"); n]
    }

    fn batch_size(&self) -> usize {
        1024
    }

    fn concurrency(&self) -> usize {
        1
    }
}
