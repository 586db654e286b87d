//! The `iptables` contender: the same Services as kube-proxy's iptables mode
//! writes them (the nat table, and its forwarding rules in the filter table),
//! loaded into the node namespace with `iptables-restore`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::Stdio;

use anyhow::{Context, Result, bail};

use super::services::{SERVICE_PORT, Service, TARGET_PORT};
use crate::netns::{NetNs, run_command};

/// kube-proxy's `--cluster-cidr`: traffic from outside it is masqueraded.
const CLUSTER_CIDR: &str = "10.244.0.0/16";

/// The nat table kube-proxy would write for `services`, in its order.
pub fn ruleset(services: &[Service]) -> String {
    let mut chains = String::new();
    let mut rules = String::new();
    for chain in ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"] {
        let _ = writeln!(chains, ":{chain} - [0:0]");
    }
    rules.push_str(
        "-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
         -A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n\
         -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000\n\
         -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN\n\
         -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000\n\
         -A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE --random-fully\n",
    );
    let mut nodeports = String::new();
    for service in services {
        let name = service.port_name();
        let hash = chain_hash(&[&name, "tcp"]);
        let svc = format!("KUBE-SVC-{hash}");
        let vip = service.cluster_ip;
        let _ = writeln!(chains, ":{svc} - [0:0]");
        let _ = writeln!(
            rules,
            "-A KUBE-SERVICES -d {vip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {SERVICE_PORT} -j {svc}"
        );
        let _ = writeln!(
            rules,
            "-A {svc} ! -s {CLUSTER_CIDR} -d {vip}/32 -p tcp -m comment --comment \"{name} cluster IP\" -m tcp --dport {SERVICE_PORT} -j KUBE-MARK-MASQ"
        );
        let n = service.endpoints.len();
        for (i, endpoint) in service.endpoints.iter().enumerate() {
            let target = format!("{endpoint}:{TARGET_PORT}");
            let sep = format!("KUBE-SEP-{}", chain_hash(&[&name, "tcp", &target]));
            let _ = writeln!(chains, ":{sep} - [0:0]");
            let statistic = if i + 1 < n {
                format!(" -m statistic --mode random --probability {:.10}", 1.0 / (n - i) as f64)
            } else {
                String::new()
            };
            let _ = writeln!(rules, "-A {svc} -m comment --comment \"{name} -> {target}\"{statistic} -j {sep}");
            let _ = writeln!(rules, "-A {sep} -s {endpoint}/32 -m comment --comment \"{name}\" -j KUBE-MARK-MASQ");
            let _ = writeln!(rules, "-A {sep} -p tcp -m comment --comment \"{name}\" -m tcp -j DNAT --to-destination {target}");
        }
        if let Some(port) = service.node_port {
            let ext = format!("KUBE-EXT-{hash}");
            let _ = writeln!(chains, ":{ext} - [0:0]");
            let _ = writeln!(nodeports, "-A KUBE-NODEPORTS -p tcp -m comment --comment \"{name}\" -m tcp --dport {port} -j {ext}");
            let _ = writeln!(
                rules,
                "-A {ext} -m comment --comment \"masquerade traffic for {name} external destinations\" -j KUBE-MARK-MASQ\n-A {ext} -j {svc}"
            );
        }
    }
    rules.push_str(
        "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" \
         -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n",
    );
    format!(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n{chains}{rules}{nodeports}COMMIT\n{FILTER}"
    )
}

/// kube-proxy's forwarding rules (filter table), which every forwarded
/// packet walks: it drops what conntrack finds INVALID (unless
/// `--conntrack-tcp-be-liberal` is given), because such a packet would skip
/// the NAT and reach the pod or the client untranslated.
const FILTER: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:KUBE-FORWARD - [0:0]\n\
    -A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n\
    -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding rules\" -m mark --mark 0x4000/0x4000 -j ACCEPT\n\
    -A KUBE-FORWARD -m comment --comment \"kubernetes forwarding conntrack rule\" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
    COMMIT\n";

/// A stable 16-character chain suffix, like kube-proxy's (which takes the
/// first 16 base32 characters of a SHA-256; any stable id walks the same).
fn chain_hash(parts: &[&str]) -> String {
    let hash = parts.iter().flat_map(|p| p.bytes()).fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016X}")
}

/// The rules in the node namespace, removed by [`NatRules::remove`] (or at
/// the latest on drop) so that they are never active beside the eBPF dataplane.
pub struct NatRules<'a> {
    node: &'a NetNs,
}

impl<'a> NatRules<'a> {
    /// Loads `rules` and returns how long `iptables-restore` took.
    pub fn load(node: &'a NetNs, rules: &str) -> Result<NatRules<'a>> {
        let guard = NatRules { node };
        guard.replace(rules)?;
        Ok(guard)
    }

    /// Replaces the whole table, as kube-proxy's full sync does.
    pub fn replace(&self, rules: &str) -> Result<()> {
        let mut child = self
            .node
            .exec("iptables-restore", &["-w"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting iptables-restore (is iptables installed?)")?;
        child.stdin.take().context("iptables-restore's stdin")?.write_all(rules.as_bytes())?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!("iptables-restore failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// Deletes the tables; an error here means the next contender would run
    /// beside these rules, so the caller stops.
    pub fn remove(self) -> Result<()> {
        let result = delete_tables(self.node);
        std::mem::forget(self);
        result
    }
}

/// Deleting the tables (not only flushing them) also unhooks NAT and
/// conntrack, so the next contender does not pay for netfilter's lookups.
fn delete_tables(node: &NetNs) -> Result<()> {
    for table in ["nat", "filter"] {
        run_command(&mut node.exec("nft", &["delete", "table", "ip", table]))
            .with_context(|| format!("removing the iptables {table} table (is nftables installed?)"))?;
    }
    Ok(())
}

impl Drop for NatRules<'_> {
    fn drop(&mut self) {
        if let Err(error) = delete_tables(self.node) {
            eprintln!("warning: {error:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::services::generate;
    use std::net::Ipv4Addr;

    #[test]
    fn kube_proxy_layout() {
        let pods = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 2, 2), Ipv4Addr::new(10, 244, 3, 2)];
        let rules = ruleset(&generate(3, &pods, None).unwrap());
        let services: Vec<&str> = rules.lines().filter(|l| l.starts_with("-A KUBE-SERVICES")).collect();
        assert_eq!(services.len(), 4);
        assert!(services[0].contains("-d 10.96.0.10/32") && services[3].contains("KUBE-NODEPORTS"));
        let probabilities: Vec<&str> =
            rules.lines().filter_map(|l| l.split("--probability ").nth(1)).map(|p| p.split(' ').next().unwrap()).collect();
        // svc-0 has 2 endpoints, svc-1 3, svc-2 (measured) the 3 pods.
        assert_eq!(probabilities, ["0.5000000000", "0.3333333333", "0.5000000000", "0.3333333333", "0.5000000000"]);
        assert!(rules.contains("-j DNAT --to-destination 10.244.3.2:8080"));
        assert!(rules.contains("--dport 32767 -j KUBE-EXT-"));
        assert!(rules.starts_with("*nat\n") && rules.ends_with("COMMIT\n"));
        assert!(rules.contains("*filter\n") && rules.contains("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"));
        assert_ne!(chain_hash(&["a"]), chain_hash(&["b"]));
        assert_eq!(chain_hash(&["default/svc-0:tcp", "tcp"]).len(), 16);
    }
}
