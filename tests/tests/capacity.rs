//! Map capacities in the real kernel: sizes from the flags, a Service port
//! that does not fit left out whole, a write the kernel refuses rolled back
//! whole, a pinned map of another size recreated, and 10,000 Services of 10
//! endpoints each programmed (the time it takes is printed, not asserted).

use std::net::Ipv4Addr;
use std::time::Instant;

use aya::maps::MapData;
use ingress_common::maps::{MaglevKey, SERVICES_MAP, maglev_rows};
use ingress_common::stats::{FORWARD_TRANSLATED, PASS_NO_SERVICE};
use ingress_tests::is_root;
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::pins::PinDir;
use ingress_tests::prog_run::{XDP_PASS, xdp};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::{Dataplane, PinnedMaps};
use ingress_userspace::dataplane::plan::describe;
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::model::*;
use ingress_userspace::reconcile::reconcile;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

/// Small maps: 7 service entries.
fn small() -> MapSizes {
    MapSizes {
        services: 7,
        backends: 64,
        rev_nat: 16,
        conntrack: 1024,
        affinity: 64,
        maglev_tables: 8,
        ..MapSizes::default()
    }
}

fn service(name: &str) -> ServicePortRef {
    ServicePortRef { namespace: "default".into(), name: name.into(), port_name: String::new() }
}

fn pod(third: u8, fourth: u8) -> Backend {
    Backend { addr: BackendAddr { addr: Ipv4Addr::new(10, 244, third, fourth).into(), port: 8080 }, state: BackendState::Active, local: true }
}

/// a: two frontends, 5 entries; b: 3; c: 2; d (no endpoint): 1.
fn four_services() -> DesiredState {
    let mut desired = DesiredState::default();
    let frontends = [
        ("a", Ipv4Addr::new(10, 96, 0, 10), Protocol::Tcp, vec![pod(1, 2), pod(2, 2)]),
        ("a", Ipv4Addr::new(10, 96, 0, 10), Protocol::Udp, vec![pod(1, 2)]),
        ("b", Ipv4Addr::new(10, 96, 0, 20), Protocol::Tcp, vec![pod(3, 2), pod(4, 2)]),
        ("c", Ipv4Addr::new(10, 96, 0, 30), Protocol::Tcp, vec![pod(5, 2)]),
        ("d", Ipv4Addr::new(10, 96, 0, 40), Protocol::Tcp, vec![]),
    ];
    for (name, addr, protocol, backends) in frontends {
        desired.frontends.insert(
            Frontend { addr: addr.into(), port: 80, protocol },
            FrontendState { service: service(name), backends, ..FrontendState::default() },
        );
    }
    desired
}

/// Every header's slots and Maglev rows exist; the slots name existing
/// backends and the rows slots within the header's count.
fn assert_whole(maps: &PinnedMaps, sizes: &MapSizes) {
    let contents = maps.read().unwrap();
    for programmed in describe(&contents) {
        assert!(programmed.backends.iter().all(|(_, b)| b.is_some()), "half-programmed: {programmed}");
    }
    for (key, header) in contents.services.iter().filter(|(key, h)| key.slot == 0 && h.backend_id != 0) {
        for row in 0..maglev_rows(sizes.maglev_table_size) {
            let row = contents.maglev.get(&MaglevKey { table: header.backend_id, row });
            let row = row.unwrap_or_else(|| panic!("{key:?}: table {} lacks a row", header.backend_id));
            assert!(row.slots.iter().all(|slot| *slot <= header.count), "{key:?}: a row names a slot past {}", header.count);
        }
    }
}

fn frontends(maps: &PinnedMaps) -> Vec<String> {
    describe(&maps.read().unwrap()).iter().map(|p| p.frontend.to_string()).collect()
}

fn packets(maps: &PinnedMaps, reason: u32) -> u64 {
    maps.stats().unwrap()[reason as usize].packets
}

#[test]
fn a_full_map_leaves_services_out_whole_and_a_refused_write_is_rolled_back() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    let pins = PinDir::unique("capacity");
    let sizes = small();
    let mut dataplane = Dataplane::load_sized(pins.path(), &sizes).expect("loading the programs");
    let mut maps = dataplane.maps().unwrap();

    let report = reconcile(&mut maps, &four_services()).expect("programming what fits");
    let left_out: Vec<_> = report.left_out.iter().map(|l| (l.service.name.as_str(), l.map)).collect();
    assert_eq!(left_out, [("b", SERVICES_MAP), ("d", SERVICES_MAP)]);
    assert_eq!(frontends(&maps), ["10.96.0.10:80/TCP", "10.96.0.10:80/UDP", "10.96.0.30:80/TCP"]);
    assert_whole(&maps, &sizes);

    // A left-out Service is not there at all: its packets meet no frontend.
    let (verdict, out) = xdp(&mut dataplane, &Frame::tcp(CLIENT, 40000, Ipv4Addr::new(10, 96, 0, 20), 80, SYN).build());
    assert_eq!((verdict, packet::read(&out).dst), (XDP_PASS, Ipv4Addr::new(10, 96, 0, 20)));
    assert_eq!(packets(&maps, PASS_NO_SERVICE), 1);
    let (verdict, out) = xdp(&mut dataplane, &Frame::tcp(CLIENT, 40001, Ipv4Addr::new(10, 96, 0, 30), 80, SYN).build());
    assert_eq!((verdict, packet::read(&out).dst), (XDP_PASS, Ipv4Addr::new(10, 244, 5, 2)));
    assert_eq!(packets(&maps, FORWARD_TRANSLATED), 1);

    // The plan is told the map is larger than it is: the kernel refuses
    // b's third entry (E2BIG) and b is rolled back; a and c stay as they were.
    let before = maps.read().unwrap();
    let mut misinformed = maps.with_sizes(MapSizes { services: 100, ..sizes });
    let error = reconcile(&mut misinformed, &four_services()).expect_err("the kernel map is full");
    let message = format!("{error:#}");
    println!("refused write: {message}");
    assert!(message.contains("Service port default/b rolled back"), "{message}");
    assert_eq!(misinformed.read().unwrap(), before, "the maps are as before the pass");
    assert_whole(&misinformed, &sizes);
}

#[test]
fn a_pinned_map_of_another_size_is_recreated_with_the_new_size() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    let pins = PinDir::unique("resize");
    let max_entries = |name: &str| MapData::from_pin(pins.path().join(name)).unwrap().info().unwrap().max_entries();
    let first = Dataplane::load_sized(pins.path(), &small()).expect("loading the programs");
    let mut maps = first.maps().unwrap();
    reconcile(&mut maps, &four_services()).unwrap();
    assert_eq!(max_entries(SERVICES_MAP), 7);

    let bigger = MapSizes { services: 64, ..small() };
    let second = Dataplane::load_sized(pins.path(), &bigger).expect("reloading with a bigger services map");
    assert_eq!(max_entries(SERVICES_MAP), 64);
    let mut maps = second.maps().unwrap();
    assert!(frontends(&maps).is_empty(), "a recreated map starts empty");
    let report = reconcile(&mut maps, &four_services()).unwrap();
    assert!(report.left_out.is_empty(), "{:?}", report.left_out);
    assert_eq!(frontends(&maps).len(), 5);
}

#[test]
fn ten_thousand_services_of_ten_endpoints_are_programmed() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    const SERVICES: u32 = 10_000;
    const ENDPOINTS: u32 = 10;
    let pins = PinDir::unique("10k");
    let sizes = MapSizes::default();
    let mut dataplane = Dataplane::load_sized(pins.path(), &sizes).expect("loading the programs");
    let mut maps = dataplane.maps().unwrap();
    let mut desired = DesiredState::default();
    // Service i on 10.96.0.0 + i, its pods on 10.128.0.0 + 10 i + j.
    let vip = |i: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + i);
    let pod = |i: u32, j: u32| Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i * ENDPOINTS + j);
    for i in 0..SERVICES {
        let backends = (0..ENDPOINTS)
            .map(|j| Backend { addr: BackendAddr { addr: pod(i, j).into(), port: 8080 }, state: BackendState::Active, local: false })
            .collect();
        desired.frontends.insert(
            Frontend { addr: vip(i).into(), port: 80, protocol: Protocol::Tcp },
            FrontendState { service: service(&format!("svc-{i:05}")), backends, ..FrontendState::default() },
        );
    }

    let started = Instant::now();
    let report = reconcile(&mut maps, &desired).expect("programming 10,000 Services");
    let took = started.elapsed();
    println!(
        "programmed {SERVICES} Services x {ENDPOINTS} endpoints in {:.2} s ({} map writes)",
        took.as_secs_f64(),
        report.ops.values().sum::<usize>()
    );
    assert!(report.left_out.is_empty(), "{} left out", report.left_out.len());
    let contents = maps.read().unwrap();
    assert_eq!(contents.services.len() as u32, SERVICES * (1 + ENDPOINTS));
    assert_eq!(contents.backends.len() as u32, SERVICES * ENDPOINTS);
    assert_eq!(contents.maglev.len() as u32, SERVICES * sizes.rows_per_table());

    // The last Service answers with one of its own pods.
    let last = SERVICES - 1;
    let (verdict, out) = xdp(&mut dataplane, &Frame::tcp(CLIENT, 40000, vip(last), 80, SYN).build());
    let dst = packet::read(&out).dst;
    assert_eq!(verdict, XDP_PASS);
    assert!((0..ENDPOINTS).any(|j| pod(last, j) == dst), "{dst} is not a pod of the last Service");

    let started = Instant::now();
    let report = reconcile(&mut maps, &desired).unwrap();
    println!("a second pass over the same 10,000 Services: {:.2} s, {} writes", started.elapsed().as_secs_f64(), report.ops.len());
    assert!(report.ops.is_empty());
}
