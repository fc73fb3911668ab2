//! User-agent parsing with `woothee`, refined by User-Agent Client Hints.
//!
//! Browsers with a reduced ("frozen") UA string report e.g. Windows 10 and
//! Android 10 whatever the real version; where they send `Sec-CH-UA*` headers
//! those fill in what the string hides. Results are cached by the exact input,
//! since a site sees the same few hundred agents over and over.

use std::sync::Arc;

use http::HeaderValue;
use quick_cache::sync::Cache;
use serde_json::value::RawValue;
use visitlog_schema::{UserAgent, limits, truncate_chars};
use woothee::parser::Parser;

use super::bots::{looks_like_a_bot, warm_up};

/// What `Accept-CH` asks for (`VISITLOG_ACCEPT_CH`): the hints that refine a
/// reduced UA string. Browsers send `Sec-CH-UA`, `-Mobile` and `-Platform`
/// unasked; these high-entropy ones only to sites that ask. Nothing else is
/// asked for, since nothing else is read.
pub(crate) const ACCEPT_CH: &str = "Sec-CH-UA-Platform-Version, Sec-CH-UA-Full-Version-List";

/// The UA header and the Client Hints that refine it, as received.
#[derive(Debug, Clone, Default)]
pub(crate) struct UaInput {
    pub(crate) user_agent: Option<HeaderValue>,
    pub(crate) ch_ua: Option<HeaderValue>,
    pub(crate) ch_full_version_list: Option<HeaderValue>,
    pub(crate) ch_platform: Option<HeaderValue>,
    pub(crate) ch_platform_version: Option<HeaderValue>,
    pub(crate) ch_mobile: Option<HeaderValue>,
}

impl UaInput {
    pub(crate) fn from_headers(h: &http::HeaderMap) -> Self {
        use http::HeaderName;
        // Names made once: a lookup by `&str` parses the name every time.
        const CH_UA: HeaderName = HeaderName::from_static("sec-ch-ua");
        const CH_FULL_VERSION_LIST: HeaderName =
            HeaderName::from_static("sec-ch-ua-full-version-list");
        const CH_PLATFORM: HeaderName = HeaderName::from_static("sec-ch-ua-platform");
        const CH_PLATFORM_VERSION: HeaderName =
            HeaderName::from_static("sec-ch-ua-platform-version");
        const CH_MOBILE: HeaderName = HeaderName::from_static("sec-ch-ua-mobile");
        Self {
            user_agent: h.get(http::header::USER_AGENT).cloned(),
            ch_ua: h.get(CH_UA).cloned(),
            ch_full_version_list: h.get(CH_FULL_VERSION_LIST).cloned(),
            ch_platform: h.get(CH_PLATFORM).cloned(),
            ch_platform_version: h.get(CH_PLATFORM_VERSION).cloned(),
            ch_mobile: h.get(CH_MOBILE).cloned(),
        }
    }

    fn cache_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(256);
        for part in [
            &self.user_agent,
            &self.ch_ua,
            &self.ch_full_version_list,
            &self.ch_platform,
            &self.ch_platform_version,
            &self.ch_mobile,
        ] {
            if let Some(v) = part {
                key.extend_from_slice(v.as_bytes());
            }
            key.push(0);
        }
        key
    }
}

/// A parsed user agent, and its JSON as a record carries it: written once
/// per cached agent rather than once per record.
#[derive(Debug)]
pub(crate) struct ParsedUa {
    pub(crate) agent: UserAgent,
    pub(crate) json: Box<RawValue>,
}

impl ParsedUa {
    fn new(agent: UserAgent) -> Self {
        // A struct of strings, options and a bool always serialises.
        let json = serde_json::value::to_raw_value(&agent)
            .unwrap_or_else(|_| unreachable!("a UserAgent is plain data"));
        Self { agent, json }
    }
}

impl std::ops::Deref for ParsedUa {
    type Target = UserAgent;

    fn deref(&self) -> &UserAgent {
        &self.agent
    }
}

pub(crate) struct UaParser {
    parser: Parser,
    cache: Cache<Vec<u8>, Arc<ParsedUa>>,
}

impl UaParser {
    pub(crate) fn new(capacity: usize) -> Self {
        warm_up();
        Self {
            parser: Parser::new(),
            cache: Cache::new(capacity.max(1)),
        }
    }

    pub(crate) fn parse(&self, input: &UaInput) -> Arc<ParsedUa> {
        let key = input.cache_key();
        if key.len() > 4096 {
            // Too odd to be worth a cache slot.
            return Arc::new(ParsedUa::new(self.parse_uncached(input)));
        }
        if let Some(hit) = self.cache.get(&key) {
            return hit;
        }
        let parsed = Arc::new(ParsedUa::new(self.parse_uncached(input)));
        self.cache.insert(key, parsed.clone());
        parsed
    }

    fn parse_uncached(&self, input: &UaInput) -> UserAgent {
        let raw = input
            .user_agent
            .as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .unwrap_or_default();
        let raw = truncate_chars(&raw, limits::USER_AGENT);
        let mut ua = UserAgent {
            raw: raw.to_owned(),
            ..UserAgent::default()
        };
        if let Some(r) = self.parser.parse(raw) {
            ua.name = known(r.name);
            ua.category = known(r.category);
            ua.os = known(r.os);
            ua.os_version = known(&r.os_version);
            ua.version = known(r.version);
            ua.vendor = known(r.vendor);
        }
        apply_client_hints(&mut ua, input);
        ua.is_bot = ua.category.as_deref() == Some("crawler") || looks_like_a_bot(&ua.raw);
        if ua.is_bot {
            ua.category = Some("crawler".to_owned());
        }
        ua
    }
}

fn known(s: &str) -> Option<String> {
    (!s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN)
        .then(|| truncate_chars(s, limits::SHORT).to_owned())
}

fn apply_client_hints(ua: &mut UserAgent, input: &UaInput) {
    let text = |v: &Option<HeaderValue>| v.as_ref().and_then(|v| v.to_str().ok()).map(unquote);
    let brands = text(&input.ch_full_version_list)
        .or_else(|| text(&input.ch_ua))
        .map(|list| parse_brands(&list))
        .unwrap_or_default();
    if let Some((brand, version)) = pick_brand(&brands) {
        if ua.name.is_none() {
            ua.name = known(brand_name(brand));
        }
        // Frozen strings say `131.0.0.0`; the full version list says `131.0.6778.86`.
        let frozen = |v: &str| v.ends_with(".0.0.0") || !v.contains('.');
        if ua.version.as_deref().is_none_or(frozen) && (ua.version.is_none() || !frozen(version)) {
            ua.version = known(version);
        }
    }
    if let Some(platform) = text(&input.ch_platform).filter(|p| !p.is_empty()) {
        let platform_version = text(&input.ch_platform_version).filter(|v| !v.is_empty());
        ua.os = known(&match (platform.as_str(), platform_version.as_deref()) {
            ("Windows", Some(v)) => {
                // Microsoft: platform version 13 and up is Windows 11, 1 to 12 Windows 10.
                let major: u32 = v
                    .split('.')
                    .next()
                    .and_then(|m| m.parse().ok())
                    .unwrap_or(0);
                match major {
                    13.. => "Windows 11".to_owned(),
                    1..=12 => "Windows 10".to_owned(),
                    _ => ua.os.clone().unwrap_or_else(|| "Windows".to_owned()),
                }
            }
            ("Windows", None) => ua.os.clone().unwrap_or_else(|| "Windows".to_owned()),
            (other, _) => other.to_owned(),
        });
        if let Some(v) = platform_version {
            ua.os_version = known(&v);
        }
    }
    if text(&input.ch_mobile).as_deref() == Some("?1")
        && matches!(ua.category.as_deref(), None | Some("pc"))
    {
        ua.category = Some("smartphone".to_owned());
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_owned()
}

/// `"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"`.
fn parse_brands(list: &str) -> Vec<(String, String)> {
    list.split(',')
        .filter_map(|item| {
            let mut parts = item.split(';');
            let brand = unquote(parts.next()?);
            let version = parts
                .find_map(|p| p.trim().strip_prefix("v="))
                .map(unquote)?;
            Some((brand, version))
        })
        .take(16)
        .collect()
}

/// The brand that names the browser: not a GREASE entry, and not the
/// `Chromium` engine when a product brand is present.
fn pick_brand(brands: &[(String, String)]) -> Option<(&str, &str)> {
    let real = |b: &&(String, String)| !(b.0.contains("Not") && b.0.contains("Brand"));
    brands
        .iter()
        .filter(real)
        .find(|b| b.0 != "Chromium")
        .or_else(|| brands.iter().find(real))
        .map(|(b, v)| (b.as_str(), v.as_str()))
}

fn brand_name(brand: &str) -> &str {
    match brand {
        "Google Chrome" => "Chrome",
        "Microsoft Edge" => "Edge",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(ua: &'static str, hints: &[(&str, &'static str)]) -> UaInput {
        let mut h = http::HeaderMap::new();
        h.insert(http::header::USER_AGENT, HeaderValue::from_static(ua));
        for (k, v) in hints {
            h.insert(
                http::HeaderName::try_from(*k).unwrap(),
                HeaderValue::from_static(v),
            );
        }
        UaInput::from_headers(&h)
    }

    const CHROME_WIN: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

    /// A labelled set of 140 current agents (68 bots: search, AI, social,
    /// SEO and monitoring crawlers, headless browsers, HTTP libraries; 72
    /// browsers, in-app views, TVs and consoles): every bot is a bot, no
    /// browser is. woothee alone caught 35 of the 68.
    #[test]
    fn every_labelled_bot_and_no_browser_is_a_bot() {
        let p = UaParser::new(256);
        let set = include_str!("../../testdata/user-agents.tsv");
        let mut wrong = Vec::new();
        let mut rows = 0;
        for line in set.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let cols: Vec<&str> = line.split('\t').collect();
            let (expected, ua) = (cols[1] == "1", cols[6]);
            let input = UaInput {
                user_agent: (!ua.is_empty()).then(|| HeaderValue::from_str(ua).unwrap()),
                ..UaInput::default()
            };
            if p.parse(&input).is_bot != expected {
                wrong.push(format!("{} {}", cols[0], cols[5]));
            }
            rows += 1;
        }
        assert_eq!(rows, 140);
        assert!(wrong.is_empty(), "misclassified: {wrong:#?}");
    }

    #[test]
    fn parses_with_woothee() {
        let p = UaParser::new(16);
        let ua = p.parse(&input(
            "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            &[],
        ));
        assert_eq!(ua.name.as_deref(), Some("Firefox"));
        assert_eq!(ua.category.as_deref(), Some("pc"));
        assert_eq!(ua.os.as_deref(), Some("Linux"));
        assert_eq!(ua.version.as_deref(), Some("133.0"));
        assert!(!ua.is_bot);
        let bot = p.parse(&input(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            &[],
        ));
        assert!(bot.is_bot);
        assert_eq!(bot.name.as_deref(), Some("Googlebot"));
        let unknown = p.parse(&input("curl-ish/0", &[]));
        assert_eq!(
            (unknown.name.as_deref(), unknown.os.as_deref()),
            (None, None)
        );
    }

    #[test]
    fn client_hints_fill_what_the_frozen_string_hides() {
        let p = UaParser::new(16);
        let frozen = p.parse(&input(CHROME_WIN, &[]));
        assert_eq!(frozen.os.as_deref(), Some("Windows 10"));
        let hinted = p.parse(&input(
            CHROME_WIN,
            &[
                ("sec-ch-ua", r#""Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24""#),
                (
                    "sec-ch-ua-full-version-list",
                    r#""Google Chrome";v="131.0.6778.86", "Chromium";v="131.0.6778.86", "Not_A Brand";v="24.0.0.0""#,
                ),
                ("sec-ch-ua-platform", r#""Windows""#),
                ("sec-ch-ua-platform-version", r#""15.0.0""#),
                ("sec-ch-ua-mobile", "?0"),
            ],
        ));
        assert_eq!(hinted.name.as_deref(), Some("Chrome"));
        assert_eq!(hinted.version.as_deref(), Some("131.0.6778.86"));
        assert_eq!(hinted.os.as_deref(), Some("Windows 11"));
        assert_eq!(hinted.os_version.as_deref(), Some("15.0.0"));
        assert_eq!(hinted.category.as_deref(), Some("pc"));
    }

    #[test]
    fn mobile_and_platform_hints() {
        let p = UaParser::new(16);
        let ua = p.parse(&input(
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
            &[
                ("sec-ch-ua-platform", r#""Android""#),
                ("sec-ch-ua-platform-version", r#""14.0.0""#),
                ("sec-ch-ua-mobile", "?1"),
            ],
        ));
        assert_eq!(ua.os.as_deref(), Some("Android"));
        assert_eq!(ua.os_version.as_deref(), Some("14.0.0"));
        assert_eq!(ua.category.as_deref(), Some("smartphone"));
    }

    #[test]
    fn results_are_cached_and_raw_is_bounded() {
        let p = UaParser::new(16);
        let a = p.parse(&input(CHROME_WIN, &[]));
        let b = p.parse(&input(CHROME_WIN, &[]));
        assert!(Arc::ptr_eq(&a, &b));
        let long = Box::leak(format!("Mozilla/5.0 {}", "x".repeat(2000)).into_boxed_str());
        assert_eq!(
            p.parse(&input(long, &[])).raw.chars().count(),
            limits::USER_AGENT
        );
    }
}
