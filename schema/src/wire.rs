//! How record fields travel, for serde: the rules of the validators that a
//! type alone does not carry, enforced while parsing, so that a record
//! parsed straight from its JSON bytes is refused exactly where the
//! collection's `$jsonSchema` refuses it (see [`crate::check`] for the
//! rest: lengths, ranges, enums).
//!
//! - Ids are UUIDs in the one spelling the validators' patterns take:
//!   lower-case, hyphenated; `_id` also version 7 ([`id_v7`], [`uuid`]).
//!   Written as that text by every serializer, BSON's raw one included.
//! - A field the validator requires but allows to be null is required
//!   here too ([`nullable`]): serde alone reads a missing `Option` as null.
//! - A field the validator does not require but types as non-null may be
//!   missing, never null ([`not_null`]).
//! - `ts` is RFC 3339 text that is also a JSON Schema `date-time`
//!   ([`crate::record`]'s `ts_millis`).

use std::fmt;

use ::uuid::Uuid;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serializer};

/// `s` as a UUID when it is lower-case and hyphenated (`8-4-4-4-12`), the
/// validators' pattern; with `v7`, also version 7 of the RFC 4122 variant.
pub(crate) fn canonical_uuid(s: &str, v7: bool) -> Option<Uuid> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let shaped = b.iter().enumerate().all(|(i, &c)| match i {
        8 | 13 | 18 | 23 => c == b'-',
        _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
    });
    if !shaped || (v7 && (b[14] != b'7' || !matches!(b[19], b'8' | b'9' | b'a' | b'b'))) {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// Reads a UUID in its canonical spelling.
struct UuidText {
    v7: bool,
}

impl Visitor<'_> for UuidText {
    type Value = Uuid;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.v7 {
            f.write_str("a lower-case hyphenated UUID v7")
        } else {
            f.write_str("a lower-case hyphenated UUID")
        }
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Uuid, E> {
        canonical_uuid(s, self.v7).ok_or_else(|| {
            E::invalid_value(de::Unexpected::Other("another spelling or version"), &self)
        })
    }
}

/// Writes a UUID as lower-case hyphenated text, whatever the serializer
/// (`Uuid`'s own impl writes bytes to a binary one, BSON's raw serializer).
fn write_uuid<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(id.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
}

/// `_id`: a UUID v7, lower-case and hyphenated.
pub(crate) mod id_v7 {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        write_uuid(id, s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        d.deserialize_str(UuidText { v7: true })
    }
}

/// A required, nullable UUID, lower-case and hyphenated (`visitor_id`).
pub(crate) mod uuid {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => write_uuid(id, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Uuid>, D::Error> {
        struct Nullable;
        impl<'de> Visitor<'de> for Nullable {
            type Value = Option<Uuid>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null or a lower-case hyphenated UUID")
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_str(UuidText { v7: false }).map(Some)
            }
        }
        d.deserialize_option(Nullable)
    }
}

/// A required, nullable IP address, as text whatever the serializer
/// (`IpAddr`'s own impl writes octets to a binary one).
pub(crate) mod ip {
    use std::net::IpAddr;

    use super::*;

    pub(crate) fn serialize<S: Serializer>(ip: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
        match ip {
            Some(ip) => s.collect_str(ip),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
        Option::<IpAddr>::deserialize(d)
    }
}

/// A field that must be there and may be null: serde reads a missing
/// `Option` as `None` unless told otherwise, as here (a field with its own
/// `deserialize_with` and no `default` is required).
pub(crate) fn nullable<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)
}

/// A field that may be missing (with `#[serde(default)]`) but is never
/// null: its validator types it without `null`.
pub(crate) fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_canonical_spelling_is_a_uuid() {
        let id = Uuid::now_v7();
        let text = id.to_string();
        assert_eq!(canonical_uuid(&text, true), Some(id));
        assert_eq!(canonical_uuid(&text.to_uppercase(), false), None);
        assert_eq!(canonical_uuid(&id.simple().to_string(), false), None);
        assert_eq!(canonical_uuid(&format!("{{{text}}}"), false), None);
        assert_eq!(canonical_uuid(&id.urn().to_string(), false), None);
        let v4 = Uuid::from_u128(0x6ba7b810_9dad_41d1_80b4_00c04fd430c8);
        assert_eq!(canonical_uuid(&v4.to_string(), false), Some(v4));
        assert_eq!(canonical_uuid(&v4.to_string(), true), None, "not v7");
        // Version 7, but not the RFC 4122 variant.
        let odd = format!("{}c{}", &text[..19], &text[20..]);
        assert_eq!(canonical_uuid(&odd, true), None);
        assert!(canonical_uuid(&odd, false).is_some());
    }
}

/// A record's `_id` as records write it, for code that writes a record's
/// JSON without building the record (the capture layer's shipper).
#[derive(Debug, Clone, Copy)]
pub struct AsId(pub Uuid);

impl serde::Serialize for AsId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        id_v7::serialize(&self.0, s)
    }
}

/// A required, nullable UUID (`visitor_id`) as records write it.
#[derive(Debug, Clone, Copy)]
pub struct AsUuid(pub Option<Uuid>);

impl serde::Serialize for AsUuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        uuid::serialize(&self.0, s)
    }
}

/// A required, nullable IP address (`ip`) as records write it.
#[derive(Debug, Clone, Copy)]
pub struct AsIp(pub Option<std::net::IpAddr>);

impl serde::Serialize for AsIp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ip::serialize(&self.0, s)
    }
}

/// A time (`ts`) as records write it: RFC 3339 to the millisecond.
#[derive(Debug, Clone, Copy)]
pub struct AsTime(pub chrono::DateTime<chrono::Utc>);

impl serde::Serialize for AsTime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::record::ts_millis::serialize(&self.0, s)
    }
}
