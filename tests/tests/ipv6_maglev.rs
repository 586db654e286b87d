//! Maglev backend choice over IPv6 in the real programs
//! (BPF_PROG_TEST_RUN): 10,000 new IPv6 flows over 10 IPv6 backends, then
//! the same flows after one backend is removed through the agent's planning
//! path. The IPv4 counterpart is `maglev.rs`; the bounds are the same.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use aya::maps::{HashMap, Map, MapData};
use ingress_common::maps::{CONNTRACK_MAP, CtEntry, CtKey};
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::prog_run::{Programmed, XDP_PASS};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::model::*;
use ingress_userspace::reconcile::reconcile;

const VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa);
const FLOWS: u32 = 10_000;
const BACKENDS: u16 = 10;
/// The bounds: each backend within 15% of its share; at most 15% of
/// the flows not on a removed backend move.
const MAX_SPREAD: f64 = 0.15;
const MAX_DISRUPTION: f64 = 0.15;

fn desired(pods: &[Ipv6Addr]) -> DesiredState {
    let backends = pods
        .iter()
        .map(|ip| Backend { addr: BackendAddr { addr: (*ip).into(), port: 8080 }, state: BackendState::Active, local: true })
        .collect();
    let service = ServicePortRef { namespace: "default".into(), name: "spread6".into(), port_name: String::new() };
    let mut state = DesiredState::default();
    state.frontends.insert(
        Frontend { addr: VIP.into(), port: 80, protocol: Protocol::Tcp },
        FrontendState { service, backends, ..FrontendState::default() },
    );
    state
}

/// Flow `i`: its own client address (2001:db8:c::/64, the flow number in
/// the low 32 bits) and source port.
fn flow(i: u32) -> Frame {
    let client = Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1)) + u128::from(i));
    Frame::tcp(client, 20_000 + (i % 40_000) as u16, VIP, 80, SYN)
}

/// The backend each flow is sent to, as new flows.
fn destinations(p: &mut Programmed) -> Vec<Ipv6Addr> {
    forget_flows(p);
    let destinations = (0..FLOWS)
        .map(|i| {
            let syn = flow(i);
            let (verdict, out) = p.xdp(&syn.build());
            assert_eq!(verdict, XDP_PASS, "flow {i}");
            let seen = packet::read_ip(&out);
            if i % 1000 == 0 {
                assert!(seen.checksums_ok(), "flow {i}: {seen:?}");
                assert_eq!((seen.src, seen.sport, seen.dport), (syn.src, syn.sport, 8080));
            }
            match seen.dst {
                std::net::IpAddr::V6(dst) => dst,
                other => panic!("flow {i} went to {other}"),
            }
        })
        .collect();
    // Established flows would keep their backend: the next round must be
    // new flows again for it to measure the table and not conntrack.
    forget_flows(p);
    destinations
}

fn forget_flows(p: &mut Programmed) {
    let data = MapData::from_pin(p.pins.path().join(CONNTRACK_MAP)).expect("the pinned conntrack map");
    let mut conntrack: HashMap<MapData, CtKey, CtEntry> = Map::from_map_data(data).unwrap().try_into().unwrap();
    let keys: Vec<CtKey> = conntrack.keys().collect::<Result<_, _>>().unwrap();
    for key in keys {
        conntrack.remove(&key).unwrap();
    }
    assert!(p.maps.conntrack().unwrap().is_empty());
}

#[test]
fn ten_thousand_ipv6_flows_spread_evenly_and_few_move_when_a_backend_goes() {
    let pods: Vec<Ipv6Addr> = (1..=BACKENDS).map(|i| Ipv6Addr::new(0xfd00, 0x10, 0x244, i, 0, 0, 0, 2)).collect();
    let Some(mut p) = Programmed::load("maglev6", &desired(&pods)) else { return };
    assert_ne!(p.maps.read().unwrap().maglev.len(), 0, "the frontend has a Maglev table");

    let before = destinations(&mut p);
    let mut per_backend: BTreeMap<Ipv6Addr, u32> = pods.iter().map(|pod| (*pod, 0)).collect();
    for destination in &before {
        *per_backend.get_mut(destination).unwrap_or_else(|| panic!("{destination} is no backend")) += 1;
    }
    let share = f64::from(FLOWS) / f64::from(BACKENDS);
    let deviation = |count: u32| (f64::from(count) - share) / share;
    let worst = per_backend.values().map(|c| deviation(*c).abs()).fold(0.0, f64::max);
    println!("maglev6 spread of {FLOWS} IPv6 flows over {BACKENDS} IPv6 backends: {per_backend:?}");
    println!("maglev6 spread: worst backend {:.1}% from its share of {share}", 100.0 * worst);
    assert!(worst <= MAX_SPREAD, "a backend is {:.1}% off its share: {per_backend:?}", 100.0 * worst);

    let removed = pods[3];
    let remaining: Vec<Ipv6Addr> = pods.iter().copied().filter(|pod| *pod != removed).collect();
    reconcile(&mut p.maps, &desired(&remaining)).expect("removing one backend");
    let after = destinations(&mut p);
    assert!(!after.contains(&removed), "a flow still went to the removed backend");
    let kept: Vec<usize> = (0..before.len()).filter(|&i| before[i] != removed).collect();
    let moved = kept.iter().filter(|&&i| before[i] != after[i]).count();
    let disruption = moved as f64 / kept.len() as f64;
    let reassigned = before.iter().filter(|b| **b == removed).count();
    println!(
        "maglev6 disruption: {moved} of the {} flows not on the removed backend moved ({:.2}%); its {reassigned} flows were reassigned",
        kept.len(),
        100.0 * disruption
    );
    assert!(disruption <= MAX_DISRUPTION, "{:.1}% of the other flows moved", 100.0 * disruption);
}
