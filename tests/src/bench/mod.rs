//! The L4 benchmark (`cargo xtask bench l4`), following
//! shared/reference/benchmarks.md: `direct` (pod IP), `ebpf` (the real agent
//! binary) and `iptables` (kube-proxy's nat rules) on one lab, alternated
//! within every round, for N Services of which the last is measured;
//! `ebpf-fwd` is the agent with `--host-routing off`, the node's stack
//! forwarding as on a node with netfilter chains (`ebpf`'s default, `auto`,
//! routes in the programs on the lab's node, which has none).
//!
//! `ebpf` and `iptables` are reached the same way: a NodePort of the node
//! from the client namespace, so `ebpf` runs its uplink program (TC ingress
//! on the lab's veth uplink, as the agent picks by default; `lb_xdp` with
//! `--uplink-hook xdp`) and `iptables` walks KUBE-SERVICES to
//! KUBE-NODEPORTS. `direct` goes from the client namespace to a pod IP
//! through the same node. While `ebpf` runs, the kernel's run-time
//! statistics are on, and each program's nanoseconds per packet are reported
//! (`prog_stats`).

pub mod cli;
mod detach;
mod iptables;
pub mod l7;
pub mod manifests;
mod one_cpu;
mod plot;
mod prog_stats;
mod report;
pub mod services;
pub mod workload;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingress_userspace::dataplane::uplink_hook::UplinkHookChoice;

use crate::agent::{AgentLog, AgentProcess};
use crate::lab::{Lab, LabSpec, NODE_IP};
use crate::netns::run_command;
use crate::pins::PinDir;
use iptables::NatRules;
use manifests::{ManifestFormat, ManifestSet};
use one_cpu::OneCpu;
use report::{Cell, Figures, Report};
pub use report::{Contender, Named};
use services::{MEASURED_NODE_PORT, Service};
use workload::Bounds;

const ECHO_PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];
/// The endpoint change moves the measured Service to this pod.
const NEW_ENDPOINT_POD: &str = "toolbox";
/// Bounds of single steps, whatever the configuration says.
const PROGRAMMING_LIMIT: Duration = Duration::from_secs(60);
/// Includes, for `iptables`, a whole `iptables-restore` of N Services.
const ENDPOINT_CHANGE_LIMIT: Duration = Duration::from_secs(90);
const DETACH_LIMIT: Duration = Duration::from_secs(10);
/// The agent counts as done once it has used no CPU for this long; it is
/// waited for at most `AGENT_QUIET_LIMIT` (an agent busy longer is
/// measured busy, as a user would meet it).
const AGENT_QUIET: Duration = Duration::from_millis(300);
const AGENT_QUIET_LIMIT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct Config {
    pub agent: PathBuf,
    pub out_dir: PathBuf,
    pub sizes: Vec<usize>,
    pub rounds: usize,
    pub rr_requests: usize,
    pub crr_requests: usize,
    pub threads: usize,
    pub requests_per_thread: usize,
    /// Each workload of a slot stops after this long, with what it has.
    pub workload_limit: Duration,
    /// Rounds that would start after this share of the run are skipped; every
    /// size keeps at least one round.
    pub time_limit: Duration,
    /// What the report says was run.
    pub command: String,
    /// The contenders run, in this order within a round (default all).
    pub contenders: Vec<Contender>,
    /// The agent's `--uplink-hook`.
    pub uplink_hook: UplinkHookChoice,
    /// Endpoints of each Service but the measured one; `None`: 2 and 3 in turn.
    pub filler_endpoints: Option<usize>,
    /// How the agent's manifests are written.
    pub manifest_format: ManifestFormat,
}

impl Config {
    /// The default run: within 15 minutes on 2 cores.
    pub fn standard(agent: PathBuf, out_dir: PathBuf) -> Config {
        Config {
            agent,
            out_dir,
            sizes: vec![1, 1_000, 10_000, 30_000],
            rounds: 5,
            rr_requests: 5_000,
            crr_requests: 1_000,
            threads: 8,
            requests_per_thread: 2_000,
            workload_limit: Duration::from_secs(20),
            time_limit: Duration::from_secs(12 * 60),
            command: "cargo xtask bench l4".into(),
            contenders: Contender::ALL.to_vec(),
            uplink_hook: UplinkHookChoice::Auto,
            filler_endpoints: None,
            manifest_format: ManifestFormat::Json,
        }
    }

    /// CI: everything runs and every output is written, nothing is timed seriously.
    pub fn quick(agent: PathBuf, out_dir: PathBuf) -> Config {
        Config {
            sizes: vec![1, 50],
            rounds: 2,
            rr_requests: 300,
            crr_requests: 100,
            threads: 2,
            requests_per_thread: 100,
            workload_limit: Duration::from_secs(10),
            time_limit: Duration::from_secs(90),
            command: "cargo xtask bench l4 --quick".into(),
            ..Config::standard(agent, out_dir)
        }
    }
}

/// What a run wrote.
pub struct Outputs {
    pub markdown: String,
    pub markdown_file: PathBuf,
    pub json_file: PathBuf,
    pub plot_file: PathBuf,
}

impl Outputs {
    /// Writes a report into `out_dir`: the table as `{stem}.md`, the figures
    /// as `{stem}.json`, and the plot `plot` draws as `plot_name`.
    fn write(
        out_dir: &Path,
        stem: &str,
        plot_name: &str,
        markdown: String,
        figures: &impl serde::Serialize,
        plot: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<Outputs> {
        std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let outputs = Outputs {
            markdown,
            markdown_file: out_dir.join(format!("{stem}.md")),
            json_file: out_dir.join(format!("{stem}.json")),
            plot_file: out_dir.join(plot_name),
        };
        write(&outputs.markdown_file, outputs.markdown.as_bytes())?;
        write(&outputs.json_file, &serde_json::to_vec_pretty(figures)?)?;
        plot(&outputs.plot_file).with_context(|| format!("drawing {}", outputs.plot_file.display()))?;
        Ok(outputs)
    }

    /// The table on stdout, where the files went on stderr.
    pub fn print(&self) {
        print!("{}", self.markdown);
        eprintln!("\nWrote {}, {} and {}", self.markdown_file.display(), self.json_file.display(), self.plot_file.display());
    }
}

/// How the run was started, for its report: what `cargo xtask bench` says
/// it ran (`BENCH_COMMAND`), else this process's own command line.
pub fn command_line() -> String {
    std::env::var("BENCH_COMMAND").unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "))
}

/// Builds the lab, runs every size and round, tears everything down (also on
/// error or when `stop` is set), and writes `l4.md`, `l4.json` and
/// `l4-latency.png` into `config.out_dir`.
pub fn run_l4(config: &Config, stop: &AtomicBool) -> Result<Outputs> {
    if config.sizes.is_empty() || config.rounds == 0 || config.contenders.is_empty() {
        bail!("nothing to run: give at least one size, one round and one contender");
    }
    let spec = LabSpec { pods: ECHO_PODS.iter().chain([&NEW_ENDPOINT_POD]).map(|p| p.to_string()).collect() };
    let lab = Lab::build(spec).context("building the lab")?;
    // CRR opens thousands of connections a second to one NodePort, and the
    // client closes first: without reuse, the client's ports to that one
    // destination sit in TIME_WAIT for 60 s, and once those of the connect()
    // half of the range are used up every connect() scans them all. Seen as
    // ~130 connections/s after ~14,000 connections within a minute (both
    // NodePort contenders, N=1000 in the 2026-12-01 run). A load generator
    // standing in for many clients reuses them, as real ones do.
    lab.client().sysctl("net.ipv4.tcp_tw_reuse", "1").context("letting the client reuse TIME_WAIT ports")?;
    let start = Instant::now();
    let mut cells = Vec::new();
    let largest = config.sizes.iter().copied().max().unwrap_or(0);
    for (index, &n) in config.sizes.iter().enumerate() {
        let size_deadline = start + config.time_limit.mul_f64((index + 1) as f64 / config.sizes.len() as f64);
        let bench = SizeBench::new(&lab, config, n, n == largest, stop)?;
        let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); config.contenders.len()];
        for round in 0..config.rounds {
            if round > 0 && Instant::now() > size_deadline {
                eprintln!("N={n}: time budget used after {round} rounds, skipping the rest");
                break;
            }
            for (contender, figures) in config.contenders.iter().copied().zip(&mut rounds) {
                eprintln!("N={n} round {}/{}: {}", round + 1, config.rounds, contender.name());
                figures.push(bench.measure(contender).with_context(|| format!("{} at N={n}", contender.name()))?);
            }
        }
        cells.extend(config.contenders.iter().copied().zip(rounds).map(|(c, r)| Cell::new(n, c, r)));
    }
    drop(lab);
    write_outputs(config, cells)
}

/// One size: its manifests and rules, and how to measure each contender.
struct SizeBench<'a> {
    lab: &'a Lab,
    config: &'a Config,
    stop: &'a AtomicBool,
    measured: Service,
    changed: Service,
    manifests: ManifestSet,
    rules: String,
    changed_rules: String,
    /// Map capacities for N, where N outgrows the agent's defaults.
    map_size_flags: Vec<String>,
    /// Whether this size also measures an endpoint change.
    change: bool,
}

impl<'a> SizeBench<'a> {
    fn new(lab: &'a Lab, config: &'a Config, n: usize, change: bool, stop: &'a AtomicBool) -> Result<SizeBench<'a>> {
        let echo: Vec<Ipv4Addr> = ECHO_PODS.iter().map(|p| pod_ip(lab, p)).collect::<Result<_>>()?;
        let mut services = services::generate(n, &echo, config.filler_endpoints)?;
        // The pods are the lab node's, and say so, as a cluster's
        // EndpointSlices do: the agent then keeps a client's address for
        // them (kube-proxy's rules masquerade NodePort traffic whatever the
        // pod's node). Before 2026-12-05 11:30 UTC they named no node, and
        // the agent source-translated every flow as to another node's pods.
        let manifests = ManifestSet::write_on_node(&services, services::TARGET_PORT, config.manifest_format, crate::agent::NODE_NAME)?;
        let rules = iptables::ruleset(&services);
        let measured = services.last().context("no Services")?.clone();
        let changed = Service { endpoints: vec![pod_ip(lab, NEW_ENDPOINT_POD)?], ..measured.clone() };
        *services.last_mut().context("no Services")? = changed.clone();
        let changed_rules = iptables::ruleset(&services);
        let map_size_flags = services::agent_map_size_flags(&services, lab.node_ips().len());
        Ok(SizeBench { lab, config, stop, measured, changed, manifests, rules, changed_rules, map_size_flags, change })
    }

    fn bounds(&self, limit: Duration) -> Bounds<'a> {
        Bounds { stop: self.stop, limit }
    }

    fn measure(&self, contender: Contender) -> Result<Figures> {
        let node_port = SocketAddrV4::new(NODE_IP, MEASURED_NODE_PORT);
        match contender {
            Contender::Direct => {
                let pod = SocketAddrV4::new(pod_ip(self.lab, ECHO_PODS[0])?, crate::ECHO_PORT);
                self.traffic(pod)
            }
            Contender::Ebpf | Contender::EbpfForwarded => {
                let pins = PinDir::unique("bench");
                let started = Instant::now();
                let log = AgentLog::File(self.config.out_dir.join("agent.log"));
                let mut agent = AgentProcess::launch_with(&self.config.agent, self.lab, self.manifests.path(), pins.path(), &log, |command| {
                    command.args(["--uplink-hook", &self.config.uplink_hook.to_string()]).args(&self.map_size_flags);
                    if contender == Contender::EbpfForwarded {
                        command.args(["--host-routing", "off"]);
                    }
                })?;
                // Programmed means serving: the agent may fill its maps
                // before its programs are attached, and it serves before it
                // is ready (its readiness waits for what it keeps for the
                // next pass), so the probes start with the agent.
                let programmed = workload::first_answer_while(
                    self.lab.client(),
                    node_port,
                    &ECHO_PODS,
                    started,
                    self.bounds(PROGRAMMING_LIMIT),
                    || agent.running(&log),
                );
                // An agent that exited is named by the probes' error.
                let programmed = programmed?;
                agent.wait_ready(self.lab, &log)?;
                expect_host_routing(self.lab, contender == Contender::Ebpf)?;
                // Measured once the agent is done, as iptables is once
                // iptables-restore has exited.
                agent.wait_idle(AGENT_QUIET, AGENT_QUIET_LIMIT)?;
                let mut figures = self.traffic(node_port)?;
                figures.set_ns_per_packet(&self.ns_per_packet(node_port)?);
                figures.programming_ms = Some(ms(programmed));
                if self.change {
                    let since = Instant::now();
                    self.manifests.set_measured(&self.changed)?;
                    let took = workload::first_answer_from(self.lab.client(), node_port, &[NEW_ENDPOINT_POD], since, self.bounds(ENDPOINT_CHANGE_LIMIT));
                    self.manifests.set_measured(&self.measured)?;
                    figures.endpoint_change_ms = Some(ms(took?));
                }
                // The agent detaches its links when its pins go: stop it, then remove them.
                drop(agent);
                drop(pins);
                detach::wait_programs_detached(self.lab, DETACH_LIMIT)?;
                Ok(figures)
            }
            Contender::Iptables => {
                let started = Instant::now();
                let rules = NatRules::load(self.lab.node(), &self.rules)?;
                let programmed = self.first_answer(node_port, started)?;
                let mut figures = self.traffic(node_port)?;
                figures.programming_ms = Some(ms(programmed));
                if self.change {
                    let since = Instant::now();
                    rules.replace(&self.changed_rules)?;
                    let took = workload::first_answer_from(self.lab.client(), node_port, &[NEW_ENDPOINT_POD], since, self.bounds(ENDPOINT_CHANGE_LIMIT))?;
                    figures.endpoint_change_ms = Some(ms(took));
                }
                rules.remove()?;
                Ok(figures)
            }
        }
    }

    /// How long after `since` the measured Service first answered on `to`.
    fn first_answer(&self, to: SocketAddrV4, since: Instant) -> Result<Duration> {
        workload::first_answer_from(self.lab.client(), to, &ECHO_PODS, since, self.bounds(PROGRAMMING_LIMIT))
    }

    /// The attached programs' nanoseconds per run over RR traffic to `to`
    /// of its own, after the figures: with the kernel's run-time statistics
    /// on, every program run also pays two clock reads, which the figures
    /// the other contenders are compared with must not include.
    fn ns_per_packet(&self, to: SocketAddrV4) -> Result<BTreeMap<String, f64>> {
        let stats = prog_stats::enable()?;
        let before = prog_stats::snapshot(self.lab)?;
        let one_cpu = OneCpu::pin()?;
        workload::request_response(self.lab.client(), to, self.config.rr_requests, self.bounds(self.config.workload_limit))?;
        drop(one_cpu);
        let ns = prog_stats::ns_per_run(&before, &prog_stats::snapshot(self.lab)?);
        drop(stats);
        Ok(ns)
    }

    /// RR, CRR and throughput against `to`, from the client namespace; RR
    /// and CRR on one CPU (`one_cpu`).
    fn traffic(&self, to: SocketAddrV4) -> Result<Figures> {
        let (client, config, bounds) = (self.lab.client(), self.config, self.bounds(self.config.workload_limit));
        workload::settle(client, to, bounds)?;
        let one_cpu = OneCpu::pin()?;
        let rr = workload::request_response(client, to, config.rr_requests, bounds)?;
        let (crr, crr_rate) = workload::connect_request_response(client, to, config.crr_requests, bounds)?;
        drop(one_cpu);
        let (rate, cpu) = workload::throughput(client, to, config.threads, config.requests_per_thread, bounds)?;
        Ok(Figures {
            rr_p50_us: rr.p50,
            rr_p99_us: rr.p99,
            rr_p999_us: rr.p999,
            crr_per_s: crr_rate,
            crr_p50_us: crr.p50,
            crr_p99_us: crr.p99,
            throughput_per_s: rate,
            cpu_us_per_request: cpu,
            ..Figures::default()
        })
    }
}

/// Fails unless the agent's programs route (`routes`) or leave routing to
/// the node, as the contender's name says: `ebpf`'s `auto` routes only on a
/// node with no netfilter chain, which the lab's node must be by then.
fn expect_host_routing(lab: &Lab, routes: bool) -> Result<()> {
    let gauge = crate::agent::metric(lab.node(), "lb_host_routing")?;
    if gauge != u64::from(routes) {
        bail!("the agent's lb_host_routing is {gauge}, not {}: see agent.log for the netfilter hooks it found", u64::from(routes));
    }
    Ok(())
}

fn pod_ip(lab: &Lab, name: &str) -> Result<Ipv4Addr> {
    Ok(lab.pod(name).with_context(|| format!("the lab has no pod {name}"))?.ip)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn write_outputs(config: &Config, cells: Vec<Cell>) -> Result<Outputs> {
    let report = Report {
        suite: "l4",
        date: run_date()?,
        machine: report::machine(),
        command: config.command.clone(),
        path: "NodePort of the node from the client namespace (the agent's uplink program for ebpf, \
               nat PREROUTING for iptables); direct = client to pod IP:8080. RR and CRR run with the client and the echo pods \
               on one CPU, for every contender",
        agent_input: config.manifest_format.describe(),
        concurrency: config.threads,
        cells,
    };
    Outputs::write(&config.out_dir, "l4", "l4-latency.png", report.markdown(), &report, |plot_file| {
        plot::latency_png(plot_file, &report.cells)
    })
}

/// When a run ended, as its report dates it.
fn run_date() -> Result<String> {
    let date = run_command(std::process::Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))?;
    Ok(date.trim().to_owned())
}

fn write(path: &Path, contents: &[u8]) -> Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
