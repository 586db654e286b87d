//! IPv6 and dual-stack Services end to end: the dual-stack lab (every link
//! has an IPv4 and an IPv6 address), the agent given the node's IPv6
//! address beside its IPv4 one, and real TCP and UDP sockets in the
//! client and pod namespaces. The echo pods name themselves and the peer
//! they saw, so which pod answered, and from which client address, is
//! observable. SNAT over IPv6 across two nodes is in `snat.rs`.

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ingress_common::stats::REJECT_NO_BACKEND;
use ingress_tests::agent::{InProcessAgent, ManifestDir, NODE_NAME, dataplane_packets};
use ingress_tests::backend_choice::{NewFlow, fresh_choice};
use ingress_tests::packet::{TCP, UDP};
use ingress_tests::traffic::{connect_outcome, udp_exchange_outcome};
use ingress_tests::{ECHO_PORT, Lab, LabSpec, NetNs, Tally, TcpSession, UdpSession, is_root};
use ingress_tests::{tcp_request, udp_request};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::PinnedMaps;

const ECHO_PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];
/// Service `echo6`: IPv6 only, 80/TCP and 53/UDP, NodePorts, the echo pods.
const ECHO6_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0xa);
const ECHO6_NODE_PORT: u16 = 30086;
/// Service `dual`: both families, 80/TCP and 53/UDP, the echo pods.
const DUAL_VIP4: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 51);
const DUAL_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x33);
/// Service `nothing6`: IPv6 only, 80/TCP and 53/UDP, no endpoint.
const NOTHING6_VIP: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x63);
/// Long enough that a dropped SYN or datagram would show as a timeout,
/// never as a refusal.
const PATIENCE: Duration = Duration::from_secs(5);

fn service(name: &str, spec: &str) -> String {
    format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
}

/// The ports of the Services below: 80/TCP and 53/UDP to the echo port,
/// with `node_port` on both when given.
fn ports(node_port: Option<u16>) -> String {
    let node_port = node_port.map(|port| format!(", nodePort: {port}")).unwrap_or_default();
    format!(
        "[{{name: tcp, protocol: TCP, port: 80, targetPort: {ECHO_PORT}{node_port}}}, \
         {{name: udp, protocol: UDP, port: 53, targetPort: {ECHO_PORT}{node_port}}}]"
    )
}

/// An EndpointSlice of `service`, `family` ("IPv4" or "IPv6"), with
/// `(address, node)` endpoints on the echo port (TCP and UDP).
fn slice(name: &str, service: &str, family: &str, endpoints: &[(IpAddr, &str)]) -> String {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|(ip, node)| format!("{{addresses: [\"{ip}\"], conditions: {{ready: true}}, nodeName: {node}}}"))
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
         ports: [{{name: tcp, port: {ECHO_PORT}, protocol: TCP}}, {{name: udp, port: {ECHO_PORT}, protocol: UDP}}]\n\
         endpoints: [{}]\n---\n",
        endpoints.join(", ")
    )
}

fn single_stack_v6(vip: Ipv6Addr, node_port: Option<u16>) -> String {
    let kind = if node_port.is_some() { "NodePort" } else { "ClusterIP" };
    format!(
        "{{type: {kind}, ipFamilyPolicy: SingleStack, ipFamilies: [IPv6], clusterIP: \"{vip}\", clusterIPs: [\"{vip}\"], \
         ports: {}}}",
        ports(node_port)
    )
}

fn manifests(lab: &Lab) -> ManifestDir {
    let echo = |v6: bool| -> Vec<(IpAddr, &str)> {
        ECHO_PODS
            .iter()
            .map(|name| {
                let pod = lab.pod(name).unwrap();
                (if v6 { pod.ip6.into() } else { pod.ip.into() }, NODE_NAME)
            })
            .collect()
    };
    let dual = format!(
        "{{type: ClusterIP, ipFamilyPolicy: RequireDualStack, ipFamilies: [IPv4, IPv6], clusterIP: \"{DUAL_VIP4}\", \
         clusterIPs: [\"{DUAL_VIP4}\", \"{DUAL_VIP6}\"], ports: {}}}",
        ports(None)
    );
    let yaml = [
        service("echo6", &single_stack_v6(ECHO6_VIP, Some(ECHO6_NODE_PORT))),
        slice("echo6-1", "echo6", "IPv6", &echo(true)),
        service("dual", &dual),
        slice("dual-v4", "dual", "IPv4", &echo(false)),
        slice("dual-v6", "dual", "IPv6", &echo(true)),
        // No EndpointSlice at all.
        service("nothing6", &single_stack_v6(NOTHING6_VIP, None)),
    ]
    .concat();
    let dir = ManifestDir::empty().unwrap();
    dir.write("services.yaml", &yaml).unwrap();
    dir
}

/// The lab (three echo pods and a toolbox pod) with the agent on `manifests`.
struct V6Lab {
    // Dropped in this order: the agent before its manifests and its lab.
    agent: InProcessAgent,
    _manifests: ManifestDir,
    lab: Lab,
}

fn v6_lab() -> Option<V6Lab> {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return None;
    }
    let spec = LabSpec::examples();
    let lab = Lab::build(spec).expect("building the lab");
    let manifests = manifests(&lab);
    let agent = InProcessAgent::start(&lab, manifests.path()).expect("starting the agent");
    Some(V6Lab { agent, _manifests: manifests, lab })
}

fn toolbox(lab: &Lab) -> &NetNs {
    &lab.pod("toolbox").unwrap().ns
}

impl V6Lab {
    /// `count` requests from `from` to `to`, each on a new connection (TCP)
    /// or from a new source port (UDP); every one must be answered by the
    /// echo pod the programmed maps choose for its flow (the Maglev table
    /// read back), which saw `peer` as its client.
    fn tally(&self, from: &NetNs, to: SocketAddr, udp: bool, count: usize, peer: IpAddr) -> Tally {
        let maps = PinnedMaps::open(self.agent.pins()).and_then(|maps| maps.read()).expect("reading the pinned maps");
        let proto = if udp { UDP } else { TCP };
        let mut tally = Tally::new();
        for i in 0..count {
            let reply = if udp { udp_request(from, to) } else { tcp_request(from, to) };
            let reply = reply.unwrap_or_else(|e| panic!("request {i} to {to} (udp: {udp}): {e:#}"));
            assert_eq!(reply.peer.ip(), peer, "{} saw its caller through {to} as {}", reply.pod, reply.peer);
            let flow = NewFlow { client: peer, sport: reply.peer.port(), frontend: to.ip(), port: to.port(), proto };
            let chosen = fresh_choice(&maps, flow);
            let answered = self.lab.pod(&reply.pod).map(|pod| pod.ip_like(to.ip()));
            assert_eq!(answered, Some(chosen), "request {i} to {to} from port {} (udp: {udp}): {} answered", flow.sport, reply.pod);
            tally.add(&reply);
        }
        tally
    }
}

fn assert_all_echo_pods(tally: &Tally, what: &str) {
    println!("{what}:\n{tally}");
    for pod in ECHO_PODS {
        assert!(tally.count(pod) > 0, "{what}: {pod} got nothing:\n{tally}");
    }
    assert_eq!(tally.count("toolbox"), 0, "{what}: toolbox is no endpoint");
}

#[test]
fn an_ipv6_nodeport_and_clusterip_spread_tcp_and_udp_over_the_pods() {
    let Some(v6) = v6_lab() else { return };
    let lab = &v6.lab;
    let toolbox_ip6 = lab.pod("toolbox").unwrap().ip6;
    let node_port = SocketAddr::new(lab.node_ip6().into(), ECHO6_NODE_PORT);
    let cases = [
        ("NodePort from outside", lab.client(), node_port, IpAddr::from(lab.client_ip6())),
        ("ClusterIP from a pod", toolbox(lab), SocketAddr::new(ECHO6_VIP.into(), 80), toolbox_ip6.into()),
    ];
    for (name, from, to, peer) in cases {
        assert_all_echo_pods(&v6.tally(from, to, false, 60, peer), &format!("TCP {name}"));
        // A connected UDP socket only accepts datagrams from `to`: an answer
        // arriving at all proves the reply was reverse-translated.
        let udp_to = SocketAddr::new(to.ip(), if to.port() == 80 { 53 } else { to.port() });
        assert_all_echo_pods(&v6.tally(from, udp_to, true, 60, peer), &format!("UDP {name}"));
    }
}

#[test]
fn an_open_ipv6_connection_and_udp_flow_keep_their_pod() {
    let Some(v6) = v6_lab() else { return };
    let lab = &v6.lab;
    let node_port = SocketAddr::new(lab.node_ip6().into(), ECHO6_NODE_PORT);
    let mut tcp = TcpSession::open(lab.client(), node_port).unwrap();
    let udp = UdpSession::open(lab.client(), node_port).unwrap();
    let (tcp_pod, udp_pod) = (tcp.request().unwrap().pod, udp.request().unwrap().pod);
    for i in 0..10 {
        assert_eq!(tcp.request().unwrap().pod, tcp_pod, "TCP request {i} changed pods");
        assert_eq!(udp.request().unwrap().pod, udp_pod, "UDP request {i} changed pods");
    }
}

#[test]
fn a_dual_stack_service_answers_on_both_of_its_cluster_ips() {
    let Some(v6) = v6_lab() else { return };
    let lab = &v6.lab;
    let toolbox_pod = lab.pod("toolbox").unwrap();
    for vip in [IpAddr::from(DUAL_VIP4), IpAddr::from(DUAL_VIP6)] {
        // The pod is seen with its own address of the frontend's family.
        let peer = toolbox_pod.ip_like(vip);
        assert_all_echo_pods(&v6.tally(toolbox(lab), SocketAddr::new(vip, 80), false, 60, peer), &format!("TCP to {vip}"));
        assert_all_echo_pods(&v6.tally(toolbox(lab), SocketAddr::new(vip, 53), true, 60, peer), &format!("UDP to {vip}"));
    }
}

#[test]
fn an_ipv6_service_without_endpoints_refuses_a_pod_at_once() {
    let Some(v6) = v6_lab() else { return };
    let lab = &v6.lab;
    let before = dataplane_packets(lab.node(), REJECT_NO_BACKEND);
    let (error, took) = connect_outcome(toolbox(lab), SocketAddr::new(NOTHING6_VIP.into(), 80), PATIENCE).unwrap();
    assert_eq!(error, Some(ErrorKind::ConnectionRefused), "TCP: refused, not timed out (took {took:?})");
    assert!(took < Duration::from_secs(1), "TCP: the refusal took {took:?}");
    let udp = udp_exchange_outcome(toolbox(lab), SocketAddr::new(NOTHING6_VIP.into(), 53), PATIENCE).unwrap();
    assert_eq!(udp, Some(ErrorKind::ConnectionRefused), "UDP: the ICMPv6 port unreachable reaches the socket");
    assert_eq!(dataplane_packets(lab.node(), REJECT_NO_BACKEND) - before, 2, "one reject per SYN and per datagram");

    // The Services with endpoints beside it are untouched.
    let reply = tcp_request(toolbox(lab), SocketAddr::new(ECHO6_VIP.into(), 80)).unwrap();
    assert!(ECHO_PODS.contains(&reply.pod.as_str()), "{reply:?}");
}
