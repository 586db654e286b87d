//! This node's addresses, from its Node object, for NodePorts and for the
//! status of served Ingresses.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Node;

use crate::manifests::Snapshot;
use crate::model::NodeInfo;

/// The node's InternalIP and ExternalIP addresses of both families, in the
/// order listed, without those [`unusable_reason`] refuses.
pub fn addresses(node: &Node) -> Vec<IpAddr> {
    let listed = node.status.iter().flat_map(|status| status.addresses.iter().flatten());
    let mut addresses = Vec::new();
    for address in listed.filter(|address| matches!(address.type_.as_str(), "InternalIP" | "ExternalIP")) {
        if let Ok(addr) = address.address.parse::<IpAddr>()
            && unusable_reason(&addr).is_none()
            && !addresses.contains(&addr)
        {
            addresses.push(addr);
        }
    }
    addresses
}

/// Why `addr` cannot be a node address NodePorts are served on, if so. An
/// IPv6 link-local address (fe80::/10) is ambiguous without its interface and
/// unreachable from other links. An IPv4-mapped IPv6 address would be stored
/// exactly like the IPv4 address it maps, so it is never taken for IPv6.
pub fn unusable_reason(addr: &IpAddr) -> Option<&'static str> {
    match addr {
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some("an IPv6 link-local address"),
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Some("an IPv4-mapped IPv6 address (write it as IPv4)"),
        _ => None,
    }
}

/// The node as the dataplane sees it: addresses given on the command line
/// win (they may name an interface the Node object does not list), otherwise
/// those of the Node object named `configured.name`.
pub fn node_info(configured: &NodeInfo, snapshot: &Snapshot) -> NodeInfo {
    if !configured.addresses.is_empty() {
        return configured.clone();
    }
    let node = snapshot
        .nodes
        .iter()
        .find(|node| node.metadata.name.as_deref() == Some(configured.name.as_str()));
    NodeInfo {
        name: configured.name.clone(),
        addresses: node.map(addresses).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::parse_documents;

    const NODES: &str = "apiVersion: v1\nkind: Node\nmetadata: {name: other}\n\
                         status: {addresses: [{type: InternalIP, address: 192.168.0.9}]}\n---\n\
                         apiVersion: v1\nkind: Node\nmetadata: {name: lab-node}\n\
                         status: {addresses: [{type: Hostname, address: lab-node},\n\
                         {type: InternalIP, address: 192.168.0.2}, {type: InternalIP, address: 'fd00::2'},\n\
                         {type: InternalIP, address: 'fe80::1'}, {type: InternalIP, address: '::ffff:192.168.0.3'},\n\
                         {type: ExternalIP, address: 203.0.113.7}, {type: ExternalIP, address: 192.168.0.2},\n\
                         {type: ExternalIP, address: '2001:db8::7'}, {type: Hostname, address: 'fd00::9'}]}\n";

    #[test]
    fn addresses_come_from_this_nodes_object_unless_configured() {
        let loaded = parse_documents("nodes.yaml", NODES);
        assert_eq!(loaded.problems, []);
        let named = |name: &str, addresses: &[&str]| NodeInfo {
            name: name.into(),
            addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
        };
        let cases = [
            (
                named("lab-node", &[]),
                named("lab-node", &["192.168.0.2", "fd00::2", "203.0.113.7", "2001:db8::7"]),
            ),
            (named("lab-node", &["10.0.0.1"]), named("lab-node", &["10.0.0.1"])),
            (named("lab-node", &["fd00::1", "10.0.0.1"]), named("lab-node", &["fd00::1", "10.0.0.1"])),
            (named("missing", &[]), named("missing", &[])),
        ];
        for (configured, expected) in cases {
            assert_eq!(node_info(&configured, &loaded.snapshot), expected);
        }
    }

    #[test]
    fn link_local_and_ipv4_mapped_addresses_are_unusable() {
        let cases = [
            ("192.168.0.2", true),
            ("169.254.0.1", true),
            ("fd00::2", true),
            ("2001:db8::7", true),
            ("fe80::1", false),
            ("febf::1", false),
            ("fec0::1", true),
            ("::ffff:192.168.0.3", false),
        ];
        for (addr, usable) in cases {
            assert_eq!(unusable_reason(&addr.parse().unwrap()).is_none(), usable, "{addr}");
        }
    }
}
