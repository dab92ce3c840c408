//! Who a request comes from: the socket peer, or, behind a trusted proxy, the client the
//! proxy names. Budgets and login throttling count per [`ClientNetwork`].

use ipnet::IpNet;
use latchkey_domain::ClientNetwork;
use poem::{http::HeaderMap, Addr, Endpoint, Request};
use std::{net::IpAddr, sync::Arc};

/// Which header a trusted proxy writes the client into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, AWS and GCP load balancers).
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
}

/// The proxies whose word about the client is believed, and the header they use. Only that
/// header is read: a proxy that appends to one passes the other through as the client sent
/// it, so reading both would let any client choose its own address.
#[derive(Clone, Debug)]
pub struct TrustedProxies {
    networks: Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>, header: ForwardedHeader) -> Self {
        Self {
            networks: networks.into(),
            header,
        }
    }

    /// Whether the socket peer is one of the trusted proxies (false for in-process calls).
    pub(crate) fn trusts_peer(&self, peer: &Addr) -> bool {
        matches!(peer, Addr::SocketAddr(socket) if self.trusts(socket.ip()))
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer unless it is a trusted proxy; then the nearest address
    /// in the forwarding chain that is not a trusted proxy. Entries are read from the nearest
    /// hop outwards, and reading stops at one that is not an address (`unknown`, an obfuscated
    /// name, garbage): what lies beyond it was written by someone not trusted.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in self.chain(headers).into_iter().rev() {
            let Some(ip) = hop else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }

    /// Every entry of the configured header, first hop first; `None` for an entry that is not
    /// an address.
    fn chain(&self, headers: &HeaderMap) -> Vec<Option<IpAddr>> {
        let (name, parse): (_, fn(&str) -> Option<IpAddr>) = match self.header {
            ForwardedHeader::XForwardedFor => ("x-forwarded-for", parse_x_forwarded_for),
            ForwardedHeader::Forwarded => ("forwarded", parse_forwarded_element),
        };
        // Split the raw bytes: a stray non-ASCII byte a client put in its own entry spoils that
        // entry only, not the addresses the proxies appended after it.
        headers
            .get_all(name)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&byte| byte == b','))
            .map(|entry| std::str::from_utf8(entry).ok().and_then(parse))
            .collect()
    }
}

/// An IPv4 client on a dual-stack socket arrives as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_x_forwarded_for(entry: &str) -> Option<IpAddr> {
    parse_node(entry.trim())
}

/// `for=192.0.2.60;proto=http` or `for="[2001:db8::17]:4711"`.
fn parse_forwarded_element(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("for") {
            return None;
        }
        parse_node(value.trim().trim_matches('"'))
    })
}

/// An address, with or without a port (`[v6]:port`, `v4:port`).
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    let (host, port) = node.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

/// Resolves the client before anything else runs, for handlers to read as
/// `Data<&ClientNetwork>`.
pub async fn resolve<E: Endpoint>(
    next: E,
    mut req: Request,
    proxies: TrustedProxies,
) -> poem::Result<E::Output> {
    let client = match req.remote_addr().0 {
        Addr::SocketAddr(peer) => ClientNetwork::of(proxies.client(peer.ip(), req.headers())),
        // In-process calls (tests) have no peer.
        _ => ClientNetwork::Unknown,
    };
    req.extensions_mut().insert(client);
    next.call(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn behind(networks: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::new(
            networks.iter().map(|n| n.parse().unwrap()).collect(),
            header,
        )
    }

    #[test]
    fn without_trusted_proxies_headers_are_ignored() {
        let none = behind(&[], ForwardedHeader::XForwardedFor);
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(none.client(ip("192.0.2.1"), &spoofed), ip("192.0.2.1"));
    }

    #[test]
    fn a_peer_outside_the_trusted_networks_is_the_client_whatever_it_sends() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let spoofed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(proxies.client(ip("192.0.2.1"), &spoofed), ip("192.0.2.1"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_nearest_untrusted_hop_is_the_client() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        // The client claimed 1.1.1.1; the proxy appended what it saw.
        let chain = headers(&[("x-forwarded-for", "1.1.1.1, 198.51.100.7, 10.0.0.2")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &chain), ip("198.51.100.7"));
        // Split over two header lines, the order is kept.
        let split = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "198.51.100.7"),
        ]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &split), ip("198.51.100.7"));
    }

    #[test]
    fn garbage_in_the_chain_stops_the_walk_at_the_last_trusted_hop() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let chain = headers(&[("x-forwarded-for", "198.51.100.7, nonsense, 10.0.0.2")]);
        assert_eq!(proxies.client(ip("10.0.0.1"), &chain), ip("10.0.0.2"));
        assert_eq!(
            proxies.client(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn a_bad_byte_in_the_clients_own_entry_does_not_hide_the_proxys() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let mut chain = HeaderMap::new();
        chain.append(
            "x-forwarded-for",
            poem::http::HeaderValue::from_bytes(b"1.1.1.1\xff, 198.51.100.7").unwrap(),
        );
        assert_eq!(proxies.client(ip("10.0.0.1"), &chain), ip("198.51.100.7"));
    }

    #[test]
    fn only_the_configured_header_is_read() {
        let xff = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let forwarded_only = headers(&[("forwarded", "for=198.51.100.7")]);
        assert_eq!(xff.client(ip("10.0.0.1"), &forwarded_only), ip("10.0.0.1"));
        let rfc = behind(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
        let both = headers(&[
            ("x-forwarded-for", "203.0.113.9"),
            (
                "forwarded",
                "for=1.1.1.1, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.2:80",
            ),
        ]);
        assert_eq!(rfc.client(ip("10.0.0.1"), &both), ip("2001:db8:cafe::17"));
    }

    #[test]
    fn ipv4_clients_of_a_dual_stack_listener_count_as_ipv4() {
        let proxies = behind(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let chain = headers(&[("x-forwarded-for", "::ffff:198.51.100.7")]);
        assert_eq!(
            proxies.client(ip("::ffff:10.0.0.1"), &chain),
            ip("198.51.100.7")
        );
    }
}
