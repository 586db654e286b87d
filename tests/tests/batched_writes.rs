//! Batched map writes in the real kernel: a list of ops applied through
//! `apply_all` (one BPF_MAP_*_BATCH call per run of one kind) leaves exactly
//! what the same ops applied one by one leave, puts and deletes of every
//! map (the source ranges' LPM trie too, batched or through the single-write
//! fallback where its kernel has no batch ops), and a batch that fails in the middle reports
//! the op it stopped at, with every op before it written and none after, also
//! in runs longer than one batch call takes.

use std::net::Ipv4Addr;

use ingress_tests::is_root;
use ingress_tests::pins::PinDir;
use ingress_userspace::dataplane::diff::diff;
use ingress_userspace::dataplane::ebpf::{BATCH_ENTRIES, Dataplane, PinnedMaps};
use ingress_userspace::dataplane::fake::FakeMaps;
use ingress_userspace::dataplane::plan::plan;
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::dataplane::{MapContents, MapOp, MapWriter};
use ingress_userspace::model::*;

const SERVICES: u32 = 40;

fn sizes() -> MapSizes {
    MapSizes { backends: 128, services: 512, rev_nat: 64, conntrack: 1024, affinity: 64, maglev_tables: 64, ..MapSizes::default() }
}

/// Service i on 10.96.0.i with 2 + i % 3 pods (the first two shared with
/// Service i - 1), every fifth one allowing only two source ranges.
fn services(count: u32) -> DesiredState {
    let mut desired = DesiredState::default();
    for i in 0..count {
        let backends = (i..i + 2 + i % 3)
            .map(|j| Backend { addr: BackendAddr { addr: Ipv4Addr::new(10, 244, 1, j as u8).into(), port: 8080 }, state: BackendState::Active, local: false })
            .collect();
        let source_ranges = (i % 5 == 0).then(|| {
            [Ipv4Addr::new(192, 0, 2, 0), Ipv4Addr::new(198, 18, i as u8, 0)]
                .into_iter()
                .map(|addr| SourceRange::new(addr.into(), 24).unwrap())
                .collect()
        });
        let service = ServicePortRef { namespace: "default".into(), name: format!("svc-{i:03}"), port_name: String::new() };
        desired.frontends.insert(
            Frontend { addr: Ipv4Addr::new(10, 96, 0, i as u8).into(), port: 80, protocol: Protocol::Tcp },
            FrontendState { service, backends, source_ranges, ..FrontendState::default() },
        );
    }
    desired
}

fn planned(desired: &DesiredState) -> MapContents {
    let plan = plan(desired, &MapContents::default(), &sizes());
    assert!(plan.left_out.is_empty(), "{:?}", plan.left_out);
    plan.contents
}

fn load(label: &str) -> (PinDir, Dataplane, PinnedMaps) {
    load_sized(label, &sizes())
}

fn load_sized(label: &str, sizes: &MapSizes) -> (PinDir, Dataplane, PinnedMaps) {
    let pins = PinDir::unique(label);
    let dataplane = Dataplane::load_sized(pins.path(), sizes).expect("loading the programs");
    let maps = dataplane.maps().unwrap();
    (pins, dataplane, maps)
}

/// What the ops leave in the fake maps, which apply them one by one.
fn expected(ops: &[&[MapOp]]) -> MapContents {
    let mut fake = FakeMaps { sizes: sizes(), ..FakeMaps::default() };
    for ops in ops {
        fake.apply_all(ops).unwrap();
    }
    fake.contents
}

#[test]
fn batched_writes_leave_exactly_what_single_writes_leave() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    let full = planned(&services(SERVICES));
    // Then a third of the Services go: deletes of every map, in diff's order.
    let fewer = planned(&services(SERVICES * 2 / 3));
    let (puts, deletes) = (diff(&MapContents::default(), &full), diff(&full, &fewer));
    for (name, ops) in [("puts", &puts), ("deletes", &deletes)] {
        let kinds: std::collections::BTreeSet<_> = ops.iter().map(ingress_userspace::reconcile::op_kind).collect();
        assert_eq!(kinds.len(), 5, "{name}: the five maps' {name}");
    }

    let (_single_pins, _single_dataplane, mut single) = load("single");
    let (_batched_pins, _batched_dataplane, mut batched) = load("batched");
    for (step, ops, want) in [("puts", &puts, &full), ("deletes", &deletes, &fewer)] {
        for op in ops.iter() {
            single.apply(op).unwrap_or_else(|error| panic!("{step}: single {op:?}: {error:#}"));
        }
        batched.apply_all(ops).unwrap_or_else(|(index, error)| panic!("{step}: batched op {index}: {error:#}"));
        let (single, batched) = (single.read().unwrap(), batched.read().unwrap());
        assert_eq!(&single, want, "{step}: single writes");
        assert_eq!(batched, single, "{step}: batched writes");
    }
    assert_eq!(fewer, expected(&[&puts, &deletes]), "the fake agrees");
}

fn backend(id: u32) -> ingress_common::maps::Backend {
    ingress_userspace::dataplane::abi::backend_value(&Backend {
        addr: BackendAddr { addr: Ipv4Addr::from(0x0af4_0000 + id).into(), port: 8080 },
        state: BackendState::Active,
        local: false,
    })
}

#[test]
fn a_batch_failing_in_the_middle_names_its_op_and_wrote_exactly_the_ops_before_it() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    let (_pins, _dataplane, mut maps) = load("batch-fail");
    let capacity = sizes().backends;
    // A run of puts 4 longer than the map: the first `capacity` fit.
    let puts: Vec<MapOp> = (1..=capacity + 4).map(|id| MapOp::PutBackend(id, backend(id))).collect();
    let (index, error) = maps.apply_all(&puts).expect_err("the map is full");
    assert_eq!(index, capacity as usize, "{error:#}");
    let message = format!("{error:#}");
    assert!(message.contains(&format!("PutBackend({}", capacity + 1)) && message.contains("bpf_map_update_batch"), "{message}");
    let written: Vec<u32> = maps.read().unwrap().backends.into_keys().collect();
    assert_eq!(written, (1..=capacity).collect::<Vec<_>>());

    // Deletes stopped by a missing key (ENOENT, as a single delete).
    let deletes: Vec<MapOp> = [1, 2, capacity + 1, 3].into_iter().map(MapOp::DeleteBackend).collect();
    let (index, error) = maps.apply_all(&deletes).expect_err("a missing key");
    assert_eq!(index, 2, "{error:#}");
    assert!(format!("{error:#}").contains("bpf_map_delete_batch"), "{error:#}");
    let left: Vec<u32> = maps.read().unwrap().backends.into_keys().collect();
    assert_eq!(left, (3..=capacity).collect::<Vec<_>>());

    // Runs of different kinds: the index counts from the first op.
    let mixed: Vec<MapOp> = std::iter::once(MapOp::DeleteBackend(3))
        .chain([1, 2, capacity + 1, capacity + 2].into_iter().map(|id| MapOp::PutBackend(id, backend(id))))
        .collect();
    let (index, _) = maps.apply_all(&mixed).expect_err("full again");
    assert_eq!(index, 4, "the delete and three puts fit");
    assert_eq!(maps.read().unwrap().backends.len(), capacity as usize);
}

#[test]
fn a_run_longer_than_one_batch_call_fails_at_its_own_op_and_kept_every_op_before_it() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    // The map fills in the third batch call of the run, not at its start.
    let capacity = (2 * BATCH_ENTRIES + BATCH_ENTRIES / 3) as u32;
    let (_pins, _dataplane, mut maps) = load_sized("batch-long", &MapSizes { backends: capacity, ..sizes() });
    let puts: Vec<MapOp> = (1..=capacity + 100).map(|id| MapOp::PutBackend(id, backend(id))).collect();
    let (index, error) = maps.apply_all(&puts).expect_err("the map is full");
    assert_eq!(index, capacity as usize, "{error:#}");
    assert!(format!("{error:#}").contains(&format!("PutBackend({}", capacity + 1)), "{error:#}");
    let written: Vec<u32> = maps.read().unwrap().backends.into_keys().collect();
    assert_eq!(written, (1..=capacity).collect::<Vec<_>>());

    // Deletes stopped in their second batch call by a key already gone.
    let missing = BATCH_ENTRIES as u32 + 7;
    maps.apply(&MapOp::DeleteBackend(missing)).unwrap();
    let deletes: Vec<MapOp> = (1..=capacity).map(MapOp::DeleteBackend).collect();
    let (index, error) = maps.apply_all(&deletes).expect_err("a missing key");
    assert_eq!(index, missing as usize - 1, "{error:#}");
    let left: Vec<u32> = maps.read().unwrap().backends.into_keys().collect();
    assert_eq!(left, (missing + 1..=capacity).collect::<Vec<_>>());
}

/// Reading the maps back (what an agent adopting its pins does) spans many
/// batch calls here: 6,000 service slots, 2,000 backends and 1,500 Maglev
/// rows, each over several calls of 1,024, and must give exactly what was
/// written.
#[test]
fn maps_larger_than_a_batch_call_read_back_exactly() {
    if !is_root() {
        eprintln!("skipped: loading programs needs root");
        return;
    }
    let sizes = MapSizes { services: 8192, backends: 4096, rev_nat: 2048, maglev_tables: 2048, ..MapSizes::default() };
    let mut desired = DesiredState::default();
    for i in 0..1_500u32 {
        let backends = (0..3)
            .map(|j| Backend {
                addr: BackendAddr { addr: Ipv4Addr::from(0x0af4_0000 + i + j * 700).into(), port: 8080 },
                state: BackendState::Active,
                local: false,
            })
            .collect();
        let service = ServicePortRef { namespace: "default".into(), name: format!("svc-{i:04}"), port_name: String::new() };
        desired.frontends.insert(
            Frontend { addr: Ipv4Addr::from(0x0a60_0000 + i).into(), port: 80, protocol: Protocol::Tcp },
            FrontendState { service, backends, ..FrontendState::default() },
        );
    }
    let plan = plan(&desired, &MapContents::default(), &sizes);
    assert!(plan.left_out.is_empty(), "{:?}", plan.left_out);
    let written = plan.contents;
    assert!(written.services.len() >= 6_000 && written.backends.len() > 2 * 1_024 && written.maglev.len() == 1_500);

    let (_pins, _dataplane, mut maps) = load_sized("read-back", &sizes);
    maps.apply_all(&diff(&MapContents::default(), &written)).unwrap_or_else(|(index, error)| panic!("op {index}: {error:#}"));
    let read = maps.read().unwrap();
    assert_eq!(read.services.len(), written.services.len());
    assert_eq!(read.backends.len(), written.backends.len());
    assert_eq!(read.maglev.len(), written.maglev.len());
    assert!(read == written, "the maps read back differ from what was written");
}
