//! The `sessions` collection: a learner's activity (page views, pings,
//! learning events) cut where it pauses longer than the session timeout,
//! across devices; each session with its engaged time, the media seconds
//! the progress rules credit, and where it began and ended.

use std::collections::{BTreeMap, VecDeque};

use bson::Document;
use bson::serde_helpers::chrono_datetime_as_bson_datetime;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use visitlog_progress::{DocumentError, Progress};
use visitlog_schema::{EventRecord, Tutorial};

use crate::daily::day_of;
use crate::{AnalyticsRules, PageView, hashed_id};

/// Page views remembered to give a ping its page's tutorial: pings come
/// within the ping horizon of their page, far fewer than this apart.
const RECENT_PAGES: usize = 256;

/// One tutorial's share of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTutorial {
    /// The tutorial.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial.
    pub language: String,
    /// Engaged seconds of pings from its pages.
    pub engaged_s: f64,
    /// Media seconds credited to its videos.
    pub video_s: f64,
}

/// A browser and operating system a session used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Browser name.
    pub browser: Option<String>,
    /// Operating system.
    pub os: Option<String>,
}

/// One session, as stored in `sessions`; `fence` and `derived_at` are the caller's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// [`session_id`] of `learner` and `start`.
    #[serde(rename = "_id")]
    pub id: String,
    /// Learner key.
    pub learner: String,
    /// First activity.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub start: DateTime<Utc>,
    /// Last activity.
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub end: DateTime<Utc>,
    /// `end − start` in seconds.
    pub duration_s: f64,
    /// Σ min(active_ms, 20 s) of its pings.
    pub engaged_s: f64,
    /// Page views starting in it.
    pub page_views: u32,
    /// Per tutorial (sorted by foss, tutorial, language).
    pub tutorials: Vec<SessionTutorial>,
    /// Media seconds the progress rules credited to its video events.
    pub video_s: f64,
    /// Distinct browser/OS pairs of its page views, first seen first.
    pub devices: Vec<Device>,
    /// Country of its first page view.
    pub country: Option<String>,
    /// Its first page view's `returning` (no page view, or unknown: false).
    pub returning: bool,
    /// Path of its first page view.
    pub entry_path: Option<String>,
    /// Path of its last page view.
    pub exit_path: Option<String>,
    /// One page view and under 10 s engaged.
    pub bounce: bool,
    /// Under 5 s long (kept, flagged).
    pub short: bool,
    /// UTC day of `start`.
    pub day: String,
    /// Which derivation claim wrote it (set by the caller).
    pub fence: i64,
    /// When it was derived (set by the caller).
    #[serde(with = "chrono_datetime_as_bson_datetime")]
    pub derived_at: DateTime<Utc>,
}

impl Session {
    /// The stored document (BSON dates).
    pub fn to_document(&self) -> Result<Document, DocumentError> {
        Ok(bson::to_document(self)?)
    }

    /// Reads a stored document back.
    pub fn from_document(doc: &Document) -> Result<Self, DocumentError> {
        Ok(bson::from_document(doc.clone())?)
    }
}

/// The `_id` of a session: 32 hex digits of SHA-256 over the learner and
/// the start in milliseconds, so a recompute finds the same document.
pub fn session_id(learner: &str, start: DateTime<Utc>) -> String {
    hashed_id(&[learner, &start.timestamp_millis().to_string()])
}

/// A session being built.
#[derive(Debug)]
struct Open {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    engaged_s: f64,
    page_views: u32,
    tutorials: BTreeMap<(String, String, String), (f64, f64)>,
    video_s: f64,
    devices: Vec<Device>,
    first: Option<(Option<String>, bool, String)>,
    exit_path: Option<String>,
}

/// Sessions of one learner, folded from its activity in time order: page
/// views ([`SessionFold::add_page`]) and events ([`SessionFold::add_event`],
/// in `_id` order), interleaved by time (a page before an event of the same
/// instant). [`sessions`] merges two sorted streams for you.
///
/// Memory: the open session, the recent pages' tutorials and one progress
/// state per tutorial touched (to credit `video_s` by the progress rules).
#[derive(Debug)]
pub struct SessionFold {
    learner: String,
    rules: AnalyticsRules,
    open: Option<Open>,
    done: Vec<Session>,
    pages: VecDeque<(String, Option<Tutorial>)>,
    progress: BTreeMap<String, Progress>,
}

impl SessionFold {
    /// No activity yet, for `learner` (a learner key).
    pub fn new(learner: &str, rules: AnalyticsRules) -> Self {
        Self {
            learner: learner.to_owned(),
            rules,
            open: None,
            done: Vec::new(),
            pages: VecDeque::new(),
            progress: BTreeMap::new(),
        }
    }

    /// A page view of this learner (others are ignored).
    pub fn add_page(&mut self, p: &PageView) {
        if p.learner.as_deref() != Some(self.learner.as_str()) {
            return;
        }
        let s = self.at(p.start);
        s.page_views += 1;
        let device = Device {
            browser: p.browser.clone(),
            os: p.os.clone(),
        };
        if !s.devices.contains(&device) {
            s.devices.push(device);
        }
        if s.first.is_none() {
            s.first = Some((
                p.country.clone(),
                p.returning.unwrap_or(false),
                p.path.clone(),
            ));
        }
        s.exit_path = Some(p.path.clone());
        if let Some(t) = &p.tutorial {
            s.tutorials.entry(key(t)).or_default();
        }
        self.pages.push_back((p.id.clone(), p.tutorial.clone()));
        if self.pages.len() > RECENT_PAGES {
            self.pages.pop_front();
        }
    }

    /// An event of this learner: a ping adds engaged time, a learning event
    /// its credited media seconds. Staff events and other learners' are ignored.
    pub fn add_event(&mut self, e: &EventRecord) {
        if e.staff || e.learner != self.learner {
            return;
        }
        let rules = self.rules;
        if e.event_type.is_page_activity() {
            let engaged = rules.engaged_of(e.active_ms);
            let page = e.page_view.map(|id| id.to_string());
            let tutorial = self
                .pages
                .iter()
                .rev()
                .find(|(id, _)| Some(id) == page.as_ref())
                .and_then(|(_, t)| t.clone());
            let s = self.at(e.ts);
            s.engaged_s += engaged;
            if let Some(t) = tutorial {
                s.tutorials.entry(key(&t)).or_default().0 += engaged;
            }
            return;
        }
        // Page views (the consumer's `page.view` events) are folded too:
        // they set the budgets that tell a real stretch from a suspect one.
        let credited = self.credit(e, &rules);
        let s = self.at(e.ts);
        let t = (e.foss.clone(), e.tutorial.clone(), e.language.clone());
        s.tutorials.entry(t).or_default().1 += credited;
        s.video_s += credited;
    }

    /// The sessions, oldest first.
    pub fn finish(mut self) -> Vec<Session> {
        self.close();
        self.done
    }

    /// The increase of Σ `played_s` one event makes in its progress state.
    fn credit(&mut self, e: &EventRecord, rules: &AnalyticsRules) -> f64 {
        let id = e.progress_id();
        let state = self.progress.remove(&id);
        let before = state.as_ref().map_or(0.0, played);
        let after = Progress::fold_one(state, e, &rules.progress);
        let gain = played(&after) - before;
        self.progress.insert(id, after);
        gain.max(0.0)
    }

    /// The session activity at `t` belongs to, opening a new one after a
    /// gap longer than the timeout.
    fn at(&mut self, t: DateTime<Utc>) -> &mut Open {
        let timeout =
            chrono::Duration::from_std(self.rules.session_timeout).unwrap_or(chrono::Duration::MAX);
        if self.open.as_ref().is_some_and(|s| t - s.end > timeout) {
            self.close();
        }
        let s = self.open.get_or_insert_with(|| Open {
            start: t,
            end: t,
            engaged_s: 0.0,
            page_views: 0,
            tutorials: BTreeMap::new(),
            video_s: 0.0,
            devices: Vec::new(),
            first: None,
            exit_path: None,
        });
        s.end = s.end.max(t);
        s
    }

    fn close(&mut self) {
        let Some(s) = self.open.take() else {
            return;
        };
        let duration_s = (s.end - s.start).num_milliseconds() as f64 / 1000.0;
        let (country, returning, entry_path) = match s.first {
            Some((c, r, p)) => (c, r, Some(p)),
            None => (None, false, None),
        };
        self.done.push(Session {
            id: session_id(&self.learner, s.start),
            learner: self.learner.clone(),
            start: s.start,
            end: s.end,
            duration_s,
            engaged_s: s.engaged_s,
            page_views: s.page_views,
            tutorials: s
                .tutorials
                .into_iter()
                .map(
                    |((foss, tutorial, language), (engaged_s, video_s))| SessionTutorial {
                        foss,
                        tutorial,
                        language,
                        engaged_s,
                        video_s,
                    },
                )
                .collect(),
            video_s: s.video_s,
            devices: s.devices,
            country,
            returning,
            entry_path,
            exit_path: s.exit_path,
            bounce: s.page_views == 1 && s.engaged_s < self.rules.bounce_engaged_s,
            short: duration_s < self.rules.short_session_s,
            day: day_of(s.start),
            fence: 0,
            derived_at: DateTime::UNIX_EPOCH,
        });
    }
}

/// The sessions of `learner` from its page views (sorted by `start`, then
/// `_id`) and events (sorted by `_id`), merged by time.
pub fn sessions<'a>(
    learner: &str,
    pages: impl IntoIterator<Item = &'a PageView>,
    events: impl IntoIterator<Item = &'a EventRecord>,
    rules: &AnalyticsRules,
) -> Vec<Session> {
    let mut fold = SessionFold::new(learner, *rules);
    let mut pages = pages.into_iter().peekable();
    for e in events {
        while let Some(p) = pages.next_if(|p| p.start <= e.ts) {
            fold.add_page(p);
        }
        fold.add_event(e);
    }
    pages.for_each(|p| fold.add_page(p));
    fold.finish()
}

fn key(t: &Tutorial) -> (String, String, String) {
    (t.foss.clone(), t.tutorial.clone(), t.language.clone())
}

fn played(p: &Progress) -> f64 {
    p.videos.iter().map(|v| v.played_s).sum()
}
