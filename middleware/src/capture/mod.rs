//! Capturing requests: the tower layer, its service, response future and
//! body, and the guard that finishes each request's record.
//!
//! [`CaptureLayer::new`] builds the layer together with its [`crate::Shipper`].
//! Per request, [`Capture`] asks the `Policy` whether to record it, copies cheap handles into a [`Captured`] record
//! held by a `Pending` guard; [`ResponseFuture`] stamps the response head on
//! it and [`ResponseBody`] counts the bytes. However the request ends, the
//! guard's `Drop` hands the record to the shipper: the one place a record is
//! finished. Dependencies point one way: layer → service → future → body →
//! pending → [`crate::shared`].
//!
//! [`Captured`]: crate::enrich::Captured

mod body;
mod future;
mod layer;
mod pending;
mod policy;
mod service;

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use layer::CaptureLayer;
pub use service::{Capture, MatchedRoute, NotRecorded, RecordId, VisitorId};
