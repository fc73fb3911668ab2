//! Staff analytics: the figures the consumer derived, read back for a range
//! of days ([`AnalyticsReader`], feature `reader`), and served to staff as a
//! JSON API with CSV ([`router`], feature `router`), behind the app's own
//! staff check ([`Authorize`] answering [`Access`]).
//!
//! ```no_run
//! # #[cfg(feature = "router")]
//! # async fn mount(db: mongodb::Database) -> axum::Router {
//! use visitlog_analytics::staff::{Access, AnalyticsReader, Scope, router};
//!
//! let reader = AnalyticsReader::new(&db);
//! let analytics = router(reader, |parts: &axum::http::request::Parts| {
//!     // The app's own check: who is logged in, and are they staff?
//!     match parts.headers.get("x-demo-user").and_then(|v| v.to_str().ok()) {
//!         None => Access::Unauthenticated,
//!         Some("admin") => Access::Learners(Scope::all().viewer("admin")),
//!         Some(_) => Access::Denied,
//!     }
//! });
//! axum::Router::new().nest("/staff/analytics", analytics)
//! # }
//! ```

mod figures;
mod range;
mod reader;

#[cfg(feature = "router")]
mod access;
#[cfg(feature = "router")]
mod api;
#[cfg(feature = "router")]
mod dashboard;
#[cfg(feature = "router")]
mod privacy;
#[cfg(feature = "router")]
mod table;

pub use figures::{
    DayRow, LearnerSession, LearnerTutorial, LearnerView, Overview, TutorialRow, UnwatchedVideo,
    VideoView,
};
pub use range::{DEFAULT_DAYS, MAX_DAYS, MAX_FOSS, Range, RangeError};
pub use reader::{AnalyticsReader, LEARNER_SESSIONS};

#[cfg(feature = "router")]
pub use access::{Access, Authorize, Scope};
#[cfg(feature = "router")]
pub use api::{DEFAULT_CONCURRENT_READS, StaffRouter, router};
#[cfg(feature = "router")]
pub use privacy::{DEFAULT_FLOOR, OTHER};
