//! Configuration, written once: [`Config`] is at the same time the TOML
//! file's schema (serde, kebab-case keys, unknown keys refused), the
//! command line's flags and `VISITLOG_*` environment variables (clap), and,
//! through its `Serialize` with secrets masked, what `check-config` prints.
//! Defaults are [`Config::default`]; then the file (`--config`), then the
//! environment, then flags: the later wins (see `cli`).

use std::path::Path;
use std::time::Duration;

use mongodb::options::Acknowledgment;
use serde::{Deserialize, Serialize, Serializer};
use visitlog_schema::keys::{self, QueueKeys};
pub use visitlog_schema::redact_url;
use visitlog_schema::{RedisMode, RedisTarget, TargetError};

/// Everything `visitlog-consumer` can be told. Each setting is a TOML key
/// (kebab-case), a `--flag` of the same name and a `VISITLOG_*` variable.
///
/// No flag has a clap default: an absent flag must not hide the file's
/// value, so only flags and variables actually given override it. What
/// every flag shares (global, optional, environment values hidden from
/// `--help`, since the URLs carry passwords) is set once, in `cli`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, clap::Args)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Redis URL: Redis holding the queue.
    #[arg(long, env = "VISITLOG_REDIS_URL")]
    #[serde(serialize_with = "masked_url")]
    pub redis_url: String,
    /// A PEM file of the private CA that signed a `rediss://` server's
    /// certificate, checked instead of the system's roots.
    #[arg(long, env = "VISITLOG_REDIS_CA_CERT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_ca_cert: Option<std::path::PathBuf>,
    /// How Redis is deployed: standalone, sentinel (redis-url lists the
    /// sentinels) or cluster (redis-url lists seed nodes).
    #[arg(long, env = "VISITLOG_REDIS_MODE")]
    pub redis_mode: RedisMode,
    /// The name the sentinels know the master by (sentinel mode only).
    #[arg(long, env = "VISITLOG_REDIS_SENTINEL_MASTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_sentinel_master: Option<String>,
    /// Queue key: the Redis list the middleware fills.
    #[arg(long, env = "VISITLOG_QUEUE")]
    pub queue: String,
    /// Lists the queue is split into; the same number as the middleware's.
    #[arg(long, env = "VISITLOG_QUEUE_SHARDS")]
    pub queue_shards: usize,
    /// MongoDB URI: MongoDB to store into.
    #[arg(long, env = "VISITLOG_MONGODB_URI")]
    #[serde(serialize_with = "masked_url")]
    pub mongodb_uri: String,
    /// Database name.
    #[arg(long, env = "VISITLOG_DATABASE")]
    pub database: String,
    /// Acknowledgement every write waits for: `majority` or a number of
    /// members (1 or more). Default: the URI's `w`, else `majority`.
    #[arg(long, env = "VISITLOG_WRITE_CONCERN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_concern: Option<String>,
    /// This instance's id; keep it stable across restarts so a restarted
    /// instance finishes its own batches at once. Default: the host name
    /// under systemd, else `<hostname>-<pid>`.
    #[arg(long, env = "VISITLOG_CONSUMER_ID")]
    pub consumer_id: Option<String>,
    /// Most records per batch.
    #[arg(long, env = "VISITLOG_BATCH_SIZE")]
    pub batch_size: usize,
    /// Longest an idle consumer waits for the queue before looking again (e.g. 200ms).
    #[arg(long, env = "VISITLOG_FLUSH_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Batches stored concurrently by one instance.
    #[arg(long, env = "VISITLOG_MAX_IN_FLIGHT")]
    pub max_in_flight: usize,
    /// How often the heartbeat is written.
    #[arg(long, env = "VISITLOG_HEARTBEAT_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// After this long without a heartbeat an instance is dead and its
    /// batches go back to the queue.
    #[arg(long, env = "VISITLOG_HEARTBEAT_TTL", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub heartbeat_ttl: Duration,
    /// On SIGTERM, how long in-flight batches may take before they are handed back.
    #[arg(long, env = "VISITLOG_SHUTDOWN_DEADLINE", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub shutdown_deadline: Duration,
    /// Longest pause between retries while Redis or MongoDB is down.
    #[arg(long, env = "VISITLOG_MAX_BACKOFF", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Delete request records older than this (a TTL index on `ts`); unset keeps them.
    #[arg(long, env = "VISITLOG_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Delete learning events older than this (a TTL index on `ts`); unset
    /// keeps them. Progress is folded from them: see the README before
    /// setting it.
    #[arg(long, env = "VISITLOG_EVENTS_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub events_retention: Option<Duration>,
    /// Delete dead letters older than this (a TTL index on `at`); unset keeps them.
    #[arg(long, env = "VISITLOG_DEAD_LETTERS_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub dead_letters_retention: Option<Duration>,
    /// Delete `page_views` and `sessions` (the per-visit analytics) older
    /// than this (TTL indexes on `start`); unset keeps them. Daily and
    /// monthly figures stay.
    #[arg(long, env = "VISITLOG_ANALYTICS_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub analytics_retention: Option<Duration>,
    /// Largest payload kept verbatim in `dead_letters`, in bytes; longer ones are cut.
    #[arg(long, env = "VISITLOG_DEAD_LETTER_MAX_BYTES")]
    pub dead_letter_max_bytes: usize,
    /// Coverage or watched position, as a fraction of the video, that marks a
    /// tutorial complete.
    #[arg(long, env = "VISITLOG_COMPLETION_THRESHOLD")]
    pub completion_threshold: f64,
    /// Count tutorial-page visits of anonymous visitors in `tutorial_progress`
    /// too; turn on when the site accepts anonymous events.
    #[arg(long, env = "VISITLOG_ANONYMOUS_VISITS", action = clap::ArgAction::Set)]
    pub anonymous_visits: bool,
    /// Compute the site analytics (page_views, sessions, video_stats,
    /// tutorial_daily, site_daily); off, records are still stored and
    /// marked, and a consumer with it on computes them later.
    #[arg(long, env = "VISITLOG_ANALYTICS", action = clap::ArgAction::Set)]
    pub analytics: bool,
    /// Longest a touched analytics figure waits before it is computed
    /// again, and the shortest time between two computations of it (e.g. 10s).
    #[arg(long, env = "VISITLOG_DERIVE_INTERVAL", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub derive_interval: Duration,
    /// Idle time after which a learner's next request or event starts a new
    /// session (e.g. 30m).
    #[arg(long, env = "VISITLOG_SESSION_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Where the status page, JSON API and /metrics listen; `run --no-status`
    /// turns them off.
    #[arg(long, env = "VISITLOG_STATUS_ADDR")]
    pub status_addr: std::net::SocketAddr,
    /// Bearer token (or basic-auth password) required by every status
    /// endpoint but /healthz; unset: open.
    #[arg(long, env = "VISITLOG_STATUS_TOKEN")]
    #[serde(
        serialize_with = "masked_token",
        skip_serializing_if = "Option::is_none"
    )]
    pub status_token: Option<String>,
    /// Most connections the status endpoint holds open at once; beyond it,
    /// the connection idle the longest is closed for the new one.
    #[arg(long, env = "VISITLOG_STATUS_MAX_CONNECTIONS")]
    pub status_max_connections: usize,
    /// A status client must send a request's headers within this time of
    /// connecting or of its previous response (so it also bounds idle
    /// keep-alive connections) (e.g. 5s).
    #[arg(long, env = "VISITLOG_STATUS_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub status_header_timeout: Duration,
    /// A status connection on which no byte moves either way for this long
    /// is closed (a client that stops reading a response, or stalls
    /// mid-request) (e.g. 30s).
    #[arg(long, env = "VISITLOG_STATUS_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(with = "humantime_serde")]
    pub status_idle_timeout: Duration,
    /// `human` or `json` logs.
    #[arg(long, env = "VISITLOG_LOG_FORMAT", value_enum)]
    pub log_format: LogFormat,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Readable lines, for a terminal or journald.
    Human,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            redis_ca_cert: None,
            redis_mode: RedisMode::Standalone,
            redis_sentinel_master: None,
            queue: visitlog_schema::keys::DEFAULT_QUEUE.to_owned(),
            queue_shards: 1,
            mongodb_uri: "mongodb://127.0.0.1:27017".to_owned(),
            database: "visitlog".to_owned(),
            write_concern: None,
            consumer_id: None,
            batch_size: 1000,
            flush_interval: Duration::from_millis(200),
            max_in_flight: 2,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(30),
            shutdown_deadline: Duration::from_secs(10),
            max_backoff: Duration::from_secs(30),
            retention: None,
            events_retention: None,
            dead_letters_retention: None,
            analytics_retention: None,
            dead_letter_max_bytes: 4 * 1024 * 1024,
            completion_threshold: 0.8,
            anonymous_visits: false,
            analytics: true,
            derive_interval: Duration::from_secs(10),
            session_timeout: Duration::from_secs(30 * 60),
            status_addr: std::net::SocketAddr::from(([127, 0, 0, 1], 5555)),
            status_token: None,
            status_max_connections: 64,
            status_header_timeout: Duration::from_secs(5),
            status_idle_timeout: Duration::from_secs(30),
            log_format: LogFormat::Human,
        }
    }
}

/// A configuration problem, in one line naming the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has an unknown or mistyped key.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// The TOML key (the flag and variable are named after it).
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses TOML text over the defaults.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().replace('\n', " ").trim().to_owned())
    }

    /// Checks ranges and relations between values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        if !(1..=100_000).contains(&self.batch_size) {
            return invalid("batch-size", "must be between 1 and 100000");
        }
        if !(1..=64).contains(&self.max_in_flight) {
            return invalid("max-in-flight", "must be between 1 and 64");
        }
        if self.queue.is_empty() || self.queue.contains(char::is_whitespace) {
            return invalid("queue", "must be a non-empty key without spaces");
        }
        if !(1..=keys::MAX_SHARDS).contains(&self.queue_shards) {
            return invalid("queue-shards", "must be between 1 and 256");
        }
        if let Err(message) = keys::check_queue(
            &self.queue,
            self.queue_shards,
            self.redis_mode == RedisMode::Cluster,
        ) {
            return Err(ConfigError::Invalid {
                key: "queue",
                message,
            });
        }
        if self.database.is_empty() || self.database.contains(['/', '\\', '.', ' ', '"', '$']) {
            return invalid("database", "not a valid MongoDB database name");
        }
        if let Some(id) = &self.consumer_id
            && !is_valid_consumer_id(id)
        {
            return invalid(
                "consumer-id",
                "1 to 128 characters among A-Z, a-z, 0-9, `.`, `_` and `-` (it is part of Redis key names and patterns)",
            );
        }
        if self.heartbeat_ttl < self.heartbeat_interval * 2 {
            return invalid("heartbeat-ttl", "must be at least twice heartbeat-interval");
        }
        if self.flush_interval.is_zero() {
            return invalid("flush-interval", "must be positive");
        }
        if self.heartbeat_interval.is_zero() {
            return invalid("heartbeat-interval", "must be positive");
        }
        for (key, keep) in [
            ("retention", self.retention),
            ("events-retention", self.events_retention),
            ("dead-letters-retention", self.dead_letters_retention),
            ("analytics-retention", self.analytics_retention),
        ] {
            if keep.is_some_and(|r| r < Duration::from_secs(3600)) {
                return invalid(
                    key,
                    "must be at least 1h (0 would delete every document as it is stored); leave it unset to keep them",
                );
            }
        }
        if self.max_backoff.is_zero() {
            return invalid(
                "max-backoff",
                "must be positive (0 would retry a failing Redis or MongoDB in a busy loop)",
            );
        }
        if self.shutdown_deadline >= self.heartbeat_ttl {
            return invalid(
                "shutdown-deadline",
                "must be below heartbeat-ttl: no heartbeat is written while shutting down, and past the TTL another consumer gives the batches still being stored back to the queue",
            );
        }
        if !(1..=10_000).contains(&self.status_max_connections) {
            return invalid("status-max-connections", "must be between 1 and 10000");
        }
        if self.status_header_timeout.is_zero() {
            return invalid("status-header-timeout", "must be positive");
        }
        if self.status_idle_timeout.is_zero() {
            return invalid("status-idle-timeout", "must be positive");
        }
        if self.dead_letter_max_bytes < 1024 || self.dead_letter_max_bytes > 8 * 1024 * 1024 {
            return invalid("dead-letter-max-bytes", "must be between 1024 and 8388608");
        }
        if self.status_token.as_deref().is_some_and(|t| t.len() < 16) {
            return invalid("status-token", "must be at least 16 characters");
        }
        if self.derive_interval.is_zero() {
            return invalid(
                "derive-interval",
                "must be positive (0 would compute every touched figure back to back, a busy day's included, and turn off the waits that keep the queue drained first)",
            );
        }
        if self.derive_interval > Duration::from_secs(3600) {
            return invalid(
                "derive-interval",
                "must be at most 1h (figures would be stale for longer)",
            );
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(24 * 3600))
            .contains(&self.session_timeout)
        {
            return invalid("session-timeout", "must be between 1m and 24h");
        }
        if !(self.completion_threshold > 0.0 && self.completion_threshold <= 1.0) {
            return invalid("completion-threshold", "must be more than 0 and at most 1");
        }
        self.redis_target()?;
        if let Err(message) = self.write_acknowledgment() {
            return Err(ConfigError::Invalid {
                key: "write-concern",
                message,
            });
        }
        if !self.mongodb_uri.starts_with("mongodb://")
            && !self.mongodb_uri.starts_with("mongodb+srv://")
        {
            return invalid(
                "mongodb-uri",
                "must start with mongodb:// or mongodb+srv://",
            );
        }
        Ok(())
    }

    /// Where the configured Redis is (no connection is made yet): one
    /// server, over TLS for `rediss://` (checked against the system's roots
    /// or `redis-ca-cert`), a Sentinel-watched master, or a cluster.
    pub fn redis_target(&self) -> Result<RedisTarget, ConfigError> {
        let ca = match &self.redis_ca_cert {
            Some(path) => Some(visitlog_schema::read_ca_cert(path).map_err(|message| {
                ConfigError::Invalid {
                    key: "redis-ca-cert",
                    message,
                }
            })?),
            None => None,
        };
        RedisTarget::new(
            self.redis_mode,
            &self.redis_url,
            self.redis_sentinel_master.as_deref(),
            ca.as_deref(),
        )
        .map_err(|e| {
            let key = match e {
                TargetError::Url(_) => "redis-url",
                TargetError::Master(_) => "redis-sentinel-master",
                TargetError::CaCert(_) => "redis-ca-cert",
            };
            ConfigError::Invalid {
                key,
                message: e.to_string(),
            }
        })
    }

    /// The `write-concern` setting as the driver takes it; `None` when unset.
    pub fn write_acknowledgment(&self) -> Result<Option<Acknowledgment>, String> {
        let Some(w) = self.write_concern.as_deref().map(str::trim) else {
            return Ok(None);
        };
        match w {
            "majority" => Ok(Some(Acknowledgment::Majority)),
            "0" => Err(
                "0 (unacknowledged) is refused: a write nobody confirms cannot be stored exactly once"
                    .to_owned(),
            ),
            n => match n.parse::<u32>() {
                Ok(n) if (1..=50).contains(&n) => Ok(Some(Acknowledgment::Nodes(n))),
                _ => Err("use majority, or a number of members from 1 to 50".to_owned()),
            },
        }
    }

    /// The Redis keys of the queue, as the middleware names them with the
    /// same queue, shards and mode.
    pub fn queue_keys(&self) -> QueueKeys {
        QueueKeys::new(
            &self.queue,
            self.queue_shards,
            self.redis_mode == RedisMode::Cluster,
        )
    }

    /// How long each collection keeps its documents.
    pub fn retention(&self) -> crate::sink::Retention {
        crate::sink::Retention {
            requests: self.retention,
            events: self.events_retention,
            dead_letters: self.dead_letters_retention,
            analytics: self.analytics_retention,
        }
    }

    /// The learning-progress rules in effect.
    pub fn rules(&self) -> visitlog_progress::Rules {
        visitlog_progress::Rules {
            completion_threshold: self.completion_threshold,
            anonymous_visits: self.anonymous_visits,
            ..visitlog_progress::Rules::default()
        }
    }

    /// The analytics rules in effect.
    pub fn analytics_rules(&self) -> visitlog_analytics::AnalyticsRules {
        visitlog_analytics::AnalyticsRules {
            session_timeout: self.session_timeout,
            progress: self.rules(),
            ..visitlog_analytics::AnalyticsRules::default()
        }
    }

    /// The consumer id in effect: the configured one; else, under systemd
    /// (which sets `INVOCATION_ID`), the host name, stable across restarts
    /// so that a restarted instance finishes its own batches at once; else
    /// `<hostname>-<pid>`. A second live process with the same id is refused
    /// at start, so two instances on one host each set `consumer-id`.
    pub fn consumer_id(&self) -> String {
        self.consumer_id.clone().unwrap_or_else(|| {
            let host = crate::source::hostname_string();
            if std::env::var_os("INVOCATION_ID").is_some() {
                host
            } else {
                format!("{host}-{}", std::process::id())
            }
        })
    }

    /// The configuration as TOML, with passwords in URIs and the status
    /// token masked, and the consumer id in effect.
    pub fn to_redacted_toml(&self) -> String {
        let shown = Self {
            consumer_id: Some(self.consumer_id()),
            ..self.clone()
        };
        toml::to_string(&shown)
            .unwrap_or_else(|e| format!("# cannot print the configuration: {e}\n"))
    }
}

/// Consumer ids go into Redis key names and `SCAN` patterns unescaped:
/// only characters that mean nothing to either.
pub fn is_valid_consumer_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A URL with its password masked.
fn masked_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// A secret shown only as set.
fn masked_token<S: Serializer>(token: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match token {
        Some(_) => s.serialize_str("****"),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        Config::default().validate().unwrap();
    }

    #[test]
    fn the_sample_config_is_valid() {
        let sample = include_str!("../dist/visitlog-consumer.toml");
        let config = Config::from_toml(sample).unwrap();
        config.validate().unwrap();
        assert_eq!(config.batch_size, 1000);
    }

    #[test]
    fn keys_are_kebab_case_and_durations_human() {
        let c = Config::from_toml(
            "batch-size = 50\nflush-interval = \"1s\"\nretention = \"90d\"\nlog-format = \"json\"",
        )
        .unwrap();
        assert_eq!(c.batch_size, 50);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.retention, Some(Duration::from_secs(90 * 86400)));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let err = Config::from_toml("batch_size = 5").unwrap_err();
        assert!(err.contains("batch_size"), "{err}");
        let err = Config::from_toml("flush-interval = \"soon\"").unwrap_err();
        assert!(err.contains("soon"), "{err}");
        let err = Config::from_toml("batch-size = \"many\"").unwrap_err();
        assert!(err.contains("batch-size"), "{err}");
        let c = Config {
            batch_size: 0,
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("batch-size")
        );
        for (c, key) in [
            (
                Config {
                    heartbeat_interval: Duration::ZERO,
                    ..Config::default()
                },
                "heartbeat-interval",
            ),
            (
                Config {
                    retention: Some(Duration::ZERO),
                    ..Config::default()
                },
                "retention",
            ),
            (
                Config {
                    derive_interval: Duration::ZERO,
                    ..Config::default()
                },
                "derive-interval",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
        let c = Config {
            heartbeat_ttl: Duration::from_secs(1),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("heartbeat-ttl")
        );
        for (c, key) in [
            (
                Config {
                    write_concern: Some("0".into()),
                    ..Config::default()
                },
                "write-concern",
            ),
            (
                Config {
                    redis_mode: RedisMode::Sentinel,
                    ..Config::default()
                },
                "redis-sentinel-master",
            ),
            (
                Config {
                    redis_mode: RedisMode::Cluster,
                    queue: "a{b}".into(),
                    ..Config::default()
                },
                "queue",
            ),
            (
                Config {
                    queue_shards: 0,
                    ..Config::default()
                },
                "queue-shards",
            ),
            (
                Config {
                    redis_url: "redis://a:1,redis://b:2".into(),
                    ..Config::default()
                },
                "redis-url",
            ),
        ] {
            let err = c.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
    }

    #[test]
    fn write_concern_is_majority_a_count_or_the_uris() {
        let with = |w: &str| Config {
            write_concern: Some(w.into()),
            ..Config::default()
        };
        assert_eq!(Config::default().write_acknowledgment(), Ok(None));
        assert_eq!(
            with("majority").write_acknowledgment(),
            Ok(Some(Acknowledgment::Majority))
        );
        assert_eq!(
            with("2").write_acknowledgment(),
            Ok(Some(Acknowledgment::Nodes(2)))
        );
        for bad in ["0", "-1", "all", "51"] {
            assert!(with(bad).write_acknowledgment().is_err(), "{bad}");
        }
    }

    /// The unit file keeps the promises the README makes for it.
    #[test]
    fn the_systemd_unit_is_notify_watchdog_restart_and_unprivileged() {
        let unit = include_str!("../dist/visitlog-consumer.service");
        let has = |line: &str| unit.lines().any(|l| l.trim() == line);
        for line in [
            "Type=notify",
            "Restart=on-failure",
            "WatchdogSec=30s",
            "User=visitlog",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "KillSignal=SIGTERM",
            "ProtectProc=invisible",
            "ProcSubset=pid",
            "PrivateMounts=yes",
            "RemoveIPC=yes",
            "SystemCallErrorNumber=EPERM",
        ] {
            assert!(has(line), "unit lacks `{line}`");
        }
        // Settings live in the TOML file (and secrets in consumer.env), never
        // in `Environment=` lines that would silently override the file.
        assert!(
            !unit.lines().any(|l| l.starts_with("Environment=")),
            "{unit}"
        );
        // Start-up is bounded: a typo in a URL must not hang `systemctl start`.
        let start = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStartSec="))
            .unwrap();
        assert!(
            humantime::parse_duration(start).is_ok(),
            "TimeoutStartSec={start}"
        );
        // It stops well after the consumer's own shutdown deadline.
        let stop = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .unwrap();
        assert!(humantime::parse_duration(stop).unwrap() > Config::default().shutdown_deadline);
    }

    #[test]
    fn passwords_never_show() {
        let c = Config {
            mongodb_uri: "mongodb://app:hunter2@db:27017/?authSource=admin".to_owned(),
            redis_url: "redis://:hunter3@cache:6379".to_owned(),
            ..Config::default()
        };
        let shown = c.to_redacted_toml();
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
        assert!(shown.contains("mongodb://app:***@db:27017"), "{shown}");
    }
}
