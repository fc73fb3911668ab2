//! Pages the import has seen served, so that the `page_close` a browser
//! sends when one of them closes is not a second view of it.
//!
//! Open edX logs a page twice: the server's request event when it is
//! served, and the browser's `page_close` when the learner leaves it. Both
//! become request records only when the server's event is missing (logs
//! of the browser side only, or a page served outside the logs); otherwise
//! the close is counted as used, so page views are not doubled. The state
//! is bounded as the viewings' is: entries older than [`OPEN_MS`] of log
//! time are dropped as the log moves on, and there are never more than
//! [`MAX_PAGES`].

use std::collections::HashMap;

use super::recent::{MAX_KEY, trim};

/// A page served this long ago (ms of log time) is forgotten: its close,
/// if it comes, is a view of its own.
const OPEN_MS: i64 = 6 * 3600 * 1000;

/// Pages remembered at most.
pub(crate) const MAX_PAGES: usize = 100_000;

/// Whose page: the edX session (or the username without one) and the path.
type PageKey = (String, String);

/// Pages served, by session and path, with when.
#[derive(Debug, Default)]
pub(crate) struct OpenPages {
    served: HashMap<PageKey, i64>,
    swept_ms: i64,
}

impl OpenPages {
    fn sweep(&mut self, at_ms: i64) {
        if at_ms - self.swept_ms >= OPEN_MS || self.served.len() >= MAX_PAGES {
            trim(&mut self.served, at_ms, OPEN_MS, MAX_PAGES, |t| *t);
            self.swept_ms = at_ms;
        }
    }

    /// The server served `path` to `who` at `at_ms`.
    pub(crate) fn served(&mut self, who: &str, path: &str, at_ms: i64) {
        if who.len() > MAX_KEY || path.len() > MAX_KEY {
            return; // Not remembered: its close will be a view of its own.
        }
        self.sweep(at_ms);
        let at = self
            .served
            .entry((who.to_owned(), path.to_owned()))
            .or_default();
        *at = (*at).max(at_ms);
    }

    /// `who` closed `path` at `at_ms`: whether the import saw it served
    /// (then the close is no view of its own). Each serving matches one
    /// close.
    pub(crate) fn closed(&mut self, who: &str, path: &str, at_ms: i64) -> bool {
        self.sweep(at_ms);
        match self.served.remove(&(who.to_owned(), path.to_owned())) {
            Some(t) => t <= at_ms && at_ms - t < OPEN_MS,
            None => false,
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.served.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * 1000;

    #[test]
    fn a_close_matches_the_page_served_before_it_once() {
        let mut pages = OpenPages::default();
        pages.served("s1", "/courses/c/x/", 1000);
        assert!(
            !pages.closed("s2", "/courses/c/x/", 2000),
            "another session"
        );
        assert!(!pages.closed("s1", "/courses/c/y/", 2000), "another page");
        assert!(pages.closed("s1", "/courses/c/x/", 3000));
        assert!(!pages.closed("s1", "/courses/c/x/", 4000), "closed twice");
    }

    #[test]
    fn a_close_long_after_or_before_the_serving_is_a_view_of_its_own() {
        let mut pages = OpenPages::default();
        pages.served("s1", "/a", HOUR);
        assert!(!pages.closed("s1", "/a", 8 * HOUR));
        pages.served("s1", "/b", 10 * HOUR);
        assert!(!pages.closed("s1", "/b", 9 * HOUR));
    }

    #[test]
    fn overlong_ids_are_not_remembered() {
        let mut pages = OpenPages::default();
        let long = "x".repeat(MAX_KEY + 1);
        pages.served(&long, "/a", 1000);
        pages.served("s1", &long, 1000);
        assert_eq!(pages.len(), 0);
        assert!(!pages.closed(&long, "/a", 2000), "its close is a view");
    }

    #[test]
    fn pages_are_bounded() {
        let mut pages = OpenPages::default();
        for i in 0..(MAX_PAGES + 10) {
            pages.served(&format!("s{i}"), "/a", i as i64);
        }
        assert!(pages.len() <= MAX_PAGES);
        for i in 0..1000 {
            pages.served(&format!("t{i}"), "/a", 100 * HOUR + i);
        }
        assert_eq!(pages.len(), 1000, "a new day drops the pages of the last");
    }
}
