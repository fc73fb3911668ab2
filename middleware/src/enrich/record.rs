//! From what the request path captured ([`Captured`]: owned, cheap handles)
//! to the stored [`RequestRecord`], in the shipper task: the [`Enricher`]
//! matches routes, looks up geo, anonymises, redacts, parses the user agent
//! and hashes the session.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use http::{HeaderName, HeaderValue, Method, Uri};
use sha2::Sha256;
use uuid::Uuid;
use visitlog_geodb::GeoDb;
use visitlog_schema::{EventRecord, Geo, RequestRecord, limits, truncate_chars};

use super::client_ip::anonymize;
use super::enriched::{Args, Enriched, GeoPart};
use super::redact;
use super::route::RoutePattern;
use super::ua::{UaInput, UaParser};
use crate::config::Config;
use crate::error::ConfigError;
use crate::identity::Identity;
use crate::visitor::Visit;

/// Parsed user agents kept in memory.
const UA_CACHE_CAPACITY: usize = 4096;

/// Parsed route templates kept in memory.
const ROUTE_CACHE_CAPACITY: usize = 1024;

/// Paths whose tutorial match is kept in memory.
const PATH_CACHE_CAPACITY: usize = 4096;

/// Longer paths are matched afresh: the cache holds at most about 1 MiB
/// of paths whatever a client sends.
const PATH_CACHE_MAX_LEN: usize = 256;

/// Places with their JSON kept in memory: as many as the GeoIP cache holds.
const GEO_JSON_CAPACITY: usize = visitlog_geodb::DEFAULT_CACHE_CAPACITY;

/// What the request path hands to the shipper: owned, cheap to clone handles.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) id: Uuid,
    pub(crate) ts: DateTime<Utc>,
    pub(crate) method: Method,
    pub(crate) uri: Uri,
    pub(crate) route: Option<String>,
    pub(crate) status: u16,
    pub(crate) latency: Duration,
    pub(crate) bytes_sent: u64,
    pub(crate) referer: Option<HeaderValue>,
    pub(crate) ua: UaInput,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) visit: Option<Visit>,
    pub(crate) identity: Identity,
    /// The response's `Content-Type`, once the head is known.
    pub(crate) content_type: Option<HeaderValue>,
    /// The request's `X-Request-Id`.
    pub(crate) request_id: Option<HeaderValue>,
    /// The layer's sampling ratio, when it samples.
    pub(crate) sample_rate: Option<f64>,
}

/// Turns [`Captured`] into records: UA parsing, geo, redaction, hashing.
pub(crate) struct Enricher {
    pub(crate) geo: Option<GeoDb>,
    pub(crate) ua: UaParser,
    pub(crate) tutorial: RoutePattern,
    pub(crate) deny_params: Vec<String>,
    pub(crate) anonymize_ip: bool,
    pub(crate) session_mac: Hmac<Sha256>,
    /// Parsed route templates: a site has a handful, seen over and over.
    /// `None` for a template that does not parse, or that is the
    /// tutorial pattern (whose match is `tutorial_matches`').
    pub(crate) routes: quick_cache::sync::Cache<String, Option<Arc<RoutePattern>>>,
    /// The tutorial pattern's match of recent paths: a site's pages are
    /// requested over and over.
    pub(crate) tutorial_matches: quick_cache::sync::Cache<String, Option<Arc<Args>>>,
    /// Places with their JSON (see [`Enricher::geo_part`]).
    pub(crate) geo_json: quick_cache::sync::Cache<usize, Arc<GeoPart>>,
}

impl Enricher {
    /// The enrichment part of `config`; `key` also keys the session hash.
    /// A GeoIP database that cannot be opened is not an error: one warning,
    /// and records carry no geo.
    pub(crate) fn new(config: &Config, key: &[u8]) -> Result<Self, ConfigError> {
        let tutorial = config.tutorial_pattern()?;
        let geo = config
            .geodb
            .as_ref()
            .and_then(|path| match GeoDb::open(path) {
                Ok(db) => Some(db),
                Err(e) => {
                    tracing::warn!(error = %e, "visitlog: running without GeoIP");
                    None
                }
            });
        Ok(Self {
            geo,
            ua: UaParser::new(UA_CACHE_CAPACITY),
            tutorial,
            deny_params: config
                .deny_params
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            anonymize_ip: config.anonymize_ip,
            routes: quick_cache::sync::Cache::new(ROUTE_CACHE_CAPACITY),
            tutorial_matches: quick_cache::sync::Cache::new(PATH_CACHE_CAPACITY),
            geo_json: quick_cache::sync::Cache::new(GEO_JSON_CAPACITY),
            session_mac: Hmac::new_from_slice(key)
                .unwrap_or_else(|_| unreachable!("HMAC takes any key length")),
        })
    }

    /// The record of a captured request, as the import and the tests use it.
    pub(crate) fn record(&self, c: Captured) -> RequestRecord {
        self.enrich(&c).into_record()
    }

    /// The queue's JSON of a captured request, appended to `out`: the same
    /// bytes as serialising [`Enricher::record`]'s record (every layer test
    /// checks this), written without building it. The parsed user agent
    /// and the place are written from their cached JSON.
    pub(crate) fn write_json(&self, c: &Captured, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, &self.enrich(c))
    }

    /// The work both of those share: matching, geo, redaction, hashing.
    fn enrich<'a>(&self, c: &'a Captured) -> Enriched<'a> {
        let path = match c.uri.path() {
            "" => "/",
            p => truncate_chars(p, limits::URL),
        };
        let tutorial_args = self.tutorial_match(path);
        // Usually the matched route is the tutorial pattern itself: match once
        // (`view_args` falls back to the tutorial match).
        let route_args = c
            .route
            .as_deref()
            .and_then(|r| self.route_pattern(r))
            .and_then(|route| route.matches(path));
        // Geo is looked up on the real address, before it is anonymised.
        let geo = c
            .client_ip
            .and_then(|ip| self.geo.as_ref()?.lookup(ip))
            .map(|geo| self.geo_part(geo));
        let ip = c
            .client_ip
            .map(|ip| if self.anonymize_ip { anonymize(ip) } else { ip });
        // Collected as the record's map is: sorted, the last of a repeated name.
        let headers = c
            .headers
            .iter()
            .take(limits::MAX_ENTRIES)
            .map(|(name, value)| (name.as_str(), lossy(value, limits::VALUE)))
            .collect();
        Enriched {
            c,
            method: truncate_chars(c.method.as_str(), limits::METHOD),
            path,
            query: c.uri.query().map(|q| redact::query(q, &self.deny_params)),
            route: c.route.as_deref().map(|r| truncate_chars(r, limits::ROUTE)),
            referer: c
                .referer
                .as_ref()
                .map(|r| redact::url(&String::from_utf8_lossy(r.as_bytes()), &self.deny_params)),
            ip,
            geo,
            ua: self.ua.parse(&c.ua),
            user: c
                .identity
                .user
                .as_deref()
                .and_then(visitlog_schema::user_name),
            session_id: c
                .identity
                .session_id
                .as_deref()
                .map(|s| self.hash_session(s)),
            route_args,
            tutorial_args,
            headers,
            content_type: c.content_type.as_ref().and_then(media_type),
            request_id: c
                .request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| truncate_chars(v, limits::REQUEST_ID)),
        }
    }

    /// `geo` with its JSON, written once per place the GeoIP cache holds.
    /// Keyed by the cached value's address, kept alive by the entry, so a
    /// reloaded database's places are new keys.
    fn geo_part(&self, geo: Arc<Geo>) -> Arc<GeoPart> {
        let key = Arc::as_ptr(&geo) as usize;
        if let Some(hit) = self.geo_json.get(&key)
            && Arc::ptr_eq(&hit.geo, &geo)
        {
            return hit;
        }
        // A struct of strings, options and numbers always serialises.
        let json = serde_json::value::to_raw_value(&*geo)
            .unwrap_or_else(|_| unreachable!("a Geo is plain data"));
        let part = Arc::new(GeoPart { geo, json });
        self.geo_json.insert(key, part.clone());
        part
    }

    /// Finishes a learning event: only its session id is left to hash.
    pub(crate) fn event(&self, mut record: EventRecord, session: Option<String>) -> EventRecord {
        record.session_id = session.as_deref().map(|s| self.hash_session(s));
        record
    }

    /// The parsed route `template`; `None` when it does not parse or is
    /// the tutorial pattern.
    fn route_pattern(&self, template: &str) -> Option<Arc<RoutePattern>> {
        if let Some(hit) = self.routes.get(template) {
            return hit;
        }
        let parsed = RoutePattern::parse(template)
            .ok()
            .filter(|route| *route != self.tutorial)
            .map(Arc::new);
        self.routes.insert(template.to_owned(), parsed.clone());
        parsed
    }

    fn tutorial_match(&self, path: &str) -> Option<Arc<Args>> {
        if path.len() > PATH_CACHE_MAX_LEN {
            // Too long to be a page seen over and over; a flood of such
            // paths must not hold megabytes.
            return self.tutorial.matches(path).map(Arc::new);
        }
        if let Some(hit) = self.tutorial_matches.get(path) {
            return hit;
        }
        let args = self.tutorial.matches(path).map(Arc::new);
        self.tutorial_matches.insert(path.to_owned(), args.clone());
        args
    }

    /// The visitor an imported log's session stands for: keyed like the
    /// session's hash, under another label, so neither reveals the other.
    pub(crate) fn session_visitor(&self, session_id: &str) -> uuid::Uuid {
        uuid::Uuid::new_v8(self.keyed(b"visitlog import visitor\0", session_id))
    }

    /// A keyed hash: sessions can be grouped, but a log reader cannot hijack one.
    pub(crate) fn hash_session(&self, session_id: &str) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let digest = self.keyed(b"visitlog session\0", session_id);
        let mut out = String::with_capacity(2 * digest.len());
        for b in digest {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        out
    }

    /// The first 16 bytes of the session key's HMAC of `label` and `id`.
    fn keyed(&self, label: &[u8], id: &str) -> [u8; 16] {
        let mut mac = self.session_mac.clone();
        mac.update(label);
        mac.update(id.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes
    }
}

/// The media type of a `Content-Type` value, lowercase, without its
/// parameters (`text/html; charset=utf-8` is `text/html`); `None` when
/// empty or not a `type/subtype`.
fn media_type(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let essence = text.split(';').next()?.trim();
    let valid = essence.len() <= limits::CONTENT_TYPE
        && essence
            .split_once('/')
            .is_some_and(|(t, s)| !t.is_empty() && !s.is_empty());
    valid.then(|| essence.to_ascii_lowercase())
}

fn lossy(value: &HeaderValue, max: usize) -> Cow<'_, str> {
    match String::from_utf8_lossy(value.as_bytes()) {
        Cow::Borrowed(text) => Cow::Borrowed(truncate_chars(text, max)),
        Cow::Owned(text) => Cow::Owned(truncate_chars(&text, max).to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_lose_their_parameters_and_case() {
        let of = |s: &'static str| media_type(&HeaderValue::from_static(s));
        assert_eq!(of("text/html; charset=utf-8").as_deref(), Some("text/html"));
        assert_eq!(of("Application/JSON").as_deref(), Some("application/json"));
        assert_eq!(of(""), None);
        assert_eq!(of("html"), None);
        assert_eq!(of("text/"), None);
        let long = format!("text/{}", "x".repeat(200));
        assert_eq!(media_type(&HeaderValue::from_str(&long).unwrap()), None);
    }
}
