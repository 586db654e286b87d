//! The lab: a client, one node and its pods, each in its own namespace.
//! Dual-stack: every link has an IPv4 and an IPv6 address.
//!
//! ```text
//!  client ns                 node ns                         pod ns (i = 1..)
//!  eth0 198.51.100.2 ─veth─ uplink0 198.51.100.1
//!       2001:db8::2                 2001:db8::1
//!                           veth-<pod> 10.244.i.1 ─veth─ eth0 10.244.i.2
//!                                fd00:10:244:i::1             fd00:10:244:i::2
//! ```
//!
//! Every pod runs an [`EchoServer`] on [`ECHO_PORT`] (TCP and UDP, both
//! families). IPv6 addresses skip duplicate address detection (`nodad`, and
//! `accept_dad` off in every namespace before its links exist), so they are
//! usable at once; the nodes forward IPv6 like IPv4.
//!
//! [`TwoNodeLab`] wires two such nodes to one segment, for the traffic
//! policies and the second hop:
//!
//! ```text
//!  client ns: br0 198.51.100.2 2001:db8::2, ports eth-a and eth-b
//!    eth-a ─veth─ node-a uplink0 198.51.100.1 2001:db8::1, pods 10.244.i.2 fd00:10:244:i::2,
//!                 routes 10.245.0.0/16 and fd00:10:245::/48 via node-b
//!    eth-b ─veth─ node-b uplink0 198.51.100.3 2001:db8::3, pods 10.245.i.2 fd00:10:245:i::2,
//!                 routes 10.244.0.0/16 and fd00:10:244::/48 via node-a
//! ```

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

use anyhow::{Context, Result, ensure};

use crate::echo::{EchoServer, HttpAnswers};
use crate::netns::{NetNs, run_command};

pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// The second node of a [`TwoNodeLab`] (the first one has [`NODE_IP`]).
pub const NODE_B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 3);
/// The IPv6 addresses of the client-node segment (2001:db8::/64, RFC 3849).
pub const CLIENT_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
pub const NODE_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
pub const NODE_B_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
/// Prefix length of the client-node segment.
const SEGMENT6_PREFIX: u8 = 64;
/// The Kubernetes node names of a [`TwoNodeLab`]'s nodes, for `nodeName`.
pub const NODE_A_NAME: &str = "node-a";
pub const NODE_B_NAME: &str = "node-b";
/// Second octet of the pod addresses of the single node and of node A
/// (10.244.0.0/16), and of node B (10.245.0.0/16).
const POD_NET_A: PodNet = PodNet { v4: 244, v6: 0x244 };
const POD_NET_B: PodNet = PodNet { v4: 245, v6: 0x245 };
/// The bridge in the client namespace that joins the nodes' uplinks.
const SEGMENT_BRIDGE: &str = "br0";
pub const UPLINK_IFACE: &str = "uplink0";
pub const ECHO_PORT: u16 = 8080;

/// Interface names are limited to 15 bytes (IFNAMSIZ - 1).
const MAX_IFACE_LEN: usize = 15;
const HOST_IFACE_PREFIX: &str = "veth-";

/// A node's pod networks: 10.<v4>.0.0/16 and fd00:10:<v6>::/48, pod i
/// taking 10.<v4>.i.0/24 and fd00:10:<v6>:i::/64.
#[derive(Debug, Clone, Copy)]
struct PodNet {
    v4: u8,
    v6: u16,
}

impl PodNet {
    /// The address of host `host` (1: the node's side, 2: the pod) of pod `index`'s link.
    fn v4_host(self, index: u8, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, self.v4, index, host)
    }

    fn v6_host(self, index: u8, host: u16) -> Ipv6Addr {
        Ipv6Addr::new(0xfd00, 0x10, self.v6, u16::from(index), 0, 0, 0, host)
    }

    /// The routes to all of this node's pods: (IPv4, IPv6) in CIDR notation.
    fn routes(self) -> (String, String) {
        (format!("10.{}.0.0/16", self.v4), format!("fd00:10:{:x}::/48", self.v6))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabSpec {
    pub pods: Vec<String>,
}

impl Default for LabSpec {
    fn default() -> Self {
        LabSpec {
            pods: ["pod-a", "pod-b", "pod-c"].map(String::from).to_vec(),
        }
    }
}

impl LabSpec {
    /// The lab of `cargo xtask lab`: the three echo pods that back the
    /// examples' Service (`deploy/examples`) and a toolbox pod that calls it.
    pub fn examples() -> LabSpec {
        LabSpec { pods: ["pod-a", "pod-b", "pod-c", "toolbox"].map(String::from).to_vec() }
    }

    fn validate(&self) -> Result<()> {
        validate_pods(&self.pods, &mut HashSet::new())
    }
}

/// One node's pods: 1 to 254 (pod i gets 10.<net>.i.0/24), names unique (also
/// across nodes, as `seen` collects them) and short enough for the host-side
/// interface name.
fn validate_pods<'a>(pods: &'a [String], seen: &mut HashSet<&'a String>) -> Result<()> {
    ensure!((1..=254).contains(&pods.len()), "a node needs 1 to 254 pods, got {}", pods.len());
    for pod in pods {
        ensure!(seen.insert(pod), "pod name {pod:?} is used twice");
        ensure!(
            HOST_IFACE_PREFIX.len() + pod.len() <= MAX_IFACE_LEN,
            "pod name {pod:?} is too long: at most {} characters",
            MAX_IFACE_LEN - HOST_IFACE_PREFIX.len()
        );
    }
    Ok(())
}

#[derive(Debug)]
pub struct Pod {
    pub name: String,
    pub ns: NetNs,
    pub ip: Ipv4Addr,
    /// The pod's IPv6 address (fd00:10:<net>:<i>::2).
    pub ip6: Ipv6Addr,
    /// The pod's veth peer in the node namespace.
    pub host_iface: String,
}

impl Pod {
    /// Where the pod's echo server listens.
    pub fn echo_addr(&self) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, ECHO_PORT)
    }

    /// Where the pod's echo server listens over IPv6.
    pub fn echo_addr6(&self) -> SocketAddrV6 {
        SocketAddrV6::new(self.ip6, ECHO_PORT, 0, 0)
    }

    /// The pod's address of `ip`'s family.
    pub fn ip_like(&self, ip: IpAddr) -> IpAddr {
        if ip.is_ipv4() { self.ip.into() } else { self.ip6.into() }
    }
}

pub struct Lab {
    // Fields drop in declaration order: the echo servers must close their
    // sockets before the namespaces they live in are deleted.
    _echo: Vec<EchoServer>,
    pods: Vec<Pod>,
    node: NetNs,
    client: NetNs,
}

impl Lab {
    /// Builds the whole topology; on error everything created so far is removed.
    pub fn build(spec: LabSpec) -> Result<Lab> {
        spec.validate()?;
        let client = NetNs::create("client")?;
        no_dad(&client)?;
        let node = NetNs::create("node")?;
        configure_node(&node)?;
        connect_client(&client, &node)?;
        let pods = add_pods(&node, POD_NET_A, &spec.pods)?;
        let echo = spawn_echo(&pods)?;
        Ok(Lab {
            _echo: echo,
            pods,
            node,
            client,
        })
    }

    pub fn client(&self) -> &NetNs {
        &self.client
    }

    pub fn node(&self) -> &NetNs {
        &self.node
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.name == name)
    }

    pub fn node_ip(&self) -> Ipv4Addr {
        NODE_IP
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        CLIENT_IP
    }

    pub fn node_ip6(&self) -> Ipv6Addr {
        NODE_IP6
    }

    pub fn client_ip6(&self) -> Ipv6Addr {
        CLIENT_IP6
    }

    /// Every address of the node (NodePorts are served on each).
    pub fn node_ips(&self) -> [IpAddr; 2] {
        [NODE_IP.into(), NODE_IP6.into()]
    }

    pub fn uplink_iface(&self) -> &str {
        UPLINK_IFACE
    }

    /// The node-side interfaces of all pods, in pod order.
    pub fn pod_ifaces(&self) -> Vec<&str> {
        self.pods.iter().map(|p| p.host_iface.as_str()).collect()
    }

    /// Names of all namespaces of the lab, e.g. to print for manual inspection.
    pub fn namespaces(&self) -> Vec<&str> {
        [&self.client, &self.node]
            .into_iter()
            .chain(self.pods.iter().map(|p| &p.ns))
            .map(NetNs::name)
            .collect()
    }
}

/// The pods of each node of a [`TwoNodeLab`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwoNodeSpec {
    pub node_a: Vec<String>,
    pub node_b: Vec<String>,
}

impl Default for TwoNodeSpec {
    fn default() -> Self {
        TwoNodeSpec {
            node_a: ["a-1", "a-2"].map(String::from).to_vec(),
            node_b: ["b-1", "b-2"].map(String::from).to_vec(),
        }
    }
}

impl TwoNodeSpec {
    fn validate(&self) -> Result<()> {
        let mut seen = HashSet::new();
        validate_pods(&self.node_a, &mut seen)?;
        validate_pods(&self.node_b, &mut seen)
    }
}

/// One node of a [`TwoNodeLab`]: its namespace, its Kubernetes name and
/// address, and its pods.
#[derive(Debug)]
pub struct LabNode {
    // Pods first: their namespaces (and veths) go before the node's.
    pods: Vec<Pod>,
    ns: NetNs,
    name: &'static str,
    ip: Ipv4Addr,
    ip6: Ipv6Addr,
}

impl LabNode {
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }

    /// The `nodeName` of its endpoints.
    pub fn name(&self) -> &str {
        self.name
    }

    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    pub fn ip6(&self) -> Ipv6Addr {
        self.ip6
    }

    /// Every address of the node (NodePorts are served on each).
    pub fn ips(&self) -> [IpAddr; 2] {
        [self.ip.into(), self.ip6.into()]
    }

    pub fn uplink_iface(&self) -> &str {
        UPLINK_IFACE
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The node-side interfaces of its pods, in pod order.
    pub fn pod_ifaces(&self) -> Vec<&str> {
        self.pods.iter().map(|p| p.host_iface.as_str()).collect()
    }
}

/// Two nodes on one segment with the client; each routes the other's pod
/// network via the other's address, as a cluster's pod network would.
pub struct TwoNodeLab {
    // Echo servers first: their sockets close before their namespaces go.
    _echo: Vec<EchoServer>,
    a: LabNode,
    b: LabNode,
    // Last: the bridge and the client ends of the uplinks go with it.
    client: NetNs,
}

impl TwoNodeLab {
    /// Builds the whole topology; on error everything created so far is removed.
    pub fn build(spec: TwoNodeSpec) -> Result<TwoNodeLab> {
        spec.validate()?;
        let client = NetNs::create("client")?;
        no_dad(&client)?;
        // Without multicast snooping the bridge floods neighbour solicitations
        // to every port, whatever MLD reports it has or has not seen.
        client.ip(&["link", "add", SEGMENT_BRIDGE, "type", "bridge", "mcast_snooping", "0"])?;
        configure_client(&client, SEGMENT_BRIDGE)?;
        let a = add_node(&client, NODE_A_NAME, (NODE_IP, NODE_IP6), POD_NET_A, &spec.node_a, "eth-a")?;
        let b = add_node(&client, NODE_B_NAME, (NODE_B_IP, NODE_B_IP6), POD_NET_B, &spec.node_b, "eth-b")?;
        for (from, to, net) in [(&a, &b, POD_NET_B), (&b, &a, POD_NET_A)] {
            let (v4, v6) = net.routes();
            from.ns.ip(&["route", "add", &v4, "via", &to.ip.to_string()])?;
            from.ns.ip(&["-6", "route", "add", &v6, "via", &to.ip6.to_string()])?;
        }
        let echo = spawn_echo(a.pods.iter().chain(&b.pods))?;
        Ok(TwoNodeLab { _echo: echo, a, b, client })
    }

    pub fn client(&self) -> &NetNs {
        &self.client
    }

    pub fn client_ip(&self) -> Ipv4Addr {
        CLIENT_IP
    }

    pub fn client_ip6(&self) -> Ipv6Addr {
        CLIENT_IP6
    }

    pub fn node_a(&self) -> &LabNode {
        &self.a
    }

    pub fn node_b(&self) -> &LabNode {
        &self.b
    }

    pub fn nodes(&self) -> [&LabNode; 2] {
        [&self.a, &self.b]
    }

    pub fn pod(&self, name: &str) -> Option<&Pod> {
        self.a.pods.iter().chain(&self.b.pods).find(|p| p.name == name)
    }

    /// Names of all namespaces of the lab, e.g. to print for manual inspection.
    pub fn namespaces(&self) -> Vec<&str> {
        let nodes = [&self.a, &self.b];
        let pods = nodes.into_iter().flat_map(|node| node.pods.iter().map(|p| &p.ns));
        [&self.client, &self.a.ns, &self.b.ns].into_iter().chain(pods).map(NetNs::name).collect()
    }
}

/// A node namespace with its uplink plugged into the client's bridge as
/// `client_port`, and its pods on `net`.
fn add_node(
    client: &NetNs,
    name: &'static str,
    (ip, ip6): (Ipv4Addr, Ipv6Addr),
    net: PodNet,
    pods: &[String],
    client_port: &str,
) -> Result<LabNode> {
    let ns = NetNs::create(name)?;
    configure_node(&ns)?;
    add_uplink(client, &ns, (ip, ip6), client_port)?;
    client.ip(&["link", "set", client_port, "master", SEGMENT_BRIDGE, "up"])?;
    let pods = add_pods(&ns, net, pods).with_context(|| format!("setting up the pods of {name}"))?;
    Ok(LabNode { pods, ns, name, ip, ip6 })
}

/// No duplicate address detection in `ns`: set before any of its links
/// exists, so that every link (and its link-local address) inherits it
/// from "default" and neighbour discovery works at once.
fn no_dad(ns: &NetNs) -> Result<()> {
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0")?;
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0")
}

fn configure_node(node: &NetNs) -> Result<()> {
    no_dad(node)?;
    node.ip(&["link", "set", "lo", "up"])?;
    node.sysctl("net.ipv4.ip_forward", "1")?;
    node.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    // Set before any interface exists so that new interfaces inherit 0 from
    // "default"; load-balanced replies take paths strict rp_filter rejects.
    node.sysctl("net.ipv4.conf.all.rp_filter", "0")?;
    node.sysctl("net.ipv4.conf.default.rp_filter", "0")
}

/// `ip addr add` of an IPv6 address without duplicate address detection.
fn add_addr6(ns: &NetNs, addr: Ipv6Addr, prefix_len: u8, dev: &str) -> Result<()> {
    ns.ip(&["-6", "addr", "add", &format!("{addr}/{prefix_len}"), "dev", dev, "nodad"])
}

/// The node's uplink with its addresses, its peer `client_port` in the
/// client namespace (created directly between the two: nothing appears on the host).
fn add_uplink(client: &NetNs, node: &NetNs, (node_ip, node_ip6): (Ipv4Addr, Ipv6Addr), client_port: &str) -> Result<()> {
    node.ip(&["link", "add", UPLINK_IFACE, "type", "veth", "peer", "name", client_port, "netns", client.name()])?;
    node.ip(&["addr", "add", &format!("{node_ip}/24"), "dev", UPLINK_IFACE])?;
    add_addr6(node, node_ip6, SEGMENT6_PREFIX, UPLINK_IFACE)?;
    node.ip(&["link", "set", UPLINK_IFACE, "up"])
}

/// The client's addresses on `iface`, default routes via the (first) node.
fn configure_client(client: &NetNs, iface: &str) -> Result<()> {
    client.ip(&["link", "set", "lo", "up"])?;
    client.ip(&["addr", "add", &format!("{CLIENT_IP}/24"), "dev", iface])?;
    add_addr6(client, CLIENT_IP6, SEGMENT6_PREFIX, iface)?;
    client.ip(&["link", "set", iface, "up"])?;
    client.ip(&["route", "add", "default", "via", &NODE_IP.to_string()])?;
    client.ip(&["-6", "route", "add", "default", "via", &NODE_IP6.to_string()])?;
    // A veth would otherwise hand over packets with partial checksums; the
    // XDP program on the uplink needs complete ones, as a real wire carries.
    run_command(&mut client.exec("ethtool", &["-K", iface, "tx", "off"]))
        .context("disabling TX checksum offload in the client (is ethtool installed?)")?;
    Ok(())
}

fn connect_client(client: &NetNs, node: &NetNs) -> Result<()> {
    add_uplink(client, node, (NODE_IP, NODE_IP6), "eth0")?;
    configure_client(client, "eth0")
}

/// Pods `1..` of a node, addressed `10.<net>.<i>.2/24` and `fd00:10:<net>:<i>::2/64`.
fn add_pods(node: &NetNs, net: PodNet, names: &[String]) -> Result<Vec<Pod>> {
    let mut pods = Vec::with_capacity(names.len());
    for (i, name) in (1..=254u8).zip(names) {
        pods.push(add_pod(node, net, i, name).with_context(|| format!("setting up pod {name}"))?);
    }
    Ok(pods)
}

fn spawn_echo<'a>(pods: impl IntoIterator<Item = &'a Pod>) -> Result<Vec<EchoServer>> {
    pods.into_iter().map(|pod| EchoServer::spawn(&pod.ns, &pod.name, ECHO_PORT, HttpAnswers::CloseAfterEach)).collect()
}

fn add_pod(node: &NetNs, net: PodNet, index: u8, name: &str) -> Result<Pod> {
    let ns = NetNs::create(name)?;
    no_dad(&ns)?;
    let host_iface = format!("{HOST_IFACE_PREFIX}{name}");
    let (ip, gateway) = (net.v4_host(index, 2), net.v4_host(index, 1));
    let (ip6, gateway6) = (net.v6_host(index, 2), net.v6_host(index, 1));

    ns.ip(&[
        "link",
        "add",
        "eth0",
        "type",
        "veth",
        "peer",
        "name",
        &host_iface,
        "netns",
        node.name(),
    ])?;
    node.ip(&["addr", "add", &format!("{gateway}/24"), "dev", &host_iface])?;
    add_addr6(node, gateway6, 64, &host_iface)?;
    node.ip(&["link", "set", &host_iface, "up"])?;

    ns.ip(&["link", "set", "lo", "up"])?;
    ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
    add_addr6(&ns, ip6, 64, "eth0")?;
    ns.ip(&["link", "set", "eth0", "up"])?;
    ns.ip(&["route", "add", "default", "via", &gateway.to_string()])?;
    ns.ip(&["-6", "route", "add", "default", "via", &gateway6.to_string()])?;
    Ok(Pod {
        name: name.to_owned(),
        ns,
        ip,
        ip6,
        host_iface,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pods: &[&str]) -> LabSpec {
        LabSpec {
            pods: pods.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn spec_validation() {
        assert!(LabSpec::default().validate().is_ok());
        assert!(spec(&[]).validate().is_err());
        assert!(spec(&["pod-a", "pod-a"]).validate().is_err());
        assert!(spec(&["pod-abcdef"]).validate().is_ok());
        assert!(spec(&["eleven-char"]).validate().is_err());
    }

    #[test]
    fn two_node_spec_validation() {
        let names = |pods: &[&str]| pods.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        let two = |a: &[&str], b: &[&str]| TwoNodeSpec { node_a: names(a), node_b: names(b) };
        assert!(TwoNodeSpec::default().validate().is_ok());
        assert!(two(&["x"], &["x"]).validate().is_err(), "a name on both nodes");
        assert!(two(&["x"], &[]).validate().is_err(), "a node without pods");
        assert!(two(&["x"], &["eleven-char"]).validate().is_err());
    }
}
