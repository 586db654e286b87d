//! The traffic policies and `loadBalancerSourceRanges` over IPv6, decided per
//! packet by the programs in the kernel (BPF_PROG_TEST_RUN on crafted
//! frames), from manifests through the agent's own path (parse, translate,
//! reconcile) to the maps. The node is "node-a" with an IPv4 and an IPv6
//! address; one pod runs on it, another on "node-b". The IPv4 counterparts
//! are `traffic_policies.rs` and `source_ranges.rs`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ingress_common::maps::{SOURCE_RANGE_EXACT_BITS, V4_MAPPED_PREFIX_BITS};
use ingress_common::stats::{
    DROP_NO_BACKEND, DROP_SOURCE_RANGE, FORWARD_TRANSLATED, PASS_BAD_IP_HEADER, REJECT_NO_BACKEND,
};
use ingress_tests::checks::{assert_port_unreachable6_quotes, assert_reset_answers};
use ingress_tests::packet::{self, Frame, SYN, TCP, UDP};
use ingress_tests::prog_run::{Entry, Programmed, TC_ACT_OK, TC_ACT_REDIRECT, XDP_DROP, XDP_PASS, XDP_TX};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::manifests::parse_documents;
use ingress_userspace::model::NodeInfo;
use ingress_userspace::reconcile::reconcile;
use ingress_userspace::translate::translate;

/// A client outside the node, and the node, on 2001:db8::/64 (and their
/// IPv4 addresses for the dual-stack cases).
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const NODE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const NODE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// A pod on this node and one on the other node, each with both families.
const LOCAL_POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2);
const REMOTE_POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x245, 1, 0, 0, 0, 2);
const LOCAL_POD4: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// A pod of this node calling Services.
const POD_CLIENT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 9, 0, 0, 0, 2);
const POD_PORT: u16 = 8080;

/// IPv6 only, externalTrafficPolicy Local, its only endpoint on node-b.
const ETP_REMOTE_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x21);
const ETP_REMOTE_NODE_PORT: u16 = 30181;
/// IPv6 only, internalTrafficPolicy Local, endpoints on both nodes.
const ITP_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x22);
/// IPv6 only, internalTrafficPolicy Local, its only endpoint on node-b.
const ITP_REMOTE_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x23);

/// Enough flows that a frontend choosing among two pods would pick both.
const FLOWS: u16 = 32;

fn service(name: &str, spec: &str, status: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n{status}---\n")
}

/// 80/TCP (port "tcp") and 53/UDP (port "udp") to the pods' port, with
/// `node_port` on both when given.
fn ports(node_port: Option<u16>) -> String {
    let node_port = node_port.map(|port| format!(", nodePort: {port}")).unwrap_or_default();
    format!(
        "[{{name: tcp, protocol: TCP, port: 80, targetPort: {POD_PORT}{node_port}}}, \
         {{name: udp, protocol: UDP, port: 53, targetPort: {POD_PORT}{node_port}}}]"
    )
}

/// An EndpointSlice of `service`, `family` ("IPv4" or "IPv6"), with
/// `(address, node)` endpoints on the pods' port (TCP and UDP).
fn slice(name: &str, service: &str, family: &str, endpoints: &[(IpAddr, &str)]) -> String {
    let endpoints: Vec<String> =
        endpoints.iter().map(|(ip, node)| format!("{{addresses: [\"{ip}\"], nodeName: {node}}}")).collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
         ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}, {{name: udp, port: {POD_PORT}, protocol: UDP}}]\n\
         endpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

/// The spec of an IPv6-only Service of `kind` on `vip`, with `extra` fields.
fn single_stack_v6(kind: &str, vip: Ipv6Addr, node_port: Option<u16>, extra: &str) -> String {
    format!(
        "{{type: {kind}, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], clusterIP: \"{vip}\", clusterIPs: [\"{vip}\"], \
         ports: {}{extra}}}",
        ports(node_port)
    )
}

fn on_a(ip: impl Into<IpAddr>) -> (IpAddr, &'static str) {
    (ip.into(), "node-a")
}

fn on_b(ip: impl Into<IpAddr>) -> (IpAddr, &'static str) {
    (ip.into(), "node-b")
}

/// The agent of "node-a" with both node addresses.
fn node() -> NodeInfo {
    NodeInfo { name: "node-a".into(), addresses: vec![NODE4.into(), NODE.into()] }
}

fn set<A: Into<IpAddr> + Copy>(addrs: &[A]) -> BTreeSet<IpAddr> {
    addrs.iter().map(|a| (*a).into()).collect()
}

// ---- traffic policies --------------------------------------------------------

fn policy_manifests() -> String {
    [
        service(
            "etp6-remote",
            &single_stack_v6("NodePort", ETP_REMOTE_VIP, Some(ETP_REMOTE_NODE_PORT), ", externalTrafficPolicy: Local"),
            "",
        ),
        slice("etp6-remote-1", "etp6-remote", "IPv6", &[on_b(REMOTE_POD)]),
        service("itp6", &single_stack_v6("ClusterIP", ITP_VIP, None, ", internalTrafficPolicy: Local"), ""),
        slice("itp6-1", "itp6", "IPv6", &[on_a(LOCAL_POD), on_b(REMOTE_POD)]),
        service("itp6-remote", &single_stack_v6("ClusterIP", ITP_REMOTE_VIP, None, ", internalTrafficPolicy: Local"), ""),
        slice("itp6-remote-1", "itp6-remote", "IPv6", &[on_b(REMOTE_POD)]),
    ]
    .concat()
}

fn policies() -> Option<Programmed> {
    Programmed::from_manifests("ipv6-policies", &policy_manifests(), &node())
}

/// The backends new UDP flows from `client` to `to` land on (one per source
/// port from `first_sport`): every datagram must pass translated to the
/// pods' port, the client's address and port kept, checksums valid.
fn udp_destinations(p: &mut Programmed, entry: Entry, client: Ipv6Addr, to: (Ipv6Addr, u16), first_sport: u16) -> BTreeSet<IpAddr> {
    (first_sport..first_sport + FLOWS)
        .map(|sport| {
            let query = Frame::udp(client, sport, to.0, to.1).with_payload(b"query").build();
            let (verdict, out) = p.run(entry, &query);
            assert_eq!(verdict, entry.passed(), "{entry:?}: UDP from {client} port {sport} to {to:?}");
            let seen = packet::read6(&out);
            assert_eq!((seen.src, seen.sport, seen.dport), (client, sport, POD_PORT), "{entry:?}: {seen:?}");
            assert!(seen.checksums_ok(), "{entry:?}: checksums of {seen:?}");
            assert_eq!(seen.payload, b"query");
            seen.dst.into()
        })
        .collect()
}

#[test]
fn external_local_over_ipv6_without_a_local_endpoint_rejects_outside_clients_and_serves_pods() {
    let Some(mut p) = policies() else { return };
    // An outside client's SYN: a RST from the NodePort, out of the uplink again.
    let syn = Frame { seq: 0x1234_5678, ..Frame::tcp(CLIENT, 42000, NODE, ETP_REMOTE_NODE_PORT, SYN) };
    let (verdict, out) = p.xdp(&syn.build());
    assert_eq!(verdict, XDP_TX, "an outside client must not reach the endpoint on node-b");
    assert_reset_answers(&out, &syn, 0, 0x1234_5679, "SYN to the Local NodePort");
    // Its datagram: an ICMPv6 port unreachable quoting it.
    let query = Frame::udp(CLIENT, 5300, NODE, ETP_REMOTE_NODE_PORT).with_payload(b"a query longer than 8 bytes");
    let (verdict, out) = p.xdp(&query.build());
    assert_eq!(verdict, XDP_TX, "an outside client's datagram must not reach the endpoint on node-b");
    assert_port_unreachable6_quotes(&out, &query, "datagram to the Local NodePort");
    assert_eq!(p.packets(REJECT_NO_BACKEND), 2, "one reject per SYN and per datagram");
    assert_eq!((p.packets(DROP_NO_BACKEND), p.packets(FORWARD_TRANSLATED)), (0, 0));
    assert!(p.maps.conntrack().unwrap().is_empty(), "a rejected flow leaves no conntrack entry");

    // A pod of this node still reaches the endpoint on the other node, over both protocols.
    let to = (NODE, ETP_REMOTE_NODE_PORT);
    assert_eq!(p.destinations(Entry::PodVeth, POD_CLIENT, to, (43000, FLOWS), POD_PORT), set(&[REMOTE_POD]));
    assert_eq!(udp_destinations(&mut p, Entry::PodVeth, POD_CLIENT, to, 43100), set(&[REMOTE_POD]));
    // And the Service's ClusterIP (internal policy Cluster) serves pods too.
    assert_eq!(p.destinations(Entry::PodVeth, POD_CLIENT, (ETP_REMOTE_VIP, 80), (43200, FLOWS), POD_PORT), set(&[REMOTE_POD]));
    assert_eq!(p.packets(REJECT_NO_BACKEND), 2);
    assert_eq!(p.packets(FORWARD_TRANSLATED), 3 * u64::from(FLOWS));
}

#[test]
fn internal_local_over_ipv6_keeps_clients_on_local_endpoints_and_rejects_without_one() {
    let Some(mut p) = policies() else { return };
    let local = set(&[LOCAL_POD]);
    // Pods of the node, and outside clients alike: the local endpoint only.
    assert_eq!(p.destinations(Entry::PodVeth, POD_CLIENT, (ITP_VIP, 80), (44000, FLOWS), POD_PORT), local);
    assert_eq!(udp_destinations(&mut p, Entry::PodVeth, POD_CLIENT, (ITP_VIP, 53), 44100), local);
    assert_eq!(p.destinations(Entry::Uplink, CLIENT, (ITP_VIP, 80), (44200, FLOWS), POD_PORT), local);
    let entries = p.maps.conntrack().unwrap().len();
    assert_eq!(entries, 2 * 3 * usize::from(FLOWS), "both directions of every flow");

    // No local endpoint: the pod is answered at once, out of its own veth.
    let syn = Frame { seq: 77, ..Frame::tcp(POD_CLIENT, 44300, ITP_REMOTE_VIP, 80, SYN) };
    let (verdict, out) = p.tc_in(&syn.build());
    assert_eq!(verdict, TC_ACT_REDIRECT, "a pod must not reach the other node's endpoint");
    assert_reset_answers(&out, &syn, 0, 78, "SYN to the internal-Local ClusterIP");
    let query = Frame::udp(POD_CLIENT, 44301, ITP_REMOTE_VIP, 53).with_payload(b"q");
    let (verdict, out) = p.tc_in(&query.build());
    assert_eq!(verdict, TC_ACT_REDIRECT);
    assert_port_unreachable6_quotes(&out, &query, "datagram to the internal-Local ClusterIP");
    assert_eq!(p.packets(REJECT_NO_BACKEND), 2);
    assert_eq!(p.maps.conntrack().unwrap().len(), entries, "the rejected flows left no conntrack entry");
}

// ---- loadBalancerSourceRanges ------------------------------------------------

/// IPv6 only: a LoadBalancer ingress IP restricted to `V6_RANGE`.
const LB6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 1);
const LB6_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x70);
const LB6_NODE_PORT: u16 = 30170;
const V6_RANGE: &str = "2001:db8:1::/48";
/// Dual stack: an ingress IP of each family, ranges of both families.
const DUAL_LB4_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const DUAL_LB6_IP: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0x100, 0, 0, 0, 0, 2);
const DUAL_VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 71);
const DUAL_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x71);
const DUAL_NODE_PORT: u16 = 30171;

/// Clients of `V6_RANGE` (its first and last address among them) and
/// clients just outside it and elsewhere.
const INSIDE6: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0x2, 0, 0, 0, 0x3),
    Ipv6Addr::new(0x2001, 0xdb8, 1, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff),
];
const OUTSIDE6: [Ipv6Addr; 4] = [
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff),
    Ipv6Addr::new(0x2001, 0xdb8, 2, 0, 0, 0, 0, 0),
    Ipv6Addr::new(0x2001, 0xdb9, 1, 0, 0, 0, 0, 1),
    CLIENT,
];

fn lb6_manifests(ranges: &str) -> String {
    let status = format!("status: {{loadBalancer: {{ingress: [{{ip: \"{LB6_IP}\"}}]}}}}\n");
    [
        service("lb6", &single_stack_v6("LoadBalancer", LB6_VIP, Some(LB6_NODE_PORT), ranges), &status),
        slice("lb6-1", "lb6", "IPv6", &[on_a(LOCAL_POD)]),
    ]
    .concat()
}

fn dual_lb_manifests() -> String {
    let spec = format!(
        "{{type: LoadBalancer, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], clusterIP: \"{DUAL_VIP4}\", \
         clusterIPs: [\"{DUAL_VIP4}\", \"{DUAL_VIP6}\"], ports: {}, \
         loadBalancerSourceRanges: [192.0.2.0/24, \"{V6_RANGE}\", 198.51.100.7/32]}}",
        ports(Some(DUAL_NODE_PORT))
    );
    let status = format!("status: {{loadBalancer: {{ingress: [{{ip: {DUAL_LB4_IP}}}, {{ip: \"{DUAL_LB6_IP}\"}}]}}}}\n");
    [
        service("dual-lb", &spec, &status),
        slice("dual-lb-v4", "dual-lb", "IPv4", &[on_a(LOCAL_POD4)]),
        slice("dual-lb-v6", "dual-lb", "IPv6", &[on_a(LOCAL_POD)]),
    ]
    .concat()
}

/// What the agent of node-a makes of `yaml`, reconciled into `p`'s maps.
fn reprogram(p: &mut Programmed, yaml: &str) {
    let loaded = parse_documents("ranges.yaml", yaml);
    assert_eq!(loaded.problems, []);
    let (desired, problems) = translate(&loaded.snapshot, &node());
    assert_eq!(problems, []);
    reconcile(&mut p.maps, &desired).expect("programming the maps");
}

/// Sends a new flow of `proto` from `client` to `to` through `lb_xdp`: true
/// if it went to `pod` (translated, client kept, checksums valid), false if
/// dropped. Any other verdict fails the test.
fn reaches(p: &mut Programmed, proto: u8, client: IpAddr, sport: u16, to: (IpAddr, u16), pod: IpAddr) -> bool {
    let frame = match proto {
        TCP => Frame::tcp(client, sport, to.0, to.1, SYN),
        _ => Frame::udp(client, sport, to.0, to.1).with_payload(b"q"),
    };
    let (verdict, out) = p.xdp(&frame.build());
    match verdict {
        XDP_PASS => {
            let seen = packet::read_ip(&out);
            assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (client, sport, pod, POD_PORT), "a passed flow is translated");
            assert!(seen.checksums_ok(), "{seen:?}");
            true
        }
        XDP_DROP => false,
        other => panic!("unexpected XDP verdict {other} for {frame:?}"),
    }
}

/// The source range entries in the trie: (the range's own prefix length,
/// its first address, protocol, the family of the frontend it restricts).
fn trie(p: &Programmed) -> BTreeSet<(u32, IpAddr, u8, bool)> {
    let contents = p.maps.read().unwrap();
    contents
        .source_ranges
        .iter()
        .map(|(len, key)| {
            let addr = IpAddr::from(key.addr);
            let own = len - SOURCE_RANGE_EXACT_BITS - if addr.is_ipv4() { V4_MAPPED_PREFIX_BITS } else { 0 };
            let frontend = IpAddr::from(contents.rev_nat[&key.rev_nat_id].addr);
            (own, addr, key.proto, frontend.is_ipv6())
        })
        .collect()
}

#[test]
fn an_ipv6_load_balancer_ip_serves_only_clients_inside_its_ipv6_range() {
    let Some(mut p) =
        Programmed::from_manifests("ipv6-srcrange", &lb6_manifests(&format!(", loadBalancerSourceRanges: [\"{V6_RANGE}\"]")), &node())
    else {
        return;
    };
    let range: Ipv6Addr = "2001:db8:1::".parse().unwrap();
    assert_eq!(trie(&p), BTreeSet::from([(48, range.into(), TCP, true), (48, range.into(), UDP, true)]));
    let (pod, lb) = (IpAddr::from(LOCAL_POD), IpAddr::from(LB6_IP));
    let mut sport = 41000;
    for proto in [TCP, UDP] {
        let port = if proto == TCP { 80 } else { 53 };
        for client in INSIDE6 {
            sport += 1;
            assert!(reaches(&mut p, proto, client.into(), sport, (lb, port), pod), "proto {proto}: {client} is inside {V6_RANGE}");
        }
        for client in OUTSIDE6 {
            sport += 1;
            assert!(!reaches(&mut p, proto, client.into(), sport, (lb, port), pod), "proto {proto}: {client} is outside {V6_RANGE}");
        }
    }
    assert_eq!(p.packets(DROP_SOURCE_RANGE), 2 * OUTSIDE6.len() as u64);
    assert_eq!(p.packets(FORWARD_TRANSLATED), 2 * INSIDE6.len() as u64);
    // The NodePort and the ClusterIP of the same Service are not filtered, as in kube-proxy.
    assert!(reaches(&mut p, TCP, OUTSIDE6[1].into(), 42000, (NODE.into(), LB6_NODE_PORT), pod));
    assert!(reaches(&mut p, UDP, OUTSIDE6[1].into(), 42001, (LB6_VIP.into(), 53), pod));
    assert_eq!(p.packets(DROP_SOURCE_RANGE), 2 * OUTSIDE6.len() as u64);

    // Lifting the restriction removes the trie entries and the header flag.
    reprogram(&mut p, &lb6_manifests(""));
    assert!(trie(&p).is_empty(), "stale source ranges left in the map");
    assert!(reaches(&mut p, TCP, OUTSIDE6[0].into(), 42002, (lb, 80), pod));
    assert!(reaches(&mut p, UDP, OUTSIDE6[2].into(), 42003, (lb, 53), pod));
    assert_eq!(p.packets(DROP_SOURCE_RANGE), 2 * OUTSIDE6.len() as u64);
}

#[test]
fn a_dual_stack_load_balancer_filters_each_family_by_its_own_ranges() {
    let Some(mut p) = Programmed::from_manifests("dual-srcrange", &dual_lb_manifests(), &node()) else { return };
    // The IPv4 ranges are stored IPv4-mapped, 96 bits longer, for the IPv4
    // ingress IP only; the IPv6 range for the IPv6 one only.
    let mut expected = BTreeSet::new();
    for proto in [TCP, UDP] {
        expected.insert((24, IpAddr::from(Ipv4Addr::new(192, 0, 2, 0)), proto, false));
        expected.insert((32, IpAddr::from(Ipv4Addr::new(198, 51, 100, 7)), proto, false));
        expected.insert((48, "2001:db8:1::".parse().unwrap(), proto, true));
    }
    assert_eq!(trie(&p), expected);

    let (pod4, pod6) = (IpAddr::from(LOCAL_POD4), IpAddr::from(LOCAL_POD));
    let inside4 = [Ipv4Addr::new(192, 0, 2, 0), Ipv4Addr::new(192, 0, 2, 255), Ipv4Addr::new(198, 51, 100, 7)];
    let outside4 =
        [Ipv4Addr::new(192, 0, 3, 0), Ipv4Addr::new(192, 0, 1, 255), Ipv4Addr::new(198, 51, 100, 8), Ipv4Addr::new(10, 0, 0, 1)];
    let mut sport = 45000;
    let mut dropped = 0;
    for (proto, port) in [(TCP, 80), (UDP, 53)] {
        let lb4 = (IpAddr::from(DUAL_LB4_IP), port);
        let lb6 = (IpAddr::from(DUAL_LB6_IP), port);
        for client in inside4 {
            sport += 1;
            assert!(reaches(&mut p, proto, client.into(), sport, lb4, pod4), "proto {proto}: {client} is inside an IPv4 range");
        }
        for client in outside4 {
            sport += 1;
            assert!(!reaches(&mut p, proto, client.into(), sport, lb4, pod4), "proto {proto}: {client} is outside the IPv4 ranges");
            dropped += 1;
        }
        for client in INSIDE6 {
            sport += 1;
            assert!(reaches(&mut p, proto, client.into(), sport, lb6, pod6), "proto {proto}: {client} is inside {V6_RANGE}");
        }
        for client in OUTSIDE6 {
            sport += 1;
            assert!(!reaches(&mut p, proto, client.into(), sport, lb6, pod6), "proto {proto}: {client} is outside {V6_RANGE}");
            dropped += 1;
        }
    }
    assert_eq!(p.packets(DROP_SOURCE_RANGE), dropped);
    assert_eq!(p.packets(FORWARD_TRANSLATED), 2 * (inside4.len() + INSIDE6.len()) as u64);

    // An IPv6 packet from the IPv4-mapped form of an admitted IPv4 client is
    // no IPv4 client: passed untouched as a bad header, never translated.
    let mapped = IpAddr::V6(inside4[0].to_ipv6_mapped());
    let syn = Frame::tcp(mapped, 46000, DUAL_LB6_IP, 80, SYN).build();
    assert_eq!(p.xdp(&syn), (XDP_PASS, syn.clone()));
    assert_eq!(p.packets(PASS_BAD_IP_HEADER), 1);
    assert_eq!(p.packets(FORWARD_TRANSLATED), 2 * (inside4.len() + INSIDE6.len()) as u64);

    // Both NodePorts are open to everyone.
    assert!(reaches(&mut p, TCP, outside4[0].into(), 46001, (NODE4.into(), DUAL_NODE_PORT), pod4));
    assert!(reaches(&mut p, TCP, OUTSIDE6[0].into(), 46002, (NODE.into(), DUAL_NODE_PORT), pod6));
    assert_eq!(p.packets(DROP_SOURCE_RANGE), dropped);
    // Pods reach the ClusterIPs whatever their address.
    let (verdict, _) = p.tc_in(&Frame::tcp(POD_CLIENT, 46003, DUAL_VIP6, 80, SYN).build());
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(p.packets(DROP_SOURCE_RANGE), dropped);
}
