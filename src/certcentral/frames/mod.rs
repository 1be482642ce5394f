//! The fast path of the answer parser: an answer shaped as CertCentral
//! sends it (`{"orders":[{...},{...}],...}`) is cut into its orders as the
//! text streams in. An order in its plainest form (three known keys, plain
//! digits, an unescaped status) is read in one pass by [`plain`]; any other
//! is parsed from a slice by the same strict visitor as the streaming
//! parser of [`super::answer`].
//!
//! Why: serde_json reads from a `Read` a byte at a time, through a scratch
//! buffer for every string; from a slice it scans in bulk. For a million
//! orders that is most of a re-poll's time. The text is still never held
//! whole: only the order being cut, and one read block.
//!
//! What stays exactly the streaming parser's: every order it does not read
//! the same way goes through `OrderSeed` (the same checks and messages,
//! with its index in the list; `plain` only takes what `OrderSeed` accepts,
//! and the tests check the two agree);
//! everything after the list (`page`, `errors`, unknown fields, trailing
//! data) is read by the streaming parser itself; and an answer that does
//! not start with `{"orders":[` (an error object, another key first, an
//! empty body) is handed to the streaming parser whole, since nothing of it
//! has been let go yet. Only error positions read differently: an error
//! inside the list names the byte where its order starts instead of serde's
//! line and column, and one after the list is placed as if the list had
//! been empty.

use std::io::{Cursor, Read};

use serde::de::DeserializeSeed;

use super::answer::{Answer, OrderSeed, parse_streamed};
use super::orders::Statuses;
use plain::plain_order;

/// Bytes asked of the reader at a time.
const BLOCK: usize = 64 * 1024;
/// Text kept while looking for `{"orders":[` (only whitespace can make it
/// long); past this the streaming parser takes the answer, in bounded memory.
const PREFIX_LIMIT: usize = 4 * BLOCK;

/// The text seen so far and not yet let go of.
struct Text<R> {
    reader: R,
    buf: Vec<u8>,
    /// Next byte to look at, in `buf`.
    pos: usize,
    /// Offset in the answer of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Text<R> {
    /// Reads another block; false at the end of the text.
    fn more(&mut self, keep_all: bool) -> Result<bool, String> {
        if self.eof {
            return Ok(false);
        }
        if !keep_all && self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + BLOCK, 0);
        let n = loop {
            match self.reader.read(&mut self.buf[len..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.to_string()),
            }
        };
        self.buf.truncate(len + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next byte that is not JSON whitespace, reading on as needed;
    /// `None` at the end of the text (or, keeping all, past [`PREFIX_LIMIT`]).
    fn peek(&mut self, keep_all: bool) -> Result<Option<u8>, String> {
        loop {
            while let Some(&b) = self.buf.get(self.pos) {
                if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if keep_all && self.buf.len() >= PREFIX_LIMIT {
                return Ok(None);
            }
            if !self.more(keep_all)? {
                return Ok(None);
            }
        }
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
}

/// Parses an answer from `body` (see the module's description).
pub(super) fn parse_from<R: Read>(body: R, statuses: &mut Statuses) -> Result<Answer, String> {
    let mut text = Text {
        reader: body,
        buf: Vec::with_capacity(BLOCK),
        pos: 0,
        base: 0,
        eof: false,
    };
    // `{"orders":[`, allowing whitespace between tokens; nothing is let go
    // until it has all been seen.
    for token in [&b"{"[..], b"\"orders\"", b":", b"["] {
        let matched = match text.peek(true)? {
            Some(_) => loop {
                let have = &text.buf[text.pos..];
                if have.len() >= token.len() || text.eof {
                    break have.starts_with(token);
                }
                if !token.starts_with(have) || !text.more(true)? {
                    break false;
                }
            },
            None => false,
        };
        if !matched {
            let seen = Cursor::new(std::mem::take(&mut text.buf));
            return parse_streamed(seen.chain(text.reader), statuses);
        }
        text.pos += token.len();
    }
    let orders = orders(&mut text, statuses)?;
    // The rest of the object, as if the list had been empty: its other
    // fields, its end and nothing after it, read by the streaming parser.
    let rest = Cursor::new(text.buf.split_off(text.pos));
    let mut answer = parse_streamed(
        Cursor::new(&b"{\"orders\":[]"[..])
            .chain(rest)
            .chain(text.reader),
        statuses,
    )?;
    answer.orders = orders;
    Ok(answer)
}

/// The elements of the list up to its `]`: each read by [`plain_order`]
/// when it can, by `OrderSeed` otherwise.
fn orders<R: Read>(
    text: &mut Text<R>,
    statuses: &mut Statuses,
) -> Result<Vec<super::orders::CompactOrder>, String> {
    let mut out = Vec::new();
    if text.peek(false)? == Some(b']') {
        text.pos += 1;
        return Ok(out);
    }
    loop {
        let index = out.len();
        if text.peek(false)?.is_none() {
            return Err(eof(text, index));
        }
        let order = match plain_order(&text.buf[text.pos..], statuses) {
            Some((order, len)) => {
                text.pos += len;
                order
            }
            None => parsed_by_serde(text, index, statuses)?,
        };
        out.push(order);
        match text.peek(false)? {
            Some(b',') => text.pos += 1,
            Some(b']') => {
                text.pos += 1;
                return Ok(out);
            }
            Some(other) => {
                return Err(format!(
                    "expected `,` or `]` after orders[{index}], found {:?} at byte {}",
                    char::from(other),
                    text.offset()
                ));
            }
            None => return Err(eof(text, index + 1)),
        }
    }
}

/// The answer ended inside the list, at element `index`.
fn eof<R: Read>(text: &Text<R>, index: usize) -> String {
    format!(
        "EOF while parsing the list of orders (orders[{index}]) at byte {}",
        text.offset()
    )
}

/// The element at `text.pos`, cut by [`value_len`] (reading on as needed)
/// and parsed by `OrderSeed`: anything [`plain_order`] leaves alone.
fn parsed_by_serde<R: Read>(
    text: &mut Text<R>,
    index: usize,
    statuses: &mut Statuses,
) -> Result<super::orders::CompactOrder, String> {
    let len = loop {
        match value_len(&text.buf[text.pos..], text.eof) {
            Some(n) => break n,
            None if !text.more(false)? => return Err(eof(text, index)),
            None => {}
        }
    };
    let element = &text.buf[text.pos..text.pos + len];
    let mut de = serde_json::Deserializer::from_slice(element);
    let order = OrderSeed { index, statuses }
        .deserialize(&mut de)
        .and_then(|order| de.end().map(|()| order))
        .map_err(|e| at(&e, text.offset()))?;
    text.pos += len;
    Ok(order)
}

/// serde's message for an element, placed by the element's byte offset in
/// the whole answer rather than by line and column within the element.
fn at(e: &serde_json::Error, start: u64) -> String {
    let message = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let bare = message.strip_suffix(&suffix).unwrap_or(&message);
    format!("{bare} (the order at byte {start} of the answer)")
}

/// The length of the JSON value at the start of `b` (which starts with a
/// byte that is not whitespace), or `None` if `b` ends first. Only finds
/// where the value ends; whether it is valid JSON is for serde to say.
/// Objects and arrays are followed by counting brackets outside strings,
/// without recursion, so deep nesting costs nothing.
fn value_len(b: &[u8], at_eof: bool) -> Option<usize> {
    match b.first()? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = 0;
            while i < b.len() {
                match b[i] {
                    b'"' => i += string_len(&b[i..])? - 1,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b'"' => string_len(b),
        _ => match b
            .iter()
            .position(|c| matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
        {
            Some(n) => Some(n),
            None if at_eof => Some(b.len()),
            None => None,
        },
    }
}

/// The length of the string starting at `b[0]` (a `"`), quotes included.
fn string_len(b: &[u8]) -> Option<usize> {
    let mut i = 1;
    loop {
        match b.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

mod plain;
#[cfg(test)]
mod tests;
