//! The flow filter in the kernel (BPF_PROG_TEST_RUN): the agent's writes
//! keep it holding every frontend and backend the maps hold (its first pass
//! writes it even when no entry changes), the programs skip the conntrack
//! lookup for a reply from an address and port it rules out, and a backend
//! kept for its TCP flows keeps its replies translated.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use aya::maps::{Array, HashMap, Map, MapData};
use ingress_common::addr::Addr;
use ingress_common::flow_filter::{
    FILTER_BACKENDS, FILTER_FRONTENDS, FILTER_REMOTE_BACKENDS, FLOW_FILTER_MAP, FLOW_FILTER_READY, FlowFilter,
};
use ingress_common::IPPROTO_TCP;
use ingress_common::maps::{CONNTRACK_MAP, CT_REPLY, CtEntry, CtKey};
use ingress_common::stats::{PASS_NOT_A_REPLY, REPLY_TRANSLATED};
use ingress_tests::packet::{self, ACK, Frame, SYN};
use ingress_tests::prog_run::{Programmed, TC_ACT_OK, XDP_PASS, add_tcp_and_udp_service, backends};
use ingress_userspace::dataplane::ebpf::PinnedMaps;
use ingress_userspace::model::DesiredState;
use ingress_userspace::reconcile::reconcile;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
/// An address no Service names: its bit must be clear (checked).
const STRANGER: Ipv4Addr = Ipv4Addr::new(10, 244, 9, 9);
const POD_PORT: u16 = 8080;

/// VIP:80/TCP and VIP:53/UDP over the local pod and, if `remote`, the
/// remote one (of another node).
fn desired(remote: bool) -> DesiredState {
    let mut all = backends(&[LOCAL_POD], POD_PORT, true);
    if remote {
        all.extend(backends(&[REMOTE_POD], POD_PORT, false));
    }
    let mut state = DesiredState::default();
    add_tcp_and_udp_service(&mut state, VIP, "echo", &all);
    state
}

fn filter_map(pins: &Path) -> Array<MapData, FlowFilter> {
    let data = MapData::from_pin(pins.join(FLOW_FILTER_MAP)).expect("the pinned lb_flow_filter");
    Map::Array(data).try_into().unwrap()
}

fn filter(pins: &Path) -> Box<FlowFilter> {
    Box::new(filter_map(pins).get(&0, 0).unwrap())
}

fn may_hold(filter: &FlowFilter, set: usize, ip: Ipv4Addr, port: u16) -> bool {
    filter.may_hold(set, &Addr::from(IpAddr::V4(ip)), port.to_be())
}

#[test]
fn the_filter_holds_what_the_agent_wrote_and_lets_go_of_what_it_removed() {
    let Some(mut programs) = Programmed::load("flow-filter-sets", &desired(true)) else { return };
    let written = filter(programs.pins.path());
    assert_eq!(written.ready, FLOW_FILTER_READY, "ready once written");
    for (what, set, ip, port, held) in [
        ("the frontend, TCP", FILTER_FRONTENDS, VIP, 80, true),
        ("the frontend, UDP", FILTER_FRONTENDS, VIP, 53, true),
        ("the local pod", FILTER_BACKENDS, LOCAL_POD, POD_PORT, true),
        ("the remote pod", FILTER_BACKENDS, REMOTE_POD, POD_PORT, true),
        ("the remote pod as remote", FILTER_REMOTE_BACKENDS, REMOTE_POD, POD_PORT, true),
        ("the local pod is not remote", FILTER_REMOTE_BACKENDS, LOCAL_POD, POD_PORT, false),
        ("a pod is no frontend", FILTER_FRONTENDS, LOCAL_POD, POD_PORT, false),
        ("a stranger is no backend", FILTER_BACKENDS, STRANGER, POD_PORT, false),
    ] {
        assert_eq!(may_hold(&written, set, ip, port), held, "{what}");
    }

    // No flow uses the remote pod: it goes, and its bits with it.
    reconcile(&mut programs.maps, &desired(false)).unwrap();
    let after = filter(programs.pins.path());
    assert!(!may_hold(&after, FILTER_BACKENDS, REMOTE_POD, POD_PORT));
    assert!(!may_hold(&after, FILTER_REMOTE_BACKENDS, REMOTE_POD, POD_PORT));
    assert!(may_hold(&after, FILTER_BACKENDS, LOCAL_POD, POD_PORT), "the other pod stays");
}

/// As after an upgrade that adds the filter's map to an agent's pins: the
/// maps already hold what the agent wants, so its first pass writes no
/// entry, and still writes the filter.
#[test]
fn a_filter_not_ready_is_written_at_the_agents_first_pass_when_nothing_else_changes() {
    let Some(programs) = Programmed::load("flow-filter-first", &desired(true)) else { return };
    let pins = programs.pins.path();
    let mut not_ready = filter(pins);
    not_ready.ready = 0;
    filter_map(pins).set(0, *not_ready, 0).unwrap();

    let mut restarted = PinnedMaps::open(pins).unwrap();
    let report = reconcile(&mut restarted, &desired(true)).unwrap();
    assert_eq!(report.ops.values().sum::<usize>(), 0, "nothing to write: {:?}", report.ops);
    let written = filter(pins);
    assert_eq!(written.ready, FLOW_FILTER_READY);
    assert!(may_hold(&written, FILTER_BACKENDS, REMOTE_POD, POD_PORT));
    assert!(may_hold(&written, FILTER_FRONTENDS, VIP, 80));
}

/// A conntrack reply entry for the stranger, copied from a real flow's: the
/// maps would translate its reply, but the filter rules the stranger out,
/// so the program passes the reply without looking the entry up; with the
/// filter not ready, the same reply is translated.
#[test]
fn a_reply_from_what_the_filter_rules_out_is_passed_without_its_conntrack_lookup() {
    let Some(mut programs) = Programmed::load("flow-filter-skip", &desired(false)) else { return };
    let (verdict, _) = programs.xdp(&Frame::tcp(CLIENT, 40001, VIP, 80, SYN).build());
    assert_eq!(verdict, XDP_PASS);
    let mut conntrack: HashMap<MapData, CtKey, CtEntry> =
        Map::LruHashMap(MapData::from_pin(programs.pins.path().join(CONNTRACK_MAP)).unwrap()).try_into().unwrap();
    let reply_key = |ip: Ipv4Addr| CtKey {
        saddr: Addr::from(IpAddr::V4(ip)),
        daddr: Addr::from(IpAddr::V4(CLIENT)),
        sport: POD_PORT.to_be(),
        dport: 40001u16.to_be(),
        proto: IPPROTO_TCP,
        direction: CT_REPLY,
        _pad: [0; 2],
    };
    let entry = conntrack.get(&reply_key(LOCAL_POD), 0).expect("the real flow's reply entry");
    conntrack.insert(reply_key(STRANGER), entry, 0).unwrap();
    assert!(!may_hold(&filter(programs.pins.path()), FILTER_BACKENDS, STRANGER, POD_PORT), "the stranger's bit is clear");

    let reply = Frame::tcp(STRANGER, POD_PORT, CLIENT, 40001, ACK).build();
    assert_eq!(programs.tc_out(&reply), (TC_ACT_OK, reply.clone()), "passed untouched");
    assert_eq!(programs.packets(PASS_NOT_A_REPLY), 1);

    let mut not_ready = filter(programs.pins.path());
    not_ready.ready = 0;
    filter_map(programs.pins.path()).set(0, *not_ready, 0).unwrap();
    let (verdict, out) = programs.tc_out(&reply);
    assert_eq!(verdict, TC_ACT_OK);
    assert_eq!(packet::read(&out).src, VIP, "without the filter the entry translates it");
    assert_eq!(programs.packets(REPLY_TRANSLATED), 1);
}

/// The agent keeps a removed backend while a TCP flow uses it, and with it
/// its bit: the flow's replies still leave from the frontend.
#[test]
fn a_backend_kept_for_its_tcp_flow_keeps_its_replies_translated() {
    let Some(mut programs) = Programmed::load("flow-filter-held", &desired(false)) else { return };
    let (verdict, out) = programs.xdp(&Frame::tcp(CLIENT, 40002, VIP, 80, SYN).build());
    assert_eq!(verdict, XDP_PASS);
    assert_eq!(packet::read(&out).dst, LOCAL_POD);

    let mut without = DesiredState::default();
    add_tcp_and_udp_service(&mut without, VIP, "echo", &backends(&[REMOTE_POD], POD_PORT, false));
    reconcile(&mut programs.maps, &without).unwrap();
    assert!(may_hold(&filter(programs.pins.path()), FILTER_BACKENDS, LOCAL_POD, POD_PORT), "kept with its backend");

    let (verdict, out) = programs.tc_out(&Frame::tcp(LOCAL_POD, POD_PORT, CLIENT, 40002, ACK).build());
    assert_eq!(verdict, TC_ACT_OK);
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.sport), (VIP, 80));
}
