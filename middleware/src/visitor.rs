//! The first-party visitor cookie: who this browser is, and whether this
//! request starts a visit and whether that visit is a returning one.
//!
//! The cookie value is `v1.<payload>.<mac>`, base64url, where the payload is
//! `visitor_id:first_seen:last_activity:visit_number:returning` (Unix seconds)
//! and the MAC is HMAC-SHA256 under the configured key. Anything that does not
//! verify is a new visitor (and counted), never trusted.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// Clock skew tolerated between cookie times and now.
const SKEW_SECS: i64 = 300;

/// Cookie values whose signature was verified, kept so that a returning
/// browser's next requests skip the HMAC (its value changes at most once a
/// minute). Only verified values get in, so forged cookies cannot fill it.
const VERIFIED_CAPACITY: usize = 16_384;

/// The longest cookie value we could have signed.
const MAX_COOKIE_VALUE: usize = 256;

/// The visit-related fields of one request: from the visitor cookie for
/// live requests, worked out by the importer for historic ones
/// ([`crate::PastRequest::visit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    /// The browser (the visitor cookie's id).
    pub visitor_id: Uuid,
    /// Which of the visitor's visits.
    pub visit_number: u32,
    /// The visit's first request.
    pub new_visit: bool,
    /// The visitor had a visit within the returning window before.
    pub returning: bool,
}

/// What [`VisitorTracker::observe`] decided.
#[derive(Debug)]
pub(crate) struct Observed {
    /// `None` when the browser asked not to be tracked.
    pub(crate) visit: Option<Visit>,
    /// The `Set-Cookie` header to add to the response.
    pub(crate) set_cookie: Option<HeaderValue>,
    /// A cookie was present but forged, tampered with or unreadable.
    pub(crate) rejected: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    visitor_id: Uuid,
    first_seen: i64,
    last_activity: i64,
    visit_number: u32,
    returning: bool,
}

impl State {
    fn visit(&self, new_visit: bool) -> Visit {
        Visit {
            visitor_id: self.visitor_id,
            visit_number: self.visit_number,
            new_visit,
            returning: self.returning,
        }
    }
}

pub(crate) struct VisitorTracker {
    mac: HmacSha256,
    cookie_name: String,
    secure: bool,
    visit_timeout: i64,
    returning_window: i64,
    /// Last-activity times are refreshed in steps of this many seconds
    /// (a thirtieth of the visit timeout, at most a minute).
    refresh_after: i64,
    respect_dnt: bool,
    verified: quick_cache::sync::Cache<Box<str>, State>,
}

impl VisitorTracker {
    pub(crate) fn new(
        key: &[u8],
        cookie_name: String,
        secure: bool,
        visit_timeout: Duration,
        returning_window: Duration,
        respect_dnt: bool,
    ) -> Self {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self {
            // HMAC accepts keys of any length.
            mac: HmacSha256::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
            cookie_name,
            secure,
            visit_timeout: secs(visit_timeout),
            returning_window: secs(returning_window),
            refresh_after: (secs(visit_timeout) / 30).min(60),
            respect_dnt,
            verified: quick_cache::sync::Cache::new(VERIFIED_CAPACITY),
        }
    }

    pub(crate) fn observe(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Observed {
        if self.respect_dnt && opted_out(headers) {
            return Observed {
                visit: None,
                set_cookie: None,
                rejected: false,
            };
        }
        let now = now.timestamp();
        let mut rejected = false;
        let mut previous = None;
        for value in self.cookie_values(headers) {
            match self.verify(value, now) {
                Some(state) => {
                    previous = Some(state);
                    break;
                }
                None => rejected = true,
            }
        }
        if previous.is_some() {
            rejected = false;
        }
        let (state, new_visit) = match previous {
            None => (
                State {
                    visitor_id: Uuid::now_v7(),
                    first_seen: now,
                    last_activity: now,
                    visit_number: 1,
                    returning: false,
                },
                true,
            ),
            Some(prev) => {
                let idle = (now - prev.last_activity).max(0);
                if idle < self.refresh_after {
                    // Recent enough: the cookie stands as it is, and the
                    // request pays for one HMAC check instead of two.
                    let visit = prev.visit(false);
                    return Observed {
                        visit: Some(visit),
                        set_cookie: None,
                        rejected: false,
                    };
                }
                if idle <= self.visit_timeout {
                    (
                        State {
                            last_activity: now.max(prev.last_activity),
                            ..prev
                        },
                        false,
                    )
                } else {
                    let state = State {
                        last_activity: now,
                        visit_number: prev.visit_number.saturating_add(1),
                        returning: idle <= self.returning_window,
                        ..prev
                    };
                    (state, true)
                }
            }
        };
        Observed {
            visit: Some(state.visit(new_visit)),
            set_cookie: Some(self.set_cookie(&state)),
            rejected,
        }
    }

    /// The visit a valid cookie names, without renewing it; for handlers
    /// that run outside the layer.
    pub(crate) fn peek(&self, headers: &HeaderMap, now: DateTime<Utc>) -> Option<Visit> {
        if self.respect_dnt && opted_out(headers) {
            return None;
        }
        let now = now.timestamp();
        self.cookie_values(headers)
            .find_map(|value| self.verify(value, now))
            .map(|state| state.visit(false))
    }

    fn cookie_values<'h>(&'h self, headers: &'h HeaderMap) -> impl Iterator<Item = &'h str> + 'h {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                (name == self.cookie_name).then_some(value.trim_matches('"'))
            })
    }

    /// The state a cookie value carries, if we signed it and its times
    /// make sense at `now`.
    fn verify(&self, value: &str, now: i64) -> Option<State> {
        // Never ours, and not worth hashing to find that out.
        if value.len() > MAX_COOKIE_VALUE {
            return None;
        }
        let state = match self.verified.get(value) {
            Some(state) => state,
            None => {
                let state = self.verify_signed(value)?;
                self.verified.insert(value.into(), state);
                state
            }
        };
        let sane =
            state.first_seen <= state.last_activity && state.last_activity <= now + SKEW_SECS;
        sane.then_some(state)
    }

    /// The state of a cookie value we signed.
    fn verify_signed(&self, value: &str) -> Option<State> {
        let mut parts = value.split('.');
        let (Some("v1"), Some(payload), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let tag = B64.decode(tag).ok()?;
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        mac.verify_slice(&tag).ok()?;
        // Signed by us: the fields are ours, but still checked for sanity.
        let payload = String::from_utf8(B64.decode(payload).ok()?).ok()?;
        let mut fields = payload.split(':');
        let state = State {
            visitor_id: Uuid::try_parse(fields.next()?).ok()?,
            first_seen: fields.next()?.parse().ok()?,
            last_activity: fields.next()?.parse().ok()?,
            visit_number: fields.next()?.parse().ok().filter(|n| *n >= 1)?,
            returning: match fields.next()? {
                "1" => true,
                "0" => false,
                _ => return None,
            },
        };
        fields.next().is_none().then_some(state)
    }

    fn set_cookie(&self, state: &State) -> HeaderValue {
        let payload = format!(
            "{}:{}:{}:{}:{}",
            state.visitor_id.simple(),
            state.first_seen,
            state.last_activity,
            state.visit_number,
            u8::from(state.returning)
        );
        let payload = B64.encode(payload);
        let mut mac = self.mac.clone();
        mac.update(payload.as_bytes());
        let tag = B64.encode(mac.finalize().into_bytes());
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}=v1.{payload}.{tag}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{secure}",
            self.cookie_name, self.returning_window
        );
        HeaderValue::try_from(cookie)
            .unwrap_or_else(|_| unreachable!("cookie is base64 and a checked name"))
    }
}

fn opted_out(headers: &HeaderMap) -> bool {
    const DNT: http::HeaderName = http::HeaderName::from_static("dnt");
    const SEC_GPC: http::HeaderName = http::HeaderName::from_static("sec-gpc");
    let is_one = |name: http::HeaderName| {
        headers
            .get(name)
            .is_some_and(|v| v.as_bytes().trim_ascii() == b"1")
    };
    is_one(DNT) || is_one(SEC_GPC)
}

#[cfg(test)]
mod tests {

    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn tracker() -> VisitorTracker {
        VisitorTracker::new(
            KEY,
            "vid".into(),
            false,
            Duration::from_secs(30 * 60),
            Duration::from_secs(183 * 86400),
            true,
        )
    }

    fn with_cookie(set_cookie: &HeaderValue) -> HeaderMap {
        let pair = set_cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let mut h = HeaderMap::new();
        h.insert(
            http::header::COOKIE,
            HeaderValue::try_from(format!("other=1; {pair}")).unwrap(),
        );
        h
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        at_secs(minutes * 60)
    }

    fn at_secs(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_763_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn the_cookie_is_refreshed_once_a_minute_not_on_every_request() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(0));
        let cookie = with_cookie(first.set_cookie.as_ref().unwrap());
        let soon = t.observe(&cookie, at_secs(59));
        assert!(soon.set_cookie.is_none());
        assert_eq!(
            soon.visit.unwrap().visitor_id,
            first.visit.unwrap().visitor_id
        );
        assert!(!soon.visit.unwrap().new_visit);
        let later = t.observe(&cookie, at_secs(60));
        assert!(later.set_cookie.is_some());
    }

    #[test]
    fn a_new_browser_gets_a_signed_cookie_with_safe_flags() {
        let seen = tracker().observe(&HeaderMap::new(), at(0));
        let visit = seen.visit.unwrap();
        assert_eq!(
            (visit.visit_number, visit.new_visit, visit.returning),
            (1, true, false)
        );
        let cookie = seen.set_cookie.unwrap();
        let cookie = cookie.to_str().unwrap();
        assert!(cookie.starts_with("vid=v1."), "{cookie}");
        for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=15811200"] {
            assert!(cookie.contains(flag), "{cookie}");
        }
        assert!(!cookie.contains("Secure"));
        assert!(!seen.rejected);
    }

    #[test]
    fn requests_within_the_timeout_stay_in_the_visit() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(0));
        let second = t.observe(&with_cookie(first.set_cookie.as_ref().unwrap()), at(29));
        let (a, b) = (first.visit.unwrap(), second.visit.unwrap());
        assert_eq!(a.visitor_id, b.visitor_id);
        assert_eq!(
            (b.visit_number, b.new_visit, b.returning),
            (1, false, false)
        );
        // Activity slides the window: 29 + 29 minutes is still one visit.
        let third = t.observe(&with_cookie(second.set_cookie.as_ref().unwrap()), at(58));
        assert!(!third.visit.unwrap().new_visit);
    }

    #[test]
    fn after_the_timeout_a_returning_visit_starts() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(0));
        let back = t.observe(&with_cookie(first.set_cookie.as_ref().unwrap()), at(31));
        let visit = back.visit.unwrap();
        assert_eq!(
            (visit.visit_number, visit.new_visit, visit.returning),
            (2, true, true)
        );
        assert_eq!(visit.visitor_id, first.visit.unwrap().visitor_id);
        // Later requests of that visit are still returning, not new.
        let more = t.observe(&with_cookie(back.set_cookie.as_ref().unwrap()), at(35));
        let more = more.visit.unwrap();
        assert_eq!(
            (more.visit_number, more.new_visit, more.returning),
            (2, false, true)
        );
    }

    #[test]
    fn a_visit_after_the_returning_window_is_not_returning() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(0));
        let later = t.observe(
            &with_cookie(first.set_cookie.as_ref().unwrap()),
            at(184 * 24 * 60),
        );
        let visit = later.visit.unwrap();
        assert_eq!(
            (visit.visit_number, visit.new_visit, visit.returning),
            (2, true, false)
        );
    }

    #[test]
    fn a_verified_cookie_is_remembered_but_its_times_are_checked_each_time() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(10));
        let cookie = with_cookie(first.set_cookie.as_ref().unwrap());
        // Verified once, then from the cache: the same visitor.
        for _ in 0..2 {
            let seen = t.observe(&cookie, at(11));
            assert!(!seen.rejected);
            assert_eq!(
                seen.visit.unwrap().visitor_id,
                first.visit.unwrap().visitor_id
            );
        }
        // Its last activity lies in the future of a clock set back past the
        // tolerated skew: refused, though its signature is remembered.
        let early = t.observe(&cookie, at(0));
        assert!(early.rejected);
        assert_ne!(
            early.visit.unwrap().visitor_id,
            first.visit.unwrap().visitor_id
        );
    }

    #[test]
    fn forged_and_tampered_cookies_are_new_visitors_and_counted() {
        let t = tracker();
        let first = t.observe(&HeaderMap::new(), at(0));
        let good = first
            .set_cookie
            .unwrap()
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let value = good.split_once('=').unwrap().1.to_owned();
        let (head, tag) = value.rsplit_once('.').unwrap();
        let mut flipped = tag.as_bytes().to_vec();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let other_key = VisitorTracker::new(
            b"another key, another site, 32+ bytes!!",
            "vid".into(),
            false,
            Duration::from_secs(1800),
            Duration::from_secs(86400),
            false,
        )
        .observe(&HeaderMap::new(), at(0))
        .set_cookie
        .unwrap();
        let foreign = other_key
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        for bad in [
            format!("{head}.{}", String::from_utf8(flipped).unwrap()),
            format!(
                "v1.{}.{tag}",
                B64.encode("00000000000000000000000000000000:0:0:99:1")
            ),
            foreign,
            "v1.garbage".to_owned(),
            "x".repeat(300),
            String::new(),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                http::header::COOKIE,
                HeaderValue::try_from(format!("vid={bad}")).unwrap(),
            );
            let seen = t.observe(&h, at(1));
            assert!(seen.rejected, "{bad}");
            let visit = seen.visit.unwrap();
            assert_ne!(visit.visitor_id, first.visit.unwrap().visitor_id);
            assert_eq!(
                (visit.visit_number, visit.new_visit, visit.returning),
                (1, true, false)
            );
        }
    }

    #[test]
    fn do_not_track_gets_no_cookie_and_no_id() {
        for header in ["dnt", "sec-gpc"] {
            let mut h = HeaderMap::new();
            h.insert(header, HeaderValue::from_static("1"));
            let seen = tracker().observe(&h, at(0));
            assert!(seen.visit.is_none() && seen.set_cookie.is_none());
        }
    }

    #[test]
    fn secure_flag_when_configured() {
        let t = VisitorTracker::new(
            KEY,
            "vid".into(),
            true,
            Duration::from_secs(60),
            Duration::from_secs(60),
            false,
        );
        let cookie = t.observe(&HeaderMap::new(), at(0)).set_cookie.unwrap();
        assert!(cookie.to_str().unwrap().ends_with("; Secure"));
    }

    /// Property tests: `PROPTEST_CASES=100000 scripts/bench` runs them at length.
    mod proptests {
        use proptest::prelude::*;

        use super::*;

        fn at(secs: i64) -> DateTime<Utc> {
            at_secs(secs)
        }

        /// The `name=value` part of a `Set-Cookie`.
        fn pair(set_cookie: &HeaderValue) -> String {
            let text = set_cookie.to_str().unwrap_or_default();
            text.split(';').next().unwrap_or_default().to_owned()
        }

        proptest! {
            #[test]
            fn proptest_cookie_anything_sent_is_a_new_visitor_never_a_panic(
                value in proptest::collection::vec(any::<u8>(), 0..400),
                cookie_value in "v1\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,60}",
            ) {
                let t = tracker();
                for raw in [value.clone(), format!("vid={cookie_value}").into_bytes()] {
                    let Ok(header) = HeaderValue::from_bytes(&raw) else { continue };
                    let mut headers = HeaderMap::new();
                    headers.insert(http::header::COOKIE, header);
                    let seen = t.observe(&headers, at(0));
                    // Without our key nobody makes a cookie we accept.
                    let visit = seen.visit.expect("no DNT here");
                    prop_assert_eq!((visit.visit_number, visit.new_visit, visit.returning), (1, true, false));
                    prop_assert!(seen.set_cookie.is_some());
                    prop_assert!(t.peek(&headers, at(0)).is_none());
                }
            }

            #[test]
            fn proptest_cookie_a_tampered_byte_is_refused_and_ours_is_kept(
                gaps in proptest::collection::vec(0i64..400 * 86400, 1..6),
                flip in any::<prop::sample::Index>(),
                byte in any::<u8>(),
            ) {
                let t = tracker();
                let first = t.observe(&HeaderMap::new(), at(0));
                let id = first.visit.expect("a visit").visitor_id;
                let mut cookie = first.set_cookie.map(|c| pair(&c)).unwrap_or_default();
                let mut now = 0;
                let mut visits = 1;
                for gap in gaps {
                    now += gap;
                    let mut headers = HeaderMap::new();
                    headers.insert(http::header::COOKIE, HeaderValue::try_from(cookie.as_str()).expect("ours is ASCII"));
                    let seen = t.observe(&headers, at(now));
                    let visit = seen.visit.expect("a visit");
                    prop_assert_eq!(visit.visitor_id, id, "the visitor stays");
                    if visit.new_visit { visits += 1; }
                    prop_assert_eq!(visit.visit_number, visits);
                    if let Some(set) = seen.set_cookie { cookie = pair(&set); }
                }
                // One changed byte of the value, and it is a stranger's cookie.
                let mut bytes = cookie.into_bytes();
                let at_byte = 4 + flip.index(bytes.len() - 4);
                prop_assume!(bytes[at_byte] != byte);
                bytes[at_byte] = byte;
                if let Ok(header) = HeaderValue::from_bytes(&bytes) {
                    let mut headers = HeaderMap::new();
                    headers.insert(http::header::COOKIE, header);
                    let seen = t.observe(&headers, at(now));
                    let visit = seen.visit.expect("a visit");
                    prop_assert_ne!(visit.visitor_id, id);
                    prop_assert_eq!((visit.visit_number, visit.new_visit), (1, true));
                }
            }
        }
    }
}
