//! Parsing `status-changes` answers strictly and cheaply.
//!
//! An answer can hold hundreds of thousands of orders, so it is parsed in one
//! pass with borrowed strings and interned statuses, without a JSON tree.
//! Anything that is not a well-formed answer (a string order id, a missing
//! status, `{"orders": null}`, an array, an error object with HTTP 200) is an
//! error naming the offending element: the cycle fails and the cursor stays,
//! because guessing would risk losing transitions.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::transition::OrderChange;

/// The `page` object of a paginated answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    pub total: u64,
    pub limit: u64,
    pub offset: u64,
}

/// Consecutive pages of one window overlap by up to this many orders.
pub const PAGE_OVERLAP: u64 = 20;

/// What to do after one page of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextPage {
    /// The window is complete.
    Done,
    /// Ask for the page at this offset.
    At(u64),
    /// The list shifted more than the overlap: ask again from the first page.
    Restart,
}

/// Follows the pages of one window without skipping an order.
///
/// Offset pagination is only safe while the list holds still, and a
/// status-changes list does not: an order that changes again between two page
/// requests leaves its place (an absolute window drops it, a relative one
/// moves it to the end), every order after it moves up one place, and with
/// plain offsets the order just past the page boundary would never be
/// fetched — lost for good when no later window covers its time. So each page
/// is asked from a little before where the previous one ended and must
/// contain one of those already-seen orders with the status it had: every
/// order the window still holds after it is then on this page or a later one.
/// When none is there, the list shifted further than the overlap, and the
/// window starts again from its first page.
#[derive(Debug, Default)]
pub struct PageFollower {
    offset: u64,
    /// The previous page's last orders, which the next page must reach back to.
    tail: Vec<(i64, Arc<str>)>,
}

impl PageFollower {
    /// The offset to ask for next (0: the first page, sent without `offset`).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes one page's answer: its orders go to `into` (those the overlap
    /// repeats only once), and the answer says what to ask for next.
    pub fn take(&mut self, answer: Answer, into: &mut Vec<OrderChange>) -> NextPage {
        let connected = self.tail.is_empty() || answer.orders.iter().any(|o| self.in_tail(o));
        let got = answer.orders.len() as u64;
        let more = answer
            .page
            .is_some_and(|page| got > 0 && self.offset + got < page.total);
        let next_tail = if connected && more {
            let overlap = (got / 4).clamp(1, PAGE_OVERLAP).min(got - 1);
            answer.orders[(got - overlap) as usize..]
                .iter()
                .map(|o| (o.order_id, Arc::clone(&o.status)))
                .collect()
        } else {
            Vec::new()
        };
        // Every status listed is one the order really had, so even the
        // orders of a page that broke the chain are kept.
        for o in answer.orders {
            if !self.in_tail(&o) {
                into.push(o);
            }
        }
        if !connected {
            *self = PageFollower::default();
            return NextPage::Restart;
        }
        if !more {
            return NextPage::Done;
        }
        self.offset += got - next_tail.len() as u64;
        self.tail = next_tail;
        NextPage::At(self.offset)
    }

    fn in_tail(&self, o: &OrderChange) -> bool {
        self.tail
            .iter()
            .any(|(id, status)| *id == o.order_id && *status == o.status)
    }
}

/// One parsed answer.
#[derive(Debug, Default)]
pub struct Answer {
    pub orders: Vec<OrderChange>,
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

/// Parses an answer body.
pub fn parse(body: &[u8]) -> Result<Answer, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("empty body".to_string());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let answer = de
        .deserialize_any(AnswerVisitor)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(answer)
}

struct AnswerVisitor;

impl<'de> Visitor<'de> for AnswerVisitor {
    type Value = Answer;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object such as {\"orders\":[...]}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answer, A::Error> {
        let mut answer = Answer::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "orders" => answer.orders = map.next_value_seed(OrdersSeed)?,
                // `"page": null` says as much as no page object: one page.
                "page" => {
                    answer.page = map.next_value::<Option<PageRaw>>()?.map(PageRaw::into_page)
                }
                "errors" => {
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
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
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
    offset: u64,
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

struct OrdersSeed;

impl<'de> DeserializeSeed<'de> for OrdersSeed {
    type Value = Vec<OrderChange>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(OrdersVisitor)
    }
}

struct OrdersVisitor;

impl<'de> Visitor<'de> for OrdersVisitor {
    type Value = Vec<OrderChange>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"orders\" to be a list of orders")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
        let mut statuses: HashMap<String, Arc<str>> = HashMap::new();
        let mut index = 0usize;
        while let Some(raw) = seq.next_element_seed(OrderSeed { index })? {
            let change = raw
                .validate(index, &mut statuses)
                .map_err(de::Error::custom)?;
            out.push(change);
            index += 1;
        }
        Ok(out)
    }
}

/// One element of `orders`, which must be a JSON object: serde would also
/// read a struct from an array (`[7, 70, "issued"]`), and guessing which
/// value is which is exactly what this parser refuses to do.
struct OrderSeed {
    index: usize,
}

impl<'de> DeserializeSeed<'de> for OrderSeed {
    type Value = RawOrder<'de>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OrderSeed {
    type Value = RawOrder<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "orders[{}] to be an order object", self.index)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

/// An order with every field accepted as any JSON value, so a wrong type is
/// reported with the element and field it was found in.
#[derive(serde::Deserialize)]
struct RawOrder<'a> {
    #[serde(borrow, default)]
    order_id: Scalar<'a>,
    #[serde(borrow, default)]
    certificate_id: Scalar<'a>,
    #[serde(borrow, default)]
    status: Scalar<'a>,
}

impl RawOrder<'_> {
    fn validate(
        self,
        i: usize,
        statuses: &mut HashMap<String, Arc<str>>,
    ) -> Result<OrderChange, String> {
        let order_id = match self.order_id {
            Scalar::Int(n) if n > 0 => n,
            Scalar::Missing => return Err(format!("orders[{i}].order_id is missing")),
            other => {
                return Err(format!(
                    "orders[{i}].order_id: expected a positive integer, got {other}"
                ));
            }
        };
        let certificate_id = match self.certificate_id {
            Scalar::Int(n) if n > 0 => Some(n),
            Scalar::Missing | Scalar::Null => None,
            other => {
                return Err(format!(
                    "orders[{i}] (order {order_id}).certificate_id: expected a positive integer, got {other}"
                ));
            }
        };
        let status = match self.status {
            Scalar::Str(s) if !s.trim().is_empty() => s,
            Scalar::Missing => {
                return Err(format!("orders[{i}] (order {order_id}).status is missing"));
            }
            other => {
                return Err(format!(
                    "orders[{i}] (order {order_id}).status: expected a non-empty string, got {other}"
                ));
            }
        };
        // Statuses are few; share one allocation per distinct status.
        let status = match statuses.get(status.as_ref()) {
            Some(s) => Arc::clone(s),
            None => {
                let normal: Arc<str> = Arc::from(status.trim().to_ascii_lowercase());
                statuses.insert(status.into_owned(), Arc::clone(&normal));
                normal
            }
        };
        Ok(OrderChange {
            order_id,
            certificate_id,
            status,
        })
    }
}

/// Any JSON value, kept only as far as validation needs.
#[derive(Default)]
enum Scalar<'a> {
    #[default]
    Missing,
    Null,
    Int(i64),
    /// Integers beyond i64, negative zero, floats.
    Number(String),
    Str(Cow<'a, str>),
    Bool(bool),
    Composite(&'static str),
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Missing => f.write_str("nothing"),
            Scalar::Null => f.write_str("null"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Number(n) => write!(f, "the number {n}"),
            Scalar::Str(s) => {
                let shown: String = s.chars().take(40).collect();
                write!(f, "the string {shown:?}")
            }
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Composite(kind) => write!(f, "an {kind}"),
        }
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or_else(|_| Scalar::Number(v.to_string()), Scalar::Int))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // Integers beyond u64 arrive as floats, their digits rounded: say
        // so rather than show a number that was never sent.
        if v.fract() == 0.0 && v.abs() >= 9.2e18 {
            return Ok(Scalar::Number(format!("{v:e} (beyond 64-bit integers)")));
        }
        Ok(Scalar::Number(v.to_string()))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite("array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Composite("object"))
    }
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
