//! The conntrack lifecycle of IPv6 flows in the kernel (BPF_PROG_TEST_RUN):
//! FIN and RST move both directions of a flow to the short closing timeout,
//! expired entries read as absent and are swept out by the agent, and the UDP
//! entries of a removed IPv6 backend are flushed by the agent's reconcile
//! pass. The IPv4 counterpart is `conntrack_lifecycle.rs`.
//!
//! Timeouts are set to fractions of a second through the map, so waiting
//! past one takes a short sleep; no assertion is about how long anything took.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use ingress_common::addr::Addr;
use ingress_common::maps::{CT_FORWARD, CT_REPLY, CtEntry, CtKey, CtTimeouts, TCP_FIN, TCP_RST};
use ingress_common::stats::{PASS_NOT_A_REPLY, REPLY_TRANSLATED};
use ingress_tests::backend_choice::{NewFlow, fresh_choice};
use ingress_tests::packet::{self, ACK, Frame, SYN, TCP, UDP};
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, XDP_PASS, add_tcp_and_udp_service, local_backends};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::conntrack_gc::{self, ConntrackConfig, Sweeper};
use ingress_userspace::model::DesiredState;
use ingress_userspace::reconcile::reconcile;

const fn v6(segments: [u16; 8]) -> Ipv6Addr {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

const CLIENT: Ipv6Addr = v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 2]);
const VIP: Ipv6Addr = v6([0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa]);
const PODS: [Ipv6Addr; 3] = [
    v6([0xfd00, 0x10, 0x244, 1, 0, 0, 0, 2]),
    v6([0xfd00, 0x10, 0x244, 2, 0, 0, 0, 2]),
    v6([0xfd00, 0x10, 0x244, 3, 0, 0, 0, 2]),
];
const POD_PORT: u16 = 8080;
/// Short enough to wait out, long enough that a test run on a busy machine
/// does not cross it between two packets that must find a live entry.
const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(60);

/// VIP:80/TCP and VIP:53/UDP over `pods`.
fn desired(pods: &[Ipv6Addr]) -> DesiredState {
    let mut state = DesiredState::default();
    add_tcp_and_udp_service(&mut state, VIP, "echo6", &local_backends(pods, POD_PORT));
    state
}

fn timeouts(tcp_established: Duration, tcp_closing: Duration, udp: Duration) -> CtTimeouts {
    let ms = |d: Duration| d.as_millis() as u32;
    CtTimeouts { tcp_established_ms: ms(tcp_established), tcp_closing_ms: ms(tcp_closing), udp_ms: ms(udp), _pad: 0 }
}

struct Harness {
    programs: Programmed,
    timeouts: CtTimeouts,
}

impl Harness {
    fn new(name: &str, pods: &[Ipv6Addr], timeouts: CtTimeouts) -> Option<Harness> {
        let programs = Programmed::load(name, &desired(pods))?;
        conntrack_gc::write_timeouts(programs.pins.path(), &timeouts).expect("writing the timeouts");
        Some(Harness { programs, timeouts })
    }

    /// Sends a client packet to the frontend through XDP; returns the backend it went to.
    fn send(&mut self, frame: Frame) -> Ipv6Addr {
        let (verdict, out) = self.programs.xdp(&frame.build());
        assert_eq!(verdict, XDP_PASS, "{frame:?}");
        let seen = packet::read6(&out);
        assert!(seen.checksums_ok(), "{seen:?}");
        assert_eq!((seen.src, seen.sport, seen.dport), (CLIENT, frame.sport, POD_PORT));
        seen.dst
    }

    fn tcp(&mut self, sport: u16, flags: u8) -> Ipv6Addr {
        self.send(Frame::tcp(CLIENT, sport, VIP, 80, flags))
    }

    fn udp(&mut self, sport: u16) -> Ipv6Addr {
        self.send(Frame::udp(CLIENT, sport, VIP, 53).with_payload(b"q"))
    }

    /// A backend's reply through `lb_tc_out`: was it translated to the
    /// frontend? Either way it passes, with valid checksums.
    fn reply_translated(&mut self, frame: Frame) -> bool {
        let (verdict, out) = self.programs.tc_out(&frame.build());
        assert_eq!(verdict, TC_ACT_OK);
        let seen = packet::read6(&out);
        assert!(seen.checksums_ok(), "{seen:?}");
        match seen.src {
            src if src == VIP => {
                let frontend_port = if frame.proto == TCP { 80 } else { 53 };
                assert_eq!((seen.sport, seen.dst), (frontend_port, CLIENT));
                true
            }
            src => {
                assert_eq!(out, frame.build(), "a reply not translated is left untouched ({src})");
                false
            }
        }
    }

    fn packets(&self, reason: u32) -> u64 {
        self.programs.packets(reason)
    }

    fn entries(&self) -> Vec<(CtKey, CtEntry)> {
        self.programs.maps.conntrack().unwrap()
    }

    fn sweeper(&self) -> Sweeper {
        let config = ConntrackConfig { timeouts: self.timeouts, ..ConntrackConfig::default() };
        Sweeper::open(self.programs.pins.path(), config).unwrap()
    }

    /// The backend a new flow from `sport` gets when nothing remembers it.
    fn hashed_backend(&self, proto: u8, frontend_port: u16, sport: u16) -> IpAddr {
        let flow = NewFlow { client: CLIENT.into(), sport, frontend: VIP.into(), port: frontend_port, proto };
        fresh_choice(&self.programs.maps.read().unwrap(), flow)
    }
}

/// The client ports of `entries`, forward direction only.
fn forward_ports(entries: &[(CtKey, CtEntry)]) -> BTreeSet<u16> {
    entries.iter().filter(|(k, _)| k.direction == CT_FORWARD).map(|(k, _)| u16::from_be(k.sport)).collect()
}

/// Every entry is of an IPv6 flow: forward ones keyed client -> frontend,
/// reply ones pod -> client.
fn assert_ipv6_keys(entries: &[(CtKey, CtEntry)]) {
    let addr = |ip: Ipv6Addr| Addr::from(IpAddr::V6(ip));
    let pods: Vec<Addr> = PODS.iter().map(|pod| addr(*pod)).collect();
    for (key, _) in entries {
        assert!(!key.saddr.is_v4() && !key.daddr.is_v4(), "an IPv4 key for an IPv6 flow: {key:?}");
        match key.direction {
            CT_FORWARD => assert_eq!((key.saddr, key.daddr), (addr(CLIENT), addr(VIP)), "{key:?}"),
            _ => assert!(pods.contains(&key.saddr) && key.daddr == addr(CLIENT), "{key:?}"),
        }
    }
}

#[test]
fn fin_and_rst_shorten_an_ipv6_flows_life_in_both_directions() {
    let Some(mut h) = Harness::new("ct6-fin", &PODS, timeouts(LONG, SHORT, LONG)) else { return };
    let (open, client_fin, backend_rst) = (45000, 45001, 45002);
    let mut backends = Vec::new();
    for sport in [open, client_fin, backend_rst] {
        let backend = h.tcp(sport, SYN);
        assert!(h.reply_translated(Frame::tcp(backend, POD_PORT, CLIENT, sport, SYN | ACK)));
        assert_eq!(h.tcp(sport, ACK), backend);
        backends.push(backend);
    }
    assert_eq!(h.entries().len(), 6);
    assert_ipv6_keys(&h.entries());
    // The client closes one flow; the backend resets another (seen on its way out).
    assert_eq!(h.tcp(client_fin, ACK | TCP_FIN), backends[1]);
    assert!(h.reply_translated(Frame::tcp(backends[2], POD_PORT, CLIENT, backend_rst, ACK | TCP_RST)));
    // Both directions of each closed flow carry the FIN or RST, the open one neither.
    let closing: BTreeSet<(u16, u8, u8)> = h
        .entries()
        .iter()
        .map(|(k, e)| {
            let client_port = if k.direction == CT_FORWARD { k.sport } else { k.dport };
            (u16::from_be(client_port), k.direction, e.tcp_flags & (TCP_FIN | TCP_RST))
        })
        .collect();
    let expected = BTreeSet::from([
        (open, CT_FORWARD, 0),
        (open, CT_REPLY, 0),
        (client_fin, CT_FORWARD, TCP_FIN),
        (client_fin, CT_REPLY, TCP_FIN),
        (backend_rst, CT_FORWARD, TCP_RST),
        (backend_rst, CT_REPLY, TCP_RST),
    ]);
    assert_eq!(closing, expected, "(client port, direction, FIN/RST seen)");

    std::thread::sleep(SHORT * 2);
    // Still in the map, but expired: the programs treat them as absent.
    assert_eq!(h.entries().len(), 6);
    let translated_before = h.packets(REPLY_TRANSLATED);
    assert!(h.reply_translated(Frame::tcp(backends[0], POD_PORT, CLIENT, open, ACK)), "the open flow lives on");
    assert!(!h.reply_translated(Frame::tcp(backends[1], POD_PORT, CLIENT, client_fin, ACK)), "closed by the client");
    assert!(!h.reply_translated(Frame::tcp(backends[2], POD_PORT, CLIENT, backend_rst, ACK)), "reset by the backend");
    assert_eq!(h.packets(REPLY_TRANSLATED), translated_before + 1);
    assert_eq!(h.packets(PASS_NOT_A_REPLY), 2);

    // The agent's sweep deletes exactly the four expired entries.
    let sweep = h.sweeper().sweep().unwrap();
    assert_eq!((sweep.examined, sweep.removed), (6, 4));
    assert_eq!(forward_ports(&h.entries()), BTreeSet::from([open]));
    assert_eq!(h.entries().len(), 2);
    assert_ipv6_keys(&h.entries());
}

#[test]
fn removing_an_ipv6_backend_flushes_its_udp_flows_at_once() {
    let Some(mut h) = Harness::new("ct6-flush", &PODS, timeouts(LONG, LONG, LONG)) else { return };
    let ports: Vec<u16> = (48000..48030).collect();
    let first: Vec<Ipv6Addr> = ports.iter().map(|p| h.udp(*p)).collect();
    let removed = PODS[0];
    let pinned: BTreeSet<u16> = ports.iter().zip(&first).filter(|(_, b)| **b == removed).map(|(p, _)| *p).collect();
    assert!(!pinned.is_empty(), "30 flows over 3 pods use every pod");
    // A TCP flow to the same backend is not the flush's business.
    let tcp_port = (48100..48200).find(|p| h.hashed_backend(TCP, 80, *p) == IpAddr::from(removed)).unwrap();
    assert_eq!(h.tcp(tcp_port, SYN), removed);
    let contents = h.programs.maps.read().unwrap();
    let removed_id = *contents.backends.iter().find(|(_, b)| b.addr == Addr::from(IpAddr::V6(removed))).unwrap().0;
    let of_removed = |entries: &[(CtKey, CtEntry)], proto| {
        entries.iter().filter(|(k, e)| k.proto == proto && e.backend_id == removed_id).count()
    };
    assert_eq!(of_removed(&h.entries(), UDP), 2 * pinned.len());
    assert_ipv6_keys(&h.entries());

    // The agent's path: a reconcile pass without that endpoint.
    let report = reconcile(&mut h.programs.maps, &desired(&PODS[1..])).unwrap();
    assert_eq!(report.udp_flows_flushed, 2 * pinned.len(), "both directions of each flow");
    let entries = h.entries();
    assert_eq!(of_removed(&entries, UDP), 0, "UDP entries of the removed backend remain");
    assert_eq!(of_removed(&entries, TCP), 2, "the TCP flow's entries are left to the programs");
    assert_eq!(forward_ports(&entries).intersection(&pinned).count(), 0);
    assert_eq!(entries.len(), 2 * (ports.len() - pinned.len()) + 2);

    for sport in &pinned {
        let now = h.udp(*sport);
        assert_ne!(now, removed, "flow {sport} still reaches the removed backend");
        assert!(PODS[1..].contains(&now));
    }
    for (sport, backend) in ports.iter().zip(&first).filter(|(_, b)| **b != removed) {
        assert_eq!(h.udp(*sport), *backend, "flow {sport} moved although its backend stayed");
    }
}
