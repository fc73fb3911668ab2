//! Learning progress for visitlog: what the consumer derives from learning
//! events, and how an app reads it back.
//!
//! - The documents: [`Progress`] is the `tutorial_progress` document and
//!   [`VideoPosition`] the `video_positions` one, each one serde type that
//!   writes and reads its document (`schema/validators/*.json` in
//!   `visitlog-schema` stays the contract they are tested against).
//! - The rules, as pure functions: [`Rules`], [`page_view`], the fold
//!   ([`Progress::fold`]) and when a batch forces a refold ([`needs_refold`]).
//! - With the `reader` feature, [`ProgressReader`]: resume positions and
//!   progress for a web app, by indexed lookups, and [`LanguageStatus`] /
//!   [`TutorialLanguages`]: one tutorial across its languages.
//!
//! A `tutorial_progress` document is a *fold* of the learner's events for
//! that tutorial and language, taken in `_id` order (UUID v7 given by the
//! server, so server-time order). The document keeps the fold's state and
//! where it got to (`through`, the newest event folded, and `folded`, how
//! many), so new events that are all newer are folded on top of it; an
//! event older than `through` (a late or replayed batch) makes the consumer
//! fold the whole history again from the `events` collection. Either way the
//! document is the same function of the same set of events, whatever the
//! batch order or split, and replaying events changes nothing.
//!
//! `video_positions` needs no fold: the newest event by `_id` wins.
//!
//! ```
//! use visitlog_progress::{Progress, Rules, VideoPosition};
//! use visitlog_schema::EventRecord;
//!
//! let event = EventRecord::example();
//! let progress = Progress::fold(None, [&event], &Rules::default()).unwrap();
//! assert_eq!(progress.folded, 1);
//! let doc = progress.to_document().unwrap();
//! assert_eq!(Progress::from_document(&doc).unwrap(), progress);
//! assert_eq!(VideoPosition::of(&event).unwrap().position, 42.0);
//! ```

mod bits;
mod check;
mod error;
mod event;
mod fold;
#[cfg(feature = "reader")]
mod reader;
mod rules;
mod serde_helpers;
mod status;
mod stretch;
mod tutorial;
mod validation;
mod video;
mod watching;

pub use bits::{MAX_SECONDS, MAX_WATCHED_INTERVALS, Seconds, watched_intervals};
pub use error::DocumentError;
#[cfg(feature = "reader")]
pub use error::ReadError;
pub use event::{event_document, event_from_document};
pub use fold::needs_refold;
#[cfg(feature = "reader")]
pub use reader::{ProgressReader, connect_database};
pub use rules::{MainVideo, Rules, page_view};
pub use status::{LanguageStatus, TutorialLanguages};
pub use stretch::{MAX_PAGE_VIEWS, MAX_STREAMS, PageView, Stream};
pub use tutorial::{
    CompletedBy, CompletedRule, MAX_CLIENT_EVENTS, MAX_RECENT_VISITORS, Manual, Progress,
    RecentVisit,
};
pub use validation::json_for_validation;
pub use video::VideoPosition;
pub use watching::{Credit, MAX_VIDEOS, SEGMENT_S, VideoProgress, credit};

#[cfg(test)]
mod tests;
