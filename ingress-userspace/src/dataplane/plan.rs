//! From the desired model to map contents, and back for the state dump.
//!
//! Ids matter beyond the maps: conntrack entries store backend and rev-NAT
//! ids, so a plan keeps every id an object already has. An established flow
//! then keeps its backend across any change that does not remove it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use foldhash::{HashMap, HashMapExt};

use ingress_common::maps::{
    BACKENDS_MAP, MAGLEV_MAP, MaglevKey, REV_NAT_MAP, SCOPE_EXTERNAL, SCOPE_LOCAL,
    SERVICE_FLAG_LOCAL_EXTERNAL, SERVICE_FLAG_LOCAL_INTERNAL, SERVICE_FLAG_SOURCE_RANGES, SERVICES_MAP, ServiceKey,
    ServiceValue,
};

use super::ids::{IdIndex, IdStart, Ids};
use super::sizes::MapSizes;
use super::maglev::{self, SlotSet};
use super::{MapContents, abi};
use crate::model::{
    Backend, BackendAddr, BackendState, DesiredState, Frontend, FrontendState, LocalOnly, ServicePortRef,
};

/// A Service port the plan left out whole because one of its maps is full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeftOut {
    pub service: ServicePortRef,
    /// The first map (by name) its entries did not fit in.
    pub map: &'static str,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Everything planned: the union of `services`.
    pub contents: MapContents,
    /// Each planned Service port's own entries (with the backends and
    /// rev-NAT entries it names, which it may share with others), in order.
    pub services: Vec<(ServicePortRef, MapContents)>,
    /// In the order they were considered.
    pub left_out: Vec<LeftOut>,
}

/// The map contents that express `desired`, reusing the ids of `current`,
/// within `sizes`. Service ports are taken in name order (namespace, name,
/// port name), each with all its frontends or not at all: one that does not
/// fit is left out, and the later ones may still fit.
pub fn plan(desired: &DesiredState, current: &MapContents, sizes: &MapSizes) -> Plan {
    let by_service = by_service(desired);
    // The Maglev tables are the largest part of a plan, and each depends
    // only on its backends: computed once per backend set, on the other
    // CPUs while this thread plans everything else, then on this one too.
    let sets = by_service.values().flatten().map(|(_, state)| slot_set(state));
    let work = maglev::TableWork::new(sets, sizes.maglev_table_size);
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let index = IdIndex::of(current);
    let mut planner = Planner::new(&index, sizes);
    let mut left_out = Vec::new();
    let mut services = Vec::new();
    // The tables each planned Service port names, by its place in `services`.
    let mut unfilled = Vec::new();
    std::thread::scope(|scope| {
        for _ in 0..work.helpers(cpus) {
            scope.spawn(|| work.help());
        }
        for (service, frontends) in by_service {
            if let Some(map) = planner.full_map(&frontends) {
                left_out.push(LeftOut { service: service.clone(), map });
                continue;
            }
            services.push((service.clone(), planner.add_service(&frontends)));
            unfilled.extend(planner.unfilled.drain(..).map(|table| (services.len() - 1, table)));
        }
        work.help();
    });
    planner.maglev_tables = work.into_tables();
    for (part, table) in unfilled {
        planner.fill(table, &mut services[part].1);
    }
    let values: HashMap<u32, _> = planner.backends.iter().map(|(id, backend)| (*id, abi::backend_value(backend))).collect();
    for (_, part) in &mut services {
        for id in std::mem::take(&mut part.backends).into_keys() {
            part.backends.insert(id, values[&id]);
        }
    }
    let contents = MapContents::union(services.iter().map(|(_, part)| part));
    Plan { contents, services, left_out }
}

/// A Service port's frontends, in frontend order.
pub type ServiceFrontends<'a> = Vec<(&'a Frontend, &'a FrontendState)>;

/// `desired`'s frontends by Service port, in name order: the order plans
/// take them in.
pub fn by_service(desired: &DesiredState) -> BTreeMap<&ServicePortRef, ServiceFrontends<'_>> {
    let mut by_service: BTreeMap<&ServicePortRef, ServiceFrontends> = BTreeMap::new();
    for (frontend, state) in &desired.frontends {
        by_service.entry(&state.service).or_default().push((frontend, state));
    }
    by_service
}

/// The value each backend address gets when these Service ports (in name
/// order) name it: one pod address in several frontends is one backend; if
/// the frontends disagree on its state, Active wins; the first says whether
/// it is local. What [`plan`] writes when no Service port is left out.
pub fn backend_values<'a, 'b: 'a>(
    services: impl IntoIterator<Item = &'a ServiceFrontends<'b>>,
) -> HashMap<BackendAddr, Backend> {
    let mut values: HashMap<BackendAddr, Backend> = HashMap::new();
    for frontends in services {
        for (_, state) in frontends {
            for backend in state.backends.iter().take(slot_count(state)) {
                values
                    .entry(backend.addr)
                    .and_modify(|known| known.state = known.state.min(backend.state))
                    .or_insert(*backend);
            }
        }
    }
    values
}

/// Plans single Service ports on top of maps holding contents whose ids
/// `index` holds, giving the ids [`plan`] would give them: an object's
/// current id, else a free one. Used to re-plan only the Service ports that
/// changed: those that did not keep their entries, all of whose ids the
/// contents hold.
pub struct PartPlanner<'a> {
    planner: Planner<'a>,
}

impl<'a> PartPlanner<'a> {
    pub fn new(index: &'a IdIndex, sizes: &MapSizes) -> PartPlanner<'a> {
        PartPlanner { planner: Planner::new(index, sizes) }
    }

    /// A Service port's entries; its backends' values are placeholders (see
    /// [`backend_values`] and [`PartPlanner::backend_id`]).
    pub fn plan_service(&mut self, frontends: &[(&Frontend, &FrontendState)]) -> MapContents {
        let mut part = self.planner.add_service(frontends);
        for table in std::mem::take(&mut self.planner.unfilled) {
            self.planner.fill(table, &mut part);
        }
        part
    }

    /// The id given to a backend address planned here.
    pub fn backend_id(&self, addr: &BackendAddr) -> Option<u32> {
        self.planner.backend_ids.assigned().get(addr).copied()
    }

    /// The addresses of the backends planned here, by id.
    pub fn planned_backends(&self) -> impl Iterator<Item = (u32, BackendAddr)> + '_ {
        self.planner.backend_ids.assigned().iter().map(|(addr, id)| (*id, *addr))
    }
}

struct Planner<'a> {
    backend_ids: Ids<'a, BackendAddr>,
    rev_nat_ids: Ids<'a, (IpAddr, u16)>,
    table_ids: Ids<'a, Frontend>,
    sizes: MapSizes,
    /// `lb_services` entries planned so far.
    planned_services: usize,
    backends: HashMap<u32, Backend>,
    /// Maglev tables planned so far.
    tables: u32,
    /// Maglev tables' rows by slot set: computed beside the plan, or as filled.
    maglev_tables: maglev::Tables,
    /// Tables planned since the last look, whose rows are not planned yet.
    unfilled: Vec<UnfilledTable>,
}

/// A Maglev table a frontend's header names, before its rows are known.
struct UnfilledTable {
    table: u32,
    slots: SlotSet,
}

impl<'a> Planner<'a> {
    fn new(index: &'a IdIndex, sizes: &MapSizes) -> Planner<'a> {
        Planner {
            backend_ids: Ids::new(IdStart::Hashed, &index.backends),
            rev_nat_ids: Ids::new(IdStart::Smallest, &index.rev_nat),
            table_ids: Ids::new(IdStart::Smallest, &index.tables),
            sizes: *sizes,
            planned_services: 0,
            backends: HashMap::default(),
            tables: 0,
            maglev_tables: maglev::Tables::default(),
            unfilled: Vec::new(),
        }
    }

    /// The first map that cannot take all of these frontends' entries on top
    /// of what is planned already, if any.
    fn full_map(&self, frontends: &[(&Frontend, &FrontendState)]) -> Option<&'static str> {
        // Every address and rev-NAT frontend planned so far has its id.
        let (planned_addrs, planned_rev_nat) = (self.backend_ids.assigned(), self.rev_nat_ids.assigned());
        let services: usize = frontends.iter().map(|(_, state)| 1 + slot_count(state) + local_scope_entries(state)).sum();
        let over = |used: usize, more: usize, capacity: u32| used + more > capacity as usize;
        let sizes = &self.sizes;
        // Every map has room for the most these frontends could add (each
        // address and table new): the common case, decided without the
        // sets below.
        let most_backends = frontends.iter().map(|(_, state)| state.backends.len()).sum();
        if !over(self.planned_services, services, sizes.services)
            && !over(planned_addrs.len(), most_backends, sizes.backends)
            && !over(planned_rev_nat.len(), frontends.len(), sizes.rev_nat)
            && !over(self.tables as usize, frontends.len(), sizes.maglev_tables)
        {
            return None;
        }
        let mut new_backends = BTreeSet::new();
        let mut new_rev_nat = BTreeSet::new();
        let mut table_sets = Vec::new();
        for (frontend, state) in frontends {
            let set = slot_set(state);
            if !set.is_empty() && !table_sets.contains(&set) {
                table_sets.push(set);
            }
            new_rev_nat.extend(Some((frontend.addr, frontend.port)).filter(|pair| !planned_rev_nat.contains_key(pair)));
            new_backends.extend(state.backends.iter().map(|b| b.addr).filter(|addr| !planned_addrs.contains_key(addr)));
        }
        [
            (SERVICES_MAP, over(self.planned_services, services, sizes.services)),
            (BACKENDS_MAP, over(planned_addrs.len(), new_backends.len(), sizes.backends)),
            (REV_NAT_MAP, over(planned_rev_nat.len(), new_rev_nat.len(), sizes.rev_nat)),
            (MAGLEV_MAP, over(self.tables as usize, table_sets.len(), sizes.maglev_tables)),
        ]
        .into_iter()
        .find_map(|(map, full)| full.then_some(map))
    }

    /// Plans a Service port's frontends and returns their entries; the
    /// backends there are placeholders until every Service port is planned.
    fn add_service(&mut self, frontends: &[(&Frontend, &FrontendState)]) -> MapContents {
        let mut part = MapContents::default();
        let mut tables = PortTables::new();
        for (frontend, state) in frontends {
            let mut entries = MapContents::default();
            self.add_entries(frontend, state, &mut tables, &mut entries);
            self.planned_services += entries.services.len();
            // Most Service ports have one frontend: their part is its entries.
            if part == MapContents::default() {
                part = entries;
            } else {
                part.overlay(&entries);
            }
        }
        part
    }

    fn add_entries(&mut self, frontend: &Frontend, state: &FrontendState, tables: &mut PortTables, entries: &mut MapContents) {
        // TCP and UDP on one address and port rewrite replies identically.
        let rev_nat_id = self.rev_nat_ids.get((frontend.addr, frontend.port));
        entries.rev_nat.insert(rev_nat_id, abi::rev_nat_value(frontend.addr, frontend.port));

        let count = slot_count(state) as u16;
        let mut ids = BTreeMap::new();
        for (slot, backend) in (1..=count).zip(&state.backends) {
            let backend_id = self.backend_ids.get(backend.addr);
            ids.insert(backend.addr, backend_id);
            entries.backends.insert(backend_id, ingress_common::maps::Backend::default());
            let value = ServiceValue { backend_id, ..ServiceValue::default() };
            entries.services.insert(abi::service_key(frontend, slot), value);
            // One pod address in several frontends is one backend: if the
            // frontends disagree on its state, Active wins.
            self.backends
                .entry(backend_id)
                .and_modify(|known| known.state = known.state.min(backend.state))
                .or_insert(*backend);
        }
        let slots = slot_set(state);
        let table = if slots.is_empty() { 0 } else { self.add_table(frontend, slots, tables) };
        let mut flags = local_flags(state.local_only);
        if let Some(ranges) = &state.source_ranges {
            flags |= SERVICE_FLAG_SOURCE_RANGES;
            let ranges = ranges.iter().map(|range| abi::source_range_entry(frontend, rev_nat_id, range));
            entries.source_ranges.extend(ranges);
        }
        let header = ServiceValue {
            backend_id: table,
            count,
            flags,
            rev_nat_id,
            affinity_timeout_s: state.affinity_timeout_s,
        };
        entries.services.insert(abi::service_key(frontend, 0), header);
        plan_local_scope(frontend, state, &header, &ids, entries);
    }

    /// The id of the Maglev table over `slots`: one of `tables`, or a new
    /// one for `frontend`, left in `unfilled` until [`Planner::fill`] plans
    /// its rows.
    fn add_table(&mut self, frontend: &Frontend, slots: SlotSet, tables: &mut PortTables) -> u32 {
        if let Some((_, table)) = tables.iter().find(|(known, _)| *known == slots) {
            return *table;
        }
        let table = self.table_ids.get(*frontend);
        tables.push((slots.clone(), table));
        self.tables += 1;
        self.unfilled.push(UnfilledTable { table, slots });
        table
    }

    /// Plans `table`'s rows into `part`, computing them unless known.
    fn fill(&mut self, table: UnfilledTable, part: &mut MapContents) {
        let size = self.sizes.maglev_table_size;
        let rows = self.maglev_tables.entry(table.slots).or_insert_with_key(|slots| maglev::rows(slots, size));
        for (row, value) in (0..).zip(rows.iter()) {
            part.maglev.insert(MaglevKey { table: table.table, row }, value.clone());
        }
    }
}

/// The Maglev tables of a Service port's frontends planned so far, by the
/// backends they spread over and the slot of each. Frontends of a Service
/// port over the same backends in the same slots (its ClusterIP, NodePorts,
/// load balancer addresses) share one table: the table depends only on
/// those, and one copy instead of one per frontend is fewer rows to
/// compute, write and hold.
type PortTables = Vec<(SlotSet, u32)>;

/// The header bits telling the programs which clients use the local scope.
fn local_flags(local_only: LocalOnly) -> u16 {
    match local_only {
        LocalOnly::Nobody => 0,
        LocalOnly::ExternalClients => SERVICE_FLAG_LOCAL_EXTERNAL,
        LocalOnly::AllClients => SERVICE_FLAG_LOCAL_EXTERNAL | SERVICE_FLAG_LOCAL_INTERNAL,
    }
}

/// `lb_services` entries of a frontend's local scope: a header and a slot
/// per local backend, none without a Local policy.
fn local_scope_entries(state: &FrontendState) -> usize {
    match state.local_only {
        LocalOnly::Nobody => 0,
        _ => 1 + state.backends.iter().filter(|backend| backend.local).count(),
    }
}

/// A frontend with a Local policy also gets `SCOPE_LOCAL` slots over only
/// this node's backends, under a header of their own (same rev-NAT id and
/// affinity as the `SCOPE_EXTERNAL` one, the local count, no flags). It names
/// no Maglev table: the table spans every backend, so the local scope picks
/// by hashing over its own slots.
fn plan_local_scope(
    frontend: &Frontend,
    state: &FrontendState,
    all: &ServiceValue,
    ids: &BTreeMap<BackendAddr, u32>,
    entries: &mut MapContents,
) {
    if state.local_only == LocalOnly::Nobody {
        return;
    }
    let local_key = |slot| ServiceKey { scope: SCOPE_LOCAL, ..abi::service_key(frontend, slot) };
    let local: Vec<u32> = state.backends.iter().filter(|b| b.local).filter_map(|b| ids.get(&b.addr).copied()).collect();
    let count = u16::try_from(local.len()).unwrap_or(u16::MAX);
    entries.services.insert(local_key(0), ServiceValue { backend_id: 0, count, flags: 0, ..*all });
    for (slot, backend_id) in (1..=count).zip(local) {
        let value = ServiceValue { backend_id, ..ServiceValue::default() };
        entries.services.insert(local_key(slot), value);
    }
}

/// The backends a frontend's Maglev table spreads over (those with a slot,
/// sorted, each once), each with its first slot: what the table's entries
/// name.
fn slot_set(state: &FrontendState) -> SlotSet {
    let mut slots = BTreeMap::new();
    for (slot, backend) in (1..).zip(state.backends.iter().take(slot_count(state))) {
        slots.entry(backend.addr).or_insert(slot);
    }
    slots.into_iter().collect()
}

/// Backend slots of a frontend: the header's count is a u16, and no Service
/// comes near 65535 endpoints.
fn slot_count(state: &FrontendState) -> usize {
    state.backends.len().min(usize::from(u16::MAX))
}

/// One programmed frontend as read back from the maps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgrammedFrontend {
    pub frontend: Frontend,
    pub rev_nat_id: u32,
    /// `(backend id, backend)` in slot order; the backend is `None` when the
    /// slot or the backend it names is missing (an inconsistency worth seeing).
    pub backends: Vec<(u32, Option<Backend>)>,
    /// The header's `SERVICE_FLAG_*` bits (Local traffic policies, source ranges).
    pub flags: u16,
    /// Backends on this node: the `SCOPE_LOCAL` header's count, 0 without one.
    pub local_count: u16,
    /// ClientIP affinity timeout in seconds, 0 = no affinity.
    pub affinity_timeout_s: u32,
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
            let local_header = contents.services.get(&ServiceKey { scope: SCOPE_LOCAL, ..*key });
            Some(ProgrammedFrontend {
                frontend: abi::frontend_of(key)?,
                rev_nat_id: header.rev_nat_id,
                backends,
                flags: header.flags,
                local_count: local_header.map_or(0, |local| local.count),
                affinity_timeout_s: header.affinity_timeout_s,
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
            return f.write_str(" no backend (rejected)");
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

/// The plan of a `desired_state` over `current`, with the default sizes.
/// [`describe`]'s lines without the backend ids, which are hashes (see
/// [`IdStart::Hashed`]): what tests compare.
#[cfg(test)]
pub(crate) fn described_without_backend_ids(contents: &MapContents) -> Vec<String> {
    describe(contents)
        .iter()
        .map(|frontend| frontend.to_string().split(' ').filter(|word| !word.starts_with('#')).collect::<Vec<_>>().join(" "))
        .collect()
}

#[cfg(test)]
pub(crate) fn planned(spec: super::fake::Spec, current: &MapContents) -> MapContents {
    plan(&super::fake::desired_state(spec), current, &MapSizes::default()).contents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{Spec, desired_state};

    /// `frontend rev-NAT id [backends]` of a plan.
    fn ids(contents: &MapContents) -> Vec<String> {
        describe(contents)
            .iter()
            .map(|p| {
                let slots: Vec<_> = p
                    .backends
                    .iter()
                    .map(|(_, b)| b.unwrap().addr.to_string())
                    .collect();
                format!("{} r{} [{}]", p.frontend, p.rev_nat_id, slots.join(" "))
            })
            .collect()
    }

    #[test]
    fn rev_nat_ids_are_kept_and_new_ones_are_the_smallest_free() {
        let cases: &[(&str, Spec, &[&str])] = &[
            (
                "first plan numbers from 1; TCP and UDP share a rev-NAT id",
                &[
                    ("10.0.0.1:53/UDP", &["10.1.0.1:53", "10.1.0.2:53"]),
                    ("10.0.0.1:53/TCP", &["10.1.0.2:53"]),
                ],
                &[
                    "10.0.0.1:53/TCP r1 [10.1.0.2:53]",
                    "10.0.0.1:53/UDP r1 [10.1.0.1:53 10.1.0.2:53]",
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
                    "10.0.0.1:53/TCP r1 [10.1.0.2:53]",
                    "10.0.0.1:53/UDP r1 [10.1.0.1:53 10.1.0.2:53 10.1.0.3:53]",
                    "10.0.0.2:80/TCP r2 [10.1.0.1:53]",
                ],
            ),
            (
                "rev-NAT ids being removed are not recycled in the same plan",
                &[("10.0.0.2:80/TCP", &["10.1.0.3:53", "10.1.0.4:53"])],
                &["10.0.0.2:80/TCP r2 [10.1.0.3:53 10.1.0.4:53]"],
            ),
            (
                "once removed, the smallest free rev-NAT ids are reused",
                &[
                    ("10.0.0.2:80/TCP", &["10.1.0.3:53", "10.1.0.5:53"]),
                    ("10.0.0.3:80/TCP", &["10.1.0.6:53"]),
                ],
                &[
                    "10.0.0.2:80/TCP r2 [10.1.0.3:53 10.1.0.5:53]",
                    "10.0.0.3:80/TCP r1 [10.1.0.6:53]",
                ],
            ),
        ];
        let mut current = MapContents::default();
        for (name, desired, expected) in cases {
            let planned = planned(desired, &current);
            assert_eq!(ids(&planned), *expected, "{name}");
            current = planned;
        }
    }

    #[test]
    fn backend_ids_are_kept_never_handed_to_another_backend_and_come_back() {
        let plans: [Spec; 4] = [
            &[("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80"])],
            &[("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"])],
            &[("10.0.0.1:80/TCP", &["10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"])],
            &[("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80", "10.1.0.4:80"])],
        ];
        let mut current = MapContents::default();
        let mut seen: HashMap<String, u32> = HashMap::new();
        for (step, desired) in plans.iter().enumerate() {
            current = planned(desired, &current);
            for (id, value) in &current.backends {
                let addr = abi::backend_addr_of(value).to_string();
                assert_ne!(*id, 0, "step {step}: 0 means no backend");
                // Kept while it exists, and given back when it returns.
                assert_eq!(*seen.entry(addr.clone()).or_insert(*id), *id, "step {step}: {addr} changed id");
                // Never the id another backend had, even one removed a plan ago.
                let others = seen.iter().filter(|(a, i)| **a != addr && **i == *id).count();
                assert_eq!(others, 0, "step {step}: {addr} got another backend's id {id}");
            }
        }
        assert_eq!(seen.len(), 4);
    }

    #[test]
    fn frontend_without_backends_has_a_header_with_count_zero() {
        let planned = planned(&[("10.0.0.1:80/TCP", &[])], &MapContents::default());
        assert_eq!(planned.services.len(), 1);
        let (key, header) = planned.services.iter().next().unwrap();
        assert_eq!((key.slot, header.count, header.rev_nat_id), (0, 0, 1));
        assert!(planned.backends.is_empty());
        assert_eq!(
            describe(&planned)[0].to_string(),
            "10.0.0.1:80/TCP rev-nat 1 -> no backend (rejected)"
        );
    }

    #[test]
    fn describe_reads_back_what_plan_wrote() {
        let desired = desired_state(&[("10.0.0.1:80/TCP", &["10.1.0.1:8080*", "10.1.0.2:8080~"])]);
        let planned = plan(&desired, &MapContents::default(), &MapSizes::default()).contents;
        let described = describe(&planned);
        let state = desired.frontends.values().next().unwrap();
        let backends: Vec<_> = described[0].backends.iter().map(|(_, b)| b.unwrap()).collect();
        assert_eq!(backends, state.backends);
        let ids: Vec<u32> = described[0].backends.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            described[0].to_string(),
            format!("10.0.0.1:80/TCP rev-nat 1 -> #{} 10.1.0.1:8080 local #{} 10.1.0.2:8080 terminating", ids[0], ids[1])
        );
        assert_eq!(
            described_without_backend_ids(&planned),
            ["10.0.0.1:80/TCP rev-nat 1 -> 10.1.0.1:8080 local 10.1.0.2:8080 terminating"]
        );
        assert!(ids.iter().all(|id| planned.backends.contains_key(id)));

        let mut broken = planned;
        broken.backends.remove(&ids[1]);
        assert_eq!(describe(&broken)[0].backends[1], (ids[1], None));
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
        let planned = plan(&desired, &MapContents::default(), &MapSizes::default()).contents;
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

    #[test]
    fn service_ports_that_do_not_fit_are_left_out_whole_in_name_order() {
        let spec: Spec = &[
            ("c=10.96.0.30:80/TCP", &["10.244.9.2:80"]),
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
            ("a=10.96.0.10:80/UDP", &["10.244.1.2:80"]),
            ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.4.2:80"]),
            ("d=10.96.0.40:80/TCP", &[]),
        ];
        type Case = (&'static str, fn(&mut MapSizes), &'static [(&'static str, &'static str)]);
        let cases: &[Case] = &[
            ("everything fits", |_| {}, &[]),
            // a: 5 entries, b: 3, c: 2, d: 1.
            ("services: b does not fit, c still does", |s| s.services = 7, &[("b", SERVICES_MAP), ("d", SERVICES_MAP)]),
            ("backends: a takes 2, b needs 2 more", |s| s.backends = 3, &[("b", BACKENDS_MAP)]),
            ("rev-NAT: a's TCP and UDP share one", |s| s.rev_nat = 1, &[("b", REV_NAT_MAP), ("c", REV_NAT_MAP), ("d", REV_NAT_MAP)]),
            ("Maglev: one table per frontend with endpoints", |s| s.maglev_tables = 3, &[("c", MAGLEV_MAP)]),
        ];
        for (name, shrink, expected) in cases {
            let mut sizes = MapSizes::default();
            shrink(&mut sizes);
            let plan = plan(&desired_state(spec), &MapContents::default(), &sizes);
            let left_out: Vec<_> = plan.left_out.iter().map(|l| (l.service.name.as_str(), l.map)).collect();
            assert_eq!(left_out, *expected, "{name}");
            let programmed: BTreeSet<String> = plan.services.iter().map(|(service, _)| service.name.clone()).collect();
            for service in ["a", "b", "c", "d"] {
                let out = expected.iter().any(|(left, _)| *left == service);
                assert_eq!(programmed.contains(service), !out, "{name}: {service}");
            }
            // Whole or nothing: a left-out Service has no header and no slot.
            let frontends: BTreeSet<String> = describe(&plan.contents).iter().map(|p| p.frontend.to_string()).collect();
            for (spec_frontend, _) in spec {
                let (service, frontend) = spec_frontend.split_once('=').unwrap();
                assert_eq!(frontends.contains(frontend), programmed.contains(service), "{name}: {frontend}");
            }
            let contents = &plan.contents;
            assert!(contents.services.len() <= sizes.services as usize, "{name}");
            assert!(contents.backends.len() <= sizes.backends as usize, "{name}");
            assert!(contents.rev_nat.len() <= sizes.rev_nat as usize, "{name}");
            assert!(contents.maglev.len() <= sizes.maglev_rows() as usize, "{name}");
        }
    }

    #[test]
    fn each_frontend_with_endpoints_names_a_full_maglev_table() {
        let planned = planned(
            &[("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"]), ("10.0.0.2:80/TCP", &[])],
            &MapContents::default(),
        );
        let sizes = MapSizes::default();
        let headers: Vec<_> = planned.services.iter().filter(|(key, _)| key.slot == 0).map(|(_, h)| h.backend_id).collect();
        assert_eq!(headers, [1, 0], "a table for the frontend with endpoints only");
        let entries: Vec<u16> = planned.maglev.values().flat_map(|row| row.slots).collect();
        assert_eq!(planned.maglev.len() as u32, sizes.rows_per_table());
        let (table, padding) = entries.split_at(sizes.maglev_table_size as usize);
        assert!(padding.iter().all(|slot| *slot == 0));
        assert_eq!(planned.backends.len(), 3);
        for slot in 1..=3 {
            let count = table.iter().filter(|entry| **entry == slot).count();
            assert!((340..=341).contains(&count), "slot {slot} has {count} of 1021 entries");
        }
    }

    #[test]
    fn frontends_of_a_service_port_over_the_same_backends_share_one_maglev_table() {
        let pods: &[&str] = &["10.1.0.1:80", "10.1.0.2:80"];
        let spec: Spec = &[
            ("web=10.96.0.1:80/TCP", pods),
            ("web=192.0.2.1:30080/TCP", pods),
            ("web=[fd00::1]:80/TCP", &["[fd00:1::1]:80"]),
            ("db=10.96.0.2:80/TCP", pods),
        ];
        let planned = planned(spec, &MapContents::default());
        let table_of = |frontend: &str| {
            let described = describe(&planned);
            let programmed = described.iter().find(|p| p.frontend.to_string().starts_with(frontend)).unwrap();
            let key = abi::service_key(&programmed.frontend, 0);
            planned.services[&key].backend_id
        };
        let (cluster_ip, node_port) = (table_of("10.96.0.1:80"), table_of("192.0.2.1:30080"));
        assert_eq!(cluster_ip, node_port, "the ClusterIP and NodePort of one Service port");
        assert_ne!(table_of("[fd00::1]:80"), cluster_ip, "other backends (the IPv6 pods)");
        assert_ne!(table_of("10.96.0.2:80"), cluster_ip, "another Service port, though over the same pods");
        let tables: BTreeSet<u32> = planned.maglev.keys().map(|key| key.table).collect();
        assert_eq!(tables.len(), 3);
        assert_eq!(planned.maglev.len() as u32, 3 * MapSizes::default().rows_per_table());
    }
}
