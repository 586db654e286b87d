//! Host routing (`--host-routing on`): the programs route a Service's packets
//! themselves, past the node's IP stack. Real TCP and UDP through a lab whose
//! node drops everything it forwards (FORWARD DROP in iptables and
//! ip6tables): with host routing on, the Service answers both ways, over
//! IPv4 and IPv6, from the client (NodePort, ClusterIP) and from a pod of the
//! node, while a pod addressed directly stays unreachable (the rule is in
//! force). Without host routing the same rule stops the Service too. On two
//! nodes, with the rule on node A: a client's flow through a NodePort of A
//! to a pod of B (source-translated by A) and a pod of A calling a Service
//! whose pod is on B, where the reply enters A by its uplink. And on a
//! crafted frame: `lb_tc_out` lets a reply routed to its uplink go as it is.
//! And the interfaces listed for host routing follow the pod veths, and a
//! flow the node source-translates to a pod it reaches locally is
//! translated in every packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use aya::maps::{Array, Map, MapData};

use ingress_common::maps::{
    HOST_IFACE_POD, HOST_IFACE_UPLINK, HOST_IFACES_MAP, HOST_ROUTING_ON, HOST_ROUTING_SWITCH_INDEX, HostIface, ROUTED_REPLY_MARK,
};
use ingress_common::stats::{HOST_ROUTED_TO_POD, HOST_ROUTED_TO_UPLINK};
use ingress_tests::bench::manifests::{ManifestFormat, ManifestSet};
use ingress_tests::bench::services::{MEASURED_NODE_PORT, TARGET_PORT, generate};
use ingress_tests::checks::assert_checksums;
use ingress_tests::packet::{self, ACK, Frame, SYN};
use ingress_tests::prog_run::{self, Entry, Programmed, TC_ACT_OK, add_tcp_and_udp_service, local_backends};
use ingress_userspace::dataplane::ebpf::TC_OUT_PROGRAM;
use ingress_userspace::dataplane::host_routing::HostRouting;
use ingress_userspace::model::DesiredState;
use ingress_tests::agent::{InProcessAgent, ManifestDir, examples_lab};
use ingress_tests::lab::{NODE_IP, NODE_IP6};
use ingress_tests::netns::run_command;
use ingress_tests::per_family_tests;
use ingress_tests::traffic::{tcp_request_timeout, udp_request_timeout};
use ingress_tests::two_node::{Family, Frontend, ServiceDef, answers, manifests, pods, two_node_lab};
use ingress_tests::{ECHO_PORT, NetNs, is_root};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const CLUSTER_IP6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x10, 0x96, 0, 0, 0, 0, 0x10);
const ECHO_PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];
/// The crafted frames' client and pods.
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const POD_IPS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2)];
/// A mark someone else sets: kube-proxy's masquerade bit.
const KUBE_PROXY_MASQ_MARK: u32 = 0x4000;
/// Enough for an answer through the lab; a dropped packet is not retried
/// within it.
const PATIENCE: Duration = Duration::from_secs(2);
/// Above every interface index of a lab's node.
const LAB_INDICES: u32 = 64;
/// Several of the agent's interface scans.
const UNLIST_PATIENCE: Duration = Duration::from_secs(10);

/// The node drops every packet it would forward, in both families.
fn drop_forwarded(node: &NetNs) {
    for tool in ["iptables", "ip6tables"] {
        run_command(&mut node.exec(tool, &["-w", "-I", "FORWARD", "-j", "DROP"]))
            .unwrap_or_else(|e| panic!("{tool}: {e:#}"));
    }
}

/// The Service's frontends as the client and a pod of the node reach them.
fn frontends() -> Vec<(IpAddr, u16, u16)> {
    vec![
        (NODE_IP.into(), 30080, 30053),
        (NODE_IP6.into(), 30080, 30053),
        (CLUSTER_IP.into(), 80, 53),
        (CLUSTER_IP6.into(), 80, 53),
    ]
}

/// Answers over TCP and UDP from every frontend, from `from`; panics naming
/// the first that fails.
fn assert_answered(from: &NetNs, who: &str) {
    for (addr, tcp_port, udp_port) in frontends() {
        for i in 0..5 {
            let tcp = tcp_request_timeout(from, SocketAddr::new(addr, tcp_port), PATIENCE)
                .unwrap_or_else(|e| panic!("{who}: TCP {i} to {addr}:{tcp_port}: {e:#}"));
            assert!(ECHO_PODS.contains(&tcp.pod.as_str()), "{who}: answered by {}", tcp.pod);
            let udp = udp_request_timeout(from, SocketAddr::new(addr, udp_port), PATIENCE)
                .unwrap_or_else(|e| panic!("{who}: UDP {i} to {addr}:{udp_port}: {e:#}"));
            assert!(ECHO_PODS.contains(&udp.pod.as_str()), "{who}: answered by {}", udp.pod);
        }
    }
}

#[test]
fn with_host_routing_a_service_is_answered_past_a_node_that_forwards_nothing() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start_configured(&lab, manifests.path(), |config| config.host_routing = HostRouting::On).unwrap();
    drop_forwarded(lab.node());

    let pod_a = lab.pod("pod-a").unwrap();
    let direct = SocketAddr::new(pod_a.ip.into(), ECHO_PORT);
    assert!(
        tcp_request_timeout(lab.client(), direct, PATIENCE).is_err(),
        "the node forwarded a packet to a pod addressed directly: the DROP rule is not in force"
    );

    assert_answered(lab.client(), "client");
    // The last packets of the client's connections (a pod's ACK of the
    // client's FIN) may leave after the last answer was read.
    let to_uplink = settled(|| agent.packets(HOST_ROUTED_TO_UPLINK));
    let to_pod = agent.packets(HOST_ROUTED_TO_POD);
    // 4 frontends x 5 x (TCP: SYN, ACK, request, FIN at least; UDP: 1).
    assert!(to_pod >= 100, "packets routed into pods: {to_pod}");
    assert!(to_uplink >= 80, "answers routed out of the uplink: {to_uplink}");

    assert_answered(&lab.pod("toolbox").unwrap().ns, "toolbox pod");
    assert!(agent.packets(HOST_ROUTED_TO_POD) >= to_pod + 200, "a pod's calls and their answers both go pod to pod");
    assert_eq!(agent.packets(HOST_ROUTED_TO_UPLINK), to_uplink, "nothing of the pod's calls left by the uplink");
}

/// `count` once it has not changed for a fifth of a second (at most five
/// seconds of waiting).
fn settled(count: impl Fn() -> u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = count();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = count();
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn without_host_routing_the_nodes_forward_rules_apply_to_services() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start_configured(&lab, manifests.path(), |config| config.host_routing = HostRouting::Off).unwrap();
    drop_forwarded(lab.node());
    let nodeport = SocketAddr::new(NODE_IP.into(), 30080);
    assert!(tcp_request_timeout(lab.client(), nodeport, PATIENCE).is_err(), "a NodePort answered past FORWARD DROP");
    assert_eq!(agent.packets(HOST_ROUTED_TO_POD) + agent.packets(HOST_ROUTED_TO_UPLINK), 0);
}

/// Endpoints the agent takes for another node's (their EndpointSlice names
/// no node), though this node reaches them through its pod veths: the
/// agent source-translates a client's flow to them, in `lb_tc_out` where
/// it leaves. Every packet of a flow must get that, the first one to a pod
/// whose neighbour entry the node has yet to resolve (sent through the
/// neighbour layer and the veth's egress) as much as the next ones (which a
/// redirect into the pod would send past it). Before host routing kept
/// such flows off pod veths, the first request to each pod was reset: the
/// pod saw the SYN from the node's address and the ACK from the client's.
#[test]
fn a_flow_the_node_source_translates_is_translated_in_every_packet() {
    let Some((lab, _)) = examples_lab() else { return };
    let pods: Vec<Ipv4Addr> = ["pod-a", "pod-b"].iter().map(|pod| lab.pod(pod).unwrap().ip).collect();
    let services = generate(1, &pods, None).unwrap();
    let manifests = ManifestSet::write_as(&services, TARGET_PORT, ManifestFormat::Json).unwrap();
    let _agent = InProcessAgent::start_configured(&lab, manifests.path(), |config| config.host_routing = HostRouting::On).unwrap();
    let node_port = SocketAddr::new(NODE_IP.into(), MEASURED_NODE_PORT);
    for i in 0..10 {
        let reply = tcp_request_timeout(lab.client(), node_port, PATIENCE).unwrap_or_else(|e| panic!("request {i}: {e:#}"));
        assert_eq!(reply.peer.ip(), IpAddr::from(NODE_IP), "request {i} reached {} from another address than the node's", reply.pod);
    }
}

/// A Service with the defaults (externalTrafficPolicy: Cluster), its only
/// endpoint b-1 on node B.
const ON_B_VIP: u8 = 0x40;
const ON_B_NODE_PORT: u16 = 30090;

per_family_tests!(flows_between_nodes_are_routed_both_ways_past_a_node_that_forwards_nothing);

fn flows_between_nodes_are_routed_both_ways_past_a_node_that_forwards_nothing(family: Family) {
    let Some(lab) = two_node_lab() else { return };
    let dir = ManifestDir::empty().unwrap();
    let on_b = ServiceDef { name: "on-b", cluster_ip: ON_B_VIP, node_port: Some(ON_B_NODE_PORT), fields: "", endpoints: &["b-1"] };
    dir.write("services.yaml", &manifests(family, &lab, &[on_b])).unwrap();
    let host_routed = |config: &mut ingress_userspace::agent::AgentConfig| config.host_routing = HostRouting::On;
    let agent_a = InProcessAgent::start_on_configured(lab.node_a(), dir.path(), host_routed).unwrap();
    let _agent_b = InProcessAgent::start_on_configured(lab.node_b(), dir.path(), host_routed).unwrap();
    drop_forwarded(lab.node_a().ns());

    let node_a_ip = family.node_ip(lab.node_a());
    let node_port = Frontend::node_port(node_a_ip, ON_B_NODE_PORT);
    assert_eq!(answers(lab.client(), node_port, node_a_ip), pods(&["b-1"]), "b-1 sees node A as the client");
    let routed_out = agent_a.packets(HOST_ROUTED_TO_UPLINK);
    assert!(routed_out > 0, "node A routed the flows to b-1 and their answers out of its uplink");

    let a1 = lab.pod("a-1").unwrap();
    let cluster_ip = Frontend::cluster_ip(family.cluster_ip(ON_B_VIP));
    assert_eq!(answers(&a1.ns, cluster_ip, family.pod_ip(a1)), pods(&["b-1"]), "b-1 sees a-1 as the client");
    assert!(agent_a.packets(HOST_ROUTED_TO_POD) > 0, "node A routed b-1's answers into a-1");
}

/// `lb_tc_out` where a reply the programs translated and routed out of an
/// uplink arrives (BPF_PROG_TEST_RUN, in a namespace of its own, whose FIB
/// routes nothing): marked `ROUTED_REPLY_MARK`, the reply goes as it is and
/// unmarked. Unmarked, marked otherwise (kept), or with host routing off,
/// the same reply is translated as always.
#[test]
fn a_reply_routed_to_an_uplink_leaves_untouched_and_unmarked() {
    if !is_root() {
        eprintln!("skipped: BPF_PROG_TEST_RUN needs root");
        return;
    }
    let ns = NetNs::create("routed-reply").unwrap();
    ns.run(|| {
        for host_routed in [true, false] {
            let mut desired = DesiredState::default();
            add_tcp_and_udp_service(&mut desired, CLUSTER_IP, "echo", &local_backends(&POD_IPS, 8080));
            let load = if host_routed { Programmed::load_host_routed } else { Programmed::load };
            let mut p = load("routed-reply", &desired).expect("root");
            let (_, to_backend) = p.run(Entry::UplinkTc, &Frame::tcp(CLIENT_IP, 40000, CLUSTER_IP, 80, SYN).build());
            let backend = packet::read(&to_backend).dst;
            let reply = Frame::tcp(backend, 8080, CLIENT_IP, 40000, SYN | ACK).build();
            let assert_translated = |(verdict, out, mark_out): (u32, Vec<u8>, u32), mark: u32| {
                let seen = packet::read(&out);
                assert_eq!((verdict, mark_out), (TC_ACT_OK, mark), "mark {mark:#x}, host routing {host_routed}");
                assert_eq!((seen.src, seen.sport, seen.dst, seen.dport), (CLUSTER_IP, 80, CLIENT_IP, 40000));
                assert_checksums(&seen);
            };
            let routed = prog_run::tc_marked(&mut p.dataplane, TC_OUT_PROGRAM, &reply, ROUTED_REPLY_MARK);
            if host_routed {
                assert_eq!(routed, (TC_ACT_OK, reply.clone(), 0), "a routed reply");
            } else {
                assert_translated(routed, ROUTED_REPLY_MARK);
            }
            for mark in [0, KUBE_PROXY_MASQ_MARK] {
                assert_translated(prog_run::tc_marked(&mut p.dataplane, TC_OUT_PROGRAM, &reply, mark), mark);
            }
        }
    })
    .unwrap();
}

/// The entries of `lb_host_iface_kinds` over the indices a fresh lab's node
/// can have: index -> kind, the switch (index 0) among them.
fn listed_interfaces(pins: &Path) -> BTreeMap<u32, u32> {
    let data = MapData::from_pin(pins.join(HOST_IFACES_MAP)).expect("the pinned lb_host_iface_kinds");
    let map: Array<MapData, HostIface> = Map::Array(data).try_into().unwrap();
    (0..LAB_INDICES)
        .map(|ifindex| (ifindex, map.get(&ifindex, 0).unwrap().kind))
        .filter(|&(_, kind)| kind != 0)
        .collect()
}

/// The agent lists the uplink and every pod veth it attached to, and unlists
/// a pod veth once it is gone (its index may be reused by an interface the
/// agent never attached to), keeping the others.
#[test]
fn a_pod_veth_that_goes_is_unlisted_for_host_routing() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start_configured(&lab, manifests.path(), |config| config.host_routing = HostRouting::On).unwrap();
    let index_of = |iface: &str| {
        let iface = iface.to_owned();
        lab.node().run(move || nix::net::if_::if_nametoindex(iface.as_str())).unwrap().unwrap()
    };
    let mut expected: BTreeMap<u32, u32> = lab.pod_ifaces().iter().map(|iface| (index_of(iface), HOST_IFACE_POD)).collect();
    expected.insert(index_of(lab.uplink_iface()), HOST_IFACE_UPLINK);
    expected.insert(HOST_ROUTING_SWITCH_INDEX, HOST_ROUTING_ON);
    assert_eq!(listed_interfaces(agent.pins()), expected, "the switch on, the uplink and every pod veth, by kind");

    let gone = lab.pod("pod-c").unwrap().host_iface.clone();
    expected.remove(&index_of(&gone));
    lab.node().ip(&["link", "del", &gone]).unwrap();
    let deadline = Instant::now() + UNLIST_PATIENCE;
    while listed_interfaces(agent.pins()) != expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(listed_interfaces(agent.pins()), expected, "{gone} unlisted, the others kept");
}
