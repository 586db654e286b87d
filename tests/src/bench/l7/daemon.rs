//! A contender proxy run as a foreground process in the node namespace,
//! pinned with `taskset`, killed with its workers on drop; and the peak
//! memory of a process tree.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::netns::NetNs;

/// How long a daemon gets to stop on SIGTERM before it and its workers are killed.
const STOP_LIMIT: Duration = Duration::from_secs(5);

pub struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// `ip netns exec NS taskset -c CPUS program args`, with stdout and
    /// stderr in `log`; both exec, so the child's pid is the program's.
    pub fn spawn(name: &'static str, ns: &NetNs, cpus: &str, program: &str, args: &[&str], log: &Path) -> Result<Daemon> {
        let output = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut command = ns.exec("taskset", &[&["-c", cpus, program], args].concat());
        command.stdin(Stdio::null()).stdout(output.try_clone()?).stderr(output);
        let child = command.spawn().with_context(|| format!("starting {program} (installed by `cargo xtask install`)"))?;
        Ok(Daemon { name, child, log: log.to_owned() })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error with the end of the daemon's log if it has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(10).collect::<Vec<_>>().into_iter().rev().collect();
            bail!("{} exited ({status}): {}", self.name, tail.join("\n"));
        }
        Ok(())
    }

    /// Sends `signal` (e.g. "HUP") to the daemon's main process.
    pub fn signal(&self, signal: &str) -> Result<()> {
        crate::netns::run_command(Command::new("kill").arg(format!("-{signal}")).arg(self.pid().to_string())).map(drop)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Workers are listed first: a master killed hard would orphan them.
        let tree = descendants(self.pid());
        let _ = self.signal("TERM");
        let deadline = Instant::now() + STOP_LIMIT;
        while Instant::now() < deadline && !matches!(self.child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in tree.into_iter().chain(descendants(self.pid())) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pids of the processes below `root` (not `root` itself).
pub fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            Some((pid, parent_of(&stat)?))
        })
        .collect();
    let mut found = vec![root];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    found.split_off(1)
}

/// The ppid field of `/proc/PID/stat`, after the parenthesised command name.
fn parent_of(stat: &str) -> Option<u32> {
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory (VmHWM) of `root` and the processes below it, in
/// MiB: a master and its workers count together.
pub fn peak_rss_mib(root: u32) -> f64 {
    let kib: u64 = std::iter::once(root).chain(descendants(root)).filter_map(vm_hwm_kib).sum();
    kib as f64 / 1024.0
}

/// CPU time, user and system, of `root` and the processes below it, in
/// seconds: what the kernel charged them, which with tick-based accounting
/// (no `CONFIG_IRQ_TIME_ACCOUNTING`) includes the packet processing that
/// runs in their system calls, the receiving end's included.
pub fn cpu_seconds(root: u32) -> f64 {
    let ticks: u64 = std::iter::once(root)
        .chain(descendants(root))
        .filter_map(|pid| cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?))
        .sum();
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / per_second as f64
}

/// utime + stime of a `/proc/PID/stat` line (fields 14 and 15), in clock ticks.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // Field 3 (the state) is the first after the command name.
    let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
    Some(field(14)? + field(15)?)
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_pid_survives_odd_command_names() {
        assert_eq!(parent_of("42 (nginx: worker) S 41 42 42 0"), Some(41));
        assert_eq!(parent_of("7 (a) b) R 1 7"), Some(1));
        assert_eq!(parent_of("garbage"), None);
    }

    #[test]
    fn cpu_ticks_are_user_and_system_time() {
        let stat = "42 (nginx: worker) S 41 42 42 0 -1 4194624 89 0 0 0 120 35 0 0 20 0 1 0 100";
        assert_eq!(cpu_ticks(stat), Some(155));
        assert_eq!(cpu_ticks("7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 3 4 0"), Some(7));
        assert_eq!(cpu_ticks("7 (short) R 1"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss_and_a_child_is_its_descendant() {
        assert!(peak_rss_mib(std::process::id()) > 0.0);
        let mut child = Command::new("sleep").arg("5").spawn().unwrap();
        let below = descendants(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(below.contains(&child.id()), "{below:?}");
    }
}
