//! The lab run by `cargo xtask lab`: builds the namespaces, starts the real
//! agent binary in the node namespace on a manifest directory, sends traffic
//! to every frontend those manifests define, and prints which pod answered.

use std::net::{SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result, bail};
use clap::Parser;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ingress_tests::interrupt::on_ctrl_c;
use ingress_tests::agent::{ADMIN, AgentLog, AgentProcess, HTTP_PORT, NODE_NAME, admin_get};
use ingress_tests::http;
use ingress_tests::pins::PinDir;
use ingress_tests::{Lab, LabSpec, NetNs, Tally, is_root, tcp_request, udp_request};
use ingress_userspace::manifests::load_dir;
use ingress_userspace::model::{NodeInfo, Protocol};
use ingress_userspace::translate::translate;

/// New TCP connections per TCP frontend, datagrams per UDP frontend.
const TCP_CONNECTIONS: usize = 300;
const UDP_REQUESTS: usize = 100;
/// A frontend that failed this many times in a row is given up on.
const GIVE_UP_AFTER: u64 = 10;

#[derive(Parser)]
struct Args {
    /// The agent binary to run in the node namespace.
    #[arg(long)]
    agent: PathBuf,
    /// Manifests the agent programs and the traffic is sent to.
    #[arg(long)]
    manifests: PathBuf,
    /// Leave everything running until Ctrl-C.
    #[arg(long)]
    keep: bool,
    /// Where the agent's log goes (kept after the lab ends).
    #[arg(long, default_value = "/tmp/k8s-ebpf-lb-lab-agent.log")]
    agent_log: PathBuf,
    /// Stream the agent's log to the terminal instead of the log file.
    #[arg(long)]
    verbose: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !is_root() {
        bail!("the lab creates network namespaces and loads eBPF programs: run it as root");
    }
    let interrupted = on_ctrl_c()?;
    let spec = LabSpec::examples();
    println!("Lab: client -> node (XDP on uplink0, TC on pod veths) -> pods {:?}", spec.pods);
    let lab = Lab::build(spec).context("building the lab")?;
    let pins = PinDir::unique("lab");
    let log = if args.verbose { AgentLog::Terminal } else { AgentLog::File(args.agent_log.clone()) };
    // This run's log only.
    let _ = std::fs::remove_file(&args.agent_log);
    let agent = AgentProcess::spawn_with(&args.agent, &lab, &args.manifests, pins.path(), &log, |_| {})?;
    println!("Agent {} running in {}, maps pinned in {}", agent.pid(), lab.node().name(), pins.path().display());
    if let AgentLog::File(path) = &log {
        println!("Agent log: {} (`cargo xtask lab --verbose` streams it here instead)", path.display());
    }
    println!();
    let node = NodeInfo { name: NODE_NAME.into(), addresses: lab.node_ips().to_vec() };
    let loaded = load_dir(&args.manifests)?;
    let (desired, _) = translate(&loaded.snapshot, &node);
    let toolbox = &lab.pod("toolbox").context("the lab has a toolbox pod")?.ns;
    let mut failed = false;
    for frontend in desired.frontends.keys() {
        if interrupted.load(Ordering::Relaxed) {
            break;
        }
        // NodePorts are called from outside the cluster, the rest from a pod.
        let (from, who) =
            if lab.node_ips().contains(&frontend.addr) { (lab.client(), "client") } else { (toolbox, "toolbox pod") };
        let to = SocketAddr::new(frontend.addr, frontend.port);
        let tally = send(from, to, frontend.protocol, &interrupted);
        println!("{frontend} from the {who}: {} answers, {} failed\n{tally}", tally.total(), tally.failures());
        failed |= tally.failures() > 0;
    }

    if !interrupted.load(Ordering::Relaxed) {
        failed |= l7_routes(&lab)?;
    }
    print_state(&args, &pins)?;
    // The same counters, as Prometheus scrapes them.
    let metrics = admin_get(lab.node(), "/metrics")?;
    let series = metrics.lines().filter(|l| l.starts_with("lb_dataplane_packets_total") && !l.ends_with(" 0")).count();
    println!("GET http://{ADMIN}/metrics in the node namespace: {series} non-zero lb_dataplane_packets_total series");

    if args.keep {
        print_keep_instructions(&lab, &args, &pins);
        while !interrupted.load(Ordering::Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    println!("\nTearing down: agent, pins, namespaces.");
    drop(agent);
    if failed {
        bail!("some requests failed (see above)");
    }
    Ok(())
}

fn send(from: &NetNs, to: SocketAddr, protocol: Protocol, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::new();
    let count = if protocol == Protocol::Tcp { TCP_CONNECTIONS } else { UDP_REQUESTS };
    for _ in 0..count {
        if stop.load(Ordering::Relaxed) || (tally.total() == 0 && tally.failures() >= GIVE_UP_AFTER) {
            break;
        }
        tally.record(&match protocol {
            Protocol::Tcp => tcp_request(from, to),
            Protocol::Udp => udp_request(from, to),
        });
    }
    tally
}

/// Host and path routing through the agent's L7 proxy, as deploy/examples
/// defines it (echo-ingress.yaml, echo-httproute.yaml), and what the proxy
/// adds to a request.
fn l7_routes(lab: &Lab) -> Result<bool> {
    let proxy = SocketAddrV4::new(lab.node_ip(), HTTP_PORT);
    println!("L7 through the proxy on {proxy} from the client:");
    let mut failed = false;
    let variant_b = [("x-variant", "b")];
    for (host, path, headers, expect) in [
        ("echo.example", "/a/x", &[][..], "pod-a only (Ingress path /a -> Service echo-a)"),
        ("echo.example", "/anything", &[], "all three pods (Ingress path / -> Service echo)"),
        ("api.example", "/", &[], "pod-c (annotations trafficHosts/publicPaths)"),
        ("split.example", "/", &[], "pod-a x3 : pod-b x1 (HTTPRoute weights echo-a 3, echo-b 1)"),
        ("split.example", "/", &variant_b, "pod-b only (HTTPRoute match x-variant: b -> echo-b)"),
        ("unknown.example", "/", &[], "the built-in default backend"),
    ] {
        let mut answers: BTreeMap<String, u32> = BTreeMap::new();
        for _ in 0..SPLIT_REQUESTS {
            let key = match http::get_with_headers(lab.client(), proxy, host, path, headers) {
                Ok(r) if r.status == 200 => r.body.trim().to_string(),
                Ok(r) => format!("{} {:?}", r.status, r.body.trim()),
                Err(error) => {
                    failed = true;
                    format!("failed: {error:#}")
                }
            };
            *answers.entry(key).or_default() += 1;
        }
        let seen: Vec<String> = answers.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        let header: String = headers.iter().map(|(name, value)| format!(" {name}: {value}")).collect();
        let target = format!("{host}{path}{header}");
        println!("  {target:<28} expect {expect:<62} got {}", seen.join(", "));
    }
    let pod = lab.pod("pod-a").context("pod-a")?;
    let direct = latency(|| http::get(lab.client(), pod.echo_addr(), "pod-a", "/"))?;
    let proxied = latency(|| http::get(lab.client(), proxy, "echo.example", "/a"))?;
    println!(
        "  added latency, median of {L7_SAMPLES} new-connection GETs: direct to the pod {} us, through the proxy {} us (+{} us)\n",
        direct.as_micros(),
        proxied.as_micros(),
        proxied.saturating_sub(direct).as_micros()
    );
    Ok(failed)
}

const L7_SAMPLES: usize = 200;

/// Requests per L7 line: a multiple of the HTTPRoute's total weight (4), so
/// that its split shows as exactly 3:1.
const SPLIT_REQUESTS: usize = 32;

fn latency(mut request: impl FnMut() -> Result<http::Response>) -> Result<Duration> {
    let mut samples = Vec::with_capacity(L7_SAMPLES);
    for _ in 0..L7_SAMPLES {
        let started = Instant::now();
        request()?;
        samples.push(started.elapsed());
    }
    samples.sort();
    Ok(samples[samples.len() / 2])
}

fn print_state(args: &Args, pins: &PinDir) -> Result<()> {
    let output = Command::new(&args.agent).arg("state").arg("--pin-dir").arg(pins.path()).output()?;
    println!("Programmed state after the traffic (`ingress-userspace state`):\n{}", String::from_utf8_lossy(&output.stdout));
    Ok(())
}

fn print_keep_instructions(lab: &Lab, args: &Args, pins: &PinDir) {
    let node = lab.node().name();
    let client = lab.client().name();
    println!("\nThe lab stays up until Ctrl-C. Try, in another shell:");
    println!("  ip netns exec {client} curl -s http://{}:30080/", lab.node_ip());
    println!("  ip netns exec {client} curl -s -H 'Host: echo.example' http://{}/a", lab.node_ip());
    if let Some(toolbox) = lab.pod("toolbox") {
        println!("  ip netns exec {} curl -s http://10.96.0.10/", toolbox.ns.name());
    }
    println!("  {} state --pin-dir {}", args.agent.display(), pins.path().display());
    println!("  ip netns exec {node} curl -s http://{ADMIN}/metrics");
    println!("  edit {} and watch the agent apply it", args.manifests.display());
    println!("Namespaces: {}", lab.namespaces().join(" "));
}
