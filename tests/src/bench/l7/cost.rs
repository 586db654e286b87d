//! The proxy's cost per request, counted rather than timed (`l7_cost`): on a
//! shared machine requests/s swing by half between runs, while the
//! instructions a request costs and the system calls it makes hardly move.
//!
//! The agent's L7 server (the same `L7Server` the agent runs, on the bench's
//! routes, one worker thread) runs alone in a process under valgrind's
//! callgrind, in a network namespace of its own with the bench's ten pods as
//! loopback addresses (`127.0.0.2`..`127.0.0.11`) of one echo server per kind
//! of pods. Two runs per kind, of `low` and `high` requests after the same
//! warm-up, cancel the start and the end: instructions per request are
//! (Ir(high) - Ir(low)) / (high - low), userspace only; valgrind's syscall
//! trace counts the system calls per request the same way.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, Result, bail};

use super::cost_load;
use super::report::Pods;
use super::routes::{self, MEASURED_HOST, PODS, RouteSet};
use super::{KEEP_ALIVE_PORT, ingress};
use crate::bench::Named;
use crate::bench::manifests::ManifestSet;
use crate::echo::{EchoServer, HttpAnswers};
use crate::lab::ECHO_PORT;
use crate::netns::NetNs;

/// Where the proxy listens inside the namespace.
const PROXY_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8000));
/// What the proxy prints once its listener is bound and its routes are in.
const READY: &str = "ready";
/// The system call valgrind traces that natively is a vDSO call.
const CLOCK: &str = "clock_gettime";

pub struct CostConfig {
    /// The program to run as the proxy: `l7_cost` itself, built on the code measured.
    pub proxy_binary: PathBuf,
    pub pods: Vec<Pods>,
    /// Requests of the two runs per kind of pods.
    pub low: usize,
    pub high: usize,
    /// Requests of both runs before the counted ones.
    pub warm_up: usize,
    pub connections: usize,
    /// Where callgrind's files and valgrind's logs go.
    pub out_dir: PathBuf,
}

/// What one kind of pods costs per request.
#[derive(Debug)]
pub struct Cost {
    pub pods: Pods,
    pub instructions: f64,
    /// System calls per request, clock reads left out.
    pub syscalls: f64,
    /// `clock_gettime` per request: a system call under valgrind, a vDSO
    /// call (no kernel entry) when run natively.
    pub clock_reads: f64,
    /// System calls per request by name, the most frequent first.
    pub syscalls_by_name: Vec<(String, f64)>,
}

/// Runs the measure for every kind of pods in `config`.
pub fn measure(config: &CostConfig) -> Result<Vec<Cost>> {
    std::fs::create_dir_all(&config.out_dir)?;
    let ns = NetNs::create("l7cost")?;
    ns.ip(&["link", "set", "lo", "up"])?;
    let _servers = [
        EchoServer::spawn(&ns, "web", ECHO_PORT, HttpAnswers::CloseAfterEach)?,
        EchoServer::spawn(&ns, "web", KEEP_ALIVE_PORT, HttpAnswers::KeepAlive)?,
    ];
    let mut costs = Vec::new();
    for &pods in &config.pods {
        let port = match pods {
            Pods::Close => ECHO_PORT,
            Pods::KeepAlive => KEEP_ALIVE_PORT,
        };
        let endpoints: Vec<SocketAddrV4> = (0..PODS).map(|i| SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2 + i as u8), port)).collect();
        let route_set = RouteSet::new(&endpoints, 0);
        let manifests = ManifestSet::write_targeting(&routes::services(&route_set), port)?;
        std::fs::write(manifests.path().join("ingresses.yaml"), ingress::yaml(&route_set))?;
        let run = |requests: usize| -> Result<Counted> {
            let name = format!("{}-{requests}", pods.name());
            eprintln!("l7_cost: {name}: {} + {requests} requests under callgrind", config.warm_up);
            one_run(config, &ns, manifests.path(), requests, &config.out_dir.join(name))
        };
        let (low, high) = (run(config.low)?, run(config.high)?);
        let requests = (config.high - config.low) as f64;
        let per_request = |high: u64, low: u64| (high as f64 - low as f64) / requests;
        let clock_reads = per_request(high.syscalls.get(CLOCK).copied().unwrap_or(0), low.syscalls.get(CLOCK).copied().unwrap_or(0));
        let mut by_name: Vec<(String, f64)> = high
            .syscalls
            .iter()
            .map(|(name, count)| (name.clone(), per_request(*count, low.syscalls.get(name).copied().unwrap_or(0))))
            .filter(|(name, count)| count.abs() >= 0.01 && name != CLOCK)
            .collect();
        by_name.sort_by(|a, b| b.1.total_cmp(&a.1));
        costs.push(Cost {
            pods,
            instructions: per_request(high.instructions, low.instructions),
            syscalls: by_name.iter().map(|(_, count)| count).sum(),
            clock_reads,
            syscalls_by_name: by_name,
        });
    }
    Ok(costs)
}

/// What one run of the proxy counted, start to end.
struct Counted {
    instructions: u64,
    syscalls: BTreeMap<String, u64>,
}

fn one_run(config: &CostConfig, ns: &NetNs, manifests: &Path, requests: usize, out: &Path) -> Result<Counted> {
    let callgrind_file = out.with_extension("callgrind");
    let log_file = out.with_extension("valgrind.log");
    let binary = config.proxy_binary.to_str().context("the proxy binary's path")?;
    let args = [
        "-c",
        "1",
        "valgrind",
        "--tool=callgrind",
        &format!("--callgrind-out-file={}", callgrind_file.display()),
        &format!("--log-file={}", log_file.display()),
        "--trace-syscalls=yes",
        binary,
        "proxy",
        "--manifests",
        manifests.to_str().context("the manifests' path")?,
        "--listen",
        &PROXY_ADDR.to_string(),
    ];
    let mut child = ns.exec("taskset", &args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn()?;
    let result = drive(ns, &mut child, config.warm_up, requests, config.connections);
    // Closing stdin ends the proxy, which is when callgrind writes its counts.
    drop(child.stdin.take());
    let status = child.wait()?;
    result?;
    if !status.success() {
        bail!("the proxy under callgrind exited with {status}; see {}", log_file.display());
    }
    Ok(Counted { instructions: callgrind_total(&callgrind_file)?, syscalls: syscalls_by_name(&log_file)? })
}

fn drive(ns: &NetNs, child: &mut Child, warm_up: usize, requests: usize, connections: usize) -> Result<()> {
    let stdout = child.stdout.take().context("the proxy's stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != READY {
        bail!("the proxy did not start: {line:?}");
    }
    cost_load::send(ns, PROXY_ADDR, MEASURED_HOST, warm_up, connections)?;
    cost_load::send(ns, PROXY_ADDR, MEASURED_HOST, requests, connections)
}

/// The `totals:` (or `summary:`) line of a callgrind file: every instruction
/// of the process, all threads.
fn callgrind_total(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let total = text.lines().find_map(|line| line.strip_prefix("totals:").or_else(|| line.strip_prefix("summary:")));
    let total = total.with_context(|| format!("no totals in {}", file.display()))?;
    Ok(total.split_whitespace().next().unwrap_or_default().parse()?)
}

/// Counts valgrind's `--trace-syscalls` lines by system call name, e.g.
/// `SYSCALL[123,2](232) sys_epoll_wait ( ... )`: the program's calls, not
/// valgrind's own.
fn syscalls_by_name(log: &Path) -> Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut counts = BTreeMap::new();
    for name in text.lines().filter_map(syscall_name) {
        *counts.entry(name.to_owned()).or_default() += 1;
    }
    Ok(counts)
}

fn syscall_name(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("SYSCALL[")?;
    let (_, rest) = rest.split_once(") ")?;
    // An async call's completion comes back as `SYSCALL[..](nr) ... [async] --> ...`.
    let name = rest.split_whitespace().next()?.strip_prefix("sys_")?;
    Some(name.split('(').next().unwrap_or(name))
}

/// The proxy side: the agent's L7 server on the manifests' routes, one
/// worker per CPU it may use (one under `taskset -c 1`), until stdin closes.
pub fn serve(manifests: &Path, listen: SocketAddr) -> Result<()> {
    use ingress_userspace::l7::L7Options;
    use ingress_userspace::l7::options::ProxyOptions;
    use ingress_userspace::l7::server::{L7Config, L7Server};

    // As the bench runs the agent: its log format, warnings only.
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new("warn")).with_writer(std::io::stderr).init();
    let loaded = ingress_userspace::manifests::load_dir(manifests)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let config = L7Config { http: Some(listen), https: None, proxy: ProxyOptions::default(), routes: L7Options::default() };
    let server = runtime.block_on(L7Server::start(config))?;
    let problems = server.update(&loaded.snapshot);
    if !problems.is_empty() {
        bail!("the routes have problems: {problems:?}");
    }
    println!("{READY}");
    // Blocks until the driver closes stdin; the workers serve meanwhile.
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_names_from_valgrind_trace_lines() {
        let cases = [
            ("SYSCALL[4242,2](232) sys_epoll_wait ( 3, 0x1, 1024, -1 ) --> [async] ...", Some("epoll_wait")),
            ("SYSCALL[4242,1](20) sys_writev ( 7, 0x2, 2 )[sync] --> Success(0x5a)", Some("writev")),
            ("SYSCALL[4242,2](232) ... [async] --> Success(0x1)", None),
            ("SYSCALL[4242,1](228) sys_clock_gettime( 1, 0x3 ) --> Success(0x0)", Some("clock_gettime")),
            ("==4242== Process terminating", None),
            ("SYSCALL[4242", None),
        ];
        for (line, expected) in cases {
            assert_eq!(syscall_name(line), expected, "{line}");
        }
    }
}
