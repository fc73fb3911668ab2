//! The `tutorial_daily` and `site_daily` collections: per UTC day, counts
//! of page views, distinct visits, learners and anonymous visitors, time on
//! page, completions and video seconds, per tutorial and for the whole site
//! (plus sessions, bounces and the top countries, browsers, systems and
//! referrers). Accumulators take the day's documents in any order and keep
//! only sets of keys, so the same documents always give the same figures.

use std::collections::{BTreeMap, BTreeSet};

use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use visitlog_progress::{CompletedBy, DocumentError, Progress};

use crate::rollup::{DayPart, FossDay, FossPart, Period, Reach, TutorialPart, top};
use crate::{AnalyticsRules, PageView, Session, Sketch, hashed_id};

/// The UTC day of `t`, `YYYY-MM-DD`.
pub fn day_of(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// The `_id` of a `tutorial_daily` document.
pub fn tutorial_day_id(foss: &str, tutorial: &str, language: &str, day: &str) -> String {
    hashed_id(&[foss, tutorial, language, day])
}

/// 00:00 UTC of a `YYYY-MM-DD` day; the epoch for anything else.
fn midnight(day: &str) -> DateTime<Utc> {
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(DateTime::UNIX_EPOCH, |t| t.and_utc())
}

/// The totals both daily documents share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Page views that started that day.
    pub page_views: u64,
    /// Distinct visits among them.
    pub visits: u64,
    /// Distinct logged-in learners (`user:` keys) among them.
    pub learners: u64,
    /// Distinct visitor ids of pages without a user.
    pub anonymous_visitors: u64,
    /// Distinct visits whose pages say `returning: true`.
    pub returning_visits: u64,
    /// Σ `time_on_page_s` over pages with a time.
    pub time_on_page_s_sum: f64,
    /// Pages with a time (measured or estimated).
    pub time_on_page_n: u64,
    /// Tutorials completed that day by the watching rules.
    pub completions_auto: u64,
    /// Tutorials completed that day by the learner's own mark.
    pub completions_manual: u64,
    /// Media seconds credited in sessions that started that day.
    pub video_s: f64,
}

impl Totals {
    /// Adds `t` (the distinct counts too: a sum of days counts a learner
    /// once per day).
    pub fn add(&mut self, t: &Totals) {
        self.page_views += t.page_views;
        self.visits += t.visits;
        self.learners += t.learners;
        self.anonymous_visitors += t.anonymous_visitors;
        self.returning_visits += t.returning_visits;
        self.time_on_page_s_sum += t.time_on_page_s_sum;
        self.time_on_page_n += t.time_on_page_n;
        self.completions_auto += t.completions_auto;
        self.completions_manual += t.completions_manual;
        self.video_s += t.video_s;
    }
}

/// One tutorial's day, as stored in `tutorial_daily`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TutorialDaily {
    /// [`tutorial_day_id`].
    #[serde(rename = "_id")]
    pub id: String,
    /// The tutorial.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial.
    pub language: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// 00:00 UTC of `day`.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub date: DateTime<Utc>,
    /// The figures.
    #[serde(flatten)]
    pub totals: Totals,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

/// One entry of a top list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Country code, browser, system or referring domain.
    pub name: String,
    /// Visits.
    pub count: u64,
}

/// The whole site's day, as stored in `site_daily`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteDaily {
    /// The day.
    #[serde(rename = "_id")]
    pub id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// 00:00 UTC of `day`.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub date: DateTime<Utc>,
    /// The figures.
    #[serde(flatten)]
    pub totals: Totals,
    /// Sessions that started that day.
    pub sessions: u64,
    /// Those that were bounces.
    pub bounces: u64,
    /// Σ `duration_s` of those sessions (absent in documents derived
    /// before it was kept: read as 0).
    #[serde(default)]
    pub session_s_sum: f64,
    /// Visits per country (top 20, most first, ties by name).
    pub countries: Vec<Count>,
    /// Visits per browser.
    pub browsers: Vec<Count>,
    /// Visits per operating system.
    pub os: Vec<Count>,
    /// Visits per referring domain (entry pages only).
    pub referrers: Vec<Count>,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

macro_rules! documents {
    ($($t:ty),*) => {$(
        impl $t {
            /// The stored document (BSON dates).
            pub fn to_document(&self) -> Result<Document, DocumentError> {
                Ok(bson::to_document(self)?)
            }

            /// Reads a stored document back.
            pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
                Ok(bson::from_document(doc.clone())?)
            }
        }
    )*};
}
documents!(TutorialDaily, SiteDaily);

/// What takes one day's stored documents: [`TutorialDay`], [`SiteDay`],
/// or a caller's router feeding several of them from one read.
pub trait DayFold {
    /// A page view.
    fn add_page(&mut self, p: &PageView);
    /// A session.
    fn add_session(&mut self, s: &Session);
    /// A progress document.
    fn add_completion(&mut self, p: &Progress);
}

macro_rules! day_fold {
    ($($t:ty),*) => {$(
        impl DayFold for $t {
            fn add_page(&mut self, p: &PageView) {
                <$t>::add_page(self, p);
            }

            fn add_session(&mut self, s: &Session) {
                <$t>::add_session(self, s);
            }

            fn add_completion(&mut self, p: &Progress) {
                <$t>::add_completion(self, p);
            }
        }
    )*};
}
day_fold!(TutorialDay, SiteDay);

/// A visit's first page of the day: what the top lists count.
#[derive(Debug, Clone)]
struct First {
    at: (DateTime<Utc>, String),
    country: Option<String>,
    browser: Option<String>,
    os: Option<String>,
    /// The referrer, when this page started the visit.
    referrer: Option<String>,
}

/// The counts both days keep, over one day's documents in any order.
#[derive(Debug, Default)]
struct Counter {
    page_views: u64,
    visits: BTreeMap<String, First>,
    learners: BTreeSet<String>,
    anonymous: BTreeSet<String>,
    /// Visitor ids of every page, with or without a user.
    visitors: BTreeSet<String>,
    returning: BTreeSet<String>,
    time_sum: f64,
    time_n: u64,
    auto: u64,
    manual: u64,
    video_s: f64,
    /// Page and completion ids seen, so a document given twice counts once.
    seen: BTreeSet<String>,
}

impl Counter {
    fn page(&mut self, p: &PageView) {
        if !self.seen.insert(format!("page:{}", p.id)) {
            return;
        }
        self.page_views += 1;
        let visit = p.visit();
        if p.returning == Some(true) {
            self.returning.insert(visit.clone());
        }
        match p.learner.as_deref() {
            Some(l) if l.starts_with("user:") => {
                self.learners.insert(l.to_owned());
            }
            _ => {}
        }
        if let Some(v) = &p.visitor_id {
            if p.user.is_none() {
                self.anonymous.insert(v.clone());
            }
            self.visitors.insert(v.clone());
        }
        if let Some(t) = p.time_on_page_s {
            self.time_sum += t;
            self.time_n += 1;
        }
        let first = First {
            at: (p.start, p.id.clone()),
            country: p.country.clone(),
            browser: p.browser.clone(),
            os: p.os.clone(),
            referrer: p.referrer_domain.clone().filter(|_| p.new_visit),
        };
        match self.visits.get(&visit) {
            Some(old) if old.at <= first.at => {}
            _ => {
                self.visits.insert(visit, first);
            }
        }
    }

    fn completion(&mut self, p: &Progress, day: &str) {
        let Some(at) = p.completed_at else {
            return;
        };
        if p.staff || !p.completed || day_of(at) != day || !self.seen.insert(p.id.clone()) {
            return;
        }
        match p.completed_by {
            Some(CompletedBy::Manual) => self.manual += 1,
            Some(CompletedBy::Auto) => self.auto += 1,
            None => {}
        }
    }

    fn totals(&self) -> Totals {
        Totals {
            page_views: self.page_views,
            visits: self.visits.len() as u64,
            learners: self.learners.len() as u64,
            anonymous_visitors: self.anonymous.len() as u64,
            returning_visits: self.returning.len() as u64,
            time_on_page_s_sum: self.time_sum,
            time_on_page_n: self.time_n,
            completions_auto: self.auto,
            completions_manual: self.manual,
            video_s: self.video_s,
        }
    }

    /// Visits per value of `f` of their first page, the `n` largest.
    fn top(&self, n: usize, f: impl Fn(&First) -> Option<&String>) -> Vec<Count> {
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for first in self.visits.values() {
            if let Some(name) = f(first) {
                *counts.entry(name.clone()).or_default() += 1;
            }
        }
        top(counts, n)
    }

    /// Who the counted pages reached.
    fn reach(&self) -> Reach {
        let of = |set: &BTreeSet<String>| Sketch::of(set.iter().map(String::as_str));
        Reach {
            visitors: of(&self.visitors),
            learners: of(&self.learners),
        }
    }
}

/// Which tutorial and day a [`TutorialDay`] counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TutorialDayKey {
    /// The tutorial.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial.
    pub language: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
}

/// Accumulates one tutorial's day; documents of other tutorials or days,
/// and ones given twice, are ignored.
#[derive(Debug)]
pub struct TutorialDay {
    key: TutorialDayKey,
    counter: Counter,
    sessions: BTreeSet<String>,
}

impl TutorialDay {
    /// Nothing counted yet. (The rules are taken for symmetry with
    /// [`SiteDay`]; a tutorial's day uses none of them today.)
    pub fn new(key: TutorialDayKey, _rules: &AnalyticsRules) -> Self {
        Self {
            key,
            counter: Counter::default(),
            sessions: BTreeSet::new(),
        }
    }

    fn mine(&self, foss: &str, tutorial: &str, language: &str) -> bool {
        (foss, tutorial, language)
            == (
                self.key.foss.as_str(),
                self.key.tutorial.as_str(),
                self.key.language.as_str(),
            )
    }

    /// A page view (of this tutorial, starting this day).
    pub fn add_page(&mut self, p: &PageView) {
        let ok = p.day == self.key.day
            && p.tutorial
                .as_ref()
                .is_some_and(|t| self.mine(&t.foss, &t.tutorial, &t.language));
        if ok {
            self.counter.page(p);
        }
    }

    /// A session starting this day: its video seconds in this tutorial.
    pub fn add_session(&mut self, s: &Session) {
        if s.day != self.key.day || !self.sessions.insert(s.id.clone()) {
            return;
        }
        for t in &s.tutorials {
            if self.mine(&t.foss, &t.tutorial, &t.language) {
                self.counter.video_s += t.video_s;
            }
        }
    }

    /// A progress document of this tutorial: counted when it was completed this day.
    pub fn add_completion(&mut self, p: &Progress) {
        if self.mine(&p.foss, &p.tutorial, &p.language) {
            self.counter.completion(p, &self.key.day);
        }
    }

    /// The document.
    pub fn finish(self) -> TutorialDaily {
        let k = self.key;
        TutorialDaily {
            id: tutorial_day_id(&k.foss, &k.tutorial, &k.language, &k.day),
            date: midnight(&k.day),
            totals: self.counter.totals(),
            foss: k.foss,
            tutorial: k.tutorial,
            language: k.language,
            day: k.day,
            fence: 0,
            derived_at: DateTime::UNIX_EPOCH,
        }
    }
}

/// Accumulates the whole site's day; documents of other days, and ones
/// given twice, are ignored.
#[derive(Debug)]
pub struct SiteDay {
    day: String,
    top_n: usize,
    counter: Counter,
    sessions: BTreeSet<String>,
    bounces: u64,
    session_s: f64,
    /// The same counts per FOSS and per tutorial, for the day's rollup.
    foss: BTreeMap<String, Counter>,
    tutorials: BTreeMap<(String, String, String), Counter>,
}

impl SiteDay {
    /// Nothing counted yet for `day` (`YYYY-MM-DD`).
    pub fn new(day: &str, rules: &AnalyticsRules) -> Self {
        Self {
            day: day.to_owned(),
            top_n: rules.top_n,
            counter: Counter::default(),
            sessions: BTreeSet::new(),
            bounces: 0,
            session_s: 0.0,
            foss: BTreeMap::new(),
            tutorials: BTreeMap::new(),
        }
    }

    /// The counters of one tutorial and of its FOSS.
    fn parts(&mut self, foss: &str, tutorial: &str, language: &str) -> [&mut Counter; 2] {
        let t = self
            .tutorials
            .entry((foss.to_owned(), tutorial.to_owned(), language.to_owned()))
            .or_default();
        let f = self.foss.entry(foss.to_owned()).or_default();
        [t, f]
    }

    /// A page view starting this day.
    pub fn add_page(&mut self, p: &PageView) {
        if p.day != self.day {
            return;
        }
        self.counter.page(p);
        if let Some(t) = &p.tutorial {
            for c in self.parts(&t.foss, &t.tutorial, &t.language) {
                c.page(p);
            }
        }
    }

    /// A session starting this day.
    pub fn add_session(&mut self, s: &Session) {
        if s.day != self.day || !self.sessions.insert(s.id.clone()) {
            return;
        }
        self.counter.video_s += s.video_s;
        self.bounces += u64::from(s.bounce);
        self.session_s += s.duration_s;
        for t in &s.tutorials {
            for c in self.parts(&t.foss, &t.tutorial, &t.language) {
                c.video_s += t.video_s;
            }
        }
    }

    /// A progress document: counted when it was completed this day.
    pub fn add_completion(&mut self, p: &Progress) {
        self.counter.completion(p, &self.day);
        // Only a completion of this day opens its tutorial's part.
        if p.completed_at.is_some_and(|at| day_of(at) == self.day) {
            let day = self.day.clone();
            for c in self.parts(&p.foss, &p.tutorial, &p.language) {
                c.completion(p, &day);
            }
        }
    }

    /// The document.
    pub fn finish(self) -> SiteDaily {
        self.finish_with_period().0
    }

    /// The document, and the day as a [`Period`] for its rollup.
    pub fn finish_with_period(self) -> (SiteDaily, Period) {
        let c = &self.counter;
        let foss: Vec<FossPart> = self
            .foss
            .iter()
            .map(|(name, c)| FossPart {
                foss: name.clone(),
                totals: c.totals(),
                reach: c.reach(),
            })
            .collect();
        let foss_days = foss
            .iter()
            .map(|f| FossDay {
                foss: f.foss.clone(),
                totals: f.totals.clone(),
            })
            .collect();
        let tutorials = self
            .tutorials
            .iter()
            .map(|((foss, tutorial, language), c)| TutorialPart {
                foss: foss.clone(),
                tutorial: tutorial.clone(),
                language: language.clone(),
                totals: c.totals(),
                reach: c.reach(),
            })
            .collect();
        let daily = self.site_daily();
        let period = Period {
            totals: daily.totals.clone(),
            sessions: daily.sessions,
            bounces: daily.bounces,
            session_s_sum: daily.session_s_sum,
            reach: c.reach(),
            countries: daily.countries.clone(),
            browsers: daily.browsers.clone(),
            os: daily.os.clone(),
            referrers: daily.referrers.clone(),
            foss,
            tutorials,
            days: vec![DayPart {
                day: self.day.clone(),
                totals: daily.totals.clone(),
                sessions: daily.sessions,
                foss: foss_days,
            }],
        };
        (daily, period)
    }

    fn site_daily(&self) -> SiteDaily {
        let c = &self.counter;
        let n = self.top_n;
        SiteDaily {
            id: self.day.clone(),
            date: midnight(&self.day),
            totals: c.totals(),
            sessions: self.sessions.len() as u64,
            bounces: self.bounces,
            session_s_sum: self.session_s,
            countries: c.top(n, |f| f.country.as_ref()),
            browsers: c.top(n, |f| f.browser.as_ref()),
            os: c.top(n, |f| f.os.as_ref()),
            referrers: c.top(n, |f| f.referrer.as_ref()),
            day: self.day.clone(),
            fence: 0,
            derived_at: DateTime::UNIX_EPOCH,
        }
    }
}
