//! Host routing's default, `auto`: the programs route a Service's packets
//! only while the node's netfilter has no hook the flows would pass. The
//! scan of a namespace's hooks, on the kernel's own nftables and iptables;
//! then an agent on a bare lab node routes (its counters and the
//! `lb_host_routing` gauge say so), and takes routing back when a FORWARD
//! chain appears, after which that chain's DROP applies to the Service as it
//! would without host routing. An agent started where a chain is already
//! there never routes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ingress_common::stats::{HOST_ROUTED_TO_POD, HOST_ROUTED_TO_UPLINK};
use ingress_tests::agent::{InProcessAgent, examples_lab, metric};
use ingress_tests::lab::NODE_IP;
use ingress_tests::netns::run_command;
use ingress_tests::traffic::tcp_request_timeout;
use ingress_tests::{NetNs, is_root};
use ingress_userspace::dataplane::netfilter_hooks::{Hook, scan};

const PATIENCE: Duration = Duration::from_secs(2);
/// Several of the agent's one-second scans.
const TAKE_BACK_WITHIN: Duration = Duration::from_secs(5);

fn nft(ns: &NetNs, script: &str) {
    run_command(&mut ns.exec("nft", &[script])).unwrap_or_else(|e| panic!("nft {script}: {e:#}"));
}

fn hooks_of(ns: &NetNs) -> Vec<Hook> {
    ns.run(scan).unwrap().expect("scanning the namespace's hooks")
}

#[test]
fn the_scan_sees_the_chains_a_routed_flow_would_pass_and_only_those() {
    if !is_root() {
        eprintln!("skipped: network namespaces need root");
        return;
    }
    let ns = NetNs::create("nf-hooks").unwrap();
    assert_eq!(hooks_of(&ns), vec![], "a new namespace has no hook");

    nft(&ns, "add table inet local; add chain inet local in { type filter hook input priority 0; }; add chain inet local out { type filter hook output priority 0; }; add chain inet local plain");
    assert_eq!(hooks_of(&ns), vec![], "input, output and regular chains see no routed flow");

    run_command(&mut ns.exec("iptables", &["-w", "-A", "FORWARD", "-j", "ACCEPT"])).unwrap();
    nft(&ns, "add table ip6 masq; add chain ip6 masq post { type nat hook postrouting priority 100; }");
    assert_eq!(
        hooks_of(&ns),
        vec![
            Hook("nftables ip filter chain FORWARD (hook 2)".into()),
            Hook("nftables ip6 masq chain post (hook 4)".into()),
        ]
    );

    run_command(&mut ns.exec("iptables", &["-w", "-F", "FORWARD"])).unwrap();
    assert_eq!(hooks_of(&ns).len(), 2, "an emptied FORWARD chain is still a hook");
    nft(&ns, "delete table ip filter; delete table ip6 masq");
    assert_eq!(hooks_of(&ns), vec![]);
}

fn host_routing_gauge(node: &NetNs) -> u64 {
    metric(node, "lb_host_routing").unwrap()
}

fn routed(agent: &InProcessAgent) -> u64 {
    agent.packets(HOST_ROUTED_TO_POD) + agent.packets(HOST_ROUTED_TO_UPLINK)
}

#[test]
fn auto_routes_on_a_bare_node_until_a_forward_chain_appears() {
    let Some((lab, manifests)) = examples_lab() else { return };
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    let node_port = SocketAddr::new(NODE_IP.into(), 30080);
    assert_eq!(host_routing_gauge(lab.node()), 1, "a bare node: host routing on");
    for i in 0..5 {
        tcp_request_timeout(lab.client(), node_port, PATIENCE).unwrap_or_else(|e| panic!("request {i}: {e:#}"));
    }
    assert!(routed(&agent) >= 20, "packets routed by the programs: {}", routed(&agent));

    run_command(&mut lab.node().exec("iptables", &["-w", "-I", "FORWARD", "-j", "DROP"])).unwrap();
    let deadline = Instant::now() + TAKE_BACK_WITHIN;
    while host_routing_gauge(lab.node()) != 0 {
        assert!(Instant::now() < deadline, "host routing still on {TAKE_BACK_WITHIN:?} after a FORWARD chain appeared");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = routed(&agent);
    assert!(
        tcp_request_timeout(lab.client(), node_port, PATIENCE).is_err(),
        "the NodePort answered past FORWARD DROP: the node's chain does not see the Service's flows"
    );
    assert_eq!(routed(&agent), before, "the programs routed a packet after routing was taken back");
}

#[test]
fn auto_never_routes_where_a_forward_chain_is_there_at_start() {
    let Some((lab, manifests)) = examples_lab() else { return };
    run_command(&mut lab.node().exec("iptables", &["-w", "-A", "FORWARD", "-j", "ACCEPT"])).unwrap();
    let agent = InProcessAgent::start(&lab, manifests.path()).unwrap();
    assert_eq!(host_routing_gauge(lab.node()), 0);
    let node_port = SocketAddr::new(NODE_IP.into(), 30080);
    for i in 0..5 {
        tcp_request_timeout(lab.client(), node_port, PATIENCE).unwrap_or_else(|e| panic!("request {i}: {e:#}"));
    }
    assert_eq!(routed(&agent), 0, "the programs routed past the node's FORWARD chain");
}
