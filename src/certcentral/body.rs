//! Reading an answer's body while it is parsed, so it is never held whole.
//!
//! The body's chunks go from the async side (which owns the connection,
//! enforces `max_response_size` and the timeout) through a bounded channel
//! to a blocking thread running the strict parser of [`super::answer`]. At
//! most [`IN_FLIGHT`] chunks wait between the two, so memory holds the
//! parsed orders and a few chunks of text, whatever the answer's size; and
//! parsing runs on one core while the next chunks arrive on the other.
//!
//! Errors keep their meaning: a connection that breaks or times out is a
//! transport error (retried as such), even though the parser also saw the
//! text stop; the parser's verdict counts only for a body that arrived whole.

use std::io::Read;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::bytes::{Buf, Bytes};

use super::answer::{self, Answer};
use super::orders::Statuses;

/// Chunks queued between the connection and the parser.
const IN_FLIGHT: usize = 16;

/// Why a body could not be read into an answer.
#[derive(Debug)]
pub enum BodyError {
    /// The body grew past the limit (in bytes).
    TooLarge,
    /// The connection failed while the body arrived.
    Transport(reqwest::Error),
    /// The body arrived and is not a CertCentral answer.
    Malformed(String),
    /// The parsing thread could not run.
    Parser(String),
}

/// Reads `resp`'s body (at most `limit` bytes) and parses it as it arrives,
/// interning statuses in the window's shared `statuses`.
pub async fn read_answer(
    mut resp: reqwest::Response,
    limit: u64,
    statuses: Arc<Mutex<Statuses>>,
) -> Result<Answer, BodyError> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge);
    }
    let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
    let parser = tokio::task::spawn_blocking(move || {
        let mut statuses = statuses.lock().unwrap_or_else(|e| e.into_inner());
        answer::parse_from(ChunkReader::new(rx), &mut statuses)
    });
    let mut read: u64 = 0;
    let fed = loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len() as u64;
                if read > limit {
                    break Err(BodyError::TooLarge);
                }
                // A closed channel means the parser stopped early: the body
                // is malformed, and it says why.
                if tx.send(chunk).await.is_err() {
                    break Ok(());
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(BodyError::Transport(e)),
        }
    };
    // Dropping the sender ends the parser's input: on an early stop it
    // sees the text end where it did and fails, which `fed` overrides.
    drop(tx);
    let parsed = parser.await.map_err(|e| BodyError::Parser(e.to_string()))?;
    fed?;
    parsed.map_err(BodyError::Malformed)
}

/// The parser's view of the channel: a `Read` over the chunks as they come.
struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `text` in chunks of `size` bytes and parses it.
    fn parse_in_chunks(text: &[u8], size: usize) -> Result<Answer, String> {
        let (tx, rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
        let chunks: Vec<Bytes> = text
            .chunks(size.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let feeder = std::thread::spawn(move || {
            for c in chunks {
                if tx.blocking_send(c).is_err() {
                    return;
                }
            }
        });
        let result = answer::parse_from(ChunkReader::new(rx), &mut Statuses::default());
        feeder.join().unwrap();
        result
    }

    #[test]
    fn an_answer_split_anywhere_parses_the_same() {
        let text = br#"{"orders":[{"order_id":265,"certificate_id":112233,"status":"Issued"},{"order_id":264,"status":"canceled","x":[1,{"y":"\"]}"}]}],"page":{"total":2,"limit":2,"offset":0}}"#;
        let whole = parse_in_chunks(text, text.len()).unwrap();
        for size in 1..40 {
            let split = parse_in_chunks(text, size).unwrap();
            assert_eq!(split.orders, whole.orders, "chunks of {size}");
            assert_eq!(split.page, whole.page, "chunks of {size}");
        }
        assert_eq!(whole.orders.len(), 2);
    }

    #[test]
    fn a_body_cut_off_between_chunks_is_malformed() {
        let text = br#"{"orders":[{"order_id":265,"status":"issued"},{"order_id":2"#;
        let e = parse_in_chunks(text, 7).unwrap_err();
        assert!(e.contains("EOF"), "{e}");
    }
}
