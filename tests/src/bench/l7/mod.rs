//! The L7 benchmark (`cargo xtask bench l7`), following
//! shared/reference/benchmarks.md: this project's agent, nginx and HAProxy as
//! reverse proxies of the same routes in the lab's node namespace, each
//! pinned to the same CPU, driven by `wrk` from the client namespace, with
//! `direct` (wrk to one pod) as the floor; then one run per proxy during
//! which a route changes again and again, counting failed requests.

pub mod cost;
mod cost_load;
mod daemon;
mod haproxy;
mod ingress;
mod nginx;
mod plot;
mod proxies;
mod report;
mod routes;
mod targets;
mod wrk;

use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{Outputs, run_date};
use crate::bench::Named;
use crate::bench::manifests::ManifestSet;
use crate::echo::{EchoServer, HttpAnswers};
use crate::lab::{Lab, LabSpec};
use proxies::{Bed, WorkDir};
use report::{Cell, Churn, Figures, Report};
pub use report::{Contender, Pods};
use routes::{CHURN_HOST, MEASURED_HOST, MEASURED_PATH, PODS};
use wrk::{Load, WrkResult};

/// The programs the contenders and the load need, from `cargo xtask install`.
const TOOLS: [&str; 4] = ["nginx", "haproxy", "wrk", "taskset"];
/// Where every pod serves HTTP/1.1 keep-alive, beside the lab's echo port.
const KEEP_ALIVE_PORT: u16 = 8090;
/// After the route changes, how long the last one may take to be served.
const LAST_CHANGE_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Config {
    pub agent: PathBuf,
    pub out_dir: PathBuf,
    pub rounds: usize,
    /// Length of each measured wrk run.
    pub duration: Duration,
    /// Length of the run during which routes change.
    pub churn_duration: Duration,
    /// Route changes per proxy, spread over the middle 80% of that run.
    pub changes: usize,
    pub connections: usize,
    /// Rounds that would start after this are skipped (one always runs).
    pub time_limit: Duration,
    /// What the report says was run.
    pub command: String,
    /// The contenders measured, in this order within each round; the route
    /// changes run for the proxies among them.
    pub contenders: Vec<Contender>,
    /// The kinds of pods every contender is measured against, in this order
    /// within each round; the route changes run against the first.
    pub pods: Vec<Pods>,
}

impl Config {
    /// The default run: 5 rounds of 4 x 10 s plus 3 x 30 s of route
    /// changes, about 6 minutes on 2 cores.
    pub fn standard(agent: PathBuf, out_dir: PathBuf) -> Config {
        Config {
            agent,
            out_dir,
            rounds: 5,
            duration: Duration::from_secs(10),
            churn_duration: Duration::from_secs(30),
            changes: 1000,
            connections: 16,
            time_limit: Duration::from_secs(6 * 60),
            command: "cargo xtask bench l7".into(),
            contenders: Contender::ALL.to_vec(),
            pods: Pods::ALL.to_vec(),
        }
    }

    /// CI: everything runs and every output is written, nothing is timed seriously.
    pub fn quick(agent: PathBuf, out_dir: PathBuf) -> Config {
        Config {
            rounds: 1,
            duration: Duration::from_secs(1),
            churn_duration: Duration::from_secs(3),
            changes: 20,
            connections: 4,
            time_limit: Duration::from_secs(60),
            command: "cargo xtask bench l7 --quick".into(),
            ..Config::standard(agent, out_dir)
        }
    }
}

/// Builds the lab, runs the rounds and the route changes, tears everything
/// down (also on error or when `stop` is set), and writes `l7.md`, `l7.json`
/// and `l7.png` into `config.out_dir`.
pub fn run_l7(config: &Config, stop: &AtomicBool) -> Result<Outputs> {
    if config.rounds == 0 {
        bail!("nothing to run: give at least one round");
    }
    require_tools()?;
    if config.contenders.is_empty() || config.pods.is_empty() {
        bail!("nothing to run: give at least one contender and one kind of pods");
    }
    let (proxy_cpus, wrk_cpus) = cpus();
    let lab = Lab::build(LabSpec { pods: (0..PODS).map(routes::pod_name).collect() }).context("building the lab")?;
    let pods = (0..PODS)
        .map(|i| lab.pod(&routes::pod_name(i)).context("a pod of the lab is missing"))
        .collect::<Result<Vec<_>>>()?;
    // The lab's echo servers answer and close; these keep their connections.
    let keep_alive_servers = pods
        .iter()
        .map(|pod| EchoServer::spawn(&pod.ns, &pod.name, KEEP_ALIVE_PORT, HttpAnswers::KeepAlive))
        .collect::<Result<Vec<_>>>()?;
    let beds = config
        .pods
        .iter()
        .map(|&kind| {
            let endpoints: Vec<SocketAddrV4> = match kind {
                Pods::Close => pods.iter().map(|pod| pod.echo_addr()).collect(),
                Pods::KeepAlive => pods.iter().map(|pod| SocketAddrV4::new(pod.ip, KEEP_ALIVE_PORT)).collect(),
            };
            let services = routes::services(&routes::RouteSet::new(&endpoints, 0));
            Ok(Bed {
                lab: &lab,
                agent: &config.agent,
                manifests: ManifestSet::write_targeting(&services, endpoints[0].port())?,
                pods: endpoints,
                work: WorkDir::create()?,
                proxy_cpus: proxy_cpus.clone(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut rounds: Vec<Vec<Figures>> = vec![Vec::new(); config.contenders.len() * beds.len()];
    for round in 0..config.rounds {
        if round > 0 && start.elapsed() > config.time_limit {
            eprintln!("time budget used after {round} rounds, skipping the rest");
            break;
        }
        let runs = config.pods.iter().zip(&beds).flat_map(|(kind, bed)| config.contenders.iter().map(move |c| (*kind, bed, *c)));
        for ((kind, bed, contender), figures) in runs.zip(&mut rounds) {
            eprintln!("round {}/{}: {} ({} pods)", round + 1, config.rounds, contender.name(), kind.name());
            let bench = Bench { bed, config, stop, wrk_cpus: &wrk_cpus };
            figures.push(bench.measure(contender).with_context(|| format!("measuring {} ({} pods)", contender.name(), kind.name()))?);
        }
    }
    let mut churn = Vec::new();
    let bench = Bench { bed: &beds[0], config, stop, wrk_cpus: &wrk_cpus };
    for contender in Contender::PROXIES.into_iter().filter(|c| config.contenders.contains(c)) {
        eprintln!("route changes: {}", contender.name());
        churn.push(bench.churn(contender).with_context(|| format!("route changes on {}", contender.name()))?);
    }
    drop(beds);
    drop(keep_alive_servers);
    drop(lab);
    let cells = config.pods.iter().flat_map(|kind| config.contenders.iter().map(move |c| (*kind, *c)));
    let cells = cells.zip(rounds).map(|((kind, contender), r)| Cell::new(contender, kind, r)).collect();
    write_outputs(config, cells, churn, proxy_cpus, wrk_cpus)
}

struct Bench<'a> {
    bed: &'a Bed<'a>,
    config: &'a Config,
    stop: &'a AtomicBool,
    wrk_cpus: &'a str,
}

impl Bench<'_> {
    fn load(&self, duration: Duration) -> Result<Load<'_>> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        let (host, path) = (MEASURED_HOST, MEASURED_PATH);
        Ok(Load { client: self.bed.lab.client(), cpus: self.wrk_cpus, threads: 1, connections: self.config.connections, duration, host, path })
    }

    fn measure(&self, contender: Contender) -> Result<Figures> {
        let load = self.load(self.config.duration)?;
        let (result, proxy_figures) = if contender == Contender::Direct {
            (load.run(self.bed.pods[0])?, None)
        } else {
            let mut proxy = self.bed.start(contender)?;
            let cpu_before = daemon::cpu_seconds(proxy.pid());
            let result = load.run(proxy.addr())?;
            let cpu = daemon::cpu_seconds(proxy.pid()) - cpu_before;
            proxy.check_running()?;
            let cpu_us_per_request = cpu * 1e6 / result.requests.max(1) as f64;
            (result, Some((daemon::peak_rss_mib(proxy.pid()), cpu_us_per_request)))
        };
        let WrkResult { requests_per_s, p50_us, p99_us, failed, .. } = result;
        Ok(Figures {
            requests_per_s,
            p50_us,
            p99_us,
            failed: failed as f64,
            peak_rss_mib: proxy_figures.map(|(rss, _)| rss),
            proxy_cpu_us: proxy_figures.map(|(_, cpu)| cpu),
        })
    }

    /// One load run while the changed route gets `changes` new versions,
    /// evenly paced over the middle 80% of the run (bounded by its end).
    fn churn(&self, contender: Contender) -> Result<Churn> {
        let duration = self.config.churn_duration;
        let mut proxy = self.bed.start(contender)?;
        let swaps_before = proxy.swaps()?;
        let running = self.load(duration)?.start(proxy.addr())?;
        let (begin, end) = (Instant::now() + duration / 10, Instant::now() + duration.mul_f64(0.9));
        let interval = duration.mul_f64(0.8) / self.config.changes.max(1) as u32;
        let mut changes = 0;
        while changes < self.config.changes && Instant::now() < end && !self.stop.load(Ordering::Relaxed) {
            let due = begin + interval * changes as u32;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            changes += 1;
            proxy.apply(changes)?;
        }
        let result = running.finish()?;
        let last_route_served = proxy.wait_serving(CHURN_HOST, &routes::churn_path(changes), LAST_CHANGE_LIMIT).is_ok();
        let applied = match (swaps_before, proxy.swaps()?) {
            (Some(before), Some(after)) => Some(after - before),
            _ => None,
        };
        if changes < self.config.changes {
            eprintln!("{}: only {changes} of {} route changes fitted in the run", contender.name(), self.config.changes);
        }
        Ok(Churn {
            contender,
            how: proxy.how_changes_apply(),
            changes,
            applied,
            requests: result.requests,
            failed: result.failed,
            requests_per_s: result.requests_per_s,
            last_route_served,
        })
    }
}

fn require_tools() -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).collect();
    let missing: Vec<&str> = TOOLS.into_iter().filter(|tool| !dirs.iter().any(|d| d.join(tool).is_file())).collect();
    if !missing.is_empty() {
        bail!("the L7 benchmark needs {}: run `cargo xtask install` (as root) first", missing.join(", "));
    }
    Ok(())
}

/// Proxies on the last CPU, wrk on the first (the same one when there is one).
fn cpus() -> (String, String) {
    let count = std::thread::available_parallelism().map_or(1, |n| n.get());
    ((count - 1).to_string(), "0".to_owned())
}

fn write_outputs(config: &Config, cells: Vec<Cell>, churn: Vec<Churn>, proxy_cpus: String, wrk_cpus: String) -> Result<Outputs> {
    let report = Report {
        suite: "l7",
        date: run_date()?,
        machine: crate::bench::report::machine(),
        command: config.command.clone(),
        proxy_cpus,
        wrk_cpus,
        connections: config.connections,
        seconds_per_run: config.duration.as_secs(),
        cells,
        churn,
    };
    let markdown = report.markdown() + &targets::markdown(&report);
    Outputs::write(&config.out_dir, "l7", "l7.png", markdown, &report, |plot_file| plot::bars_png(plot_file, &report))
}
