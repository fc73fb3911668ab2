//! The request record: one document per HTTP request in `request_logs`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The version of the record layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// Size limits on every string a record carries, in characters.
///
/// The middleware truncates to these; the validators enforce the same numbers
/// (a unit test keeps the two in step), so an oversized value never makes a
/// whole record fail.
pub mod limits {
    /// Request method.
    pub const METHOD: usize = 32;
    /// Path, query string and referer.
    pub const URL: usize = 2048;
    /// Matched route template.
    pub const ROUTE: usize = 256;
    /// Raw `User-Agent` header.
    pub const USER_AGENT: usize = 512;
    /// Parsed user-agent fields, geo names, user and session identifiers.
    pub const SHORT: usize = 256;
    /// One captured header value or path parameter.
    pub const VALUE: usize = 512;
    /// A response's media type (`text/html`).
    pub const CONTENT_TYPE: usize = 128;
    /// The `X-Request-Id` header.
    pub const REQUEST_ID: usize = 128;
    /// How many path parameters or captured headers a record keeps.
    pub const MAX_ENTRIES: usize = 32;
}

/// What a queued record is; the consumer routes on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An HTTP request captured by the middleware.
    Request,
    /// A learning event reported by a page's script (see [`crate::EventRecord`]).
    Event,
    /// A publication of one FOSS's catalog (see [`crate::CatalogRecord`]).
    Catalog,
}

/// One HTTP request, as stored in the `request_logs` collection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestRecord {
    /// UUID v7: unique, and sorts by creation time.
    #[serde(rename = "_id", with = "crate::wire::id_v7")]
    pub id: Uuid,
    /// Always [`SCHEMA_VERSION`] for records built by this crate.
    pub schema_version: u32,
    /// Always [`Kind::Request`].
    pub kind: Kind,
    /// When the request arrived (UTC, millisecond precision).
    #[serde(with = "ts_millis")]
    pub ts: DateTime<Utc>,
    /// HTTP method.
    pub method: String,
    /// Percent-encoded path as requested.
    pub path: String,
    /// Query string without `?`, secrets redacted; `None` when absent.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub query: Option<String>,
    /// Matched route template (`/watch/{foss}/{tutorial}/{language}/`) when the framework knows it.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub route: Option<String>,
    /// Response status code.
    pub status: u16,
    /// Time from the request to the response head, in milliseconds.
    pub latency_ms: f64,
    /// Response body bytes sent to the client.
    pub bytes_sent: u64,
    /// `Referer` header, secrets in its query redacted.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub referer: Option<String>,
    /// Client address (anonymised when configured); `None` when unknown.
    #[serde(with = "crate::wire::ip")]
    pub ip: Option<IpAddr>,
    /// Where the client address is; `None` when unknown or private.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub geo: Option<Geo>,
    /// The parsed user agent.
    pub ua: UserAgent,
    /// First-party visitor id; `None` when the browser asked not to be tracked.
    #[serde(with = "crate::wire::uuid")]
    pub visitor_id: Option<Uuid>,
    /// 1 for the visitor's first visit, counting up.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub visit_number: Option<u32>,
    /// This request started a visit.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub new_visit: Option<bool>,
    /// The visit belongs to a browser that visited before, within the returning window.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub returning: Option<bool>,
    /// The logged-in user, as the app names them; `None` when anonymous.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub user: Option<String>,
    /// A keyed hash of the app's session id (never the session id itself).
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub session_id: Option<String>,
    /// Path parameters of the matched route.
    pub view_args: BTreeMap<String, String>,
    /// Which tutorial page this was; `None` when the route is not one.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub tutorial: Option<Tutorial>,
    /// Request headers captured by configuration (never a denied one).
    pub headers: BTreeMap<String, String>,
    /// The app marked the user as staff: the record is stored, but no
    /// analytics figure counts it. Absent (false) in older records.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub staff: bool,
    /// The response's media type, lowercase and without parameters
    /// (`text/html`); `None` when it had none, or in older records.
    #[serde(default)]
    pub content_type: Option<String>,
    /// The request's `X-Request-Id` header (a proxy's or the app's id for
    /// this request, to join with other logs); absent when it had none.
    #[serde(
        default,
        deserialize_with = "crate::wire::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_id: Option<String>,
    /// The layer keeps this share of visitors (`.sample(ratio)`): each
    /// stored record stands for `1 / sample_rate` like it. Absent when
    /// every request is recorded.
    #[serde(
        default,
        deserialize_with = "crate::wire::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub sample_rate: Option<f64>,
}

/// Geolocation of the client address.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Geo {
    /// ISO 3166-1 alpha-2 code, e.g. `GB`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub country_code: Option<String>,
    /// Country name in English.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub country: Option<String>,
    /// ISO 3166-2 code of the first subdivision, e.g. `ENG`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub region_code: Option<String>,
    /// Name of the first subdivision in English.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub region: Option<String>,
    /// City name in English.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub city: Option<String>,
    /// Approximate latitude.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub latitude: Option<f64>,
    /// Approximate longitude.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub longitude: Option<f64>,
    /// IANA time zone, e.g. `Europe/London`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub time_zone: Option<String>,
}

/// The parsed `User-Agent`, refined by Client Hints when the browser sent them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgent {
    /// The header as sent (truncated); empty when absent.
    pub raw: String,
    /// Browser or crawler name, e.g. `Chrome`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub name: Option<String>,
    /// `pc`, `smartphone`, `mobilephone`, `appliance`, `crawler` or `misc`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub category: Option<String>,
    /// Operating system, e.g. `Windows 10`.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub os: Option<String>,
    /// Operating system version.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub os_version: Option<String>,
    /// Browser version.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub version: Option<String>,
    /// Browser vendor.
    #[serde(deserialize_with = "crate::wire::nullable")]
    pub vendor: Option<String>,
    /// The agent is a crawler or bot.
    pub is_bot: bool,
}

/// The tutorial page a request was for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tutorial {
    /// The software the tutorial series is about.
    pub foss: String,
    /// The tutorial's name.
    pub tutorial: String,
    /// The language of this version of the tutorial.
    pub language: String,
}

impl RequestRecord {
    /// A fully filled record, for documentation, tests and benchmarks.
    pub fn example() -> Self {
        let ts = DateTime::from_timestamp_millis(1_763_000_000_123).unwrap_or_default();
        let mut view_args = BTreeMap::new();
        view_args.insert("foss".to_owned(), "Python".to_owned());
        view_args.insert("tutorial".to_owned(), "Getting-started".to_owned());
        view_args.insert("language".to_owned(), "English".to_owned());
        Self {
            id: Uuid::now_v7(),
            schema_version: SCHEMA_VERSION,
            kind: Kind::Request,
            ts,
            method: "GET".to_owned(),
            path: "/watch/Python/Getting-started/English/".to_owned(),
            query: Some("t=42".to_owned()),
            route: Some("/watch/{foss}/{tutorial}/{language}/".to_owned()),
            status: 200,
            latency_ms: 1.25,
            bytes_sent: 5120,
            referer: Some("https://example.org/".to_owned()),
            ip: Some(IpAddr::from([81, 2, 69, 0])),
            geo: Some(Geo {
                country_code: Some("GB".to_owned()),
                country: Some("United Kingdom".to_owned()),
                region_code: Some("ENG".to_owned()),
                region: Some("England".to_owned()),
                city: Some("London".to_owned()),
                latitude: Some(51.5142),
                longitude: Some(-0.0931),
                time_zone: Some("Europe/London".to_owned()),
            }),
            ua: UserAgent {
                raw: "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0".to_owned(),
                name: Some("Firefox".to_owned()),
                category: Some("pc".to_owned()),
                os: Some("Linux".to_owned()),
                os_version: None,
                version: Some("133.0".to_owned()),
                vendor: Some("Mozilla".to_owned()),
                is_bot: false,
            },
            visitor_id: Some(Uuid::now_v7()),
            visit_number: Some(2),
            new_visit: Some(true),
            returning: Some(true),
            user: Some("alice".to_owned()),
            session_id: Some("3f1c2d4e5a6b7c8d9e0f1a2b3c4d5e6f".to_owned()),
            view_args,
            tutorial: Some(Tutorial {
                foss: "Python".to_owned(),
                tutorial: "Getting-started".to_owned(),
                language: "English".to_owned(),
            }),
            headers: BTreeMap::from([("accept-language".to_owned(), "en-GB".to_owned())]),
            staff: false,
            content_type: Some("text/html".to_owned()),
            request_id: Some("f0e4c2f76c58916ec258f246851bea09".to_owned()),
            sample_rate: None,
        }
    }
}

/// Cuts `s` to at most `max` characters, on a character boundary.
pub fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((at, _)) => &s[..at],
        None => s,
    }
}

/// `ts` as an RFC 3339 string with exactly three fractional digits and `Z`;
/// as a BSON date to BSON's raw serializer (with the `bson` feature), so a
/// record becomes its stored document in one pass. Read from RFC 3339 text
/// that is also a JSON Schema `date-time` (what the validators check).
pub(crate) mod ts_millis {
    use std::fmt;
    use std::sync::LazyLock;

    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        #[cfg(feature = "bson")]
        if !s.is_human_readable() {
            return serde::Serialize::serialize(&bson::DateTime::from_chrono(*ts), s);
        }
        s.serialize_str(&ts.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    /// JSON Schema's own `date-time` check, so that a time is read exactly
    /// where the validators accept it (chrono alone takes a space for `T`).
    static DATE_TIME: LazyLock<Option<jsonschema::Validator>> = LazyLock::new(|| {
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&serde_json::json!({"type": "string", "format": "date-time"}))
            .ok()
    });

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` with seconds below 60: what
    /// [`serialize`] writes.
    fn canonical(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 24
            && b.iter().enumerate().all(|(i, &c)| match i {
                4 | 7 => c == b'-',
                10 => c == b'T',
                13 | 16 => c == b':',
                19 => c == b'.',
                23 => c == b'Z',
                _ => c.is_ascii_digit(),
            })
            && b[17] < b'6'
    }

    struct Rfc3339;

    impl Visitor<'_> for Rfc3339 {
        type Value = DateTime<Utc>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an RFC 3339 date-time")
        }

        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            let time = DateTime::parse_from_rfc3339(s).map_err(E::custom)?;
            // The spelling this crate writes, which chrono just read, is a
            // `date-time` (no leap second: `:60` goes the long way); any
            // other spelling asks JSON Schema's own check.
            let schema_ok = canonical(s)
                || DATE_TIME
                    .as_ref()
                    .is_some_and(|v| v.is_valid(&serde_json::Value::from(s)));
            if !schema_ok {
                return Err(E::custom("not a JSON Schema date-time"));
            }
            Ok(time.with_timezone(&Utc))
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        d.deserialize_str(Rfc3339)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json_with_millisecond_timestamps() {
        let record = RequestRecord::example();
        let json = serde_json::to_string(&record).unwrap();
        assert!(
            json.contains(r#""ts":"2025-11-13T02:13:20.123Z""#),
            "{json}"
        );
        assert!(json.contains(r#""_id":""#));
        assert!(json.contains(r#""kind":"request""#));
        let back: RequestRecord = serde_json::from_str(&json).unwrap();
        assert_eq!(back, record);
    }

    #[test]
    fn deserialises_from_a_json_value_too() {
        let record = RequestRecord::example();
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(
            serde_json::from_value::<RequestRecord>(value).unwrap(),
            record
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut json = serde_json::to_value(RequestRecord::example()).unwrap();
        json["password"] = "hunter2".into();
        assert!(serde_json::from_value::<RequestRecord>(json).is_err());
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("abc", 10), "abc");
        assert_eq!(truncate_chars("", 0), "");
    }
}
