//! Two nodes, each with its agent and pods, on one segment with the client:
//! the topology itself, then the traffic policies end to end.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ingress_common::stats::REJECT_NO_BACKEND;
use ingress_tests::agent::{InProcessAgent, ManifestDir};
use ingress_tests::http;
use ingress_tests::lab::{NODE_A_NAME, NODE_B_NAME};
use ingress_tests::netns::list_namespaces;
use ingress_tests::traffic::{tcp_request_timeout, udp_request};
use ingress_tests::{ECHO_PORT, NetNs, TwoNodeLab, TwoNodeSpec, is_root, tcp_request};
use ingress_userspace::dataplane::ebpf::PinnedMaps;

/// externalTrafficPolicy: Local, endpoints a-1, a-2 (node A) and b-1 (node B).
const LOCAL_NODE_PORT: u16 = 30080;
/// externalTrafficPolicy: Local, its only endpoint b-1 on node B.
const B_ONLY_NODE_PORT: u16 = 30081;
/// The healthCheckNodePorts of the two Services above.
const LOCAL_HEALTH_PORT: u16 = 32080;
const B_ONLY_HEALTH_PORT: u16 = 32081;
/// internalTrafficPolicy: Local, endpoints a-1 and b-1.
const ITP_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 30);
/// Default policies, its only endpoint b-1: pods of A reach it across nodes.
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 31);
/// New connections per check: enough to see every pod a frontend may pick.
const CONNECTIONS: usize = 16;

fn lab() -> Option<TwoNodeLab> {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return None;
    }
    Some(TwoNodeLab::build(TwoNodeSpec::default()).expect("building the two-node lab"))
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
}

/// An EndpointSlice of `service` with `(pod, node)` endpoints and `ports`.
fn slice(lab: &TwoNodeLab, service: &str, ports: &str, pods: &[(&str, &str)]) -> String {
    let endpoints: Vec<String> = pods
        .iter()
        .map(|(pod, node)| format!("{{addresses: [{}], nodeName: {node}}}", lab.pod(pod).unwrap().ip))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: {ports}\n\
         endpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

fn manifests(lab: &TwoNodeLab) -> ManifestDir {
    let (a, b) = (NODE_A_NAME, NODE_B_NAME);
    let node_port = |port: u16, health_port: u16| {
        format!(
            "{{type: NodePort, externalTrafficPolicy: Local, healthCheckNodePort: {health_port}, \
             ports: [{{name: tcp, port: 80, targetPort: {ECHO_PORT}, nodePort: {port}}}, \
             {{name: udp, protocol: UDP, port: 80, targetPort: {ECHO_PORT}, nodePort: {port}}}]}}"
        )
    };
    // Named ports: the NodePort Services serve TCP and UDP.
    let both = format!("[{{name: tcp, port: {ECHO_PORT}}}, {{name: udp, protocol: UDP, port: {ECHO_PORT}}}]");
    let tcp = format!("[{{port: {ECHO_PORT}}}]");
    let yaml = [
        service("local", &node_port(LOCAL_NODE_PORT, LOCAL_HEALTH_PORT)),
        slice(lab, "local", &both, &[("a-1", a), ("a-2", a), ("b-1", b)]),
        service("b-only", &node_port(B_ONLY_NODE_PORT, B_ONLY_HEALTH_PORT)),
        slice(lab, "b-only", &both, &[("b-1", b)]),
        service("itp", &format!("{{clusterIP: {ITP_CLUSTER_IP}, internalTrafficPolicy: Local, ports: [{{port: 80, targetPort: {ECHO_PORT}}}]}}")),
        slice(lab, "itp", &tcp, &[("a-1", a), ("b-1", b)]),
        service("cluster", &format!("{{clusterIP: {CLUSTER_IP}, ports: [{{port: 80, targetPort: {ECHO_PORT}}}]}}")),
        slice(lab, "cluster", &tcp, &[("b-1", b)]),
    ]
    .concat();
    let dir = ManifestDir::empty().unwrap();
    dir.write("services.yaml", &yaml).unwrap();
    dir
}

/// The pods that answered `CONNECTIONS` new TCP connections from `from`,
/// each of which must have seen `expected_peer` as its client.
fn tcp_answers(from: &NetNs, to: SocketAddrV4, expected_peer: Ipv4Addr) -> BTreeSet<String> {
    (0..CONNECTIONS)
        .map(|i| {
            let reply = tcp_request(from, to).unwrap_or_else(|e| panic!("connection {i} to {to}: {e:#}"));
            assert_eq!(reply.peer.ip(), expected_peer, "the address {} saw through {to}", reply.pod);
            reply.pod
        })
        .collect()
}

fn pods(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn no_backend_rejects(agent: &InProcessAgent) -> u64 {
    PinnedMaps::open(agent.pins()).unwrap().stats().unwrap()[REJECT_NO_BACKEND as usize].packets
}

#[test]
fn pods_reach_each_other_across_nodes_and_everything_is_removed() {
    let Some(lab) = lab() else { return };
    let names: Vec<String> = lab.namespaces().into_iter().map(String::from).collect();
    assert_eq!(names.len(), 3 + 4, "client, two nodes, four pods");
    let (a1, b1) = (lab.pod("a-1").unwrap(), lab.pod("b-1").unwrap());
    assert_ne!(a1.ip.octets()[1], b1.ip.octets()[1], "the nodes have distinct pod networks");
    // Direct pod to pod across the segment, both ways, without any NAT.
    assert_eq!(tcp_request(&a1.ns, b1.echo_addr()).unwrap().peer.ip(), a1.ip);
    assert_eq!(udp_request(&b1.ns, a1.echo_addr()).unwrap().peer.ip(), b1.ip);
    // The client reaches both nodes on the shared segment.
    for node in lab.nodes() {
        node.ns().ip(&["link", "show", node.uplink_iface()]).unwrap();
        let ping = lab.client().exec("ping", &["-c", "1", "-W", "2", &node.ip().to_string()]).status().unwrap();
        assert!(ping.success(), "the client cannot reach {}", node.name());
    }
    drop(lab);
    let left = list_namespaces().unwrap();
    assert!(names.iter().all(|name| !left.contains(name)), "left behind: {left:?}");
}

#[test]
fn external_traffic_policy_local_serves_local_pods_with_the_clients_address_or_rejects() {
    let Some(lab) = lab() else { return };
    let manifests = manifests(&lab);
    let agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();
    let (a, b, client) = (lab.node_a(), lab.node_b(), lab.client());

    let on_a = SocketAddrV4::new(a.ip(), LOCAL_NODE_PORT);
    let on_b = SocketAddrV4::new(b.ip(), LOCAL_NODE_PORT);
    assert_eq!(tcp_answers(client, on_a, lab.client_ip()), pods(&["a-1", "a-2"]));
    assert_eq!(tcp_answers(client, on_b, lab.client_ip()), pods(&["b-1"]));
    for (to, local) in [(on_a, ["a-1", "a-2"].as_slice()), (on_b, &["b-1"])] {
        let reply = udp_request(client, to).unwrap();
        assert!(local.contains(&reply.pod.as_str()), "UDP through {to} answered by {}", reply.pod);
        assert_eq!(reply.peer.ip(), lab.client_ip());
    }

    // Node A has no endpoint of b-only: its NodePort there takes the
    // no-backend path, counted; node B serves it.
    let before = no_backend_rejects(&agent_a);
    let refused = tcp_request_timeout(client, SocketAddrV4::new(a.ip(), B_ONLY_NODE_PORT), Duration::from_secs(1));
    assert!(refused.is_err(), "node A must not serve b-only: {refused:?}");
    assert!(no_backend_rejects(&agent_a) > before, "the refusal on node A is not counted");
    let via_b = SocketAddrV4::new(b.ip(), B_ONLY_NODE_PORT);
    assert_eq!(tcp_answers(client, via_b, lab.client_ip()), pods(&["b-1"]));
    drop((agent_a, agent_b));
}

#[test]
fn internal_traffic_policy_local_keeps_pods_on_their_node_and_cluster_crosses_nodes() {
    let Some(lab) = lab() else { return };
    let manifests = manifests(&lab);
    let _agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let _agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();
    let (a2, b2) = (lab.pod("a-2").unwrap(), lab.pod("b-2").unwrap());

    let itp = SocketAddrV4::new(ITP_CLUSTER_IP, 80);
    assert_eq!(tcp_answers(&a2.ns, itp, a2.ip), pods(&["a-1"]));
    assert_eq!(tcp_answers(&b2.ns, itp, b2.ip), pods(&["b-1"]));
    // Without a Local policy a pod of node A reaches the pod on node B, and
    // the reply comes back from the ClusterIP (the echo checks the peer).
    let cluster = SocketAddrV4::new(CLUSTER_IP, 80);
    assert_eq!(tcp_answers(&a2.ns, cluster, a2.ip), pods(&["b-1"]));
}

#[test]
fn health_check_node_ports_answer_with_the_local_endpoint_count_on_each_node() {
    let Some(lab) = lab() else { return };
    let manifests = manifests(&lab);
    let _agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let _agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();
    let check = |node: Ipv4Addr, port: u16| {
        let response = http::get(lab.client(), SocketAddrV4::new(node, port), "lb", "/healthz").unwrap();
        let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        (response.status, json["localEndpoints"].as_u64().unwrap(), json["service"]["name"].as_str().unwrap().to_owned())
    };
    let (a, b) = (lab.node_a().ip(), lab.node_b().ip());
    assert_eq!(check(a, LOCAL_HEALTH_PORT), (200, 2, "local".into()));
    assert_eq!(check(b, LOCAL_HEALTH_PORT), (200, 1, "local".into()));
    assert_eq!(check(a, B_ONLY_HEALTH_PORT), (503, 0, "b-only".into()));
    assert_eq!(check(b, B_ONLY_HEALTH_PORT), (200, 1, "b-only".into()));
}
