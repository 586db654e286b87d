//! externalTrafficPolicy and internalTrafficPolicy: Local, decided per packet
//! by the programs in the kernel (BPF_PROG_TEST_RUN on crafted frames), from
//! manifests through translate and plan to the maps. The node is "node-a";
//! one pod runs on it, another on "node-b".

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ingress_common::stats::REJECT_NO_BACKEND;
use ingress_tests::packet::{self, Frame, SYN};
use ingress_tests::prog_run::{Entry, Programmed, TC_ACT_OK, XDP_PASS};
use ingress_userspace::manifests::parse_documents;
use ingress_userspace::model::NodeInfo;
use ingress_userspace::translate::translate;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// A pod on this node and one on the other node.
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 245, 1, 2);
/// A pod of this node calling a Service.
const POD_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);

/// externalTrafficPolicy: Local, endpoints on both nodes.
const ETP_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 20);
const ETP_NODE_PORT: u16 = 30080;
/// externalTrafficPolicy: Local, an endpoint on the other node only.
const ETP_REMOTE_ONLY_NODE_PORT: u16 = 30081;
/// internalTrafficPolicy: Local, endpoints on both nodes.
const ITP_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 22);
/// internalTrafficPolicy: Local, an endpoint on the other node only.
const ITP_REMOTE_ONLY_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 23);

/// Enough flows that a frontend choosing among two pods would pick both.
const FLOWS: u16 = 32;

fn manifests() -> String {
    let service = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
    };
    let slice = |service: &str, endpoints: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, \
             labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: 8080}}]\n\
             endpoints: {endpoints}\n---\n"
        )
    };
    let both = format!("[{{addresses: [{LOCAL_POD}], nodeName: node-a}}, {{addresses: [{REMOTE_POD}], nodeName: node-b}}]");
    let remote = format!("[{{addresses: [{REMOTE_POD}], nodeName: node-b}}]");
    [
        service(
            "etp",
            &format!(
                "{{type: NodePort, clusterIP: {ETP_CLUSTER_IP}, externalTrafficPolicy: Local, \
                 ports: [{{port: 80, targetPort: 8080, nodePort: {ETP_NODE_PORT}}}]}}"
            ),
        ),
        slice("etp", &both),
        service(
            "etp-remote",
            &format!(
                "{{type: NodePort, clusterIP: 10.96.0.21, externalTrafficPolicy: Local, \
                 ports: [{{port: 80, targetPort: 8080, nodePort: {ETP_REMOTE_ONLY_NODE_PORT}}}]}}"
            ),
        ),
        slice("etp-remote", &remote),
        service("itp", &format!("{{clusterIP: {ITP_CLUSTER_IP}, internalTrafficPolicy: Local, ports: [{{port: 80}}]}}")),
        slice("itp", &both),
        service(
            "itp-remote",
            &format!("{{clusterIP: {ITP_REMOTE_ONLY_CLUSTER_IP}, internalTrafficPolicy: Local, ports: [{{port: 80}}]}}"),
        ),
        slice("itp-remote", &remote),
    ]
    .concat()
}

/// The programs with maps of their own, programmed from `manifests()` as node-a.
struct Harness(Programmed);

impl Harness {
    fn new() -> Option<Harness> {
        let loaded = parse_documents("policies.yaml", &manifests());
        assert_eq!(loaded.problems, []);
        let node = NodeInfo { name: "node-a".into(), addresses: vec![NODE.into()] };
        let (desired, problems) = translate(&loaded.snapshot, &node);
        assert_eq!(problems, []);
        Programmed::load("policies", &desired).map(Harness)
    }

    /// The pods new TCP connections from `client` to `to` land on, over
    /// `FLOWS` source ports; every one must be translated with the client's
    /// own address kept and valid checksums.
    fn destinations(&mut self, entry: Entry, client: Ipv4Addr, to: (Ipv4Addr, u16)) -> BTreeSet<Ipv4Addr> {
        let passed = entry.passed();
        (0..FLOWS)
            .map(|i| {
                let syn = Frame::tcp(client, 41000 + i, to.0, to.1, SYN).build();
                let (verdict, out) = self.0.run(entry, &syn);
                assert_eq!(verdict, passed, "{entry:?} flow {i} to {to:?}");
                let seen = packet::read(&out);
                assert_eq!((seen.src, seen.sport, seen.dport), (client, 41000 + i, 8080), "{entry:?} flow {i}");
                assert!(seen.ip_checksum_ok && seen.l4_checksum_ok, "checksums of {seen:?}");
                seen.dst
            })
            .collect()
    }

    fn no_backend_rejects(&self) -> u64 {
        self.0.packets(REJECT_NO_BACKEND)
    }

    fn conntrack_entries(&self) -> usize {
        self.0.maps.conntrack().unwrap().len()
    }
}

#[test]
fn external_local_sends_outside_clients_to_local_pods_only_and_pods_anywhere() {
    let Some(mut h) = Harness::new() else { return };
    let local = BTreeSet::from([LOCAL_POD]);
    let both = BTreeSet::from([LOCAL_POD, REMOTE_POD]);
    // Outside clients keep their address (checked per flow) and stay on the node.
    assert_eq!(h.destinations(Entry::Uplink, CLIENT, (NODE, ETP_NODE_PORT)), local);
    // Pods of the node calling the NodePort get every endpoint, as with kube-proxy.
    assert_eq!(h.destinations(Entry::PodVeth, POD_CLIENT, (NODE, ETP_NODE_PORT)), both);
    // The same Service's ClusterIP has the (default) Cluster internal policy.
    assert_eq!(h.destinations(Entry::PodVeth, POD_CLIENT, (ETP_CLUSTER_IP, 80)), both);
}

#[test]
fn external_local_without_a_local_endpoint_takes_the_no_backend_path_and_counts() {
    let Some(mut h) = Harness::new() else { return };
    let syn = Frame::tcp(CLIENT, 42000, NODE, ETP_REMOTE_ONLY_NODE_PORT, SYN).build();
    let (verdict, _) = h.0.run(Entry::Uplink, &syn);
    assert_ne!(verdict, XDP_PASS, "an outside client must not reach the remote endpoint");
    assert_eq!(h.no_backend_rejects(), 1);
    assert_eq!(h.conntrack_entries(), 0);
    // A pod of this node still reaches the endpoint on the other node.
    let remote = BTreeSet::from([REMOTE_POD]);
    assert_eq!(h.destinations(Entry::PodVeth, POD_CLIENT, (NODE, ETP_REMOTE_ONLY_NODE_PORT)), remote);
    assert_eq!(h.no_backend_rejects(), 1);
}

#[test]
fn internal_local_keeps_cluster_ip_traffic_on_the_node() {
    let Some(mut h) = Harness::new() else { return };
    let local = BTreeSet::from([LOCAL_POD]);
    assert_eq!(h.destinations(Entry::PodVeth, POD_CLIENT, (ITP_CLUSTER_IP, 80)), local);
    assert_eq!(h.destinations(Entry::Uplink, CLIENT, (ITP_CLUSTER_IP, 80)), local);

    let syn = Frame::tcp(POD_CLIENT, 42001, ITP_REMOTE_ONLY_CLUSTER_IP, 80, SYN).build();
    let (verdict, _) = h.0.run(Entry::PodVeth, &syn);
    assert_ne!(verdict, TC_ACT_OK, "a pod must not reach the other node's endpoint");
    assert_eq!(h.no_backend_rejects(), 1);
}
