//! An in-memory `MapWriter`, behaving like the kernel maps where it matters to
//! the planning code: bounded capacity and errors on deleting missing keys.

use std::collections::BTreeSet;

use anyhow::{anyhow, bail};
use ingress_common::maps::{MaglevKey, ServiceKey, maglev_rows};

use super::sizes::MapSizes;
use super::{FlowsOfLeaving, MapContents, MapOp, MapWriter};

/// Maximum entries per map; `None` is unbounded. Independent of `sizes`,
/// so a test can make a write fail that the plan expected to fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    pub services: Option<usize>,
    pub backends: Option<usize>,
    pub rev_nat: Option<usize>,
    /// In rows.
    pub maglev: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct FakeMaps {
    pub contents: MapContents,
    pub capacity: Capacity,
    /// What the plan is told.
    pub sizes: MapSizes,
    /// Every op applied successfully, in order.
    pub log: Vec<MapOp>,
    /// The backends tracked TCP flows use (there is no conntrack here).
    pub tcp_flows_to: BTreeSet<u32>,
}

impl FakeMaps {
    /// Checks what a packet could observe at this instant: every header's
    /// slots exist, every existing slot names an existing backend, every
    /// header's rev-NAT entry exists, and so do the rows of its Maglev table
    /// and the header's slots they name.
    pub fn check_consistent(&self) -> Result<(), String> {
        let maps = &self.contents;
        for (key, value) in &maps.services {
            if key.slot == 0 && value.backend_id != 0 {
                for row in 0..maglev_rows(self.sizes.maglev_table_size) {
                    let row_key = MaglevKey { table: value.backend_id, row };
                    let Some(entries) = maps.maglev.get(&row_key) else {
                        return Err(format!("header {key:?} names table {} without {row_key:?}", value.backend_id));
                    };
                    let missing = |slot: &&u16| **slot != 0 && !maps.services.contains_key(&ServiceKey { slot: **slot, ..*key });
                    if let Some(slot) = entries.slots.iter().find(missing) {
                        return Err(format!("{row_key:?} names slot {slot}, missing under header {key:?}"));
                    }
                }
            }
            if key.slot == 0 {
                if !maps.rev_nat.contains_key(&value.rev_nat_id) {
                    return Err(format!("header {key:?} names missing rev-NAT {}", value.rev_nat_id));
                }
                if let Some(slot) =
                    (1..=value.count).find(|&slot| !maps.services.contains_key(&ServiceKey { slot, ..*key }))
                {
                    return Err(format!(
                        "header {key:?} announces {} slots, slot {slot} is missing",
                        value.count
                    ));
                }
            } else if !maps.backends.contains_key(&value.backend_id) {
                return Err(format!("slot {key:?} names missing backend {}", value.backend_id));
            }
        }
        Ok(())
    }
}

fn insert<K: Ord, V>(
    map: &mut std::collections::BTreeMap<K, V>,
    capacity: Option<usize>,
    key: K,
    value: V,
) -> anyhow::Result<()> {
    if !map.contains_key(&key) && capacity.is_some_and(|capacity| map.len() >= capacity) {
        bail!("map full ({} entries)", map.len());
    }
    map.insert(key, value);
    Ok(())
}

impl MapWriter for FakeMaps {
    fn read(&self) -> anyhow::Result<MapContents> {
        Ok(self.contents.clone())
    }

    fn sizes(&self) -> MapSizes {
        self.sizes
    }

    fn apply(&mut self, op: &MapOp) -> anyhow::Result<()> {
        let maps = &mut self.contents;
        let missing = || anyhow!("{op:?}: no such key");
        match op {
            MapOp::PutBackend(id, value) => insert(&mut maps.backends, self.capacity.backends, *id, *value)?,
            MapOp::PutRevNat(id, value) => insert(&mut maps.rev_nat, self.capacity.rev_nat, *id, *value)?,
            MapOp::PutService(key, value) => insert(&mut maps.services, self.capacity.services, *key, *value)?,
            MapOp::DeleteService(key) => maps.services.remove(key).map(drop).ok_or_else(missing)?,
            MapOp::DeleteBackend(id) => maps.backends.remove(id).map(drop).ok_or_else(missing)?,
            MapOp::DeleteRevNat(id) => maps.rev_nat.remove(id).map(drop).ok_or_else(missing)?,
            MapOp::PutSourceRange(entry) => drop(maps.source_ranges.insert(*entry)),
            MapOp::DeleteSourceRange(entry) => maps.source_ranges.remove(entry).then_some(()).ok_or_else(missing)?,
            MapOp::PutMaglevRow(key, row) => insert(&mut maps.maglev, self.capacity.maglev, *key, row.clone())?,
            // Stricter than the array map, which zeroes any row and succeeds:
            // a plan that removes a row it never wrote is a planner fault.
            MapOp::DeleteMaglevRow(key) => maps.maglev.remove(key).map(drop).ok_or_else(missing)?,
        }
        self.log.push(op.clone());
        Ok(())
    }

    fn release_backends(&mut self, leaving: &BTreeSet<u32>) -> anyhow::Result<FlowsOfLeaving> {
        Ok(FlowsOfLeaving { held: leaving.intersection(&self.tcp_flows_to).copied().collect(), udp_flushed: 0 })
    }
}

/// Test notation for desired states: `("10.96.0.10:80/TCP", &["10.244.1.2:8080"])`,
/// IPv6 bracketed (`"[fd00::a]:80/TCP"`, `"[fd00:244::2]:8080"`); a backend suffix `*` means local, `~` terminating; a frontend prefix
/// `name=` sets the Service's name (else "test").
#[cfg(test)]
pub(crate) type Spec<'a> = &'a [(&'a str, &'a [&'a str])];

#[cfg(test)]
pub(crate) fn desired_state(spec: Spec) -> crate::model::DesiredState {
    use crate::model::*;
    let mut desired = DesiredState::default();
    for (frontend, backends) in spec {
        let (name, frontend) = frontend.split_once('=').unwrap_or(("test", frontend));
        let (socket, protocol) = frontend.split_once('/').unwrap();
        let socket: std::net::SocketAddr = socket.parse().unwrap();
        let protocol = if protocol == "UDP" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let frontend = Frontend {
            addr: socket.ip(),
            port: socket.port(),
            protocol,
        };
        let mut backends: Vec<Backend> = backends
            .iter()
            .map(|text| {
                let socket: std::net::SocketAddr = text.trim_end_matches(['*', '~']).parse().unwrap();
                let state = if text.contains('~') {
                    BackendState::Terminating
                } else {
                    BackendState::Active
                };
                let addr = BackendAddr {
                    addr: socket.ip(),
                    port: socket.port(),
                };
                Backend {
                    addr,
                    state,
                    local: text.contains('*'),
                }
            })
            .collect();
        backends.sort();
        let service = ServicePortRef {
            namespace: "default".into(),
            name: name.into(),
            port_name: String::new(),
        };
        desired.frontends.insert(frontend, FrontendState { service, backends, ..FrontendState::default() });
    }
    desired
}

/// The inverse of `desired_state`'s notation, one line per frontend.
#[cfg(test)]
pub(crate) fn render(desired: &crate::model::DesiredState) -> Vec<String> {
    desired
        .frontends
        .iter()
        .map(|(frontend, state)| {
            let backends: Vec<_> = state
                .backends
                .iter()
                .map(|b| {
                    let terminating = if b.state == crate::model::BackendState::Terminating {
                        "~"
                    } else {
                        ""
                    };
                    format!("{}{}{terminating}", b.addr, if b.local { "*" } else { "" })
                })
                .collect();
            let backends = if backends.is_empty() {
                "none".to_owned()
            } else {
                backends.join(" ")
            };
            format!("{frontend} {} -> {backends}", state.service)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_common::maps::Backend;

    #[test]
    fn capacity_and_missing_keys() {
        let mut maps = FakeMaps {
            capacity: Capacity {
                backends: Some(1),
                ..Capacity::default()
            },
            ..FakeMaps::default()
        };
        let backend = Backend::default();
        let cases = [
            (MapOp::PutBackend(1, backend), true),
            (MapOp::PutBackend(1, Backend { port: 1, ..backend }), true),
            (MapOp::PutBackend(2, backend), false),
            (MapOp::DeleteBackend(2), false),
            (MapOp::DeleteBackend(1), true),
        ];
        for (op, ok) in &cases {
            assert_eq!(maps.apply(op).is_ok(), *ok, "{op:?}");
        }
        assert_eq!(maps.log.len(), 3);
        assert!(maps.contents.backends.is_empty());
    }
}
