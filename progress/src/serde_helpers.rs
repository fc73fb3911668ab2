//! How fields are stored, where serde's default is not the stored form:
//! counts as BSON `long`, read back from any BSON number (documents written
//! by hand or by older versions may hold an `int` or a `double`), and UUIDs
//! as text whichever BSON deserializer reads them.
//!
//! `f64` fields need no helper: serde reads an `int` or `long` into an `f64`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Any BSON number, as `f64` (what readers have always accepted).
struct AnyNumber(f64);

impl<'de> Deserialize<'de> for AnyNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        f64::deserialize(d).map(AnyNumber)
    }
}

/// A count stored as `long`.
pub(crate) trait Whole: Copy {
    fn to_i64(self) -> i64;
    /// Saturating, as `as` casts: a negative or fractional stored value
    /// reads as the nearest count rather than failing the document.
    fn from_f64(v: f64) -> Self;
}

impl Whole for u32 {
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn from_f64(v: f64) -> Self {
        v as u32
    }
}

impl Whole for u64 {
    fn to_i64(self) -> i64 {
        i64::try_from(self).unwrap_or(i64::MAX)
    }
    fn from_f64(v: f64) -> Self {
        v as u64
    }
}

/// `#[serde(with = "whole")]`: a count stored as `long`, read from any number.
pub(crate) mod whole {
    use super::*;

    pub(crate) fn serialize<T: Whole, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(v.to_i64())
    }

    pub(crate) fn deserialize<'de, T: Whole, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        AnyNumber::deserialize(d).map(|n| T::from_f64(n.0))
    }
}

/// `#[serde(with = "wholes")]`: a list of counts stored as `long`s, read
/// from any numbers.
pub(crate) mod wholes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[u32], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|n| i64::from(*n))
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        Ok(Vec::<AnyNumber>::deserialize(d)?
            .into_iter()
            .map(|n| u32::from_f64(n.0))
            .collect())
    }
}

/// `#[serde(with = "intervals")]`: `[[start, end], ...]` whole seconds,
/// stored as `long`s.
pub(crate) mod intervals {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &[[u32; 2]], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|[a, b]| [i64::from(*a), i64::from(*b)])
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<[u32; 2]>, D::Error> {
        let pairs = Vec::<[AnyNumber; 2]>::deserialize(d)?;
        Ok(pairs
            .into_iter()
            .map(|[a, b]| [u32::from_f64(a.0), u32::from_f64(b.0)])
            .collect())
    }
}

/// `#[serde(with = "uuid_text")]`: a UUID as its hyphenated text. Spelled
/// out because `uuid` writes bytes to a deserializer that says it is not
/// human-readable (the driver's raw one), and the stored form is text.
pub(crate) mod uuid_text {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn serialize<S: Serializer>(v: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "uuid_list")]`: UUIDs as a list of their hyphenated texts.
pub(crate) mod uuid_list {
    use super::*;
    use uuid::Uuid;

    pub(crate) fn serialize<S: Serializer>(v: &[Uuid], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Uuid>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .collect()
    }
}
