//! Conntrack lifecycle in the kernel (BPF_PROG_TEST_RUN): idle timeouts read
//! from the timeouts map, FIN/RST moving a flow to the short closing timeout,
//! expired entries read as absent and swept out by the agent, and the UDP
//! entries of a removed backend flushed by the agent's reconcile pass; each
//! over IPv4 and over IPv6.
//!
//! Timeouts are set to fractions of a second through the map, so waiting
//! past one takes a short sleep; no assertion is about how long anything took.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use ingress_common::addr::Addr;
use ingress_common::maps::{CT_FORWARD, CtEntry, CtKey, CtTimeouts, TCP_FIN, TCP_RST};
use ingress_common::stats::{PASS_NOT_A_REPLY, REPLY_TRANSLATED};
use ingress_tests::backend_choice::{NewFlow, fresh_choice};
use ingress_tests::packet::{self, ACK, Frame, SYN, TCP, UDP};
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, XDP_PASS, add_tcp_and_udp_service, local_backends};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::conntrack_gc::{self, ConntrackConfig, Sweeper};
use ingress_userspace::model::DesiredState;
use ingress_userspace::reconcile::reconcile;

/// One family's client, frontend and pods.
struct Family {
    name: &'static str,
    client: IpAddr,
    vip: IpAddr,
    pods: [IpAddr; 3],
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn v6(a: u16, b: u16, c: u16, d: u16, h: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, h))
}

const IPV4: Family = Family {
    name: "ct-life",
    client: v4(198, 51, 100, 2),
    vip: v4(10, 96, 0, 10),
    pods: [v4(10, 244, 1, 2), v4(10, 244, 2, 2), v4(10, 244, 3, 2)],
};

const IPV6: Family = Family {
    name: "ct-life6",
    client: v6(0x2001, 0xdb8, 0, 0, 2),
    vip: v6(0xfd00, 0x10, 0x96, 0, 0xa),
    pods: [v6(0xfd00, 0x10, 0x244, 1, 2), v6(0xfd00, 0x10, 0x244, 2, 2), v6(0xfd00, 0x10, 0x244, 3, 2)],
};

const POD_PORT: u16 = 8080;
/// Short enough to wait out, long enough that a test run on a busy machine
/// does not cross it between two packets that must find a live entry.
const SHORT: Duration = Duration::from_millis(400);
const LONG: Duration = Duration::from_secs(60);

/// VIP:80/TCP and VIP:53/UDP over `pods`.
fn desired(vip: IpAddr, pods: &[IpAddr]) -> DesiredState {
    let mut state = DesiredState::default();
    add_tcp_and_udp_service(&mut state, vip, "echo", &local_backends(pods, POD_PORT));
    state
}

fn timeouts(tcp_established: Duration, tcp_closing: Duration, udp: Duration) -> CtTimeouts {
    let ms = |d: Duration| d.as_millis() as u32;
    CtTimeouts { tcp_established_ms: ms(tcp_established), tcp_closing_ms: ms(tcp_closing), udp_ms: ms(udp), _pad: 0 }
}

struct Harness {
    programs: Programmed,
    timeouts: CtTimeouts,
    family: &'static Family,
}

impl Harness {
    fn new(family: &'static Family, pods: &[IpAddr], timeouts: CtTimeouts) -> Option<Harness> {
        let programs = Programmed::load(family.name, &desired(family.vip, pods))?;
        conntrack_gc::write_timeouts(programs.pins.path(), &timeouts).expect("writing the timeouts");
        Some(Harness { programs, timeouts, family })
    }

    /// Sends a client packet to the frontend through XDP; returns the backend it went to.
    fn send(&mut self, frame: Frame) -> IpAddr {
        let (verdict, out) = self.programs.xdp(&frame.build());
        assert_eq!(verdict, XDP_PASS);
        let seen = packet::read_ip(&out);
        assert!(seen.checksums_ok(), "{seen:?}");
        assert_eq!((seen.src, seen.sport, seen.dport), (self.family.client, frame.sport, POD_PORT));
        seen.dst
    }

    fn tcp(&mut self, sport: u16, flags: u8) -> IpAddr {
        self.send(Frame::tcp(self.family.client, sport, self.family.vip, 80, flags))
    }

    fn udp(&mut self, sport: u16) -> IpAddr {
        self.send(Frame::udp(self.family.client, sport, self.family.vip, 53).with_payload(b"q"))
    }

    /// A backend's reply to the client from `backend`, as the backend sends it.
    fn reply(&self, backend: IpAddr, sport: u16, flags: u8) -> Frame {
        Frame::tcp(backend, POD_PORT, self.family.client, sport, flags)
    }

    /// A backend's reply through `lb_tc_out`: was it translated to the frontend?
    fn reply_translated(&mut self, frame: Frame) -> bool {
        let (verdict, out) = self.programs.tc_out(&frame.build());
        assert_eq!(verdict, TC_ACT_OK);
        packet::read_ip(&out).src == self.family.vip
    }

    fn packets(&self, reason: u32) -> u64 {
        self.programs.packets(reason)
    }

    /// The conntrack entries, every one of this family.
    fn entries(&self) -> Vec<(CtKey, CtEntry)> {
        let entries = self.programs.maps.conntrack().unwrap();
        let v4 = self.family.client.is_ipv4();
        assert!(entries.iter().all(|(k, _)| k.saddr.is_v4() == v4 && k.daddr.is_v4() == v4), "{entries:?}");
        entries
    }

    fn sweeper(&self) -> Sweeper {
        let config = ConntrackConfig { timeouts: self.timeouts, ..ConntrackConfig::default() };
        Sweeper::open(self.programs.pins.path(), config).unwrap()
    }

    /// The backend a new flow from `sport` gets when nothing remembers it.
    fn hashed_backend(&self, proto: u8, frontend_port: u16, sport: u16) -> IpAddr {
        let flow = NewFlow { client: self.family.client, sport, frontend: self.family.vip, port: frontend_port, proto };
        fresh_choice(&self.programs.maps.read().unwrap(), flow)
    }
}

/// The client ports of `entries`, forward direction only.
fn forward_ports(entries: &[(CtKey, CtEntry)]) -> BTreeSet<u16> {
    entries.iter().filter(|(k, _)| k.direction == CT_FORWARD).map(|(k, _)| u16::from_be(k.sport)).collect()
}

fn fin_and_rst_shorten_a_flows_life_in_both_directions(family: &'static Family) {
    let Some(mut h) = Harness::new(family, &family.pods, timeouts(LONG, SHORT, LONG)) else { return };
    let (open, client_fin, backend_rst) = (45000, 45001, 45002);
    let mut backends = Vec::new();
    for sport in [open, client_fin, backend_rst] {
        let backend = h.tcp(sport, SYN);
        assert!(h.reply_translated(h.reply(backend, sport, SYN | ACK)));
        assert_eq!(h.tcp(sport, ACK), backend);
        backends.push(backend);
    }
    // The client closes one flow; the backend resets another (seen on its way out).
    assert_eq!(h.tcp(client_fin, ACK | TCP_FIN), backends[1]);
    assert!(h.reply_translated(h.reply(backends[2], backend_rst, ACK | TCP_RST)));
    let closing: Vec<u8> = h.entries().iter().map(|(_, e)| e.tcp_flags & (TCP_FIN | TCP_RST)).collect();
    assert_eq!(closing.iter().filter(|f| **f != 0).count(), 4, "both directions of both flows are marked closing");

    std::thread::sleep(SHORT * 2);
    // Still in the map, but expired: the programs treat them as absent.
    assert_eq!(h.entries().len(), 6);
    let translated_before = h.packets(REPLY_TRANSLATED);
    assert!(h.reply_translated(h.reply(backends[0], open, ACK)), "the open flow lives on");
    assert!(!h.reply_translated(h.reply(backends[1], client_fin, ACK)), "closed by the client");
    assert!(!h.reply_translated(h.reply(backends[2], backend_rst, ACK)), "reset by the backend");
    assert_eq!(h.packets(REPLY_TRANSLATED), translated_before + 1);
    assert_eq!(h.packets(PASS_NOT_A_REPLY), 2);

    // The agent's sweep deletes exactly the four expired entries.
    let sweep = h.sweeper().sweep().unwrap();
    assert_eq!((sweep.examined, sweep.removed), (6, 4));
    assert_eq!(forward_ports(&h.entries()), BTreeSet::from([open]));
    assert_eq!(h.entries().len(), 2);
}

fn a_flow_keeps_its_backend_while_it_is_used_and_gets_a_fresh_choice_after_idling_out(family: &'static Family) {
    let Some(mut h) = Harness::new(family, &family.pods[..1], timeouts(SHORT, SHORT, SHORT)) else { return };
    // With one backend every flow lands on it; then two more are added.
    let ports: Vec<u16> = (46000..46040).collect();
    for &sport in &ports {
        assert_eq!(h.tcp(sport, SYN), family.pods[0]);
        assert_eq!(h.tcp(sport, ACK), family.pods[0]);
        assert_eq!(h.udp(sport), family.pods[0]);
    }
    reconcile(&mut h.programs.maps, &desired(family.vip, &family.pods)).unwrap();
    let tcp_moves: Vec<u16> = ports.iter().copied().filter(|p| h.hashed_backend(TCP, 80, *p) != family.pods[0]).collect();
    let udp_moves: Vec<u16> = ports.iter().copied().filter(|p| h.hashed_backend(UDP, 53, *p) != family.pods[0]).collect();
    assert!(!tcp_moves.is_empty() && !udp_moves.is_empty(), "40 flows over 3 backends: some hash elsewhere");

    // Used more often than the timeout, for longer than it: they stay.
    for round in 0..4 {
        for &sport in &tcp_moves {
            assert_eq!(h.tcp(sport, ACK), family.pods[0], "TCP flow {sport} moved in round {round}");
        }
        for &sport in &udp_moves {
            assert_eq!(h.udp(sport), family.pods[0], "UDP flow {sport} moved in round {round}");
        }
        std::thread::sleep(SHORT / 4);
    }

    // Idle past the timeout: the same ports are new flows, balanced afresh.
    std::thread::sleep(SHORT * 2);
    for &sport in &tcp_moves {
        assert_eq!(h.tcp(sport, SYN), h.hashed_backend(TCP, 80, sport), "TCP flow {sport}");
    }
    for &sport in &udp_moves {
        assert_eq!(h.udp(sport), h.hashed_backend(UDP, 53, sport), "UDP flow {sport}");
    }
}

fn the_sweep_looks_at_a_bounded_number_of_entries_and_carries_on_where_it_stopped(family: &'static Family) {
    let Some(mut h) = Harness::new(family, &family.pods, timeouts(LONG, LONG, SHORT)) else { return };
    for sport in 47000..47050 {
        h.udp(sport);
    }
    assert_eq!(h.entries().len(), 100);
    std::thread::sleep(SHORT * 2);
    let config = ConntrackConfig { timeouts: h.timeouts, sweep_budget: 30, ..ConntrackConfig::default() };
    let mut sweeper = Sweeper::open(h.programs.pins.path(), config).unwrap();
    let mut removed = 0;
    for sweep in 1..=4 {
        let done = sweeper.sweep().unwrap();
        assert!(done.examined <= 30, "sweep {sweep} looked at {} entries", done.examined);
        removed += done.removed;
    }
    assert_eq!(removed, 100, "four sweeps of 30 cover the 100 expired entries");
    assert!(h.entries().is_empty());
}

fn removing_a_backend_flushes_its_udp_flows_at_once(family: &'static Family) {
    let Some(mut h) = Harness::new(family, &family.pods, timeouts(LONG, LONG, LONG)) else { return };
    let ports: Vec<u16> = (48000..48030).collect();
    let first: Vec<IpAddr> = ports.iter().map(|p| h.udp(*p)).collect();
    let removed = family.pods[0];
    let pinned: BTreeSet<u16> = ports.iter().zip(&first).filter(|(_, b)| **b == removed).map(|(p, _)| *p).collect();
    assert!(!pinned.is_empty(), "30 flows over 3 pods use every pod");
    // A TCP flow to the same backend is not the flush's business.
    let tcp_port = (48100..48200).find(|p| h.hashed_backend(TCP, 80, *p) == removed).unwrap();
    assert_eq!(h.tcp(tcp_port, SYN), removed);
    let contents = h.programs.maps.read().unwrap();
    let removed_id = *contents.backends.iter().find(|(_, b)| b.addr == Addr::from(removed)).unwrap().0;
    let of_removed = |entries: &[(CtKey, CtEntry)], proto| {
        entries.iter().filter(|(k, e)| k.proto == proto && e.backend_id == removed_id).count()
    };
    assert_eq!(of_removed(&h.entries(), UDP), 2 * pinned.len());

    // The agent's path: a reconcile pass without that endpoint.
    let report = reconcile(&mut h.programs.maps, &desired(family.vip, &family.pods[1..])).unwrap();
    assert_eq!(report.udp_flows_flushed, 2 * pinned.len(), "both directions of each flow");
    let entries = h.entries();
    assert_eq!(of_removed(&entries, UDP), 0, "UDP entries of the removed backend remain");
    assert_eq!(of_removed(&entries, TCP), 2, "the TCP flow's entries are left to the programs");
    assert_eq!(forward_ports(&entries).intersection(&pinned).count(), 0);

    for sport in &pinned {
        let now = h.udp(*sport);
        assert_ne!(now, removed, "flow {sport} still reaches the removed backend");
        assert!(family.pods[1..].contains(&now));
    }
    for (sport, backend) in ports.iter().zip(&first).filter(|(_, b)| **b != removed) {
        assert_eq!(h.udp(*sport), *backend, "flow {sport} moved although its backend stayed");
    }
}

#[test]
fn fin_and_rst_shorten_a_flows_life_in_both_directions_ipv4() {
    fin_and_rst_shorten_a_flows_life_in_both_directions(&IPV4);
}

#[test]
fn fin_and_rst_shorten_an_ipv6_flows_life_in_both_directions() {
    fin_and_rst_shorten_a_flows_life_in_both_directions(&IPV6);
}

#[test]
fn a_flow_keeps_its_backend_while_it_is_used_and_gets_a_fresh_choice_after_idling_out_ipv4() {
    a_flow_keeps_its_backend_while_it_is_used_and_gets_a_fresh_choice_after_idling_out(&IPV4);
}

#[test]
fn an_ipv6_flow_keeps_its_backend_while_it_is_used_and_gets_a_fresh_choice_after_idling_out() {
    a_flow_keeps_its_backend_while_it_is_used_and_gets_a_fresh_choice_after_idling_out(&IPV6);
}

#[test]
fn the_sweep_looks_at_a_bounded_number_of_entries_and_carries_on_where_it_stopped_ipv4() {
    the_sweep_looks_at_a_bounded_number_of_entries_and_carries_on_where_it_stopped(&IPV4);
}

#[test]
fn the_sweep_of_ipv6_entries_is_bounded_and_carries_on_where_it_stopped() {
    the_sweep_looks_at_a_bounded_number_of_entries_and_carries_on_where_it_stopped(&IPV6);
}

#[test]
fn removing_a_backend_flushes_its_udp_flows_at_once_ipv4() {
    removing_a_backend_flushes_its_udp_flows_at_once(&IPV4);
}

#[test]
fn removing_an_ipv6_backend_flushes_its_udp_flows_at_once() {
    removing_a_backend_flushes_its_udp_flows_at_once(&IPV6);
}
