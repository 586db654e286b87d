//! The N Services of one benchmark size, generated rather than read, so that
//! the eBPF agent and the iptables rules get exactly the same frontends.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use anyhow::{Result, ensure};

use ingress_common::maps;

use crate::ECHO_PORT;

pub const SERVICE_PORT: u16 = 80;
const FIRST_NODE_PORT: u16 = 30000;
/// The measured Service always gets this one, whatever N is.
pub const MEASURED_NODE_PORT: u16 = 32767;
const CLUSTER_IP_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
/// Endpoints of the other Services: nothing listens there, and the lab's own
/// pods (10.244.1-4.x) are below this block.
const FILLER_ENDPOINT_BASE: Ipv4Addr = Ipv4Addr::new(10, 244, 16, 1);
/// 10.96.0.0/16, less the first ten addresses.
const MAX_SERVICES: usize = 65_000;
/// The filler endpoints stay below this address (inside 10.0.0.0/8).
const FILLER_ENDPOINT_END: Ipv4Addr = Ipv4Addr::new(10, 255, 255, 255);

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    pub node_port: Option<u16>,
    pub endpoints: Vec<Ipv4Addr>,
}

impl Service {
    /// kube-proxy's name for a service port: `namespace/name:port`.
    pub fn port_name(&self) -> String {
        format!("default/{}:tcp", self.name)
    }
}

pub const TARGET_PORT: u16 = ECHO_PORT;

/// `svc-0..svc-{n-1}`; the last one is the measured Service and points at
/// `measured_endpoints`, the others at `filler_endpoints` addresses where
/// nothing runs (`None`: 2 and 3 in turn).
pub fn generate(n: usize, measured_endpoints: &[Ipv4Addr], filler_endpoints: Option<usize>) -> Result<Vec<Service>> {
    ensure!((1..=MAX_SERVICES).contains(&n), "the number of Services must be 1 to {MAX_SERVICES}, got {n}");
    let room = (u32::from(FILLER_ENDPOINT_END) - u32::from(FILLER_ENDPOINT_BASE)) as usize;
    let fits = |count: usize| count >= 1 && n * count <= room;
    ensure!(filler_endpoints.is_none_or(fits), "{n} Services of {filler_endpoints:?} endpoints each do not fit the {room} filler addresses");
    let node_ports_for_others = usize::from(MEASURED_NODE_PORT - FIRST_NODE_PORT);
    let mut next_filler = u32::from(FILLER_ENDPOINT_BASE);
    let services = (0..n)
        .map(|i| {
            let measured = i == n - 1;
            let node_port = if measured {
                Some(MEASURED_NODE_PORT)
            } else {
                (i < node_ports_for_others).then(|| FIRST_NODE_PORT + i as u16)
            };
            let endpoints = if measured {
                measured_endpoints.to_vec()
            } else {
                let count = filler_endpoints.map_or(2 + (i % 2) as u32, |count| count as u32);
                let first = next_filler;
                next_filler += count;
                (first..next_filler).map(Ipv4Addr::from).collect()
            };
            Service {
                name: format!("svc-{i}"),
                cluster_ip: Ipv4Addr::from(u32::from(CLUSTER_IP_BASE) + i as u32),
                node_port,
                endpoints,
            }
        })
        .collect();
    Ok(services)
}

/// The `run` flags that give the agent maps big enough for `services` on a
/// node with `node_addresses` addresses. Only capacities above the agent's
/// defaults are raised, so up to them the bench measures what users run, and
/// past them (N=30,000 needs more Maglev tables than the default 16,384) the
/// agent is sized as an operator would size it. An eighth more than the exact
/// need leaves room for the endpoint change.
pub fn agent_map_size_flags(services: &[Service], node_addresses: usize) -> Vec<String> {
    let frontends_of = |s: &Service| 1 + usize::from(s.node_port.is_some()) * node_addresses;
    let frontends: usize = services.iter().map(frontends_of).sum();
    let slots: usize = services.iter().map(|s| frontends_of(s) * (1 + s.endpoints.len())).sum();
    let backends = services.iter().flat_map(|s| &s.endpoints).collect::<HashSet<_>>().len();
    let needs = [
        ("--services-map-size", slots, maps::SERVICES_MAX_ENTRIES),
        ("--backends-map-size", backends, maps::BACKENDS_MAX_ENTRIES),
        ("--rev-nat-map-size", frontends, maps::REV_NAT_MAX_ENTRIES),
        ("--maglev-tables", frontends, maps::MAGLEV_MAX_TABLES),
    ];
    needs
        .into_iter()
        .filter_map(|(flag, need, default)| {
            let size = u32::try_from(need + need / 8).unwrap_or(u32::MAX);
            (size > default).then(|| [flag.to_string(), size.to_string()])
        })
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_service_is_measured_and_node_ports_stay_in_range() {
        let pods = [Ipv4Addr::new(10, 244, 1, 2)];
        let services = generate(10_000, &pods, None).unwrap();
        let last = services.last().unwrap();
        assert_eq!((last.node_port, last.endpoints.as_slice()), (Some(MEASURED_NODE_PORT), &pods[..]));
        let ports: Vec<u16> = services.iter().filter_map(|s| s.node_port).collect();
        assert_eq!(ports.len(), 2768);
        assert!(ports.iter().all(|p| (30000..=32767).contains(p)));
        let unique: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(unique.len(), ports.len());
        assert_eq!(services[9_999].cluster_ip, Ipv4Addr::new(10, 96, 39, 25));
        assert!(services[..9_999].iter().all(|s| (2..=3).contains(&s.endpoints.len())));
        assert!(generate(1, &pods, None).unwrap()[0].node_port == Some(MEASURED_NODE_PORT));
    }

    #[test]
    fn a_fixed_endpoint_count_gives_every_filler_service_that_many_distinct_addresses() {
        let pods = [Ipv4Addr::new(10, 244, 1, 2)];
        let services = generate(10_000, &pods, Some(10)).unwrap();
        assert!(services[..9_999].iter().all(|s| s.endpoints.len() == 10));
        let addresses: std::collections::HashSet<_> = services[..9_999].iter().flat_map(|s| &s.endpoints).collect();
        assert_eq!(addresses.len(), 99_990);
        assert_eq!(services[9_999].endpoints, pods);
        assert!(generate(65_000, &pods, Some(12)).is_ok());
        assert!(generate(65_000, &pods, Some(13)).is_err(), "past 10.255.255.255");
        assert!(generate(10, &pods, Some(0)).is_err());
    }

    #[test]
    fn map_flags_raise_only_the_capacities_the_services_outgrow() {
        let pods = [Ipv4Addr::new(10, 244, 1, 2)];
        let flags = |n, addresses| agent_map_size_flags(&generate(n, &pods, None).unwrap(), addresses);
        assert!(flags(10_000, 1).is_empty());
        // 30,000 ClusterIP frontends and 2,768 NodePort ones: 32,768 tables,
        // and an eighth more is 36,864; everything else fits the defaults.
        assert_eq!(flags(30_000, 1), ["--maglev-tables", "36864"]);
        // Two node addresses double the NodePort frontends.
        assert_eq!(flags(30_000, 2), ["--maglev-tables", "39978"]);
        // 65,000 Services outgrow every one of the four.
        let big = flags(65_000, 1);
        let named: Vec<&str> = big.iter().step_by(2).map(String::as_str).collect();
        assert_eq!(named, ["--services-map-size", "--backends-map-size", "--rev-nat-map-size", "--maglev-tables"]);
    }
}
