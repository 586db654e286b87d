//! Seeded random sequences of manifest changes, applied to a directory the
//! way the directory source sees them (one file rewritten at a time): after
//! every change, the snapshot patched in place, the translation patched from
//! the last one and the maps reconciled from the changed frontends only are
//! what reading, translating and reconciling everything from scratch gives.

use std::fmt::Write as _;
use std::path::Path;

use super::*;
use crate::dataplane::fake::FakeMaps;
use crate::manifests::Loaded;
use crate::reconcile::{Reconciler, reconcile};
use crate::source::{Changes, ParsedDir};
use crate::test_rng::Rng;

/// Pools small enough that Services collide on frontends now and then.
const CLUSTER_IPS: usize = 40;
const NODE_PORTS: usize = 16;

/// One Service and its slice, as a generator draws them.
#[derive(Clone)]
struct Drawn {
    cluster_ip: usize,
    node_port: Option<usize>,
    udp: bool,
    local: bool,
    /// Pod number and whether it is ready (else serving and terminating).
    endpoints: Vec<(usize, bool)>,
    /// The slice names another Service (or none that exists).
    slice_owner: Option<usize>,
    /// An endpoint address that is not one: a problem.
    bad_address: bool,
}

impl Drawn {
    fn new(rng: &mut Rng) -> Drawn {
        let mut drawn = Drawn {
            cluster_ip: rng.below(CLUSTER_IPS),
            node_port: rng.chance(50).then(|| rng.below(NODE_PORTS)),
            udp: rng.chance(20),
            local: rng.chance(30),
            endpoints: Vec::new(),
            slice_owner: None,
            bad_address: false,
        };
        drawn.draw_endpoints(rng);
        drawn
    }

    fn draw_endpoints(&mut self, rng: &mut Rng) {
        let count = rng.below(4);
        self.endpoints = (0..count).map(|_| (rng.below(10), rng.chance(80))).collect();
    }

    /// Mostly what a cluster does most (endpoints move), sometimes the rest.
    fn mutate(&mut self, rng: &mut Rng, services: usize) {
        match rng.below(40) {
            0 => self.cluster_ip = rng.below(CLUSTER_IPS),
            1 => self.node_port = rng.chance(50).then(|| rng.below(NODE_PORTS)),
            2 => self.udp = !self.udp,
            3 => self.local = !self.local,
            4 => self.slice_owner = rng.chance(50).then(|| rng.below(services + 1)),
            5 => self.bad_address = !self.bad_address,
            _ => self.draw_endpoints(rng),
        }
    }

    fn yaml(&self, index: usize) -> String {
        let (protocol, port) = if self.udp { ("UDP", 53) } else { ("TCP", 80) };
        let kind = if self.node_port.is_some() { "NodePort" } else { "ClusterIP" };
        let node_port = self.node_port.map_or(String::new(), |port| format!(", nodePort: {}", 30000 + port));
        let policy = if self.local && self.node_port.is_some() {
            format!("  externalTrafficPolicy: Local\n  healthCheckNodePort: {}\n", 32000 + self.cluster_ip % 8)
        } else {
            String::new()
        };
        let owner = self.slice_owner.unwrap_or(index);
        let mut text = format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{index}, namespace: default}}\nspec:\n  type: {kind}\n  \
             clusterIP: 10.96.0.{}\n{policy}  ports:\n  - {{name: p, protocol: {protocol}, port: {port}, targetPort: 8080{node_port}}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s{index}-x\n  namespace: default\n  \
             labels: {{kubernetes.io/service-name: s{owner}}}\naddressType: IPv4\nports: [{{name: p, protocol: {protocol}, port: 8080}}]\n\
             endpoints:\n",
            self.cluster_ip + 1
        );
        for (pod, ready) in &self.endpoints {
            let node = if pod % 2 == 0 { "lab-node" } else { "other" };
            let conditions = if *ready { "{ready: true}" } else { "{ready: false, serving: true, terminating: true}" };
            let _ = writeln!(text, "  - {{addresses: [10.244.0.{}], nodeName: {node}, conditions: {conditions}}}", pod + 1);
        }
        if self.bad_address {
            text.push_str("  - {addresses: [10.244.0.999]}\n");
        }
        text
    }
}

const SERVICES: usize = 12;
const PER_FILE: usize = 3;

fn write_file(dir: &Path, file: usize, services: &[Option<Drawn>]) -> std::ffi::OsString {
    let name = format!("f{file}.yaml");
    let text: String = (file * PER_FILE..(file + 1) * PER_FILE)
        .filter_map(|index| Some(services[index].as_ref()?.yaml(index)))
        .collect();
    std::fs::write(dir.join(&name), text).unwrap();
    name.into()
}

#[test]
fn patched_passes_end_where_passes_from_scratch_do() {
    let mut patched_translations = 0;
    for seed in 1..=6u64 {
        let dir = std::env::temp_dir().join(format!("lb-incremental-{}-{seed}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut services: Vec<Option<Drawn>> = (0..SERVICES).map(|_| Some(Drawn::new(&mut rng))).collect();
        for file in 0..SERVICES / PER_FILE {
            write_file(&dir, file, &services);
        }
        let mut parsed = ParsedDir::default();
        let mut translator = Translator::default();
        let (mut reconciler, mut maps, mut full_maps) = (Reconciler::default(), FakeMaps::default(), FakeMaps::default());
        let mut changes = Changes::everything();
        for step in 0..60 {
            let context = format!("seed {seed} step {step}");
            let scratch = load_dir(&dir).unwrap();
            // `None`: the file was written the same as before.
            if let Some(loaded) = parsed.refresh(&dir, &changes).unwrap() {
                check_pass(&context, &loaded, &scratch, &mut translator, (&mut reconciler, &mut maps, &mut full_maps), &mut patched_translations);
            }


            // The next change: mostly one Service's contents, now and then
            // a Service removed or added (the shape of a file changes).
            let index = rng.below(SERVICES);
            match (&mut services[index], rng.chance(5)) {
                (Some(_), true) => services[index] = None,
                (None, _) => services[index] = Some(Drawn::new(&mut rng)),
                (Some(drawn), false) => drawn.mutate(&mut rng, SERVICES),
            }
            let name = write_file(&dir, index / PER_FILE, &services);
            changes = Changes { names: [name].into(), everything: false };
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // Most changes only move endpoints: the patched path must be the one taken.
    assert!(patched_translations > 6 * 60 / 3, "only {patched_translations} patched translations");
}

/// One pass of each kind over the same directory, checked against each other.
fn check_pass(
    context: &str,
    loaded: &Loaded,
    scratch: &Loaded,
    translator: &mut Translator,
    (reconciler, maps, full_maps): (&mut Reconciler, &mut FakeMaps, &mut FakeMaps),
    patched_translations: &mut usize,
) {
    let node = node();
    assert_eq!(loaded, scratch, "{context}: the snapshot");

    let changed = translator.translate(&loaded.snapshot, &node);
    *patched_translations += usize::from(changed.is_some());
    let (desired, problems) = translate(&scratch.snapshot, &node);
    assert_eq!((translator.desired(), translator.problems()), (&desired, &problems[..]), "{context}: the translation");

    reconciler.reconcile_changes(maps, translator.desired(), changed.as_ref()).unwrap();
    reconcile(full_maps, &desired).unwrap();
    assert_eq!(maps.contents, full_maps.contents, "{context}: the maps");
    maps.check_consistent().unwrap_or_else(|problem| panic!("{context}: {problem}"));
}
