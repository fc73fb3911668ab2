//! Records of requests the layer never saw: historic logs that
//! `visitlog-consumer import` brings in, enriched exactly as live records
//! are (route and tutorial matching, GeoIP, IP anonymisation, redaction,
//! user-agent parsing and bot detection, session hashing), from the same
//! [`Config`] the app's layer uses.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Uri};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use uuid::Uuid;
use visitlog_schema::RequestRecord;

use crate::config::Config;
use crate::enrich::ua::UaInput;
use crate::enrich::{Captured, Enricher};
use crate::error::ConfigError;
use crate::identity::Identity;
use crate::visitor::Visit;

/// The session-hash key when `VISITLOG_COOKIE_KEY` is not set: fixed, so
/// that two imports hash a session alike (a live layer without a key uses
/// a random one instead, which an import could never match anyway).
const FIXED_KEY: &[u8] = b"visitlog import: no VISITLOG_COOKIE_KEY was set";

/// What a request target may not hold unencoded (besides controls).
const NOT_IN_TARGET: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'#');

/// One request from a historic log.
#[derive(Debug, Clone)]
pub struct PastRequest {
    /// The record's id (UUID v7 of `ts`).
    pub id: Uuid,
    /// When it happened.
    pub ts: DateTime<Utc>,
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, as requested (percent-encoded here if it is not).
    pub target: String,
    /// The route template, when the log's source knows one.
    pub route: Option<String>,
    /// Response status.
    pub status: u16,
    /// The response's media type, when the log's source knows or can tell
    /// it (page views are `text/html` responses).
    pub content_type: Option<String>,
    /// `Referer`.
    pub referer: Option<String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// The client's address.
    pub client_ip: Option<IpAddr>,
    /// The logged-in user.
    pub user: Option<String>,
    /// The app's session id (only its keyed hash is kept).
    pub session: Option<String>,
    /// The visit, when the log's source can tell one.
    pub visit: Option<Visit>,
}

/// The layer's enrichment, for records it did not capture.
pub struct Enrichment {
    enricher: Enricher,
    keyed: bool,
    visit_timeout: Duration,
    returning_window: Duration,
}

impl std::fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enrichment")
            .field("geo", &self.enricher.geo.is_some())
            .field("keyed_sessions", &self.keyed)
            .finish_non_exhaustive()
    }
}

impl Enrichment {
    /// The enrichment `config` gives (its GeoIP database, anonymisation,
    /// deny lists, tutorial route and cookie key). Sessions are hashed
    /// with `VISITLOG_COOKIE_KEY` as live records are; without it, with a
    /// fixed key ([`Enrichment::keyed_sessions`] says which).
    pub fn new(config: &Config) -> Result<Self, ConfigError> {
        config.validate()?;
        let key = config.cookie_key.as_deref().unwrap_or(FIXED_KEY);
        Ok(Self {
            enricher: Enricher::new(config, key)?,
            keyed: config.cookie_key.is_some(),
            visit_timeout: config.visit_timeout,
            returning_window: config.returning_window,
        })
    }

    /// Whether sessions are hashed with the site's cookie key, so that they
    /// match the hashes of live records.
    pub fn keyed_sessions(&self) -> bool {
        self.keyed
    }

    /// Whether a GeoIP database is open.
    pub fn has_geo(&self) -> bool {
        self.enricher.geo.is_some()
    }

    /// The stored record of `request`.
    pub fn request(&self, request: PastRequest) -> RequestRecord {
        let ua = UaInput {
            user_agent: request
                .user_agent
                .as_deref()
                .and_then(|ua| HeaderValue::from_str(ua).ok()),
            ..UaInput::default()
        };
        let captured = Captured {
            id: request.id,
            ts: request.ts,
            method: Method::from_bytes(request.method.as_bytes()).unwrap_or(Method::GET),
            uri: target_uri(&request.target),
            route: request.route,
            status: request.status,
            latency: Duration::ZERO,
            bytes_sent: 0,
            referer: request
                .referer
                .as_deref()
                .and_then(|r| HeaderValue::from_str(r).ok()),
            ua,
            headers: Vec::new(),
            client_ip: request.client_ip,
            visit: request.visit,
            identity: Identity {
                user: request.user,
                session_id: request.session,
                staff: false,
            },
            content_type: request
                .content_type
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok()),
            request_id: None,
            sample_rate: None,
        };
        self.enricher.record(captured)
    }

    /// The keyed hash a record stores for the session id `raw`.
    pub fn session(&self, raw: &str) -> String {
        self.enricher.hash_session(raw)
    }

    /// The visitor a log's session id `raw` stands for, when the log has
    /// no visitor cookie: a UUID (version 8) of its keyed hash, so the
    /// same session is the same visitor in every import.
    pub fn visitor(&self, raw: &str) -> Uuid {
        self.enricher.session_visitor(raw)
    }

    /// Idle time that ends a visit (`VISITLOG_VISIT_TIMEOUT`).
    pub fn visit_timeout(&self) -> Duration {
        self.visit_timeout
    }

    /// How recent a previous visit makes a visit returning
    /// (`VISITLOG_RETURNING_WINDOW`).
    pub fn returning_window(&self) -> Duration {
        self.returning_window
    }

    /// The parsed user agent of `raw`, bots told apart.
    pub fn user_agent(&self, raw: &str) -> visitlog_schema::UserAgent {
        let input = UaInput {
            user_agent: HeaderValue::from_str(raw).ok(),
            ..UaInput::default()
        };
        self.enricher.ua.parse(&input).agent.clone()
    }
}

/// `target` as a URI path and query: percent-encoded where it holds what a
/// request line may not; `/` when even that is not one.
fn target_uri(target: &str) -> Uri {
    if target.starts_with('/')
        && let Ok(uri) = Uri::try_from(target)
    {
        return uri;
    }
    let encoded = utf8_percent_encode(target, NOT_IN_TARGET).to_string();
    let rooted = if encoded.starts_with('/') {
        encoded
    } else {
        format!("/{encoded}")
    };
    Uri::try_from(rooted).unwrap_or_else(|_| Uri::from_static("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(target: &str) -> PastRequest {
        PastRequest {
            id: Uuid::now_v7(),
            ts: Utc::now(),
            method: "GET".to_owned(),
            target: target.to_owned(),
            route: None,
            status: 200,
            content_type: Some("text/html".to_owned()),
            referer: Some("https://example.org/?token=secret&a=1".to_owned()),
            user_agent: Some(
                "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0".to_owned(),
            ),
            client_ip: Some("81.2.69.142".parse().unwrap()),
            user: Some("alice".to_owned()),
            session: Some("d1f2e3".to_owned()),
            visit: None,
        }
    }

    #[test]
    fn past_requests_are_enriched_like_live_ones() {
        let config = Config::default()
            .cookie_key(vec![7u8; 32])
            .anonymize_ip(true);
        let enrichment = Enrichment::new(&config).unwrap();
        assert!(enrichment.keyed_sessions());
        let record = enrichment.request(request("/watch/Python/Intro/English/?token=x&t=1"));
        assert_eq!(record.path, "/watch/Python/Intro/English/");
        assert_eq!(record.query.as_deref(), Some("token=[redacted]&t=1"));
        assert_eq!(record.tutorial.as_ref().unwrap().foss, "Python");
        assert_eq!(record.ua.name.as_deref(), Some("Firefox"));
        assert!(!record.ua.is_bot);
        assert_eq!(record.ip, Some("81.2.69.0".parse().unwrap()));
        assert!(record.referer.as_deref().unwrap().contains("[redacted]"));
        let session = record.session_id.clone().unwrap();
        assert_eq!(session, enrichment.session("d1f2e3"));
        assert_ne!(session, "d1f2e3");
        // Another key, another hash; no key, a fixed one.
        let other = Enrichment::new(&Config::default().cookie_key(vec![8u8; 32])).unwrap();
        assert_ne!(other.session("d1f2e3"), session);
        let fixed = Enrichment::new(&Config::default()).unwrap();
        assert!(!fixed.keyed_sessions());
        assert_eq!(
            fixed.session("d1f2e3"),
            Enrichment::new(&Config::default())
                .unwrap()
                .session("d1f2e3")
        );
    }

    #[test]
    fn odd_targets_become_paths() {
        let enrichment = Enrichment::new(&Config::default()).unwrap();
        assert_eq!(enrichment.request(request("/a b/ü")).path, "/a%20b/%C3%BC");
        assert_eq!(enrichment.request(request("courses/x")).path, "/courses/x");
        assert_eq!(enrichment.request(request("")).path, "/");
        let bot = enrichment.user_agent("curl/8.5.0");
        assert!(bot.is_bot);
    }
}
