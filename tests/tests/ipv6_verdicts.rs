//! IPv6 and dual-stack Services in the kernel (BPF_PROG_TEST_RUN on crafted
//! frames): DNAT to IPv6 backends and the reverse translation of replies,
//! every L4 checksum verified from scratch over the IPv6 pseudo-header, the
//! hop limit and flow label untouched; frames the programs must leave alone
//! (truncated, extension headers, no frontend); dual-stack frontends that
//! never mix families; externalTrafficPolicy Local and ClientIP affinity
//! over IPv6; the TCP RST and ICMPv6 port unreachable of a frontend without
//! endpoints byte by byte; and the IPv6 hairpin.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ingress_common::HAIRPIN_ADDR6;
use ingress_common::addr::Addr;
use ingress_common::maps::CT_FORWARD;
use ingress_common::stats::*;
use ingress_tests::backend_choice::{NewFlow, fresh_choice};
use ingress_tests::checks::{
    REJECT_ENTRIES, assert_checksums, assert_port_unreachable6_quotes, assert_reset_answers, assert_turned_around,
};
use ingress_tests::packet::{self, ACK, Ext6, FIN, Frame, ICMPV6, PSH, RST, SYN, Seen, TCP, UDP};
use ingress_tests::prog_run::{
    Entry, Programmed, TC_ACT_OK, TC_ACT_REDIRECT, TC_ACT_SHOT, XDP_PASS, add_tcp_and_udp_frontends,
    add_tcp_and_udp_service, local_backends,
};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::{TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM};
use ingress_userspace::model::{DesiredState, FrontendState, NodeInfo};

/// A client outside the node, and the node, on 2001:db8::/64.
const CLIENT: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const NODE: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
/// A pod of this node calling Services.
const POD_CLIENT: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, 9, 0, 0, 0, 2);
const PODS: [Ipv6Addr; 3] = [
    Ipv6Addr::new(0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2),
    Ipv6Addr::new(0xfd00, 0x10, 0x244, 2, 0, 0, 0, 2),
    Ipv6Addr::new(0xfd00, 0x10, 0x244, 3, 0, 0, 0, 2),
];
const POD_PORT: u16 = 8080;
/// 80/TCP and 53/UDP over `PODS`, and their NodePorts on `NODE`.
const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa);
const TCP_NODE_PORT: u16 = 30080;
const UDP_NODE_PORT: u16 = 30053;
/// 80/TCP and 53/UDP without endpoints.
const EMPTY_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x63);
/// 80/TCP and 53/UDP over `PODS` with `sessionAffinity: ClientIP`.
const STICKY_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x4d);
/// 80/TCP and 53/UDP whose only endpoint is `PODS[0]`, for the hairpin.
const SELF_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xc);
/// The IPv6 hairpin source, `HAIRPIN_ADDR6`.
const HAIRPIN: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x6c62, 0, 0, 0, 0, 0xa9fe, 0x2a01);
/// The hop limit client frames carry: the programs must not change it.
const HOP_LIMIT: u8 = 57;

fn desired() -> DesiredState {
    let mut desired = DesiredState::default();
    let pods = FrontendState { backends: local_backends(&PODS, POD_PORT), ..FrontendState::default() };
    add_tcp_and_udp_frontends(&mut desired, VIP, 80, 53, "echo", &pods);
    add_tcp_and_udp_frontends(&mut desired, NODE, TCP_NODE_PORT, UDP_NODE_PORT, "echo", &pods);
    add_tcp_and_udp_service(&mut desired, EMPTY_VIP, "nothing", &[]);
    let sticky = FrontendState { affinity_timeout_s: 600, ..pods.clone() };
    add_tcp_and_udp_frontends(&mut desired, STICKY_VIP, 80, 53, "sticky", &sticky);
    add_tcp_and_udp_service(&mut desired, SELF_VIP, "self", &local_backends(&PODS[..1], POD_PORT));
    add_tcp_and_udp_service(&mut desired, IPV4_VIP, "ipv4", &local_backends(&PODS4[..1], POD_PORT));
    desired
}

/// An IPv4 ClusterIP beside the IPv6 frontends: the maps hold it IPv4-mapped.
const IPV4_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 77);

#[test]
fn an_ipv6_packet_to_an_ipv4_mapped_address_never_matches_ipv4_state() {
    let Some(mut p) = programmed() else { return };
    let mapped = IpAddr::V6(IPV4_VIP.to_ipv6_mapped());
    let syn = Frame { ttl: HOP_LIMIT, ..Frame::tcp(CLIENT, 40030, mapped, 80, SYN) }.build();
    assert_eq!(p.xdp(&syn), (XDP_PASS, syn.clone()));
    assert_eq!(p.tc_in(&syn), (TC_ACT_OK, syn.clone()));
    let from_mapped = Frame { ttl: HOP_LIMIT, ..Frame::tcp(mapped, 80, CLIENT, 40030, SYN | ACK) }.build();
    assert_eq!(p.tc_out(&from_mapped), (TC_ACT_OK, from_mapped.clone()));
    assert_eq!(p.packets(PASS_BAD_IP_HEADER), 3, "passed as a bad header, not as a frame for the IPv4 frontend");
    assert_eq!(p.packets(FORWARD_TRANSLATED), 0);
}

/// The programs with maps of their own, programmed with `desired()`.
fn programmed() -> Option<Programmed> {
    Programmed::load("ipv6", &desired())
}

fn tcp(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16, flags: u8) -> Frame {
    Frame { ttl: HOP_LIMIT, ..Frame::tcp(src, sport, dst, dport, flags) }
}

fn udp(src: Ipv6Addr, sport: u16, dst: Ipv6Addr, dport: u16) -> Frame {
    Frame { ttl: HOP_LIMIT, ..Frame::udp(src, sport, dst, dport) }
}

/// `frame` through the program of `entry`: passed, rewritten in place (same
/// length, version, traffic class, flow label and hop limit), its payload
/// intact and its checksums valid. What the receiver reads.
fn translated(p: &mut Programmed, entry: Entry, frame: &Frame) -> Seen<Ipv6Addr> {
    let bytes = frame.build();
    let (verdict, out) = p.run(entry, &bytes);
    assert_eq!(verdict, entry.passed(), "{entry:?}: {frame:?}");
    assert_rewritten_in_place(&bytes, &out)
}

/// `out` is `bytes` with addresses, ports and checksums rewritten at most.
fn assert_rewritten_in_place(bytes: &[u8], out: &[u8]) -> Seen<Ipv6Addr> {
    assert_eq!(out.len(), bytes.len(), "the frame keeps its length");
    assert_eq!(out[14..20], bytes[14..20], "version, traffic class, flow label and payload length untouched");
    assert_eq!(out[20], bytes[20], "next header untouched");
    let (before, after) = (packet::read6(bytes), packet::read6(out));
    assert_checksums(&after);
    assert_eq!(after.ttl, before.ttl, "the hop limit is untouched");
    assert_eq!(after.payload, before.payload);
    after
}

#[test]
fn tcp_and_udp_to_ipv6_frontends_reach_an_ipv6_backend_with_valid_checksums() {
    let Some(mut p) = programmed() else { return };
    let cases = [
        ("TCP SYN to the ClusterIP from a pod", Entry::PodVeth, tcp(POD_CLIENT, 40000, VIP, 80, SYN)),
        ("TCP SYN to the ClusterIP from outside", Entry::Uplink, tcp(CLIENT, 40000, VIP, 80, SYN)),
        ("TCP SYN to the ClusterIP from outside, TC", Entry::UplinkTc, tcp(CLIENT, 40003, VIP, 80, SYN)),
        ("TCP SYN with data to the NodePort", Entry::UplinkTc, tcp(CLIENT, 40001, NODE, TCP_NODE_PORT, SYN).with_payload(b"hi")),
        ("UDP to the ClusterIP from a pod", Entry::PodVeth, udp(POD_CLIENT, 5000, VIP, 53).with_payload(b"query")),
        ("UDP to the NodePort", Entry::Uplink, udp(CLIENT, 5001, NODE, UDP_NODE_PORT).with_payload(b"odd")),
        ("empty UDP to the NodePort", Entry::UplinkTc, udp(CLIENT, 5002, NODE, UDP_NODE_PORT)),
    ];
    for (name, entry, frame) in &cases {
        let seen = translated(&mut p, *entry, frame);
        assert!(PODS.contains(&seen.dst), "{name}: destination {} is no backend", seen.dst);
        assert_eq!((IpAddr::from(seen.src), seen.sport, seen.dport), (frame.src, frame.sport, POD_PORT), "{name}");
    }
    assert_eq!(p.packets(FORWARD_TRANSLATED), cases.len() as u64);

    // Conntrack holds both directions of each flow, with 16-byte addresses.
    let entries = p.maps.conntrack().unwrap();
    assert_eq!(entries.len(), 2 * cases.len());
    assert!(entries.iter().all(|(key, _)| !key.saddr.is_v4() && !key.daddr.is_v4()), "{entries:?}");
    let forward = entries.iter().find(|(key, _)| {
        key.direction == CT_FORWARD && key.saddr == Addr::from(IpAddr::V6(CLIENT)) && key.sport == 40001u16.to_be()
    });
    let (key, _) = forward.expect("the NodePort flow's forward entry");
    assert_eq!((key.daddr, key.dport, key.proto), (Addr::from(IpAddr::V6(NODE)), TCP_NODE_PORT.to_be(), TCP));
}

#[test]
fn every_packet_of_an_ipv6_flow_reaches_the_same_backend_through_either_program() {
    let Some(mut p) = programmed() else { return };
    let backend = translated(&mut p, Entry::Uplink, &tcp(CLIENT, 40002, VIP, 80, SYN)).dst;
    for i in 0..12 {
        let data = tcp(CLIENT, 40002, VIP, 80, ACK).with_payload(format!("request {i}\n").as_bytes());
        let entry = [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth][i % 3];
        assert_eq!(translated(&mut p, entry, &data).dst, backend, "packet {i} changed backend");
    }
}

#[test]
fn replies_from_ipv6_backends_are_reverse_translated_on_the_way_out_only() {
    let Some(mut p) = programmed() else { return };
    let flows = [
        (Entry::Uplink, CLIENT, 40010, VIP, 80, TCP),
        (Entry::UplinkTc, CLIENT, 40011, NODE, TCP_NODE_PORT, TCP),
        (Entry::PodVeth, POD_CLIENT, 5010, VIP, 53, UDP),
        (Entry::UplinkTc, CLIENT, 5011, NODE, UDP_NODE_PORT, UDP),
    ];
    for (entry, client, sport, frontend, port, proto) in flows {
        let first = match proto {
            TCP => tcp(client, sport, frontend, port, SYN),
            _ => udp(client, sport, frontend, port).with_payload(b"q"),
        };
        let backend = translated(&mut p, entry, &first).dst;
        let reply = match proto {
            TCP => Frame { ack: 1001, ..tcp(backend, POD_PORT, client, sport, SYN | ACK) },
            _ => udp(backend, POD_PORT, client, sport),
        }
        .with_payload(b"pod-x\n")
        .build();
        // On the way in (before routing) a reply is left alone.
        for way in [Entry::PodVeth, Entry::Uplink, Entry::UplinkTc] {
            assert_eq!(p.run(way, &reply), (way.passed(), reply.clone()), "{way:?}: {frontend}:{port}");
        }
        let (verdict, out) = p.tc_out(&reply);
        assert_eq!(verdict, TC_ACT_OK);
        let seen = assert_rewritten_in_place(&reply, &out);
        assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (frontend, port, client, sport), "the reply comes from the frontend");
    }
    assert_eq!(p.packets(REPLY_TRANSLATED), flows.len() as u64);

    // A packet leaving the node that is no reply passes untouched.
    let unrelated = tcp(PODS[0], POD_PORT, CLIENT, 50000, ACK).build();
    assert_eq!(p.tc_out(&unrelated), (TC_ACT_OK, unrelated.clone()));
}

#[test]
fn truncated_and_extension_header_ipv6_frames_pass_untouched_and_are_counted() {
    let Some(mut p) = programmed() else { return };
    let syn = tcp(CLIENT, 40020, VIP, 80, SYN);
    // The kernel builds no skb for BPF_PROG_TEST_RUN from a frame cut inside
    // the IP header (as with IPv4), so that one runs through XDP only.
    let cut_in_ip_header = syn.build()[..14 + 20].to_vec();
    assert_eq!(p.xdp(&cut_in_ip_header), (XDP_PASS, cut_in_ip_header.clone()));
    assert_eq!(p.packets(PASS_TRUNCATED), 1, "a frame cut inside the IPv6 header is counted as truncated");

    let mut version_4 = syn.build();
    version_4[14] = 0x40 | (version_4[14] & 0x0f);
    let query = udp(CLIENT, 5020, VIP, 53).with_payload(b"q");
    let echo_request = Frame { proto: ICMPV6, payload: vec![128, 0, 0, 0, 0, 1, 0, 1], ..syn.clone() };
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("TCP header cut short", syn.build()[..14 + 40 + 10].to_vec(), PASS_TRUNCATED),
        ("UDP header cut short", query.build()[..14 + 40 + 4].to_vec(), PASS_TRUNCATED),
        ("version 4 in an IPv6 frame", version_4, PASS_BAD_IP_HEADER),
        ("hop-by-hop options before TCP", Frame { ext6: vec![Ext6::HopByHop], ..syn.clone() }.build(), PASS_OTHER_PROTOCOL),
        (
            "a fragment header before UDP",
            Frame { ext6: vec![Ext6::Fragment { offset: 0, more: true, id: 7 }], ..query.clone() }.build(),
            PASS_OTHER_PROTOCOL,
        ),
        ("ICMPv6 echo request to a frontend", echo_request.build(), PASS_OTHER_PROTOCOL),
    ];
    for (name, frame, reason) in cases {
        let before = p.packets(reason);
        assert_eq!(p.xdp(&frame), (XDP_PASS, frame.clone()), "{name}: XDP must pass it untouched");
        for way in [TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM] {
            let (verdict, out) = ingress_tests::prog_run::tc(&mut p.dataplane, way, &frame);
            assert_eq!((verdict, &out), (TC_ACT_OK, &frame), "{name}: {way} must pass it untouched");
        }
        assert_eq!(p.packets(reason), before + 4, "{name}: counter {}", REASON_NAMES[reason as usize]);
    }
    assert!(p.maps.conntrack().unwrap().is_empty());
}

#[test]
fn ipv6_traffic_to_no_frontend_is_untouched() {
    let Some(mut p) = programmed() else { return };
    let frames = [
        tcp(CLIENT, 40030, PODS[0], POD_PORT, SYN),
        tcp(CLIENT, 40030, VIP, 81, SYN),
        udp(CLIENT, 40030, VIP, 80),
        tcp(CLIENT, 40030, NODE, 22, SYN),
    ];
    for frame in &frames {
        let bytes = frame.build();
        for entry in [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth] {
            assert_eq!(p.run(entry, &bytes), (entry.passed(), bytes.clone()), "{entry:?}: {frame:?}");
        }
    }
    assert_eq!(p.packets(PASS_NO_SERVICE), 3 * frames.len() as u64);
    assert!(p.maps.conntrack().unwrap().is_empty());
}

#[test]
fn client_ip_affinity_keeps_an_ipv6_client_on_one_backend_for_new_ports() {
    let Some(mut p) = programmed() else { return };
    for (proto, port) in [(TCP, 80), (UDP, 53)] {
        let new_flow = |p: &mut Programmed, sport: u16, vip: Ipv6Addr| {
            let frame = if proto == TCP { tcp(CLIENT, sport, vip, port, SYN) } else { udp(CLIENT, sport, vip, port) };
            translated(p, Entry::Uplink, &frame).dst
        };
        let sticky = new_flow(&mut p, 42000, STICKY_VIP);
        // A port whose hash alone would pick another backend shows the affinity at work.
        let contents = p.maps.read().unwrap();
        let hashed = |sport| {
            let flow = NewFlow { client: CLIENT.into(), sport, frontend: STICKY_VIP.into(), port, proto };
            fresh_choice(&contents, flow)
        };
        let other_port = (42001..43000).find(|sport| hashed(*sport) != sticky).expect("a port hashing elsewhere");
        for sport in (42001..42016).chain([other_port]) {
            assert_eq!(new_flow(&mut p, sport, STICKY_VIP), sticky, "proto {proto}: new flow from port {sport} left its backend");
        }
        // Without affinity new flows of the same client spread.
        let spread: BTreeSet<Ipv6Addr> = (43000..43020).map(|sport| new_flow(&mut p, sport, VIP)).collect();
        assert!(spread.len() > 1, "proto {proto}: without affinity new flows must spread: {spread:?}");
    }
}

#[test]
fn an_ipv6_frontend_without_endpoints_answers_tcp_with_a_rst() {
    let Some(mut p) = programmed() else { return };
    let tcp = |flags, seq, ack| Frame { seq, ack, ..Frame::tcp(CLIENT, 40040, EMPTY_VIP, 80, flags) };
    let cases = [
        // No ACK in a SYN: the RST's sequence number is 0, and it acknowledges the SYN.
        ("SYN", tcp(SYN, 0x1234_5678, 0), 0, 0x1234_5679),
        ("payload-less ACK", tcp(ACK, 100, 200), 200, 100),
        ("ACK with 11 bytes", tcp(ACK | PSH, 5000, 777).with_payload(b"hello world"), 777, 5011),
        ("FIN", tcp(FIN | ACK, 9, 10), 10, 10),
        ("SYN at the end of the sequence space", tcp(SYN, u32::MAX, 0), 0, 0),
        ("SYN with data", tcp(SYN, 41, 0).with_payload(b"fast open"), 0, 51),
    ];
    for (name, frame, seq, ack) in &cases {
        for (entry, verdict) in REJECT_ENTRIES {
            let (got, out) = p.run(entry, &frame.build());
            assert_eq!(got, verdict, "{name}, {entry:?}");
            assert_reset_answers(&out, frame, *seq, *ack, &format!("{name}, {entry:?}"));
        }
    }
    assert_eq!(p.packets(REJECT_NO_BACKEND), (REJECT_ENTRIES.len() * cases.len()) as u64);
    assert_eq!(p.packets(DROP_NO_BACKEND), 0);
    assert!(p.maps.conntrack().unwrap().is_empty());
}

#[test]
fn an_ipv6_datagram_to_a_frontend_without_endpoints_gets_an_icmpv6_port_unreachable() {
    let Some(mut p) = programmed() else { return };
    let query = Frame::udp(CLIENT, 5353, EMPTY_VIP, 53);
    let cases = [
        ("datagram with a payload", query.clone().with_payload(b"a query longer than eight bytes")),
        ("empty datagram", query.clone()),
        ("odd-length payload", query.clone().with_payload(b"odd")),
    ];
    for (name, frame) in &cases {
        for (entry, verdict) in REJECT_ENTRIES {
            let (got, out) = p.run(entry, &frame.build());
            assert_eq!(got, verdict, "{name}, {entry:?}");
            assert_port_unreachable6_quotes(&out, frame, &format!("{name}, {entry:?}"));
        }
    }
    assert_eq!(p.packets(REJECT_NO_BACKEND), (REJECT_ENTRIES.len() * cases.len()) as u64);
}

#[test]
fn a_reset_to_an_ipv6_frontend_without_endpoints_is_dropped_not_answered() {
    let Some(mut p) = programmed() else { return };
    for flags in [RST, RST | ACK] {
        let bytes = Frame::tcp(CLIENT, 40041, EMPTY_VIP, 80, flags).build();
        for entry in [Entry::Uplink, Entry::UplinkTc] {
            assert_eq!(p.run(entry, &bytes), (entry.dropped(), bytes.clone()), "{entry:?}: flags {flags:#x}");
        }
        assert_eq!(p.run(Entry::PodVeth, &bytes).0, TC_ACT_SHOT, "flags {flags:#x}");
    }
    assert_eq!((p.packets(DROP_NO_BACKEND), p.packets(REJECT_NO_BACKEND)), (6, 0));
}

#[test]
fn a_pod_calling_its_own_ipv6_service_is_hairpinned_from_the_ipv6_hairpin_address() {
    assert_eq!(HAIRPIN.octets(), HAIRPIN_ADDR6);
    let Some(mut p) = programmed() else { return };
    let pod = PODS[0];
    for (proto, port, sport) in [(TCP, 80, 40050), (UDP, 53, 5050)] {
        let (query, answer) = match proto {
            TCP => (tcp(pod, sport, SELF_VIP, port, SYN), Frame { ack: 1001, ..tcp(pod, POD_PORT, HAIRPIN, sport, SYN | ACK) }),
            _ => (udp(pod, sport, SELF_VIP, port), udp(pod, POD_PORT, HAIRPIN, sport)),
        };
        let query = query.with_payload(b"hello\n").build();
        let (verdict, out) = p.tc_in(&query);
        assert_eq!(verdict, TC_ACT_REDIRECT, "proto {proto}: sent back out of the pod's veth");
        assert_turned_around(&query, &out);
        let seen = packet::read6(&out);
        assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (HAIRPIN, sport, pod, POD_PORT), "proto {proto}");
        assert_checksums(&seen);
        assert_eq!((seen.ttl, seen.payload.as_slice()), (HOP_LIMIT, &b"hello\n"[..]));

        let answer = answer.with_payload(b"pod-a\n").build();
        let (verdict, out) = p.tc_in(&answer);
        assert_eq!(verdict, TC_ACT_REDIRECT, "proto {proto}: the answer is turned back too");
        assert_turned_around(&answer, &out);
        let seen = packet::read6(&out);
        assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (SELF_VIP, port, pod, sport), "proto {proto}");
        assert_checksums(&seen);
        assert_eq!(seen.payload, b"pod-a\n");
    }
    assert_eq!((p.packets(HAIRPIN_TRANSLATED), p.packets(HAIRPIN_REPLY_TRANSLATED)), (2, 2));

    // Another pod calling the same Service is translated as usual.
    let other = translated(&mut p, Entry::PodVeth, &tcp(PODS[1], 40051, SELF_VIP, 80, SYN));
    assert_eq!((other.src, other.dst), (PODS[1], pod));
}

// ---- from manifests: dual stack and traffic policies -----------------------

const NODE4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const POD_CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 244, 9, 2);
const PODS4: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)];
/// Service `dual`: both families, endpoints `PODS4` and `PODS[..2]`.
const DUAL_VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 50);
const DUAL_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x32);
const DUAL_NODE_PORT: u16 = 30050;
/// Service `etp6`: IPv6 only, externalTrafficPolicy Local, an endpoint on
/// this node ("node-a", `PODS[0]`) and one on "node-b".
const ETP_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x14);
const ETP_NODE_PORT: u16 = 30081;
const REMOTE_POD: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x245, 1, 0, 0, 0, 2);
/// New connections per check: enough to see every backend a frontend may pick.
const FLOWS: u16 = 32;

fn manifests() -> String {
    let slice = |name: &str, service: &str, family: &str, endpoints: &[(IpAddr, &str)]| {
        let endpoints: Vec<String> =
            endpoints.iter().map(|(ip, node)| format!("{{addresses: [\"{ip}\"], nodeName: {node}}}")).collect();
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, \
             labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
             ports: [{{name: tcp, port: {POD_PORT}, protocol: TCP}}]\nendpoints: [{}]\n---\n",
            endpoints.join(", ")
        )
    };
    let on_a = |ip: IpAddr| (ip, "node-a");
    [
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: dual, namespace: default}}\nspec: {{type: NodePort, \
             ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], clusterIP: \"{DUAL_VIP4}\", \
             clusterIPs: [\"{DUAL_VIP4}\", \"{DUAL_VIP6}\"], \
             ports: [{{name: tcp, protocol: TCP, port: 80, targetPort: {POD_PORT}, nodePort: {DUAL_NODE_PORT}}}]}}\n---\n"
        ),
        slice("dual-v4", "dual", "IPv4", &PODS4.map(|ip| on_a(ip.into()))),
        slice("dual-v6", "dual", "IPv6", &[on_a(PODS[0].into()), on_a(PODS[1].into())]),
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: etp6, namespace: default}}\nspec: {{type: NodePort, \
             ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], clusterIP: \"{ETP_VIP6}\", clusterIPs: [\"{ETP_VIP6}\"], \
             externalTrafficPolicy: Local, \
             ports: [{{name: tcp, protocol: TCP, port: 80, targetPort: {POD_PORT}, nodePort: {ETP_NODE_PORT}}}]}}\n---\n"
        ),
        slice("etp6-1", "etp6", "IPv6", &[on_a(PODS[0].into()), (REMOTE_POD.into(), "node-b")]),
    ]
    .concat()
}

/// Programmed as the agent of "node-a" with both node addresses would.
fn from_manifests() -> Option<Programmed> {
    let node = NodeInfo { name: "node-a".into(), addresses: vec![NODE4.into(), NODE.into()] };
    Programmed::from_manifests("ipv6-policies", &manifests(), &node)
}

fn set<A: Into<IpAddr> + Copy>(addrs: &[A]) -> BTreeSet<IpAddr> {
    addrs.iter().map(|a| (*a).into()).collect()
}

#[test]
fn each_frontend_of_a_dual_stack_service_picks_backends_of_its_own_family_only() {
    let Some(mut p) = from_manifests() else { return };
    let (v4, v6) = (set(&PODS4), set(&PODS[..2]));
    fn ip(addr: impl Into<IpAddr>) -> IpAddr {
        addr.into()
    }
    let cases = [
        ("IPv4 ClusterIP from a pod", Entry::PodVeth, ip(POD_CLIENT4), (ip(DUAL_VIP4), 80), &v4),
        ("IPv4 NodePort from outside", Entry::Uplink, ip(CLIENT4), (ip(NODE4), DUAL_NODE_PORT), &v4),
        ("IPv6 ClusterIP from a pod", Entry::PodVeth, ip(POD_CLIENT), (ip(DUAL_VIP6), 80), &v6),
        ("IPv6 NodePort from outside", Entry::Uplink, ip(CLIENT), (ip(NODE), DUAL_NODE_PORT), &v6),
        ("IPv4 NodePort from outside, TC", Entry::UplinkTc, ip(CLIENT4), (ip(NODE4), DUAL_NODE_PORT), &v4),
        ("IPv6 NodePort from outside, TC", Entry::UplinkTc, ip(CLIENT), (ip(NODE), DUAL_NODE_PORT), &v6),
    ];
    for (i, (name, entry, client, to, expected)) in cases.into_iter().enumerate() {
        let first_port = 44000 + i as u16 * FLOWS;
        assert_eq!(&p.destinations(entry, client, to, (first_port, FLOWS), POD_PORT), expected, "{name}");
    }
}

#[test]
fn external_traffic_policy_local_over_ipv6_keeps_outside_clients_on_local_pods() {
    let Some(mut p) = from_manifests() else { return };
    let (local, both) = (set(&[PODS[0]]), set(&[PODS[0], REMOTE_POD]));
    // Outside clients keep their address (checked per flow) and stay on the node.
    assert_eq!(p.destinations(Entry::Uplink, CLIENT, (NODE, ETP_NODE_PORT), (45000, FLOWS), POD_PORT), local);
    // Pods of the node calling the NodePort get every endpoint, as with kube-proxy.
    assert_eq!(p.destinations(Entry::PodVeth, POD_CLIENT, (NODE, ETP_NODE_PORT), (45100, FLOWS), POD_PORT), both);
    // The ClusterIP has the (default) Cluster internal policy.
    assert_eq!(p.destinations(Entry::PodVeth, POD_CLIENT, (ETP_VIP6, 80), (45200, FLOWS), POD_PORT), both);
}
