//! Maglev backend choice in the real programs (BPF_PROG_TEST_RUN): 10,000
//! new flows over 10 backends, then the same flows after one backend is
//! removed through the agent's planning path.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use aya::maps::{HashMap, Map, MapData};
use ingress_common::maps::{CONNTRACK_MAP, CtEntry, CtKey};
use ingress_tests::is_root;
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::pins::PinDir;
use ingress_tests::prog_run::{XDP_PASS, xdp};
use ingress_userspace::dataplane::ebpf::Dataplane;
use ingress_userspace::model::*;
use ingress_userspace::reconcile::reconcile;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const FLOWS: u32 = 10_000;
const BACKENDS: u8 = 10;
/// The bounds: each backend within 15% of its share; at most 15% of
/// the flows not on a removed backend move.
const MAX_SPREAD: f64 = 0.15;
const MAX_DISRUPTION: f64 = 0.15;

fn desired(pods: &[Ipv4Addr]) -> DesiredState {
    let backends = pods
        .iter()
        .map(|ip| Backend { addr: BackendAddr { addr: (*ip).into(), port: 8080 }, state: BackendState::Active, local: true })
        .collect();
    let service = ServicePortRef { namespace: "default".into(), name: "spread".into(), port_name: String::new() };
    let mut state = DesiredState::default();
    state.frontends.insert(
        Frontend { addr: VIP.into(), port: 80, protocol: Protocol::Tcp },
        FrontendState { service, backends, ..FrontendState::default() },
    );
    state
}

/// Flow `i`: its own client address (100.64.0.0/10) and source port.
fn flow(i: u32) -> Frame {
    let client = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i);
    Frame::tcp(client, 20_000 + (i % 40_000) as u16, VIP, 80, SYN)
}

/// The backend each flow is sent to, as new flows.
fn destinations(dataplane: &mut Dataplane, pins: &PinDir) -> Vec<Ipv4Addr> {
    forget_flows(pins);
    let destinations = (0..FLOWS)
        .map(|i| {
            let (verdict, out) = xdp(dataplane, &flow(i).build());
            assert_eq!(verdict, XDP_PASS, "flow {i}");
            packet::read(&out).dst
        })
        .collect();
    // Established flows would keep their backend: the next round must be
    // new flows again for it to measure the table and not conntrack.
    forget_flows(pins);
    destinations
}

fn forget_flows(pins: &PinDir) {
    let data = MapData::from_pin(pins.path().join(CONNTRACK_MAP)).expect("the pinned conntrack map");
    let mut conntrack: HashMap<MapData, CtKey, CtEntry> = Map::from_map_data(data).unwrap().try_into().unwrap();
    let keys: Vec<CtKey> = conntrack.keys().collect::<Result<_, _>>().unwrap();
    for key in keys {
        conntrack.remove(&key).unwrap();
    }
}

#[test]
fn ten_thousand_flows_spread_evenly_and_few_move_when_a_backend_goes() {
    if !is_root() {
        eprintln!("skipped: BPF_PROG_TEST_RUN needs root");
        return;
    }
    let pins = PinDir::unique("maglev");
    let mut dataplane = Dataplane::load(pins.path()).expect("loading the programs");
    let mut maps = dataplane.maps().unwrap();
    let pods: Vec<Ipv4Addr> = (1..=BACKENDS).map(|i| Ipv4Addr::new(10, 244, i, 2)).collect();
    reconcile(&mut maps, &desired(&pods)).expect("programming the maps");

    let before = destinations(&mut dataplane, &pins);
    let mut per_backend: BTreeMap<Ipv4Addr, u32> = pods.iter().map(|pod| (*pod, 0)).collect();
    for destination in &before {
        *per_backend.get_mut(destination).unwrap_or_else(|| panic!("{destination} is no backend")) += 1;
    }
    let share = f64::from(FLOWS) / f64::from(BACKENDS);
    let deviation = |count: u32| (f64::from(count) - share) / share;
    let worst = per_backend.values().map(|c| deviation(*c).abs()).fold(0.0, f64::max);
    println!("maglev spread of {FLOWS} flows over {BACKENDS} backends: {per_backend:?}");
    println!("maglev spread: worst backend {:+.1}% from its share of {share}", 100.0 * worst);
    assert!(worst <= MAX_SPREAD, "a backend is {:.1}% off its share: {per_backend:?}", 100.0 * worst);

    let removed = pods[3];
    let remaining: Vec<Ipv4Addr> = pods.iter().copied().filter(|pod| *pod != removed).collect();
    reconcile(&mut maps, &desired(&remaining)).expect("removing one backend");
    let after = destinations(&mut dataplane, &pins);
    assert!(!after.contains(&removed), "a flow still went to the removed backend");
    let kept: Vec<usize> = (0..before.len()).filter(|&i| before[i] != removed).collect();
    let moved = kept.iter().filter(|&&i| before[i] != after[i]).count();
    let disruption = moved as f64 / kept.len() as f64;
    println!(
        "maglev disruption: {moved} of the {} flows not on the removed backend moved ({:.2}%)",
        kept.len(),
        100.0 * disruption
    );
    assert!(disruption <= MAX_DISRUPTION, "{:.1}% of the other flows moved", 100.0 * disruption);
}
