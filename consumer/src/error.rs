//! The consumer library's one error type: what can go wrong talking to
//! Redis and MongoDB, plus the few failures of our own that callers tell
//! apart (a consumer id in use, lost races for progress documents, a
//! write concern error). The binary (`main.rs`, `cli`) wraps it in `anyhow`.

use crate::config::ConfigError;

/// Everything the consumer library can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Redis command or connection failed.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// A MongoDB command or connection failed.
    #[error(transparent)]
    Mongo(#[from] mongodb::error::Error),
    /// `redis-url` does not open.
    #[error("redis-url")]
    RedisUrl(#[source] redis::RedisError),
    /// `mongodb-uri` does not parse (or its `mongodb+srv` name never resolves).
    #[error("mongodb-uri")]
    MongoUri(#[source] mongodb::error::Error),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A built-in validator does not compile (a bug of this build).
    #[error("built-in validator: {0}")]
    Validator(#[from] visitlog_schema::SchemaError),
    /// Another live process uses this consumer id.
    #[error(
        "consumer id `{id}` is in use by a live instance ({holder}); give this one another --consumer-id, \
         or wait for that heartbeat to expire"
    )]
    IdInUse {
        /// The id.
        id: String,
        /// The heartbeat value of the holder (`host pid token`).
        holder: String,
    },
    /// Other consumers kept winning the race for the same progress
    /// documents; the batch is derived again (MongoDB itself is fine).
    #[error("progress of {0} learners kept changing under us")]
    Contention(usize),
    /// MongoDB took a write but could not meet its write concern.
    #[error("write concern error on {collection}: {detail}")]
    WriteConcern {
        /// The collection written.
        collection: String,
        /// The server's `writeConcernError`.
        detail: String,
    },
    /// MongoDB refused writes that must not be skipped (dirty marks); the
    /// refusals are logged, and the batch is retried.
    #[error("{count} writes refused on {collection} (logged)")]
    Refused {
        /// The collection written.
        collection: String,
        /// How many statements.
        count: u64,
    },
    /// A learner's history came back out of `_id` order or in pieces
    /// (a server that ignores the sort); folding it is retried.
    #[error("history of {0}")]
    History(String),
    /// A dead-letter command that names none.
    #[error("say which dead letters: --id ID (repeatable), --reason-contains TEXT, or --all")]
    NoSelection,
    /// A TTL index did not take the configured retention.
    #[error("retention: {0}")]
    Retention(String),
    /// The status endpoint cannot listen.
    #[error("status-addr {addr}: {source}")]
    StatusAddr {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// The consumer library's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
