//! The `_id` of an imported record: a UUID v7 made of the event's own time
//! and a hash of the line it came from, so that importing a line again, from
//! the same file or an overlapping one, gives the same id (a duplicate, not
//! a second record), and ids still sort by event time as live ones sort by
//! server time.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// UUID v7 (RFC 9562): the 48-bit Unix time in milliseconds; in the 12 bits
/// after the version, the fraction of that millisecond (§6.2, method 3, so
/// events a few microseconds apart keep their order); the remaining 62 bits
/// from SHA-256 of `line` (trailing white space ignored). `None` before
/// 1970 or past the 48-bit field.
pub fn record_id(ts: DateTime<Utc>, line: &[u8]) -> Option<Uuid> {
    let ms = u64::try_from(ts.timestamp_millis()).ok()?;
    if ms >= 1 << 48 {
        return None;
    }
    let micros = u64::from(ts.timestamp_subsec_micros() % 1000);
    let fraction = (micros * 4096 / 1000) as u16;
    let hash = Sha256::digest(line.trim_ascii_end());
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70 | ((fraction >> 8) as u8 & 0x0f);
    bytes[7] = fraction as u8;
    bytes[8] = 0x80 | (hash[0] & 0x3f);
    bytes[9..].copy_from_slice(&hash[1..8]);
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn ids_are_v7_stable_and_ordered_by_time() {
        let line = br#"{"event_type":"play_video"}"#;
        let a = record_id(at("2014-10-25T10:00:00.123456Z"), line).unwrap();
        assert_eq!(a.get_version_num(), 7);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        // The millisecond is the UUID's own time.
        let (secs, nanos) = a.get_timestamp().unwrap().to_unix();
        assert_eq!((secs, nanos / 1_000_000), (1_414_231_200, 123));
        // Same line, same time: same id, trailing newline or not.
        assert_eq!(
            record_id(
                at("2014-10-25T10:00:00.123456Z"),
                b"{\"event_type\":\"play_video\"}\r\n"
            ),
            Some(a)
        );
        // Another line at the same time: another id.
        assert_ne!(record_id(at("2014-10-25T10:00:00.123456Z"), b"{}"), Some(a));
        // A few microseconds later sorts later, whatever the line.
        for other in [&b"{}"[..], b"zzz", b"{\"a\":1}"] {
            let b = record_id(at("2014-10-25T10:00:00.123900Z"), other).unwrap();
            assert!(b > a, "{b} after {a}");
        }
        // And the validators' pattern holds.
        let text = a.to_string();
        assert_eq!(&text[14..15], "7");
        assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn times_outside_the_field_have_no_id() {
        assert!(record_id(at("1969-12-31T23:59:59Z"), b"x").is_none());
        assert!(record_id(at("1970-01-01T00:00:00Z"), b"x").is_some());
    }
}
