//! Starting each proxy in the node namespace on the routes, applying one
//! route change to it, and stopping it (on drop).

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::daemon::Daemon;
use super::report::Contender;
use super::routes::{self, RouteSet};
use super::{haproxy, ingress, nginx};
use crate::agent::{AgentLog, AgentProcess, HTTP_PORT, admin_get};
use crate::bench::Named;
use crate::bench::manifests::ManifestSet;
use crate::http;
use crate::lab::{Lab, NODE_IP};
use crate::netns::run_command;
use crate::pins::PinDir;

const NGINX_PORT: u16 = 8081;
const HAPROXY_PORT: u16 = 8082;
const INGRESS_FILE: &str = "ingresses.yaml";
/// Bound on a proxy's start until it serves the measured route.
const START_LIMIT: Duration = Duration::from_secs(20);

/// What every proxy start needs: the lab, the pods' addresses, where configs go.
pub struct Bed<'a> {
    pub lab: &'a Lab,
    pub agent: &'a Path,
    pub pods: Vec<SocketAddrV4>,
    /// Services and EndpointSlices of the backends, plus the agent's Ingresses.
    pub manifests: ManifestSet,
    /// nginx's and HAProxy's configs, pid files and logs.
    pub work: WorkDir,
    pub proxy_cpus: String,
}

/// A running proxy; dropping it stops it and removes what it left.
pub struct Proxy<'a> {
    bed: &'a Bed<'a>,
    kind: Kind,
}

enum Kind {
    // Fields drop in order: the agent stops before its pins go.
    Agent { process: AgentProcess, _pins: PinDir },
    Nginx(Daemon),
    Haproxy(Daemon),
}

impl<'a> Bed<'a> {
    pub fn routes(&self, change: usize) -> RouteSet {
        RouteSet::new(&self.pods, change)
    }

    pub fn start(&'a self, contender: Contender) -> Result<Proxy<'a>> {
        let kind = match contender {
            Contender::Direct => bail!("`direct` has no proxy"),
            Contender::EbpfLb => {
                write_atomically(&self.manifests.path().join(INGRESS_FILE), &ingress::yaml(&self.routes(0)))?;
                let pins = PinDir::unique("l7bench");
                // Pinned before it starts, as `taskset -c` pins nginx and HAProxy: its
                // runtime then sizes itself to the CPUs it may use (one worker per
                // allowed CPU), and every thread inherits the mask. Route changes
                // reach it through inotify, no polling. Without access logs, as
                // nginx and HAProxy run here.
                let cpus = cpu_list(&self.proxy_cpus)?;
                let configure = move |command: &mut std::process::Command| {
                    command.env("RUST_LOG", "warn");
                    pin_at_exec(command, cpus);
                };
                let log = AgentLog::File(self.work.path.join("agent.out"));
                let process = AgentProcess::spawn_with(self.agent, self.lab, self.manifests.path(), pins.path(), &log, configure)?;
                Kind::Agent { process, _pins: pins }
            }
            Contender::Nginx => {
                let conf = self.nginx_conf(0)?;
                let args = nginx_args(&self.work.path, &conf);
                let args: Vec<&str> = args.iter().map(String::as_str).chain(["-g", "daemon off;"]).collect();
                let log = self.work.path.join("nginx.out");
                Kind::Nginx(Daemon::spawn("nginx", self.lab.node(), &self.proxy_cpus, "nginx", &args, &log)?)
            }
            Contender::Haproxy => {
                let cfg = self.haproxy_cfg(0)?;
                let args = ["-W", "-db", "-f", cfg.to_str().context("config path")?];
                let log = self.work.path.join("haproxy.out");
                Kind::Haproxy(Daemon::spawn("haproxy", self.lab.node(), &self.proxy_cpus, "haproxy", &args, &log)?)
            }
        };
        let mut proxy = Proxy { bed: self, kind };
        proxy.wait_serving(routes::MEASURED_HOST, routes::MEASURED_PATH, START_LIMIT).with_context(|| format!("starting {}", contender.name()))?;
        Ok(proxy)
    }

    fn nginx_conf(&self, change: usize) -> Result<PathBuf> {
        let path = self.work.path.join("nginx.conf");
        write_atomically(&path, &nginx::config(&self.routes(change), SocketAddrV4::new(NODE_IP, NGINX_PORT), &self.work.path))?;
        Ok(path)
    }

    fn haproxy_cfg(&self, change: usize) -> Result<PathBuf> {
        let path = self.work.path.join("haproxy.cfg");
        write_atomically(&path, &haproxy::config(&self.routes(change), SocketAddrV4::new(NODE_IP, HAPROXY_PORT), &self.work.path))?;
        Ok(path)
    }
}

/// The flags that name nginx's files, for starting it and for `-s reload`.
fn nginx_args(dir: &Path, conf: &Path) -> Vec<String> {
    let path = |p: &Path| p.display().to_string();
    vec!["-p".into(), path(dir), "-e".into(), path(&dir.join("error.log")), "-c".into(), path(conf)]
}

impl Proxy<'_> {
    pub fn addr(&self) -> SocketAddrV4 {
        let port = match self.kind {
            Kind::Agent { .. } => HTTP_PORT,
            Kind::Nginx(_) => NGINX_PORT,
            Kind::Haproxy(_) => HAPROXY_PORT,
        };
        SocketAddrV4::new(NODE_IP, port)
    }

    /// The main process: the agent, or the master of the workers.
    pub fn pid(&self) -> u32 {
        match &self.kind {
            Kind::Agent { process, .. } => process.pid(),
            Kind::Nginx(daemon) | Kind::Haproxy(daemon) => daemon.pid(),
        }
    }

    pub fn how_changes_apply(&self) -> &'static str {
        match self.kind {
            Kind::Agent { .. } => "Ingress file rewritten, agent re-reads it (no reload)",
            Kind::Nginx(_) => "nginx.conf rewritten + `nginx -s reload`",
            Kind::Haproxy(_) => "haproxy.cfg rewritten + reload (master-worker, SIGUSR2)",
        }
    }

    /// Makes the routes those of `change`.
    pub fn apply(&mut self, change: usize) -> Result<()> {
        let bed = self.bed;
        match &mut self.kind {
            Kind::Agent { .. } => {
                write_atomically(&bed.manifests.path().join(INGRESS_FILE), &ingress::yaml(&bed.routes(change)))
            }
            Kind::Nginx(daemon) => {
                daemon.check_running()?;
                let conf = bed.nginx_conf(change)?;
                run_command(std::process::Command::new("nginx").args(nginx_args(&bed.work.path, &conf)).args(["-s", "reload"])).map(drop)
            }
            Kind::Haproxy(daemon) => {
                daemon.check_running()?;
                bed.haproxy_cfg(change)?;
                daemon.signal("USR2")
            }
        }
    }

    /// Route table swaps the agent has done so far (`lb_syncs_total`: one
    /// per snapshot, each also swapping the L7 routes); none for the others.
    pub fn swaps(&self) -> Result<Option<u64>> {
        if !matches!(self.kind, Kind::Agent { .. }) {
            return Ok(None);
        }
        let metrics = admin_get(self.bed.lab.node(), "/metrics")?;
        let count = |result: &str| {
            let series = format!("lb_syncs_total{{result=\"{result}\"}} ");
            metrics.lines().find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<u64>().ok())
        };
        match (count("ok"), count("failed")) {
            (Some(ok), Some(failed)) => Ok(Some(ok + failed)),
            _ => bail!("no lb_syncs_total in the agent's metrics"),
        }
    }

    /// An error if the proxy process has gone.
    pub fn check_running(&mut self) -> Result<()> {
        match &mut self.kind {
            Kind::Agent { process, .. } => {
                admin_get(self.bed.lab.node(), "/healthz").map(drop).with_context(|| format!("the agent (pid {}) stopped answering", process.pid()))
            }
            Kind::Nginx(daemon) | Kind::Haproxy(daemon) => daemon.check_running(),
        }
    }

    /// Waits until `host` + `path` answers 200 from the client namespace.
    pub fn wait_serving(&mut self, host: &str, path: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.check_running()?;
            match http::get(self.bed.lab.client(), self.addr(), host, path) {
                Ok(response) if response.status == 200 => return Ok(()),
                _ if Instant::now() > deadline => bail!("{host}{path} did not answer 200 through {} within {limit:?}", self.addr()),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

/// The CPUs of a `taskset -c` list such as `1` or `0,2-3`.
fn cpu_list(list: &str) -> Result<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim) {
        let number = |text: &str| text.trim().parse::<usize>().with_context(|| format!("CPU list {list:?}"));
        match part.split_once('-') {
            Some((first, last)) => cpus.extend(number(first)?..=number(last)?),
            None => cpus.push(number(part)?),
        }
    }
    if cpus.is_empty() || cpus.iter().any(|&cpu| cpu >= libc::CPU_SETSIZE as usize) {
        bail!("CPU list {list:?} is empty or out of range");
    }
    Ok(cpus)
}

/// Sets the child's CPU affinity between fork and exec, so that the program
/// starts (and sizes itself) on those CPUs only.
fn pin_at_exec(command: &mut std::process::Command, cpus: Vec<usize>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: between fork and exec only async-signal-safe calls are made:
    // the set is built on the stack and sched_setaffinity is a system call.
    unsafe {
        command.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            for &cpu in &cpus {
                libc::CPU_SET(cpu, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Write + rename, so that no reader ever sees half a file.
fn write_atomically(path: &Path, contents: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// A private directory, removed on drop.
pub struct WorkDir {
    pub path: PathBuf,
}

impl WorkDir {
    pub fn create() -> Result<WorkDir> {
        let path = std::env::temp_dir().join(format!("lb-bench-l7-{}-{}", std::process::id(), crate::pins::next_id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(WorkDir { path })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_as_taskset_reads_them() {
        let cases: [(&str, Option<Vec<usize>>); 6] = [
            ("1", Some(vec![1])),
            ("0,2-3", Some(vec![0, 2, 3])),
            (" 3 ", Some(vec![3])),
            ("", None),
            ("a", None),
            ("99999", None),
        ];
        for (list, expected) in cases {
            assert_eq!(cpu_list(list).ok(), expected, "{list:?}");
        }
    }

    #[test]
    fn a_child_pinned_at_exec_starts_on_those_cpus_only() {
        let mut command = std::process::Command::new("grep");
        command.args(["^Cpus_allowed_list:", "/proc/self/status"]);
        pin_at_exec(&mut command, vec![0]);
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert_eq!(text.split_whitespace().nth(1), Some("0"), "{text}");
    }
}
