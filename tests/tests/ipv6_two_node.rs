//! The traffic policies over IPv6 end to end, where routing between the
//! nodes is involved: the two-node dual-stack lab, both agents, real sockets.
//! The per-packet decisions are in `ipv6_policies.rs`; the IPv4 counterpart
//! is `two_node.rs`.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ingress_common::stats::REJECT_NO_BACKEND;
use ingress_tests::agent::{InProcessAgent, ManifestDir};
use ingress_tests::lab::{NODE_A_NAME, NODE_B_NAME};
use ingress_tests::pins::PinDir;
use ingress_tests::traffic::{connect_outcome, udp_exchange_outcome, udp_request};
use ingress_tests::{ECHO_PORT, NetNs, TwoNodeLab, TwoNodeSpec, is_root, tcp_request};
use ingress_userspace::dataplane::ebpf::{Dataplane, PinnedMaps};

/// IPv6 only, externalTrafficPolicy Local, its only endpoint b-1 on node B.
const B_ONLY_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x81);
const B_ONLY_NODE_PORT: u16 = 30281;
/// IPv6 only, internalTrafficPolicy Local, endpoints a-1 and b-1.
const ITP_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x82);
/// IPv6 only, internalTrafficPolicy Local, its only endpoint b-1.
const ITP_B_ONLY_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x83);
/// New connections per check: enough to see every pod a frontend may pick.
const CONNECTIONS: usize = 16;
/// Long enough that a dropped SYN or datagram would show as a timeout,
/// never as a refusal.
const PATIENCE: Duration = Duration::from_secs(5);

fn lab() -> Option<TwoNodeLab> {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return None;
    }
    Some(TwoNodeLab::build(TwoNodeSpec::default()).expect("building the two-node lab"))
}

/// The client's end of node A's uplink on the segment bridge (named by the lab).
const NODE_A_SEGMENT_PORT: &str = "eth-a";

/// A pass-everything XDP program on the client's end of node A's uplink,
/// with maps of its own and no Service. A frame node A's XDP sends back
/// with XDP_TX on its veth uplink is only picked up by the peer when the
/// peer has an XDP program of its own (veth kicks no one else's receive
/// queue; see `reject.rs`); a NIC's transmit ring needs nothing of the kind.
struct ClientXdp {
    // Dropped in this order: the program before its pins.
    _dataplane: Dataplane,
    _pins: PinDir,
}

fn client_xdp(lab: &TwoNodeLab) -> ClientXdp {
    let pins = PinDir::unique("ipv6-two-node-client");
    let mut dataplane = Dataplane::load(pins.path()).unwrap();
    let dataplane =
        lab.client().run(move || dataplane.attach_uplink(NODE_A_SEGMENT_PORT).map(|()| dataplane)).unwrap().unwrap();
    ClientXdp { _dataplane: dataplane, _pins: pins }
}

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
}

/// An IPv6 EndpointSlice of `service` with `(pod, node)` endpoints, TCP and UDP.
fn slice(lab: &TwoNodeLab, service: &str, pods: &[(&str, &str)]) -> String {
    let endpoints: Vec<String> = pods
        .iter()
        .map(|(pod, node)| format!("{{addresses: [\"{}\"], nodeName: {node}}}", lab.pod(pod).unwrap().ip6))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv6\n\
         ports: [{{name: tcp, port: {ECHO_PORT}, protocol: TCP}}, {{name: udp, port: {ECHO_PORT}, protocol: UDP}}]\n\
         endpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

/// An IPv6-only Service on `vip`: 80/TCP and 53/UDP (the NodePort on both
/// when given), with `policy` fields.
fn spec(kind: &str, vip: Ipv6Addr, node_port: Option<u16>, policy: &str) -> String {
    let node_port = node_port.map(|port| format!(", nodePort: {port}")).unwrap_or_default();
    format!(
        "{{type: {kind}, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], clusterIP: \"{vip}\", clusterIPs: [\"{vip}\"], \
         {policy}, ports: [{{name: tcp, protocol: TCP, port: 80, targetPort: {ECHO_PORT}{node_port}}}, \
         {{name: udp, protocol: UDP, port: 53, targetPort: {ECHO_PORT}{node_port}}}]}}"
    )
}

fn manifests(lab: &TwoNodeLab) -> ManifestDir {
    let (a, b) = (NODE_A_NAME, NODE_B_NAME);
    let yaml = [
        service("b-only6", &spec("NodePort", B_ONLY_VIP, Some(B_ONLY_NODE_PORT), "externalTrafficPolicy: Local")),
        slice(lab, "b-only6", &[("b-1", b)]),
        service("itp6", &spec("ClusterIP", ITP_VIP, None, "internalTrafficPolicy: Local")),
        slice(lab, "itp6", &[("a-1", a), ("b-1", b)]),
        service("itp6-b-only", &spec("ClusterIP", ITP_B_ONLY_VIP, None, "internalTrafficPolicy: Local")),
        slice(lab, "itp6-b-only", &[("b-1", b)]),
    ]
    .concat();
    let dir = ManifestDir::empty().unwrap();
    dir.write("services.yaml", &yaml).unwrap();
    dir
}

/// The pods that answered `CONNECTIONS` new TCP connections and as many UDP
/// requests from `from`, each of which must have seen `expected_peer`.
fn answers(from: &NetNs, tcp: SocketAddr, udp: SocketAddr, expected_peer: IpAddr) -> BTreeSet<String> {
    let mut pods = BTreeSet::new();
    for i in 0..CONNECTIONS {
        let reply = tcp_request(from, tcp).unwrap_or_else(|e| panic!("connection {i} to {tcp}: {e:#}"));
        assert_eq!(reply.peer.ip(), expected_peer, "the address {} saw through {tcp}", reply.pod);
        pods.insert(reply.pod);
        let reply = udp_request(from, udp).unwrap_or_else(|e| panic!("UDP request {i} to {udp}: {e:#}"));
        assert_eq!(reply.peer.ip(), expected_peer, "the address {} saw through {udp}", reply.pod);
        pods.insert(reply.pod);
    }
    pods
}

fn pods(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn no_backend_rejects(agent: &InProcessAgent) -> u64 {
    PinnedMaps::open(agent.pins()).unwrap().stats().unwrap()[REJECT_NO_BACKEND as usize].packets
}

/// A TCP connect from `from` to `tcp` and a UDP exchange to `udp` are
/// refused at once (a RST, an ICMPv6 port unreachable), not timed out.
fn assert_refused(from: &NetNs, tcp: SocketAddr, udp: SocketAddr) {
    let (error, took) = connect_outcome(from, tcp, PATIENCE).unwrap();
    assert_eq!(error, Some(ErrorKind::ConnectionRefused), "TCP to {tcp}: refused by a RST, not timed out (took {took:?})");
    assert!(took < Duration::from_secs(1), "TCP to {tcp}: the refusal took {took:?}");
    let udp_error = udp_exchange_outcome(from, udp, PATIENCE).unwrap();
    assert_eq!(udp_error, Some(ErrorKind::ConnectionRefused), "UDP to {udp}: the ICMPv6 port unreachable reaches the socket");
}

#[test]
fn external_local_over_ipv6_rejects_outside_clients_of_a_node_without_endpoint_and_serves_its_pods() {
    let Some(lab) = lab() else { return };
    let _client_xdp = client_xdp(&lab);
    let manifests = manifests(&lab);
    let agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let _agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();
    let (a, b, client) = (lab.node_a(), lab.node_b(), lab.client());
    let on_a = SocketAddr::new(a.ip6().into(), B_ONLY_NODE_PORT);
    let on_b = SocketAddr::new(b.ip6().into(), B_ONLY_NODE_PORT);

    // Node A has no endpoint: the client is refused at once, both protocols, counted.
    let before = no_backend_rejects(&agent_a);
    assert_refused(client, on_a, on_a);
    assert_eq!(no_backend_rejects(&agent_a) - before, 2, "one reject per SYN and per datagram on node A");
    // Node B serves it with the client's own address.
    assert_eq!(answers(client, on_b, on_b, lab.client_ip6().into()), pods(&["b-1"]));
    // A pod of node A still reaches b-1 on node B through A's NodePort and
    // through the ClusterIP, keeping its address; the replies come back from
    // the address it called (connected sockets).
    let a2 = lab.pod("a-2").unwrap();
    assert_eq!(answers(&a2.ns, on_a, on_a, a2.ip6.into()), pods(&["b-1"]));
    let (vip_tcp, vip_udp) = (SocketAddr::new(B_ONLY_VIP.into(), 80), SocketAddr::new(B_ONLY_VIP.into(), 53));
    assert_eq!(answers(&a2.ns, vip_tcp, vip_udp, a2.ip6.into()), pods(&["b-1"]));
    assert_eq!(no_backend_rejects(&agent_a) - before, 2);
}

#[test]
fn internal_local_over_ipv6_keeps_pods_on_their_node_and_rejects_without_a_local_endpoint() {
    let Some(lab) = lab() else { return };
    let manifests = manifests(&lab);
    let agent_a = InProcessAgent::start_on(lab.node_a(), manifests.path()).unwrap();
    let _agent_b = InProcessAgent::start_on(lab.node_b(), manifests.path()).unwrap();
    let (a2, b2) = (lab.pod("a-2").unwrap(), lab.pod("b-2").unwrap());
    let (tcp, udp) = (SocketAddr::new(ITP_VIP.into(), 80), SocketAddr::new(ITP_VIP.into(), 53));
    assert_eq!(answers(&a2.ns, tcp, udp, a2.ip6.into()), pods(&["a-1"]));
    assert_eq!(answers(&b2.ns, tcp, udp, b2.ip6.into()), pods(&["b-1"]));

    // Node A has no endpoint of itp6-b-only: its pods are refused at once;
    // node B's pods are served.
    let (tcp, udp) = (SocketAddr::new(ITP_B_ONLY_VIP.into(), 80), SocketAddr::new(ITP_B_ONLY_VIP.into(), 53));
    let before = no_backend_rejects(&agent_a);
    assert_refused(&a2.ns, tcp, udp);
    assert_eq!(no_backend_rejects(&agent_a) - before, 2);
    assert_eq!(answers(&b2.ns, tcp, udp, b2.ip6.into()), pods(&["b-1"]));
}
