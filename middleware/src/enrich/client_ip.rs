//! Who the client is: the socket peer, or, only when the peer is a trusted
//! proxy, the address that proxy reports in the one header the operator
//! named ([`ForwardedHeader`], `VISITLOG_FORWARDED_HEADER`).
//!
//! Only that header is read: proxies such as nginx with
//! `$proxy_add_x_forwarded_for`, HAProxy and AWS ALB pass a client's own
//! `Forwarded` (or `X-Real-IP`) through untouched, so believing any header
//! the proxy does not write would let a client choose its address.
//!
//! A chain is walked from the right (the hop nearest to us), and the first
//! address that is not itself a trusted proxy is the client. A hop that
//! cannot be read (`unknown`, an obfuscated name, bytes that are not ASCII,
//! a broken quote) ends the walk at the last trusted proxy: nothing to its
//! left was vouched for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use http::HeaderMap;
use ipnet::IpNet;

/// The header the trusted proxies write the client's address into.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, ALB): the default.
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
    /// `X-Real-IP: client`, one address set by the proxy in front (nginx `real_ip`).
    XRealIp,
}

impl ForwardedHeader {
    /// The header's name, as `VISITLOG_FORWARDED_HEADER` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::Forwarded => "forwarded",
            Self::XRealIp => "x-real-ip",
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            "x-real-ip" => Ok(Self::XRealIp),
            _ => Err(format!(
                "`{s}` is not one of x-forwarded-for, forwarded, x-real-ip"
            )),
        }
    }
}

impl std::fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hop of the chain: an address, or something that cannot be believed.
type Hop = Option<IpAddr>;

/// The client's address, as far as the trusted proxies let us see.
pub(crate) fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
    header: ForwardedHeader,
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let client = match header {
        ForwardedHeader::XForwardedFor => {
            nearest_untrusted(peer, x_forwarded_for(headers), is_trusted)
        }
        ForwardedHeader::Forwarded => {
            nearest_untrusted(peer, forwarded_for(headers).into_iter().rev(), is_trusted)
        }
        ForwardedHeader::XRealIp => {
            nearest_untrusted(peer, x_real_ip(headers).into_iter().rev(), is_trusted)
        }
    };
    Some(client)
}

/// Walks the hops from the nearest (`hops` yields them nearest first): the
/// first one not trusted is the client; an unreadable hop stops the walk at
/// the last believable address.
fn nearest_untrusted(
    peer: IpAddr,
    hops: impl Iterator<Item = Hop>,
    is_trusted: impl Fn(&IpAddr) -> bool,
) -> IpAddr {
    let mut client = peer;
    for hop in hops {
        let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

// Names made once: a lookup by `&str` parses the name every time.
const X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: http::HeaderName = http::HeaderName::from_static("x-real-ip");

/// Every `X-Forwarded-For` hop, nearest first (the last line's last
/// entry), read lazily: the walk usually stops at the first.
fn x_forwarded_for(headers: &HeaderMap) -> impl Iterator<Item = Hop> + '_ {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|value| {
            // A line that is not text is one unreadable hop.
            let (text, unreadable) = value.to_str().map_or(("", true), |text| (text, false));
            let hops = text
                .rsplit(',')
                .filter(move |_| !unreadable)
                .map(|s| parse_node(s.trim()));
            std::iter::once(None)
                .filter(move |_| unreadable)
                .chain(hops)
        })
}

/// `X-Real-IP` holds one address; several lines cannot be told apart.
fn x_real_ip(headers: &HeaderMap) -> Vec<Hop> {
    let mut values = headers.get_all(X_REAL_IP).iter();
    match (values.next(), values.next()) {
        (None, _) => Vec::new(),
        (Some(value), None) => vec![value.to_str().ok().and_then(|v| parse_node(v.trim()))],
        (Some(_), Some(_)) => vec![None],
    }
}

/// The `for=` of each element of every `Forwarded` line (RFC 7239), in
/// order. Quoted strings are honoured, so a `,` or `;` inside quotes does
/// not start a hop; an element without `for=` is an unreadable hop.
fn forwarded_for(headers: &HeaderMap) -> Vec<Hop> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        let Some(elements) = split_unquoted(value, ',') else {
            hops.push(None);
            continue;
        };
        for element in elements {
            if element.trim().is_empty() {
                continue;
            }
            hops.push(element_for(element));
        }
    }
    hops
}

/// The `for` parameter of one `Forwarded` element.
fn element_for(element: &str) -> Hop {
    let pairs = split_unquoted(element, ';')?;
    let mut found = None;
    for pair in pairs {
        let (key, value) = pair.trim().split_once('=')?;
        if key.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None; // two `for` in one element: ambiguous
            }
            found = Some(unquote(value.trim())?);
        }
    }
    parse_node(&found?)
}

/// Splits at `sep` outside quoted strings; `None` if a quote is left open.
fn split_unquoted(s: &str, sep: char) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return None;
    }
    parts.push(&s[start..]);
    Some(parts)
}

/// A token, or a quoted string with its escapes resolved.
fn unquote(value: &str) -> Option<String> {
    let Some(inner) = value.strip_prefix('"') else {
        return (!value.contains('"')).then(|| value.to_owned());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443`, `[2001:db8::1]` or `2001:db8::1`.
fn parse_node(node: &str) -> Hop {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (ip, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        return ip.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let (host, port) = node.rsplit_once(':')?;
    is_port(port).then_some(())?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A port number, or an RFC 7239 obfuscated port (`_abc`), which we need not read.
fn is_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
        || (port.starts_with('_')
            && port.len() > 1
            && port[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
}

/// Zeroes the last octet of an IPv4 address, the last 80 bits of an IPv6 one.
pub(crate) fn anonymize(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn trusted() -> Vec<IpNet> {
        vec![
            "10.0.0.0/8".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ]
    }

    use ForwardedHeader::{Forwarded, XForwardedFor, XRealIp};

    fn resolve_xff(peer: &str, h: &HeaderMap) -> Option<IpAddr> {
        resolve(Some(ip(peer)), h, &trusted(), XForwardedFor)
    }

    #[test]
    fn untrusted_peers_cannot_spoof_their_address() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(resolve_xff("203.0.113.9", &h), Some(ip("203.0.113.9")));
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &[], XForwardedFor),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn trusted_proxies_report_the_client() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(resolve_xff("127.0.0.1", &h), Some(ip("81.2.69.142")));
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins() {
        // The client prepended a fake entry; our two proxies appended theirs.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 81.2.69.142, 10.0.0.7")]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("81.2.69.142")));
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "81.2.69.142"),
        ]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("81.2.69.142")));
    }

    #[test]
    fn a_clients_own_forwarded_header_is_never_believed_behind_an_xff_proxy() {
        // nginx's $proxy_add_x_forwarded_for passes the client's Forwarded through.
        let h = headers(&[
            ("forwarded", "for=6.6.6.6"),
            ("x-forwarded-for", "81.2.69.142"),
        ]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("81.2.69.142")));
        // Nor X-Real-IP.
        let h = headers(&[("x-real-ip", "6.6.6.6"), ("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("81.2.69.142")));
        // And without XFF, the peer is all we know.
        let h = headers(&[("forwarded", "for=6.6.6.6"), ("x-real-ip", "6.6.6.6")]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("10.0.0.1")));
    }

    #[test]
    fn forwarded_is_read_only_when_named() {
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http, for="[2001:218::1]:4711""#,
            ),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("2001:218::1"))
        );
        let h = headers(&[("forwarded", "for=81.2.69.142:8080")]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("81.2.69.142"))
        );
        let h = headers(&[("forwarded", r#"For="[2001:db8:cafe::17]""#)]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("2001:db8:cafe::17"))
        );
        // The client's own X-Forwarded-For means nothing here.
        let h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("10.1.1.1"))
        );
    }

    #[test]
    fn a_non_ascii_forwarded_line_stops_the_walk_and_never_falls_back() {
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        h.append(
            "forwarded",
            HeaderValue::from_bytes(b"for=6.6.6.6;by=\xe9").unwrap(),
        );
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("10.1.1.1"))
        );
        // Left of a trusted hop, an unreadable line still ends the walk there.
        let mut h = HeaderMap::new();
        h.append(
            "forwarded",
            HeaderValue::from_bytes(b"for=6.6.6.6, \xff").unwrap(),
        );
        h.append("forwarded", HeaderValue::from_static("for=10.0.0.9"));
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("10.0.0.9"))
        );
    }

    #[test]
    fn quoted_separators_do_not_make_hops() {
        // A client hiding a second `for` inside a quoted string.
        let h = headers(&[("forwarded", r#"for="6.6.6.6, for=7.7.7.7", for=10.0.0.2"#)]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("10.0.0.2"))
        );
        // Unbalanced quotes, two `for`s in one element, `unknown` and
        // obfuscated names are unreadable.
        for bad in [
            r#"for="81.2.69.142"#,
            "for=81.2.69.142;for=6.6.6.6",
            "for=unknown",
            "for=_hidden",
            "by=10.0.0.1",
        ] {
            let h = headers(&[("forwarded", bad)]);
            assert_eq!(
                resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
                Some(ip("10.1.1.1")),
                "{bad}"
            );
        }
        // An obfuscated port is fine: the address is what we read.
        let h = headers(&[("forwarded", r#"for="81.2.69.142:_p1""#)]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), Forwarded),
            Some(ip("81.2.69.142"))
        );
    }

    #[test]
    fn x_real_ip_is_one_address_from_the_proxy_in_front() {
        let h = headers(&[("x-real-ip", "81.2.69.142"), ("x-forwarded-for", "6.6.6.6")]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted(), XRealIp),
            Some(ip("81.2.69.142"))
        );
        for h in [
            headers(&[("x-real-ip", "81.2.69.142"), ("x-real-ip", "6.6.6.6")]),
            headers(&[("x-real-ip", "81.2.69.142, 6.6.6.6")]),
            headers(&[("x-forwarded-for", "6.6.6.6")]),
        ] {
            assert_eq!(
                resolve(Some(ip("10.1.1.1")), &h, &trusted(), XRealIp),
                Some(ip("10.1.1.1")),
                "{h:?}"
            );
        }
        // From an untrusted peer it means nothing.
        let h = headers(&[("x-real-ip", "81.2.69.142")]);
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &h, &trusted(), XRealIp),
            Some(ip("203.0.113.9"))
        );
    }

    #[test]
    fn header_names_parse_as_the_operator_writes_them() {
        assert_eq!("X-Forwarded-For".parse(), Ok(XForwardedFor));
        assert_eq!(" forwarded ".parse(), Ok(Forwarded));
        assert_eq!("x-real-ip".parse(), Ok(XRealIp));
        assert!("x-client-ip".parse::<ForwardedHeader>().is_err());
    }

    #[test]
    fn unreadable_hops_stop_the_walk() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142, unknown, 10.0.0.3")]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("10.0.0.3")));
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("10.0.0.1")));
        let mut h = headers(&[("x-forwarded-for", "6.6.6.6")]);
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"\xe9, 10.0.0.4").unwrap(),
        );
        assert_eq!(resolve_xff("10.0.0.1", &h), Some(ip("10.0.0.1")));
    }

    #[test]
    fn mapped_addresses_are_canonical_and_no_peer_means_unknown() {
        assert_eq!(
            resolve(
                Some(ip("::ffff:81.2.69.142")),
                &HeaderMap::new(),
                &[],
                XForwardedFor
            ),
            Some(ip("81.2.69.142"))
        );
        assert_eq!(
            resolve(None, &HeaderMap::new(), &trusted(), XForwardedFor),
            None
        );
    }

    #[test]
    fn anonymizing_masks_the_host_part() {
        assert_eq!(anonymize(ip("81.2.69.142")), ip("81.2.69.0"));
        assert_eq!(anonymize(ip("2001:218:1:2:3:4:5:6")), ip("2001:218:1::"));
    }
}

/// Property tests: `PROPTEST_CASES=100000 scripts/bench` runs them at length.
#[cfg(test)]
mod proptests {
    use http::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    const HEADERS: [ForwardedHeader; 3] = [
        ForwardedHeader::XForwardedFor,
        ForwardedHeader::Forwarded,
        ForwardedHeader::XRealIp,
    ];

    fn proxy_net() -> IpNet {
        "10.0.0.0/8".parse().expect("a CIDR")
    }

    /// How a proxy writes an address into `header`.
    fn node(ip: IpAddr, header: ForwardedHeader) -> String {
        match (header, ip) {
            (ForwardedHeader::Forwarded, IpAddr::V6(v6)) => format!("for=\"[{v6}]\""),
            (ForwardedHeader::Forwarded, ip) => format!("for={ip}"),
            (_, ip) => ip.to_string(),
        }
    }

    fn outside_proxies() -> impl Strategy<Value = IpAddr> {
        any::<IpAddr>().prop_filter("not a proxy", |ip| {
            !proxy_net().contains(&ip.to_canonical())
        })
    }

    proptest! {
        #[test]
        fn proptest_client_ip_any_headers_never_panic_and_untrusted_peers_are_final(
            lines in proptest::collection::vec((0..3usize, proptest::collection::vec(any::<u8>(), 0..80)), 0..6),
            which in 0..3usize,
            peer in any::<IpAddr>(),
            trust_peer in any::<bool>(),
        ) {
            let mut headers = HeaderMap::new();
            for (name, bytes) in &lines {
                if let Ok(value) = HeaderValue::from_bytes(bytes) {
                    headers.append(HEADERS[*name].as_str(), value);
                }
            }
            let trusted = if trust_peer { vec![IpNet::from(peer)] } else { Vec::new() };
            let got = resolve(Some(peer), &headers, &trusted, HEADERS[which]);
            if trust_peer {
                prop_assert!(got.is_some());
            } else {
                prop_assert_eq!(got, Some(peer.to_canonical()));
            }
        }

        #[test]
        fn proptest_client_ip_what_the_client_sends_never_beats_the_proxy(
            junk in "[ -~]{0,60}",
            real in outside_proxies(),
            hops in proptest::collection::vec(1u8..255, 0..3),
            which in 0..2usize,
            same_line in any::<bool>(),
        ) {
            // The client sent `junk` in the header; each proxy (10.0.0.x) added
            // the address it saw, the first of them the real client's.
            let header = HEADERS[which];
            let mut seen = vec![node(real, header)];
            seen.extend(hops.iter().map(|h| node(IpAddr::from([10, 0, 0, *h]), header)));
            let mut headers = HeaderMap::new();
            let added = seen.join(", ");
            if same_line {
                let line = if junk.is_empty() { added } else { format!("{junk}, {added}") };
                let Ok(value) = HeaderValue::from_str(&line) else { return Ok(()) };
                headers.append(header.as_str(), value);
            } else {
                if let Ok(value) = HeaderValue::from_str(&junk) {
                    headers.append(header.as_str(), value);
                }
                let Ok(value) = HeaderValue::from_str(&added) else { return Ok(()) };
                headers.append(header.as_str(), value);
            }
            let peer = IpAddr::from([10, 0, 0, 1]);
            let got = resolve(Some(peer), &headers, &[proxy_net()], header);
            let real = real.to_canonical();
            if same_line && header == ForwardedHeader::Forwarded {
                // A quote the client left open swallows the proxies' part: then
                // nothing can be read, and the peer is the answer.
                prop_assert!(got == Some(real) || got == Some(peer), "{got:?} for {headers:?}");
            } else {
                prop_assert_eq!(got, Some(real), "{:?}", headers);
            }
        }
    }
}
