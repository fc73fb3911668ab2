//! `visitlog-consumer`: moves records from the Redis list that
//! `visitlog-middleware` fills into MongoDB, losing nothing.
//!
//! - [`source`]: atomic moves from the queue into per-instance processing
//!   lists, and recovery of dead instances' batches; [`fleet`]: ids,
//!   heartbeats, typed instance reports and fleet-wide totals.
//! - [`batch`]: payloads checked against the collections' validators; bad
//!   ones become dead letters, the rest documents.
//! - [`sink`]: collections, validators and indexes; unordered bulk inserts in
//!   which a replayed record is a duplicate-key no-op.
//! - [`worker`]: the loop, with bounded batches in flight and graceful
//!   shutdown; every retry goes through one backoff that listens for
//!   shutdown. [`error`] is the library's error type; [`cli`] is the
//!   command line; [`catalog_import`] is `catalog import`.

pub mod admin;
pub mod analytics;
pub mod batch;
pub mod catalog_import;
pub mod cli;
pub mod config;
pub mod erasure;
pub mod error;
pub mod fleet;
pub mod import;
pub mod internal_events;
mod notify;
mod origin;
pub mod report;
mod retry;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod status;
pub mod worker;
