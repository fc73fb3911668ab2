//! The answers to staff questions, as the JSON API and CSV give them. Every
//! figure's rule is in the README ("Analytics for staff"); `None` is a
//! figure that cannot be known (no page with a time, no session), never 0.

use chrono::{DateTime, Utc};
use serde::Serialize;
use visitlog_progress::{CompletedBy, CompletedRule};

use crate::Count;

/// The site's (or some FOSS's) figures over a range of days.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    /// First day, `YYYY-MM-DD`.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// The FOSS it is about; empty for the whole site.
    pub foss: Vec<String>,
    /// Page views.
    pub page_views: u64,
    /// Visits, summed over days (a visit over midnight counts on both).
    pub visits: u64,
    /// Distinct visitors (browsers) with a page view in the range.
    pub visitors: u64,
    /// Distinct logged-in learners with a page view in the range.
    pub learners: u64,
    /// Visits of browsers seen before.
    pub returning_visits: u64,
    /// Mean time on page over the pages whose time is known, in seconds.
    pub avg_time_on_page_s: Option<f64>,
    /// Sessions starting in the range (whole site only).
    pub sessions: Option<u64>,
    /// Their mean length, in seconds (whole site only).
    pub avg_session_s: Option<f64>,
    /// Share of them that were bounces, 0–1 (whole site only).
    pub bounce_rate: Option<f64>,
    /// Media seconds credited in sessions starting in the range.
    pub video_s: f64,
    /// Tutorials completed in the range, by the rules and by hand.
    pub completions: u64,
    /// One row per day of the range, days without traffic included.
    pub series: Vec<DayRow>,
    /// Visits per country, summed over each day's top 20 (whole site only).
    pub countries: Vec<Count>,
    /// Visits per browser, likewise.
    pub browsers: Vec<Count>,
    /// Visits per operating system, likewise.
    pub os: Vec<Count>,
    /// Visits per referring domain, likewise.
    pub referrers: Vec<Count>,
}

/// One day of an [`Overview`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DayRow {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Page views.
    pub page_views: u64,
    /// Visits.
    pub visits: u64,
    /// Distinct logged-in learners.
    pub learners: u64,
    /// Distinct visitors without a login.
    pub anonymous_visitors: u64,
    /// Sessions (whole site only).
    pub sessions: Option<u64>,
    /// Media seconds.
    pub video_s: f64,
    /// Completions.
    pub completions: u64,
}

/// One tutorial in one language over a range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TutorialRow {
    /// The software.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// Its language.
    pub language: String,
    /// The catalog's title, when listed.
    pub title: Option<String>,
    /// Page views.
    pub views: u64,
    /// Visits, summed over days.
    pub visits: u64,
    /// Distinct visitors (browsers) with a view of it.
    pub visitors: u64,
    /// Distinct logged-in learners with a view of it.
    pub learners: u64,
    /// Mean time on page, in seconds.
    pub avg_time_on_page_s: Option<f64>,
    /// Completions in the range.
    pub completions: u64,
    /// Media seconds credited in the range.
    pub video_s: f64,
    /// The main video (the catalog's), if any.
    pub video_id: Option<String>,
    /// Mean coverage of the main video over its viewers, all time (0–1).
    pub coverage_mean: Option<f64>,
    /// Whether any video second of it was credited in the range.
    pub watched: bool,
}

/// One video's engagement, over all time (see the README: progress keeps
/// the seconds a learner watched, not when).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct VideoView {
    /// The video.
    pub video_id: String,
    /// The catalog's title, when listed.
    pub title: Option<String>,
    /// Its tutorial.
    pub foss: Option<String>,
    /// Its tutorial.
    pub tutorial: Option<String>,
    /// Its tutorial.
    pub language: Option<String>,
    /// Seconds.
    pub duration: Option<f64>,
    /// Learners with a watched second.
    pub viewers: u64,
    /// Credited viewings.
    pub plays: u64,
    /// Media seconds watched, repeats included.
    pub watch_s: f64,
    /// Mean coverage over viewers (0–1).
    pub coverage_mean: Option<f64>,
    /// Completed tutorials whose main video it is.
    pub completions: u64,
    /// Viewers with a watched second in the first segment.
    pub users_at_start: u64,
    /// Viewers with a watched second in the closing segment.
    pub users_at_end: u64,
    /// Segment length, seconds.
    pub segment_s: u32,
    /// The drop-off curve.
    pub segments: Vec<crate::Segment>,
}

/// An active catalog video nobody watched in the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UnwatchedVideo {
    /// The video.
    pub video_id: String,
    /// Its tutorial.
    pub foss: String,
    /// Its tutorial.
    pub tutorial: String,
    /// Its tutorial.
    pub language: String,
    /// The catalog's title.
    pub title: String,
    /// Seconds.
    pub duration: Option<f64>,
    /// Its place in its FOSS's series.
    pub order: u32,
    /// Whether it is its tutorial's main video.
    pub main: bool,
    /// Learners who ever watched a second of it (before the range).
    pub viewers_ever: u64,
}

/// One learner's tutorials and sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LearnerView {
    /// The learner key (`user:alice`).
    pub learner: String,
    /// First day of the sessions listed.
    pub from: String,
    /// Last day, included.
    pub to: String,
    /// Every tutorial they opened (in scope), most recent first.
    pub tutorials: Vec<LearnerTutorial>,
    /// Their sessions starting in the range, most recent first.
    pub sessions: Vec<LearnerSession>,
    /// Whether more sessions exist than listed.
    pub sessions_truncated: bool,
}

/// A learner's progress in one tutorial.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnerTutorial {
    /// The tutorial.
    pub foss: String,
    /// The tutorial.
    pub tutorial: String,
    /// The tutorial.
    pub language: String,
    /// Completed.
    pub completed: bool,
    /// When.
    pub completed_at: Option<DateTime<Utc>>,
    /// By the rules or by hand.
    pub completed_by: Option<CompletedBy>,
    /// Which rule.
    pub completed_rule: Option<CompletedRule>,
    /// The main video.
    pub video_id: Option<String>,
    /// Share of its seconds watched (0–1).
    pub coverage: f64,
    /// Visits to its page.
    pub visits: u32,
    /// First visit.
    pub first_visit: Option<DateTime<Utc>>,
    /// Last visit.
    pub last_visit: Option<DateTime<Utc>>,
}

/// One session of a learner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LearnerSession {
    /// Its first activity.
    pub start: DateTime<Utc>,
    /// Its last.
    pub end: DateTime<Utc>,
    /// `end - start`, seconds.
    pub duration_s: f64,
    /// Active seconds the page measured.
    pub engaged_s: f64,
    /// Pages viewed.
    pub page_views: u32,
    /// Media seconds credited.
    pub video_s: f64,
    /// Tutorials it touched, `foss/tutorial/language`.
    pub tutorials: Vec<String>,
    /// Country of its first page.
    pub country: Option<String>,
    /// One page, no interaction.
    pub bounce: bool,
}
