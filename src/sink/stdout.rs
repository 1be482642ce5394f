//! `type = "stdout"`: one CloudEvent per line on standard output.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::kind::{
    Batch, BuildContext, BuildError, Kind, Message, Outcome, Sent, Sink, SinkSettings, written,
};
use super::lines::Lines;
use crate::config::table::SinkTable;

pub static KIND: Kind = Kind {
    name: "stdout",
    parse,
};

/// A stdout sink has no keys of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keys {}

#[derive(Debug)]
struct Settings;

fn parse(table: &mut SinkTable<'_>) -> Option<Arc<dyn SinkSettings>> {
    let Keys {} = table.keys()?;
    Some(Arc::new(Settings))
}

impl SinkSettings for Settings {
    fn kind(&self) -> &'static str {
        KIND.name
    }

    fn in_order(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "stdout".to_string()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<Arc<dyn Sink>, BuildError> {
        Ok(Arc::new(StdoutSink {
            lines: Arc::new(Lines::new(ctx.source, BATCH)),
        }))
    }
}

/// Events per write. Each batch is a round of the delivery loop (a read
/// of the store, a cursor move), so a backlog of 200,000 events to
/// `/dev/null` took 831 ms in batches of 1,024, 661 ms in batches of 4,096
/// and 646 ms in batches of 16,384 (hyperfine, 8 runs each). A stdout that
/// breaks mid-batch repeats the batch, so the smaller of the fast sizes.
const BATCH: usize = 4096;

struct StdoutSink {
    /// The rendered lines of the last full batch, reused by the next one.
    lines: Arc<Lines>,
}

#[async_trait]
impl Sink for StdoutSink {
    async fn deliver(&self, batch: Batch) -> Vec<Outcome> {
        let n = batch.len();
        let lines = Arc::clone(&self.lines);
        // Rendered and written off the runtime: stdout may be a slow pipe.
        let result = tokio::task::spawn_blocking(move || {
            let buf = lines.render(&batch);
            let mut out = std::io::stdout().lock();
            let result = out.write_all(&buf).and_then(|()| out.flush());
            lines.give_back(buf, batch.len());
            result
        })
        .await;
        vec![written(result, "write to stdout"); n]
    }

    async fn send(&self, message: &Message<'_>) -> Sent {
        let mut line = message.body.to_vec();
        line.push(b'\n');
        let result = tokio::task::spawn_blocking(move || {
            let mut out = std::io::stdout().lock();
            out.write_all(&line).and_then(|()| out.flush())
        })
        .await;
        let outcome = written(result, "write to stdout");
        let answer = match &outcome {
            Outcome::Delivered => "written to stdout".to_string(),
            Outcome::Retry { error, .. } | Outcome::Dead { error } | Outcome::Gone { error } => {
                error.clone()
            }
        };
        Sent { outcome, answer }
    }

    fn batch_size(&self) -> usize {
        BATCH
    }

    fn concurrency(&self) -> usize {
        1
    }
}
