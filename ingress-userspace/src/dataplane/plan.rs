//! From the desired model to map contents, and back for the state dump.
//!
//! Ids matter beyond the maps: conntrack entries store backend and rev-NAT
//! ids, so a plan keeps every id an object already has. An established flow
//! then keeps its backend across any change that does not remove it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::hash::Hash;

use ingress_common::maps::{
    SCOPE_EXTERNAL, SCOPE_LOCAL, SERVICE_FLAG_LOCAL_EXTERNAL, SERVICE_FLAG_LOCAL_INTERNAL, SERVICE_FLAG_SOURCE_RANGES,
    ServiceKey, ServiceValue,
};

use super::{MapContents, abi};
use crate::model::{Backend, BackendAddr, BackendState, DesiredState, Frontend, FrontendState, LocalOnly};

/// Hands out ids: the one an object already has, else the smallest id >= 1
/// that neither the current maps nor this plan use. An id being removed is not
/// recycled in the same plan: the flows that still name it must find no
/// backend (and be re-balanced), not silently a different one.
struct Ids<K> {
    current: HashMap<K, u32>,
    taken: BTreeSet<u32>,
    assigned: HashMap<K, u32>,
    next: u32,
}

impl<K: Hash + Eq + Copy> Ids<K> {
    /// `current` in ascending id order: if the maps hold an object twice, it
    /// keeps its smallest id and the other becomes garbage for the diff.
    fn new(current: impl Iterator<Item = (K, u32)>) -> Self {
        let mut ids = Ids {
            current: HashMap::new(),
            taken: BTreeSet::new(),
            assigned: HashMap::new(),
            next: 1,
        };
        for (key, id) in current {
            ids.current.entry(key).or_insert(id);
            ids.taken.insert(id);
        }
        ids
    }

    fn get(&mut self, key: K) -> u32 {
        if let Some(&id) = self.assigned.get(&key) {
            return id;
        }
        let id = match self.current.get(&key) {
            Some(&id) => id,
            None => {
                while self.taken.contains(&self.next) {
                    self.next += 1;
                }
                self.next
            }
        };
        self.taken.insert(id);
        self.assigned.insert(key, id);
        id
    }
}

/// The map contents that express `desired`, reusing the ids of `current`.
pub fn plan(desired: &DesiredState, current: &MapContents) -> MapContents {
    let mut backend_ids = Ids::new(
        current
            .backends
            .iter()
            .map(|(id, value)| (abi::backend_addr_of(value), *id)),
    );
    let mut rev_nat_ids = Ids::new(current.rev_nat.iter().map(|(id, value)| (abi::rev_nat_of(value), *id)));
    let mut planned = MapContents::default();
    let mut backends: BTreeMap<u32, Backend> = BTreeMap::new();

    for (frontend, state) in &desired.frontends {
        // TCP and UDP on one address and port rewrite replies identically.
        let rev_nat_id = rev_nat_ids.get((frontend.addr, frontend.port));
        planned
            .rev_nat
            .insert(rev_nat_id, abi::rev_nat_value(frontend.addr, frontend.port));

        // The header's count is a u16; no Service comes near 65535 endpoints.
        let count = u16::try_from(state.backends.len()).unwrap_or(u16::MAX);
        let mut flags = local_flags(state.local_only);
        if let Some(ranges) = &state.source_ranges {
            flags |= SERVICE_FLAG_SOURCE_RANGES;
            let entries = ranges.iter().map(|range| abi::source_range_entry(frontend, rev_nat_id, range));
            planned.source_ranges.extend(entries);
        }
        let header = ServiceValue {
            count,
            flags,
            rev_nat_id,
            affinity_timeout_s: state.affinity_timeout_s,
            ..ServiceValue::default()
        };
        planned.services.insert(abi::service_key(frontend, 0), header);
        for (slot, backend) in (1..=count).zip(&state.backends) {
            let backend_id = backend_ids.get(backend.addr);
            let value = ServiceValue {
                backend_id,
                ..ServiceValue::default()
            };
            planned.services.insert(abi::service_key(frontend, slot), value);
            // One pod address in several frontends is one backend: if the
            // frontends disagree on its state, Active wins.
            backends
                .entry(backend_id)
                .and_modify(|known| known.state = known.state.min(backend.state))
                .or_insert(*backend);
        }
    }
    for (frontend, state) in &desired.frontends {
        plan_local_scope(frontend, state, &mut backend_ids, &mut planned);
    }
    planned.backends = backends
        .iter()
        .map(|(id, backend)| (*id, abi::backend_value(backend)))
        .collect();
    planned
}

/// The header bits telling the programs which clients use the local scope.
fn local_flags(local_only: LocalOnly) -> u16 {
    match local_only {
        LocalOnly::Nobody => 0,
        LocalOnly::ExternalClients => SERVICE_FLAG_LOCAL_EXTERNAL,
        LocalOnly::AllClients => SERVICE_FLAG_LOCAL_EXTERNAL | SERVICE_FLAG_LOCAL_INTERNAL,
    }
}

/// A frontend with a Local policy also gets `SCOPE_LOCAL` slots over only
/// this node's backends, under a header of their own (same rev-NAT id and
/// affinity as the `SCOPE_EXTERNAL` one, the local count). Those backends are
/// a subset of the frontend's, so they already have their ids.
fn plan_local_scope(
    frontend: &Frontend,
    state: &FrontendState,
    backend_ids: &mut Ids<BackendAddr>,
    planned: &mut MapContents,
) {
    if state.local_only == LocalOnly::Nobody {
        return;
    }
    let local_key = |slot| ServiceKey { scope: SCOPE_LOCAL, ..abi::service_key(frontend, slot) };
    let Some(&all) = planned.services.get(&abi::service_key(frontend, 0)) else { return };
    let local: Vec<u32> = state.backends.iter().filter(|b| b.local).map(|b| backend_ids.get(b.addr)).collect();
    let count = u16::try_from(local.len()).unwrap_or(u16::MAX);
    planned.services.insert(local_key(0), ServiceValue { count, flags: 0, ..all });
    for (slot, backend_id) in (1..=count).zip(local) {
        let value = ServiceValue { backend_id, ..ServiceValue::default() };
        planned.services.insert(local_key(slot), value);
    }
}

/// One programmed frontend as read back from the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammedFrontend {
    pub frontend: Frontend,
    pub rev_nat_id: u32,
    /// `(backend id, backend)` in slot order; the backend is `None` when the
    /// slot or the backend it names is missing (an inconsistency worth seeing).
    pub backends: Vec<(u32, Option<Backend>)>,
}

/// The maps' frontends in address order, for humans.
pub fn describe(contents: &MapContents) -> Vec<ProgrammedFrontend> {
    let mut frontends: Vec<_> = contents
        .services
        .iter()
        .filter(|(key, _)| key.slot == 0 && key.scope == SCOPE_EXTERNAL)
        .filter_map(|(key, header)| {
            let backends = (1..=header.count)
                .map(|slot| {
                    let id = contents
                        .services
                        .get(&ServiceKey { slot, ..*key })
                        .map_or(0, |value| value.backend_id);
                    (id, contents.backends.get(&id).and_then(abi::backend_of))
                })
                .collect();
            Some(ProgrammedFrontend {
                frontend: abi::frontend_of(key)?,
                rev_nat_id: header.rev_nat_id,
                backends,
            })
        })
        .collect();
    frontends.sort_by_key(|programmed| programmed.frontend);
    frontends
}

impl fmt::Display for ProgrammedFrontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} rev-nat {} ->", self.frontend, self.rev_nat_id)?;
        if self.backends.is_empty() {
            return f.write_str(" no backend (dropped)");
        }
        for (id, backend) in &self.backends {
            match backend {
                Some(backend) => {
                    write!(f, " #{id} {}", backend.addr)?;
                    if backend.state == BackendState::Terminating {
                        f.write_str(" terminating")?;
                    }
                    if backend.local {
                        f.write_str(" local")?;
                    }
                }
                None => write!(f, " #{id} MISSING")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{Spec, desired_state};

    /// `frontend -> [(backend, id)]`, and rev-NAT ids, of a plan.
    fn ids(contents: &MapContents) -> Vec<String> {
        describe(contents)
            .iter()
            .map(|p| {
                let slots: Vec<_> = p
                    .backends
                    .iter()
                    .map(|(id, b)| format!("{}={id}", b.unwrap().addr))
                    .collect();
                format!("{} r{} [{}]", p.frontend, p.rev_nat_id, slots.join(" "))
            })
            .collect()
    }

    #[test]
    fn ids_are_reused_and_new_ones_are_the_smallest_free() {
        let cases: &[(&str, Spec, &[&str])] = &[
            (
                "first plan numbers from 1; TCP and UDP share a rev-NAT id",
                &[
                    ("10.0.0.1:53/UDP", &["10.1.0.1:53", "10.1.0.2:53"]),
                    ("10.0.0.1:53/TCP", &["10.1.0.2:53"]),
                ],
                &[
                    "10.0.0.1:53/TCP r1 [10.1.0.2:53=1]",
                    "10.0.0.1:53/UDP r1 [10.1.0.1:53=2 10.1.0.2:53=1]",
                ],
            ),
            (
                "an added backend and frontend keep the existing ids",
                &[
                    ("10.0.0.1:53/UDP", &["10.1.0.1:53", "10.1.0.2:53", "10.1.0.3:53"]),
                    ("10.0.0.1:53/TCP", &["10.1.0.2:53"]),
                    ("10.0.0.2:80/TCP", &["10.1.0.1:53"]),
                ],
                &[
                    "10.0.0.1:53/TCP r1 [10.1.0.2:53=1]",
                    "10.0.0.1:53/UDP r1 [10.1.0.1:53=2 10.1.0.2:53=1 10.1.0.3:53=3]",
                    "10.0.0.2:80/TCP r2 [10.1.0.1:53=2]",
                ],
            ),
            (
                "ids being removed are not recycled in the same plan",
                &[("10.0.0.2:80/TCP", &["10.1.0.3:53", "10.1.0.4:53"])],
                &["10.0.0.2:80/TCP r2 [10.1.0.3:53=3 10.1.0.4:53=4]"],
            ),
            (
                "once removed, the smallest free ids are reused",
                &[
                    ("10.0.0.2:80/TCP", &["10.1.0.3:53", "10.1.0.5:53"]),
                    ("10.0.0.3:80/TCP", &["10.1.0.6:53"]),
                ],
                &[
                    "10.0.0.2:80/TCP r2 [10.1.0.3:53=3 10.1.0.5:53=1]",
                    "10.0.0.3:80/TCP r1 [10.1.0.6:53=2]",
                ],
            ),
        ];
        let mut current = MapContents::default();
        for (name, desired, expected) in cases {
            let planned = plan(&desired_state(desired), &current);
            assert_eq!(ids(&planned), *expected, "{name}");
            current = planned;
        }
    }

    #[test]
    fn frontend_without_backends_has_a_header_with_count_zero() {
        let planned = plan(&desired_state(&[("10.0.0.1:80/TCP", &[])]), &MapContents::default());
        assert_eq!(planned.services.len(), 1);
        let (key, header) = planned.services.iter().next().unwrap();
        assert_eq!((key.slot, header.count, header.rev_nat_id), (0, 0, 1));
        assert!(planned.backends.is_empty());
        assert_eq!(
            describe(&planned)[0].to_string(),
            "10.0.0.1:80/TCP rev-nat 1 -> no backend (dropped)"
        );
    }

    #[test]
    fn describe_reads_back_what_plan_wrote() {
        let desired = desired_state(&[("10.0.0.1:80/TCP", &["10.1.0.1:8080*", "10.1.0.2:8080~"])]);
        let planned = plan(&desired, &MapContents::default());
        let described = describe(&planned);
        let state = desired.frontends.values().next().unwrap();
        let backends: Vec<_> = described[0].backends.iter().map(|(_, b)| b.unwrap()).collect();
        assert_eq!(backends, state.backends);
        assert_eq!(
            described[0].to_string(),
            "10.0.0.1:80/TCP rev-nat 1 -> #1 10.1.0.1:8080 local #2 10.1.0.2:8080 terminating"
        );

        let mut broken = planned;
        broken.backends.remove(&2);
        assert_eq!(describe(&broken)[0].backends[1], (2, None));
    }

    #[test]
    fn a_local_policy_adds_slots_over_the_local_backends_only() {
        let mut desired = desired_state(&[
            ("10.0.0.1:80/TCP", &["10.1.0.1:80*", "10.1.0.2:80", "10.1.0.3:80*"]),
            ("10.0.0.2:80/TCP", &["10.1.0.2:80"]),
            ("10.0.0.3:80/TCP", &["10.1.0.1:80*"]),
        ]);
        let policies = [LocalOnly::ExternalClients, LocalOnly::AllClients, LocalOnly::Nobody];
        for (state, policy) in desired.frontends.values_mut().zip(policies) {
            state.local_only = policy;
        }
        let planned = plan(&desired, &MapContents::default());
        // "frontend scope: flags count [backends]" for every header.
        let scopes: Vec<String> = planned
            .services
            .iter()
            .filter(|(key, _)| key.slot == 0)
            .map(|(key, header)| {
                let backends: Vec<String> = (1..=header.count)
                    .map(|slot| {
                        let id = planned.services[&ServiceKey { slot, ..*key }].backend_id;
                        abi::backend_addr_of(&planned.backends[&id]).to_string()
                    })
                    .collect();
                let frontend = abi::frontend_of(key).unwrap();
                let rev_nat = header.rev_nat_id;
                format!("{frontend} s{} f{} r{rev_nat} [{}]", key.scope, header.flags, backends.join(" "))
            })
            .collect();
        assert_eq!(
            scopes,
            [
                "10.0.0.1:80/TCP s0 f1 r1 [10.1.0.1:80 10.1.0.2:80 10.1.0.3:80]",
                "10.0.0.1:80/TCP s1 f0 r1 [10.1.0.1:80 10.1.0.3:80]",
                "10.0.0.2:80/TCP s0 f3 r2 [10.1.0.2:80]",
                "10.0.0.2:80/TCP s1 f0 r2 []",
                "10.0.0.3:80/TCP s0 f0 r3 [10.1.0.1:80]",
            ]
        );
        // People see each frontend once.
        assert_eq!(describe(&planned).len(), 3);
    }
}
