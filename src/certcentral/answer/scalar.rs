//! The scalar values an order element is checked against: a status,
//! interned as it is read, and any other JSON value kept only as far as an
//! error message needs.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::super::orders::Statuses;

/// A `status` value: a usable status, interned as it is read (no string is
/// allocated per order), or whatever else it was, for the error message.
pub(super) enum StatusValue {
    Interned(u32),
    Other(Scalar),
}

pub(super) struct StatusSeed<'s> {
    pub(super) statuses: &'s mut Statuses,
}

impl<'de> DeserializeSeed<'de> for StatusSeed<'_> {
    type Value = StatusValue;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

/// Forwards a visit to [`ScalarVisitor`]: anything but a string is not a status.
macro_rules! not_a_status {
    ($($method:ident($t:ty)),*) => {
        $(fn $method<E: de::Error>(self, v: $t) -> Result<StatusValue, E> {
            ScalarVisitor.$method(v).map(StatusValue::Other)
        })*
    };
}

impl<'de> Visitor<'de> for StatusSeed<'_> {
    type Value = StatusValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E>(self, v: &str) -> Result<StatusValue, E> {
        if v.trim().is_empty() {
            return Ok(StatusValue::Other(Scalar::Str(v.to_string())));
        }
        Ok(StatusValue::Interned(self.statuses.intern(v)))
    }
    fn visit_unit<E: de::Error>(self) -> Result<StatusValue, E> {
        ScalarVisitor.visit_unit().map(StatusValue::Other)
    }
    not_a_status!(
        visit_bool(bool),
        visit_i64(i64),
        visit_u64(u64),
        visit_i128(i128),
        visit_u128(u128),
        visit_f64(f64)
    );
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<StatusValue, A::Error> {
        ScalarVisitor.visit_seq(seq).map(StatusValue::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<StatusValue, A::Error> {
        ScalarVisitor.visit_map(map).map(StatusValue::Other)
    }
}

/// Any JSON value, kept only as far as validation needs.
#[derive(Default)]
pub(super) enum Scalar {
    #[default]
    Missing,
    Null,
    Int(i64),
    /// Integers beyond i64, negative zero, floats.
    Number(String),
    Str(String),
    Bool(bool),
    Composite(&'static str),
}

impl fmt::Display for Scalar {
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

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

pub(super) struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar;

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
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(v.to_string()))
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
