//! SNAT over IPv6 per packet, in the kernel on crafted frames
//! (BPF_PROG_TEST_RUN, checksums checked from scratch over the IPv6
//! pseudo-header): a client reaching a NodePort of "node-a" whose pod runs on
//! "node-b" leaves the node with the node's IPv6 address, and the pod's reply
//! comes back to the client from the address it called. `lb_xdp` (DNAT, port
//! reserved) -> `lb_tc_out` (SNAT) -> the reply through `lb_xdp` (back to the
//! client) -> `lb_tc_out` (reverse DNAT). IPv4 flows through the same
//! programs use the IPv4 SNAT address; SNAT is off per family while that
//! family has no node address. The IPv4 counterpart is `snat.rs`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ingress_common::addr::Addr;
use ingress_common::maps::{SNAT_FORWARD, SNAT_REPLY, SnatConfig};
use ingress_common::stats::{SNAT_REPLY_TRANSLATED, SNAT_TRANSLATED};
use ingress_tests::packet::{self, ACK, Frame, SYN, Seen, TCP, UDP};
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, XDP_PASS};
use ingress_userspace::dataplane::conntrack_gc::{self, SnatPorts, snat_config};
use ingress_userspace::model::NodeInfo;

const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const NODE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NODE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const LOCAL_POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2);
const REMOTE_POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x245, 1, 0, 0, 0, 2);
const REMOTE_POD4: Ipv4Addr = Ipv4Addr::new(10, 245, 1, 2);
const POD_PORT: u16 = 8080;

/// Dual stack, externalTrafficPolicy Cluster, its only endpoints (one per
/// family) on node-b; 80/TCP and 53/UDP share the NodePort.
const REMOTE_NODE_PORT: u16 = 30190;
/// IPv6 only, externalTrafficPolicy Cluster, its only endpoint on this node.
const LOCAL_NODE_PORT: u16 = 30191;
/// The hop limit client frames carry: no program may change it.
const HOP_LIMIT: u8 = 57;

/// A small range, so that "in the range" says something.
const PORTS: SnatPorts = SnatPorts { min: 62_000, max: 62_099 };

fn manifests() -> String {
    let service = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
    };
    let slice = |name: &str, service: &str, family: &str, ip: IpAddr, node: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, \
             labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
             ports: [{{name: tcp, port: {POD_PORT}}}, {{name: udp, protocol: UDP, port: {POD_PORT}}}]\n\
             endpoints: [{{addresses: [\"{ip}\"], nodeName: {node}}}]\n---\n"
        )
    };
    let ports = |node_port: u16| {
        format!(
            "[{{name: tcp, port: 80, targetPort: {POD_PORT}, nodePort: {node_port}}}, \
             {{name: udp, protocol: UDP, port: 53, targetPort: {POD_PORT}, nodePort: {node_port}}}]"
        )
    };
    [
        service(
            "remote",
            &format!(
                "{{type: NodePort, externalTrafficPolicy: Cluster, ipFamilyPolicy: RequireDualStack, \
                 ipFamilies: [IPv6, IPv4], clusterIP: \"fd00:10:96::90\", clusterIPs: [\"fd00:10:96::90\", 10.96.0.90], \
                 ports: {}}}",
                ports(REMOTE_NODE_PORT)
            ),
        ),
        slice("remote-v6", "remote", "IPv6", REMOTE_POD.into(), "node-b"),
        slice("remote-v4", "remote", "IPv4", REMOTE_POD4.into(), "node-b"),
        service(
            "local",
            &format!(
                "{{type: NodePort, externalTrafficPolicy: Cluster, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], \
                 clusterIP: \"fd00:10:96::91\", clusterIPs: [\"fd00:10:96::91\"], ports: {}}}",
                ports(LOCAL_NODE_PORT)
            ),
        ),
        slice("local-v6", "local", "IPv6", LOCAL_POD.into(), "node-a"),
    ]
    .concat()
}

fn node() -> NodeInfo {
    NodeInfo { name: "node-a".into(), addresses: vec![NODE4.into(), NODE.into()] }
}

/// A SNAT map entry as read: (direction, (key source address and port,
/// destination address and port, protocol), (value address and port)).
type SnatSeen = (u8, (IpAddr, u16, IpAddr, u16, u8), (IpAddr, u16));

/// The programs with maps of their own, programmed as node-a; SNAT as the
/// agent configures it from `snat_addresses`.
struct Harness(Programmed);

impl Harness {
    fn new(snat_addresses: &[IpAddr]) -> Option<Harness> {
        let programs = Programmed::from_manifests("ipv6-snat", &manifests(), &node())?;
        conntrack_gc::write_snat_config(programs.pins.path(), &snat_config(snat_addresses, PORTS)).unwrap();
        Some(Harness(programs))
    }

    /// A client's packet through `lb_xdp`: passed and rewritten in place.
    fn xdp(&mut self, frame: &Frame) -> (Vec<u8>, Seen<IpAddr>) {
        let bytes = frame.build();
        let (verdict, out) = self.0.xdp(&bytes);
        assert_eq!(verdict, XDP_PASS, "lb_xdp on {frame:?}");
        let seen = in_place(&bytes, &out, "lb_xdp");
        (out, seen)
    }

    /// A packet leaving the node through `lb_tc_out`: passed and rewritten in place.
    fn tc_out(&mut self, bytes: &[u8]) -> (Vec<u8>, Seen<IpAddr>) {
        let (verdict, out) = self.0.tc_out(bytes);
        assert_eq!(verdict, TC_ACT_OK, "lb_tc_out on {:?}", packet::read_ip(bytes));
        let seen = in_place(bytes, &out, "lb_tc_out");
        (out, seen)
    }

    /// A client's packet through `lb_xdp`, then what `lb_tc_out` on the
    /// uplink makes of the DNATed packet the stack routes out.
    fn client_to(&mut self, frame: &Frame) -> (Seen<IpAddr>, Seen<IpAddr>) {
        let (dnat, after_xdp) = self.xdp(frame);
        let (_, after_tc) = self.tc_out(&dnat);
        (after_xdp, after_tc)
    }

    fn count(&self, reason: u32) -> u64 {
        self.0.packets(reason)
    }

    /// The SNAT map as (direction, key addresses and ports, value address and port).
    fn snat_entries(&self) -> BTreeSet<SnatSeen> {
        self.0
            .maps
            .snat()
            .unwrap()
            .iter()
            .map(|(key, value)| {
                let key_part =
                    (key.saddr.into(), u16::from_be(key.sport), key.daddr.into(), u16::from_be(key.dport), key.proto);
                (key.direction, key_part, (value.addr.into(), u16::from_be(value.port)))
            })
            .collect()
    }
}

/// `out` is `bytes` rewritten in place: same length, the IPv6 version,
/// traffic class, flow label, payload length, next header and hop limit
/// (IPv4: the TTL) untouched, the payload intact, checksums valid.
fn in_place(bytes: &[u8], out: &[u8], what: &str) -> Seen<IpAddr> {
    assert_eq!(out.len(), bytes.len(), "{what}: the frame keeps its length");
    if packet::ethernet_of(bytes).2 == packet::ETHERTYPE_IPV6 {
        assert_eq!(out[14..22], bytes[14..22], "{what}: the IPv6 header's first 8 bytes untouched");
    }
    let (before, after) = (packet::read_ip(bytes), packet::read_ip(out));
    assert!(after.checksums_ok(), "{what}: checksums of {after:?}");
    assert_eq!((after.ttl, &after.payload), (before.ttl, &before.payload), "{what}");
    after
}

fn in_range(port: u16) -> bool {
    (PORTS.min..=PORTS.max).contains(&port)
}

fn first_packet(proto: u8, client: IpAddr, sport: u16, node: IpAddr) -> Frame {
    let frame = match proto {
        TCP => Frame::tcp(client, sport, node, REMOTE_NODE_PORT, SYN),
        _ => Frame::udp(client, sport, node, REMOTE_NODE_PORT).with_payload(b"ping\n"),
    };
    Frame { ttl: HOP_LIMIT, ..frame }
}

fn answer(proto: u8, pod: IpAddr, node: IpAddr, port: u16) -> Frame {
    let frame = match proto {
        TCP => Frame { ack: 1001, ..Frame::tcp(pod, POD_PORT, node, port, SYN | ACK) },
        _ => Frame::udp(pod, POD_PORT, node, port).with_payload(b"pong\n"),
    };
    Frame { ttl: HOP_LIMIT, ..frame }
}

/// A flow that left the node SNATed, and the port it was given.
struct Out {
    client: IpAddr,
    sport: u16,
    node: IpAddr,
    pod: IpAddr,
    proto: u8,
    snat_port: u16,
}

/// A new flow of `proto` from `client` to the remote NodePort on `node`:
/// DNATed to `pod` by lb_xdp with the client's source kept, then SNATed to
/// `snat_to` and a port in the range by lb_tc_out.
fn leaves_snated(h: &mut Harness, proto: u8, client: IpAddr, sport: u16, node: IpAddr, pod: IpAddr, snat_to: IpAddr) -> Out {
    let (dnat, snat) = h.client_to(&first_packet(proto, client, sport, node));
    // lb_xdp only translates the destination: routing sees the real client.
    assert_eq!((dnat.src, dnat.sport, dnat.dst, dnat.dport), (client, sport, pod, POD_PORT), "proto {proto} after lb_xdp");
    assert_eq!((snat.src, snat.dst, snat.dport), (snat_to, pod, POD_PORT), "proto {proto} after lb_tc_out: {snat:?}");
    assert!(in_range(snat.sport), "SNAT port {} outside {PORTS}", snat.sport);
    Out { client, sport, node, pod, proto, snat_port: snat.sport }
}

/// The pod's answer to `out`'s SNAT address and port comes back to the
/// client in lb_xdp, and leaves through lb_tc_out from the NodePort.
fn answer_returns(h: &mut Harness, out: &Out) {
    let (back, back_seen) = h.xdp(&answer(out.proto, out.pod, out.node, out.snat_port));
    assert_eq!(
        (back_seen.src, back_seen.sport, back_seen.dst, back_seen.dport),
        (out.pod, POD_PORT, out.client, out.sport),
        "proto {}: the destination is the client again",
        out.proto
    );
    let (_, client_sees) = h.tc_out(&back);
    assert_eq!(
        (client_sees.src, client_sees.sport, client_sees.dst, client_sees.dport),
        (out.node, REMOTE_NODE_PORT, out.client, out.sport),
        "proto {}: the client sees the address it called",
        out.proto
    );
}

/// The SNAT entries of one flow: forward (client -> pod, value the node's
/// address and port) and reply (pod -> node address and port, value the client).
fn entries_of(out: &Out) -> [SnatSeen; 2] {
    [
        (SNAT_FORWARD, (out.client, out.sport, out.pod, POD_PORT, out.proto), (snat_addr(out), out.snat_port)),
        (SNAT_REPLY, (out.pod, POD_PORT, snat_addr(out), out.snat_port, out.proto), (out.client, out.sport)),
    ]
}

fn snat_addr(out: &Out) -> IpAddr {
    if out.client.is_ipv6() { NODE.into() } else { NODE4.into() }
}

fn round_trip(proto: u8) {
    let Some(mut h) = Harness::new(&node().addresses) else { return };
    let (client, node, pod) = (IpAddr::from(CLIENT), IpAddr::from(NODE), IpAddr::from(REMOTE_POD));
    let out = leaves_snated(&mut h, proto, client, 41_000, node, pod, node);
    assert_eq!(h.count(SNAT_TRANSLATED), 1);
    assert_eq!(h.snat_entries(), BTreeSet::from(entries_of(&out)), "one entry per direction, IPv6 addresses");
    answer_returns(&mut h, &out);
    assert_eq!(h.count(SNAT_REPLY_TRANSLATED), 1);

    // The flow's next packet keeps its port.
    let next = match proto {
        TCP => Frame { seq: 1001, ..Frame::tcp(CLIENT, 41_000, NODE, REMOTE_NODE_PORT, ACK) },
        _ => Frame::udp(CLIENT, 41_000, NODE, REMOTE_NODE_PORT).with_payload(b"again\n"),
    };
    let (_, again) = h.client_to(&next);
    assert_eq!((again.src, again.sport, again.dst), (node, out.snat_port, pod));
    assert_eq!(h.snat_entries().len(), 2);
    assert_eq!(h.count(SNAT_TRANSLATED), 2);
}

#[test]
fn an_ipv6_tcp_flow_to_a_pod_on_another_node_leaves_with_the_node_ipv6_address_and_its_reply_returns() {
    round_trip(TCP);
}

#[test]
fn an_ipv6_udp_flow_to_a_pod_on_another_node_leaves_with_the_node_ipv6_address_and_its_reply_returns() {
    round_trip(UDP);
}

#[test]
fn ipv4_and_ipv6_flows_at_the_same_time_each_leave_with_the_node_address_of_their_family() {
    let Some(mut h) = Harness::new(&node().addresses) else { return };
    let written = snat_config(&node().addresses, PORTS);
    assert_eq!((written.v4, written.v6), (Addr::from(IpAddr::from(NODE4)), Addr::from(IpAddr::from(NODE))));
    let v6 = (IpAddr::from(CLIENT), IpAddr::from(NODE), IpAddr::from(REMOTE_POD));
    let v4 = (IpAddr::from(CLIENT4), IpAddr::from(NODE4), IpAddr::from(REMOTE_POD4));
    // All four flows are DNATed and reserved first, then leave, interleaved.
    let mut dnated = Vec::new();
    for (proto, (client, node, pod)) in [(TCP, v6), (TCP, v4), (UDP, v6), (UDP, v4)] {
        let (bytes, seen) = h.xdp(&first_packet(proto, client, 42_000, node));
        assert_eq!((seen.src, seen.dst), (client, pod));
        dnated.push((proto, client, node, pod, bytes));
    }
    let mut flows = Vec::new();
    for (proto, client, node, pod, bytes) in dnated {
        let (_, snat) = h.tc_out(&bytes);
        assert_eq!((snat.src, snat.dst, snat.dport), (node, pod, POD_PORT), "proto {proto} from {client}");
        assert!(in_range(snat.sport), "SNAT port {}", snat.sport);
        flows.push(Out { client, sport: 42_000, node, pod, proto, snat_port: snat.sport });
    }
    assert_eq!(h.count(SNAT_TRANSLATED), 4);
    let expected: BTreeSet<_> = flows.iter().flat_map(entries_of).collect();
    assert_eq!(h.snat_entries(), expected);
    // The answers, in the other order, each reach their own client.
    for out in flows.iter().rev() {
        answer_returns(&mut h, out);
    }
    assert_eq!(h.count(SNAT_REPLY_TRANSLATED), 4);
}

#[test]
fn snat_is_off_for_a_family_without_a_node_address() {
    let v6 = (IpAddr::from(CLIENT), IpAddr::from(NODE), IpAddr::from(REMOTE_POD));
    let v4 = (IpAddr::from(CLIENT4), IpAddr::from(NODE4), IpAddr::from(REMOTE_POD4));
    // Only an IPv4 node address, then only an IPv6 one.
    for (snat_addresses, on, off) in [([IpAddr::from(NODE4)], v4, v6), ([IpAddr::from(NODE)], v6, v4)] {
        let Some(mut h) = Harness::new(&snat_addresses) else { return };
        let config = snat_config(&snat_addresses, PORTS);
        assert_eq!(
            (config.v4 == Addr::default(), config.v6 == Addr::default()),
            (snat_addresses[0].is_ipv6(), snat_addresses[0].is_ipv4()),
            "{config:?}"
        );
        for (i, proto) in [TCP, UDP].into_iter().enumerate() {
            let (client, node, pod) = off;
            let (dnat, out) = h.client_to(&first_packet(proto, client, 43_000 + i as u16, node));
            assert_eq!(dnat.dst, pod);
            assert_eq!(out, dnat, "SNAT configured for {snat_addresses:?}: lb_tc_out changed a {client} flow");
            assert_eq!((out.src, out.sport), (client, 43_000 + i as u16), "forwarded with the client's address");
        }
        assert_eq!((h.count(SNAT_TRANSLATED), h.snat_entries().len()), (0, 0), "nothing reserved for {off:?}");
        // The other family is still translated.
        let (client, node, pod) = on;
        let out = leaves_snated(&mut h, TCP, client, 43_100, node, pod, node);
        answer_returns(&mut h, &out);
        assert_eq!(h.snat_entries(), BTreeSet::from(entries_of(&out)));
    }
    // SNAT off altogether: the IPv6 flow leaves as it came.
    let Some(mut h) = Harness::new(&[]) else { return };
    assert_eq!(snat_config(&[], PORTS), SnatConfig::default());
    let (dnat, out) = h.client_to(&first_packet(TCP, CLIENT.into(), 43_200, NODE.into()));
    assert_eq!((out.src, out.dst), (IpAddr::from(CLIENT), IpAddr::from(REMOTE_POD)));
    assert_eq!(out, dnat);
}

#[test]
fn an_ipv6_flow_to_a_pod_on_this_node_gets_no_snat() {
    let Some(mut h) = Harness::new(&node().addresses) else { return };
    for i in 0..8 {
        let frame = Frame::tcp(CLIENT, 44_000 + i, NODE, LOCAL_NODE_PORT, SYN);
        let (dnat, out) = h.client_to(&frame);
        assert_eq!((dnat.dst, dnat.dport), (IpAddr::from(LOCAL_POD), POD_PORT));
        assert_eq!(out, dnat, "lb_tc_out changed a packet to a local pod");
        assert_eq!((out.src, out.sport), (IpAddr::from(CLIENT), 44_000 + i), "the pod sees the client");
    }
    assert_eq!((h.snat_entries().len(), h.count(SNAT_TRANSLATED)), (0, 0));
}
