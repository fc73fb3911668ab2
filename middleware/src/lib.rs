//! A tower layer that turns every request into a rich log record and ships
//! it to a Redis list, without the request ever waiting for Redis.
//!
//! Per request, [`CaptureLayer`] records method, path, query (secrets
//! redacted), matched route and path parameters, status, latency, bytes sent,
//! referer, the client address (through trusted proxies only), its location
//! (MaxMind GeoIP), the parsed user agent, a signed first-party visitor cookie
//! that tells new from returning visits, the user and session (through an
//! [`Identify`] hook), and which tutorial page it was. The record format is
//! [`visitlog_schema::RequestRecord`].
//!
//! The request path does no I/O: it finishes the record when the response
//! body ends and hands it over with a non-blocking `try_send`. The
//! [`Shipper`], a background task the app spawns, batches records into
//! `RPUSH`es, buffers them (bounded) while Redis is unreachable, and flushes
//! on shutdown. Logging never fails or slows a request.
//!
//! The app can also declare what it offers, its tutorials and videos, with
//! a [`CatalogPublisher`] ([`CaptureLayer::catalog`]): its records take the
//! same shipper to the same queue.
//!
//! ```no_run
//! use std::time::Duration;
//! use axum::{Router, routing::get};
//! use visitlog_middleware::{CaptureLayer, Config, Identity};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (capture, shipper) = CaptureLayer::new(Config::from_env()?)?;
//! let capture = capture.identify(|req: &axum::http::request::Parts| {
//!     // Read your session here; no I/O.
//!     match req.headers.get("x-user").and_then(|v| v.to_str().ok()) {
//!         Some(user) => Identity::user(user),
//!         None => Identity::anonymous(),
//!     }
//! });
//! let shipper = shipper.spawn();
//!
//! let app = Router::new().route("/", get(|| async { "hello" })).layer(capture);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//!     // The README's sample also stops on SIGTERM.
//!     .with_graceful_shutdown(async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! let stats = shipper.shutdown(Duration::from_secs(5)).await;
//! println!("shipped {} records, dropped {}", stats.shipped, stats.dropped);
//! # Ok(()) }
//! ```
//!
//! With axum, add the layer with `Router::layer` so that the matched route
//! template is known, and serve with `into_make_service_with_connect_info` so
//! that the peer address is. Other tower/hyper stacks can insert the peer
//! `SocketAddr` and a [`MatchedRoute`] into the request extensions.

mod capture;
mod catalog;
mod config;
mod enrich;
mod error;
#[cfg(feature = "axum")]
mod events;
mod identity;
mod past;
mod shared;
mod shipper;
mod stats;
mod visitor;

pub use capture::{
    Capture, CaptureLayer, MatchedRoute, NotRecorded, RecordId, ResponseBody, ResponseFuture,
    VisitorId,
};
pub use catalog::{CatalogError, CatalogPublisher};
pub use config::{
    Config, DEFAULT_DENY_HEADERS, DEFAULT_DENY_PARAMS, MIN_COOKIE_KEY_LEN, RedisMode,
};
pub use enrich::client_ip::ForwardedHeader;
pub use error::ConfigError;
#[cfg(feature = "axum")]
pub use events::MAX_EVENTS_PER_REQUEST;
pub use identity::{FromExtension, Identify, Identity};
pub use past::{Enrichment, PastRequest};
pub use shipper::{Shipper, ShipperHandle};
pub use stats::Stats;
pub use visitlog_schema::{CatalogItem, Learner};
pub use visitor::Visit;

#[cfg(test)]
mod tests;

/// The README's Rust samples, compiled by `cargo test` so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
