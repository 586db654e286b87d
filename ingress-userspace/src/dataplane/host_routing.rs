//! When the programs route translated packets themselves (host routing, see
//! `host_ifaces` and the eBPF crate's `host_route`). Routed packets skip the
//! node's netfilter, so `auto`, the default, routes only while the agent's
//! network namespace has no netfilter hook a Service's flows would pass on
//! the kernel's path (`netfilter_hooks`): a node with a CNI's policy or
//! masquerade chains keeps the kernel's path, a bare node gets the short
//! one. A hook that appears later (a CNI starting after the agent) is seen
//! by the next scan, a second at most, and routing is taken back for the
//! rest of the agent's life, so a policy is never skipped for longer.

use super::ebpf::Dataplane;
use super::netfilter_hooks::{self, Hook};
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HostRouting {
    /// The node's stack routes every packet.
    Off,
    /// The programs route, whatever netfilter holds.
    On,
    /// The programs route while no netfilter hook would see the flows.
    Auto,
}

/// Whether the programs are loaded to route; `why` explains an `auto`
/// decision for the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Decision {
    pub route: bool,
    pub why: Option<String>,
}

/// At start: whether the programs are loaded to route, from the mode and,
/// for `auto`, the scan of the node's hooks.
pub fn at_start(mode: HostRouting, scan: impl FnOnce() -> anyhow::Result<Vec<Hook>>) -> Decision {
    match mode {
        HostRouting::Off => Decision { route: false, why: None },
        HostRouting::On => Decision { route: true, why: None },
        HostRouting::Auto => match scan() {
            Ok(hooks) if hooks.is_empty() => Decision { route: true, why: Some("no netfilter hook a Service's flows would pass".into()) },
            Ok(hooks) => Decision { route: false, why: Some(format!("netfilter hooks the flows must pass: {}", list(&hooks))) },
            Err(error) => Decision { route: false, why: Some(format!("the node's netfilter hooks could not be listed: {error:#}")) },
        },
    }
}

/// Whether a scan while routing tells `auto` to take routing back, and why.
pub fn take_back(scan: anyhow::Result<Vec<Hook>>) -> Option<String> {
    match scan {
        Ok(hooks) if hooks.is_empty() => None,
        Ok(hooks) => Some(format!("netfilter hooks appeared that the flows must pass: {}", list(&hooks))),
        Err(error) => Some(format!("the node's netfilter hooks could not be listed: {error:#}")),
    }
}

fn list(hooks: &[Hook]) -> String {
    hooks.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// `auto`'s watch while the programs route; inert otherwise.
pub struct Watch {
    routing: bool,
}

impl Watch {
    /// Decides at start (logged, and in the `lb_host_routing` gauge);
    /// `route` is what the programs are loaded with.
    pub fn start(mode: HostRouting, metrics: &Metrics) -> (Watch, bool) {
        let Decision { route, why } = at_start(mode, netfilter_hooks::scan);
        match &why {
            Some(why) => tracing::info!(route, "host routing (auto): {}: {why}", if route { "on" } else { "off" }),
            None => tracing::info!(route, "host routing: {mode:?}"),
        }
        metrics.set_host_routing(route);
        (Watch { routing: route && mode == HostRouting::Auto }, route)
    }

    /// Scans the hooks while `auto` routes, and takes routing back when a
    /// hook appeared or the scan failed.
    pub fn check(&mut self, dataplane: &mut Dataplane, metrics: &Metrics) {
        if !self.routing {
            return;
        }
        let scan = netfilter_hooks::scan();
        if scan.is_err() {
            metrics.count_netfilter_scan_error();
        }
        let Some(why) = take_back(scan) else { return };
        match dataplane.stop_host_routing() {
            Ok(()) => {
                self.routing = false;
                metrics.set_host_routing(false);
                tracing::warn!("host routing (auto) taken back until the agent restarts: {why}");
            }
            Err(error) => tracing::error!("host routing (auto): {why}, and taking it back failed: {error:#}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> Vec<Hook> {
        vec![Hook("nftables ip filter chain FORWARD (hook 2)".into())]
    }

    #[test]
    fn the_mode_and_the_hooks_decide_at_start() {
        type Scan = fn() -> anyhow::Result<Vec<Hook>>;
        let cases: Vec<(HostRouting, Scan, bool, Option<&str>)> = vec![
            (HostRouting::Off, || Ok(vec![]), false, None),
            (HostRouting::On, hook_list, true, None),
            (HostRouting::Auto, || Ok(vec![]), true, Some("no netfilter hook")),
            (HostRouting::Auto, hook_list, false, Some("chain FORWARD (hook 2)")),
            (HostRouting::Auto, || Err(anyhow::anyhow!("EPERM")), false, Some("could not be listed: EPERM")),
        ];
        for (mode, scan, route, why) in cases {
            let Decision { route: decided, why: said } = at_start(mode, scan);
            assert_eq!(decided, route, "{mode:?}");
            match (why, said) {
                (None, None) => {}
                (Some(part), Some(said)) => assert!(said.contains(part), "{mode:?}: {said}"),
                (expected, said) => panic!("{mode:?}: expected {expected:?}, said {said:?}"),
            }
        }
    }

    fn hook_list() -> anyhow::Result<Vec<Hook>> {
        Ok(hook())
    }

    #[test]
    fn a_hook_or_a_failed_scan_takes_routing_back() {
        assert_eq!(take_back(Ok(vec![])), None);
        assert!(take_back(Ok(hook())).is_some_and(|why| why.contains("appeared") && why.contains("FORWARD")));
        assert!(take_back(Err(anyhow::anyhow!("EPERM"))).is_some_and(|why| why.contains("EPERM")));
    }
}
