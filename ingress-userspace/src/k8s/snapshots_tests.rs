use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::model::NodeInfo;
use crate::test_rng::Rng;
use crate::translate::{Translator, translate};

/// The stores, as plain maps.
#[derive(Default)]
struct Maps {
    services: BTreeMap<ObjectKey, Arc<Service>>,
    endpoint_slices: BTreeMap<ObjectKey, Arc<EndpointSlice>>,
}

impl Objects for Maps {
    fn everything(&self) -> Snapshot {
        Snapshot {
            services: self.services.values().cloned().collect(),
            endpoint_slices: self.endpoint_slices.values().cloned().collect(),
            ..Snapshot::default()
        }
    }

    fn service(&self, key: &ObjectKey) -> Option<Arc<Service>> {
        self.services.get(key).cloned()
    }

    fn endpoint_slice(&self, key: &ObjectKey) -> Option<Arc<EndpointSlice>> {
        self.endpoint_slices.get(key).cloned()
    }
}

fn key(name: &str) -> ObjectKey {
    ("default".into(), name.into())
}

fn service(name: &str, cluster_ip: u8, port: u16) -> Arc<Service> {
    let object = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": format!("10.96.0.{cluster_ip}"), "ports": [{"port": port, "targetPort": 8080}]},
    });
    Arc::new(serde_json::from_value(object).unwrap())
}

/// The slice of Service `name`, with pods `10.1.0.<pod>`.
fn slice(name: &str, pods: &[usize]) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = pods.iter().map(|pod| json!({"addresses": [format!("10.1.0.{pod}")]})).collect();
    let object = json!({
        "metadata": {"name": format!("{name}-1"), "namespace": "default", "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"port": 8080}],
        "endpoints": endpoints,
    });
    Arc::new(serde_json::from_value(object).unwrap())
}

impl Maps {
    fn put(&mut self, name: &str, cluster_ip: u8, pods: &[usize]) {
        self.services.insert(key(name), service(name, cluster_ip, 80));
        self.endpoint_slices.insert(key(&format!("{name}-1")), slice(name, pods));
    }
}

fn three_services() -> Maps {
    let mut maps = Maps::default();
    for (index, name) in ["a", "b", "c"].into_iter().enumerate() {
        maps.put(name, index as u8 + 1, &[index + 1]);
    }
    maps
}

fn dirty_slices(names: &[&str]) -> Dirty {
    Dirty { endpoint_slices: names.iter().map(|name| key(&format!("{name}-1"))).collect(), ..Dirty::default() }
}

#[test]
fn an_updated_slice_is_put_in_place_of_the_old_one() {
    let mut maps = three_services();
    let mut snapshotter = Snapshotter::default();
    let first = snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap();
    assert_eq!(first.versions.replaced, None);

    maps.put("b", 2, &[7, 8]);
    let second = snapshotter.next(&maps, &dirty_slices(&["b"])).unwrap();
    let replaced = second.versions.replaced.clone().unwrap();
    assert_eq!(replaced, Replaced { since: vec![first.versions.revision], services: vec![], endpoint_slices: vec![1], others: false });
    assert_eq!(second, maps.everything());
    assert_eq!(second.versions.services, first.versions.services);
    let kept: Vec<bool> = (0..3).map(|i| first.versions.endpoint_slices[i] == second.versions.endpoint_slices[i]).collect();
    assert_eq!(kept, [true, false, true]);
    assert_ne!(second.versions.revision, first.versions.revision);
}

#[test]
fn a_new_or_deleted_object_makes_a_whole_snapshot_that_keeps_unchanged_versions() {
    let mut maps = three_services();
    let mut snapshotter = Snapshotter::default();
    let first = snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap();

    // A created Service is reported like an update, but has no place yet.
    maps.put("aa", 9, &[9]);
    let dirty = Dirty { services: [key("aa")].into(), ..dirty_slices(&["aa"]) };
    let second = snapshotter.next(&maps, &dirty).unwrap();
    assert_eq!(second.versions.replaced, None);
    assert_eq!(second, maps.everything());
    // "aa" sorts second: a, aa, b, c.
    assert_eq!(second.versions.services[0], first.versions.services[0]);
    assert_eq!(second.versions.services[2..], first.versions.services[1..]);

    maps.services.remove(&key("b"));
    maps.endpoint_slices.remove(&key("b-1"));
    let third = snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap();
    assert_eq!(third.versions.replaced, None);
    assert_eq!(third.services.len(), 3);
    assert_eq!(third.versions.services[..2], second.versions.services[..2]);
}

#[test]
fn a_change_that_changes_nothing_makes_no_snapshot() {
    let mut maps = three_services();
    let mut snapshotter = Snapshotter::default();
    snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap();
    // The same contents in a new object, as after a re-list.
    maps.put("b", 2, &[2]);
    assert_eq!(snapshotter.next(&maps, &dirty_slices(&["b"])), None);
    assert_eq!(snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }), None);
}

#[test]
fn a_snapshot_names_every_recent_revision_it_can_be_patched_from() {
    let mut maps = three_services();
    let mut snapshotter = Snapshotter::default();
    let mut revisions = vec![snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap().versions.revision];
    let mut last = None;
    for step in 0..CHAIN + 2 {
        let name = ["a", "c"][step % 2];
        maps.put(name, if name == "a" { 1 } else { 3 }, &[10 + step]);
        let snapshot = snapshotter.next(&maps, &dirty_slices(&[name])).unwrap();
        revisions.push(snapshot.versions.revision);
        last = Some(snapshot);
    }
    let replaced = last.unwrap().versions.replaced.unwrap();
    // The newest CHAIN patches, each from the revision before it.
    let from = &revisions[revisions.len() - 1 - CHAIN..revisions.len() - 1];
    assert_eq!(replaced.since, from);
    assert_eq!(replaced.endpoint_slices, [0, 2]);
}

/// Seeded random changes to the stores, snapshots taken after each, and the
/// translator fed only some of them (the agent takes the newest when it is
/// free): what it holds after each is what translating from scratch gives,
/// and many passes were patches, also ones after skipped snapshots.
#[test]
fn patched_snapshots_translate_to_what_whole_ones_do_even_when_some_are_skipped() {
    let node = NodeInfo { name: "lab-node".into(), addresses: vec!["192.168.1.10".parse().unwrap()] };
    for seed in 1..=4u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut maps = Maps::default();
        for index in 0..20 {
            maps.put(&format!("s{index}"), index as u8, &[index]);
        }
        let mut snapshotter = Snapshotter::default();
        let mut translator = Translator::default();
        let (mut passes, mut patched, mut patched_after_skips) = (0, 0, 0);
        let mut skipped = false;
        let mut snapshot = snapshotter.next(&maps, &Dirty { structure: true, ..Dirty::default() }).unwrap();
        translator.translate(&snapshot, &node);
        for step in 0..400 {
            let name = format!("s{}", rng.below(24));
            let mut dirty = Dirty::default();
            match rng.below(100) {
                // Endpoints move: the common case.
                0..80 => {
                    let pods: Vec<usize> = (0..rng.below(4)).map(|_| rng.below(50)).collect();
                    if !maps.services.contains_key(&key(&name)) {
                        continue;
                    }
                    maps.endpoint_slices.insert(key(&format!("{name}-1")), slice(&name, &pods));
                    dirty.endpoint_slices.insert(key(&format!("{name}-1")));
                }
                // A port or cluster IP changes (now and then to one another
                // Service has: a conflict), or a Service is created.
                80..95 => {
                    let number: u8 = name[1..].parse().unwrap();
                    let cluster_ip = if rng.chance(20) { rng.below(24) as u8 } else { number + 30 * rng.below(2) as u8 };
                    maps.services.insert(key(&name), service(&name, cluster_ip, [80, 81][rng.below(2)]));
                    dirty.services.insert(key(&name));
                    if let std::collections::btree_map::Entry::Vacant(entry) = maps.endpoint_slices.entry(key(&format!("{name}-1"))) {
                        entry.insert(slice(&name, &[1]));
                        dirty.endpoint_slices.insert(key(&format!("{name}-1")));
                    }
                }
                _ => {
                    maps.services.remove(&key(&name));
                    maps.endpoint_slices.remove(&key(&format!("{name}-1")));
                    dirty.structure = true;
                }
            }
            let Some(next) = snapshotter.next(&maps, &dirty) else { continue };
            snapshot = next;
            assert_eq!(snapshot, maps.everything(), "seed {seed} step {step}");
            if rng.chance(40) {
                skipped = true;
                continue;
            }
            passes += 1;
            if translator.translate(&snapshot, &node).is_some() {
                patched += 1;
                patched_after_skips += usize::from(skipped);
            }
            skipped = false;
            let (desired, problems) = translate(&snapshot, &node);
            assert_eq!(translator.desired(), &desired, "seed {seed} step {step}");
            assert_eq!(translator.problems(), &problems[..], "seed {seed} step {step}");
        }
        assert!(patched * 3 > passes, "seed {seed}: only {patched} of {passes} passes were patches");
        assert!(patched_after_skips > 0, "seed {seed}: no patch after skipped snapshots");
    }
}
