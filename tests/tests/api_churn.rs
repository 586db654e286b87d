//! The agent against an API server under churn and outages: thousands of
//! Services, EndpointSlices changing hundreds of times a second while
//! traffic runs, every watch cut every few seconds, a storm of 410 Gone, and
//! the API server away altogether. Traffic to a Service whose pods all stay
//! up must never fail, the maps must end up matching the API exactly, and the
//! agent's memory must stay bounded.
//!
//! CI runs the quick form (1,000 Services, 200 changes/s). `API_CHURN=full`
//! runs the figures: 10,000 Services, 1,000 changes/s for a minute,
//! then the API server away for a minute.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ingress_tests::figures;
use ingress_tests::agent::{AgentLog, AgentProcess, NODE_NAME, admin_get, agent_binary};
use ingress_tests::api_stand_in::ApiStandIn;
use ingress_tests::bench::manifests::yaml;
use ingress_tests::bench::workload::{Bounds, first_answer_from};
use ingress_tests::bench::services::{MEASURED_NODE_PORT, SERVICE_PORT, Service, TARGET_PORT, generate};
use ingress_tests::lab::{Lab, LabSpec, NODE_IP};
use ingress_tests::netns::is_root;
use ingress_tests::pins::PinDir;
use ingress_tests::programmed::ProgrammedServices;
use ingress_tests::traffic::{Tally, tcp_request_timeout};
use ingress_userspace::model::{Frontend, Protocol};
use serde_json::{Value, json};

const PODS: [&str; 3] = ["pod-a", "pod-b", "pod-c"];

struct Scale {
    services: usize,
    changes_per_second: u32,
    churn: Duration,
    cut_every: Duration,
    /// Within the churn, a window where every watch is expired twice a second.
    storm: Duration,
    outage: Duration,
    /// How long the maps may take to match the API once it is back.
    converge_limit: Duration,
}

impl Scale {
    fn from_env() -> Scale {
        if std::env::var("API_CHURN").as_deref() == Ok("full") {
            Scale {
                services: 10_000,
                changes_per_second: 1_000,
                churn: Duration::from_secs(60),
                cut_every: Duration::from_secs(5),
                storm: Duration::from_secs(10),
                outage: Duration::from_secs(60),
                converge_limit: Duration::from_secs(60),
            }
        } else {
            Scale {
                services: 1_000,
                changes_per_second: 200,
                churn: Duration::from_secs(10),
                cut_every: Duration::from_secs(2),
                storm: Duration::from_secs(2),
                outage: Duration::from_secs(5),
                converge_limit: Duration::from_secs(30),
            }
        }
    }
}

/// The Service's objects as the API server holds them.
fn objects(service: &Service) -> Result<Vec<Value>> {
    serde_yaml::Deserializer::from_str(&yaml(service, TARGET_PORT))
        .map(|document| serde::Deserialize::deserialize(document).context("generated YAML"))
        .collect()
}

fn apply_service(api: &ApiStandIn, service: &Service) -> Result<()> {
    objects(service)?.iter().try_for_each(|object| api.apply(object))
}

fn node_object(lab: &Lab) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": { "name": NODE_NAME },
        "status": { "addresses": [{ "type": "InternalIP", "address": lab.node_ip().to_string() }] },
    })
}

fn pod_ips(lab: &Lab) -> Vec<Ipv4Addr> {
    PODS.iter().map(|p| *lab.pod(p).expect("a lab pod").echo_addr().ip()).collect()
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS number")
}

fn api_errors(lab: &Lab) -> u64 {
    let metrics = admin_get(lab.node(), "/metrics").unwrap_or_default();
    metrics.lines().filter(|l| l.starts_with("lb_api_errors_total{")).filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).sum()
}

/// The dataplane's nonzero drop counters, to say why a request failed.
fn drops(lab: &Lab) -> Vec<String> {
    let metrics = admin_get(lab.node(), "/metrics").unwrap_or_default();
    metrics.lines().filter(|l| l.starts_with("lb_dataplane_packets_total{reason=\"drop_") && !l.ends_with(" 0")).map(String::from).collect()
}

fn cluster_frontend(service: &Service) -> Frontend {
    Frontend { addr: IpAddr::V4(service.cluster_ip), port: SERVICE_PORT, protocol: Protocol::Tcp }
}

/// Services whose programmed backend count differs from the API's.
fn mismatches(programmed: &ProgrammedServices, services: &[Service]) -> usize {
    services.iter().filter(|s| programmed.backend_count(&cluster_frontend(s)) != Some(s.endpoints.len())).count()
}

/// The Services and the changes the churn makes to them: filler Services
/// shrink and grow within their own addresses, the measured one moves
/// between subsets of pods that all stay up.
struct Churner {
    original: Vec<Service>,
    current: Vec<Service>,
    pods: Vec<Ipv4Addr>,
    step: usize,
    changes: u64,
}

impl Churner {
    fn change_filler(&mut self, api: &ApiStandIn) -> Result<()> {
        let fillers = self.original.len() - 1;
        let index = (self.step * 7919) % fillers;
        self.step += 1;
        let original = &self.original[index].endpoints;
        let keep = 1 + self.step % original.len();
        self.current[index].endpoints = original[..keep].to_vec();
        self.changes += 1;
        apply_service(api, &self.current[index])
    }

    fn move_measured(&mut self, api: &ApiStandIn, round: usize) -> Result<()> {
        const SUBSETS: [&[usize]; 4] = [&[0, 1], &[1, 2], &[0, 2], &[0, 1, 2]];
        let last = self.current.len() - 1;
        self.current[last].endpoints = SUBSETS[round % SUBSETS.len()].iter().map(|&i| self.pods[i]).collect();
        self.changes += 1;
        apply_service(api, &self.current[last])
    }
}

/// What the churn did, and how long the maps took to match the API after it.
struct ChurnRun {
    changes: u64,
    cuts: u32,
    expiries: u32,
    errors_during_outage: u64,
    converge_ms: u128,
    converged: Result<()>,
    final_services: Vec<Service>,
}

/// Churns for `scale.churn` (cutting and expiring watches), then keeps
/// churning with the API server away for `scale.outage`, brings it back
/// with one more change, and waits for the maps to match.
fn churn(api: &ApiStandIn, lab: &Lab, scale: &Scale, services: &[Service], programmed: &ProgrammedServices) -> Result<ChurnRun> {
    let mut churner = Churner { original: services.to_vec(), current: services.to_vec(), pods: pod_ips(lab), step: 0, changes: 0 };
    let tick = Duration::from_millis(10);
    let per_tick = (scale.changes_per_second / 100).max(1);
    let storm_start = scale.churn / 2 - scale.storm / 2;
    let (mut cuts, mut expiries) = (0u32, 0u32);
    let started = Instant::now();
    let mut next_tick = started;
    let (mut last_cut, mut last_expiry, mut measured_round) = (started, started, 0usize);
    let mut down = false;
    let errors_before = api_errors(lab);
    loop {
        let now = Instant::now();
        let elapsed = now - started;
        if elapsed >= scale.churn + scale.outage {
            break;
        }
        for _ in 0..per_tick {
            churner.change_filler(api)?;
        }
        if elapsed.as_secs() as usize > measured_round {
            measured_round = elapsed.as_secs() as usize;
            churner.move_measured(api, measured_round)?;
        }
        if elapsed < scale.churn {
            if now - last_cut >= scale.cut_every {
                api.cut_watches();
                cuts += 1;
                last_cut = now;
            }
            let in_storm = elapsed >= storm_start && elapsed < storm_start + scale.storm;
            if in_storm && now - last_expiry >= Duration::from_millis(500) {
                api.expire_watches();
                expiries += 1;
                last_expiry = now;
            }
        } else if !down {
            api.set_down(true);
            down = true;
        }
        next_tick += tick;
        std::thread::sleep(next_tick.saturating_duration_since(Instant::now()));
    }
    let errors_during_outage = api_errors(lab) - errors_before;
    api.set_down(false);
    churner.move_measured(api, 3)?;
    let back = Instant::now();
    let converged = wait_until(scale.converge_limit, || (mismatches(programmed, &churner.current) == 0).then_some(()));
    Ok(ChurnRun {
        changes: churner.changes,
        cuts,
        expiries,
        errors_during_outage,
        converge_ms: back.elapsed().as_millis(),
        converged,
        final_services: churner.current,
    })
}

/// With the API quiet, moves the measured Service to one pod after another,
/// one endpoint change at a time: the milliseconds from each write to the
/// first answer from the new pod, through the API server, the watch and the
/// agent's pass (a patch of the last snapshot at any number of Services).
fn endpoint_changes_ms(api: &ApiStandIn, lab: &Lab, services: &[Service]) -> Result<Vec<u128>> {
    let mut measured = services.last().context("no Services")?.clone();
    let pods = pod_ips(lab);
    let node_port = SocketAddrV4::new(NODE_IP, MEASURED_NODE_PORT);
    let stop = AtomicBool::new(false);
    let bounds = Bounds { stop: &stop, limit: Duration::from_secs(10) };
    let mut took = Vec::new();
    for (move_number, pod) in [0, 1, 2, 0, 1, 2, 0].into_iter().enumerate() {
        measured.endpoints = vec![pods[pod]];
        let since = Instant::now();
        apply_service(api, &measured)?;
        let elapsed = first_answer_from(lab.client(), node_port, &[PODS[pod]], since, bounds)?;
        // The first move only settles the Service on one pod.
        if move_number > 0 {
            took.push(elapsed.as_millis());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(took)
}

#[test]
fn traffic_survives_api_churn_cuts_expiry_and_outage_and_the_maps_converge() -> Result<()> {
    if !is_root() {
        eprintln!("skipped: needs root");
        return Ok(());
    }
    let scale = Scale::from_env();
    let lab = Lab::build(LabSpec { pods: PODS.iter().map(|p| p.to_string()).collect() })?;
    lab.client().sysctl("net.ipv4.tcp_tw_reuse", "1")?;
    let pods = pod_ips(&lab);
    let listener = lab.node().run(|| std::net::TcpListener::bind("127.0.0.1:0"))??;
    let api = ApiStandIn::serve(listener)?;
    api.apply(&node_object(&lab))?;
    let services = generate(scale.services, &pods[..2], None)?;
    for service in &services {
        apply_service(&api, service)?;
    }

    let pins = PinDir::unique("api-churn");
    let log_path = std::env::temp_dir().join(format!("lb-api-churn-{}.log", std::process::id()));
    let starting = Instant::now();
    let agent = AgentProcess::spawn_watching(&agent_binary()?, &lab, api.kubeconfig(), pins.path(), &AgentLog::File(log_path.clone()))?;
    let ready_after = starting.elapsed();
    let programmed = wait_until(Duration::from_secs(60), || ProgrammedServices::open(pins.path()).filter(|p| mismatches(p, &services) == 0))
        .with_context(|| format!("the agent never programmed the {} Services; its log: {}", services.len(), log_path.display()))?;
    let rss_before = rss_kib(agent.pid())?;

    let node_port = SocketAddrV4::new(NODE_IP, MEASURED_NODE_PORT);
    let stop = AtomicBool::new(false);
    let client = lab.client();
    let ((tally, first_failures), run) = std::thread::scope(|scope| -> Result<_> {
        let traffic = scope.spawn(|| {
            let mut tally = Tally::new();
            let mut first_failures = Vec::new();
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(600) && tally.total() < 500_000 {
                let result = tcp_request_timeout(client, node_port, Duration::from_secs(2));
                if let (Err(error), true) = (&result, first_failures.len() < 10) {
                    first_failures.push(format!("{:?} after the start: {error:#}", started.elapsed()));
                }
                tally.record(&result);
                std::thread::sleep(Duration::from_millis(2));
            }
            (tally, first_failures)
        });
        let run = churn(&api, &lab, &scale, &services, &programmed);
        // Traffic for a moment after convergence too, then stop it.
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        Ok((traffic.join().expect("the traffic thread"), run?))
    })?;
    let rss_after = rss_kib(agent.pid())?;
    let drops = drops(&lab);
    let mut changes_ms = endpoint_changes_ms(&api, &lab, &run.final_services)?;
    changes_ms.sort_unstable();

    let figures = format!(
        "{} Services (agent ready {:.1?} after its start), {} changes in {:?} + {:?} outage, {} watch cuts, {} expiries, {} API writes by the agent; \
         requests {} failed {}; RSS {} -> {} KiB; maps matched {} ms after the API came back; {} API errors counted; \
         one endpoint change reflected in traffic in {:?} ms (sorted)",
        scale.services,
        ready_after,
        run.changes,
        scale.churn,
        scale.outage,
        run.cuts,
        run.expiries,
        api.writes(),
        tally.total(),
        tally.failures(),
        rss_before,
        rss_after,
        run.converge_ms,
        run.errors_during_outage,
        changes_ms,
    );
    figures::report("api_churn", &figures);
    if !first_failures.is_empty() {
        eprintln!("api_churn: first failed requests: {first_failures:#?}; dataplane drops: {drops:?}");
    }
    run.converged.with_context(|| {
        format!("{} Services still differ from the API after {:?}; agent log: {}", mismatches(&programmed, &run.final_services), scale.converge_limit, log_path.display())
    })?;
    assert!(tally.total() > 100, "the traffic thread sent only {} requests", tally.total());
    assert_eq!(tally.failures(), 0, "requests failed during the churn: {first_failures:#?}; dataplane drops: {drops:?}; agent log: {}", log_path.display());
    assert!(run.errors_during_outage > 0, "the outage was not counted in lb_api_errors_total");
    assert!(rss_after < rss_before * 2 + 32 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");
    drop(agent);
    let _ = std::fs::remove_file(&log_path);
    Ok(())
}

/// Polls `check` every 20 ms until it yields a value, for at most `limit`.
fn wait_until<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        anyhow::ensure!(Instant::now() < deadline, "not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
