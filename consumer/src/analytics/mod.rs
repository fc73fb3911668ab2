//! Site analytics: the documents the course team reads (`page_views`,
//! `sessions`, `video_stats`, `tutorial_daily`, `site_daily`), computed
//! again from stored records whenever a batch touched them, never counted
//! up: a replayed, reordered or doubly consumed batch cannot change a
//! figure. The rules are `visitlog-analytics`'; this module reads, writes
//! and schedules.
//!
//! [`marks`] holds which keys must be computed again and the claims that
//! share the work between consumers; [`batch`] the marks a stored batch
//! makes; [`journal`] writes them as one document, expanded later;
//! [`engine`] the loop, which [`backlog`] holds back while the queue has a
//! backlog; one file per kind computes it (`visits`, `learners`, `videos`,
//! `days`); [`store`] reads and writes.

pub mod backlog;
pub mod batch;
mod days;
pub mod engine;
pub mod journal;
mod learners;
pub mod marks;
mod setup;
pub mod store;
mod videos;
mod visits;

pub use backlog::Backlog;
pub use engine::{Analytics, Passed};
pub use marks::{Claimed, DerivedKind, Mark, Marks, Settled};
