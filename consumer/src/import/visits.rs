//! Visits of imported requests. edX logs have no visitor cookie; their
//! `session` (the browser's login session) stands for the visitor, and,
//! as the layer does with its cookie and Matomo's log importer does, a
//! request after more than the visit timeout (`VISITLOG_VISIT_TIMEOUT`,
//! 30 minutes) of the session's inactivity starts a new visit.
//!
//! A visit's number is the minute it began (since 1970), not a count:
//! imports of consecutive files each start without state, and a count
//! would give a session's visits in the second file the numbers of its
//! visits in the first. A visit open across two files imported apart is
//! two visits; imported together, one. A visit is returning when the
//! import saw an earlier visit of the session within the returning
//! window. The state is bounded as the viewings' is: sessions idle past
//! the returning window are dropped as the log's clock moves on, and
//! there are never more than [`MAX_SESSIONS`] (the oldest half goes).

use std::collections::HashMap;

use uuid::Uuid;

use super::recent::trim;
use visitlog_middleware::Visit;

/// Sessions remembered at most.
pub(crate) const MAX_SESSIONS: usize = 100_000;

/// How often (ms of log time) sessions idle past the window are dropped.
const SWEEP_MS: i64 = 6 * 3600 * 1000;

#[derive(Debug, Clone, Copy)]
struct Session {
    visitor_id: Uuid,
    /// The open visit's number (the minute it began) and first request.
    visit_number: u32,
    started_ms: i64,
    /// The latest request, ms.
    last_ms: i64,
    returning: bool,
}

/// Each session's open visit.
#[derive(Debug)]
pub(crate) struct Visits {
    timeout_ms: i64,
    window_ms: i64,
    sessions: HashMap<String, Session>,
    swept_ms: i64,
}

impl Visits {
    /// Visits ended by `timeout` of inactivity; returning within `window`.
    pub(crate) fn new(timeout: std::time::Duration, window: std::time::Duration) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        Self {
            timeout_ms: ms(timeout).max(1),
            window_ms: ms(window),
            sessions: HashMap::new(),
            swept_ms: 0,
        }
    }

    fn sweep(&mut self, at_ms: i64) {
        if at_ms - self.swept_ms < SWEEP_MS && self.sessions.len() < MAX_SESSIONS {
            return;
        }
        // Kept while a visit could still return (idle up to the window).
        let keep = self.window_ms.max(self.timeout_ms).saturating_add(1);
        trim(&mut self.sessions, at_ms, keep, MAX_SESSIONS, |s| s.last_ms);
        self.swept_ms = at_ms;
    }

    /// The visit of a request of `session` (whose visitor is `visitor`,
    /// made only when the session is new) at `at_ms`.
    pub(crate) fn visit(
        &mut self,
        session: &str,
        at_ms: i64,
        visitor: impl FnOnce() -> Uuid,
    ) -> Visit {
        self.sweep(at_ms);
        let number = |ms: i64| {
            u32::try_from(ms.div_euclid(60_000))
                .unwrap_or(u32::MAX)
                .max(1)
        };
        let (timeout, window) = (self.timeout_ms, self.window_ms);
        if !self.sessions.contains_key(session) {
            let state = Session {
                visitor_id: visitor(),
                visit_number: number(at_ms),
                started_ms: at_ms,
                last_ms: at_ms,
                returning: false,
            };
            self.sessions.insert(session.to_owned(), state);
            return past(&state, true);
        }
        let Some(state) = self.sessions.get_mut(session) else {
            unreachable!("inserted above")
        };
        // In the open visit: after its start, within the timeout of the
        // latest request (or before it, for lines slightly out of order).
        if at_ms >= state.started_ms && at_ms - state.last_ms <= timeout {
            state.last_ms = state.last_ms.max(at_ms);
            return past(state, false);
        }
        // Before the open visit (logs out of order): a visit of its own,
        // leaving the open one as it is.
        if at_ms < state.started_ms {
            return Visit {
                visitor_id: state.visitor_id,
                visit_number: number(at_ms),
                new_visit: true,
                returning: false,
            };
        }
        state.returning = at_ms > state.last_ms && at_ms - state.last_ms <= window;
        state.visit_number = number(at_ms);
        state.started_ms = at_ms;
        state.last_ms = at_ms;
        past(state, true)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

fn past(s: &Session, new_visit: bool) -> Visit {
    Visit {
        visitor_id: s.visitor_id,
        visit_number: s.visit_number,
        new_visit,
        returning: s.returning,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIN: i64 = 60_000;

    fn visits() -> Visits {
        Visits::new(
            Duration::from_secs(30 * 60),
            Duration::from_secs(183 * 86_400),
        )
    }

    #[test]
    fn thirty_idle_minutes_end_a_visit_and_the_next_is_returning() {
        let mut v = visits();
        let id = Uuid::from_u128(7);
        let t0 = 1_414_231_200_000; // 2014-10-25T10:00:00Z
        let first = v.visit("s", t0, || id);
        assert_eq!(first.visitor_id, id);
        assert!(first.new_visit && !first.returning);
        assert_eq!(first.visit_number, u32::try_from(t0 / MIN).unwrap());
        let same = v.visit("s", t0 + 29 * MIN, || unreachable!());
        assert_eq!(same.visit_number, first.visit_number);
        assert!(!same.new_visit);
        // Within 30 minutes of the latest request, not of the first.
        let still = v.visit("s", t0 + 58 * MIN, || unreachable!());
        assert_eq!(still.visit_number, first.visit_number);
        let next = v.visit("s", t0 + 89 * MIN, || unreachable!());
        assert!(next.new_visit && next.returning);
        assert_eq!(next.visit_number, first.visit_number + 89);
        assert_eq!(next.visitor_id, id);
        let other = v.visit("t", t0 + 89 * MIN, || Uuid::from_u128(8));
        assert_eq!(other.visitor_id, Uuid::from_u128(8));
        assert!(other.new_visit && !other.returning);
    }

    #[test]
    fn a_line_slightly_out_of_order_stays_in_its_visit() {
        let mut v = visits();
        let t0 = 1_414_231_200_000;
        let first = v.visit("s", t0, || Uuid::from_u128(1));
        v.visit("s", t0 + 10 * MIN, || unreachable!());
        let late = v.visit("s", t0 + 5 * MIN, || unreachable!());
        assert_eq!(late.visit_number, first.visit_number);
        assert!(!late.new_visit);
        // Before the visit began: a visit of its own; the open one goes on.
        let earlier = v.visit("s", t0 - 120 * MIN, || unreachable!());
        assert!(earlier.new_visit);
        assert_ne!(earlier.visit_number, first.visit_number);
        let after = v.visit("s", t0 + 20 * MIN, || unreachable!());
        assert_eq!(after.visit_number, first.visit_number);
    }

    #[test]
    fn sessions_are_bounded() {
        let mut v = visits();
        for i in 0..(MAX_SESSIONS + 10) {
            v.visit(&format!("s{i}"), i as i64, || Uuid::from_u128(1));
        }
        assert!(v.len() <= MAX_SESSIONS);
        // Past the returning window, every idle session goes.
        v.visit("late", 400 * 86_400 * 1000, || Uuid::from_u128(2));
        assert_eq!(v.len(), 1);
    }
}
