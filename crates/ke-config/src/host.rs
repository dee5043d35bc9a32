//! Host-dependent defaults of edgecore: `modules.edged.hostnameOverride` and `modules.edged.nodeIP`.
//!
//! v1.2 used the OS hostname (fallback `default-edge-node`) and the first IPv4 address of that
//! hostname, or of the default-route interface when the name resolves to loopback. We do the same
//! without touching the network: name resolution (`/etc/hosts`, resolver), then `/proc/net/route`
//! (default-route interface and its connected subnets) joined with `/proc/net/fib_trie` (local
//! addresses), then `127.0.0.1`.

use std::net::{Ipv4Addr, ToSocketAddrs};
use std::sync::OnceLock;

/// Fallback node name used by v1.2 when the OS hostname cannot be read.
pub const DEFAULT_HOSTNAME: &str = "default-edge-node";

/// The host facts edgecore's defaults depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// Default for `modules.edged.hostnameOverride` (the node name).
    pub hostname: String,
    /// Default for `modules.edged.nodeIP`.
    pub node_ip: String,
}

impl HostInfo {
    /// Detect the facts now (reads `/proc`, may consult the resolver for the hostname).
    pub fn detect() -> Self {
        let hostname = detect_hostname();
        let node_ip = detect_node_ip(&hostname).to_string();
        Self { hostname, node_ip }
    }

    /// The facts detected once per process (what `EdgeCoreConfig::default()` uses).
    pub fn cached() -> &'static HostInfo {
        static HOST: OnceLock<HostInfo> = OnceLock::new();
        HOST.get_or_init(Self::detect)
    }
}

/// OS hostname, lower-cased (Kubernetes node names are lower-case DNS names; kubelet does the
/// same), or [`DEFAULT_HOSTNAME`].
fn detect_hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let name = raw.trim().to_ascii_lowercase();
    if name.is_empty() {
        DEFAULT_HOSTNAME.to_owned()
    } else {
        name
    }
}

fn detect_node_ip(hostname: &str) -> Ipv4Addr {
    if let Some(ip) = resolve_hostname(hostname) {
        return ip;
    }
    let route = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    default_route_address(&route, &trie).unwrap_or(Ipv4Addr::LOCALHOST)
}

fn usable(ip: &Ipv4Addr) -> bool {
    !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local() && !ip.is_broadcast()
}

fn resolve_hostname(hostname: &str) -> Option<Ipv4Addr> {
    (hostname, 0u16)
        .to_socket_addrs()
        .ok()?
        .filter_map(|a| match a.ip() {
            std::net::IpAddr::V4(v4) if usable(&v4) => Some(v4),
            _ => None,
        })
        .next()
}

/// A row of `/proc/net/route`.
#[derive(Debug)]
struct Route {
    iface: String,
    destination: Ipv4Addr,
    gateway: Ipv4Addr,
    mask: Ipv4Addr,
    metric: u32,
}

/// `/proc/net/route` prints each network-order address as a host-order hex word.
fn parse_hex_addr(s: &str) -> Option<Ipv4Addr> {
    let v = u32::from_str_radix(s, 16).ok()?;
    Some(Ipv4Addr::from(v.to_ne_bytes()))
}

fn parse_routes(text: &str) -> Vec<Route> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            Some(Route {
                iface: f[0].to_owned(),
                destination: parse_hex_addr(f[1])?,
                gateway: parse_hex_addr(f[2])?,
                metric: f[6].parse().ok()?,
                mask: parse_hex_addr(f[7])?,
            })
        })
        .collect()
}

/// Local (`/32 host LOCAL`) IPv4 addresses listed in `/proc/net/fib_trie`, in order, deduplicated.
fn parse_local_addresses(text: &str) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    let mut last: Option<Ipv4Addr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.trim().parse().ok();
        } else if t.starts_with("/32 host LOCAL")
            && let Some(ip) = last
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

fn in_subnet(ip: Ipv4Addr, net: Ipv4Addr, mask: Ipv4Addr) -> bool {
    u32::from(ip) & u32::from(mask) == u32::from(net) & u32::from(mask)
}

/// The local address on the default-route interface (inside one of its connected subnets, the
/// gateway's subnet first); else any non-loopback local address.
fn default_route_address(route_text: &str, trie_text: &str) -> Option<Ipv4Addr> {
    let routes = parse_routes(route_text);
    let locals: Vec<Ipv4Addr> = parse_local_addresses(trie_text)
        .into_iter()
        .filter(usable)
        .collect();
    let default = routes
        .iter()
        .filter(|r| r.destination.is_unspecified() && r.mask.is_unspecified())
        .min_by_key(|r| r.metric);
    if let Some(default) = default {
        let mut subnets: Vec<&Route> = routes
            .iter()
            .filter(|r| r.iface == default.iface && !r.mask.is_unspecified())
            .collect();
        // Prefer the subnet that contains the gateway.
        subnets.sort_by_key(|r| !in_subnet(default.gateway, r.destination, r.mask));
        for subnet in subnets {
            if let Some(ip) = locals
                .iter()
                .find(|ip| in_subnet(**ip, subnet.destination, subnet.mask))
            {
                return Some(*ip);
            }
        }
    }
    locals.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    const TRIE: &str = "Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 172.17.0.0/16 2 0 2
           |-- 172.17.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.7
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.7
              /32 host LOCAL
";

    #[test]
    fn parses_little_endian_route_words() {
        assert_eq!(parse_hex_addr("010200C0"), Some(Ipv4Addr::new(192, 0, 2, 1)));
        assert_eq!(parse_hex_addr("00FFFFFF"), Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(parse_hex_addr("zz"), None);
    }

    #[test]
    fn local_addresses_are_deduplicated_in_order() {
        assert_eq!(
            parse_local_addresses(TRIE),
            vec![
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(172, 17, 0, 1),
                Ipv4Addr::new(192, 0, 2, 7)
            ]
        );
    }

    #[test]
    fn picks_the_address_of_the_default_route_interface() {
        // docker0's 172.17.0.1 comes first in the trie but is not on the default route.
        assert_eq!(
            default_route_address(ROUTE, TRIE),
            Some(Ipv4Addr::new(192, 0, 2, 7))
        );
    }

    #[test]
    fn without_default_route_takes_first_non_loopback_local_address() {
        let route = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n";
        assert_eq!(
            default_route_address(route, TRIE),
            Some(Ipv4Addr::new(172, 17, 0, 1))
        );
        assert_eq!(default_route_address("", ""), None);
    }

    #[test]
    fn detection_on_this_host_yields_a_name_and_an_ipv4_address() {
        let host = HostInfo::detect();
        assert!(!host.hostname.is_empty());
        assert_eq!(host.hostname, host.hostname.to_ascii_lowercase());
        assert!(host.node_ip.parse::<Ipv4Addr>().is_ok(), "{}", host.node_ip);
        assert_eq!(HostInfo::cached(), HostInfo::cached());
    }
}
