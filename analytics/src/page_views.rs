//! The `page_views` collection: one document per page a person was served,
//! with its time on page (measured from the page's pings, else estimated
//! from the next page view of the same visit, else unknown: `null`).

use std::collections::BTreeMap;

use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitlog_progress::DocumentError;
use visitlog_schema::{EventRecord, Learner, RequestRecord, Tutorial};

use crate::AnalyticsRules;
use crate::daily::day_of;

/// One page view, as stored in `page_views`. Built by [`visit_page_views`];
/// `fence` and `derived_at` are the caller's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageView {
    /// The request record's id.
    #[serde(rename = "_id")]
    pub id: String,
    /// Learner key (`user:<name>` or `visitor:<uuid>`); `None` without a
    /// user and without a visitor cookie.
    pub learner: Option<String>,
    /// The logged-in user.
    pub user: Option<String>,
    /// The browser's visitor id (hyphenated text).
    pub visitor_id: Option<String>,
    /// The browser's visit number.
    pub visit_number: Option<u32>,
    /// Path as requested.
    pub path: String,
    /// Matched route template.
    pub route: Option<String>,
    /// The tutorial page it was, if any.
    pub tutorial: Option<Tutorial>,
    /// When it was served.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub start: DateTime<Utc>,
    /// The last sign of it: its last ping, else `start`.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub last_seen: DateTime<Utc>,
    /// Σ min(active_ms, 20 s) of its pings, at most `time_on_page_s`.
    pub engaged_s: f64,
    /// Seconds on the page; `None` for the last page of a visit without pings.
    pub time_on_page_s: Option<f64>,
    /// `time_on_page_s` is the time to the next page view, not measured.
    pub estimated: bool,
    /// UTC day of `start`, `YYYY-MM-DD`.
    pub day: String,
    /// Pings counted.
    pub pings: u32,
    /// This page started a visit.
    pub new_visit: bool,
    /// The browser visited before (the middleware's `returning`).
    pub returning: Option<bool>,
    /// ISO country code.
    pub country: Option<String>,
    /// Browser name.
    pub browser: Option<String>,
    /// Operating system.
    pub os: Option<String>,
    /// Host of the referer, lowercase, without `www.`.
    pub referrer_domain: Option<String>,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

impl PageView {
    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Checks the `page_views` validator's rules that the types do not
    /// carry (lengths, ranges, patterns, finite numbers, dates RFC 3339
    /// can write), as the consumer does before every write: it accepts
    /// exactly what the JSON validator accepts of [`PageView::to_document`]
    /// (the property test in `tests::page_view_check` proves it).
    pub fn check(&self) -> Result<(), visitlog_schema::ValidationFailure> {
        use visitlog_schema::check::{
            date, length, number, optional_length, optional_number, refuse, uuid_text,
        };
        const LABEL: usize = 256;
        uuid_text("/_id", &self.id)?;
        optional_length("/learner", self.learner.as_ref(), 1, 272)?;
        optional_length("/user", self.user.as_ref(), 0, LABEL)?;
        if let Some(v) = &self.visitor_id {
            uuid_text("/visitor_id", v)?;
        }
        if self.visit_number == Some(0) {
            return refuse(
                "/visit_number",
                "less than the minimum of 1 (minimum)".to_owned(),
            );
        }
        length("/path", &self.path, 0, 2048)?;
        optional_length("/route", self.route.as_ref(), 0, LABEL)?;
        if let Some(t) = &self.tutorial {
            length("/tutorial/foss", &t.foss, 0, 512)?;
            length("/tutorial/tutorial", &t.tutorial, 0, 512)?;
            length("/tutorial/language", &t.language, 0, 512)?;
        }
        date("/start", &self.start)?;
        date("/last_seen", &self.last_seen)?;
        number("/engaged_s", self.engaged_s, 0.0, f64::MAX)?;
        optional_number("/time_on_page_s", self.time_on_page_s, 0.0, f64::MAX)?;
        let day = self.day.as_bytes();
        let is_day = day.len() == 10
            && day.iter().enumerate().all(|(i, c)| match i {
                4 | 7 => *c == b'-',
                _ => c.is_ascii_digit(),
            });
        if !is_day {
            return refuse("/day", "not YYYY-MM-DD (pattern)".to_owned());
        }
        optional_length("/country", self.country.as_ref(), 0, LABEL)?;
        optional_length("/browser", self.browser.as_ref(), 0, LABEL)?;
        optional_length("/os", self.os.as_ref(), 0, LABEL)?;
        optional_length("/referrer_domain", self.referrer_domain.as_ref(), 1, 2048)?;
        date("/derived_at", &self.derived_at)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }

    /// The visit it belongs to (see [`visit_key`]).
    pub fn visit(&self) -> String {
        match (&self.visitor_id, self.visit_number) {
            (Some(v), Some(n)) => format!("{v}:{n}"),
            _ => format!("page:{}", self.id),
        }
    }
}

/// Whether a request record is a page view: a GET answered 2xx with HTML,
/// to a person (not a bot) who is not staff. Records from before
/// `content_type` count when the path's last segment has no extension.
pub fn is_page_view(r: &RequestRecord) -> bool {
    let html = match r.content_type.as_deref() {
        Some(t) => t == "text/html" || t == "application/xhtml+xml",
        None => !r.path.rsplit('/').next().unwrap_or_default().contains('.'),
    };
    r.method == "GET" && (200..=299).contains(&r.status) && !r.ua.is_bot && !r.staff && html
}

/// The visit of a request record: `<visitor>:<n>`, or `page:<id>` without
/// a visitor cookie (such a page view is a visit of its own).
pub fn visit_key(r: &RequestRecord) -> String {
    match (r.visitor_id, r.visit_number) {
        (Some(v), Some(n)) => format!("{v}:{n}"),
        _ => format!("page:{}", r.id),
    }
}

/// The host of a referer URL, lowercase, without `www.` and port; `None`
/// when there is none to read.
pub fn referrer_domain(referer: &str) -> Option<String> {
    let rest = referer.split_once("://").map_or(referer, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let host = match host.strip_prefix('[') {
        // An IPv6 literal keeps its colons.
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    (!host.is_empty()).then(|| host.to_owned())
}

/// The page views of one visit (its request records, in any order; records
/// that are not page views are left out) with their times on page, from
/// `pings`: the `page.ping`/`page.hide` events naming one of them (in any
/// order; others are ignored). Sorted by `start`, then `_id`.
///
/// Pass one visit at a time: a page without pings is measured to the next
/// page of the same visit, and records of other visits are grouped apart.
pub fn visit_page_views(
    pages: &[RequestRecord],
    pings: &[EventRecord],
    rules: &AnalyticsRules,
) -> Vec<PageView> {
    let mut views: Vec<&RequestRecord> = pages.iter().filter(|r| is_page_view(r)).collect();
    views.sort_by_key(|r| (r.ts, r.id));
    views.dedup_by_key(|r| r.id);
    // The next page of the same visit, for estimates.
    let mut next: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut out: Vec<PageView> = views
        .iter()
        .rev()
        .map(|r| {
            let visit = visit_key(r);
            let following = next.insert(visit, r.ts);
            build(r, following, pings, rules)
        })
        .collect();
    out.reverse();
    out
}

fn build(
    r: &RequestRecord,
    next: Option<DateTime<Utc>>,
    pings: &[EventRecord],
    rules: &AnalyticsRules,
) -> PageView {
    let learner = Learner::of(r.user.as_deref(), r.visitor_id).map(|l| l.key());
    let horizon = chrono::Duration::from_std(rules.ping_horizon).unwrap_or(chrono::Duration::MAX);
    let own = |e: &&EventRecord| {
        e.event_type.is_page_activity()
            && e.page_view == Some(r.id)
            && Some(&e.learner) == learner.as_ref()
            && !e.staff
            && e.ts >= r.ts
            && e.ts - r.ts <= horizon
    };
    // A ping stored twice (same `_id`) counts once.
    let mut mine: Vec<&EventRecord> = pings.iter().filter(own).collect();
    mine.sort_by_key(|e| e.id);
    mine.dedup_by_key(|e| e.id);
    let seconds = |d: chrono::Duration| d.num_milliseconds() as f64 / 1000.0;
    let (last_seen, time_on_page_s, estimated, engaged_s) = match mine.iter().map(|e| e.ts).max() {
        Some(last) => {
            let time = seconds(last - r.ts);
            let engaged: f64 = mine.iter().map(|e| rules.engaged_of(e.active_ms)).sum();
            (last, Some(time), false, engaged.min(time))
        }
        None => match next {
            Some(n) => {
                let cap = seconds(
                    chrono::Duration::from_std(rules.visit_timeout)
                        .unwrap_or(chrono::Duration::MAX),
                );
                (r.ts, Some(seconds(n - r.ts).min(cap)), true, 0.0)
            }
            // Unknown, not 0: the visit's last page without pings.
            None => (r.ts, None, false, 0.0),
        },
    };
    let text = |s: &Option<String>| s.clone().filter(|s| !s.is_empty());
    PageView {
        id: r.id.to_string(),
        learner,
        user: r.user.clone(),
        visitor_id: r.visitor_id.map(|v| v.to_string()),
        visit_number: r.visit_number,
        path: r.path.clone(),
        route: r.route.clone(),
        tutorial: r.tutorial.clone(),
        start: r.ts,
        last_seen,
        engaged_s,
        time_on_page_s,
        estimated,
        day: day_of(r.ts),
        pings: u32::try_from(mine.len()).unwrap_or(u32::MAX),
        new_visit: r.new_visit.unwrap_or(false),
        returning: r.returning,
        country: r.geo.as_ref().and_then(|g| text(&g.country_code)),
        browser: text(&r.ua.name),
        os: text(&r.ua.os),
        referrer_domain: r.referer.as_deref().and_then(referrer_domain),
        fence: 0,
        derived_at: DateTime::UNIX_EPOCH,
    }
}
