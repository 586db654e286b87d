//! The programmed state, read back from the pinned maps, for a person
//! debugging a node (`ingress-userspace state`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;
use std::path::Path;

use ingress_common::addr::Addr;
use ingress_common::maps::{
    AFFINITY_MAP, CONNTRACK_MAP, SERVICE_FLAG_LOCAL_EXTERNAL, SERVICE_FLAG_LOCAL_INTERNAL, SERVICE_FLAG_SOURCE_RANGES,
    SNAT_MAP, SnatConfig,
};
use ingress_common::stats::REASON_NAMES;

use crate::dataplane::MapWriter;
use crate::dataplane::ebpf::{PinnedMaps, pinned_capacity, uplink_hooks};
use crate::dataplane::uplink_hook::UplinkHook;
use crate::dataplane::usage::{SnatFlows, fill};
use crate::dataplane::pin_dir::explained;
use crate::dataplane::plan::{ProgrammedFrontend, describe};
use crate::model::{BackendState, DesiredState, Frontend};

pub fn render(pin_dir: &Path) -> anyhow::Result<String> {
    let maps = PinnedMaps::open(pin_dir).map_err(|error| explained(pin_dir, error))?;
    let contents = maps.read()?;
    let frontends = describe(&contents);
    let names = maps.frontend_names()?;
    let mut rows = vec![["SERVICE", "FRONTEND", "POLICY", "BACKENDS", "PACKETS", "BYTES"].map(String::from)];
    for programmed in &frontends {
        let counter = maps.frontend_counter(programmed.rev_nat_id)?;
        rows.push([
            names.get(&programmed.rev_nat_id).cloned().unwrap_or_else(|| "?".into()),
            programmed.frontend.to_string(),
            policy(programmed),
            backends(programmed),
            counter.packets.to_string(),
            counter.bytes.to_string(),
        ]);
    }
    let mut out = table(&rows);
    let capacity = |map| pinned_capacity(pin_dir, map);
    writeln!(out, "\n{} frontends, {} backends (maps in {})", frontends.len(), contents.backends.len(), pin_dir.display())?;
    writeln!(out, "uplinks: {}", uplinks(&uplink_hooks(pin_dir)?))?;
    writeln!(out, "conntrack: {}", fill(maps.conntrack()?.len(), capacity(CONNTRACK_MAP)?))?;
    let snat = maps.snat()?;
    writeln!(
        out,
        "SNAT: {}; {}",
        snat_summary(&maps.snat_config()?, SnatFlows::count(snat.iter().map(|(key, _)| key))),
        fill(snat.len(), capacity(SNAT_MAP)?)
    )?;
    writeln!(out, "affinity (one entry per client and frontend): {}", fill(maps.affinity_entries(), capacity(AFFINITY_MAP)?))?;
    writeln!(out, "packets by verdict reason:")?;
    for (name, counter) in REASON_NAMES.iter().zip(maps.stats()?) {
        if counter.packets > 0 {
            writeln!(out, "  {name:<26} {:>10} packets {:>12} bytes", counter.packets, counter.bytes)?;
        }
    }
    Ok(out)
}

/// Each uplink with the hook on its ingress.
fn uplinks(hooks: &[(String, UplinkHook)]) -> String {
    if hooks.is_empty() {
        return "none attached".into();
    }
    hooks.iter().map(|(interface, hook)| format!("{interface} ({hook})")).collect::<Vec<_>>().join(", ")
}

/// The traffic policies and options that change who gets which backend.
fn policy(programmed: &ProgrammedFrontend) -> String {
    let mut parts = Vec::new();
    if programmed.flags & SERVICE_FLAG_LOCAL_EXTERNAL != 0 {
        parts.push("ETP Local".to_string());
    }
    if programmed.flags & SERVICE_FLAG_LOCAL_INTERNAL != 0 {
        parts.push("ITP Local".to_string());
    }
    if programmed.affinity_timeout_s > 0 {
        parts.push(format!("affinity {}s", programmed.affinity_timeout_s));
    }
    if programmed.flags & SERVICE_FLAG_SOURCE_RANGES != 0 {
        parts.push("source ranges".to_string());
    }
    if parts.is_empty() { "-".into() } else { parts.join(", ") }
}

/// The backends, and what the programs do for clients who have none: a
/// frontend without endpoints, or a Local policy without one on this node,
/// is answered with a TCP RST or an ICMP unreachable.
fn backends(programmed: &ProgrammedFrontend) -> String {
    if programmed.backends.is_empty() {
        return "none (rejected)".into();
    }
    let describe = |(id, backend): &(u32, Option<crate::model::Backend>)| match backend {
        None => format!("#{id} MISSING"),
        Some(b) => {
            let state = match (b.state, b.local) {
                (BackendState::Active, true) => "",
                (BackendState::Active, false) => " remote",
                (BackendState::Terminating, _) => " terminating",
            };
            format!("{}{state}", b.addr)
        }
    };
    let listed = programmed.backends.iter().map(describe).collect::<Vec<_>>().join(", ");
    if programmed.local_count > 0 {
        return listed;
    }
    let external = programmed.flags & SERVICE_FLAG_LOCAL_EXTERNAL != 0;
    let internal = programmed.flags & SERVICE_FLAG_LOCAL_INTERNAL != 0;
    let (rejected, served) = match (external, internal) {
        (false, false) => return listed,
        (true, false) => ("outside clients", "this node's pods use"),
        (false, true) => ("this node's pods", "outside clients use"),
        (true, true) => ("outside clients and this node's pods", "programmed:"),
    };
    format!("none (local only: rejected for {rejected}); {served} {listed}")
}

/// Which node addresses SNAT gives flows of each family, the port range, and
/// how many flows it translates now.
fn snat_summary(config: &SnatConfig, flows: SnatFlows) -> String {
    let family = |addr: &Addr, flows: usize| {
        if *addr == Addr::default() { "off".to_string() } else { format!("{} ({flows} flows)", IpAddr::from(*addr)) }
    };
    format!(
        "IPv4 {}, IPv6 {}, ports {}-{}",
        family(&config.v4, flows.v4),
        family(&config.v6, flows.v6),
        config.port_min,
        config.port_max
    )
}

/// Left-aligned columns, two spaces apart.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let widths: Vec<usize> = (0..N).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The Service port name of every programmed frontend, by reverse-NAT id,
/// for `PinnedMaps::set_frontend_names`.
pub fn frontend_names(desired: &DesiredState, programmed: &[ProgrammedFrontend]) -> BTreeMap<u32, String> {
    let by_frontend: BTreeMap<&Frontend, String> =
        desired.frontends.iter().map(|(f, state)| (f, state.service.to_string())).collect();
    programmed
        .iter()
        .filter_map(|p| by_frontend.get(&p.frontend).map(|name| (p.rev_nat_id, name.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::net::{Ipv4Addr, Ipv6Addr};

    use crate::model::{Backend, BackendAddr, Frontend, Protocol};

    fn frontend(backends: &[(&str, bool)], flags: u16, local_count: u16) -> ProgrammedFrontend {
        let backend = |(addr, local): &(&str, bool)| Backend {
            addr: BackendAddr { addr: addr.parse().unwrap(), port: 8080 },
            state: BackendState::Active,
            local: *local,
        };
        ProgrammedFrontend {
            frontend: Frontend { addr: Ipv4Addr::new(198, 51, 100, 1).into(), port: 30080, protocol: Protocol::Tcp },
            rev_nat_id: 1,
            backends: backends.iter().enumerate().map(|(i, b)| (i as u32 + 1, Some(backend(b)))).collect(),
            flags,
            local_count,
            affinity_timeout_s: 0,
        }
    }

    #[test]
    fn backends_say_who_is_rejected() {
        let (etp, itp) = (SERVICE_FLAG_LOCAL_EXTERNAL, SERVICE_FLAG_LOCAL_INTERNAL);
        let remote = [("10.244.2.2", false)];
        let cases = [
            (frontend(&[], 0, 0), "none (rejected)"),
            (frontend(&[], etp, 0), "none (rejected)"),
            (frontend(&[("10.244.1.2", true), ("10.244.2.2", false)], 0, 0), "10.244.1.2:8080, 10.244.2.2:8080 remote"),
            (frontend(&[("10.244.1.2", true)], etp, 1), "10.244.1.2:8080"),
            (
                frontend(&remote, etp, 0),
                "none (local only: rejected for outside clients); this node's pods use 10.244.2.2:8080 remote",
            ),
            (
                frontend(&remote, itp, 0),
                "none (local only: rejected for this node's pods); outside clients use 10.244.2.2:8080 remote",
            ),
            (
                frontend(&remote, etp | itp, 0),
                "none (local only: rejected for outside clients and this node's pods); programmed: 10.244.2.2:8080 remote",
            ),
        ];
        for (programmed, expected) in cases {
            assert_eq!(backends(&programmed), expected, "{programmed:?}");
        }
    }

    #[test]
    fn policy_names_local_policies_affinity_and_ranges() {
        let mut programmed = frontend(&[], 0, 0);
        assert_eq!(policy(&programmed), "-");
        programmed.flags = SERVICE_FLAG_LOCAL_EXTERNAL | SERVICE_FLAG_SOURCE_RANGES;
        programmed.affinity_timeout_s = 10_800;
        assert_eq!(policy(&programmed), "ETP Local, affinity 10800s, source ranges");
        programmed.flags = SERVICE_FLAG_LOCAL_INTERNAL;
        programmed.affinity_timeout_s = 0;
        assert_eq!(policy(&programmed), "ITP Local");
    }

    #[test]
    fn snat_summary_shows_each_familys_address_or_off() {
        let v4 = Addr::from(IpAddr::from(Ipv4Addr::new(198, 51, 100, 1)));
        let v6 = Addr::from(IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
        let both = SnatConfig { v4, v6, port_min: 61_000, port_max: 65_535 };
        assert_eq!(
            snat_summary(&both, SnatFlows { v4: 2, v6: 1 }),
            "IPv4 198.51.100.1 (2 flows), IPv6 2001:db8::1 (1 flows), ports 61000-65535"
        );
        let v4_only = SnatConfig { v6: Addr::default(), ..both };
        assert_eq!(snat_summary(&v4_only, SnatFlows::default()), "IPv4 198.51.100.1 (0 flows), IPv6 off, ports 61000-65535");
    }

    #[test]
    fn uplinks_show_their_ingress_hook() {
        assert_eq!(uplinks(&[]), "none attached");
        let hooks = [("eth0".to_string(), UplinkHook::Tc), ("eth1".to_string(), UplinkHook::Xdp)];
        assert_eq!(uplinks(&hooks), "eth0 (TC ingress), eth1 (XDP)");
    }

    #[test]
    fn columns_line_up() {
        let rows = [["A", "BB"].map(String::from), ["CCC", "D"].map(String::from)];
        assert_eq!(table(&rows), "A    BB\nCCC  D\n");
    }
}
