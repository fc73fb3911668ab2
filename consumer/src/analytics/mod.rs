//! Site analytics: the documents the course team reads (`page_views`,
//! `sessions`, `video_stats`, `tutorial_daily`, `site_daily`), computed
//! again from stored records whenever a batch touched them, never counted
//! up: a replayed, reordered or doubly consumed batch cannot change a
//! figure. [`marks`] holds which keys must be computed again and the claims
//! that share the work between consumers.

pub mod marks;

pub use marks::{Claimed, DerivedKind, Mark, Marks, Settled};
