//! The agent's main loop: take snapshots from a source, translate, reconcile
//! the pinned maps, keep pod veths attached, serve the admin endpoints.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::admin;
use crate::dataplane::MapWriter;
use crate::dataplane::conntrack_gc::{self, ConntrackConfig, Sweeper};
use crate::dataplane::host_routing::{self, HostRouting};
use crate::dataplane::left_out;
use crate::dataplane::plan::describe;
use crate::dataplane::sizes::MapSizes;
use crate::dataplane::socket_shortcut;
use crate::dataplane::uplink_hook::UplinkHookChoice;
use crate::dataplane::usage::KernelMapUsage;
use ingress_common::sockets::PROXY_SOCKET_MARK;
use ingress_common::maps::{
    AFFINITY_MAP, BACKENDS_MAP, CONNTRACK_MAP, MAGLEV_MAP, REV_NAT_MAP, SERVICES_MAP, SNAT_MAP,
};
use crate::dataplane::ebpf::Dataplane;
use crate::health_check::HealthChecks;
use crate::interfaces::Interfaces;
use crate::k8s;
use crate::l7::server::{L7Config, L7Server};
use crate::l7::table::is_served;
use crate::manifests::Loaded;
use crate::metrics::Metrics;
use crate::model::{HealthCheck, NodeInfo};
use crate::problem::{Problem, Reported, Severity};
use crate::reconcile::Reconciler;
use crate::source;
use crate::translate::Translator;

/// How long a failed map write waits before the same snapshot is retried.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often new pod veths are looked for.
const INTERFACE_SCAN: Duration = Duration::from_secs(1);

pub enum SourceConfig {
    /// Standalone: a directory of manifests, watched with inotify and
    /// checked every `poll_interval` besides.
    Directory { path: PathBuf, poll_interval: Duration },
    /// The API server (in-cluster, or as KUBECONFIG says), watched for
    /// everything and for this node's (`AgentConfig::node.name`) Node object.
    Kubernetes,
}

pub struct AgentConfig {
    pub source: SourceConfig,
    pub node: NodeInfo,
    /// Node uplinks: XDP or TC ingress in (`uplink_hook`), TC egress out.
    pub uplinks: Vec<String>,
    /// Which ingress hook the uplinks get: by their driver, or forced.
    pub uplink_hook: UplinkHookChoice,
    /// Host sides of pod veths known up front.
    pub pod_veths: Vec<String>,
    /// Name prefixes of pod veths to attach to as they appear (e.g. "veth").
    pub pod_veth_prefixes: Vec<String>,
    /// Whether the programs route translated packets themselves (see
    /// `host_routing`).
    pub host_routing: HostRouting,
    pub pin_dir: PathBuf,
    /// Map capacities and the Maglev table size.
    pub map_sizes: MapSizes,
    pub admin: Option<SocketAddr>,
    /// The L7 proxy's listeners; none means no L7 proxy.
    pub l7: L7Config,
    /// Conntrack idle timeouts and the sweep of expired entries.
    pub conntrack: ConntrackConfig,
    /// The L7 proxy's socket shortcut to pods on this node (see
    /// `dataplane::socket_shortcut`).
    pub socket_shortcut: bool,
    /// The cgroup v2 root the shortcut attaches to; `None` finds it in
    /// `/proc/self/mountinfo`.
    pub cgroup_root: Option<PathBuf>,
}

/// Runs until `shutdown` completes. The programs are detached on return; the
/// pinned maps stay, so the next start picks the programmed state up.
pub async fn run(mut config: AgentConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    // The source first: reading a large manifest directory then overlaps
    // with loading and attaching the programs.
    let (snapshots, mut updates) = watch::channel(None);
    // Only with the API server: Events for problems, Ingress and Gateway API status.
    let mut cluster = None;
    let source_task = match &config.source {
        SourceConfig::Directory { path, poll_interval } => {
            tokio::spawn(source::watch_directory(path.clone(), *poll_interval, snapshots))
        }
        SourceConfig::Kubernetes => {
            let client = kube::Client::try_default().await.context("configuring the API client")?;
            let events = k8s::events::ProblemEvents::new(client.clone(), &config.node.name, metrics.clone());
            let gateway_status = k8s::gateway_status::spawn(client.clone(), metrics.clone());
            cluster = Some((client.clone(), events, gateway_status));
            let node_name = config.node.name.clone();
            tokio::spawn(k8s::watch::watch_cluster(client, node_name, metrics.clone(), snapshots))
        }
    };
    let source_task = AbortOnDrop(source_task);

    let pod_veths = !config.pod_veths.is_empty() || !config.pod_veth_prefixes.is_empty();
    let programs = Dataplane::programs_for(&config.uplinks, config.uplink_hook, pod_veths)?;
    let (mut host_routing, route) = host_routing::Watch::start(config.host_routing, &metrics);
    let dataplane = Dataplane::maps_only(&config.pin_dir, &config.map_sizes, route)?;
    let mut maps = dataplane.maps()?;
    let mut state = SyncState::default();
    let (uplinks, uplink_hook) = (config.uplinks.clone(), config.uplink_hook);
    let (pod_veths, pod_veth_prefixes) = (config.pod_veths.clone(), config.pod_veth_prefixes.clone());
    let pin_dir = config.pin_dir.clone();
    let attach = move |dataplane: &mut Dataplane| -> anyhow::Result<Interfaces> {
        for uplink in &uplinks {
            dataplane.attach_uplink(uplink, uplink_hook)?;
        }
        let mut interfaces = Interfaces::new(pod_veth_prefixes);
        interfaces.attach_named(dataplane, &pod_veths)?;
        interfaces.attach_new(dataplane);
        tracing::info!(?uplinks, ?pod_veths, pin_dir = %pin_dir.display(), "dataplane attached");
        Ok(interfaces)
    };
    let (mut dataplane, mut interfaces, mut early) =
        program_while_verifying(dataplane, programs, attach, &mut updates, &config.node, &mut maps, &mut state, &metrics)
            .await?;
    conntrack_gc::write_timeouts(&config.pin_dir, &config.conntrack.timeouts)?;
    let mut sweeper = Sweeper::open(&config.pin_dir, config.conntrack)?;
    let mut snat = conntrack_gc::SnatConfigWriter::open(&config.pin_dir, config.conntrack.snat_ports)?;
    snat.update(&config.node.addresses)?;

    let mut shortcut_counters = None;
    if config.socket_shortcut && (config.l7.http.is_some() || config.l7.https.is_some()) {
        shortcut_counters = attach_socket_shortcut(&mut dataplane, config.cgroup_root.as_deref());
        config.l7.proxy.upstream_mark = shortcut_counters.is_some().then_some(PROXY_SOCKET_MARK);
        metrics.set_socket_shortcut(shortcut_counters.is_some());
    }
    let l7_metrics = config.l7.proxy.metrics.clone();
    let l7 = L7Server::start(config.l7).await?;

    if let Some(addr) = config.admin {
        let counters_maps = dataplane.maps()?;
        let counters: admin::DataplaneCounters = Arc::new(move || counters_maps.stats().unwrap_or_default());
        let more: admin::MoreMetrics = Arc::new(move || {
            let shortcut = shortcut_counters.as_ref().map(|counters| crate::metrics::socket_shortcut_connections(&counters.read()));
            l7_metrics.render() + &shortcut.unwrap_or_default()
        });
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(error) = admin::serve(addr, metrics, counters, more).await {
                tracing::error!(%addr, "admin endpoints stopped: {error:#}");
            }
        });
    }

    // Dropped on return, which stops the servers.
    let mut health_checks = HealthChecks::default();
    tokio::pin!(shutdown);
    let mut scan = tokio::time::interval(INTERFACE_SCAN);
    let mut sweep = tokio::time::interval(config.conntrack.sweep_interval);
    let mut retry_pending = false;
    let mut reported_route_problems = Reported::default();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            changed = updates.changed() => {
                if changed.is_err() {
                    anyhow::bail!("the input source stopped");
                }
            }
            _ = tokio::time::sleep(RETRY_AFTER), if retry_pending => {}
            _ = scan.tick() => {
                interfaces.attach_new(&mut dataplane);
                host_routing.check(&mut dataplane, &metrics);
                continue;
            }
            _ = sweep.tick() => {
                match sweeper.sweep() {
                    Ok(done) => {
                        metrics.conntrack_swept(done.removed);
                        publish_kernel_map_usage(&sweeper.usage(), &config.map_sizes, &metrics);
                    }
                    Err(error) => tracing::warn!("sweeping expired conntrack entries failed: {error:#}"),
                }
                match state.reconciler.release_drained(&mut maps) {
                    Ok(0) => {}
                    Ok(released) => tracing::debug!(released, "removed backends whose last TCP flows ended"),
                    Err(error) => tracing::warn!("removing backends whose TCP flows ended failed: {error:#}"),
                }
                continue;
            }
        }
        let Some(loaded) = updates.borrow_and_update().clone() else { continue };
        let node = k8s::node::node_info(&config.node, &loaded.snapshot);
        if let Err(error) = snat.update(&node.addresses) {
            tracing::warn!("writing the SNAT address failed: {error:#}");
        }
        // The L4 maps first: the L7 routes do not hold them up.
        let synced = match early.take() {
            Some(EarlyPass { programmed, synced }) if Arc::ptr_eq(&programmed, &loaded) => synced,
            _ => sync_with(&loaded, &node, &mut maps, &mut state, &metrics),
        };
        state.label_frontends(&mut maps);
        let routes_started = std::time::Instant::now();
        let route_problems = l7.update(&loaded.snapshot);
        tracing::debug!(routes_ms = routes_started.elapsed().as_secs_f64() * 1e3, "L7 routes rebuilt");
        // A route problem lasts as long as its Ingress (an unknown annotation,
        // say): logged and counted when it appears, not on every pass.
        for problem in reported_route_problems.new_ones(&route_problems) {
            report(problem, &metrics);
        }
        retry_pending = match synced {
            Ok(Synced { mut problems, health_checks: wanted }) => {
                for _ in health_checks.update(&wanted) {
                    metrics.count_problem("health_check_port_unavailable");
                }
                problems.extend(route_problems);
                if let Some((client, events, gateway_status)) = &mut cluster {
                    events.publish(&loaded.snapshot, &problems);
                    let input = k8s::gateway_status::StatusInput { loaded: loaded.clone(), node_addresses: node.addresses.clone() };
                    gateway_status.send_replace(Some(input));
                    let snapshot = &loaded.snapshot;
                    let served = snapshot.ingresses.iter().filter(|i| is_served(i, &snapshot.ingress_classes));
                    // The L7 listeners take every node address of both families.
                    let addresses = node.addresses.clone();
                    let status = k8s::status::publish(client.clone(), served.cloned().collect(), addresses, metrics.clone());
                    tokio::spawn(status);
                }
                false
            }
            Err(error) => {
                metrics.sync_failed();
                tracing::error!("programming the dataplane failed, retrying: {error:#}");
                true
            }
        };
    }
    drop(source_task);
    tracing::info!("shutting down; maps stay pinned in {}", config.pin_dir.display());
    Ok(())
}

/// A pass made before the programs were attached, and the snapshot it wrote.
struct EarlyPass {
    programmed: Arc<Loaded>,
    synced: anyhow::Result<Synced>,
}

/// The verifier's walk through the programs is most of an agent's start, and
/// the maps exist before it begins: the programs are verified on threads of
/// their own, then attached (`attach`), while the first snapshot, if it comes
/// in time, is written into the pinned maps: a start takes the longer of
/// the two, not their sum. Programs attached before the pass ends serve what
/// it has written so far: it writes a frontend's header after everything the
/// header names, so each frontend is whole or absent, and a previous run's
/// maps (an agent's restart) stay whole throughout. The snapshot stays
/// unseen in `updates`: the main loop takes it up with this pass's result.
#[allow(clippy::too_many_arguments)]
async fn program_while_verifying(
    mut dataplane: Dataplane,
    programs: Vec<&'static str>,
    attach: impl FnOnce(&mut Dataplane) -> anyhow::Result<Interfaces> + Send + 'static,
    updates: &mut watch::Receiver<Option<Arc<Loaded>>>,
    configured_node: &NodeInfo,
    maps: &mut dyn MapWriter,
    state: &mut SyncState,
    metrics: &Metrics,
) -> anyhow::Result<(Dataplane, Interfaces, Option<EarlyPass>)> {
    let verifying = tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        dataplane.verify(&programs)?;
        tracing::debug!(?programs, verify_ms = started.elapsed().as_secs_f64() * 1e3, "programs verified");
        let interfaces = attach(&mut dataplane)?;
        anyhow::Ok((dataplane, interfaces))
    });
    tokio::pin!(verifying);
    let mut early = None;
    // A source that stopped is the main loop's to report.
    let mut source_running = true;
    loop {
        tokio::select! {
            verified = &mut verifying => {
                let (dataplane, interfaces) = verified.context("verifying and attaching the programs")??;
                return Ok((dataplane, interfaces, early));
            }
            changed = updates.changed(), if source_running && early.is_none() => {
                source_running = changed.is_ok();
                let Some(loaded) = updates.borrow().clone().filter(|_| source_running) else { continue };
                let node = k8s::node::node_info(configured_node, &loaded.snapshot);
                let synced = sync_with(&loaded, &node, maps, state, metrics);
                updates.mark_changed();
                early = Some(EarlyPass { programmed: loaded, synced });
            }
        }
    }
}

/// What one pass programmed, for the parts of the agent outside the maps.
pub struct Synced {
    /// The problems found, all logged and counted already.
    pub problems: Vec<Problem>,
    /// The `healthCheckNodePort`s to answer.
    pub health_checks: BTreeMap<u16, HealthCheck>,
}

/// What passes carry over: the translation and the maps' state as of the
/// last pass, so that the next one works on what changed.
#[derive(Default)]
pub struct SyncState {
    translator: Translator,
    reconciler: Reconciler,
    /// Whether the frontend names in the maps are those of the last pass's
    /// frontends.
    labelled: bool,
}

impl SyncState {
    /// Writes the frontend names `state` shows unless the maps hold them
    /// for the last pass's frontends. Apart from the pass: no packet needs
    /// them, so the first pass's programs are attached without waiting.
    fn label_frontends(&mut self, maps: &mut dyn MapWriter) {
        if self.labelled {
            return;
        }
        let Some(contents) = self.reconciler.contents() else { return };
        let names = crate::state::frontend_names(self.translator.desired(), &describe(contents));
        match maps.label_frontends(&names) {
            Ok(()) => self.labelled = true,
            Err(error) => tracing::warn!("labelling frontends for `state` failed: {error:#}"),
        }
    }
}

/// One full pass from a snapshot to the maps (nothing carried over).
pub fn sync(loaded: &Loaded, node: &NodeInfo, maps: &mut dyn MapWriter, metrics: &Metrics) -> anyhow::Result<Synced> {
    sync_with(loaded, node, maps, &mut SyncState::default(), metrics)
}

/// One pass from a snapshot to the maps, working on what changed since the
/// last pass with the same `state`.
pub fn sync_with(
    loaded: &Loaded,
    node: &NodeInfo,
    maps: &mut dyn MapWriter,
    state: &mut SyncState,
    metrics: &Metrics,
) -> anyhow::Result<Synced> {
    let started = std::time::Instant::now();
    let changed = state.translator.translate(&loaded.snapshot, node);
    let desired = state.translator.desired();
    let mut problems: Vec<Problem> = loaded.problems.iter().chain(state.translator.problems()).cloned().collect();
    for problem in &problems {
        report(problem, metrics);
    }
    let translated = started.elapsed();
    let result = state.reconciler.reconcile_changes(maps, desired, changed.as_ref());
    let report = match result {
        Ok(report) => report,
        Err(error) => {
            state.labelled = false;
            return Err(error.context("writing the maps"));
        }
    };
    state.labelled &= !report.frontends_changed;
    metrics.observe_sync(started.elapsed());
    for left_out in &report.left_out {
        metrics.count_map_full(left_out.map);
    }
    // Logged by the reconciler and counted just above; a problem of its
    // Service too, so that a Warning Event on the Service names it.
    problems.extend(report.left_out.iter().map(left_out::problem));
    let (usage, sizes) = (&report.usage, maps.sizes());
    metrics.set_map_usage(SERVICES_MAP, usage.services, sizes.services);
    metrics.set_map_usage(BACKENDS_MAP, usage.backends, sizes.backends);
    metrics.set_map_usage(REV_NAT_MAP, usage.rev_nat, sizes.rev_nat);
    metrics.set_map_usage(MAGLEV_MAP, usage.maglev, sizes.maglev_rows());
    metrics.conntrack_udp_flushed(report.udp_flows_flushed);
    let map_writes: usize = report.ops.values().sum();
    metrics.sync_succeeded(map_writes, report.frontends, report.backends);
    tracing::info!(
        frontends = report.frontends,
        backends = report.backends,
        left_out = report.left_out.len(),
        changed_services = report.changed_services,
        incremental = changed.is_some(),
        map_writes,
        ignored = loaded.ignored,
        problems = problems.len(),
        translate_ms = translated.as_secs_f64() * 1e3,
        total_ms = started.elapsed().as_secs_f64() * 1e3,
        "dataplane programmed"
    );
    Ok(Synced { problems, health_checks: desired.health_checks.clone() })
}

/// The fill of the maps the programs write, as the sweep last counted it.
fn publish_kernel_map_usage(usage: &KernelMapUsage, sizes: &MapSizes, metrics: &Metrics) {
    for (map, entries, capacity) in [
        (CONNTRACK_MAP, usage.conntrack, sizes.conntrack),
        (SNAT_MAP, usage.snat_entries, sizes.snat),
        (AFFINITY_MAP, usage.affinity, sizes.affinity),
    ] {
        if let Some(entries) = entries {
            metrics.set_map_usage(map, entries, capacity);
        }
    }
    if let Some(flows) = usage.snat_flows {
        metrics.set_snat_flows(flows);
    }
}

/// Aborts the task when dropped (on every return from `run`).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn report(problem: &Problem, metrics: &Metrics) {
    let kind = problem.kind.label();
    metrics.count_problem(kind);
    match problem.severity {
        Severity::Warning => tracing::warn!(kind, "{problem}"),
        Severity::Error => tracing::error!(kind, "{problem}"),
    }
}

/// The shortcut's counters once it is attached; a node where it cannot be
/// (no cgroup v2, an old kernel) proxies over TCP as before, and says so in
/// the log and in `lb_l7_socket_shortcut`.
fn attach_socket_shortcut(dataplane: &mut Dataplane, cgroup_root: Option<&Path>) -> Option<socket_shortcut::ShortcutCounters> {
    let attached = match cgroup_root {
        Some(root) => Ok(root.to_owned()),
        None => socket_shortcut::cgroup2_root(),
    }
    .and_then(|root| dataplane.attach_socket_shortcut(&root).map(|counters| (root, counters)));
    match attached {
        Ok((root, counters)) => {
            tracing::info!(cgroup = %root.display(), "L7 socket shortcut to local pods attached");
            Some(counters)
        }
        Err(error) => {
            tracing::warn!("L7 socket shortcut off, proxying to local pods over TCP: {error:#}");
            None
        }
    }
}
