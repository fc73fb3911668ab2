//! One enriched request, before it is a record: what [`Enricher`] worked
//! out, borrowing the rest from the [`Captured`] request. It becomes either
//! the owned [`RequestRecord`] ([`Enriched::into_record`], for the import
//! and the tests) or, in the shipper, the queue's JSON written straight
//! from it (its [`Serialize`]): no record is built and dropped per request,
//! and the parsed user agent and the place are written from JSON made once
//! per cached value.
//!
//! The JSON must be byte for byte what serialising the record writes: the
//! same fields, order, spellings (the schema's own: [`AsId`], [`AsTime`],
//! [`AsIp`], [`AsUuid`]) and omissions. Every layer test checks the
//! two against each other (`tests.rs`, `next_request`), so a field added
//! to [`RequestRecord`] and not here fails them all.
//!
//! [`Enricher`]: super::Enricher

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::value::RawValue;
use visitlog_schema::{
    AsId, AsIp, AsTime, AsUuid, Geo, Kind, RequestRecord, SCHEMA_VERSION, Tutorial,
};

use super::record::Captured;
use super::ua::ParsedUa;

/// A route's path parameters.
pub(crate) type Args = BTreeMap<String, String>;

/// A place and its JSON.
#[derive(Debug)]
pub(crate) struct GeoPart {
    pub(crate) geo: Arc<Geo>,
    pub(crate) json: Box<RawValue>,
}

/// See the module's documentation.
pub(crate) struct Enriched<'a> {
    pub(crate) c: &'a Captured,
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) query: Option<String>,
    pub(crate) route: Option<&'a str>,
    pub(crate) referer: Option<String>,
    pub(crate) ip: Option<IpAddr>,
    pub(crate) geo: Option<Arc<GeoPart>>,
    pub(crate) ua: Arc<ParsedUa>,
    pub(crate) user: Option<&'a str>,
    pub(crate) session_id: Option<String>,
    /// Path parameters of the matched route when it is not the tutorial
    /// pattern; else the tutorial match's are the view's.
    pub(crate) route_args: Option<Args>,
    pub(crate) tutorial_args: Option<Arc<Args>>,
    pub(crate) headers: BTreeMap<&'a str, Cow<'a, str>>,
    pub(crate) content_type: Option<String>,
    pub(crate) request_id: Option<&'a str>,
}

/// The tutorial's three names, borrowed from its match.
#[derive(serde::Serialize)]
struct TutorialRef<'a> {
    foss: &'a str,
    tutorial: &'a str,
    language: &'a str,
}

impl<'a> Enriched<'a> {
    fn view_args(&self) -> Option<&Args> {
        self.route_args.as_ref().or(self.tutorial_args.as_deref())
    }

    fn tutorial(&self) -> Option<TutorialRef<'_>> {
        let args = self.tutorial_args.as_ref()?;
        Some(TutorialRef {
            foss: args.get("foss")?,
            tutorial: args.get("tutorial")?,
            language: args.get("language")?,
        })
    }

    /// The owned record.
    pub(crate) fn into_record(self) -> RequestRecord {
        let c = self.c;
        let tutorial = self.tutorial().map(|t| Tutorial {
            foss: t.foss.to_owned(),
            tutorial: t.tutorial.to_owned(),
            language: t.language.to_owned(),
        });
        RequestRecord {
            id: c.id,
            schema_version: SCHEMA_VERSION,
            kind: Kind::Request,
            ts: c.ts,
            method: self.method.to_owned(),
            path: self.path.to_owned(),
            query: self.query,
            route: self.route.map(str::to_owned),
            status: c.status,
            latency_ms: latency_ms(c),
            bytes_sent: c.bytes_sent,
            referer: self.referer,
            ip: self.ip,
            geo: self.geo.map(|g| (*g.geo).clone()),
            ua: self.ua.agent.clone(),
            visitor_id: c.visit.map(|v| v.visitor_id),
            visit_number: c.visit.map(|v| v.visit_number),
            new_visit: c.visit.map(|v| v.new_visit),
            returning: c.visit.map(|v| v.returning),
            user: self.user.map(str::to_owned),
            session_id: self.session_id,
            view_args: self
                .route_args
                .or_else(|| self.tutorial_args.as_deref().cloned())
                .unwrap_or_default(),
            tutorial,
            headers: self
                .headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.into_owned()))
                .collect(),
            staff: c.identity.staff,
            content_type: self.content_type,
            request_id: self.request_id.map(str::to_owned),
            sample_rate: c.sample_rate,
        }
    }
}

fn latency_ms(c: &Captured) -> f64 {
    c.latency.as_secs_f64() * 1000.0
}

/// A map of the record's (empty when there is none).
struct Entries<'m, K, V>(Option<&'m BTreeMap<K, V>>);

impl<K: Serialize, V: Serialize> Serialize for Entries<'_, K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.into_iter().flatten())
    }
}

impl Serialize for Enriched<'_> {
    /// [`RequestRecord`]'s fields in its order, with its omissions.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let c = self.c;
        let mut r = s.serialize_struct("RequestRecord", 28)?;
        r.serialize_field("_id", &AsId(c.id))?;
        r.serialize_field("schema_version", &SCHEMA_VERSION)?;
        r.serialize_field("kind", &Kind::Request)?;
        r.serialize_field("ts", &AsTime(c.ts))?;
        r.serialize_field("method", self.method)?;
        r.serialize_field("path", self.path)?;
        r.serialize_field("query", &self.query)?;
        r.serialize_field("route", &self.route)?;
        r.serialize_field("status", &c.status)?;
        r.serialize_field("latency_ms", &latency_ms(c))?;
        r.serialize_field("bytes_sent", &c.bytes_sent)?;
        r.serialize_field("referer", &self.referer)?;
        r.serialize_field("ip", &AsIp(self.ip))?;
        r.serialize_field("geo", &self.geo.as_ref().map(|g| &*g.json))?;
        r.serialize_field("ua", &*self.ua.json)?;
        r.serialize_field("visitor_id", &AsUuid(c.visit.map(|v| v.visitor_id)))?;
        r.serialize_field("visit_number", &c.visit.map(|v| v.visit_number))?;
        r.serialize_field("new_visit", &c.visit.map(|v| v.new_visit))?;
        r.serialize_field("returning", &c.visit.map(|v| v.returning))?;
        r.serialize_field("user", &self.user)?;
        r.serialize_field("session_id", &self.session_id)?;
        r.serialize_field("view_args", &Entries(self.view_args()))?;
        r.serialize_field("tutorial", &self.tutorial())?;
        r.serialize_field("headers", &Entries(Some(&self.headers)))?;
        if c.identity.staff {
            r.serialize_field("staff", &true)?;
        }
        r.serialize_field("content_type", &self.content_type)?;
        if let Some(id) = self.request_id {
            r.serialize_field("request_id", id)?;
        }
        if let Some(rate) = c.sample_rate {
            r.serialize_field("sample_rate", &rate)?;
        }
        r.end()
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use chrono::{TimeZone, Timelike, Utc};
    use http::{HeaderName, HeaderValue, Method, Uri};
    use proptest::prelude::*;

    use uuid::Uuid;

    use super::*;
    use crate::Identity;
    use crate::config::Config;
    use crate::enrich::Enricher;
    use crate::enrich::ua::UaInput;
    use crate::visitor::Visit;

    /// MaxMind's test City database, fetched by `scripts/fetch-test-data`.
    fn geo_db() -> PathBuf {
        let dir = std::env::var_os("VISITLOG_TEST_DATA").map_or_else(
            || {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../.cache/maxminddb-test-data/maxminddb-3.2.0/tests/data")
            },
            PathBuf::from,
        );
        let path = dir.join("test-data/GeoIP2-City-Test.mmdb");
        assert!(
            path.exists(),
            "{} missing: run scripts/fetch-test-data",
            path.display()
        );
        path
    }

    fn enricher(anonymize: bool) -> Enricher {
        let config = Config::default()
            .geodb(geo_db())
            .anonymize_ip(anonymize)
            .deny_params(vec!["token".to_owned()]);
        Enricher::new(&config, b"0123456789abcdef0123456789abcdef").unwrap()
    }

    /// Header values as a client may send them: text, Latin-1 bytes,
    /// quotes and backslashes, control characters JSON escapes, long ones.
    fn header_value() -> impl Strategy<Value = HeaderValue> {
        prop_oneof![
            "[ -~]{0,40}".prop_map(|s| HeaderValue::from_str(&s).unwrap()),
            proptest::collection::vec(0x80u8..=0xff, 1..8)
                .prop_map(|b| HeaderValue::from_bytes(&b).unwrap()),
            Just(HeaderValue::from_static("a \"quoted\" \\ value\t")),
            Just(HeaderValue::from_str(&"é".repeat(600)).unwrap()),
        ]
    }

    fn captured() -> impl Strategy<Value = Captured> {
        let path = prop_oneof![
            Just("/watch/Python/Getting-started/English/".to_owned()),
            Just("/watch/Python/Getting%20started/English/?t=42&token=s3cret".to_owned()),
            Just("/courses/7/units/3?x=%22y%22".to_owned()),
            Just("/".to_owned()),
            Just(format!("/watch/Python/{}/English/", "x".repeat(300))),
            "/[a-z0-9/%_.~-]{0,60}".prop_map(|p| p),
        ];
        let route = prop_oneof![
            Just(None),
            Just(Some("/watch/{foss}/{tutorial}/{language}/".to_owned())),
            Just(Some("/courses/{course}/units/{unit}".to_owned())),
            Just(Some("/{bad".to_owned())),
        ];
        let ip = prop_oneof![
            Just(None),
            Just(Some("81.2.69.142".parse().unwrap())),
            Just(Some("2001:218::1".parse().unwrap())),
            Just(Some("10.0.0.1".parse().unwrap())),
            any::<u32>().prop_map(|n| Some(IpAddr::from(n.to_be_bytes()))),
        ];
        let identity = (
            proptest::option::of("[a-zA-Z0-9 @.\"\\\\é-]{0,20}"),
            proptest::option::of("[a-z0-9]{1,20}"),
            any::<bool>(),
        )
            .prop_map(|(user, session_id, staff)| Identity {
                user,
                session_id,
                staff,
            });
        let visit =
            proptest::option::of((1u32..1000, any::<bool>(), any::<bool>())).prop_map(|v| {
                v.map(|(visit_number, new_visit, returning)| Visit {
                    visitor_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
                    visit_number,
                    new_visit,
                    returning,
                })
            });
        let headers = proptest::collection::vec(
            (
                prop_oneof![Just("accept-language"), Just("x-course"), Just("dnt")],
                header_value(),
            ),
            0..5,
        );
        let extras = (
            proptest::option::of(header_value()),
            proptest::option::of(prop_oneof![
                Just(HeaderValue::from_static("text/html; charset=utf-8")),
                Just(HeaderValue::from_static("Application/JSON")),
                Just(HeaderValue::from_static("nonsense")),
            ]),
            proptest::option::of(header_value()),
            proptest::option::of(prop_oneof![Just(0.5), Just(0.1), Just(1.0 / 3.0)]),
            0u64..10_000_000,
            (0i64..4_000_000_000_000, 0u32..1_000_000_000),
        );
        let ua = prop_oneof![
            Just(None),
            Just(Some(HeaderValue::from_static(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
            ))),
            Just(Some(HeaderValue::from_static(
                "Googlebot/2.1 (+http://www.google.com/bot.html)"
            ))),
            header_value().prop_map(Some),
        ];
        (
            (path, route, ip, identity, visit),
            (headers, extras, ua, 100u16..600),
        )
            .prop_map(
                |((path, route, client_ip, identity, visit), (headers, extras, ua, status))| {
                    let (referer, content_type, request_id, sample_rate, micros, (ms, nanos)) =
                        extras;
                    Captured {
                        id: Uuid::from_u128(0x0193_1234_5678_7abc_8def_0123_4567_89ab),
                        ts: Utc.timestamp_millis_opt(ms).unwrap()
                            + chrono::Duration::nanoseconds(i64::from(nanos % 1_000_000)),
                        method: Method::GET,
                        uri: path
                            .parse::<Uri>()
                            .unwrap_or_else(|_| Uri::from_static("/")),
                        route,
                        status,
                        latency: Duration::from_micros(micros),
                        bytes_sent: micros * 3,
                        referer,
                        ua: UaInput {
                            user_agent: ua,
                            ..UaInput::default()
                        },
                        headers: headers
                            .into_iter()
                            .map(|(n, v)| (HeaderName::from_static(n), v))
                            .collect(),
                        client_ip,
                        visit,
                        identity,
                        content_type,
                        request_id,
                        sample_rate,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(512)
        ))]

        /// The shipper's JSON is byte for byte the serialised record, and
        /// reads back as it.
        #[test]
        fn the_written_json_is_the_records(c in captured(), anonymize in any::<bool>()) {
            let enricher = enricher(anonymize);
            // Twice: the second time the user agent and the place come
            // from the caches, with their JSON.
            for _ in 0..2 {
                let record = enricher.record(c.clone());
                let mut written = Vec::new();
                enricher.write_json(&c, &mut written).unwrap();
                prop_assert_eq!(
                    String::from_utf8(written.clone()).unwrap(),
                    serde_json::to_string(&record).unwrap()
                );
                // It reads back as the record, whose time the JSON carries
                // to the millisecond.
                let back: RequestRecord = serde_json::from_slice(&written).unwrap();
                let mut expected = record;
                let nanos = expected.ts.timestamp_subsec_nanos();
                expected.ts = expected.ts.with_nanosecond(nanos - nanos % 1_000_000).unwrap();
                prop_assert_eq!(back, expected);
            }
        }
    }

    #[test]
    fn a_known_place_is_written_from_its_cached_json() {
        let enricher = enricher(false);
        let c = Captured {
            client_ip: Some("81.2.69.142".parse().unwrap()),
            ..captured_example()
        };
        let mut first = Vec::new();
        enricher.write_json(&c, &mut first).unwrap();
        let record: RequestRecord = serde_json::from_slice(&first).unwrap();
        let geo = record.geo.expect("the test database knows 81.2.69.142");
        assert_eq!(geo.country_code.as_deref(), Some("GB"));
        assert_eq!(enricher.geo_json.len(), 1, "its JSON is kept");
        let mut second = Vec::new();
        enricher.write_json(&c, &mut second).unwrap();
        assert_eq!(first, second);
        assert_eq!(enricher.geo_json.len(), 1, "and used again");
    }

    #[test]
    fn long_paths_are_matched_but_not_kept() {
        let enricher = enricher(false);
        let long = format!("/watch/Python/{}/English/", "x".repeat(300));
        for path in [long.as_str(), "/watch/Python/Getting-started/English/"] {
            let c = Captured {
                uri: path.parse().unwrap(),
                ..captured_example()
            };
            let record = enricher.record(c);
            assert_eq!(
                record.tutorial.map(|t| t.language).as_deref(),
                Some("English"),
                "{path}"
            );
        }
        assert_eq!(
            enricher.tutorial_matches.len(),
            1,
            "only the short path is kept"
        );
    }

    fn captured_example() -> Captured {
        Captured {
            id: Uuid::from_u128(0x0193_1234_5678_7abc_8def_0123_4567_89ab),
            ts: Utc::now(),
            method: Method::GET,
            uri: Uri::from_static("/watch/Python/Getting-started/English/"),
            route: None,
            status: 200,
            latency: Duration::from_millis(3),
            bytes_sent: 10,
            referer: None,
            ua: UaInput::default(),
            headers: Vec::new(),
            client_ip: None,
            visit: None,
            identity: Identity::default(),
            content_type: None,
            request_id: None,
            sample_rate: None,
        }
    }
}
