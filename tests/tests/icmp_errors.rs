//! ICMP errors about translated flows, in the kernel on crafted frames
//! (BPF_PROG_TEST_RUN), both families, byte for byte. A real forward packet
//! opens each flow first (`lb_xdp`, `lb_tc_uplink` or `lb_tc_in`: DNAT;
//! then `lb_tc_out`: SNAT for a pod on another node); then an error about
//! one of its packets, as the receiver or a router on the way sends it,
//! quotes the packet as it left the node. What the programs make of the
//! error must be, byte for byte, the error the sender's stack needs: about
//! a client's packet, the error from the frontend (or the router) to the
//! client quoting exactly what the client sent; about a pod's reply, the
//! error to the pod quoting exactly what the pod sent (for a pod on another
//! node, to the node's SNAT address; for a hairpinned pod, to the hairpin
//! address). The expected frames are built from scratch here
//! (`Frame::icmp_error`, checksums computed by the test's own routine), so
//! every checksum the programs updated incrementally (ICMP or ICMPv6 with
//! its pseudo-header, outer and quoted IPv4 header, quoted TCP or UDP) is
//! checked against an independent one. An error about any other packet
//! passes byte for byte.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ingress_common::stats::{ICMP_ERROR_HAIRPIN_TRANSLATED, ICMP_ERROR_TRANSLATED, PASS_OTHER_PROTOCOL};
use ingress_common::{HAIRPIN_ADDR, HAIRPIN_ADDR6};
use ingress_tests::fuzz::{checksums_valid, hex};
use ingress_tests::packet::{self, ACK, Frame, IPV4_HLEN, IPV6_HLEN, SYN, TCP, UDP};
use ingress_tests::prog_run::{
    Entry, Programmed, TC_ACT_OK, TC_ACT_REDIRECT, UPLINKS, XDP_PASS, add_tcp_and_udp_frontends,
    add_tcp_and_udp_service, backends, try_run,
};
use ingress_userspace::dataplane::conntrack_gc::{self, SnatPorts, snat_config};
use ingress_userspace::dataplane::ebpf::{TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM, XDP_PROGRAM};
use ingress_userspace::model::{DesiredState, FrontendState};

const POD_PORT: u16 = 8080;
/// NodePorts on the node's address over the local pod: 80/TCP and 53/UDP
/// of the VIPs become these there.
const NODE_PORTS: (u16, u16) = (30_080, 30_053);
const PORTS: SnatPorts = SnatPorts { min: 62_000, max: 62_099 };

/// One address family's cast.
struct Cast {
    /// Outside the node, behind the uplink.
    client: IpAddr,
    /// A pod of this node calling a Service.
    pod_client: IpAddr,
    /// Also a NodePort frontend over `local_pod` (`NODE_PORTS`).
    node: IpAddr,
    /// Over `local_pod`, on this node.
    vip: IpAddr,
    /// Over `remote_pod`, on another node: SNAT from an uplink.
    remote_vip: IpAddr,
    local_pod: IpAddr,
    remote_pod: IpAddr,
    /// A router between the node and a pod or a client, with a smaller MTU.
    router: IpAddr,
    /// The source a hairpinned packet gets.
    hairpin: IpAddr,
    /// Fragmentation needed (ICMP 3/4) or packet too big (ICMPv6 2/0),
    /// port unreachable, host (address) unreachable, time exceeded.
    errors: [(u8, u8); 4],
    ip_hlen: usize,
}

fn casts() -> [Cast; 2] {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    let v6 = |a, b, c, d| IpAddr::V6(Ipv6Addr::new(a, 0xdb8, b, c, 0, 0, 0, d));
    [
        Cast {
            client: v4(198, 51, 100, 2),
            pod_client: v4(10, 244, 2, 2),
            node: v4(198, 51, 100, 1),
            vip: v4(10, 96, 0, 10),
            remote_vip: v4(10, 96, 0, 20),
            local_pod: v4(10, 244, 1, 2),
            remote_pod: v4(10, 245, 1, 2),
            router: v4(10, 250, 0, 1),
            hairpin: IpAddr::from(HAIRPIN_ADDR),
            errors: [(3, 4), (3, 3), (3, 1), (11, 0)],
            ip_hlen: IPV4_HLEN,
        },
        Cast {
            client: v6(0x2001, 0, 0, 2),
            pod_client: v6(0xfd00, 0x244, 2, 2),
            node: v6(0x2001, 0, 0, 1),
            vip: v6(0xfd00, 0x96, 0, 0x10),
            remote_vip: v6(0xfd00, 0x96, 0, 0x20),
            local_pod: v6(0xfd00, 0x244, 1, 2),
            remote_pod: v6(0xfd00, 0x245, 1, 2),
            router: v6(0xfd00, 0x250, 0, 1),
            hairpin: IpAddr::from(HAIRPIN_ADDR6),
            errors: [(2, 0), (1, 4), (1, 3), (3, 0)],
            ip_hlen: IPV6_HLEN,
        },
    ]
}

/// The 4 bytes after the checksum: the next hop's MTU for fragmentation
/// needed (RFC 1191) and packet too big (RFC 4443 3.2), else unused.
fn rest((kind, code): (u8, u8), v6: bool) -> [u8; 4] {
    match (v6, kind, code) {
        (false, 3, 4) => [0, 0, 0x05, 0x78],
        (true, 2, _) => 1280u32.to_be_bytes(),
        _ => [0; 4],
    }
}

fn programmed() -> Option<Programmed> {
    let mut desired = DesiredState::default();
    for (i, c) in casts().iter().enumerate() {
        add_tcp_and_udp_service(&mut desired, c.vip, &format!("local-{i}"), &backends(&[c.local_pod], POD_PORT, true));
        add_tcp_and_udp_service(&mut desired, c.remote_vip, &format!("remote-{i}"), &backends(&[c.remote_pod], POD_PORT, false));
        let node_port = FrontendState { backends: backends(&[c.local_pod], POD_PORT, true), ..FrontendState::default() };
        add_tcp_and_udp_frontends(&mut desired, c.node, NODE_PORTS.0, NODE_PORTS.1, &format!("local-{i}"), &node_port);
    }
    let programmed = Programmed::load("icmp-errors", &desired)?;
    let nodes = casts().map(|c| c.node);
    conntrack_gc::write_snat_config(programmed.pins.path(), &snat_config(&nodes, PORTS)).unwrap();
    Some(programmed)
}

/// A client's first packet of `proto` from `sport` to `to` port 80 (TCP) or 53 (UDP).
fn first_packet(client: IpAddr, sport: u16, to: IpAddr, proto: u8) -> Frame {
    first_packet_to_port(client, sport, to, proto, (80, 53))
}

/// As `first_packet`, to port `ports.0` (TCP) or `ports.1` (UDP).
fn first_packet_to_port(client: IpAddr, sport: u16, to: IpAddr, proto: u8, ports: (u16, u16)) -> Frame {
    match proto {
        TCP => Frame { seq: 0x1234_5678, ..Frame::tcp(client, sport, to, ports.0, SYN) },
        _ => Frame::udp(client, sport, to, ports.1).with_payload(b"query"),
    }
}

/// A pod's reply from `pod` (its `POD_PORT`) to `to` port `dport`, as it
/// leaves the pod: a SYN+ACK with data or a UDP answer, long enough that
/// the quoted TCP header differs from a bare one.
fn reply_packet(pod: IpAddr, to: IpAddr, dport: u16, proto: u8) -> Frame {
    match proto {
        TCP => Frame { seq: 0x0bad_cafe, ack: 0x1234_5679, ..Frame::tcp(pod, POD_PORT, to, dport, SYN | ACK) }.with_payload(b"answer"),
        _ => Frame::udp(pod, POD_PORT, to, dport).with_payload(b"answer"),
    }
}

/// How much of the offending packet an error quotes: its IP header and the
/// 8 bytes RFC 792 asks for (the TCP checksum is not among them), or all
/// of it, as Linux quotes (the whole TCP header, checksum included).
fn quote_lengths(c: &Cast, packet_len: usize) -> [usize; 2] {
    [c.ip_hlen + 8, packet_len]
}

/// `frame` through `program`: it must pass, and what it became.
fn pass(p: &mut Programmed, program: &str, frame: &[u8]) -> Vec<u8> {
    let (verdict, out) = try_run(&mut p.dataplane, program, frame).unwrap();
    let passed = if program == XDP_PROGRAM { XDP_PASS } else { TC_ACT_OK };
    assert_eq!(verdict, passed, "{program} on {}", hex(frame));
    out
}

/// `out` is `expected` byte for byte, and a receiver finds its checksums right.
fn assert_exact(what: &str, out: &[u8], expected: &[u8]) {
    assert!(out == expected, "{what}:\n  got      {}\n  expected {}", hex(out), hex(expected));
    assert!(checksums_valid(out), "{what}: the ICMP error's checksums: {}", hex(out));
}

/// A pod of this node, or a router on its way, answers a client's packet
/// with an error: the client gets it from the frontend (or the router),
/// quoting what it sent to the frontend. Clients outside (`lb_xdp`) and
/// pods of the node (`lb_tc_in`); the error leaves through `lb_tc_out`.
#[test]
fn an_error_about_a_dnated_flow_quotes_what_the_client_sent() {
    let Some(mut p) = programmed() else { return };
    let mut sport = 41_000;
    for c in casts() {
        for (entry, client) in [(Entry::Uplink, c.client), (Entry::PodVeth, c.pod_client)] {
            for proto in [TCP, UDP] {
                for error in c.errors {
                    for from_router in [false, true] {
                        sport += 1;
                        let sent = first_packet(client, sport, c.vip, proto).build();
                        let (verdict, dnat) = p.run(entry, &sent);
                        assert_eq!(verdict, entry.passed(), "{entry:?}: {}", hex(&sent));
                        assert_eq!(packet::read_ip(&dnat).dst, c.local_pod);
                        for len in quote_lengths(&c, sent.len() - packet::ETH_HLEN) {
                            let what = format!("{entry:?} proto {proto} error {error:?} from the router {from_router}, quote {len} bytes");
                            let (sender, seen_from) = if from_router { (c.router, c.router) } else { (c.local_pod, c.vip) };
                            let v6 = c.client.is_ipv6();
                            let error_sent = Frame::icmp_error(sender, client, error, rest(error, v6), packet::ip_packet(&dnat, len));
                            let before = p.packets(ICMP_ERROR_TRANSLATED);
                            let out = pass(&mut p, TC_OUT_PROGRAM, &error_sent.build());
                            let expected = Frame::icmp_error(seen_from, client, error, rest(error, v6), packet::ip_packet(&sent, len));
                            assert_exact(&what, &out, &expected.build());
                            assert_eq!(p.packets(ICMP_ERROR_TRANSLATED), before + 1, "{what}: counted");
                        }
                    }
                }
            }
        }
    }
}

/// A flow from an uplink to a pod on another node leaves source-translated
/// to the node. The pod's (or a router's) error about it comes back to the
/// node's address, quoting the node's address and port: on the way in
/// (`lb_xdp` or `lb_tc_uplink`) it becomes an error to the client quoting
/// the client's address and port, and on the way out (`lb_tc_out`) an error
/// from the frontend quoting what the client sent.
#[test]
fn an_error_about_a_snated_flow_reaches_the_client_quoting_what_it_sent() {
    let Some(mut p) = programmed() else { return };
    let mut sport = 42_000;
    for c in casts() {
        let v6 = c.client.is_ipv6();
        for uplink in UPLINKS {
            for proto in [TCP, UDP] {
                for error in c.errors {
                    for from_router in [false, true] {
                        sport += 1;
                        let sent = first_packet(c.client, sport, c.remote_vip, proto).build();
                        let (verdict, dnat) = p.run(uplink, &sent);
                        assert_eq!(verdict, uplink.passed(), "{uplink:?}: {}", hex(&sent));
                        let snat = pass(&mut p, TC_OUT_PROGRAM, &dnat);
                        let snat_seen = packet::read_ip(&snat);
                        assert_eq!((snat_seen.src, snat_seen.dst), (c.node, c.remote_pod), "SNAT of {}", hex(&dnat));
                        for len in quote_lengths(&c, sent.len() - packet::ETH_HLEN) {
                            let what = format!("{uplink:?} proto {proto} error {error:?} from the router {from_router}, quote {len} bytes");
                            let (sender, seen_from) = if from_router { (c.router, c.router) } else { (c.remote_pod, c.remote_vip) };
                            let arrives = Frame::icmp_error(sender, c.node, error, rest(error, v6), packet::ip_packet(&snat, len));
                            let before = p.packets(ICMP_ERROR_TRANSLATED);
                            let (verdict, inside) = p.run(uplink, &arrives.build());
                            assert_eq!(verdict, uplink.passed(), "{what}");
                            let to_client = Frame::icmp_error(sender, c.client, error, rest(error, v6), packet::ip_packet(&dnat, len));
                            assert_exact(&format!("{what}, on the way in"), &inside, &to_client.build());
                            let out = pass(&mut p, TC_OUT_PROGRAM, &inside);
                            let expected = Frame::icmp_error(seen_from, c.client, error, rest(error, v6), packet::ip_packet(&sent, len));
                            assert_exact(&format!("{what}, on the way out"), &out, &expected.build());
                            assert_eq!(p.packets(ICMP_ERROR_TRANSLATED), before + 2, "{what}: counted in and out");
                        }
                    }
                }
            }
        }
    }
}

/// Swaps a frame's Ethernet addresses: how a frame sent back out of the
/// veth it came in on leaves.
fn turned_around(mut frame: Vec<u8>) -> Vec<u8> {
    frame[..12].rotate_left(6);
    frame
}

/// A pod of this node answers a client; the answer leaves the node from the
/// frontend (`lb_tc_out`). The client (port or host unreachable) or a
/// router on its way (fragmentation needed / packet too big, time
/// exceeded) answers that with an error to the frontend quoting it; on the
/// way in (the uplink's `lb_xdp` or `lb_tc_uplink` for clients outside,
/// NodePort and ClusterIP; a client pod's veth, `lb_tc_in`) it becomes an
/// error to the pod quoting what the pod sent, and leaves through the pod's
/// `lb_tc_out` untouched.
#[test]
fn an_error_about_a_local_pods_reply_reaches_it_quoting_what_it_sent() {
    let Some(mut p) = programmed() else { return };
    let mut sport = 44_000;
    for c in casts() {
        let v6 = c.client.is_ipv6();
        let entries = [
            (Entry::Uplink, c.client, c.node, NODE_PORTS),
            (Entry::UplinkTc, c.client, c.node, NODE_PORTS),
            (Entry::Uplink, c.client, c.vip, (80, 53)),
            (Entry::PodVeth, c.pod_client, c.vip, (80, 53)),
        ];
        for (entry, client, frontend, ports) in entries {
            for proto in [TCP, UDP] {
                for error in c.errors {
                    for from_router in [false, true] {
                        sport += 1;
                        let sent = first_packet_to_port(client, sport, frontend, proto, ports).build();
                        let (verdict, dnat) = p.run(entry, &sent);
                        assert_eq!(verdict, entry.passed(), "{entry:?}: {}", hex(&sent));
                        assert_eq!(packet::read_ip(&dnat).dst, c.local_pod);
                        let reply = reply_packet(c.local_pod, client, sport, proto).build();
                        let reply_out = pass(&mut p, TC_OUT_PROGRAM, &reply);
                        assert_eq!(packet::read_ip(&reply_out).src, frontend, "the reply's reverse DNAT: {}", hex(&reply_out));
                        for len in quote_lengths(&c, reply.len() - packet::ETH_HLEN) {
                            let what = format!(
                                "{entry:?} to {frontend} proto {proto} error {error:?} from the router {from_router}, quote {len} bytes"
                            );
                            let sender = if from_router { c.router } else { client };
                            let arrives = Frame::icmp_error(sender, frontend, error, rest(error, v6), packet::ip_packet(&reply_out, len));
                            let before = p.packets(ICMP_ERROR_TRANSLATED);
                            let (verdict, inside) = p.run(entry, &arrives.build());
                            assert_eq!(verdict, entry.passed(), "{what}");
                            let to_pod = Frame::icmp_error(sender, c.local_pod, error, rest(error, v6), packet::ip_packet(&reply, len)).build();
                            assert_exact(&format!("{what}, on the way in"), &inside, &to_pod);
                            assert_eq!(p.packets(ICMP_ERROR_TRANSLATED), before + 1, "{what}: counted");
                            let out = pass(&mut p, TC_OUT_PROGRAM, &inside);
                            assert!(out == to_pod, "{what}: changed again on the way out to the pod: {}", hex(&out));
                        }
                    }
                }
            }
        }
    }
}

/// A flow from an uplink to a pod on another node: the pod's reply comes
/// back to the node's SNAT address and leaves toward the client from the
/// frontend. An error the client or a router sends about it to the
/// frontend becomes, on the way in, an error to the pod quoting its reply
/// as it went to the client, and on the way out (`lb_tc_out` toward the
/// pod's node) the error the pod's stack needs: quoting its reply to the
/// node's address and port, from the node when the client sent it (a
/// router's address stays). An error the node itself sends the pod about
/// that reply, which it could not forward to the client (an uplink with a
/// smaller MTU), quotes it after the SNAT reply translation: `lb_tc_out`
/// gives it the node's side the same way.
#[test]
fn an_error_about_a_remote_pods_reply_reaches_it_quoting_what_it_sent() {
    let Some(mut p) = programmed() else { return };
    let mut sport = 45_000;
    for c in casts() {
        let v6 = c.client.is_ipv6();
        for uplink in UPLINKS {
            for proto in [TCP, UDP] {
                for error in c.errors {
                    for sender in [c.client, c.router, c.node] {
                        sport += 1;
                        let sent = first_packet(c.client, sport, c.remote_vip, proto).build();
                        let (verdict, dnat) = p.run(uplink, &sent);
                        assert_eq!(verdict, uplink.passed(), "{uplink:?}: {}", hex(&sent));
                        let snat = packet::read_ip(&pass(&mut p, TC_OUT_PROGRAM, &dnat));
                        assert_eq!((snat.src, snat.dst), (c.node, c.remote_pod), "SNAT of {}", hex(&dnat));
                        let reply = reply_packet(c.remote_pod, c.node, snat.sport, proto).build();
                        let (verdict, to_client) = p.run(uplink, &reply);
                        assert_eq!(verdict, uplink.passed(), "{uplink:?}: the SNAT reply {}", hex(&reply));
                        let reply_out = pass(&mut p, TC_OUT_PROGRAM, &to_client);
                        assert_eq!(packet::read_ip(&reply_out).src, c.remote_vip, "the reply's reverse DNAT: {}", hex(&reply_out));
                        for len in quote_lengths(&c, reply.len() - packet::ETH_HLEN) {
                            let what = format!("{uplink:?} proto {proto} error {error:?} from {sender}, quote {len} bytes");
                            let before = p.packets(ICMP_ERROR_TRANSLATED);
                            let toward_pod = if sender == c.node {
                                // Sent by the node's stack: no way in.
                                Frame::icmp_error(sender, c.remote_pod, error, rest(error, v6), packet::ip_packet(&to_client, len)).build()
                            } else {
                                let arrives = Frame::icmp_error(sender, c.remote_vip, error, rest(error, v6), packet::ip_packet(&reply_out, len));
                                let (verdict, inside) = p.run(uplink, &arrives.build());
                                assert_eq!(verdict, uplink.passed(), "{what}");
                                let expected = Frame::icmp_error(sender, c.remote_pod, error, rest(error, v6), packet::ip_packet(&to_client, len));
                                assert_exact(&format!("{what}, on the way in"), &inside, &expected.build());
                                inside
                            };
                            let out = pass(&mut p, TC_OUT_PROGRAM, &toward_pod);
                            let seen_from = if sender == c.client { c.node } else { sender };
                            let expected = Frame::icmp_error(seen_from, c.remote_pod, error, rest(error, v6), packet::ip_packet(&reply, len));
                            assert_exact(&format!("{what}, on the way out"), &out, &expected.build());
                            let steps = if sender == c.node { 1 } else { 2 };
                            assert_eq!(p.packets(ICMP_ERROR_TRANSLATED), before + steps, "{what}: counted at each step");
                        }
                    }
                }
            }
        }
    }
}

/// A pod calling its own Service is hairpinned (`hairpin`): its packet
/// reaches it from the hairpin address, its answer comes back from the
/// frontend. An error it sends about either, on its veth (`lb_tc_in`),
/// must come back to it (sent back out of the veth, MACs swapped) as the
/// error about what it sent: about its packet, from the frontend quoting
/// it to the frontend; about its answer, from the hairpin address quoting
/// it to the hairpin address.
#[test]
fn an_error_between_a_hairpinned_pod_and_itself_comes_back_quoting_what_it_sent() {
    let Some(mut p) = programmed() else { return };
    let mut sport = 46_000;
    for c in casts() {
        let v6 = c.client.is_ipv6();
        for proto in [TCP, UDP] {
            for error in c.errors {
                sport += 1;
                let sent = first_packet(c.local_pod, sport, c.vip, proto).build();
                let (verdict, hairpinned) = p.tc_in(&sent);
                assert_eq!(verdict, TC_ACT_REDIRECT, "hairpin of {}", hex(&sent));
                assert_eq!(packet::read_ip(&hairpinned).src, c.hairpin);
                let answer = reply_packet(c.local_pod, c.hairpin, sport, proto).build();
                let (verdict, answered) = p.tc_in(&answer);
                assert_eq!(verdict, TC_ACT_REDIRECT, "hairpin answer {}", hex(&answer));
                assert_eq!(packet::read_ip(&answered).src, c.vip);
                // (what the pod got, where from, what it had sent, where to).
                let cases = [
                    ("its packet", &hairpinned, c.hairpin, &sent, c.vip),
                    ("its answer", &answered, c.vip, &answer, c.hairpin),
                ];
                for (about, got, got_from, what_it_sent, sent_to) in cases {
                    for len in quote_lengths(&c, what_it_sent.len() - packet::ETH_HLEN) {
                        let what = format!("proto {proto} error {error:?} about {about}, quote {len} bytes");
                        let error_sent = Frame::icmp_error(c.local_pod, got_from, error, rest(error, v6), packet::ip_packet(got, len));
                        let before = p.packets(ICMP_ERROR_HAIRPIN_TRANSLATED);
                        let (verdict, out) = p.tc_in(&error_sent.build());
                        assert_eq!(verdict, TC_ACT_REDIRECT, "{what}: sent back");
                        let expected = Frame::icmp_error(sent_to, c.local_pod, error, rest(error, v6), packet::ip_packet(what_it_sent, len));
                        assert_exact(&what, &out, &turned_around(expected.build()));
                        assert_eq!(p.packets(ICMP_ERROR_HAIRPIN_TRANSLATED), before + 1, "{what}: counted");
                    }
                }
            }
        }
    }
}

/// Errors the programs must leave alone, byte for byte, through every
/// program: about a flow nobody opened, about a tracked flow but quoting
/// the packet before its translation (as the client's own router would),
/// about a reply from a frontend to a port no flow came from, to a pod
/// about its reply as it sent it (nothing left to translate), and a
/// message that is no error (an echo reply) carrying a tracked flow's
/// packet.
#[test]
fn an_error_about_no_translated_flow_passes_byte_for_byte() {
    let Some(mut p) = programmed() else { return };
    for (i, c) in casts().iter().enumerate() {
        let v6 = c.client.is_ipv6();
        let sent = first_packet(c.client, 43_000 + i as u16, c.vip, TCP).build();
        let (_, dnat) = p.run(Entry::Uplink, &sent);
        let untracked = first_packet(c.client, 43_100 + i as u16, c.local_pod, TCP).with_payload(b"x").build();
        let untracked_reply = Frame::tcp(c.vip, 80, c.client, 43_200 + i as u16, ACK).with_payload(b"x").build();
        let pods_reply = reply_packet(c.local_pod, c.client, 43_000 + i as u16, TCP).build();
        let echo_reply = if v6 { (129, 0) } else { (0, 0) };
        let len = c.ip_hlen + 20;
        let frames = [
            ("an error about an untracked flow", Frame::icmp_error(c.local_pod, c.client, c.errors[0], rest(c.errors[0], v6), packet::ip_packet(&untracked, len))),
            ("an error quoting the packet before its DNAT", Frame::icmp_error(c.router, c.client, c.errors[0], rest(c.errors[0], v6), packet::ip_packet(&sent, len))),
            ("an error about a reply of no flow", Frame::icmp_error(c.client, c.vip, c.errors[1], rest(c.errors[1], v6), packet::ip_packet(&untracked_reply, len))),
            ("an error to a pod quoting its reply as it sent it", Frame::icmp_error(c.router, c.local_pod, c.errors[0], rest(c.errors[0], v6), packet::ip_packet(&pods_reply, len))),
            ("an echo reply carrying a tracked flow's packet", Frame::icmp_error(c.local_pod, c.client, echo_reply, [0, 1, 0, 1], packet::ip_packet(&dnat, len))),
        ];
        for (what, frame) in frames {
            let bytes = frame.build();
            for program in [XDP_PROGRAM, TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM] {
                let before = p.packets(PASS_OTHER_PROTOCOL);
                let out = pass(&mut p, program, &bytes);
                assert!(out == bytes, "{what} through {program}: changed\n  in  {}\n  out {}", hex(&bytes), hex(&out));
                assert_eq!(p.packets(PASS_OTHER_PROTOCOL), before + 1, "{what} through {program}: counted");
            }
        }
    }
}
