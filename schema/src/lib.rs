//! The records visitlog moves from the web app to MongoDB, in one place.
//!
//! The middleware builds [`RequestRecord`]s and ships them as JSON onto a Redis
//! list ([`keys`]); the consumer reads them back, checks each against the same
//! `$jsonSchema` validator that guards the MongoDB collection ([`validator`])
//! and stores it. The validator documents live as JSON files under
//! `schema/validators/` and are compiled into this crate, so the middleware,
//! the consumer and the database all agree on one definition.
//!
//! ```
//! use visitlog_schema::{Collection, RecordValidator, RequestRecord};
//!
//! let record = RequestRecord::example();
//! let json = serde_json::to_value(&record).unwrap();
//! let validator = RecordValidator::new(Collection::RequestLogs).unwrap();
//! assert!(validator.validate(&json).is_ok());
//! ```

mod catalog;
pub mod check;
#[cfg(feature = "redis")]
pub mod connect;
#[cfg(feature = "edges")]
pub mod edges;
mod event;
pub mod keys;
mod record;
mod redact;
pub mod validator;
mod wire;

pub use catalog::{CatalogError, CatalogItem, CatalogRecord, MAX_CATALOG_ITEMS, MAX_DURATION};
#[cfg(feature = "redis")]
pub use connect::{
    RedisConn, RedisMode, RedisTarget, TargetError, Timeouts, read_ca_cert, redis_client,
    url_fault, url_list,
};
pub use event::{
    EventRecord, EventType, LEARNER_MAX, Learner, hashed_id, learner_link_id, progress_id,
    user_name, video_position_id,
};
pub use record::{
    Geo, Kind, RequestRecord, SCHEMA_VERSION, Tutorial, UserAgent, limits, truncate_chars,
};
pub use redact::{redact_url, redact_urls_in};
pub use validator::{Collection, RecordValidator, SchemaError, ValidationFailure};
pub use wire::{AsId, AsIp, AsTime, AsUuid};
