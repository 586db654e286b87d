//! Waiting until the `ebpf` contender's programs are really gone from the
//! lab's interfaces before the next contender sends a packet.
//!
//! The agent pins its links, so its programs stay attached after it exits
//! and go only when the pins are removed. The kernel then releases each link
//! from a workqueue, some time later (about 100 ms under load was seen here).
//! Without this wait, the `iptables` contender's first connections were set
//! up through the still-attached XDP program (with its old maps) and, when
//! the link finally went, continued through netfilter, which had never seen
//! their SYN: with `nf_conntrack_tcp_loose=0` (kube-proxy's setting) such
//! packets are INVALID, skip the NAT, reach the node's own stack on the
//! NodePort where nothing listens, and the client gets a reset from
//! 198.51.100.1:32767 in the middle of its persistent connection.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use aya::programs::tc::{SchedClassifier, TcAttachType};

use crate::lab::Lab;
use crate::netns::run_command;

/// Waits (polling, bounded by `limit`) until no XDP program is attached to
/// the uplink and no TCX program to any lab interface of the node.
pub fn wait_programs_detached(lab: &Lab, limit: Duration) -> Result<()> {
    let interfaces: Vec<String> =
        std::iter::once(lab.uplink_iface()).chain(lab.pod_ifaces()).map(str::to_owned).collect();
    let start = Instant::now();
    loop {
        let attached = attached_programs(lab, &interfaces)?;
        if attached.is_empty() {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("programs still attached {limit:?} after the agent stopped: {}", attached.join(", "));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `interface/hook` for every program still attached.
fn attached_programs(lab: &Lab, interfaces: &[String]) -> Result<Vec<String>> {
    let uplink = lab.uplink_iface();
    let link = run_command(&mut lab.node().exec("ip", &["-d", "link", "show", "dev", uplink]))?;
    let mut attached: Vec<String> = link.contains("prog/xdp").then(|| format!("{uplink}/xdp")).into_iter().collect();
    let owned = interfaces.to_vec();
    let tcx = lab.node().run(move || -> Result<Vec<String>> {
        let mut found = Vec::new();
        for interface in &owned {
            for (hook, kind) in [("tc-ingress", TcAttachType::Ingress), ("tc-egress", TcAttachType::Egress)] {
                let (_, programs) =
                    SchedClassifier::query_tcx(interface, kind).with_context(|| format!("querying {interface}/{hook}"))?;
                if !programs.is_empty() {
                    found.push(format!("{interface}/{hook}"));
                }
            }
        }
        Ok(found)
    })??;
    attached.extend(tcx);
    Ok(attached)
}
