//! `loadBalancerSourceRanges` in the kernel (BPF_PROG_TEST_RUN): a Service
//! manifest goes through the agent's own path (parse, translate, reconcile)
//! into the maps, then crafted SYNs from inside and outside the ranges.

use std::net::Ipv4Addr;

use ingress_common::stats::{DROP_SOURCE_RANGE, FORWARD_TRANSLATED};
use ingress_tests::is_root;
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::pins::PinDir;
use ingress_tests::prog_run::{XDP_DROP, XDP_PASS, xdp};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::{Dataplane, PinnedMaps};
use ingress_userspace::manifests::parse_documents;
use ingress_userspace::model::NodeInfo;
use ingress_userspace::reconcile::reconcile;
use ingress_userspace::translate::translate;

const LB_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);

fn manifests(ranges: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: lb, namespace: default}}\n\
         spec: {{type: LoadBalancer, clusterIP: 10.96.0.7, ports: [{{port: 80, targetPort: 8080, nodePort: 30007}}]{ranges}}}\n\
         status: {{loadBalancer: {{ingress: [{{ip: {LB_IP}}}]}}}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata: {{name: lb-1, namespace: default, labels: {{kubernetes.io/service-name: lb}}}}\n\
         addressType: IPv4\nports: [{{port: 8080}}]\nendpoints: [{{addresses: [{POD}]}}]\n"
    )
}

fn program(maps: &mut PinnedMaps, ranges: &str) {
    let loaded = parse_documents("lb.yaml", &manifests(ranges));
    assert!(loaded.problems.is_empty(), "{:?}", loaded.problems);
    let node = NodeInfo { name: "node".into(), addresses: vec![NODE_IP.into()] };
    let (desired, problems) = translate(&loaded.snapshot, &node);
    assert!(problems.is_empty(), "{problems:?}");
    reconcile(maps, &desired).expect("programming the maps");
}

fn packets(maps: &PinnedMaps, reason: u32) -> u64 {
    maps.stats().unwrap()[reason as usize].packets
}

/// Sends a SYN from `client` to `dst:dport`; true if it was sent to the pod.
fn reaches_pod(dataplane: &mut Dataplane, client: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16) -> bool {
    let (verdict, out) = xdp(dataplane, &Frame::tcp(client, sport, dst, dport, SYN).build());
    match verdict {
        XDP_PASS => {
            let seen = packet::read(&out);
            assert_eq!((seen.dst, seen.dport), (POD, 8080), "a passed SYN must be translated");
            true
        }
        XDP_DROP => false,
        other => panic!("unexpected XDP verdict {other}"),
    }
}

#[test]
fn only_clients_inside_the_ranges_reach_the_load_balancer_ip() {
    if !is_root() {
        eprintln!("skipped: BPF_PROG_TEST_RUN needs root");
        return;
    }
    let pins = PinDir::unique("srcrange");
    let mut dataplane = Dataplane::load(pins.path()).expect("loading the programs");
    let mut maps = dataplane.maps().expect("opening the maps");
    program(&mut maps, ", loadBalancerSourceRanges: [192.0.2.0/24, 198.51.100.7/32]");

    let inside = [Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 254), Ipv4Addr::new(198, 51, 100, 7)];
    let outside = [Ipv4Addr::new(192, 0, 3, 1), Ipv4Addr::new(198, 51, 100, 8), Ipv4Addr::new(10, 0, 0, 1)];
    for (i, client) in inside.iter().enumerate() {
        assert!(reaches_pod(&mut dataplane, *client, 41000 + i as u16, LB_IP, 80), "{client} is inside a range");
    }
    for (i, client) in outside.iter().enumerate() {
        assert!(!reaches_pod(&mut dataplane, *client, 42000 + i as u16, LB_IP, 80), "{client} is outside");
    }
    assert_eq!(packets(&maps, DROP_SOURCE_RANGE), outside.len() as u64);
    // The NodePort of the same Service is not filtered, as in kube-proxy.
    assert!(reaches_pod(&mut dataplane, outside[0], 43000, NODE_IP, 30007));

    // Lifting the restriction removes the trie entries and the header flag.
    program(&mut maps, "");
    assert!(maps.read().unwrap().source_ranges.is_empty(), "stale source ranges left in the map");
    assert!(reaches_pod(&mut dataplane, outside[1], 44000, LB_IP, 80));
    assert_eq!(packets(&maps, FORWARD_TRANSLATED), inside.len() as u64 + 2);
}
