//! Two nodes, each with its agent and pods, on one segment with the client:
//! the topology itself, then the traffic policies end to end, where routing
//! between the nodes is involved. Each behaviour is one body run once per
//! address family (tests `<body>::ipv4` and `<body>::ipv6`). The per-packet
//! decisions are in `traffic_policies.rs` and `ipv6_policies.rs`.

use std::net::{IpAddr, SocketAddr};

use ingress_common::stats::REJECT_NO_BACKEND;
use ingress_tests::ECHO_PORT;
use ingress_tests::http;
use ingress_tests::lab::{LabNode, NODE_A_NAME, NODE_B_NAME};
use ingress_tests::netns::list_namespaces;
use ingress_tests::per_family_tests;
use ingress_tests::traffic::{tcp_request, udp_request};
use ingress_tests::two_node::{Family, ServiceDef, TwoNodeFixture, answers, assert_refused, pods, two_node_lab};

/// externalTrafficPolicy: Local, endpoints a-1, a-2 (node A) and b-1 (node B).
const LOCAL_NODE_PORT: u16 = 30080;
/// externalTrafficPolicy: Local, its only endpoint b-1 on node B.
const B_ONLY_NODE_PORT: u16 = 30081;
/// The healthCheckNodePorts of the two Services above.
const LOCAL_HEALTH_PORT: u16 = 32080;
const B_ONLY_HEALTH_PORT: u16 = 32081;
/// The last byte of each Service's ClusterIP (see `Family::cluster_ip`).
const LOCAL_VIP: u8 = 0x30;
const B_ONLY_VIP: u8 = 0x31;
/// internalTrafficPolicy: Local, endpoints a-1 and b-1.
const ITP_VIP: u8 = 0x32;
/// internalTrafficPolicy: Local, its only endpoint b-1.
const ITP_B_ONLY_VIP: u8 = 0x33;
/// Default policies, its only endpoint b-1: pods of A reach it across nodes.
const CLUSTER_VIP: u8 = 0x34;

/// The Services of the policy tests, in `family`, with both agents running.
fn policies(family: Family) -> Option<TwoNodeFixture> {
    let local_fields = format!("externalTrafficPolicy: Local, healthCheckNodePort: {LOCAL_HEALTH_PORT}");
    let b_only_fields = format!("externalTrafficPolicy: Local, healthCheckNodePort: {B_ONLY_HEALTH_PORT}");
    let itp = |name, cluster_ip, endpoints| ServiceDef {
        name,
        cluster_ip,
        node_port: None,
        fields: "internalTrafficPolicy: Local",
        endpoints,
    };
    let services = [
        ServiceDef {
            name: "local",
            cluster_ip: LOCAL_VIP,
            node_port: Some(LOCAL_NODE_PORT),
            fields: &local_fields,
            endpoints: &["a-1", "a-2", "b-1"],
        },
        ServiceDef {
            name: "b-only",
            cluster_ip: B_ONLY_VIP,
            node_port: Some(B_ONLY_NODE_PORT),
            fields: &b_only_fields,
            endpoints: &["b-1"],
        },
        itp("itp", ITP_VIP, &["a-1", "b-1"]),
        itp("itp-b-only", ITP_B_ONLY_VIP, &["b-1"]),
        ServiceDef { name: "cluster", cluster_ip: CLUSTER_VIP, node_port: None, fields: "", endpoints: &["b-1"] },
    ];
    TwoNodeFixture::start(family, &services)
}

per_family_tests!(
    pods_reach_each_other_across_nodes_and_everything_is_removed,
    external_traffic_policy_local_serves_local_pods_with_the_clients_address_or_rejects,
    internal_traffic_policy_local_keeps_pods_on_their_node_or_rejects_and_cluster_crosses_nodes,
    health_check_node_ports_answer_with_the_local_endpoint_count_on_each_node,
);

fn pods_reach_each_other_across_nodes_and_everything_is_removed(family: Family) {
    let Some(lab) = two_node_lab() else { return };
    let names: Vec<String> = lab.namespaces().into_iter().map(String::from).collect();
    assert_eq!(names.len(), 3 + 4, "client, two nodes, four pods");
    let (a1, b1) = (lab.pod("a-1").unwrap(), lab.pod("b-1").unwrap());
    let (a1_ip, b1_ip) = (family.pod_ip(a1), family.pod_ip(b1));
    let pod_network = |ip: IpAddr| match ip {
        IpAddr::V4(ip) => u16::from(ip.octets()[1]),
        IpAddr::V6(ip) => ip.segments()[2],
    };
    assert_ne!(pod_network(a1_ip), pod_network(b1_ip), "the nodes have distinct pod networks");
    // Direct pod to pod across the segment, both ways, without any NAT.
    assert_eq!(tcp_request(&a1.ns, SocketAddr::new(b1_ip, ECHO_PORT)).unwrap().peer.ip(), a1_ip);
    assert_eq!(udp_request(&b1.ns, SocketAddr::new(a1_ip, ECHO_PORT)).unwrap().peer.ip(), b1_ip);
    // The client reaches both nodes on the shared segment.
    for node in lab.nodes() {
        node.ns().ip(&["link", "show", node.uplink_iface()]).unwrap();
        let node_ip = family.node_ip(node).to_string();
        let ping = lab.client().exec("ping", &["-c", "1", "-W", "2", &node_ip]).status().unwrap();
        assert!(ping.success(), "the client cannot reach {} at {node_ip}", node.name());
    }
    drop(lab);
    let left = list_namespaces().unwrap();
    assert!(names.iter().all(|name| !left.contains(name)), "left behind: {left:?}");
}

fn external_traffic_policy_local_serves_local_pods_with_the_clients_address_or_rejects(family: Family) {
    let Some(f) = policies(family) else { return };
    let (a, b, client) = (f.lab.node_a(), f.lab.node_b(), f.client());
    assert_eq!((a.name(), b.name()), (NODE_A_NAME, NODE_B_NAME));

    // Each node serves outside clients from its own pods only, keeping the
    // client's address.
    assert_eq!(answers(client, f.node_port(a, LOCAL_NODE_PORT), f.client_ip()), pods(&["a-1", "a-2"]));
    assert_eq!(answers(client, f.node_port(b, LOCAL_NODE_PORT), f.client_ip()), pods(&["b-1"]));

    // Node A has no endpoint of b-only: the client is refused at once there,
    // both protocols, counted, with no XDP on its side of the veth uplink;
    // node B serves it with the client's address.
    f.assert_uplink_answers_without_xdp_on_the_peer();
    let (on_a, on_b) = (f.node_port(a, B_ONLY_NODE_PORT), f.node_port(b, B_ONLY_NODE_PORT));
    let before = f.agent_a.packets(REJECT_NO_BACKEND);
    assert_refused(client, on_a);
    assert_eq!(f.agent_a.packets(REJECT_NO_BACKEND) - before, 2, "one reject per SYN and per datagram on node A");
    assert_eq!(answers(client, on_b, f.client_ip()), pods(&["b-1"]));
    // A pod of node A still reaches b-1 on node B through A's NodePort and
    // through the ClusterIP, keeping its address; the replies come back from
    // the address it called (connected sockets).
    let a2 = f.pod("a-2");
    assert_eq!(answers(&a2.ns, on_a, f.pod_ip("a-2")), pods(&["b-1"]));
    assert_eq!(answers(&a2.ns, f.cluster_ip(B_ONLY_VIP), f.pod_ip("a-2")), pods(&["b-1"]));
    assert_eq!(f.agent_a.packets(REJECT_NO_BACKEND) - before, 2);
}

fn internal_traffic_policy_local_keeps_pods_on_their_node_or_rejects_and_cluster_crosses_nodes(family: Family) {
    let Some(f) = policies(family) else { return };
    let (a2, b2) = (f.pod("a-2"), f.pod("b-2"));
    let (a2_ip, b2_ip) = (f.pod_ip("a-2"), f.pod_ip("b-2"));
    let itp = f.cluster_ip(ITP_VIP);
    assert_eq!(answers(&a2.ns, itp, a2_ip), pods(&["a-1"]));
    assert_eq!(answers(&b2.ns, itp, b2_ip), pods(&["b-1"]));

    // Node A has no endpoint of itp-b-only: its pods are refused at once;
    // node B's pods are served.
    let b_only = f.cluster_ip(ITP_B_ONLY_VIP);
    let before = f.agent_a.packets(REJECT_NO_BACKEND);
    assert_refused(&a2.ns, b_only);
    assert_eq!(f.agent_a.packets(REJECT_NO_BACKEND) - before, 2, "one reject per SYN and per datagram on node A");
    assert_eq!(answers(&b2.ns, b_only, b2_ip), pods(&["b-1"]));

    // Without a Local policy a pod of node A reaches the pod on node B, and
    // the reply comes back from the ClusterIP (the echo checks the peer).
    assert_eq!(answers(&a2.ns, f.cluster_ip(CLUSTER_VIP), a2_ip), pods(&["b-1"]));
}

fn health_check_node_ports_answer_with_the_local_endpoint_count_on_each_node(family: Family) {
    let Some(f) = policies(family) else { return };
    let check = |node: &LabNode, port: u16| {
        let response = http::get(f.client(), SocketAddr::new(f.node_ip(node), port), "lb", "/healthz").unwrap();
        let json: serde_json::Value = serde_json::from_str(&response.body).unwrap();
        (response.status, json["localEndpoints"].as_u64().unwrap(), json["service"]["name"].as_str().unwrap().to_owned())
    };
    let (a, b) = (f.lab.node_a(), f.lab.node_b());
    assert_eq!(check(a, LOCAL_HEALTH_PORT), (200, 2, "local".into()));
    assert_eq!(check(b, LOCAL_HEALTH_PORT), (200, 1, "local".into()));
    assert_eq!(check(a, B_ONLY_HEALTH_PORT), (503, 0, "b-only".into()));
    assert_eq!(check(b, B_ONLY_HEALTH_PORT), (200, 1, "b-only".into()));
}
