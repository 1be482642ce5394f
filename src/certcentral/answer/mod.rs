//! Parsing `status-changes` answers strictly, as they stream in.
//!
//! An answer can hold a million orders (tens of megabytes of JSON), so it is
//! parsed from a reader while it arrives, without a JSON tree and without
//! ever holding the text: each order is validated and kept as a 24-byte
//! [`CompactOrder`] whose status is interned in the window's [`Statuses`].
//! Anything that is not a well-formed answer (a string order id, a missing
//! status, `{"orders": null}`, an array, an error object with HTTP 200, a
//! body cut off half-way) is an error naming the offending element: the
//! cycle fails and the cursor stays, because guessing would risk losing
//! transitions. Nothing is recorded before the whole answer has parsed.

use std::fmt;
use std::io::{BufReader, Read};

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::orders::{CompactOrder, Statuses};

mod scalar;
use scalar::{Scalar, StatusSeed, StatusValue};

/// The `page` object of a paginated answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub total: u64,
    pub limit: u64,
    /// The offset the server says this page starts at, if it says.
    pub offset: Option<u64>,
}

/// The parser reads the body through a buffer this large: serde_json reads
/// a byte at a time, which is only cheap from a buffer.
const READ_BUFFER: usize = 64 * 1024;

/// One parsed answer; its orders' statuses index the [`Statuses`] it was
/// parsed with.
#[derive(Debug, Default)]
pub struct Answer {
    pub orders: Vec<CompactOrder>,
    pub page: Option<Page>,
    /// `{"errors":[...]}` in a 2xx answer: (code, message) of the first error.
    pub error: Option<(String, String)>,
}

/// An error entry of `{"errors":[{"code":...,"message":...}]}`.
#[derive(Debug, serde::Deserialize)]
pub struct ErrorEntry {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The error body CertCentral sends with 4xx/5xx answers.
#[derive(Debug, serde::Deserialize)]
pub struct ErrorBody {
    pub errors: Vec<ErrorEntry>,
}

/// Parses an answer read from `body`, interning its statuses in `statuses`.
/// Reads `body` to its end: trailing data is an error too. The orders of a
/// usual answer are cut out and parsed from slices (`frames`), the rest by
/// [`parse_streamed`].
pub fn parse_from<R: Read>(body: R, statuses: &mut Statuses) -> Result<Answer, String> {
    super::frames::parse_from(body, statuses)
}

/// The streaming parser: the whole answer read through serde_json's reader.
pub(super) fn parse_streamed<R: Read>(body: R, statuses: &mut Statuses) -> Result<Answer, String> {
    let mut watched = Watched {
        inner: body,
        content: false,
    };
    let parsed = {
        let reader = BufReader::with_capacity(READ_BUFFER, &mut watched);
        let mut de = serde_json::Deserializer::from_reader(reader);
        de.deserialize_any(AnswerVisitor { statuses })
            .and_then(|answer| de.end().map(|()| answer))
    };
    match parsed {
        Ok(answer) => Ok(answer),
        // serde_json would say "EOF while parsing a value at line 1 column 0".
        Err(_) if !watched.content => Err("empty body".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// Parses a whole answer held in memory (tests, small bodies).
pub fn parse(body: &[u8], statuses: &mut Statuses) -> Result<Answer, String> {
    parse_from(body, statuses)
}

/// Notes whether anything but whitespace came through, so that an empty
/// body is reported as such.
struct Watched<R> {
    inner: R,
    content: bool,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.content {
            self.content = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}

/// Declares a field-name type that serde reads without allocating: `$other`
/// stands for every name not listed.
macro_rules! field_names {
    ($name:ident, $expecting:literal, { $($text:literal => $variant:ident),* }, $other:ident) => {
        enum $name { $($variant,)* $other }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E>(self, v: &str) -> Result<$name, E> {
                        Ok(match v { $($text => $name::$variant,)* _ => $name::$other })
                    }
                }
                d.deserialize_identifier(V)
            }
        }
    };
}

field_names!(AnswerField, "a field name", { "orders" => Orders, "page" => Page, "errors" => Errors }, Other);
field_names!(OrderField, "a field name", { "order_id" => OrderId, "certificate_id" => CertificateId, "status" => Status }, Other);

struct AnswerVisitor<'s> {
    statuses: &'s mut Statuses,
}

impl<'de> Visitor<'de> for AnswerVisitor<'_> {
    type Value = Answer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object such as {\"orders\":[...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answer, A::Error> {
        let mut answer = Answer::default();
        let mut listed = false;
        let mut others = 0usize;
        while let Some(key) = map.next_key::<AnswerField>()? {
            match key {
                // A second list would silently replace the first.
                AnswerField::Orders if listed => {
                    return Err(de::Error::duplicate_field("orders"));
                }
                AnswerField::Orders => {
                    listed = true;
                    answer.orders = map.next_value_seed(OrdersSeed {
                        statuses: &mut *self.statuses,
                    })?
                }
                // `"page": null` says as much as no page object: one page.
                AnswerField::Page => {
                    answer.page = map.next_value::<Option<PageRaw>>()?.map(PageRaw::into_page)
                }
                AnswerField::Errors => {
                    let errors: Vec<ErrorEntry> = map.next_value()?;
                    let first = errors.into_iter().next();
                    answer.error = Some(match first {
                        Some(e) => (
                            e.code.unwrap_or_else(|| "unknown".into()),
                            e.message.unwrap_or_default(),
                        ),
                        None => ("unknown".into(), "empty errors list".into()),
                    });
                }
                // Fields added later are ignored, so a newer API still parses.
                AnswerField::Other => {
                    others += 1;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // `{}` is the answer for "nothing changed". An object with fields
        // but no list (`{"message":"maintenance"}` from a proxy, a renamed
        // field) says nothing about the window: taking it as empty would
        // move the cursor over every change in it.
        if !listed && answer.error.is_none() && others > 0 {
            return Err(de::Error::custom(format!(
                "no \"orders\" list in an answer with {others} other field{}; \
                 expected {{\"orders\":[...]}}, or {{}} when nothing changed",
                if others == 1 { "" } else { "s" }
            )));
        }
        Ok(answer)
    }
}

#[derive(serde::Deserialize)]
struct PageRaw {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    limit: u64,
    #[serde(default)]
    offset: Option<u64>,
}

impl PageRaw {
    fn into_page(self) -> Page {
        Page {
            total: self.total,
            limit: self.limit,
            offset: self.offset,
        }
    }
}

struct OrdersSeed<'s> {
    statuses: &'s mut Statuses,
}

impl<'de> DeserializeSeed<'de> for OrdersSeed<'_> {
    type Value = Vec<CompactOrder>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for OrdersSeed<'_> {
    type Value = Vec<CompactOrder>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"orders\" to be a list of orders")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        let mut index = 0usize;
        while let Some(order) = seq.next_element_seed(OrderSeed {
            index,
            statuses: &mut *self.statuses,
        })? {
            out.push(order);
            index += 1;
        }
        Ok(out)
    }
}

/// One element of `orders`, which must be a JSON object: serde would also
/// read a struct from an array (`[7, 70, "issued"]`), and guessing which
/// value is which is exactly what this parser refuses to do.
pub(super) struct OrderSeed<'s> {
    pub(super) index: usize,
    pub(super) statuses: &'s mut Statuses,
}

impl<'de> DeserializeSeed<'de> for OrderSeed<'_> {
    type Value = CompactOrder;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OrderSeed<'_> {
    type Value = CompactOrder;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "orders[{}] to be an order object", self.index)
    }

    /// Every field is first taken as any JSON value, so a wrong type is
    /// reported with the element and field it was found in.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<CompactOrder, A::Error> {
        let mut order_id: Option<Scalar> = None;
        let mut certificate_id: Option<Scalar> = None;
        let mut status: Option<StatusValue> = None;
        while let Some(field) = map.next_key::<OrderField>()? {
            match field {
                OrderField::OrderId if order_id.is_some() => {
                    return Err(de::Error::duplicate_field("order_id"));
                }
                OrderField::CertificateId if certificate_id.is_some() => {
                    return Err(de::Error::duplicate_field("certificate_id"));
                }
                OrderField::Status if status.is_some() => {
                    return Err(de::Error::duplicate_field("status"));
                }
                OrderField::OrderId => order_id = Some(map.next_value()?),
                OrderField::CertificateId => certificate_id = Some(map.next_value()?),
                OrderField::Status => {
                    status = Some(map.next_value_seed(StatusSeed {
                        statuses: &mut *self.statuses,
                    })?)
                }
                OrderField::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        validate(
            self.index,
            order_id.unwrap_or_default(),
            certificate_id.unwrap_or_default(),
            status.unwrap_or(StatusValue::Other(Scalar::Missing)),
        )
        .map_err(de::Error::custom)
    }
}

fn validate(
    i: usize,
    order_id: Scalar,
    certificate_id: Scalar,
    status: StatusValue,
) -> Result<CompactOrder, String> {
    let order_id = match order_id {
        Scalar::Int(n) if n > 0 => n,
        Scalar::Missing => return Err(format!("orders[{i}].order_id is missing")),
        other => {
            return Err(format!(
                "orders[{i}].order_id: expected a positive integer, got {other}"
            ));
        }
    };
    let certificate_id = match certificate_id {
        Scalar::Int(n) if n > 0 => Some(n),
        Scalar::Missing | Scalar::Null => None,
        other => {
            return Err(format!(
                "orders[{i}] (order {order_id}).certificate_id: expected a positive integer, got {other}"
            ));
        }
    };
    let status = match status {
        StatusValue::Interned(s) => s,
        StatusValue::Other(Scalar::Missing) => {
            return Err(format!("orders[{i}] (order {order_id}).status is missing"));
        }
        StatusValue::Other(other) => {
            return Err(format!(
                "orders[{i}] (order {order_id}).status: expected a non-empty string, got {other}"
            ));
        }
    };
    Ok(CompactOrder::new(order_id, certificate_id, status))
}

#[cfg(test)]
mod tests;
