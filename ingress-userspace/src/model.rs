//! The desired dataplane state: what the node should translate, independent of
//! how it is stored in the maps. Built by `translate`, consumed by `dataplane::plan`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A transport protocol the dataplane translates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => ingress_common::IPPROTO_TCP,
            Protocol::Udp => ingress_common::IPPROTO_UDP,
        }
    }

    pub fn from_number(number: u8) -> Option<Self> {
        match number {
            ingress_common::IPPROTO_TCP => Some(Protocol::Tcp),
            ingress_common::IPPROTO_UDP => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        })
    }
}

/// An address, port and protocol clients send to: a ClusterIP, a node address
/// with a NodePort, an external IP or a load-balancer IP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frontend {
    pub addr: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
}

impl fmt::Display for Frontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", SocketAddr::new(self.addr, self.port), self.protocol)
    }
}

/// A pod address and port that serves a frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddr {
    pub addr: IpAddr,
    pub port: u16,
}

impl fmt::Display for BackendAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        SocketAddr::new(self.addr, self.port).fmt(f)
    }
}

/// Why a backend is in a frontend's set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BackendState {
    /// Ready: takes new connections.
    Active,
    /// Serving and terminating, used only because no endpoint is ready.
    Terminating,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Backend {
    pub addr: BackendAddr,
    pub state: BackendState,
    /// The endpoint's `nodeName` is this node.
    pub local: bool,
}

/// Where a frontend comes from, for logs and the state dump.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServicePortRef {
    pub namespace: String,
    pub name: String,
    /// The Service port's name ("" when unnamed).
    pub port_name: String,
}

impl fmt::Display for ServicePortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.port_name.is_empty() {
            write!(f, ":{}", self.port_name)?;
        }
        Ok(())
    }
}

/// A client range, `addr/prefix_len`, with the host bits cleared. It
/// restricts only frontends of its own family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRange {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl SourceRange {
    /// `None` for a prefix length longer than the family's address (32 or 128).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Option<SourceRange> {
        let addr = match addr {
            IpAddr::V4(v4) => IpAddr::from(Ipv4Addr::from(network(u32::from(v4).into(), 32, prefix_len)? as u32)),
            IpAddr::V6(v6) => IpAddr::from(Ipv6Addr::from(network(u128::from(v6), 128, prefix_len)?)),
        };
        Some(SourceRange { addr, prefix_len })
    }

    /// Whether `ip` is inside the range (of the same family).
    pub fn contains(&self, ip: IpAddr) -> bool {
        SourceRange::new(ip.to_canonical(), self.prefix_len).is_some_and(|network| network == *self)
    }
}

/// `bits` of a `width`-bit address with all but the first `prefix_len`
/// cleared; `None` when the prefix is longer than the address.
fn network(bits: u128, width: u32, prefix_len: u8) -> Option<u128> {
    let host_bits = width.checked_sub(u32::from(prefix_len))?;
    Some(bits & u128::MAX.checked_shl(host_bits).unwrap_or(0))
}

impl fmt::Display for SourceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Which clients of a frontend reach only endpoints on this node (a Local
/// traffic policy), keeping their source address and never taking a second hop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LocalOnly {
    /// Every client may reach every endpoint (policy Cluster).
    #[default]
    Nobody,
    /// Clients from outside the node: `externalTrafficPolicy: Local` on a
    /// NodePort, LoadBalancer IP or external IP. Pods of the node still reach
    /// every endpoint, as with kube-proxy.
    ExternalClients,
    /// Every client: `internalTrafficPolicy: Local` on a ClusterIP.
    AllClients,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrontendState {
    pub service: ServicePortRef,
    /// Sorted, without duplicates: the order is the slot order in the map.
    pub backends: Vec<Backend>,
    /// `sessionAffinity: ClientIP`: how long a client keeps its backend
    /// after its last new connection, in seconds; 0 = no affinity.
    pub affinity_timeout_s: u32,
    /// `loadBalancerSourceRanges` of a LoadBalancer ingress IP: `None` serves
    /// every client, `Some` only those inside a range (none if it is empty).
    pub source_ranges: Option<Vec<SourceRange>>,
    /// The traffic policy that applies to this frontend.
    pub local_only: LocalOnly,
}

/// What a `healthCheckNodePort` answers for: a Service and how many ready
/// endpoints it has on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthCheck {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// Everything the node should translate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub frontends: BTreeMap<Frontend, FrontendState>,
    /// `healthCheckNodePort` -> its Service (externalTrafficPolicy: Local only).
    pub health_checks: BTreeMap<u16, HealthCheck>,
}

/// What this node is, for NodePorts and for "local" endpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    /// Addresses NodePorts are served on, of either family.
    pub addresses: Vec<IpAddr>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ranges_clear_host_bits_within_their_family() {
        let cases: &[(&str, u8, Option<&str>)] = &[
            ("192.0.2.77", 24, Some("192.0.2.0/24")),
            ("192.0.2.77", 32, Some("192.0.2.77/32")),
            ("192.0.2.77", 0, Some("0.0.0.0/0")),
            ("192.0.2.77", 33, None),
            ("2001:db8:1:2::7", 48, Some("2001:db8:1::/48")),
            ("2001:db8::7", 128, Some("2001:db8::7/128")),
            ("2001:db8::7", 0, Some("::/0")),
            ("2001:db8::7", 129, None),
        ];
        for (addr, prefix_len, expected) in cases {
            let range = SourceRange::new(addr.parse().unwrap(), *prefix_len).map(|range| range.to_string());
            assert_eq!(range.as_deref(), *expected, "{addr}/{prefix_len}");
        }
    }

    #[test]
    fn ipv6_frontends_and_backends_print_bracketed() {
        let frontend = Frontend { addr: "fd00::a".parse().unwrap(), port: 80, protocol: Protocol::Tcp };
        assert_eq!(frontend.to_string(), "[fd00::a]:80/TCP");
        let backend = BackendAddr { addr: "10.1.0.1".parse().unwrap(), port: 8080 };
        assert_eq!(backend.to_string(), "10.1.0.1:8080");
    }
}
