//! The plainest order, read without serde: what CertCentral sends for
//! nearly every element of a large answer. An element this reader refuses
//! is not an error: it goes to serde's `OrderSeed` as before, which then
//! parses it or names what is wrong, with the same messages as ever.
//!
//! Accepted: an object whose keys are only `order_id`, `certificate_id` and
//! `status`, each at most once, `order_id` and `status` present, with JSON
//! whitespace anywhere between tokens; ids that are positive integers
//! written as plain digits (no sign, leading zero, fraction or exponent, at
//! most 18 digits, so within i64); `null` for no certificate; a status
//! string without escapes or control characters, valid UTF-8, not blank.
//! That is exactly a subset of what `OrderSeed` accepts, and for it
//! `OrderSeed` gives the same order: the same ids, and the same raw status
//! interned the same way.
//!
//! Why: serde's map visitor is about half of a re-poll's parsing time and
//! the parse comes before anything is recorded, so it is all on the
//! critical path; this reader makes one pass over the bytes of an element.

use crate::certcentral::orders::{CompactOrder, Statuses};

/// Reads the plain order at the start of `b`; returns it and its length in
/// bytes, or `None` when `b` does not start with one (or ends first).
pub(super) fn plain_order(b: &[u8], statuses: &mut Statuses) -> Option<(CompactOrder, usize)> {
    let mut r = Reader { b, i: 0 };
    r.byte(b'{')?;
    let mut order_id = None;
    let mut certificate_id: Option<Option<i64>> = None;
    let mut status: Option<&str> = None;
    loop {
        r.skip_whitespace();
        let key = r.plain_string()?;
        r.skip_whitespace();
        r.byte(b':')?;
        r.skip_whitespace();
        match key {
            b"order_id" if order_id.is_none() => order_id = Some(r.positive_integer()?),
            b"certificate_id" if certificate_id.is_none() => {
                certificate_id = Some(if r.b.get(r.i..r.i + 4)? == b"null" {
                    r.i += 4;
                    None
                } else {
                    Some(r.positive_integer()?)
                });
            }
            b"status" if status.is_none() => {
                let s = std::str::from_utf8(r.plain_string()?).ok()?;
                if s.trim().is_empty() {
                    return None;
                }
                status = Some(s);
            }
            _ => return None,
        }
        r.skip_whitespace();
        match r.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    let order = CompactOrder::new(
        order_id?,
        certificate_id.flatten(),
        statuses.intern(status?),
    );
    Some((order, r.i))
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<u8> {
        let c = *self.b.get(self.i)?;
        self.i += 1;
        Some(c)
    }

    fn byte(&mut self, expected: u8) -> Option<()> {
        (self.next()? == expected).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// The bytes between the quotes of a string with no escape and no
    /// control character (either is left to serde).
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let start = self.i;
        loop {
            match self.next()? {
                b'"' => return Some(&self.b[start..self.i - 1]),
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
    }

    /// `[1-9][0-9]{0,17}`, not followed by another digit: always fits i64.
    fn positive_integer(&mut self) -> Option<i64> {
        let first = self.next()?;
        if !(b'1'..=b'9').contains(&first) {
            return None;
        }
        let mut n = i64::from(first - b'0');
        for _ in 0..17 {
            match self.b.get(self.i) {
                Some(&d @ b'0'..=b'9') => {
                    n = n * 10 + i64::from(d - b'0');
                    self.i += 1;
                }
                _ => return Some(n),
            }
        }
        // A 19th digit could overflow: serde decides.
        (!self.b.get(self.i)?.is_ascii_digit()).then_some(n)
    }
}
