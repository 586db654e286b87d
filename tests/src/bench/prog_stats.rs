//! Nanoseconds per packet of each of the agent's programs, from the kernel's
//! own accounting (bpf prog info run_time_ns / run_cnt): the one figure a
//! noisy shared machine hardly blurs, since it counts only the programs' own
//! time on the CPU.
//!
//! The kernel keeps the counters only while statistics are enabled.
//! `BPF_ENABLE_STATS` turns them on for as long as its file descriptor is
//! open, counted by the kernel beside `kernel.bpf_stats_enabled`: dropping
//! the guard restores whatever was set before, also on error or panic.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use anyhow::{Context, Result};
use aya::programs::loaded_programs;
use aya::programs::tc::{SchedClassifier, TcAttachType};
use aya::sys::{Stats, enable_stats};

use crate::lab::Lab;
use crate::netns::run_command;

/// Statistics on while it lives.
pub struct StatsEnabled {
    _fd: OwnedFd,
}

pub fn enable() -> Result<StatsEnabled> {
    let fd = enable_stats(Stats::RunTime).context("enabling BPF run-time statistics (BPF_ENABLE_STATS)")?;
    Ok(StatsEnabled { _fd: fd })
}

/// A program's accumulated run time and run count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Runs {
    pub ns: u64,
    pub count: u64,
}

/// The counters of every program attached to the lab's node, by program
/// name (one program attached to several interfaces counts once).
pub type Snapshot = BTreeMap<String, Runs>;

/// Nanoseconds per run of each program between two snapshots; a program
/// that did not run in between has none.
pub fn ns_per_run(before: &Snapshot, after: &Snapshot) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, now)| {
            let then = before.get(name).copied().unwrap_or_default();
            let runs = now.count.checked_sub(then.count).filter(|runs| *runs > 0)?;
            Some((name.clone(), now.ns.saturating_sub(then.ns) as f64 / runs as f64))
        })
        .collect()
}

/// The counters of the XDP program on the uplink and of the TCX programs
/// on every interface of the lab's node, read in the node's namespace.
pub fn snapshot(lab: &Lab) -> Result<Snapshot> {
    let uplink = lab.uplink_iface().to_owned();
    let interfaces: Vec<String> = std::iter::once(uplink.as_str()).chain(lab.pod_ifaces()).map(str::to_owned).collect();
    let link = run_command(&mut lab.node().exec("ip", &["-d", "link", "show", "dev", &uplink]))?;
    let xdp_id = xdp_program_id(&link);
    let programs = lab.node().run(move || -> Result<BTreeMap<u32, (String, Runs)>> {
        let mut programs = BTreeMap::new();
        for interface in &interfaces {
            for kind in [TcAttachType::Ingress, TcAttachType::Egress] {
                let (_, infos) = SchedClassifier::query_tcx(interface, kind).with_context(|| format!("querying {interface}"))?;
                for info in infos {
                    let runs = Runs { ns: info.run_time().as_nanos() as u64, count: info.run_count() };
                    programs.insert(info.id(), (info.name_as_str().unwrap_or("?").to_owned(), runs));
                }
            }
        }
        if let Some(id) = xdp_id {
            let info = loaded_programs()
                .filter_map(Result::ok)
                .find(|info| info.id() == id)
                .with_context(|| format!("the uplink's XDP program {id} is not loaded"))?;
            let runs = Runs { ns: info.run_time().as_nanos() as u64, count: info.run_count() };
            programs.insert(id, (info.name_as_str().unwrap_or("?").to_owned(), runs));
        }
        Ok(programs)
    })??;
    Ok(programs.into_values().collect())
}

/// The id in `ip -d link show`'s "prog/xdp id N" of an interface.
fn xdp_program_id(link: &str) -> Option<u32> {
    let rest = link.split("prog/xdp id ").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_per_run_is_the_difference_of_time_over_the_difference_of_runs() {
        let snapshot = |entries: &[(&str, u64, u64)]| -> Snapshot {
            entries.iter().map(|(name, ns, count)| (name.to_string(), Runs { ns: *ns, count: *count })).collect()
        };
        let before = snapshot(&[("lb_tc_out", 1_000, 10), ("lb_tc_in", 500, 5)]);
        let after = snapshot(&[("lb_tc_out", 3_000, 30), ("lb_tc_in", 500, 5), ("lb_tc_uplink", 900, 3)]);
        let expected = BTreeMap::from([("lb_tc_out".to_string(), 100.0), ("lb_tc_uplink".to_string(), 300.0)]);
        assert_eq!(ns_per_run(&before, &after), expected, "a program that did not run has no figure");
    }

    #[test]
    fn the_xdp_program_id_is_read_from_ip_link() {
        let link = "2: eth0@if3: <BROADCAST> mtu 1500 xdp qdisc noqueue\n    prog/xdp id 4711 name lb_xdp tag 0123 jited";
        assert_eq!(xdp_program_id(link), Some(4711));
        assert_eq!(xdp_program_id("2: eth0@if3: <BROADCAST> mtu 1500 qdisc noqueue"), None);
    }
}
