//! [`Config`]: everything the layer and the shipper need, from code (the
//! builder setters here) or from `VISITLOG_*` environment variables (the one
//! table in [`env`](mod@env)), checked as a whole by [`Config::validate`].
//!
//! The fields, the setters and the variable table follow the same sections:
//! Redis and the queue, GeoIP, the client's address, the visitor cookie and
//! visits, what a record keeps, the shipper's buffer and batches, and the
//! learning-events endpoint. The struct stays flat because its setters are
//! the public API (`Config::default().queue(..).batch_records(..)`); each
//! part takes its own slice of it in [`crate::CaptureLayer::new`].

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::enrich::client_ip::ForwardedHeader;
use crate::enrich::route::RoutePattern;
use crate::error::ConfigError;
use visitlog_schema::keys::{self, QueueKeys};
use visitlog_schema::{RedisTarget, TargetError};

pub use visitlog_schema::RedisMode;

mod env;
pub(crate) use visitlog_schema::redact_url;

/// Minimum length of the cookie signing key, in bytes.
pub const MIN_COOKIE_KEY_LEN: usize = 32;

/// Query parameters whose value never lands in a record, case-insensitive.
///
/// An entry of five characters or more matches anywhere in a parameter's
/// name (`token` matches `access_token`); a shorter one matches a whole word
/// of the name, words being split at `_ - . [ ]`, spaces and lower-to-upper
/// case changes (`key` matches `api_key`, `apiKey` and `AWSAccessKeyId`, not
/// `keyword`; `code` matches `code` and `auth_code`, not `zipcode`).
pub const DEFAULT_DENY_PARAMS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "token",
    "csrf",
    "xsrf",
    "api_key",
    "apikey",
    "key",
    "auth",
    "session",
    "signature",
    "sig",
    "credential",
    "code",
    "jwt",
    "otp",
    "totp",
    "ticket",
    "nonce",
    "samlresponse",
    "samlrequest",
    "assertion",
];

/// Headers that can never be captured (case-insensitive substrings of the name).
pub const DEFAULT_DENY_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "token",
    "csrf",
    "xsrf",
    "secret",
    "password",
    "api-key",
    "apikey",
    "session",
    "auth",
];

/// How the layer captures requests and how the shipper sends them to Redis.
///
/// Start from [`Config::default`] or [`Config::from_env`] and adjust with the
/// builder methods, which consume and return the config.
#[derive(Clone)]
pub struct Config {
    // Redis and the queue.
    pub(crate) redis_url: String,
    pub(crate) redis_ca_cert: Option<PathBuf>,
    pub(crate) redis_mode: RedisMode,
    pub(crate) redis_sentinel_master: Option<String>,
    pub(crate) queue: String,
    pub(crate) queue_shards: usize,
    // GeoIP.
    pub(crate) geodb: Option<PathBuf>,
    pub(crate) geodb_reload: Duration,
    // The client's address.
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
    // The visitor cookie and visits.
    pub(crate) cookie_key: Option<Vec<u8>>,
    pub(crate) cookie_name: String,
    pub(crate) cookie_secure: bool,
    pub(crate) visit_timeout: Duration,
    pub(crate) returning_window: Duration,
    // What a record keeps.
    pub(crate) anonymize_ip: bool,
    pub(crate) respect_dnt: bool,
    pub(crate) accept_ch: bool,
    pub(crate) tutorial_route: String,
    pub(crate) capture_headers: Vec<HeaderName>,
    pub(crate) deny_params: Vec<String>,
    pub(crate) deny_headers: Vec<String>,
    // The shipper: buffering and batches.
    pub(crate) buffer_records: usize,
    pub(crate) buffer_bytes: usize,
    pub(crate) batch_records: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) redis_timeout: Duration,
    // The learning-events endpoint.
    pub(crate) events_anonymous: bool,
    pub(crate) events_max_bytes: usize,
    pub(crate) events_origins: Vec<String>,
    pub(crate) events_rate: f64,
    pub(crate) events_burst: u32,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The Redis URL may carry a password and the cookie key is a secret.
        f.debug_struct("Config")
            .field("redis_url", &redact_url(&self.redis_url))
            .field("redis_ca_cert", &self.redis_ca_cert)
            .field("redis_mode", &self.redis_mode)
            .field("redis_sentinel_master", &self.redis_sentinel_master)
            .field("queue", &self.queue)
            .field("queue_shards", &self.queue_shards)
            .field("geodb", &self.geodb)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("cookie_key", &self.cookie_key.as_ref().map(|_| "<set>"))
            .field("visit_timeout", &self.visit_timeout)
            .field("returning_window", &self.returning_window)
            .field("anonymize_ip", &self.anonymize_ip)
            .field("respect_dnt", &self.respect_dnt)
            .field("accept_ch", &self.accept_ch)
            .field("tutorial_route", &self.tutorial_route)
            .field("buffer_records", &self.buffer_records)
            .finish_non_exhaustive()
    }
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
            geodb: None,
            geodb_reload: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            forwarded_header: ForwardedHeader::default(),
            cookie_key: None,
            cookie_name: "visitlog_vid".to_owned(),
            cookie_secure: false,
            visit_timeout: Duration::from_secs(30 * 60),
            returning_window: Duration::from_secs(183 * 24 * 3600),
            anonymize_ip: false,
            respect_dnt: false,
            accept_ch: false,
            tutorial_route: "/watch/{foss}/{tutorial}/{language}/".to_owned(),
            capture_headers: vec![http::header::ACCEPT_LANGUAGE],
            deny_params: DEFAULT_DENY_PARAMS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            deny_headers: DEFAULT_DENY_HEADERS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            buffer_records: 100_000,
            buffer_bytes: 64 * 1024 * 1024,
            batch_records: 500,
            batch_bytes: 1024 * 1024,
            flush_interval: Duration::from_millis(100),
            redis_timeout: Duration::from_secs(2),
            events_anonymous: false,
            events_max_bytes: 16 * 1024,
            events_origins: Vec::new(),
            events_rate: 20.0,
            events_burst: 40,
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }
        )*
    };
}

impl Config {
    setters! {
        /// Redis to ship to (`VISITLOG_REDIS_URL`, default
        /// `redis://127.0.0.1:6379`); in sentinel and cluster modes a
        /// comma-separated list of the sentinels' or seed nodes' URLs.
        redis_url: String;
        /// How Redis is deployed (`VISITLOG_REDIS_MODE`, default `standalone`).
        redis_mode: RedisMode;
        /// The Redis list records are appended to (`VISITLOG_QUEUE`, default `visitlog:queue`).
        queue: String;
        /// Lists the queue is split into, each batch going to the next
        /// (`VISITLOG_QUEUE_SHARDS`, default 1: the list named by the queue).
        /// The consumer must be told the same number.
        queue_shards: usize;
        /// How often to check the GeoIP file for a replacement (`VISITLOG_GEODB_RELOAD`, default 60 s).
        geodb_reload: Duration;
        /// Peers whose forwarded-client header is believed (`VISITLOG_TRUSTED_PROXIES`).
        trusted_proxies: Vec<IpNet>;
        /// The header the trusted proxies write the client's address into; the
        /// only one read (`VISITLOG_FORWARDED_HEADER`, default `x-forwarded-for`).
        forwarded_header: ForwardedHeader;
        /// Name of the visitor cookie (`VISITLOG_COOKIE_NAME`, default `visitlog_vid`).
        cookie_name: String;
        /// Mark the visitor cookie `Secure` (`VISITLOG_COOKIE_SECURE`, default false).
        cookie_secure: bool;
        /// Idle time after which the next request starts a new visit (`VISITLOG_VISIT_TIMEOUT`, default 30 min).
        visit_timeout: Duration;
        /// A visit is returning when the browser's previous one is this recent (`VISITLOG_RETURNING_WINDOW`, default 183 days).
        returning_window: Duration;
        /// Store IPv4 addresses with the last octet zeroed and IPv6 with the last 80 bits zeroed (`VISITLOG_ANONYMIZE_IP`).
        anonymize_ip: bool;
        /// No visitor cookie and no visitor id for browsers sending `DNT: 1` or `Sec-GPC: 1` (`VISITLOG_RESPECT_DNT`).
        respect_dnt: bool;
        /// Ask browsers for the User-Agent Client Hints that the reduced UA
        /// string hides (platform version, full browser version), with
        /// an `Accept-CH` header on HTML responses (`VISITLOG_ACCEPT_CH`,
        /// default false).
        accept_ch: bool;
        /// Route pattern of tutorial pages (`VISITLOG_TUTORIAL_ROUTE`, default `/watch/{foss}/{tutorial}/{language}/`).
        tutorial_route: String;
        /// Request headers copied into the record (`VISITLOG_CAPTURE_HEADERS`, default `accept-language`).
        capture_headers: Vec<HeaderName>;
        /// Query parameters whose values are redacted (`VISITLOG_DENY_PARAMS`).
        deny_params: Vec<String>;
        /// Header names never captured (`VISITLOG_DENY_HEADERS`).
        deny_headers: Vec<String>;
        /// Most records held while Redis is unreachable (`VISITLOG_BUFFER_RECORDS`, default 100000).
        buffer_records: usize;
        /// Most bytes held while Redis is unreachable (`VISITLOG_BUFFER_BYTES`, default 64 MiB).
        buffer_bytes: usize;
        /// Records per `RPUSH` (`VISITLOG_BATCH_RECORDS`, default 500).
        batch_records: usize;
        /// Bytes per `RPUSH` (`VISITLOG_BATCH_BYTES`, default 1 MiB).
        batch_bytes: usize;
        /// Longest a record waits before its batch is sent (`VISITLOG_FLUSH_INTERVAL`, default 100 ms).
        flush_interval: Duration;
        /// Deadline for connecting to Redis and for each `RPUSH` (`VISITLOG_REDIS_TIMEOUT`, default 2 s).
        redis_timeout: Duration;
        /// Accept learning events from visitors who are not logged in, keyed
        /// by their visitor id (`VISITLOG_EVENTS_ANONYMOUS`, default false).
        events_anonymous: bool;
        /// Largest learning-event request body (`VISITLOG_EVENTS_MAX_BYTES`, default 16 KiB).
        events_max_bytes: usize;
        /// Origins besides the site's own that may post learning events, e.g.
        /// `https://www.example.org` (`VISITLOG_EVENTS_ORIGINS`, comma-separated).
        events_origins: Vec<String>;
        /// Learning-event requests per second each learner may make, on
        /// average; `0` turns the limit off (`VISITLOG_EVENTS_RATE`, default 20).
        events_rate: f64;
        /// Requests a learner may make at once before the rate applies
        /// (`VISITLOG_EVENTS_BURST`, default 40).
        events_burst: u32;
    }

    /// The name the sentinels know the master by (`VISITLOG_REDIS_SENTINEL_MASTER`,
    /// sentinel mode only).
    pub fn redis_sentinel_master(mut self, name: impl Into<String>) -> Self {
        self.redis_sentinel_master = Some(name.into());
        self
    }

    /// A PEM file of the CA that signed a `rediss://` server's certificate,
    /// checked instead of the system's roots (`VISITLOG_REDIS_CA_CERT`).
    pub fn redis_ca_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.redis_ca_cert = Some(path.into());
        self
    }

    /// The MaxMind City database to geolocate clients with (`VISITLOG_GEODB`).
    pub fn geodb(mut self, path: impl Into<PathBuf>) -> Self {
        self.geodb = Some(path.into());
        self
    }

    /// Key that signs the visitor cookie, at least 32 bytes (`VISITLOG_COOKIE_KEY`).
    ///
    /// Without one, a random key is made at start-up: cookies then do not
    /// survive a restart and every visitor looks new afterwards.
    pub fn cookie_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.cookie_key = Some(key.into());
        self
    }

    /// The Redis list records go to.
    pub fn queue_name(&self) -> &str {
        &self.queue
    }

    /// The parsed tutorial route.
    pub(crate) fn tutorial_pattern(&self) -> Result<RoutePattern, ConfigError> {
        RoutePattern::parse(&self.tutorial_route)
            .map_err(|e| ConfigError::new("VISITLOG_TUTORIAL_ROUTE", &self.tutorial_route, e))
    }

    /// Where the configured Redis is (no connection is made yet): one
    /// server, over TLS for `rediss://` (checked against the system's roots
    /// or the configured CA), a Sentinel-watched master, or a cluster.
    pub(crate) fn redis_target(&self) -> Result<RedisTarget, ConfigError> {
        let ca = match &self.redis_ca_cert {
            Some(path) => Some(visitlog_schema::read_ca_cert(path).map_err(|reason| {
                ConfigError::new("VISITLOG_REDIS_CA_CERT", path.display().to_string(), reason)
            })?),
            None => None,
        };
        RedisTarget::new(
            self.redis_mode,
            &self.redis_url,
            self.redis_sentinel_master.as_deref(),
            ca.as_deref(),
        )
        .map_err(|e| match e {
            TargetError::Url(reason) => ConfigError::secret("VISITLOG_REDIS_URL", reason),
            TargetError::Master(reason) => ConfigError::new(
                "VISITLOG_REDIS_SENTINEL_MASTER",
                self.redis_sentinel_master.as_deref().unwrap_or_default(),
                reason,
            ),
            TargetError::CaCert(reason) => ConfigError::new(
                "VISITLOG_REDIS_CA_CERT",
                self.redis_ca_cert
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason,
            ),
        })
    }

    /// The Redis keys of the queue: its shards, named for the mode.
    pub(crate) fn queue_keys(&self) -> QueueKeys {
        QueueKeys::new(
            &self.queue,
            self.queue_shards,
            self.redis_mode == RedisMode::Cluster,
        )
    }

    /// Checks the values that cannot be checked one at a time.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(key) = &self.cookie_key
            && key.len() < MIN_COOKIE_KEY_LEN
        {
            return Err(ConfigError::secret(
                "VISITLOG_COOKIE_KEY",
                format!(
                    "must be at least {MIN_COOKIE_KEY_LEN} bytes, is {}",
                    key.len()
                ),
            ));
        }
        if !self.events_rate.is_finite() || self.events_rate < 0.0 {
            return Err(ConfigError::new(
                "VISITLOG_EVENTS_RATE",
                self.events_rate.to_string(),
                "must be a number of requests per second, 0 or more",
            ));
        }
        if self.events_burst == 0 {
            return Err(ConfigError::new(
                "VISITLOG_EVENTS_BURST",
                "0",
                "must be at least 1",
            ));
        }
        if !(1..=keys::MAX_SHARDS).contains(&self.queue_shards) {
            return Err(ConfigError::new(
                "VISITLOG_QUEUE_SHARDS",
                self.queue_shards.to_string(),
                format!("must be between 1 and {}", keys::MAX_SHARDS),
            ));
        }
        keys::check_queue(
            &self.queue,
            self.queue_shards,
            self.redis_mode == RedisMode::Cluster,
        )
        .map_err(|reason| ConfigError::new("VISITLOG_QUEUE", &self.queue, reason))?;
        self.redis_target()?;
        if self.visit_timeout.is_zero() {
            return Err(ConfigError::new(
                "VISITLOG_VISIT_TIMEOUT",
                "0",
                "must be positive",
            ));
        }
        if self.returning_window < self.visit_timeout {
            return Err(ConfigError::new(
                "VISITLOG_RETURNING_WINDOW",
                humantime::format_duration(self.returning_window).to_string(),
                "must not be shorter than VISITLOG_VISIT_TIMEOUT",
            ));
        }
        if let Some(bad) = self.capture_headers.iter().find(|h| {
            self.deny_headers
                .iter()
                .any(|d| h.as_str().contains(d.as_str()))
        }) {
            return Err(ConfigError::new(
                "VISITLOG_CAPTURE_HEADERS",
                bad.as_str(),
                "names a header on the deny list; secrets are never captured",
            ));
        }
        self.tutorial_pattern()?;
        if let Some(missing) = ["{foss}", "{tutorial}", "{language}"]
            .into_iter()
            .find(|p| !self.tutorial_route.contains(p))
        {
            return Err(ConfigError::new(
                "VISITLOG_TUTORIAL_ROUTE",
                &self.tutorial_route,
                format!("the tutorial route needs a {missing} parameter"),
            ));
        }
        if !self
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || self.cookie_name.is_empty()
        {
            return Err(ConfigError::new(
                "VISITLOG_COOKIE_NAME",
                &self.cookie_name,
                "use letters, digits, `_` and `-` only",
            ));
        }
        Ok(())
    }
}

/// Checks each URL of a comma-separated list; the error never repeats a
/// URL (it may hold a password). How many the mode takes is checked by
/// [`Config::validate`].
fn check_redis_urls(urls: &str) -> Result<(), String> {
    let list = visitlog_schema::url_list(urls);
    for (i, url) in list.iter().enumerate() {
        visitlog_schema::redis_client(url, None).map_err(|e| match list.len() {
            1 => format!("not a Redis URL: {}", visitlog_schema::url_fault(&e)),
            n => format!(
                "address {} of {n} is not a Redis URL: {}",
                i + 1,
                visitlog_schema::url_fault(&e)
            ),
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
