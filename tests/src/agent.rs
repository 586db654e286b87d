//! Running the agent against a lab: in-process for tests (the same
//! `agent::run` the binary calls, on a thread inside the node namespace), or
//! as the real binary for `cargo xtask lab`.

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ingress_userspace::agent::{self, AgentConfig, SourceConfig};
use ingress_userspace::dataplane::MapWriter;
use ingress_userspace::dataplane::ebpf::PinnedMaps;
use ingress_userspace::dataplane::sizes::MapSizes;
use ingress_userspace::dataplane::host_routing::HostRouting;
use ingress_userspace::dataplane::uplink_hook::UplinkHookChoice;
use ingress_userspace::l7::L7Options;
use ingress_userspace::l7::options::ProxyOptions;
use ingress_userspace::l7::server::L7Config;
use ingress_userspace::model::NodeInfo;

use crate::lab::{Lab, LabNode, LabSpec};
use crate::netns::NetNs;
use crate::pins::PinDir;

pub const NODE_NAME: &str = "lab-node";
/// The L7 proxy's port on every node address.
pub const HTTP_PORT: u16 = 80;
/// The agent's admin endpoints, on the node namespace's loopback.
pub const ADMIN: SocketAddrV4 = SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 9901);

/// The agent of the lab's node, given both of its addresses (IPv4 and IPv6).
pub fn config(lab: &Lab, manifests: &Path, pins: &Path) -> AgentConfig {
    let node = NodeInfo { name: NODE_NAME.into(), addresses: lab.node_ips().to_vec() };
    config_with(node, lab.uplink_iface(), &lab.pod_ifaces(), manifests, pins)
}

/// The configuration of the agent of one node of a two-node lab: its own
/// node name (which decides what "local" means), address, interfaces and pins.
pub fn node_config(node: &LabNode, manifests: &Path, pins: &Path) -> AgentConfig {
    let info = NodeInfo { name: node.name().into(), addresses: node.ips().to_vec() };
    config_with(info, node.uplink_iface(), &node.pod_ifaces(), manifests, pins)
}

fn config_with(node: NodeInfo, uplink: &str, pod_ifaces: &[&str], manifests: &Path, pins: &Path) -> AgentConfig {
    AgentConfig {
        source: SourceConfig::Directory { path: manifests.to_owned(), poll_interval: Duration::from_millis(100) },
        node,
        uplinks: vec![uplink.to_owned()],
        uplink_hook: UplinkHookChoice::Auto,
        pod_veths: pod_ifaces.iter().map(|iface| String::from(*iface)).collect(),
        pod_veth_prefixes: Vec::new(),
        host_routing: HostRouting::Auto,
        pin_dir: pins.to_owned(),
        map_sizes: MapSizes::default(),
        admin: Some(SocketAddr::V4(ADMIN)),
        l7: L7Config {
            http: Some(SocketAddr::from(([0, 0, 0, 0], HTTP_PORT))),
            https: None,
            proxy: ProxyOptions::default(),
            routes: L7Options::default(),
        },
        conntrack: Default::default(),
        socket_shortcut: true,
        cgroup_root: None,
    }
}

/// Packets the dataplane counted under `reason` (an `ingress_common::stats`
/// index), as the agent's metrics in `node` report them.
pub fn dataplane_packets(node: &NetNs, reason: u32) -> u64 {
    let name = ingress_common::stats::REASON_NAMES[reason as usize];
    metric(node, &format!("lb_dataplane_packets_total{{reason=\"{name}\"}}")).unwrap()
}

/// The value of one series (a name and its labels, as rendered) of the
/// agent's metrics in `node`.
pub fn metric(node: &NetNs, series: &str) -> Result<u64> {
    let metrics = admin_get(node, "/metrics")?;
    let line = format!("{series} ");
    let value = metrics.lines().find_map(|l| l.strip_prefix(line.as_str()));
    let value = value.with_context(|| format!("no {series} in the agent's metrics:\n{metrics}"))?;
    value.trim().parse().with_context(|| format!("{series} {value}"))
}

/// GET `path` on the admin endpoint from inside the node namespace.
pub fn admin_get(node: &NetNs, path: &str) -> Result<String> {
    let stream = node.run(|| TcpStream::connect_timeout(&SocketAddr::V4(ADMIN), Duration::from_secs(1)))??;
    let mut stream = stream;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nhost: agent\r\nconnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// How long a started agent may take to program its first sync: generous,
/// because a slow start is not what these tests are about (the benchmarks
/// time it). 10,000 Services listed from the API stand-in while other builds
/// loaded the 2-core machine took longer than 15 s.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// Waits until `/readyz` says the first sync is programmed.
pub fn wait_ready(node: &NetNs, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match admin_get(node, "/readyz") {
            Ok(r) if r.starts_with("HTTP/1.1 200") => return Ok(()),
            _ if Instant::now() > deadline => bail!("the agent was not ready within {timeout:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until the pinned maps satisfy `done` (e.g. after a manifest edit).
pub fn wait_for_maps(pins: &Path, timeout: Duration, done: impl Fn(&PinnedMaps) -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(maps) = PinnedMaps::open(pins)
            && done(&maps)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the maps in {} did not reach the expected state within {timeout:?}", pins.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many IPv4 backends are programmed (the examples have IPv6 ones too).
pub fn ipv4_backend_count(maps: &PinnedMaps) -> usize {
    maps.read().map(|c| c.backends.values().filter(|b| b.addr.is_v4()).count()).unwrap_or(0)
}

/// The agent library running on a thread in the node namespace. Dropping it
/// stops the agent (detaching the programs) and removes its pins.
pub struct InProcessAgent {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    pins: PinDir,
}

impl InProcessAgent {
    pub fn start(lab: &Lab, manifests: &Path) -> Result<InProcessAgent> {
        Self::start_configured(lab, manifests, |_| {})
    }

    /// Like `start`, with the lab's configuration changed by `adjust` first.
    pub fn start_configured(lab: &Lab, manifests: &Path, adjust: impl FnOnce(&mut AgentConfig)) -> Result<InProcessAgent> {
        let pins = PinDir::unique("agent");
        let mut config = config(lab, manifests, pins.path());
        adjust(&mut config);
        Self::launch(lab.node(), config, pins)
    }

    /// The agent of one node of a two-node lab, with a pin directory of its own.
    pub fn start_on(node: &LabNode, manifests: &Path) -> Result<InProcessAgent> {
        Self::start_on_configured(node, manifests, |_| {})
    }

    /// Like `start_on`, with the node's configuration changed by `adjust` first.
    pub fn start_on_configured(node: &LabNode, manifests: &Path, adjust: impl FnOnce(&mut AgentConfig)) -> Result<InProcessAgent> {
        let pins = PinDir::unique(node.name());
        let mut config = node_config(node, manifests, pins.path());
        adjust(&mut config);
        Self::launch(node.ns(), config, pins)
    }

    fn launch(ns: &NetNs, config: AgentConfig, pins: PinDir) -> Result<InProcessAgent> {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = ns.spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(agent::run(config, async {
                let _ = rx.await;
            }))
        })?;
        let agent = InProcessAgent { shutdown: Some(tx), thread: Some(thread), pins };
        if let Err(error) = wait_ready(ns, Duration::from_secs(10)) {
            return Err(agent.stop().err().unwrap_or(error));
        }
        Ok(agent)
    }

    pub fn pins(&self) -> &Path {
        self.pins.path()
    }

    /// Packets its dataplane counted under `reason` (an `ingress_common::stats` index).
    pub fn packets(&self, reason: u32) -> u64 {
        let maps = PinnedMaps::open(self.pins()).expect("opening the agent's pinned maps");
        maps.stats().expect("reading the agent's stats")[reason as usize].packets
    }

    /// Stops the agent and returns what `agent::run` returned.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown_and_join()
    }

    fn shutdown_and_join(&mut self) -> Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the agent thread panicked"),
            None => Ok(()),
        }
    }
}

impl Drop for InProcessAgent {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_and_join() {
            eprintln!("agent: {error:#}");
        }
    }
}

/// Where an agent binary's log goes: a file keeps the terminal for a
/// report (the L7 access log alone is a line per request).
pub enum AgentLog {
    Terminal,
    File(PathBuf),
}

impl AgentLog {
    /// Points `command`'s stdout and stderr at the log (appended to a file, so
    /// a benchmark's successive agents all stay in it).
    pub fn apply(&self, command: &mut Command) -> Result<()> {
        if let AgentLog::File(path) = self {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            }
            let file = std::fs::File::options().create(true).append(true).open(path).with_context(|| format!("creating the agent log {}", path.display()))?;
            command.stdout(file.try_clone()?).stderr(file);
        }
        Ok(())
    }
}

/// Where the agent binary reads the cluster from.
enum AgentSource<'a> {
    Manifests(&'a Path),
    Kubernetes { kubeconfig: &'a Path },
}

/// The agent binary started inside the node namespace with `nsenter`, which
/// (unlike `ip netns exec`) keeps the host's /sys/fs/bpf mount visible.
pub struct AgentProcess {
    child: Child,
}

impl AgentProcess {
    pub fn spawn(binary: &Path, lab: &Lab, manifests: &Path, pins: &Path) -> Result<AgentProcess> {
        AgentProcess::spawn_with(binary, lab, manifests, pins, &AgentLog::Terminal, |_| {})
    }

    /// [`AgentProcess::spawn`] with its output to `log`, letting `configure`
    /// add flags for `run` (e.g. `--poll-ms`) or environment to the command.
    pub fn spawn_with(
        binary: &Path,
        lab: &Lab,
        manifests: &Path,
        pins: &Path,
        log: &AgentLog,
        configure: impl FnOnce(&mut Command),
    ) -> Result<AgentProcess> {
        let mut process = AgentProcess::launch(binary, lab, AgentSource::Manifests(manifests), pins, log, configure)?;
        process.wait_ready(lab, log)?;
        Ok(process)
    }

    /// [`AgentProcess::spawn_with`] without waiting for `/readyz`: for a
    /// benchmark that times the start by traffic, which is served before the
    /// agent says it is ready (see [`AgentProcess::wait_ready`]).
    pub fn launch_with(
        binary: &Path,
        lab: &Lab,
        manifests: &Path,
        pins: &Path,
        log: &AgentLog,
        configure: impl FnOnce(&mut Command),
    ) -> Result<AgentProcess> {
        AgentProcess::launch(binary, lab, AgentSource::Manifests(manifests), pins, log, configure)
    }

    /// The agent watching the API server `kubeconfig` points at (e.g. the
    /// [`crate::api_stand_in::ApiStandIn`]) instead of a manifest directory.
    pub fn spawn_watching(binary: &Path, lab: &Lab, kubeconfig: &Path, pins: &Path, log: &AgentLog) -> Result<AgentProcess> {
        AgentProcess::spawn_watching_with(binary, lab, kubeconfig, pins, log, |_| {})
    }

    /// [`AgentProcess::spawn_watching`] with `configure` adding flags (e.g.
    /// `--services-map-size`) or environment to the command.
    pub fn spawn_watching_with(
        binary: &Path,
        lab: &Lab,
        kubeconfig: &Path,
        pins: &Path,
        log: &AgentLog,
        configure: impl FnOnce(&mut Command),
    ) -> Result<AgentProcess> {
        let mut process = AgentProcess::launch(binary, lab, AgentSource::Kubernetes { kubeconfig }, pins, log, configure)?;
        process.wait_ready(lab, log)?;
        Ok(process)
    }

    fn launch(
        binary: &Path,
        lab: &Lab,
        source: AgentSource,
        pins: &Path,
        log: &AgentLog,
        configure: impl FnOnce(&mut Command),
    ) -> Result<AgentProcess> {
        let config = config(lab, Path::new(""), pins);
        let mut command = Command::new("nsenter");
        command.arg(format!("--net=/var/run/netns/{}", lab.node().name())).arg(binary).arg("run");
        match source {
            AgentSource::Manifests(manifests) => command.arg("--manifests").arg(manifests),
            AgentSource::Kubernetes { kubeconfig } => command.arg("--kubernetes").env("KUBECONFIG", kubeconfig),
        };
        command
            .args(["--node-name", &config.node.name])
            .args(config.node.addresses.iter().flat_map(|a| ["--node-ip".to_string(), a.to_string()]))
            .args(config.uplinks.iter().flat_map(|i| ["--uplink", i]))
            .args(config.pod_veths.iter().flat_map(|i| ["--pod-veth", i]))
            .arg("--pin-dir")
            .arg(&config.pin_dir)
            .args(["--admin", &ADMIN.to_string()])
            .args(["--http-port", &HTTP_PORT.to_string()]);
        log.apply(&mut command)?;
        configure(&mut command);
        let child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        Ok(AgentProcess { child })
    }

    /// Waits until `/readyz` says the first pass is programmed (its maps
    /// written, and what the agent keeps for the next pass built) and the
    /// admin endpoint is up; says so if the agent exited instead (`log` is
    /// where its output went).
    pub fn wait_ready(&mut self, lab: &Lab, log: &AgentLog) -> Result<()> {
        let Err(error) = wait_ready(lab.node(), READY_WITHIN) else { return Ok(()) };
        self.running(log)?;
        Err(error)
    }

    /// An error naming the exit status and the log if the agent has exited.
    pub fn running(&mut self, log: &AgentLog) -> Result<()> {
        if let Ok(Some(status)) = self.child.try_wait() {
            match log {
                AgentLog::File(path) => bail!("the agent exited ({status}) before it was ready; its log: {}", path.display()),
                AgentLog::Terminal => bail!("the agent exited ({status}) before it was ready"),
            }
        }
        Ok(())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the agent has used no CPU time for `quiet` (sampled every
    /// 50 ms), at most `limit`; how long that took. After its first pass the
    /// agent still works for a moment (at N=30,000 about 0.14 s of CPU in the
    /// next second: the plan's memory released); traffic measured meanwhile
    /// finds a CPU awake and skips the idle wakeups every other contender
    /// pays (the bench's RR p99 at N=30,000 was 7 µs for `ebpf`, 85-94 for
    /// the others).
    pub fn wait_idle(&self, quiet: Duration, limit: Duration) -> Result<Duration> {
        let started = Instant::now();
        let path = format!("/proc/{}/stat", self.pid());
        let ticks = || -> Result<u64> { cpu_ticks(&std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?) };
        let (mut last, mut since) = (ticks()?, Instant::now());
        while since.elapsed() < quiet && started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(50));
            let now = ticks()?;
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        Ok(started.elapsed())
    }

    /// Kills the agent without letting it clean up, as an OOM kill or a node
    /// agent crash would.
    pub fn crash(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

/// The agent binary next to the test binaries (`target/<profile>/`), which
/// `cargo xtask test` builds before running the tests.
pub fn agent_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let profile_dir = exe.parent().and_then(Path::parent).context("test binary location")?;
    let binary = profile_dir.join("ingress-userspace");
    if !binary.exists() {
        bail!("{} is missing: build it with `cargo build --release -p ingress-userspace` (cargo xtask test does)", binary.display());
    }
    Ok(binary)
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // SIGTERM lets it detach its programs; the wait is bounded by the kill below.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The examples' lab (`LabSpec::examples`) and a copy of their manifests;
/// `None`, after saying the test is skipped, without root.
pub fn examples_lab() -> Option<(Lab, ManifestDir)> {
    if !crate::is_root() {
        eprintln!("skipped: network namespaces and eBPF need root");
        return None;
    }
    let lab = Lab::build(LabSpec::examples()).expect("building the lab");
    Some((lab, ManifestDir::examples().expect("copying deploy/examples")))
}

/// A copy of a manifest directory that a test may edit, removed on drop.
pub struct ManifestDir {
    dir: PathBuf,
}

impl ManifestDir {
    /// An empty directory, for tests that write their own manifests.
    pub fn empty() -> Result<ManifestDir> {
        let dir = std::env::temp_dir().join(format!(
            "lb-manifests-{}-{}",
            std::process::id(),
            crate::pins::next_id()
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(ManifestDir { dir })
    }

    pub fn copy_of(source: &Path) -> Result<ManifestDir> {
        let guard = ManifestDir::empty()?;
        for entry in std::fs::read_dir(source).with_context(|| format!("reading {}", source.display()))? {
            let entry = entry?;
            std::fs::copy(entry.path(), guard.dir.join(entry.file_name()))?;
        }
        Ok(guard)
    }

    /// A copy of `deploy/examples`, the manifests of the examples' lab.
    pub fn examples() -> Result<ManifestDir> {
        ManifestDir::copy_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/examples"))
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Rewrites a file atomically (write + rename), as an editor or a
    /// ConfigMap update would, so the agent never reads half a file.
    pub fn write(&self, file: &str, contents: &str) -> Result<()> {
        let tmp = self.dir.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, self.dir.join(file))?;
        Ok(())
    }
}

impl Drop for ManifestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// User plus system CPU time, in clock ticks, from a `/proc/PID/stat`
/// line: fields 14 and 15, counted after the command name, which is in
/// parentheses and may itself hold spaces and parentheses.
fn cpu_ticks(stat: &str) -> Result<u64> {
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).context("no command name in /proc/PID/stat")?;
    // The fields after the name start at the third (state).
    let mut fields = after_name.split_whitespace().skip(14 - 3);
    let mut field = |name: &str| -> Result<u64> { fields.next().with_context(|| format!("no {name}"))?.parse().with_context(|| format!("bad {name}")) };
    Ok(field("utime")? + field("stime")?)
}

#[cfg(test)]
mod cpu_ticks_tests {
    use super::cpu_ticks;

    #[test]
    fn cpu_ticks_add_utime_and_stime_after_any_command_name() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 17 25 0 0 20 0 5 0";
        for name in ["ingress-userspa", "a) b (c", ""] {
            assert_eq!(cpu_ticks(&format!("4242 ({name}) {tail}")).unwrap(), 42, "{name}");
        }
        assert!(cpu_ticks("4242 (x) S 1 2").is_err());
        assert!(cpu_ticks("no name").is_err());
    }
}
