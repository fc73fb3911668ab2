//! Site analytics for visitlog: the rules that turn stored request records,
//! events and `tutorial_progress` documents into the documents the course
//! team reads, as pure functions with no I/O.
//!
//! One module per derived collection, each with its document type (one
//! serde type that writes and reads it, checked against the validator in
//! `visitlog-schema`) and the fold that builds it:
//!
//! - `page_views`: [`visit_page_views`] (one visit's pages and their pings),
//! - `sessions`: [`SessionFold`] / [`sessions`] (one learner's activity),
//! - `video_stats`: [`VideoStatsFold`] (one video's progress documents),
//! - `tutorial_daily` / `site_daily`: [`TutorialDay`] / [`SiteDay`],
//! - `rollups`: [`Rollup`] of a [`Period`] (a day from [`SiteDay`], a month
//!   from its days through [`PeriodSum`]), with [`Sketch`]es for distinct counts.
//!
//! The consumer reads the raw documents with `find`, feeds them here and
//! writes what comes out, setting `fence` and `derived_at`; recomputing a
//! key from the same documents, in any order, gives the same document, so
//! replays and races converge. [`AnalyticsRules`] holds every threshold.
//!
//! ```
//! use visitlog_analytics::{AnalyticsRules, visit_page_views};
//! use visitlog_schema::RequestRecord;
//!
//! let page = RequestRecord::example();
//! let views = visit_page_views(&[page], &[], &AnalyticsRules::default());
//! // The only page of its visit, without pings: time on page unknown, not 0.
//! assert_eq!(views[0].time_on_page_s, None);
//! ```

mod daily;
mod page_views;
mod rollup;
mod rules;
mod sessions;
mod sketch;
mod videos;

#[cfg(feature = "reader")]
pub mod staff;

pub use daily::{
    Count, DayFold, SiteDaily, SiteDay, Totals, TutorialDaily, TutorialDay, TutorialDayKey, day_of,
    tutorial_day_id,
};
pub use page_views::{PageView, is_page_view, referrer_domain, visit_key, visit_page_views};
pub use rollup::{
    DayPart, FossDay, FossPart, Period, PeriodSum, Reach, Rollup, Span, TOP_KEPT, TutorialPart,
    VideoIndex, VideoReach, period_of, rollup_id,
};
pub use rules::AnalyticsRules;
pub use sessions::{Device, Session, SessionFold, SessionTutorial, session_id, sessions};
pub use sketch::{Sketch, id_hash};
pub use videos::{Segment, VideoStats, VideoStatsFold};
pub use visitlog_progress::DocumentError;
use visitlog_schema::hashed_id;

#[cfg(test)]
mod tests;
