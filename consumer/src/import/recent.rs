//! The one bound on the state an import keeps across lines (open viewings,
//! served pages, sessions' visits): entries idle too long by the log's own
//! clock go, and past a maximum the older half goes too. Keys are bounded
//! in size by their owners ([`MAX_KEY`]), so memory is bounded in bytes,
//! whatever a hostile log's ids.

use std::collections::HashMap;
use std::hash::Hash;

/// Longest id (bytes) kept as a key of this state: a session, path,
/// course or video id beyond it is not remembered across lines.
pub(crate) const MAX_KEY: usize = 512;

/// Drops from `map` what was last seen `keep_ms` or longer before
/// `now_ms` (by `last_ms`); if `max` or more entries remain, the older
/// half of them (all but those newer than the median).
pub(crate) fn trim<K: Eq + Hash, V>(
    map: &mut HashMap<K, V>,
    now_ms: i64,
    keep_ms: i64,
    max: usize,
    last_ms: impl Fn(&V) -> i64,
) {
    map.retain(|_, v| now_ms - last_ms(v) < keep_ms);
    if map.len() >= max {
        let mut times: Vec<i64> = map.values().map(&last_ms).collect();
        times.sort_unstable();
        let cut = times[times.len() / 2];
        map.retain(|_, v| last_ms(v) > cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_entries_go_then_the_older_half() {
        let mut map: HashMap<u32, i64> = (0..10).map(|i| (i, i64::from(i) * 10)).collect();
        trim(&mut map, 100, 50, 100, |t| *t);
        assert_eq!(map.len(), 4, "60, 70, 80, 90 are under 50 ms idle");
        trim(&mut map, 100, 50, 4, |t| *t);
        let mut left: Vec<i64> = map.values().copied().collect();
        left.sort_unstable();
        assert_eq!(left, vec![90], "only what is newer than the median");
    }
}
