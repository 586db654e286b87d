//! The two-node lab set up for one address family, so that a behaviour across
//! nodes (traffic policies, SNAT) is one test body run for IPv4 and for IPv6:
//! Services and EndpointSlices of that family only, both agents running on
//! them, and the client-side helpers the tests assert with.
//!
//! Every Service of a fixture serves 80/TCP and 53/UDP (sharing its NodePort
//! when it has one) on the pods' [`ECHO_PORT`].

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ingress_userspace::dataplane::ebpf::uplink_hooks;
use ingress_userspace::dataplane::uplink_hook::UplinkHook;

use crate::agent::{InProcessAgent, ManifestDir};
use crate::lab::{CLIENT_IP, CLIENT_IP6, LabNode, Pod, TwoNodeLab, TwoNodeSpec};
use crate::netns::{NetNs, is_root, run_command};
use crate::traffic::{Reply, connect_outcome, tcp_request, udp_exchange_outcome, udp_request};
use crate::ECHO_PORT;

/// The Service port of every fixture Service over TCP, and over UDP.
pub const TCP_PORT: u16 = 80;
pub const UDP_PORT: u16 = 53;
/// New connections (and new UDP sockets) per check: enough to see every pod
/// a frontend may pick.
pub const CONNECTIONS: usize = 16;
/// Long enough that a dropped SYN or datagram would show as a timeout,
/// never as a refusal.
const PATIENCE: Duration = Duration::from_secs(5);
/// The client's end of node A's uplink on the segment bridge (named by the lab).
const NODE_A_SEGMENT_PORT: &str = "eth-a";

/// The address family a fixture's Services, frontends and endpoints use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The EndpointSlice `addressType` and the Service `ipFamilies` entry.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// A ClusterIP of this family: 10.96.0.`host` or fd00:10:96::`host`.
    pub fn cluster_ip(self, host: u8) -> IpAddr {
        match self {
            Family::V4 => Ipv4Addr::new(10, 96, 0, host).into(),
            Family::V6 => Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, host.into()).into(),
        }
    }

    pub fn client_ip(self) -> IpAddr {
        match self {
            Family::V4 => CLIENT_IP.into(),
            Family::V6 => CLIENT_IP6.into(),
        }
    }

    pub fn node_ip(self, node: &LabNode) -> IpAddr {
        match self {
            Family::V4 => node.ip().into(),
            Family::V6 => node.ip6().into(),
        }
    }

    pub fn pod_ip(self, pod: &Pod) -> IpAddr {
        match self {
            Family::V4 => pod.ip.into(),
            Family::V6 => pod.ip6.into(),
        }
    }
}

/// Defines `mod <body> { fn ipv4(), fn ipv6() }`, two tests calling
/// `body(Family::V4)` and `body(Family::V6)`, for each test body named.
#[macro_export]
macro_rules! per_family_tests {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[test]
            fn ipv4() {
                super::$body($crate::two_node::Family::V4)
            }

            #[test]
            fn ipv6() {
                super::$body($crate::two_node::Family::V6)
            }
        }
    )+};
}

/// Where a Service is reached over TCP and over UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frontend {
    pub tcp: SocketAddr,
    pub udp: SocketAddr,
}

impl Frontend {
    /// A NodePort (TCP and UDP share it) on `node_ip`.
    pub fn node_port(node_ip: IpAddr, port: u16) -> Frontend {
        Frontend { tcp: SocketAddr::new(node_ip, port), udp: SocketAddr::new(node_ip, port) }
    }

    /// A ClusterIP's Service ports.
    pub fn cluster_ip(ip: IpAddr) -> Frontend {
        Frontend { tcp: SocketAddr::new(ip, TCP_PORT), udp: SocketAddr::new(ip, UDP_PORT) }
    }
}

/// A single-stack Service of the fixture's family and its EndpointSlice.
#[derive(Debug, Clone, Copy)]
pub struct ServiceDef<'a> {
    pub name: &'a str,
    /// The last byte of its ClusterIP (see [`Family::cluster_ip`]).
    pub cluster_ip: u8,
    /// A NodePort Service when given, a ClusterIP one otherwise.
    pub node_port: Option<u16>,
    /// More spec fields, e.g. `"externalTrafficPolicy: Local"`; may be empty.
    pub fields: &'a str,
    /// The endpoints by pod name; each pod's node becomes its `nodeName`.
    pub endpoints: &'a [&'a str],
}

/// The YAML of `services` in `family`, endpoints addressed from `lab`.
pub fn manifests(family: Family, lab: &TwoNodeLab, services: &[ServiceDef]) -> String {
    services.iter().map(|def| service(family, def) + &slice(family, lab, def)).collect()
}

fn service(family: Family, def: &ServiceDef) -> String {
    let (kind, node_port) = match def.node_port {
        Some(port) => ("NodePort", format!(", nodePort: {port}")),
        None => ("ClusterIP", String::new()),
    };
    let vip = family.cluster_ip(def.cluster_ip);
    let fields = if def.fields.is_empty() { String::new() } else { format!("{}, ", def.fields) };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{type: {kind}, ipFamilyPolicy: SingleStack, ipFamilies: [{family}], clusterIP: \"{vip}\", \
         clusterIPs: [\"{vip}\"], {fields}ports: [\
         {{name: tcp, protocol: TCP, port: {TCP_PORT}, targetPort: {ECHO_PORT}{node_port}}}, \
         {{name: udp, protocol: UDP, port: {UDP_PORT}, targetPort: {ECHO_PORT}{node_port}}}]}}\n---\n",
        name = def.name,
        family = family.name(),
    )
}

fn slice(family: Family, lab: &TwoNodeLab, def: &ServiceDef) -> String {
    let endpoints: Vec<String> = def
        .endpoints
        .iter()
        .map(|name| {
            let (node, pod) = lab
                .nodes()
                .into_iter()
                .find_map(|node| node.pods().iter().find(|pod| pod.name == *name).map(|pod| (node, pod)))
                .unwrap_or_else(|| panic!("Service {}: no pod {name} in the two-node lab", def.name));
            format!("{{addresses: [\"{}\"], nodeName: {}}}", family.pod_ip(pod), node.name())
        })
        .collect();
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, \
         labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: {family}\n\
         ports: [{{name: tcp, port: {ECHO_PORT}, protocol: TCP}}, {{name: udp, port: {ECHO_PORT}, protocol: UDP}}]\n\
         endpoints: [{}]\n---\n",
        endpoints.join(", "),
        service = def.name,
        family = family.name(),
    )
}

/// The two-node lab, or None (with a note) when not root.
pub fn two_node_lab() -> Option<TwoNodeLab> {
    if !is_root() {
        eprintln!("skipped: needs root for network namespaces");
        return None;
    }
    Some(TwoNodeLab::build(TwoNodeSpec::default()).expect("building the two-node lab"))
}

/// The two-node lab with both agents running on Services of one family.
pub struct TwoNodeFixture {
    // Dropped in this order: the programs before their pins, manifests and lab.
    pub agent_a: InProcessAgent,
    pub agent_b: InProcessAgent,
    _manifests: ManifestDir,
    pub lab: TwoNodeLab,
    pub family: Family,
}

impl TwoNodeFixture {
    /// The lab, `services` in `family` written for both agents, and the agents
    /// started on them; None (with a note) when not root.
    pub fn start(family: Family, services: &[ServiceDef]) -> Option<TwoNodeFixture> {
        let lab = two_node_lab()?;
        let dir = ManifestDir::empty().expect("creating the manifest directory");
        dir.write("services.yaml", &manifests(family, &lab, services)).expect("writing the manifests");
        let agent_a = InProcessAgent::start_on(lab.node_a(), dir.path()).expect("starting the agent of node A");
        let agent_b = InProcessAgent::start_on(lab.node_b(), dir.path()).expect("starting the agent of node B");
        Some(TwoNodeFixture { agent_a, agent_b, _manifests: dir, lab, family })
    }

    /// Node A's uplink (a veth) is translated by TC ingress, and the
    /// client's end of it runs no XDP: a reject must reach a client as on a
    /// kind node, whose peer runs nothing.
    pub fn assert_uplink_answers_without_xdp_on_the_peer(&self) {
        let hooks = uplink_hooks(self.agent_a.pins()).expect("reading node A's link pins");
        assert!(!hooks.is_empty() && hooks.iter().all(|(_, hook)| *hook == UplinkHook::Tc), "node A's uplink hooks: {hooks:?}");
        let link = run_command(&mut self.client().exec("ip", &["-d", "link", "show", NODE_A_SEGMENT_PORT])).unwrap();
        assert!(!link.contains("xdp"), "an XDP program on the client's end of node A's uplink:\n{link}");
    }

    pub fn client(&self) -> &NetNs {
        self.lab.client()
    }

    pub fn client_ip(&self) -> IpAddr {
        self.family.client_ip()
    }

    pub fn pod(&self, name: &str) -> &Pod {
        self.lab.pod(name).unwrap_or_else(|| panic!("no pod {name} in the two-node lab"))
    }

    pub fn pod_ip(&self, name: &str) -> IpAddr {
        self.family.pod_ip(self.pod(name))
    }

    pub fn node_ip(&self, node: &LabNode) -> IpAddr {
        self.family.node_ip(node)
    }

    /// `port` on `node`'s address of the fixture's family.
    pub fn node_port(&self, node: &LabNode, port: u16) -> Frontend {
        Frontend::node_port(self.node_ip(node), port)
    }

    /// The ClusterIP of the fixture's family ending in `host`.
    pub fn cluster_ip(&self, host: u8) -> Frontend {
        Frontend::cluster_ip(self.family.cluster_ip(host))
    }
}

/// `CONNECTIONS` requests on new TCP connections and as many from new UDP
/// sockets, from `from` to `to`, all of which must be answered. The sockets
/// are connected: an answer from another address than the one called would
/// not be delivered.
pub fn replies(from: &NetNs, to: Frontend) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(2 * CONNECTIONS);
    for i in 0..CONNECTIONS {
        replies.push(tcp_request(from, to.tcp).unwrap_or_else(|e| panic!("connection {i} to {}: {e:#}", to.tcp)));
        replies.push(udp_request(from, to.udp).unwrap_or_else(|e| panic!("UDP request {i} to {}: {e:#}", to.udp)));
    }
    replies
}

/// The pods that answered [`replies`] from `from` to `to`, each of which
/// must have seen `expected_peer` as its client.
pub fn answers(from: &NetNs, to: Frontend, expected_peer: IpAddr) -> BTreeSet<String> {
    replies(from, to)
        .into_iter()
        .map(|reply| {
            assert_eq!(reply.peer.ip(), expected_peer, "the address {} saw through {to:?}", reply.pod);
            reply.pod
        })
        .collect()
}

pub fn pods(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// A TCP connect from `from` and a UDP exchange to `to` are refused at once
/// (a RST, an ICMP or ICMPv6 port unreachable), not timed out.
pub fn assert_refused(from: &NetNs, to: Frontend) {
    let (error, took) = connect_outcome(from, to.tcp, PATIENCE).unwrap();
    let tcp = to.tcp;
    assert_eq!(error, Some(ErrorKind::ConnectionRefused), "TCP to {tcp}: refused by a RST, not timed out (took {took:?})");
    assert!(took < Duration::from_secs(1), "TCP to {tcp}: the refusal took {took:?}");
    let udp_error = udp_exchange_outcome(from, to.udp, PATIENCE).unwrap();
    assert_eq!(udp_error, Some(ErrorKind::ConnectionRefused), "UDP to {}: the port unreachable reaches the socket", to.udp);
}
