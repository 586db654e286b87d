//! A Service without endpoints rejects, as kube-proxy does: TCP gets a RST,
//! UDP an ICMP port unreachable, sent back where the packet came from, so a
//! client fails at once instead of waiting for a timeout.
//!
//! First the programs on crafted frames (BPF_PROG_TEST_RUN): exact verdicts
//! and bytes, checksums verified here from scratch. Then end to end in the
//! lab: real sockets get ECONNREFUSED and the agent counts the rejects.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ingress_common::stats::*;
use ingress_tests::agent::{InProcessAgent, ManifestDir, dataplane_packets};
use ingress_tests::checks::{REJECT_ENTRIES as ENTRIES, assert_reset_answers};
use ingress_tests::packet::{self, ACK, DST_MAC, ETHERTYPE_IPV4, FIN, Frame, PSH, RST, SRC_MAC, SYN};
use ingress_tests::prog_run::{Entry, Programmed, TC_ACT_SHOT, add_tcp_and_udp_service};
use ingress_tests::traffic::{connect_outcome, udp_exchange_outcome};
use ingress_tests::{Lab, LabSpec, NetNs, is_root};
use ingress_userspace::model::DesiredState;

const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_PORT_UNREACH: u8 = 3;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
/// A frontend with no endpoint, on 80/TCP and 53/UDP.
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 99);

/// The programs with one Service (`EMPTY_VIP`, 80/TCP and 53/UDP) and no endpoint.
fn programmed() -> Option<Programmed> {
    let mut desired = DesiredState::default();
    add_tcp_and_udp_service(&mut desired, EMPTY_VIP, "nothing", &[]);
    Programmed::load("reject", &desired)
}

#[test]
fn a_syn_to_a_frontend_without_endpoints_gets_a_rst_back() {
    let Some(mut p) = programmed() else { return };
    let syn = Frame { seq: 0x1234_5678, ..Frame::tcp(CLIENT, 40000, EMPTY_VIP, 80, SYN) };
    for (entry, verdict) in ENTRIES {
        let (got, out) = p.run(entry, &syn.build());
        assert_eq!(got, verdict, "{entry:?}");
        // No ACK in a SYN: the RST's sequence number is 0, and it acknowledges the SYN.
        assert_reset_answers(&out, &syn, 0, 0x1234_5679, &format!("{entry:?}"));
    }
    assert_eq!(p.packets(REJECT_NO_BACKEND), ENTRIES.len() as u64);
    assert_eq!(p.packets(DROP_NO_BACKEND), 0);
}

#[test]
fn a_rst_acknowledges_all_a_segment_carried_and_takes_its_ack_as_sequence() {
    let Some(mut p) = programmed() else { return };
    let tcp = |flags, seq, ack| Frame { seq, ack, ..Frame::tcp(CLIENT, 40001, EMPTY_VIP, 80, flags) };
    let cases = [
        ("payload-less ACK", tcp(ACK, 100, 200), 200, 100),
        ("ACK with 11 bytes", tcp(ACK | PSH, 5000, 777).with_payload(b"hello world"), 777, 5011),
        ("FIN", tcp(FIN | ACK, 9, 10), 10, 10),
        ("SYN at the end of the sequence space", tcp(SYN, u32::MAX, 0), 0, 0),
        (
            "SYN with data and IPv4 options",
            Frame { ip_options: vec![1, 1, 1, 0], ..tcp(SYN, 41, 0).with_payload(b"fast open") },
            0,
            51,
        ),
    ];
    for (name, frame, seq, ack) in &cases {
        for (entry, verdict) in ENTRIES {
            let (got, out) = p.run(entry, &frame.build());
            assert_eq!(got, verdict, "{name}, {entry:?}");
            assert_reset_answers(&out, frame, *seq, *ack, &format!("{name}, {entry:?}"));
        }
    }
    assert_eq!(p.packets(REJECT_NO_BACKEND), (ENTRIES.len() * cases.len()) as u64);
}

/// The ICMP error a frame gets, checked against the frame it quotes.
fn assert_port_unreachable_quotes(out: &[u8], to: &Frame, what: &str) {
    let original = to.build();
    let quoted_len = 20 + to.ip_options.len() + 8;
    assert_eq!(out.len(), 14 + 20 + 8 + quoted_len, "{what}: IP header + 8 bytes quoted, nothing more");
    assert_eq!(packet::ethernet_of(out), (SRC_MAC, DST_MAC, ETHERTYPE_IPV4), "{what}: MACs swapped");
    let icmp = packet::read_icmp(out);
    let (frontend, client) = (std::net::IpAddr::from(icmp.src), std::net::IpAddr::from(icmp.dst));
    assert_eq!((frontend, client, icmp.proto), (to.dst, to.src, packet::ICMP), "{what}: from the frontend");
    assert_eq!(icmp.ip_total_len, out.len() - 14, "{what}: IPv4 total length");
    assert!(icmp.ip_checksum_ok && icmp.checksum_ok, "{what}: checksums wrong: {icmp:?}");
    assert_eq!((icmp.kind, icmp.code, icmp.rest), (ICMP_DEST_UNREACH, ICMP_PORT_UNREACH, [0; 4]), "{what}");
    assert_eq!(icmp.quoted, original[14..14 + quoted_len], "{what}: quoted bytes");
}

#[test]
fn a_udp_datagram_gets_an_icmp_port_unreachable_quoting_its_headers() {
    let Some(mut p) = programmed() else { return };
    let udp = Frame::udp(CLIENT, 5353, EMPTY_VIP, 53);
    let cases = [
        ("datagram with a payload", udp.clone().with_payload(b"a query longer than eight bytes")),
        ("empty datagram", udp.clone()),
        ("odd-length payload", udp.clone().with_payload(b"odd")),
        ("no UDP checksum", Frame { udp_no_checksum: true, ..udp.clone().with_payload(b"q") }),
        ("IPv4 options", Frame { ip_options: vec![0x94, 0x04, 0, 0, 1, 1, 1, 0], ..udp.with_payload(b"q") }),
    ];
    for (name, frame) in &cases {
        for (entry, verdict) in ENTRIES {
            let (got, out) = p.run(entry, &frame.build());
            assert_eq!(got, verdict, "{name}, {entry:?}");
            assert_port_unreachable_quotes(&out, frame, &format!("{name}, {entry:?}"));
        }
    }
    assert_eq!(p.packets(REJECT_NO_BACKEND), (ENTRIES.len() * cases.len()) as u64);
}

#[test]
fn a_reset_and_a_packet_from_no_single_host_are_dropped_not_answered() {
    let Some(mut p) = programmed() else { return };
    let multicast = Ipv4Addr::new(224, 0, 0, 5);
    for frame in [
        Frame::tcp(CLIENT, 40002, EMPTY_VIP, 80, RST),
        Frame::tcp(CLIENT, 40002, EMPTY_VIP, 80, RST | ACK),
        Frame::udp(multicast, 5000, EMPTY_VIP, 53),
        Frame::udp(Ipv4Addr::UNSPECIFIED, 68, EMPTY_VIP, 53),
    ] {
        let bytes = frame.build();
        for entry in [Entry::Uplink, Entry::UplinkTc] {
            assert_eq!(p.run(entry, &bytes), (entry.dropped(), bytes.clone()), "{entry:?}: {frame:?}");
        }
        assert_eq!(p.run(Entry::PodVeth, &bytes).0, TC_ACT_SHOT, "{frame:?}");
    }
    assert_eq!(p.packets(DROP_NO_BACKEND), 12);
    assert_eq!(p.packets(REJECT_NO_BACKEND), 0);
}

#[test]
fn truncated_or_inconsistent_packets_to_an_empty_frontend_get_a_sane_verdict() {
    let Some(mut p) = programmed() else { return };
    let syn = Frame { seq: 7, ..Frame::tcp(CLIENT, 40003, EMPTY_VIP, 80, SYN) };
    // Cut inside the L4 header: nothing to answer from, passed for the stack.
    for frame in [syn.build()[..14 + 20 + 10].to_vec(), Frame::udp(CLIENT, 1, EMPTY_VIP, 53).build()[..14 + 20 + 4].to_vec()] {
        for entry in [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth] {
            assert_eq!(p.run(entry, &frame), (entry.passed(), frame.clone()), "{entry:?}: a truncated frame passes untouched");
        }
    }
    assert_eq!(p.packets(PASS_TRUNCATED), 6);

    // Lengths that disagree with the frame: the RST counts no payload
    // rather than a negative one, and still goes out well-formed.
    let mut short_total = syn.build();
    short_total[14 + 2..14 + 4].copy_from_slice(&20u16.to_be_bytes());
    let mut long_data_offset = syn.build();
    long_data_offset[14 + 20 + 12] = 0xf0;
    for (name, frame) in [("IPv4 total length below the headers", short_total), ("TCP data offset past the end", long_data_offset)] {
        for (entry, verdict) in ENTRIES {
            let (got, out) = p.run(entry, &frame);
            assert_eq!(got, verdict, "{name}, {entry:?}");
            assert_reset_answers(&out, &syn, 0, 8, &format!("{name}, {entry:?}"));
        }
    }
}

// ---- end to end ----------------------------------------------------------

const NOTHING_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
const NOTHING_TCP_NODEPORT: u16 = 30090;
const NOTHING_UDP_NODEPORT: u16 = 30091;
/// Long enough that a dropped SYN or datagram would show as a timeout,
/// never as a refusal.
const PATIENCE: Duration = Duration::from_secs(5);

/// A Service whose selector matches no pod: no EndpointSlice at all.
const NOTHING: &str = "apiVersion: v1
kind: Service
metadata: {name: nothing, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  clusterIPs: [10.96.0.30]
  selector: {app: nothing}
  ports:
    - {name: tcp, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30090}
    - {name: udp, protocol: UDP, port: 53, targetPort: 8080, nodePort: 30091}
";

fn rejects_counted(lab: &Lab) -> u64 {
    dataplane_packets(lab.node(), REJECT_NO_BACKEND)
}

/// A TCP connect from inside `ns`: its error kind and how long it took.
fn connect(ns: &NetNs, to: SocketAddrV4) -> (Option<ErrorKind>, Duration) {
    connect_outcome(ns, to, PATIENCE).unwrap()
}

/// One datagram on a connected UDP socket, then a receive: its error kind.
fn udp_exchange(ns: &NetNs, to: SocketAddrV4) -> Option<ErrorKind> {
    udp_exchange_outcome(ns, to, PATIENCE).unwrap()
}

/// The lab with the agent on the examples plus the Service `nothing`.
struct NothingLab {
    // Dropped in this order: the programs before their pins and their lab.
    _agent: InProcessAgent,
    _manifests: ManifestDir,
    lab: Lab,
}

fn nothing_lab() -> Option<NothingLab> {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return None;
    }
    let lab = Lab::build(LabSpec::examples()).unwrap();
    let manifests = ManifestDir::examples().unwrap();
    manifests.write("zz-nothing.yaml", NOTHING).unwrap();
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    Some(NothingLab { _agent: agent, _manifests: manifests, lab })
}

/// A TCP connect and a UDP exchange from `from` are refused at once, and
/// the agent counts one reject for each.
fn assert_refused(lab: &Lab, name: &str, from: &NetNs, tcp: SocketAddrV4, udp: SocketAddrV4) {
    let before = rejects_counted(lab);
    let (error, took) = connect(from, tcp);
    assert_eq!(error, Some(ErrorKind::ConnectionRefused), "TCP {name}: refused, not timed out (took {took:?})");
    assert!(took < Duration::from_secs(1), "TCP {name}: the refusal took {took:?}");
    assert_eq!(udp_exchange(from, udp), Some(ErrorKind::ConnectionRefused), "UDP {name}");
    assert_eq!(rejects_counted(lab) - before, 2, "{name}: one reject per SYN and per datagram");
}

#[test]
fn a_service_without_endpoints_refuses_a_pod_at_once_through_tc() {
    let Some(nothing) = nothing_lab() else { return };
    let lab = &nothing.lab;
    let toolbox = &lab.pod("toolbox").unwrap().ns;
    let (tcp, udp) = (SocketAddrV4::new(NOTHING_CLUSTER_IP, 80), SocketAddrV4::new(NOTHING_CLUSTER_IP, 53));
    assert_refused(lab, "ClusterIP from a pod", toolbox, tcp, udp);

    // The Service with endpoints beside it is untouched.
    let reply = ingress_tests::tcp_request(toolbox, SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 10), 80)).unwrap();
    assert!(["pod-a", "pod-b", "pod-c"].contains(&reply.pod.as_str()), "{reply:?}");
}

/// The lab's uplink is a veth, as on a kind node: the agent answers on its
/// TC ingress, and the client's end runs no XDP (XDP_TX would need one).
#[test]
fn a_service_without_endpoints_refuses_an_outside_client_at_once_through_a_veth_uplink() {
    let Some(nothing) = nothing_lab() else { return };
    let lab = &nothing.lab;
    let (tcp, udp) = (
        SocketAddrV4::new(lab.node_ip(), NOTHING_TCP_NODEPORT),
        SocketAddrV4::new(lab.node_ip(), NOTHING_UDP_NODEPORT),
    );
    assert_refused(lab, "NodePort from outside", lab.client(), tcp, udp);
}
