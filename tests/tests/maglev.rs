//! Maglev backend choice in the real programs (BPF_PROG_TEST_RUN): 10,000
//! new flows over 10 backends, then the same flows after one backend is
//! removed through the agent's planning path; over IPv4 and over IPv6.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use aya::maps::{HashMap, Map, MapData};
use ingress_common::maps::{CONNTRACK_MAP, CtEntry, CtKey};
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::prog_run::{Programmed, XDP_PASS};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::model::*;
use ingress_userspace::reconcile::reconcile;

const FLOWS: u32 = 10_000;
const BACKENDS: u8 = 10;
/// The bounds: each backend within 15% of its share; at most 15% of
/// the flows not on a removed backend move.
const MAX_SPREAD: f64 = 0.15;
const MAX_DISRUPTION: f64 = 0.15;

/// One family's addresses for the measurement.
struct Family {
    name: &'static str,
    vip: IpAddr,
    pods: Vec<IpAddr>,
    /// Flow `i`'s client address: one per flow.
    client: fn(u32) -> IpAddr,
}

fn desired(vip: IpAddr, pods: &[IpAddr]) -> DesiredState {
    let backends = pods
        .iter()
        .map(|ip| Backend { addr: BackendAddr { addr: *ip, port: 8080 }, state: BackendState::Active, local: true })
        .collect();
    let service = ServicePortRef { namespace: "default".into(), name: "spread".into(), port_name: String::new() };
    let mut state = DesiredState::default();
    state.frontends.insert(
        Frontend { addr: vip, port: 80, protocol: Protocol::Tcp },
        FrontendState { service, backends, ..FrontendState::default() },
    );
    state
}

/// The backend each flow is sent to, as new flows.
fn destinations(p: &mut Programmed, family: &Family) -> Vec<IpAddr> {
    forget_flows(p);
    let destinations = (0..FLOWS)
        .map(|i| {
            let syn = Frame::tcp((family.client)(i), 20_000 + (i % 40_000) as u16, family.vip, 80, SYN);
            let (verdict, out) = p.xdp(&syn.build());
            assert_eq!(verdict, XDP_PASS, "flow {i}");
            let seen = packet::read_ip(&out);
            if i % 1000 == 0 {
                assert!(seen.checksums_ok(), "flow {i}: {seen:?}");
                assert_eq!((seen.src, seen.sport, seen.dport), (syn.src, syn.sport, 8080));
            }
            seen.dst
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

fn spread_and_disruption(family: Family) {
    let Some(mut p) = Programmed::load(family.name, &desired(family.vip, &family.pods)) else { return };
    assert_ne!(p.maps.read().unwrap().maglev.len(), 0, "the frontend has a Maglev table");
    let name = family.name;

    let before = destinations(&mut p, &family);
    let mut per_backend: BTreeMap<IpAddr, u32> = family.pods.iter().map(|pod| (*pod, 0)).collect();
    for destination in &before {
        *per_backend.get_mut(destination).unwrap_or_else(|| panic!("{destination} is no backend")) += 1;
    }
    let share = f64::from(FLOWS) / f64::from(BACKENDS);
    let deviation = |count: u32| (f64::from(count) - share) / share;
    let worst = per_backend.values().map(|c| deviation(*c).abs()).fold(0.0, f64::max);
    println!("{name} spread of {FLOWS} flows over {BACKENDS} backends: {per_backend:?}");
    println!("{name} spread: worst backend {:+.1}% from its share of {share}", 100.0 * worst);
    assert!(worst <= MAX_SPREAD, "a backend is {:.1}% off its share: {per_backend:?}", 100.0 * worst);

    let removed = family.pods[3];
    let remaining: Vec<IpAddr> = family.pods.iter().copied().filter(|pod| *pod != removed).collect();
    reconcile(&mut p.maps, &desired(family.vip, &remaining)).expect("removing one backend");
    let after = destinations(&mut p, &family);
    assert!(!after.contains(&removed), "a flow still went to the removed backend");
    let kept: Vec<usize> = (0..before.len()).filter(|&i| before[i] != removed).collect();
    let moved = kept.iter().filter(|&&i| before[i] != after[i]).count();
    let disruption = moved as f64 / kept.len() as f64;
    println!(
        "{name} disruption: {moved} of the {} flows not on the removed backend moved ({:.2}%)",
        kept.len(),
        100.0 * disruption
    );
    assert!(disruption <= MAX_DISRUPTION, "{:.1}% of the other flows moved", 100.0 * disruption);
}

#[test]
fn ten_thousand_flows_spread_evenly_and_few_move_when_a_backend_goes() {
    spread_and_disruption(Family {
        name: "maglev",
        vip: Ipv4Addr::new(10, 96, 0, 10).into(),
        pods: (1..=BACKENDS).map(|i| Ipv4Addr::new(10, 244, i, 2).into()).collect(),
        // 100.64.0.0/10, the flow number added.
        client: |i| Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i).into(),
    });
}

#[test]
fn ten_thousand_ipv6_flows_spread_evenly_and_few_move_when_a_backend_goes() {
    spread_and_disruption(Family {
        name: "maglev6",
        vip: Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa).into(),
        pods: (1..=u16::from(BACKENDS)).map(|i| Ipv6Addr::new(0xfd00, 0x10, 0x244, i, 0, 0, 0, 2).into()).collect(),
        // 2001:db8:c::/64, the flow number in the low bits.
        client: |i| Ipv6Addr::from(u128::from(Ipv6Addr::new(0x2001, 0xdb8, 0xc, 0, 0, 0, 0, 1)) + u128::from(i)).into(),
    });
}
