//! Watched seconds of one video, exactly: one bit per second (bit `k` is
//! the second `[k, k+1)`), at most [`MAX_SECONDS`] of them, so a skimmed
//! two-hour lecture stores what was watched and nothing more (10.8 KB at
//! the limit, 75 bytes for ten minutes). The `watched` intervals of the API
//! are derived from it for display only; coverage is counted on the bits.

use std::ops::Range;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest video the events endpoint accepts, in seconds.
pub const MAX_SECONDS: u32 = 86_400;

/// Most intervals in the derived `watched` list; beyond it the closest
/// intervals are shown merged (coverage never reads this list).
pub const MAX_WATCHED_INTERVALS: usize = 256;

/// A set of whole seconds. Stored as the base64 text of its bytes (low bit
/// first), without trailing zero bytes, so equal sets are equal documents
/// whatever the history. Text rather than BSON binary: 4/3 the size, but
/// every tool and test server reads it, and JSON shows it as is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seconds(Vec<u8>);

impl Seconds {
    /// Any bytes, past the bound too: for the check's tests.
    #[cfg(test)]
    pub(crate) fn from_raw(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Bytes stored (each base64 text of 4 characters holds 3).
    pub(crate) fn stored_bytes(&self) -> usize {
        self.0.len()
    }

    /// Adds the seconds in `range` (those past [`MAX_SECONDS`] are dropped).
    pub fn insert(&mut self, range: Range<u32>) {
        let end = range.end.min(MAX_SECONDS);
        if range.start >= end {
            return;
        }
        let bytes = end.div_ceil(8) as usize;
        if self.0.len() < bytes {
            self.0.resize(bytes, 0);
        }
        for k in range.start..end {
            self.0[(k / 8) as usize] |= 1 << (k % 8);
        }
    }

    /// Whether second `k` is in the set.
    pub fn contains(&self, k: u32) -> bool {
        self.0
            .get((k / 8) as usize)
            .is_some_and(|b| b & (1 << (k % 8)) != 0)
    }

    /// How many seconds below `end` are in the set.
    pub fn count_below(&self, end: u32) -> u32 {
        let whole = ((end / 8) as usize).min(self.0.len());
        let mut n: u32 = self.0[..whole].iter().map(|b| b.count_ones()).sum();
        if let Some(b) = self.0.get(whole) {
            let mask = (1u16 << (end % 8)) - 1;
            n += (u16::from(*b) & mask).count_ones();
        }
        n
    }

    /// How many seconds are in the set.
    pub fn len(&self) -> u32 {
        self.count_below(MAX_SECONDS)
    }

    /// No second at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The set as sorted, disjoint `[start, end)` intervals, exactly.
    pub fn intervals(&self) -> Vec<[u32; 2]> {
        let mut out: Vec<[u32; 2]> = Vec::new();
        let mut open: Option<u32> = None;
        for (i, &byte) in self.0.iter().enumerate() {
            let base = i as u32 * 8;
            // Whole bytes inside or outside a run need no bit by bit look
            // (the fold derives this list after every event).
            match (byte, open) {
                (0x00, None) | (0xff, Some(_)) => continue,
                _ => {}
            }
            for bit in 0..8 {
                let set = byte & (1 << bit) != 0;
                match (set, open) {
                    (true, None) => open = Some(base + bit),
                    (false, Some(start)) => {
                        out.push([start, base + bit]);
                        open = None;
                    }
                    _ => {}
                }
            }
        }
        if let Some(start) = open {
            out.push([start, self.0.len() as u32 * 8]);
        }
        out
    }

    /// The set from `[start, end)` intervals (documents written before the
    /// bits, whose `watched` was the truth).
    pub fn from_intervals(intervals: &[[u32; 2]]) -> Self {
        let mut s = Self::default();
        for [a, b] in intervals {
            s.insert(*a..*b);
        }
        s
    }

    fn trimmed(mut bytes: Vec<u8>) -> Self {
        while bytes.last() == Some(&0) {
            bytes.pop();
        }
        bytes.truncate(MAX_SECONDS.div_ceil(8) as usize);
        Self(bytes)
    }
}

/// The `watched` list of the API: the exact intervals, or when there are
/// more than [`MAX_WATCHED_INTERVALS`], with the smallest gaps closed (the
/// first of equal gaps first), as the list always was.
pub fn watched_intervals(seconds: &Seconds) -> Vec<[u32; 2]> {
    let exact = seconds.intervals();
    if exact.len() <= MAX_WATCHED_INTERVALS {
        return exact;
    }
    // Keep the largest gaps (among equals the latest: the earliest close
    // first, as the old merging did), close the rest.
    let mut gaps: Vec<(u32, usize)> = exact
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1][0] - w[0][1], i))
        .collect();
    gaps.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut kept: Vec<usize> = gaps[..MAX_WATCHED_INTERVALS - 1]
        .iter()
        .map(|g| g.1)
        .collect();
    kept.sort_unstable();
    let mut out = Vec::with_capacity(MAX_WATCHED_INTERVALS);
    let mut start = exact[0][0];
    for i in kept {
        out.push([start, exact[i][1]]);
        start = exact[i + 1][0];
    }
    out.push([start, exact[exact.len() - 1][1]]);
    out
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl<'de> Visitor<'de> for Bytes {
            type Value = Seconds;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("base64 text, one bit per second")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                let bytes = STANDARD.decode(v).map_err(E::custom)?;
                Ok(Seconds::trimmed(bytes))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Seconds, E> {
                Ok(Seconds::trimmed(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Seconds, E> {
                Ok(Seconds::trimmed(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seconds, A::Error> {
                let mut v = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Seconds::trimmed(v))
            }
        }
        d.deserialize_any(Bytes)
    }
}
