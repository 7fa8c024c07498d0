//! The client's IP address: the socket peer, unless that peer is a trusted proxy (`TRUSTED_PROXIES`),
//! in which case the right-most address in `X-Forwarded-For` that is not itself a trusted proxy. A
//! client can prepend anything to the header, so only entries added by our own proxies are believed;
//! from an untrusted peer the header is ignored entirely.

use std::net::IpAddr;

use ipnet::IpNet;

/// `peer` (a socket's peer address) is one of our proxies.
pub fn is_trusted_proxy(peer: IpAddr, trusted: &[IpNet]) -> bool {
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted_proxy(peer, trusted) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut hops = header.split(',').map(|s| s.trim()).rev().peekable();
    let mut last_trusted = peer;
    while let Some(hop) = hops.next() {
        let Some(ip) = parse_hop(hop) else {
            // Garbage in the chain: stop believing it at that point.
            return last_trusted;
        };
        if !is_trusted(&ip) || hops.peek().is_none() {
            return ip;
        }
        last_trusted = ip;
    }
    peer
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` and `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    if let Some(rest) = hop.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn a_proxy_on_a_dual_stack_listener_is_recognised() {
        let trusted = nets(&["127.0.0.1/32"]);
        assert!(is_trusted_proxy(ip("::ffff:127.0.0.1"), &trusted));
        assert!(is_trusted_proxy(ip("127.0.0.1"), &trusted));
        assert!(!is_trusted_proxy(ip("::ffff:127.0.0.2"), &trusted));
        assert!(!is_trusted_proxy(ip("::1"), &trusted));
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        assert_eq!(
            client_ip(ip("203.0.113.7"), Some("1.1.1.1"), &[]),
            ip("203.0.113.7")
        );
        assert_eq!(client_ip(ip("203.0.113.7"), None, &[]), ip("203.0.113.7"));
    }

    #[test]
    fn a_spoofed_header_from_an_untrusted_peer_changes_nothing() {
        let trusted = nets(&["10.0.0.0/8"]);
        assert_eq!(
            client_ip(ip("198.51.100.9"), Some("10.0.0.1, 1.2.3.4"), &trusted),
            ip("198.51.100.9")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "192.168.1.10/32"]);
        // The client prepended a fake address; the proxy appended the real one.
        let header = "6.6.6.6, 203.0.113.7, 10.1.2.3";
        assert_eq!(
            client_ip(ip("192.168.1.10"), Some(header), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("203.0.113.7:5555"), &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("[2001:db8::7]:443"), &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(client_ip(ip("10.0.0.5"), None, &trusted), ip("10.0.0.5"));
        // Only proxies in the chain: the left-most is the best we know.
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("10.0.0.9, 10.0.0.8"), &trusted),
            ip("10.0.0.9")
        );
        // Garbage stops the walk at the last trusted hop.
        assert_eq!(
            client_ip(ip("10.0.0.5"), Some("203.0.113.7, not-an-ip"), &trusted),
            ip("10.0.0.5")
        );
    }
}
