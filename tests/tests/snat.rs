//! SNAT for externalTrafficPolicy: Cluster: a client reaching a NodePort of
//! node A whose pod runs on node B leaves A with A's address, and B's reply
//! comes back through A to the client from the address it called.
//!
//! First in the kernel on crafted frames (BPF_PROG_TEST_RUN, checksums
//! checked from scratch by `packet::read`), as node "node-a" programmed from
//! manifests: `lb_xdp` or `lb_tc_uplink` (DNAT, port reserved) -> `lb_tc_out` (SNAT) -> the
//! reply through `lb_xdp` (back to the client) -> `lb_tc_out` (reverse DNAT).
//! Then end to end on the two-node lab with both agents, once per address
//! family (the crafted IPv6 frames are in `ipv6_snat.rs`).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ingress_common::maps::{CtTimeouts, SNAT_FORWARD, SNAT_REPLY, SnatConfig};
use ingress_common::stats::{DROP_SNAT_PORTS_EXHAUSTED, SNAT_REPLY_TRANSLATED, SNAT_TRANSLATED};
use ingress_tests::lab::NODE_A_NAME;
use ingress_tests::packet::{self, ACK, Frame, SYN, Seen, TCP, UDP};
use ingress_tests::prog_run::{Entry, Programmed, TC_ACT_OK, UPLINKS, XDP_PASS};
use ingress_tests::per_family_tests;
use ingress_tests::two_node::{CONNECTIONS, Family, ServiceDef, TwoNodeFixture, pods, replies};
use ingress_userspace::dataplane::conntrack_gc::{self, SnatPorts, snat_config};
use ingress_userspace::dataplane::usage::SnatFlows;
use ingress_userspace::manifests::parse_documents;
use ingress_userspace::metrics::Metrics;
use ingress_userspace::model::NodeInfo;
use ingress_userspace::translate::translate;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const NODE: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const LOCAL_POD: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
const REMOTE_POD: Ipv4Addr = Ipv4Addr::new(10, 245, 1, 2);
/// A pod of this node calling a Service.
const POD_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 2, 2);
const POD_PORT: u16 = 8080;

/// externalTrafficPolicy: Cluster, its only endpoint on node-b (TCP and UDP).
const REMOTE_NODE_PORT: u16 = 30090;
/// externalTrafficPolicy: Cluster, its only endpoint on this node.
const LOCAL_NODE_PORT: u16 = 30091;
/// externalTrafficPolicy: Local, endpoints on both nodes.
const ETP_LOCAL_NODE_PORT: u16 = 30092;

/// A small range, so that "in the range" says something.
const PORTS: SnatPorts = SnatPorts { min: 62_000, max: 62_099 };

fn manifests() -> String {
    let service = |name: &str, spec: &str| {
        format!("apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n")
    };
    let slice = |service: &str, endpoints: &str| {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, \
             labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\n\
             ports: [{{name: tcp, port: {POD_PORT}}}, {{name: udp, protocol: UDP, port: {POD_PORT}}}]\n\
             endpoints: {endpoints}\n---\n"
        )
    };
    let node_port = |port: u16, policy: &str| {
        format!(
            "{{type: NodePort, externalTrafficPolicy: {policy}, ports: [\
             {{name: tcp, port: 80, targetPort: {POD_PORT}, nodePort: {port}}}, \
             {{name: udp, protocol: UDP, port: 80, targetPort: {POD_PORT}, nodePort: {port}}}]}}"
        )
    };
    let local = format!("[{{addresses: [{LOCAL_POD}], nodeName: node-a}}]");
    let remote = format!("[{{addresses: [{REMOTE_POD}], nodeName: node-b}}]");
    let both = format!("[{{addresses: [{LOCAL_POD}], nodeName: node-a}}, {{addresses: [{REMOTE_POD}], nodeName: node-b}}]");
    [
        service("remote", &node_port(REMOTE_NODE_PORT, "Cluster")),
        slice("remote", &remote),
        service("local", &node_port(LOCAL_NODE_PORT, "Cluster")),
        slice("local", &local),
        service("etp-local", &node_port(ETP_LOCAL_NODE_PORT, "Local")),
        slice("etp-local", &both),
    ]
    .concat()
}

/// The programs with maps of their own, programmed as node-a, SNAT to
/// `NODE`, and the program the uplink runs.
struct Harness(Programmed, Entry);

impl Harness {
    fn new(ports: SnatPorts) -> Option<Harness> {
        Harness::on(Entry::Uplink, ports)
    }

    /// With `uplink` (`lb_xdp` or `lb_tc_uplink`) on the uplink's ingress.
    fn on(uplink: Entry, ports: SnatPorts) -> Option<Harness> {
        let loaded = parse_documents("snat.yaml", &manifests());
        assert_eq!(loaded.problems, []);
        let node = NodeInfo { name: "node-a".into(), addresses: vec![NODE.into()] };
        let (desired, problems) = translate(&loaded.snapshot, &node);
        assert_eq!(problems, []);
        let programs = Programmed::load("snat", &desired)?;
        conntrack_gc::write_snat_config(programs.pins.path(), &snat_config(&node.addresses, ports)).unwrap();
        Some(Harness(programs, uplink))
    }

    /// `frame` through the uplink's ingress program.
    fn uplink(&mut self, frame: &Frame) -> (u32, Vec<u8>) {
        self.0.run(self.1, &frame.build())
    }

    fn tc_out(&mut self, frame: &[u8]) -> (u32, Vec<u8>) {
        self.0.tc_out(frame)
    }

    fn count(&self, reason: u32) -> u64 {
        self.0.packets(reason)
    }

    fn snat_entries(&self) -> usize {
        self.0.maps.snat().unwrap().len()
    }

    /// A client's first packet through the uplink's ingress program, then
    /// what `lb_tc_out` on the uplink makes of the DNATed packet the stack
    /// routes out: (after ingress, after egress). Both steps must pass the
    /// packet with valid checksums.
    fn client_to(&mut self, frame: &Frame) -> (Seen, Seen) {
        let (verdict, dnat) = self.uplink(frame);
        assert_eq!(verdict, self.1.passed(), "{:?} on {frame:?}", self.1);
        let after_xdp = packet::read(&dnat);
        assert!(after_xdp.ip_checksum_ok && after_xdp.l4_checksum_ok, "checksums after DNAT: {after_xdp:?}");
        let (verdict, out) = self.tc_out(&dnat);
        assert_eq!(verdict, TC_ACT_OK, "lb_tc_out on {after_xdp:?}");
        let after_tc = packet::read(&out);
        assert!(after_tc.ip_checksum_ok && after_tc.l4_checksum_ok, "checksums after lb_tc_out: {after_tc:?}");
        (after_xdp, after_tc)
    }
}

fn in_range(port: u16, ports: SnatPorts) -> bool {
    (ports.min..=ports.max).contains(&port)
}

/// The whole round trip of one flow of `proto` to the remote pod.
fn round_trip_through_the_node(uplink: Entry, proto: u8) {
    let Some(mut h) = Harness::on(uplink, PORTS) else { return };
    let client_port = 41_000;
    let first = match proto {
        TCP => Frame::tcp(CLIENT, client_port, NODE, REMOTE_NODE_PORT, SYN),
        _ => Frame::udp(CLIENT, client_port, NODE, REMOTE_NODE_PORT).with_payload(b"ping\n"),
    };
    let (dnat, snat) = h.client_to(&first);
    // lb_xdp only translates the destination; the source stays the client's
    // until the packet leaves, so that routing sees the real client.
    assert_eq!((dnat.src, dnat.sport, dnat.dst, dnat.dport), (CLIENT, client_port, REMOTE_POD, POD_PORT));
    assert_eq!((snat.src, snat.dst, snat.dport), (NODE, REMOTE_POD, POD_PORT), "after lb_tc_out: {snat:?}");
    assert!(in_range(snat.sport, PORTS), "SNAT port {} outside {PORTS}", snat.sport);
    assert_eq!(snat.payload, dnat.payload);
    assert_eq!(h.count(SNAT_TRANSLATED), 1);
    // One entry per direction.
    let entries = h.0.maps.snat().unwrap();
    let directions: BTreeSet<u8> = entries.iter().map(|(key, _)| key.direction).collect();
    assert_eq!((entries.len(), directions), (2, BTreeSet::from([SNAT_FORWARD, SNAT_REPLY])));

    // The pod's answer arrives at the node's address and that port.
    let answer = match proto {
        TCP => Frame { ack: 1001, ..Frame::tcp(REMOTE_POD, POD_PORT, NODE, snat.sport, SYN | ACK) },
        _ => Frame::udp(REMOTE_POD, POD_PORT, NODE, snat.sport).with_payload(b"pong\n"),
    };
    let (verdict, back) = h.uplink(&answer);
    assert_eq!(verdict, uplink.passed(), "{uplink:?}");
    let back_seen = packet::read(&back);
    assert!(back_seen.ip_checksum_ok && back_seen.l4_checksum_ok, "checksums: {back_seen:?}");
    assert_eq!(
        (back_seen.src, back_seen.sport, back_seen.dst, back_seen.dport),
        (REMOTE_POD, POD_PORT, CLIENT, client_port),
        "the destination is the client again"
    );
    assert_eq!(h.count(SNAT_REPLY_TRANSLATED), 1);
    // The stack routes it to the client; on the way out the DNAT is undone.
    let (verdict, out) = h.tc_out(&back);
    assert_eq!(verdict, TC_ACT_OK);
    let client_sees = packet::read(&out);
    assert!(client_sees.ip_checksum_ok && client_sees.l4_checksum_ok, "checksums: {client_sees:?}");
    assert_eq!(
        (client_sees.src, client_sees.sport, client_sees.dst, client_sees.dport),
        (NODE, REMOTE_NODE_PORT, CLIENT, client_port),
        "the client sees the address it called"
    );
    assert_eq!(client_sees.payload, back_seen.payload);

    // The flow's next packet keeps its port.
    let next = match proto {
        TCP => Frame { seq: 1001, ..Frame::tcp(CLIENT, client_port, NODE, REMOTE_NODE_PORT, ACK) },
        _ => Frame::udp(CLIENT, client_port, NODE, REMOTE_NODE_PORT).with_payload(b"again\n"),
    };
    let (_, again) = h.client_to(&next);
    assert_eq!((again.src, again.sport), (NODE, snat.sport));
    assert_eq!(h.snat_entries(), 2);
}

#[test]
fn a_tcp_flow_to_a_pod_on_another_node_leaves_with_the_node_address_and_its_reply_returns() {
    for uplink in UPLINKS {
        round_trip_through_the_node(uplink, TCP);
    }
}

#[test]
fn a_udp_flow_to_a_pod_on_another_node_leaves_with_the_node_address_and_its_reply_returns() {
    for uplink in UPLINKS {
        round_trip_through_the_node(uplink, UDP);
    }
}

#[test]
fn concurrent_flows_to_one_pod_get_distinct_ports_in_the_range() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    let flows = 32;
    let ports: BTreeSet<u16> = (0..flows)
        .map(|i| {
            let (_, snat) = h.client_to(&Frame::tcp(CLIENT, 42_000 + i, NODE, REMOTE_NODE_PORT, SYN));
            assert_eq!(snat.src, NODE);
            assert!(in_range(snat.sport, PORTS), "port {}", snat.sport);
            snat.sport
        })
        .collect();
    assert_eq!(ports.len(), flows as usize, "two flows share a port: {ports:?}");
    // Each port answers for its own client.
    let entries = h.0.maps.snat().unwrap();
    for (key, value) in entries.iter().filter(|(key, _)| key.direction == SNAT_REPLY) {
        let port = u16::from_be(key.dport);
        let (verdict, back) = h.uplink(&Frame { ack: 1001, ..Frame::tcp(REMOTE_POD, POD_PORT, NODE, port, SYN | ACK) });
        assert_eq!(verdict, XDP_PASS);
        let seen = packet::read(&back);
        assert_eq!((seen.dst, seen.dport), (CLIENT, u16::from_be(value.port)), "the reply to port {port}");
    }
}

#[test]
fn a_pod_on_this_node_gets_no_snat() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    for i in 0..8 {
        let (dnat, out) = h.client_to(&Frame::tcp(CLIENT, 43_000 + i, NODE, LOCAL_NODE_PORT, SYN));
        assert_eq!((dnat.dst, dnat.dport), (LOCAL_POD, POD_PORT));
        assert_eq!(out, dnat, "lb_tc_out changed a packet to a local pod");
        assert_eq!((out.src, out.sport), (CLIENT, 43_000 + i), "the pod sees the client");
    }
    assert_eq!((h.snat_entries(), h.count(SNAT_TRANSLATED)), (0, 0));
}

#[test]
fn external_traffic_policy_local_never_snats() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    for i in 0..16 {
        let (dnat, out) = h.client_to(&Frame::udp(CLIENT, 44_000 + i, NODE, ETP_LOCAL_NODE_PORT));
        assert_eq!(dnat.dst, LOCAL_POD, "a Local policy stays on the node");
        assert_eq!((out.src, out.sport), (CLIENT, 44_000 + i), "the client's address is kept");
    }
    assert_eq!((h.snat_entries(), h.count(SNAT_TRANSLATED)), (0, 0));
}

#[test]
fn pods_reaching_a_remote_endpoint_keep_their_own_address() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    let syn = Frame::tcp(POD_CLIENT, 45_000, NODE, REMOTE_NODE_PORT, SYN).build();
    let (verdict, dnat) = h.0.tc_in(&syn);
    assert_eq!(verdict, TC_ACT_OK);
    let (verdict, out) = h.tc_out(&dnat);
    assert_eq!(verdict, TC_ACT_OK);
    let seen = packet::read(&out);
    assert_eq!((seen.src, seen.sport, seen.dst), (POD_CLIENT, 45_000, REMOTE_POD), "pod addresses are routable");
    assert_eq!(h.snat_entries(), 0);
}

#[test]
fn port_exhaustion_is_counted_and_dropped_and_an_expired_flow_frees_its_port() {
    for uplink in UPLINKS {
        port_exhaustion_through(uplink);
    }
}

fn port_exhaustion_through(uplink: Entry) {
    let one_port = SnatPorts { min: 62_500, max: 62_500 };
    let Some(mut h) = Harness::on(uplink, one_port) else { return };
    let (_, first) = h.client_to(&Frame::udp(CLIENT, 46_000, NODE, REMOTE_NODE_PORT));
    assert_eq!((first.src, first.sport), (NODE, 62_500));
    // A second client port to the same pod: no port left.
    let second = Frame::udp(CLIENT, 46_001, NODE, REMOTE_NODE_PORT);
    let (verdict, _) = h.uplink(&second);
    assert_eq!(verdict, uplink.dropped(), "{uplink:?}: a flow without a SNAT port must not leave with the client's address");
    assert_eq!(h.count(DROP_SNAT_PORTS_EXHAUSTED), 1);
    assert_eq!(h.snat_entries(), 2, "the dropped flow reserved nothing");
    // Named where an operator looks: the `state` dump and /metrics.
    let state = ingress_userspace::state::render(h.0.pins.path()).unwrap();
    let counted = |line: &str| line.split_whitespace().take(2).eq(["drop_snat_ports_exhausted", "1"]);
    assert!(state.lines().any(counted), "{uplink:?}: no drop_snat_ports_exhausted in the state dump:\n{state}");
    let metrics = Metrics::default().render(&h.0.maps.stats().unwrap());
    let line = "lb_dataplane_packets_total{reason=\"drop_snat_ports_exhausted\"} 1";
    assert!(metrics.lines().any(|l| l == line), "{uplink:?}: no {line} in\n{metrics}");
    // The first flow's packets still go out on their port.
    let (_, again) = h.client_to(&Frame::udp(CLIENT, 46_000, NODE, REMOTE_NODE_PORT));
    assert_eq!(again.sport, 62_500);

    // Once the first flow has idled out, its port goes to the next flow.
    let short = CtTimeouts { udp_ms: 1, ..CtTimeouts::DEFAULT };
    conntrack_gc::write_timeouts(h.0.pins.path(), &short).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let (_, taken_over) = h.client_to(&second);
    assert_eq!((taken_over.src, taken_over.sport), (NODE, 62_500));
    // And the old flow's late reply no longer reaches its client.
    let late = Frame::udp(REMOTE_POD, POD_PORT, NODE, 62_500);
    let (_, back) = h.uplink(&late);
    assert_eq!(packet::read(&back).dport, 46_001, "the port now answers for the new flow");
    assert_eq!(h.count(DROP_SNAT_PORTS_EXHAUSTED), 1);
}

/// Half the range taken as one block, the pattern in which trying
/// consecutive ports failed: a flow hashed into the block found only taken
/// ports and was dropped while the other half was free. The block is made by
/// filling a range of 32 ports; the range then doubles, and every new flow
/// must get a port of the free half.
#[test]
fn new_flows_find_the_free_half_beside_a_block_of_taken_ports() {
    let block = SnatPorts { min: 62_000, max: 62_031 };
    let Some(mut h) = Harness::new(block) else { return };
    let reply_entries = |h: &Harness| h.0.maps.snat().unwrap().iter().filter(|(key, _)| key.direction == SNAT_REPLY).count();
    for client_port in 43_000..44_000 {
        if reply_entries(&h) == 32 {
            break;
        }
        h.uplink(&Frame::udp(CLIENT, client_port, NODE, REMOTE_NODE_PORT));
    }
    assert_eq!(reply_entries(&h), 32, "1,000 flows did not take the 32 ports of {block:?}");

    let doubled = SnatPorts { min: 62_000, max: 62_063 };
    conntrack_gc::write_snat_config(h.0.pins.path(), &snat_config(&[NODE.into()], doubled)).unwrap();
    let drops = h.count(DROP_SNAT_PORTS_EXHAUSTED);
    let ports: BTreeSet<u16> = (0..8)
        .map(|i| {
            let (_, snat) = h.client_to(&Frame::udp(CLIENT, 45_000 + i, NODE, REMOTE_NODE_PORT));
            assert!((62_032..=62_063).contains(&snat.sport), "flow {i} left on port {}", snat.sport);
            snat.sport
        })
        .collect();
    assert_eq!(ports.len(), 8, "two flows share a port: {ports:?}");
    assert_eq!(h.count(DROP_SNAT_PORTS_EXHAUSTED), drops);
}

#[test]
fn a_finished_flows_snat_entries_are_swept_and_a_live_ones_stay() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    // Two handshakes through the node; the first flow then ends with a FIN.
    let mut ports = Vec::new();
    for client_port in [48_000, 48_001] {
        let (_, out) = h.client_to(&Frame::tcp(CLIENT, client_port, NODE, REMOTE_NODE_PORT, SYN));
        let (verdict, _) = h.uplink(&Frame { ack: 1001, ..Frame::tcp(REMOTE_POD, POD_PORT, NODE, out.sport, SYN | ACK) });
        assert_eq!(verdict, XDP_PASS);
        h.client_to(&Frame { seq: 1001, ..Frame::tcp(CLIENT, client_port, NODE, REMOTE_NODE_PORT, ACK) });
        ports.push(out.sport);
    }
    h.client_to(&Frame { seq: 1001, ..Frame::tcp(CLIENT, 48_000, NODE, REMOTE_NODE_PORT, packet::FIN | ACK) });
    assert_eq!(h.snat_entries(), 4);
    // Closing flows now last 1 ms (set only now: a half-open one counts as closing).
    let timeouts = CtTimeouts { tcp_closing_ms: 1, ..CtTimeouts::DEFAULT };
    conntrack_gc::write_timeouts(h.0.pins.path(), &timeouts).unwrap();
    std::thread::sleep(Duration::from_millis(20));

    let config = conntrack_gc::ConntrackConfig { timeouts, ..Default::default() };
    let mut sweeper = conntrack_gc::Sweeper::open(h.0.pins.path(), config).unwrap();
    let swept = sweeper.sweep().unwrap();
    assert!(swept.removed >= 2, "{swept:?}");
    // The map fits one budget, so this sweep was a whole pass and counted it.
    let usage = sweeper.usage();
    assert_eq!(usage.snat_entries, Some(4), "the pass counts what it found, the finished pair included");
    assert_eq!(usage.snat_flows, Some(SnatFlows { v4: 1, v6: 0 }), "only the live flow is being translated");
    assert_eq!(usage.affinity, Some(0), "no affinity Service, no affinity entry");
    let left: BTreeSet<(u8, u16)> = h
        .0
        .maps
        .snat()
        .unwrap()
        .iter()
        .map(|(key, value)| match key.direction {
            SNAT_FORWARD => (SNAT_FORWARD, u16::from_be(value.port)),
            _ => (SNAT_REPLY, u16::from_be(key.dport)),
        })
        .collect();
    assert_eq!(left, BTreeSet::from([(SNAT_FORWARD, ports[1]), (SNAT_REPLY, ports[1])]), "only the live flow's pair stays");
    // The finished flow's late packets no longer get its port.
    let late = Frame::tcp(REMOTE_POD, POD_PORT, NODE, ports[0], ACK);
    let (_, back) = h.uplink(&late);
    assert_eq!(packet::read(&back).dst, NODE, "not translated back to the client any more");
}

#[test]
fn snat_is_off_until_the_agent_writes_a_node_address() {
    let Some(mut h) = Harness::new(PORTS) else { return };
    conntrack_gc::write_snat_config(h.0.pins.path(), &SnatConfig::default()).unwrap();
    let (dnat, out) = h.client_to(&Frame::tcp(CLIENT, 47_000, NODE, REMOTE_NODE_PORT, SYN));
    assert_eq!(dnat.dst, REMOTE_POD);
    assert_eq!(out.src, CLIENT, "forwarded as before SNAT existed");
    assert_eq!(h.snat_entries(), 0);
}

// ---- the two-node lab, once per address family ------------------------------

/// externalTrafficPolicy: Cluster, both endpoints on node B.
const ON_B_NODE_PORT: u16 = 30085;
/// The last byte of its ClusterIP (see `Family::cluster_ip`).
const ON_B_VIP: u8 = 0x55;
const PORTS_DEFAULT: std::ops::RangeInclusive<u16> =
    ingress_common::maps::DEFAULT_SNAT_PORT_MIN..=ingress_common::maps::DEFAULT_SNAT_PORT_MAX;

per_family_tests!(a_client_of_node_a_reaches_pods_on_node_b_through_a_with_snat);

fn a_client_of_node_a_reaches_pods_on_node_b_through_a_with_snat(family: Family) {
    let on_b = ServiceDef {
        name: "on-b",
        cluster_ip: ON_B_VIP,
        node_port: Some(ON_B_NODE_PORT),
        fields: "externalTrafficPolicy: Cluster",
        endpoints: &["b-1", "b-2"],
    };
    let Some(f) = TwoNodeFixture::start(family, &[on_b]) else { return };
    let a = f.lab.node_a();
    assert_eq!(a.name(), NODE_A_NAME);
    let node_a = f.node_ip(a);

    // Every pod of node B sees node A's address and a SNAT port as its
    // caller, over TCP and UDP alike; the answers reach the client's
    // connected sockets, so they came back from the frontend it called.
    let replies = replies(f.client(), f.node_port(a, ON_B_NODE_PORT));
    for reply in &replies {
        assert_eq!(reply.peer.ip(), node_a, "{} saw its caller as {} instead of node A", reply.pod, reply.peer);
        assert!(PORTS_DEFAULT.contains(&reply.peer.port()), "SNAT port {} outside the default range", reply.peer.port());
    }
    let answered: BTreeSet<String> = replies.into_iter().map(|reply| reply.pod).collect();
    assert_eq!(answered, pods(&["b-1", "b-2"]), "every answer came from node B's pods");

    let translated = f.agent_a.packets(SNAT_TRANSLATED);
    assert!(translated >= 2 * CONNECTIONS as u64, "SNAT on node A: {translated} packets");
    assert!(f.agent_a.packets(SNAT_REPLY_TRANSLATED) >= 2 * CONNECTIONS as u64);
    assert_eq!(f.agent_a.packets(DROP_SNAT_PORTS_EXHAUSTED), 0);
}
