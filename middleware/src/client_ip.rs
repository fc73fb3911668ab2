//! Who the client is: the socket peer, or, only when the peer is a trusted
//! proxy, the address that proxy reports in `Forwarded` or `X-Forwarded-For`.
//!
//! The chain is walked from the right (the hop nearest to us) and the first
//! address that is not itself a trusted proxy is the client, so a client
//! cannot spoof its address by sending its own `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderMap;
use ipnet::IpNet;

/// The client's address, as far as the trusted proxies let us see.
pub(crate) fn resolve(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops = forwarded_for(headers).or_else(|| x_forwarded_for(headers));
    let Some(hops) = hops else {
        return Some(peer);
    };
    let mut client = peer;
    for hop in hops.iter().rev() {
        // An entry we cannot read (`unknown`, an obfuscated name, garbage)
        // ends what we can believe: keep the last hop we could.
        let Some(ip) = hop.map(|ip| ip.to_canonical()) else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// `for=` values of all `Forwarded` headers (RFC 7239), in order.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all(http::header::FORWARDED) {
        let value = value.to_str().ok()?;
        for element in value.split(',') {
            let for_value = element.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
            });
            if let Some(v) = for_value {
                hops.push(parse_node(v.trim_matches('"')));
            }
        }
    }
    (!hops.is_empty()).then_some(hops)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        hops.extend(value.split(',').map(|s| parse_node(s.trim())));
    }
    (!hops.is_empty()).then_some(hops)
}

/// `1.2.3.4`, `1.2.3.4:5678`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
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

    #[test]
    fn untrusted_peers_cannot_spoof_their_address() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(
            resolve(Some(ip("203.0.113.9")), &h, &trusted()),
            Some(ip("203.0.113.9"))
        );
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &[]),
            Some(ip("127.0.0.1"))
        );
    }

    #[test]
    fn trusted_proxies_report_the_client() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142")]);
        assert_eq!(
            resolve(Some(ip("127.0.0.1")), &h, &trusted()),
            Some(ip("81.2.69.142"))
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_wins() {
        // The client prepended a fake entry; our two proxies appended theirs.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 81.2.69.142, 10.0.0.7")]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &h, &trusted()),
            Some(ip("81.2.69.142"))
        );
        // Several header lines form one list.
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "81.2.69.142"),
        ]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &h, &trusted()),
            Some(ip("81.2.69.142"))
        );
    }

    #[test]
    fn forwarded_is_understood_and_preferred() {
        let h = headers(&[
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http, for="[2001:218::1]:4711""#,
            ),
            ("x-forwarded-for", "5.5.5.5"),
        ]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted()),
            Some(ip("2001:218::1"))
        );
        let h = headers(&[("forwarded", "for=81.2.69.142:8080")]);
        assert_eq!(
            resolve(Some(ip("10.1.1.1")), &h, &trusted()),
            Some(ip("81.2.69.142"))
        );
    }

    #[test]
    fn unreadable_hops_stop_the_walk() {
        let h = headers(&[("x-forwarded-for", "81.2.69.142, unknown, 10.0.0.3")]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &h, &trusted()),
            Some(ip("10.0.0.3"))
        );
        let h = headers(&[("x-forwarded-for", "garbage")]);
        assert_eq!(
            resolve(Some(ip("10.0.0.1")), &h, &trusted()),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn mapped_addresses_are_canonical_and_no_peer_means_unknown() {
        assert_eq!(
            resolve(Some(ip("::ffff:81.2.69.142")), &HeaderMap::new(), &[]),
            Some(ip("81.2.69.142"))
        );
        assert_eq!(resolve(None, &HeaderMap::new(), &trusted()), None);
    }

    #[test]
    fn anonymizing_masks_the_host_part() {
        assert_eq!(anonymize(ip("81.2.69.142")), ip("81.2.69.0"));
        assert_eq!(anonymize(ip("2001:218:1:2:3:4:5:6")), ip("2001:218:1::"));
    }
}
