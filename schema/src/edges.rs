//! Values at the validators' edges, as proptest strategies: what the typed
//! checks' property tests (`visitlog-progress`, `visitlog-analytics`) build
//! documents from, so each rule is tried just inside and just outside.

use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// Numbers around `0` and `max`, and the ones JSON has no form for.
pub fn number(max: f64) -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(-1e-9),
        Just(max),
        Just(max + max.max(1.0) * 1e-9),
        0.0..=max,
        -1e6..1e6,
    ]
}

/// Text of 0, 1 or about `max` characters, some of them two bytes long.
pub fn text(max: usize) -> impl Strategy<Value = String> {
    (
        prop_oneof![Just(0), Just(1), max - 1..=max + 2],
        any::<bool>(),
    )
        .prop_map(|(n, wide)| if wide { "é".repeat(n) } else { "a".repeat(n) })
}

/// Dates around the years RFC 3339 can write (0 to 9999), and today's.
pub fn date() -> impl Strategy<Value = DateTime<Utc>> {
    /// 0000-01-01 and 10000-01-01, in milliseconds since 1970.
    const FIRST: i64 = -62_167_219_200_000;
    const PAST: i64 = 253_402_300_800_000;
    prop_oneof![
        (FIRST - 2..FIRST + 2),
        (PAST - 2..PAST + 2),
        (0..4_000_000_000_000_i64),
    ]
    .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap_or_default())
}
