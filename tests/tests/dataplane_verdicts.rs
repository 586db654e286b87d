//! The eBPF programs run in the kernel on crafted frames (BPF_PROG_TEST_RUN):
//! exact verdicts, rewrites, checksums, conntrack entries and counters.

use std::net::{IpAddr, Ipv4Addr};
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use ingress_common::addr::Addr;
use aya::maps::{HashMap, Map, MapData};
use ingress_common::maps::{CONNTRACK_MAP, CT_FORWARD, CT_REPLY, CtEntry, CtKey};
use ingress_common::stats::*;
use ingress_tests::backend_choice::{NewFlow, fresh_choice};
use ingress_tests::checks::assert_checksums;
use ingress_tests::packet::{self, ACK, ETHERTYPE_ARP, Frame, SYN};
use ingress_tests::prog_run::{
    self, Entry, Programmed, TC_ACT_OK, UPLINKS, XDP_PASS, add_tcp_and_udp_service, local_backends,
};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::{TC_IN_PROGRAM, TC_OUT_PROGRAM, TC_UPLINK_PROGRAM};
use ingress_userspace::model::*;
use ingress_userspace::reconcile::Reconciler;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const EMPTY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 99);
/// A frontend with `sessionAffinity: ClientIP` and a one-second timeout.
const STICKY_VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 77);
const STICKY_TIMEOUT: Duration = Duration::from_secs(1);
const PODS: [Ipv4Addr; 3] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 3, 2)];

fn desired(pods: &[Ipv4Addr]) -> DesiredState {
    let backends = local_backends(pods, 8080);
    let service = |port_name: &str| ServicePortRef { namespace: "default".into(), name: "echo".into(), port_name: port_name.into() };
    let mut state = DesiredState::default();
    add_tcp_and_udp_service(&mut state, VIP, "echo", &backends);
    state.frontends.insert(
        Frontend { addr: EMPTY_VIP.into(), port: 80, protocol: Protocol::Tcp },
        FrontendState { service: service("empty"), ..FrontendState::default() },
    );
    state.frontends.insert(
        Frontend { addr: STICKY_VIP.into(), port: 80, protocol: Protocol::Tcp },
        FrontendState {
            service: service("sticky"),
            backends,
            affinity_timeout_s: STICKY_TIMEOUT.as_secs() as u32,
            ..FrontendState::default()
        },
    );
    state
}

/// The programs with maps of their own, programmed with `desired(&PODS)`:
/// VIP:80/TCP and VIP:53/UDP over three pods, a frontend without endpoints
/// and a sticky one.
struct Harness(Programmed);

impl Harness {
    fn new() -> Option<Harness> {
        Programmed::load("verdicts", &desired(&PODS)).map(Harness)
    }

    fn ct_entries(&self, direction: u8) -> usize {
        self.maps.conntrack().unwrap().iter().filter(|(k, _)| k.direction == direction).count()
    }

    /// Deletes the conntrack entries of every flow to `backend_id`, as
    /// their expiry and the agent's sweep would.
    fn forget_flows_to(&mut self, backend_id: u32) {
        let data = MapData::from_pin(self.pins.path().join(CONNTRACK_MAP)).expect("the pinned conntrack map");
        let mut conntrack: HashMap<MapData, CtKey, CtEntry> = Map::from_map_data(data).unwrap().try_into().unwrap();
        let entries = self.maps.conntrack().unwrap();
        let keys: Vec<CtKey> = entries.iter().filter(|(_, e)| e.backend_id == backend_id).map(|(k, _)| *k).collect();
        assert!(!keys.is_empty(), "no flow to backend {backend_id}");
        for key in keys {
            conntrack.remove(&key).unwrap();
        }
    }
}

impl Deref for Harness {
    type Target = Programmed;
    fn deref(&self) -> &Programmed {
        &self.0
    }
}

impl DerefMut for Harness {
    fn deref_mut(&mut self) -> &mut Programmed {
        &mut self.0
    }
}

#[test]
fn tcp_syn_to_a_frontend_goes_to_a_backend_with_valid_checksums_and_a_conntrack_entry() {
    for entry in UPLINKS {
        let Some(mut h) = Harness::new() else { return };
        let syn = Frame::tcp(CLIENT, 40000, VIP, 80, SYN).build();
        let (verdict, out) = h.run(entry, &syn);
        assert_eq!(verdict, entry.passed(), "{entry:?}");
        let seen = packet::read(&out);
        assert!(PODS.contains(&seen.dst), "{entry:?}: destination {} is no backend", seen.dst);
        assert_eq!((seen.src, seen.sport, seen.dport), (CLIENT, 40000, 8080), "{entry:?}");
        assert_checksums(&seen);
        assert_eq!(h.ct_entries(CT_FORWARD), 1, "{entry:?}");
        assert_eq!(h.ct_entries(CT_REPLY), 1, "{entry:?}");
        assert_eq!(h.packets(FORWARD_TRANSLATED), 1, "{entry:?}");
    }
}

#[test]
fn every_packet_of_a_flow_reaches_the_same_backend_through_either_program() {
    let Some(mut h) = Harness::new() else { return };
    let (_, first) = h.xdp(&Frame::tcp(CLIENT, 40001, VIP, 80, SYN).build());
    let backend = packet::read(&first).dst;
    for i in 0..21usize {
        let data = Frame::tcp(CLIENT, 40001, VIP, 80, ACK).with_payload(format!("request {i}\n").as_bytes()).build();
        let entry = [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth][i % 3];
        let (verdict, out) = h.run(entry, &data);
        assert_eq!(verdict, entry.passed(), "{entry:?}");
        let seen = packet::read(&out);
        assert_eq!(seen.dst, backend, "packet {i} changed backend");
        assert_eq!(seen.payload, format!("request {i}\n").as_bytes());
        assert_checksums(&seen);
    }
}

#[test]
fn replies_are_reverse_translated_to_the_frontend_on_the_way_out_only() {
    let Some(mut h) = Harness::new() else { return };
    let (_, out) = h.xdp(&Frame::tcp(CLIENT, 40002, VIP, 80, SYN).build());
    let backend = packet::read(&out).dst;
    let reply = Frame::tcp(backend, 8080, CLIENT, 40002, SYN | ACK).with_payload(b"pod-x\n").build();
    // On the way in (before routing) a reply is left alone: a node address
    // as source would make it a martian.
    for entry in [Entry::PodVeth, Entry::Uplink, Entry::UplinkTc] {
        assert_eq!(h.run(entry, &reply), (entry.passed(), reply.clone()), "{entry:?}");
    }
    let (verdict, out) = h.tc_out(&reply);
    assert_eq!(verdict, TC_ACT_OK);
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (VIP, 80, CLIENT, 40002));
    assert_eq!(seen.payload, b"pod-x\n");
    assert_checksums(&seen);
    assert_eq!(h.packets(REPLY_TRANSLATED), 1);
}

#[test]
fn packets_leaving_the_node_that_are_no_replies_are_untouched() {
    let Some(mut h) = Harness::new() else { return };
    let (_, out) = h.xdp(&Frame::tcp(CLIENT, 40009, VIP, 80, SYN).build());
    // The translated forward packet itself passes egress towards the pod.
    assert_eq!(h.tc_out(&out), (TC_ACT_OK, out.clone()));
    let unrelated = Frame::tcp(PODS[0], 8080, CLIENT, 50000, ACK).build();
    assert_eq!(h.tc_out(&unrelated), (TC_ACT_OK, unrelated.clone()));
    assert_eq!(h.packets(PASS_NOT_A_REPLY), 2);
}

#[test]
fn udp_to_a_frontend_and_back_keeps_valid_or_absent_checksums() {
    let Some(mut h) = Harness::new() else { return };
    for (sport, no_checksum) in [(5000, false), (5001, true)] {
        let query = Frame { udp_no_checksum: no_checksum, ..Frame::udp(CLIENT, sport, VIP, 53).with_payload(b"q") };
        // Through each uplink program in turn: one flow per source port.
        let entry = if no_checksum { Entry::UplinkTc } else { Entry::Uplink };
        let (verdict, out) = h.run(entry, &query.build());
        assert_eq!(verdict, entry.passed(), "{entry:?}");
        let seen = packet::read(&out);
        assert!(PODS.contains(&seen.dst));
        assert_eq!(seen.dport, 8080);
        assert_checksums(&seen);
        assert_eq!(seen.l4_checksum == 0, no_checksum, "an absent UDP checksum must stay absent, a present one present");

        let answer = Frame::udp(seen.dst, 8080, CLIENT, sport).with_payload(b"a").build();
        let (verdict, out) = h.tc_out(&answer);
        assert_eq!(verdict, TC_ACT_OK);
        let back = packet::read(&out);
        assert_eq!((back.src, back.sport), (VIP, 53));
        assert_checksums(&back);
    }
}

#[test]
fn traffic_to_no_frontend_is_untouched() {
    let Some(mut h) = Harness::new() else { return };
    for frame in [
        Frame::tcp(CLIENT, 40003, PODS[0], 8080, SYN).build(),
        Frame::tcp(CLIENT, 40003, VIP, 81, SYN).build(),
        Frame::udp(CLIENT, 40003, VIP, 80).build(),
    ] {
        for entry in [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth] {
            assert_eq!(h.run(entry, &frame), (entry.passed(), frame.clone()), "{entry:?}");
        }
    }
    assert_eq!(h.packets(PASS_NO_SERVICE), 9);
    assert_eq!(h.ct_entries(CT_FORWARD), 0);
}

#[test]
fn a_frontend_without_endpoints_rejects_and_counts() {
    let Some(mut h) = Harness::new() else { return };
    let syn = Frame::tcp(CLIENT, 40004, EMPTY_VIP, 80, SYN).build();
    // Sent back as a RST (the bytes are checked in tests/reject.rs).
    for entry in [Entry::Uplink, Entry::UplinkTc, Entry::PodVeth] {
        assert_eq!(h.run(entry, &syn).0, entry.rejected(), "{entry:?}");
    }
    assert_eq!(h.packets(REJECT_NO_BACKEND), 3);
    assert_eq!(h.packets(DROP_NO_BACKEND), 0);
}

#[test]
fn malformed_and_foreign_frames_get_a_defined_counted_verdict() {
    let Some(mut h) = Harness::new() else { return };
    let syn = Frame::tcp(CLIENT, 40005, VIP, 80, SYN);
    let mut bad_version = syn.build();
    bad_version[14] = 0x65;
    let mut short_ihl = syn.build();
    short_ihl[14] = 0x44;
    let mut arp = packet::ethernet(ETHERTYPE_ARP);
    arp.extend_from_slice(&[0u8; 28]);
    // The kernel refuses to build an skb for BPF_PROG_TEST_RUN from an IPv4
    // frame without a full IPv4 header, so those run through XDP only.
    for frame in [packet::ethernet(packet::ETHERTYPE_IPV4), syn.build()[..14 + 12].to_vec()] {
        assert_eq!(h.xdp(&frame), (XDP_PASS, frame.clone()));
    }
    assert_eq!(h.packets(PASS_TRUNCATED), 2, "frames cut inside the IPv4 header are counted as truncated");

    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("TCP header cut short", syn.build()[..14 + 20 + 10].to_vec(), PASS_TRUNCATED),
        ("UDP header cut short", Frame::udp(CLIENT, 1, VIP, 53).build()[..14 + 20 + 4].to_vec(), PASS_TRUNCATED),
        ("IP version 6 in an IPv4 frame", bad_version, PASS_BAD_IP_HEADER),
        ("IHL below 5", short_ihl, PASS_BAD_IP_HEADER),
        ("first fragment", Frame { frag: 0x2000, ..syn.clone() }.build(), PASS_FRAGMENT),
        ("later fragment", Frame { frag: 0x0010, ..syn.clone() }.build(), PASS_FRAGMENT),
        ("ARP", arp, PASS_NOT_IP),
        ("ICMP", Frame { proto: packet::ICMP, payload: vec![8, 0, 0, 0], ..syn.clone() }.build(), PASS_OTHER_PROTOCOL),
    ];
    for (name, frame, reason) in cases {
        let before = h.packets(reason);
        let (verdict, out) = h.xdp(&frame);
        assert_eq!(verdict, XDP_PASS, "{name}: XDP verdict");
        assert_eq!(out, frame, "{name}: XDP must not change the frame");
        assert_eq!(h.packets(reason), before + 1, "{name}: XDP counter {}", REASON_NAMES[reason as usize]);
        for way in [TC_UPLINK_PROGRAM, TC_IN_PROGRAM, TC_OUT_PROGRAM] {
            let (verdict, out) = prog_run::tc(&mut h.dataplane, way, &frame);
            assert_eq!(verdict, TC_ACT_OK, "{name}: {way} verdict");
            assert_eq!(out, frame, "{name}: {way} must not change the frame");
        }
        assert_eq!(h.packets(reason), before + 4, "{name}: counter {}", REASON_NAMES[reason as usize]);
    }
    assert_eq!(h.ct_entries(CT_FORWARD), 0);
}

#[test]
fn ipv4_options_and_empty_payloads_are_translated() {
    let Some(mut h) = Harness::new() else { return };
    let with_options = Frame { ip_options: vec![0x94, 0x04, 0, 0, 1, 1, 1, 0], ..Frame::tcp(CLIENT, 40006, VIP, 80, SYN) };
    for frame in [with_options, Frame::tcp(CLIENT, 40007, VIP, 80, ACK), Frame::udp(CLIENT, 40008, VIP, 53)] {
        for entry in UPLINKS {
            let (verdict, out) = h.run(entry, &frame.build());
            assert_eq!(verdict, entry.passed(), "{entry:?}");
            let seen = packet::read(&out);
            assert!(PODS.contains(&seen.dst), "{entry:?}: {frame:?} not translated");
            assert_eq!(seen.dport, 8080);
            assert_checksums(&seen);
        }
    }
}

#[test]
fn an_established_flow_keeps_its_backend_when_one_is_added_and_when_its_own_leaves_until_it_ends() {
    let Some(mut h) = Harness::new() else { return };
    let flows: Vec<u16> = (41000..41030).collect();
    let first: Vec<Ipv4Addr> = flows
        .iter()
        .map(|port| packet::read(&h.xdp(&Frame::tcp(CLIENT, *port, VIP, 80, SYN).build()).1).dst)
        .collect();
    let to = |h: &mut Harness, port: u16, flags| packet::read(&h.xdp(&Frame::tcp(CLIENT, port, VIP, 80, flags).build()).1);

    let mut more = PODS.to_vec();
    more.push(Ipv4Addr::new(10, 244, 4, 2));
    let mut reconciler = Reconciler::default();
    reconciler.reconcile(&mut h.maps, &desired(&more)).unwrap();
    for (port, backend) in flows.iter().zip(&first) {
        assert_eq!(to(&mut h, *port, ACK).dst, *backend, "flow from port {port} moved after an endpoint was added");
    }

    // The endpoint leaves the Service (scaled away, no longer ready): its
    // established flows go on to it, as through kube-proxy's conntrack.
    let removed = PODS[0];
    assert!(first.contains(&removed), "30 flows over 3 pods should use every pod");
    reconciler.reconcile(&mut h.maps, &desired(&PODS[1..])).unwrap();
    for (port, backend) in flows.iter().zip(&first) {
        let seen = to(&mut h, *port, ACK);
        assert_eq!(seen.dst, *backend, "flow from port {port} moved when an endpoint left");
        assert_checksums(&seen);
    }
    for port in 42000..42030 {
        assert_ne!(to(&mut h, port, SYN).dst, removed, "a new flow from port {port} went to the endpoint that left");
    }
    assert_eq!(reconciler.release_drained(&mut h.maps).unwrap(), 0, "the flows go on: the backend stays");

    // Once no tracked flow uses it, the agent's sweep removes it; a packet
    // of a flow whose entries went meanwhile is re-balanced.
    let held = h.maps.read().unwrap().backends.into_iter().find(|(_, b)| b.addr == Addr::from(IpAddr::V4(removed))).unwrap().0;
    h.forget_flows_to(held);
    assert_eq!(reconciler.release_drained(&mut h.maps).unwrap(), 1);
    assert!(h.maps.read().unwrap().backends.values().all(|b| b.addr != Addr::from(IpAddr::V4(removed))));
    for (port, backend) in flows.iter().zip(&first) {
        let seen = to(&mut h, *port, ACK);
        assert_ne!(seen.dst, removed, "flow from port {port} still reaches the removed endpoint");
        if *backend != removed {
            assert_eq!(seen.dst, *backend, "flow from port {port} moved although its endpoint stayed");
        }
    }
}

#[test]
fn a_new_direct_connection_reusing_a_translated_flows_ports_is_not_rewritten() {
    let Some(mut h) = Harness::new() else { return };
    let (_, out) = h.xdp(&Frame::tcp(CLIENT, 40010, VIP, 80, SYN).build());
    let backend = packet::read(&out).dst;
    // The client now connects straight to that pod from the same port.
    let direct = Frame::tcp(CLIENT, 40010, backend, 8080, SYN).build();
    assert_eq!(h.run(Entry::UplinkTc, &direct), (TC_ACT_OK, direct.clone()));
    let reply = Frame::tcp(backend, 8080, CLIENT, 40010, SYN | ACK).build();
    assert_eq!(h.tc_out(&reply), (TC_ACT_OK, reply.clone()), "the direct flow's reply was rewritten");
    assert_eq!(h.ct_entries(CT_FORWARD) + h.ct_entries(CT_REPLY), 0, "the old flow's entries remain");

    // And a new connection to the frontend from that port again gets both entries back.
    let (_, out) = h.xdp(&Frame::tcp(CLIENT, 40010, VIP, 80, SYN).build());
    let backend = packet::read(&out).dst;
    let reply = Frame::tcp(backend, 8080, CLIENT, 40010, SYN | ACK).build();
    assert_eq!(packet::read(&h.tc_out(&reply).1).src, VIP);
}

impl Harness {
    /// The backend a new flow from `sport` gets when nothing remembers it.
    fn hashed_backend(&self, vip: Ipv4Addr, sport: u16) -> IpAddr {
        let flow = NewFlow { client: CLIENT.into(), sport, frontend: vip.into(), port: 80, proto: packet::TCP };
        fresh_choice(&self.maps.read().unwrap(), flow)
    }

    fn new_flow(&mut self, client: Ipv4Addr, sport: u16, vip: Ipv4Addr) -> Ipv4Addr {
        packet::read(&self.xdp(&Frame::tcp(client, sport, vip, 80, SYN).build()).1).dst
    }
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_backend_until_the_timeout() {
    let Some(mut h) = Harness::new() else { return };
    let sticky = h.new_flow(CLIENT, 42000, STICKY_VIP);
    // A port whose hash alone would pick another backend shows the affinity at work.
    let other_port = (42001..43000).find(|p| h.hashed_backend(STICKY_VIP, *p) != sticky).unwrap();
    for sport in (42001..42020).chain([other_port]) {
        assert_eq!(h.new_flow(CLIENT, sport, STICKY_VIP), sticky, "new flow from port {sport} left its backend");
    }
    let spread: std::collections::BTreeSet<_> = (42100..42120).map(|p| h.new_flow(CLIENT, p, VIP)).collect();
    assert!(spread.len() > 1, "without affinity new flows must spread: {spread:?}");

    std::thread::sleep(STICKY_TIMEOUT + Duration::from_millis(200));
    let later = (43000..44000).find(|p| h.hashed_backend(STICKY_VIP, *p) != sticky).unwrap();
    assert_eq!(
        h.new_flow(CLIENT, later, STICKY_VIP),
        h.hashed_backend(STICKY_VIP, later),
        "after the timeout the hash decides again"
    );
}
