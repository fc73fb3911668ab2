//! The `VISITLOG_*` environment variables: [`VARS`], one table of every
//! variable and how its value is applied to a [`Config`], read by
//! [`Config::from_lookup`] (and so [`Config::from_env`]) and checked against
//! the README's table by a test, so a variable is added in one place.
//!
//! The rows follow the README's order, section by section; a value is
//! trimmed, and an empty one counts as unset.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderName;
use ipnet::IpNet;

use super::Config;
use crate::error::ConfigError;

/// One environment variable.
pub(crate) struct Var {
    pub(crate) name: &'static str,
    /// Its value is a secret: an error about it never repeats it.
    secret: bool,
    /// Parses the value onto the config; the error is the reason alone, the
    /// variable's name and value are added by [`Config::from_lookup`].
    apply: fn(&mut Config, &str) -> Result<(), String>,
}

/// A row of [`VARS`]: `field` is set to `parse(value)?`.
macro_rules! var {
    ($name:literal, $field:ident, $parse:expr) => {
        var!(@ $name, false, $field, $parse)
    };
    (secret $name:literal, $field:ident, $parse:expr) => {
        var!(@ $name, true, $field, $parse)
    };
    (@ $name:literal, $secret:literal, $field:ident, $parse:expr) => {
        Var {
            name: $name,
            secret: $secret,
            apply: |c: &mut Config, v: &str| {
                c.$field = $parse(v)?;
                Ok(())
            },
        }
    };
}

/// Every variable the middleware reads.
pub(crate) static VARS: &[Var] = &[
    // Redis and the queue.
    var!(secret "VISITLOG_REDIS_URL", redis_url, redis_url),
    var!("VISITLOG_REDIS_CA_CERT", redis_ca_cert, path),
    var!("VISITLOG_REDIS_MODE", redis_mode, str::parse),
    var!(
        "VISITLOG_REDIS_SENTINEL_MASTER",
        redis_sentinel_master,
        some_text
    ),
    var!("VISITLOG_QUEUE", queue, text),
    var!("VISITLOG_QUEUE_SHARDS", queue_shards, count),
    // GeoIP.
    var!("VISITLOG_GEODB", geodb, path),
    var!("VISITLOG_GEODB_RELOAD", geodb_reload, duration),
    // The client's address.
    var!("VISITLOG_TRUSTED_PROXIES", trusted_proxies, cidrs),
    var!("VISITLOG_FORWARDED_HEADER", forwarded_header, str::parse),
    // The visitor cookie and visits.
    var!(secret "VISITLOG_COOKIE_KEY", cookie_key, key),
    var!("VISITLOG_COOKIE_NAME", cookie_name, text),
    var!("VISITLOG_COOKIE_SECURE", cookie_secure, boolean),
    var!("VISITLOG_VISIT_TIMEOUT", visit_timeout, duration),
    var!("VISITLOG_RETURNING_WINDOW", returning_window, duration),
    // What a record keeps.
    var!("VISITLOG_ANONYMIZE_IP", anonymize_ip, boolean),
    var!("VISITLOG_RESPECT_DNT", respect_dnt, boolean),
    var!("VISITLOG_ACCEPT_CH", accept_ch, boolean),
    var!("VISITLOG_TUTORIAL_ROUTE", tutorial_route, text),
    var!("VISITLOG_CAPTURE_HEADERS", capture_headers, header_names),
    var!("VISITLOG_DENY_PARAMS", deny_params, lowercase),
    var!("VISITLOG_DENY_HEADERS", deny_headers, lowercase),
    // The shipper: buffering and batches.
    var!("VISITLOG_BUFFER_RECORDS", buffer_records, count),
    var!("VISITLOG_BUFFER_BYTES", buffer_bytes, count),
    var!("VISITLOG_BATCH_RECORDS", batch_records, count),
    var!("VISITLOG_BATCH_BYTES", batch_bytes, count),
    var!("VISITLOG_FLUSH_INTERVAL", flush_interval, duration),
    var!("VISITLOG_REDIS_TIMEOUT", redis_timeout, duration),
    // The learning-events endpoint.
    var!("VISITLOG_EVENTS_ANONYMOUS", events_anonymous, boolean),
    var!("VISITLOG_EVENTS_MAX_BYTES", events_max_bytes, count),
    var!("VISITLOG_EVENTS_ORIGINS", events_origins, origins),
    var!("VISITLOG_EVENTS_RATE", events_rate, rate),
    var!("VISITLOG_EVENTS_BURST", events_burst, burst),
];

impl Config {
    /// Reads `VISITLOG_*` variables from the process environment over the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), with variables from `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for var in VARS {
            let Some(value) = lookup(var.name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
            else {
                continue;
            };
            (var.apply)(&mut config, &value).map_err(|reason| match var.secret {
                true => ConfigError::secret(var.name, reason),
                false => ConfigError::new(var.name, &value, reason),
            })?;
        }
        config.validate()?;
        Ok(config)
    }
}

fn list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn text(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

fn some_text(s: &str) -> Result<Option<String>, String> {
    Ok(Some(s.to_owned()))
}

fn path(s: &str) -> Result<Option<PathBuf>, String> {
    Ok(Some(PathBuf::from(s)))
}

/// Its length is checked by [`Config::validate`].
fn key(s: &str) -> Result<Option<Vec<u8>>, String> {
    Ok(Some(s.as_bytes().to_vec()))
}

/// The URL is checked here, but an error never repeats it (it may hold a
/// password; the row is `secret`).
fn redis_url(s: &str) -> Result<String, String> {
    super::check_redis_urls(s)?;
    Ok(s.to_owned())
}

fn lowercase(s: &str) -> Result<Vec<String>, String> {
    Ok(list(s).map(str::to_ascii_lowercase).collect())
}

/// Parses `30m`, `183d`, `1h 30m`, `250ms`.
fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("not a duration like `30m` or `183d` ({e})"))
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn count(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(_) => Err("expected a whole number".to_owned()),
    }
}

fn burst(s: &str) -> Result<u32, String> {
    u32::try_from(count(s)?).map_err(|_| "too large".to_owned())
}

/// Comma-separated CIDRs; a bare address means just that address.
fn cidrs(s: &str) -> Result<Vec<IpNet>, String> {
    list(s)
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{item}` is not an IP address or CIDR block"))
        })
        .collect()
}

fn header_names(s: &str) -> Result<Vec<HeaderName>, String> {
    list(s)
        .map(|h| HeaderName::try_from(h).map_err(|_| format!("`{h}` is not a header name")))
        .collect()
}

/// `scheme://host[:port]`, lower-cased, without a trailing slash.
fn origins(s: &str) -> Result<Vec<String>, String> {
    list(s)
        .map(|o| {
            let origin = o.trim_end_matches('/').to_ascii_lowercase();
            match origin.split_once("://") {
                Some(("http" | "https", host)) if !host.is_empty() && !host.contains('/') => {
                    Ok(origin)
                }
                _ => Err(format!(
                    "`{o}` is not an origin like `https://www.example.org`"
                )),
            }
        })
        .collect()
}

/// Requests per second, `20` or `20/s`; `0` turns the limit off.
fn rate(s: &str) -> Result<f64, String> {
    match s.trim_end_matches("/s").trim().parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.0 => Ok(r),
        _ => Err("expected requests per second, like `20` (0 turns the limit off)".to_owned()),
    }
}
