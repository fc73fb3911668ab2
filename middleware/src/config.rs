//! [`Config`]: everything the layer and the shipper need, from code or from
//! `VISITLOG_*` environment variables.

use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use crate::client_ip::ForwardedHeader;
use crate::error::ConfigError;
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
    pub(crate) redis_url: String,
    pub(crate) queue: String,
    pub(crate) geodb: Option<PathBuf>,
    pub(crate) geodb_reload: Duration,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) forwarded_header: ForwardedHeader,
    pub(crate) cookie_key: Option<Vec<u8>>,
    pub(crate) cookie_name: String,
    pub(crate) cookie_secure: bool,
    pub(crate) visit_timeout: Duration,
    pub(crate) returning_window: Duration,
    pub(crate) anonymize_ip: bool,
    pub(crate) respect_dnt: bool,
    pub(crate) tutorial_route: String,
    pub(crate) capture_headers: Vec<HeaderName>,
    pub(crate) deny_params: Vec<String>,
    pub(crate) deny_headers: Vec<String>,
    pub(crate) buffer_records: usize,
    pub(crate) buffer_bytes: usize,
    pub(crate) batch_records: usize,
    pub(crate) batch_bytes: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) redis_timeout: Duration,
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
            .field("queue", &self.queue)
            .field("geodb", &self.geodb)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_header", &self.forwarded_header)
            .field("cookie_key", &self.cookie_key.as_ref().map(|_| "<set>"))
            .field("visit_timeout", &self.visit_timeout)
            .field("returning_window", &self.returning_window)
            .field("anonymize_ip", &self.anonymize_ip)
            .field("respect_dnt", &self.respect_dnt)
            .field("tutorial_route", &self.tutorial_route)
            .field("buffer_records", &self.buffer_records)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            redis_url: "redis://127.0.0.1:6379".to_owned(),
            queue: visitlog_schema::keys::DEFAULT_QUEUE.to_owned(),
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
        /// Redis to ship to (`VISITLOG_REDIS_URL`, default `redis://127.0.0.1:6379`).
        redis_url: String;
        /// The Redis list records are appended to (`VISITLOG_QUEUE`, default `visitlog:queue`).
        queue: String;
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

    /// A client for the configured Redis (no connection is made yet).
    pub(crate) fn redis_client(&self) -> Result<redis::Client, ConfigError> {
        // The URL may hold a password: the error never repeats it.
        redis::Client::open(self.redis_url.as_str()).map_err(|e| {
            ConfigError::secret(
                "VISITLOG_REDIS_URL",
                format!("not a Redis URL ({:?})", e.kind()),
            )
        })
    }

    /// Reads `VISITLOG_*` variables from the process environment over the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with variables from `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let mut c = Self::default();
        if let Some(v) = env.get("VISITLOG_REDIS_URL") {
            c.redis_url = v;
            c.redis_client()?;
        }
        if let Some(v) = env.get("VISITLOG_QUEUE") {
            c.queue = v;
        }
        c.geodb = env.get("VISITLOG_GEODB").map(PathBuf::from);
        env.parse("VISITLOG_GEODB_RELOAD", &mut c.geodb_reload, parse_duration)?;
        env.parse(
            "VISITLOG_TRUSTED_PROXIES",
            &mut c.trusted_proxies,
            parse_cidrs,
        )?;
        env.parse("VISITLOG_FORWARDED_HEADER", &mut c.forwarded_header, |s| {
            s.parse()
        })?;
        if let Some(v) = env.get("VISITLOG_COOKIE_KEY") {
            c.cookie_key = Some(v.into_bytes());
        }
        if let Some(v) = env.get("VISITLOG_COOKIE_NAME") {
            c.cookie_name = v;
        }
        env.parse("VISITLOG_COOKIE_SECURE", &mut c.cookie_secure, parse_bool)?;
        env.parse(
            "VISITLOG_VISIT_TIMEOUT",
            &mut c.visit_timeout,
            parse_duration,
        )?;
        env.parse(
            "VISITLOG_RETURNING_WINDOW",
            &mut c.returning_window,
            parse_duration,
        )?;
        env.parse("VISITLOG_ANONYMIZE_IP", &mut c.anonymize_ip, parse_bool)?;
        env.parse("VISITLOG_RESPECT_DNT", &mut c.respect_dnt, parse_bool)?;
        if let Some(v) = env.get("VISITLOG_TUTORIAL_ROUTE") {
            c.tutorial_route = v;
        }
        env.parse("VISITLOG_CAPTURE_HEADERS", &mut c.capture_headers, |s| {
            list(s)
                .map(|h| HeaderName::try_from(h).map_err(|_| format!("`{h}` is not a header name")))
                .collect()
        })?;
        env.parse("VISITLOG_DENY_PARAMS", &mut c.deny_params, |s| {
            Ok(list(s).map(str::to_ascii_lowercase).collect())
        })?;
        env.parse("VISITLOG_DENY_HEADERS", &mut c.deny_headers, |s| {
            Ok(list(s).map(str::to_ascii_lowercase).collect())
        })?;
        env.parse(
            "VISITLOG_BUFFER_RECORDS",
            &mut c.buffer_records,
            parse_count,
        )?;
        env.parse("VISITLOG_BUFFER_BYTES", &mut c.buffer_bytes, parse_count)?;
        env.parse("VISITLOG_BATCH_RECORDS", &mut c.batch_records, parse_count)?;
        env.parse("VISITLOG_BATCH_BYTES", &mut c.batch_bytes, parse_count)?;
        env.parse(
            "VISITLOG_FLUSH_INTERVAL",
            &mut c.flush_interval,
            parse_duration,
        )?;
        env.parse(
            "VISITLOG_REDIS_TIMEOUT",
            &mut c.redis_timeout,
            parse_duration,
        )?;
        env.parse(
            "VISITLOG_EVENTS_ANONYMOUS",
            &mut c.events_anonymous,
            parse_bool,
        )?;
        env.parse(
            "VISITLOG_EVENTS_MAX_BYTES",
            &mut c.events_max_bytes,
            parse_count,
        )?;
        env.parse("VISITLOG_EVENTS_ORIGINS", &mut c.events_origins, |s| {
            list(s)
                .map(|o| {
                    let origin = o.trim_end_matches('/').to_ascii_lowercase();
                    match origin.split_once("://") {
                        Some(("http" | "https", host))
                            if !host.is_empty() && !host.contains('/') =>
                        {
                            Ok(origin)
                        }
                        _ => Err(format!(
                            "`{o}` is not an origin like `https://www.example.org`"
                        )),
                    }
                })
                .collect()
        })?;
        env.parse("VISITLOG_EVENTS_RATE", &mut c.events_rate, |s| {
            match s.trim_end_matches("/s").trim().parse::<f64>() {
                Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
                _ => Err(
                    "expected requests per second, like `20` (0 turns the limit off)".to_owned(),
                ),
            }
        })?;
        env.parse("VISITLOG_EVENTS_BURST", &mut c.events_burst, |s| {
            parse_count(s).and_then(|n| u32::try_from(n).map_err(|_| "too large".to_owned()))
        })?;
        c.validate()?;
        Ok(c)
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
        if self.queue.is_empty() {
            return Err(ConfigError::new("VISITLOG_QUEUE", "", "must not be empty"));
        }
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
        crate::route::RoutePattern::parse(&self.tutorial_route)
            .map_err(|e| ConfigError::new("VISITLOG_TUTORIAL_ROUTE", &self.tutorial_route, e))?;
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

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn parse<T>(
        &self,
        name: &'static str,
        slot: &mut T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = self.get(name) {
            *slot = parse(&v).map_err(|reason| ConfigError::new(name, &v, reason))?;
        }
        Ok(())
    }
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses `30m`, `183d`, `1h 30m`, `250ms`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration like `30m` or `183d` ({e})"))
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn parse_count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number".to_owned()),
    }
}

/// Comma-separated CIDRs; a bare address means just that address.
fn parse_cidrs(s: &str) -> Result<Vec<IpNet>, String> {
    list(s)
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{item}` is not an IP address or CIDR block"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn from(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| vars.get(k).cloned())
    }

    #[test]
    fn defaults_apply_without_variables() {
        let c = from(&[]).unwrap();
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.queue, "visitlog:queue");
        assert_eq!(c.visit_timeout, Duration::from_secs(1800));
        assert_eq!(c.returning_window, Duration::from_secs(183 * 86400));
        assert!(!c.anonymize_ip);
        assert!(c.geodb.is_none());
        assert_eq!(c.forwarded_header, ForwardedHeader::XForwardedFor);
        assert_eq!((c.events_rate, c.events_burst), (20.0, 40));
    }

    #[test]
    fn variables_override_defaults() {
        let c = from(&[
            ("VISITLOG_REDIS_URL", "redis://10.0.0.5:6380/2"),
            ("VISITLOG_QUEUE", "site:queue"),
            ("VISITLOG_GEODB", "/var/lib/GeoIP/GeoLite2-City.mmdb"),
            ("VISITLOG_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1 ,::1"),
            ("VISITLOG_COOKIE_KEY", "0123456789abcdef0123456789abcdef"),
            ("VISITLOG_VISIT_TIMEOUT", "10m"),
            ("VISITLOG_RETURNING_WINDOW", "30d"),
            ("VISITLOG_ANONYMIZE_IP", "yes"),
        ])
        .unwrap();
        assert_eq!(c.queue, "site:queue");
        assert_eq!(c.trusted_proxies.len(), 3);
        assert_eq!(c.trusted_proxies[1].to_string(), "127.0.0.1/32");
        assert_eq!(c.visit_timeout, Duration::from_secs(600));
        assert_eq!(c.returning_window, Duration::from_secs(30 * 86400));
        assert!(c.anonymize_ip);
        assert_eq!(c.cookie_key.as_deref().map(<[u8]>::len), Some(32));
    }

    #[test]
    fn every_variable_is_read() {
        let c = from(&[
            ("VISITLOG_GEODB_RELOAD", "5m"),
            ("VISITLOG_COOKIE_NAME", "vid"),
            ("VISITLOG_COOKIE_SECURE", "true"),
            ("VISITLOG_RESPECT_DNT", "1"),
            ("VISITLOG_TUTORIAL_ROUTE", "/t/{foss}/{tutorial}/{language}"),
            ("VISITLOG_CAPTURE_HEADERS", "accept-language, x-client"),
            ("VISITLOG_DENY_PARAMS", "Secret,PIN"),
            ("VISITLOG_DENY_HEADERS", "X-Private"),
            ("VISITLOG_BUFFER_RECORDS", "10"),
            ("VISITLOG_EVENTS_ANONYMOUS", "yes"),
            ("VISITLOG_EVENTS_MAX_BYTES", "4096"),
            (
                "VISITLOG_EVENTS_ORIGINS",
                "https://www.Example.org/, http://localhost:3000",
            ),
            ("VISITLOG_BUFFER_BYTES", "2048"),
            ("VISITLOG_BATCH_RECORDS", "5"),
            ("VISITLOG_BATCH_BYTES", "1024"),
            ("VISITLOG_FLUSH_INTERVAL", "10ms"),
            ("VISITLOG_REDIS_TIMEOUT", "750ms"),
            ("VISITLOG_FORWARDED_HEADER", "Forwarded"),
            ("VISITLOG_EVENTS_RATE", "5/s"),
            ("VISITLOG_EVENTS_BURST", "7"),
        ])
        .unwrap();
        assert_eq!(c.geodb_reload, Duration::from_secs(300));
        assert_eq!(
            (c.cookie_name.as_str(), c.cookie_secure, c.respect_dnt),
            ("vid", true, true)
        );
        assert_eq!(c.tutorial_route, "/t/{foss}/{tutorial}/{language}");
        assert_eq!(
            c.capture_headers,
            vec![
                http::header::ACCEPT_LANGUAGE,
                HeaderName::from_static("x-client")
            ]
        );
        assert_eq!(c.deny_params, vec!["secret", "pin"]);
        assert_eq!(c.deny_headers, vec!["x-private"]);
        assert_eq!(
            (
                c.buffer_records,
                c.buffer_bytes,
                c.batch_records,
                c.batch_bytes
            ),
            (10, 2048, 5, 1024)
        );
        assert_eq!(c.flush_interval, Duration::from_millis(10));
        assert_eq!(c.redis_timeout, Duration::from_millis(750));
        assert!(c.events_anonymous);
        assert_eq!(c.events_max_bytes, 4096);
        assert_eq!(
            c.events_origins,
            vec!["https://www.example.org", "http://localhost:3000"]
        );
        assert_eq!(c.forwarded_header, ForwardedHeader::Forwarded);
        assert_eq!((c.events_rate, c.events_burst), (5.0, 7));
        let err = from(&[("VISITLOG_EVENTS_ORIGINS", "example.org")]).unwrap_err();
        assert!(err.to_string().contains("VISITLOG_EVENTS_ORIGINS"), "{err}");
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, value, expect) in [
            ("VISITLOG_VISIT_TIMEOUT", "soon", "duration"),
            ("VISITLOG_RETURNING_WINDOW", "1m", "shorter"),
            (
                "VISITLOG_TRUSTED_PROXIES",
                "10.0.0.0/8,proxy.local",
                "proxy.local",
            ),
            ("VISITLOG_ANONYMIZE_IP", "maybe", "true or false"),
            ("VISITLOG_BUFFER_RECORDS", "0", "at least 1"),
            ("VISITLOG_REDIS_URL", "http://nope", "Redis URL"),
            ("VISITLOG_CAPTURE_HEADERS", "authorization", "deny list"),
            ("VISITLOG_TUTORIAL_ROUTE", "watch/{foss", "route"),
            ("VISITLOG_COOKIE_NAME", "a b", "letters"),
            (
                "VISITLOG_FORWARDED_HEADER",
                "x-client-ip",
                "x-forwarded-for",
            ),
            ("VISITLOG_EVENTS_RATE", "-1", "per second"),
            ("VISITLOG_EVENTS_RATE", "fast", "per second"),
            ("VISITLOG_EVENTS_BURST", "0", "at least 1"),
        ] {
            let err = from(&[(var, value)]).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with(var), "{message}");
            assert!(message.contains(expect), "{message}");
        }
    }

    #[test]
    fn secrets_are_not_echoed_in_errors() {
        let err = from(&[("VISITLOG_COOKIE_KEY", "short-secret")]).unwrap_err();
        assert!(!err.to_string().contains("short-secret"), "{err}");
        let err = from(&[("VISITLOG_REDIS_URL", "rediss//:hunter2@host")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let debug = format!(
            "{:?}",
            Config::default().redis_url("redis://u:hunter2@h/".into())
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
