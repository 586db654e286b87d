//! The agent can die and come back without a single failed request: maps
//! and program links are pinned, so the last programs keep translating while
//! no agent runs, and a new agent swaps its programs in atomically and
//! reconciles the pinned state instead of flushing it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ingress_tests::figures;
use ingress_tests::agent::{AgentLog, AgentProcess, ManifestDir, agent_binary};
use ingress_tests::netns::run_command;
use ingress_tests::pins::PinDir;
use ingress_tests::{Lab, LabSpec, TcpSession, is_root, tcp_request, udp_request};
use ingress_userspace::dataplane::ebpf::uplink_hooks;
use ingress_userspace::dataplane::uplink_hook::UplinkHook;

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
/// Bounds for the traffic loop, whatever happens to the agent.
const MAX_REQUESTS: u64 = 20_000;
const MAX_DURATION: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
}

#[test]
fn killing_and_restarting_the_agent_under_traffic_fails_no_request() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    let spec = LabSpec::examples();
    let lab = Arc::new(Lab::build(spec).unwrap());
    let manifests = ManifestDir::examples().unwrap();
    let pins = PinDir::unique("restart");
    let binary = agent_binary().unwrap();
    let mut agent = AgentProcess::spawn(&binary, &lab, manifests.path(), pins.path()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let traffic = {
        let (lab, stop, counts) = (lab.clone(), stop.clone(), counts.clone());
        std::thread::spawn(move || {
            let toolbox = &lab.pod("toolbox").unwrap().ns;
            let mut session = TcpSession::open(lab.client(), SocketAddrV4::new(NODE_IP, 30080)).unwrap();
            let started = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < MAX_REQUESTS && started.elapsed() < MAX_DURATION {
                // New connections through both programs, UDP, and one long-lived connection.
                let ok = match i % 4 {
                    0 => tcp_request(lab.client(), SocketAddrV4::new(NODE_IP, 30080)).is_ok(),
                    1 => tcp_request(toolbox, SocketAddrV4::new(CLUSTER_IP, 80)).is_ok(),
                    2 => udp_request(toolbox, SocketAddrV4::new(CLUSTER_IP, 53)).is_ok(),
                    _ => session.request().is_ok(),
                };
                counts.sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        })
    };

    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(500));
        agent.crash().unwrap();
        // No agent at all for a while: the pinned programs carry the traffic.
        std::thread::sleep(Duration::from_millis(500));
        agent = AgentProcess::spawn(&binary, &lab, manifests.path(), pins.path()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    traffic.join().unwrap();
    drop(agent);

    let (sent, failed) = (counts.sent.load(Ordering::Relaxed), counts.failed.load(Ordering::Relaxed));
    figures::report("agent_restart", &format!("restart under traffic: {sent} requests sent, {failed} failed"));
    assert!(sent >= 100, "too little traffic to show anything: {sent}");
    assert_eq!(failed, 0, "{failed} of {sent} requests failed across three agent crashes");
}

/// Whether `ip` shows an XDP program on the lab's uplink, polled for a
/// moment: the kernel releases an unpinned link a little later.
fn uplink_runs_xdp(lab: &Lab, expected: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let link = run_command(&mut lab.node().exec("ip", &["-d", "link", "show", lab.uplink_iface()])).unwrap();
        let runs_xdp = link.contains("xdp");
        if runs_xdp == expected || Instant::now() > deadline {
            return runs_xdp;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_agent_restarted_with_another_uplink_hook_detaches_the_one_before() {
    if !is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return;
    }
    // Every pod the examples' EndpointSlices name, so that any backend answers.
    let lab = Lab::build(LabSpec::examples()).unwrap();
    let manifests = ManifestDir::examples().unwrap();
    let pins = PinDir::unique("hook-switch");
    let binary = agent_binary().unwrap();
    let uplink = lab.uplink_iface().to_owned();
    // Forced XDP, then auto (TC ingress on the lab's veth uplink), then XDP
    // again: each agent leaves exactly its own hook attached and serving.
    for (flag, hook, xdp) in [("xdp", UplinkHook::Xdp, true), ("auto", UplinkHook::Tc, false), ("xdp", UplinkHook::Xdp, true)] {
        let agent = AgentProcess::spawn_with(&binary, &lab, manifests.path(), pins.path(), &AgentLog::Terminal, |command| {
            command.args(["--uplink-hook", flag]);
        })
        .unwrap();
        assert_eq!(uplink_hooks(pins.path()).unwrap(), [(uplink.clone(), hook)], "--uplink-hook {flag}");
        assert_eq!(uplink_runs_xdp(&lab, xdp), xdp, "--uplink-hook {flag}: XDP on {uplink}");
        tcp_request(lab.client(), SocketAddrV4::new(NODE_IP, 30080))
            .unwrap_or_else(|error| panic!("--uplink-hook {flag}: the NodePort: {error:#}"));
        // Gone without detaching anything, as in a crash or an upgrade.
        agent.crash().unwrap();
    }
}
