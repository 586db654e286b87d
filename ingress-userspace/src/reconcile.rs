//! One reconciliation pass: read what the maps hold, plan the desired state
//! with the ids already in use, and write only the differences, in order.
//!
//! The maps are the only state: after a failed write (a full map, say) the
//! next pass reads what they hold and carries on from there.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use foldhash::{HashMap, HashMapExt};
use ingress_common::maps::{MaglevKey, ServiceKey};

use crate::dataplane::diff::{diff, removals};
use crate::dataplane::ids::IdIndex;
use crate::dataplane::plan::{LeftOut, PartPlanner, Plan, ServiceFrontends, backend_values, by_service, plan};
use crate::dataplane::sizes::MapSizes;
use crate::dataplane::{MapContents, MapOp, MapWriter, SourceRangeEntry, abi, rollback};
use index::ServiceIndex;
use crate::model::{BackendAddr, DesiredState, Frontend, FrontendState, ServicePortRef};

mod index;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Ops applied, by `op_kind` label.
    pub ops: BTreeMap<&'static str, usize>,
    pub frontends: usize,
    /// Distinct backends (pod address and port) programmed.
    pub backends: usize,
    /// Entries the maps hold now, per map.
    pub usage: Usage,
    /// Service ports whose entries were (re)planned and written this pass
    /// (all of them on a full pass).
    pub changed_services: usize,
    /// Whether the frontends or their rev-NAT ids may have changed (so the
    /// names labelling them may have): false when only backends changed.
    pub frontends_changed: bool,
    /// Conntrack entries of UDP flows to removed backends, deleted.
    pub udp_flows_flushed: usize,
    /// Service ports left out whole because a map is full.
    pub left_out: Vec<LeftOut>,
}

/// Entries per map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub services: usize,
    pub backends: usize,
    pub rev_nat: usize,
    /// Maglev rows.
    pub maglev: usize,
}

impl Usage {
    fn of(contents: &MapContents) -> Usage {
        Usage {
            services: contents.services.len(),
            backends: contents.backends.len(),
            rev_nat: contents.rev_nat.len(),
            maglev: contents.maglev.len(),
        }
    }
}

/// A stable label for metrics.
pub fn op_kind(op: &MapOp) -> &'static str {
    match op {
        MapOp::PutBackend(..) => "put_backend",
        MapOp::PutRevNat(..) => "put_rev_nat",
        MapOp::PutService(..) => "put_service",
        MapOp::DeleteService(..) => "delete_service",
        MapOp::DeleteBackend(..) => "delete_backend",
        MapOp::DeleteRevNat(..) => "delete_rev_nat",
        MapOp::PutSourceRange(..) => "put_source_range",
        MapOp::DeleteSourceRange(..) => "delete_source_range",
        MapOp::PutMaglevRow(..) => "put_maglev_row",
        MapOp::DeleteMaglevRow(..) => "delete_maglev_row",
    }
}

/// Writes `desired` Service port by Service port: each one's new and
/// changed entries, rolled back whole if a write fails, so none is ever
/// half-programmed; then removes what no Service needs any more. A Service
/// port whose write failed keeps what it had, and the pass ends in an error
/// (the agent retries) once every other one is written.
///
/// A full pass: the maps are read and everything is planned. The agent uses
/// a [`Reconciler`], which does the same with only what changed.
pub fn reconcile(writer: &mut dyn MapWriter, desired: &DesiredState) -> anyhow::Result<ReconcileReport> {
    Reconciler::default().reconcile(writer, desired)
}

/// Reconciles pass after pass. After a pass that wrote everything it
/// planned, it knows what the maps hold and how each Service port was
/// planned, so the next pass re-plans and writes only the Service ports
/// whose frontends changed: the same writes and end state as a full pass
/// (the maps are the agent's alone), at a cost that follows the change, not
/// the number of Services. Anything unusual (a failed write, a full map,
/// other map sizes) makes the next pass a full one.
#[derive(Default)]
pub struct Reconciler {
    known: Option<Known>,
}

/// What the last pass left in the maps.
struct Known {
    sizes: MapSizes,
    /// Exactly what the maps hold.
    contents: MapContents,
    /// The ids in `contents`, kept as it changes.
    ids: IdIndex,
    /// Each programmed Service port's frontends and entries (its backends
    /// with their values at the time).
    services: BTreeMap<ServicePortRef, Programmed>,
    /// How many Service ports name each backend id and rev-NAT id.
    backend_refs: HashMap<u32, usize>,
    rev_nat_refs: HashMap<u32, usize>,
    /// Maglev tables in use.
    tables: usize,
    /// Headers (frontends by scope) in `contents`.
    headers: usize,
    index: ServiceIndex,
}

struct Programmed {
    frontends: Vec<(Frontend, FrontendState)>,
    part: MapContents,
}

impl Reconciler {
    /// What the maps held after the last pass, if known.
    pub fn contents(&self) -> Option<&MapContents> {
        self.known.as_ref().map(|known| &known.contents)
    }

    /// Deletes the backends no Service names that were kept for their TCP
    /// flows (`release_leaving_backends`) once no tracked flow uses them;
    /// the agent calls it after each conntrack sweep. How many went.
    pub fn release_drained(&mut self, writer: &mut dyn MapWriter) -> anyhow::Result<usize> {
        let Some(known) = self.known.as_mut() else { return Ok(0) };
        let unnamed: BTreeSet<u32> = known.contents.backends.keys().filter(|id| !known.backend_refs.contains_key(id)).copied().collect();
        if unnamed.is_empty() {
            return Ok(0);
        }
        let held = writer.release_backends(&unnamed)?.held;
        let gone = MapContents {
            backends: unnamed.difference(&held).filter_map(|id| known.contents.backends.get_key_value(id)).map(|(id, value)| (*id, *value)).collect(),
            ..MapContents::default()
        };
        if let Err((_, error)) = writer.apply_all(&diff(&gone, &MapContents::default())) {
            // Which deletions happened is unknown: the next pass reads the maps.
            self.known = None;
            return Err(error);
        }
        known.ids.remove(&gone);
        for id in gone.backends.keys() {
            known.contents.backends.remove(id);
        }
        Ok(gone.backends.len())
    }

    /// One pass to `desired`: incremental when the last pass left the maps
    /// in a known state, full otherwise.
    pub fn reconcile(&mut self, writer: &mut dyn MapWriter, desired: &DesiredState) -> anyhow::Result<ReconcileReport> {
        self.reconcile_changes(writer, desired, None)
    }

    /// [`Reconciler::reconcile`], told which frontends may differ from the
    /// last pass's `desired` (all when `None`): the Service ports they
    /// belong to are the only ones looked at.
    pub fn reconcile_changes(
        &mut self,
        writer: &mut dyn MapWriter,
        desired: &DesiredState,
        changed: Option<&BTreeSet<Frontend>>,
    ) -> anyhow::Result<ReconcileReport> {
        match self.known.take() {
            Some(known) if known.sizes == writer.sizes() => self.incremental(writer, desired, changed, known),
            _ => self.full(writer, desired),
        }
    }

    /// Reads the maps and plans everything (see [`reconcile`]).
    pub fn full(&mut self, writer: &mut dyn MapWriter, desired: &DesiredState) -> anyhow::Result<ReconcileReport> {
        self.known = None;
        let current = writer.read().context("reading the dataplane maps")?;
        let sizes = writer.sizes();
        let started = std::time::Instant::now();
        let Plan { contents: mut planned, services, left_out } = plan(desired, &current, &sizes);
        let planned_at = started.elapsed();
        for LeftOut { service, map } in &left_out {
            tracing::error!(%service, map, "the map {map} is full: Service port {service} is left out of the dataplane");
        }
        let exact = left_out.is_empty();
        let mut report = ReconcileReport { left_out, changed_services: services.len(), frontends_changed: true, ..ReconcileReport::default() };
        let mut failures = Vec::new();
        // Every Service port at once first: one diff, so each map's writes
        // are one long batch. Should one fail (a map fuller than planned),
        // the maps are put back and written Service port by Service port,
        // so that only those that do not fit are left as they were.
        let at_once = write_or_undo(writer, &rollback::entries_at(&current, &planned), &planned, &mut report, "every Service port")?;
        let removals = match at_once {
            // The maps hold `planned` and whatever else `current` had.
            Ok(()) => removals(&current, &planned),
            Err(error) => {
                let mut written = current.clone();
                tracing::warn!("writing every Service port at once failed, writing them one by one: {error:#}");
                for (service, part) in &services {
                    let before = rollback::entries_at(&written, part);
                    match write_or_undo(writer, &before, part, &mut report, format_args!("Service port {service}"))? {
                        Ok(()) => written.overlay(part),
                        Err(error) => {
                            tracing::error!(%service, "Service port {service} rolled back: {error:#}");
                            rollback::keep_unwritten(&mut planned, &written, part);
                            failures.push(error.context(format!("Service port {service} rolled back")));
                        }
                    }
                }
                if !failures.is_empty() {
                    rollback::drop_unreferenced(&mut planned);
                }
                diff(&written, &planned)
            }
        };
        let (removals, held) = release_leaving_backends(writer, removals, &mut report);
        apply(writer, &removals, &mut report).map_err(|(_, error)| error)?;
        tracing::debug!(plan_ms = planned_at.as_secs_f64() * 1e3, write_ms = (started.elapsed() - planned_at).as_secs_f64() * 1e3, "full pass written");
        planned.backends.extend(held.iter().filter_map(|id| current.backends.get_key_value(id)));
        report.frontends = planned.services.keys().filter(|key| key.slot == 0).count();
        report.backends = planned.backends.len();
        report.usage = Usage::of(&planned);
        if let Some(first) = failures.into_iter().next() {
            return Err(first);
        }
        if exact {
            let by_service = by_service(desired);
            let mut refs = Refs { backends: HashMap::new(), rev_nat: HashMap::new(), tables: 0 };
            let mut programmed = BTreeMap::new();
            let mut index = ServiceIndex::default();
            for (service, part) in services {
                let frontends = by_service.get(&service).map_or_else(Vec::new, |frontends| owned(frontends));
                refs.count(&part, true);
                index.add(&service, &frontends);
                programmed.insert(service, Programmed { frontends, part });
            }
            self.known = Some(Known {
                sizes,
                headers: report.frontends,
                ids: IdIndex::of(&planned),
                contents: planned,
                services: programmed,
                backend_refs: refs.backends,
                rev_nat_refs: refs.rev_nat,
                tables: refs.tables,
                index,
            });
        }
        Ok(report)
    }

    /// Re-plans and writes only the Service ports whose frontends differ
    /// from `known`'s, then removes what only their old versions used.
    fn incremental(
        &mut self,
        writer: &mut dyn MapWriter,
        desired: &DesiredState,
        hint: Option<&BTreeSet<Frontend>>,
        mut known: Known,
    ) -> anyhow::Result<ReconcileReport> {
        let programmed = |service: &ServicePortRef| known.services.get(service).map(|programmed| programmed.frontends.as_slice());
        let (groups, removed) = match hint {
            Some(frontends) => known.index.regroup(desired, frontends, programmed),
            None => {
                let groups = by_service(desired);
                let removed = known.services.keys().filter(|service| !groups.contains_key(service)).cloned().collect();
                (groups, removed)
            }
        };
        let changed: Vec<(&ServicePortRef, &ServiceFrontends)> = groups
            .iter()
            .filter(|(service, frontends)| known.services.get(**service).is_none_or(|programmed| !same(&programmed.frontends, frontends)))
            .map(|(service, frontends)| (*service, frontends))
            .collect();
        let mut report = ReconcileReport { changed_services: changed.len() + removed.len(), ..ReconcileReport::default() };
        if changed.is_empty() && removed.is_empty() {
            known.summarize(&mut report);
            self.known = Some(known);
            return Ok(report);
        }

        // The new versions, with the ids a full plan would give them.
        let mut planner = PartPlanner::new(&known.ids, &known.sizes);
        let mut parts: Vec<(ServicePortRef, MapContents)> =
            changed.iter().map(|(service, frontends)| ((*service).clone(), planner.plan_service(frontends))).collect();
        let addrs: HashMap<u32, BackendAddr> = planner.planned_backends().collect();
        let values = match hint {
            None => backend_values(groups.values()),
            Some(_) => {
                let old_backends = changed.iter().filter_map(|(service, _)| known.services.get(*service));
                let old_backends = old_backends.chain(removed.iter().filter_map(|service| known.services.get(service)));
                let old_addrs = old_backends.flat_map(|programmed| programmed.frontends.iter().flat_map(|(_, state)| state.backends.iter().map(|b| b.addr)));
                let new_addrs = changed.iter().flat_map(|(_, frontends)| frontends.iter().flat_map(|(_, state)| state.backends.iter().map(|b| b.addr)));
                known.index.backend_values(old_addrs.chain(new_addrs).collect::<Vec<_>>(), &groups, &removed, programmed)
            }
        };
        for (_, part) in &mut parts {
            for (id, value) in &mut part.backends {
                match addrs.get(id).and_then(|addr| values.get(addr)) {
                    Some(backend) => *value = abi::backend_value(backend),
                    None => return self.full(writer, desired),
                }
            }
        }
        let old: Vec<&Programmed> = changed
            .iter()
            .filter_map(|(service, _)| known.services.get(*service))
            .chain(removed.iter().filter_map(|service| known.services.get(service)))
            .collect();
        // Frontend names hang on headers: new, removed or renumbered ones.
        report.frontends_changed = !removed.is_empty()
            || changed.iter().zip(&parts).any(|((service, _), (_, new))| {
                known.services.get(*service).is_none_or(|old| headers(&old.part) != headers(new))
            });

        // What the maps will hold, counted before anything is written: a
        // Service port that no longer fits is for the full pass to leave out.
        // Counted in place: a pass that does not finish drops `known` (the next one is full).
        let backends = std::mem::take(&mut known.backend_refs);
        let mut refs = Refs { backends, rev_nat: std::mem::take(&mut known.rev_nat_refs), tables: known.tables };
        for programmed in &old {
            refs.count(&programmed.part, false);
        }
        for (_, part) in &parts {
            refs.count(part, true);
        }
        let services_total = known.contents.services.len() - old.iter().map(|p| p.part.services.len()).sum::<usize>()
            + parts.iter().map(|(_, part)| part.services.len()).sum::<usize>();
        let sizes = known.sizes;
        let fits = services_total <= sizes.services as usize
            && refs.backends.len() <= sizes.backends as usize
            && refs.rev_nat.len() <= sizes.rev_nat as usize
            && refs.tables <= sizes.maglev_tables as usize;
        if !fits {
            return self.full(writer, desired);
        }

        // Writes: the new versions, Service port by Service port.
        for (service, part) in &parts {
            let before = rollback::entries_at(&known.contents, part);
            if let Err(error) = write_or_undo(writer, &before, part, &mut report, format_args!("Service port {service}"))? {
                tracing::error!(%service, "Service port {service} rolled back: {error:#}; planning everything again");
                return self.full(writer, desired);
            }
            known.ids.remove(&before);
            known.ids.add(part);
            known.contents.overlay(part);
        }
        // Backends the changed Service ports share with others may change state.
        let mut touched: BTreeSet<u32> = old.iter().flat_map(|programmed| programmed.part.backends.keys().copied()).collect();
        touched.retain(|id| refs.backends.contains_key(id));
        let mut updates = Vec::new();
        for id in touched {
            let Some(current) = known.contents.backends.get(&id) else { continue };
            let Some(backend) = values.get(&abi::backend_addr_of(current)) else { continue };
            let value = abi::backend_value(backend);
            if value != *current {
                updates.push(MapOp::PutBackend(id, value));
            }
        }
        // Removals: what only the old versions used.
        let mut gone = MapContents::default();
        let kept_services: BTreeSet<ServiceKey> = parts.iter().flat_map(|(_, part)| part.services.keys().copied()).collect();
        let kept_rows: BTreeSet<MaglevKey> = parts.iter().flat_map(|(_, part)| part.maglev.keys().copied()).collect();
        let kept_ranges: BTreeSet<SourceRangeEntry> = parts.iter().flat_map(|(_, part)| part.source_ranges.iter().copied()).collect();
        for programmed in &old {
            let part = &programmed.part;
            for key in part.services.keys().filter(|key| !kept_services.contains(key)) {
                gone.services.extend(known.contents.services.get_key_value(key).map(|(k, v)| (*k, *v)));
            }
            for key in part.maglev.keys().filter(|key| !kept_rows.contains(key)) {
                gone.maglev.extend(known.contents.maglev.get_key_value(key).map(|(k, v)| (*k, v.clone())));
            }
            gone.source_ranges.extend(part.source_ranges.iter().filter(|entry| !kept_ranges.contains(entry)));
            for id in part.backends.keys().filter(|id| !refs.backends.contains_key(id)) {
                gone.backends.extend(known.contents.backends.get_key_value(id).map(|(k, v)| (*k, *v)));
            }
            for id in part.rev_nat.keys().filter(|id| !refs.rev_nat.contains_key(id)) {
                gone.rev_nat.extend(known.contents.rev_nat.get_key_value(id).map(|(k, v)| (*k, *v)));
            }
        }
        // On a failed write the maps are somewhere between: the next pass
        // reads them.
        apply(writer, &updates, &mut report).map_err(|(_, error)| error)?;
        let (removals, held) = release_leaving_backends(writer, diff(&gone, &MapContents::default()), &mut report);
        gone.backends.retain(|id, _| !held.contains(id));
        apply(writer, &removals, &mut report).map_err(|(_, error)| error)?;

        // Remember the new state.
        known.ids.remove(&gone);
        for op in updates {
            if let MapOp::PutBackend(id, value) = op {
                known.contents.backends.insert(id, value);
            }
        }
        for key in gone.services.keys() {
            known.contents.services.remove(key);
        }
        for key in gone.maglev.keys() {
            known.contents.maglev.remove(key);
        }
        for id in gone.backends.keys() {
            known.contents.backends.remove(id);
        }
        for id in gone.rev_nat.keys() {
            known.contents.rev_nat.remove(id);
        }
        for entry in &gone.source_ranges {
            known.contents.source_ranges.remove(entry);
        }
        known.tables = refs.tables;
        known.backend_refs = refs.backends;
        known.rev_nat_refs = refs.rev_nat;
        for service in &removed {
            if let Some(old) = known.services.remove(service) {
                known.index.remove(service, &old.frontends);
                known.headers -= headers(&old.part).len();
            }
        }
        for ((service, part), (_, frontends)) in parts.into_iter().zip(&changed) {
            known.headers += headers(&part).len();
            let new = Programmed { frontends: owned(frontends), part };
            if let Some(old) = known.services.insert(service.clone(), new) {
                known.index.remove(&service, &old.frontends);
                known.headers -= headers(&old.part).len();
            }
            known.index.add(&service, &known.services[&service].frontends);
        }
        known.summarize(&mut report);
        self.known = Some(known);
        Ok(report)
    }
}

impl Known {
    fn summarize(&self, report: &mut ReconcileReport) {
        report.frontends = self.headers;
        report.backends = self.contents.backends.len();
        report.usage = Usage::of(&self.contents);
    }
}

/// Reference counts of shared entries, and the Maglev tables in use.
struct Refs {
    backends: HashMap<u32, usize>,
    rev_nat: HashMap<u32, usize>,
    tables: usize,
}

impl Refs {
    /// Counts `part`'s entries in (`add`) or out.
    fn count(&mut self, part: &MapContents, add: bool) {
        fn bump(refs: &mut HashMap<u32, usize>, id: u32, add: bool) {
            if add {
                *refs.entry(id).or_default() += 1;
            } else if let Some(count) = refs.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    refs.remove(&id);
                }
            }
        }
        for id in part.backends.keys() {
            bump(&mut self.backends, *id, add);
        }
        for id in part.rev_nat.keys() {
            bump(&mut self.rev_nat, *id, add);
        }
        let tables = tables_of(part);
        self.tables = if add { self.tables + tables } else { self.tables.saturating_sub(tables) };
    }
}

/// Maglev tables a part holds (its frontends may share them).
fn tables_of(part: &MapContents) -> usize {
    part.maglev.keys().filter(|key| key.row == 0).count()
}

/// A part's headers and their rev-NAT ids: what frontend names hang on.
fn headers(part: &MapContents) -> Vec<(ServiceKey, u32)> {
    part.services.iter().filter(|(key, _)| key.slot == 0).map(|(key, header)| (*key, header.rev_nat_id)).collect()
}

fn same(programmed: &[(Frontend, FrontendState)], frontends: &[(&Frontend, &FrontendState)]) -> bool {
    programmed.len() == frontends.len()
        && programmed.iter().zip(frontends).all(|((f, s), (frontend, state))| f == *frontend && s == *state)
}

fn owned(frontends: &[(&Frontend, &FrontendState)]) -> Vec<(Frontend, FrontendState)> {
    frontends.iter().map(|(frontend, state)| (**frontend, (*state).clone())).collect()
}
/// Ends the UDP flows of the backends `removals` deletes and takes out of
/// it the deletions of those tracked TCP flows still use, which it returns:
/// they stay in the maps, named by no Service, until
/// [`Reconciler::release_drained`] finds their flows ended. An established
/// connection thereby keeps its pod when the pod leaves the Service (scaled
/// away, or no longer ready), as through kube-proxy's conntrack; before, the
/// programs re-balanced it to another pod, which answered with a reset.
fn release_leaving_backends(writer: &mut dyn MapWriter, removals: Vec<MapOp>, report: &mut ReconcileReport) -> (Vec<MapOp>, BTreeSet<u32>) {
    let leaving: BTreeSet<u32> =
        removals.iter().filter_map(|op| if let MapOp::DeleteBackend(id) = op { Some(*id) } else { None }).collect();
    if leaving.is_empty() {
        return (removals, leaving);
    }
    match writer.release_backends(&leaving) {
        Ok(flows) => {
            report.udp_flows_flushed = flows.udp_flushed;
            let held = flows.held;
            let removals = removals.into_iter().filter(|op| !matches!(op, MapOp::DeleteBackend(id) if held.contains(id))).collect();
            (removals, held)
        }
        // Not an error of the pass: the backends go as they did before
        // flows held them, and the sweep ends the UDP flows in time.
        Err(error) => {
            tracing::warn!("reading the flows of removed backends failed: {error:#}");
            (removals, BTreeSet::new())
        }
    }
}

/// Writes the entries of `part` that `before` (what the maps hold at its
/// keys) lacks, all or nothing: `Ok(Err(why))` when a write failed and the
/// ones before it were undone; `Err` when the undo failed too (`what` names
/// what was being written).
fn write_or_undo(
    writer: &mut dyn MapWriter,
    before: &MapContents,
    part: &MapContents,
    report: &mut ReconcileReport,
    what: impl std::fmt::Display,
) -> anyhow::Result<Result<(), anyhow::Error>> {
    let ops = diff(before, part);
    let Err((applied, error)) = apply(writer, &ops, report) else { return Ok(Ok(())) };
    let undo = rollback::undo(before, &ops[..applied]);
    apply(writer, &undo, report).map_err(|(_, undo_error)| undo_error.context(format!("rolling back {what} after: {error:#}")))?;
    Ok(Err(error))
}

/// Applies `ops` in order, counting them; on a failure, how many were applied.
fn apply(writer: &mut dyn MapWriter, ops: &[MapOp], report: &mut ReconcileReport) -> Result<(), (usize, anyhow::Error)> {
    let result = writer.apply_all(ops);
    let applied = result.as_ref().err().map_or(ops.len(), |(index, _)| *index);
    for op in &ops[..applied] {
        *report.ops.entry(op_kind(op)).or_default() += 1;
    }
    result.map_err(|(index, error)| {
        (index, error.context(format!("map write {} of {} failed: {}", index + 1, ops.len(), describe_op(&ops[index]))))
    })
}

/// The op in model terms: raw keys are in network byte order, useless in a log.
fn describe_op(op: &MapOp) -> String {
    let service = |key: &ServiceKey| match abi::frontend_of(key) {
        Some(frontend) => format!("{frontend} slot {}", key.slot),
        None => format!("{key:?}"),
    };
    match op {
        MapOp::PutBackend(id, value) => format!("put backend {id} ({})", abi::backend_addr_of(value)),
        MapOp::PutRevNat(id, value) => {
            let (addr, port) = abi::rev_nat_of(value);
            format!("put rev-NAT {id} ({})", std::net::SocketAddr::new(addr, port))
        }
        MapOp::PutService(key, _) => format!("put service {}", service(key)),
        MapOp::DeleteService(key) => format!("delete service {}", service(key)),
        MapOp::DeleteBackend(id) => format!("delete backend {id}"),
        MapOp::DeleteRevNat(id) => format!("delete rev-NAT {id}"),
        MapOp::PutSourceRange(entry) => format!("put source range {}", abi::describe_source_range(entry)),
        MapOp::DeleteSourceRange(entry) => format!("delete source range {}", abi::describe_source_range(entry)),
        MapOp::PutMaglevRow(key, _) => format!("put Maglev table {} row {}", key.table, key.row),
        MapOp::DeleteMaglevRow(key) => format!("delete Maglev table {} row {}", key.table, key.row),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{Capacity, FakeMaps, Spec, desired_state};
    use crate::dataplane::plan::{describe, described_without_backend_ids};
    use crate::dataplane::sizes::MapSizes;
    use ingress_common::maps::{DEFAULT_MAGLEV_TABLE_SIZE, maglev_rows};

    /// `addr -> backend id` of everything programmed.
    fn backend_ids(maps: &FakeMaps) -> BTreeMap<String, u32> {
        let contents = &maps.contents.backends;
        contents
            .iter()
            .map(|(id, value)| (abi::backend_addr_of(value).to_string(), *id))
            .collect()
    }

    /// Rows of a Maglev table of the default size.
    const ROWS: usize = maglev_rows(DEFAULT_MAGLEV_TABLE_SIZE) as usize;

    #[test]
    fn passes_keep_ids_and_write_only_changes() {
        type Step = (&'static str, Spec<'static>, &'static [(&'static str, usize)]);
        let steps: &[Step] = &[
            (
                "first sync",
                &[("10.96.0.10:80/TCP", &["10.244.1.2:8080", "10.244.2.2:8080"])],
                &[("put_backend", 2), ("put_maglev_row", ROWS), ("put_rev_nat", 1), ("put_service", 3)],
            ),
            (
                "same state again",
                &[("10.96.0.10:80/TCP", &["10.244.1.2:8080", "10.244.2.2:8080"])],
                &[],
            ),
            (
                "an endpoint is added: one backend, one slot, the table, the header",
                &[(
                    "10.96.0.10:80/TCP",
                    &["10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"],
                )],
                &[("put_backend", 1), ("put_maglev_row", ROWS), ("put_service", 2)],
            ),
            (
                "an endpoint is removed: slots shift, the table changes, the last slot and the backend go",
                &[("10.96.0.10:80/TCP", &["10.244.2.2:8080", "10.244.3.2:8080"])],
                &[("delete_backend", 1), ("delete_service", 1), ("put_maglev_row", ROWS), ("put_service", 3)],
            ),
            (
                "everything is removed",
                &[],
                &[("delete_backend", 2), ("delete_maglev_row", ROWS), ("delete_rev_nat", 1), ("delete_service", 3)],
            ),
        ];
        let mut maps = FakeMaps::default();
        let mut known = BTreeMap::new();
        for (name, spec, expected_ops) in steps {
            let report = reconcile(&mut maps, &desired_state(spec)).unwrap();
            let expected: BTreeMap<_, _> = expected_ops.iter().copied().collect();
            assert_eq!(report.ops, expected, "{name}");
            assert_eq!(
                (report.frontends, report.backends),
                (spec.len(), maps.contents.backends.len()),
                "{name}"
            );
            maps.check_consistent().unwrap();
            for (addr, id) in backend_ids(&maps) {
                assert_eq!(
                    *known.entry(addr.clone()).or_insert(id),
                    id,
                    "{name}: {addr} changed id"
                );
            }
        }
        assert_eq!(maps.contents, Default::default());
    }

    /// A full pass writes each kind of entry in one run (one batch on the
    /// kernel's maps), in the order of a single diff, whatever the maps held.
    #[test]
    fn a_full_pass_writes_each_kind_of_entry_in_one_run() {
        let first: Spec = &[
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
            ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80"]),
            ("b=10.96.0.20:53/UDP", &["10.244.3.2:53"]),
            ("c=10.96.0.30:80/TCP", &["10.244.4.2:80"]),
        ];
        let second: Spec = &[
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.5.2:80"]),
            ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80", "10.244.6.2:80"]),
            ("d=10.96.0.40:80/TCP", &["10.244.4.2:80"]),
        ];
        // (name, what the maps hold, what is written, runs expected)
        let cases: &[(&str, Spec, Spec, &[&str])] = &[
            ("first pass", &[], first, &["put_backend", "put_rev_nat", "put_service", "put_maglev_row", "put_service"]),
            (
                "restart onto other contents",
                first,
                second,
                &[
                    "put_backend", "put_rev_nat", "put_service", "put_maglev_row", "put_service",
                    "delete_service", "delete_maglev_row", "delete_backend", "delete_rev_nat",
                ],
            ),
        ];
        for (name, held, written, expected) in cases {
            let mut maps = FakeMaps::default();
            reconcile(&mut maps, &desired_state(held)).unwrap();
            let before = maps.contents.clone();
            let logged = maps.log.len();
            reconcile(&mut maps, &desired_state(written)).unwrap();
            let ops = &maps.log[logged..];
            let runs: Vec<&str> = ops.chunk_by(|a, b| op_kind(a) == op_kind(b)).map(|run| op_kind(&run[0])).collect();
            assert_eq!(runs, *expected, "{name}");
            let planned = plan(&desired_state(written), &before, &MapSizes::default()).contents;
            assert_eq!(ops, diff(&before, &planned), "{name}: the ops of one diff");
            assert_eq!(maps.contents, planned, "{name}");
        }
    }

    #[test]
    fn a_failed_write_rolls_its_service_back_and_the_next_pass_finishes() {
        let old: Spec = &[("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"])];
        let new: Spec = &[
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80", "10.244.3.2:80", "10.244.4.2:80"]),
            ("c=10.96.0.30:80/TCP", &["10.244.1.2:80"]),
        ];
        let mut maps = FakeMaps::default();
        reconcile(&mut maps, &desired_state(old)).unwrap();
        let programmed_old = maps.contents.clone();

        // The plan thinks it fits; the map disagrees on the fourth backend.
        maps.capacity = Capacity { backends: Some(3), ..Capacity::default() };
        let error = reconcile(&mut maps, &desired_state(new)).unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("Service port default/a rolled back"), "{message}");
        assert!(message.contains("put backend") && message.contains("(10.244.4.2:80)"), "{message}");
        maps.check_consistent().unwrap();
        assert_eq!(
            described_without_backend_ids(&maps.contents),
            [
                "10.96.0.10:80/TCP rev-nat 1 -> 10.244.1.2:80 10.244.2.2:80",
                "10.96.0.30:80/TCP rev-nat 2 -> 10.244.1.2:80",
            ],
            "a keeps its old version whole, c is written"
        );
        for (key, value) in &programmed_old.services {
            assert_eq!(maps.contents.services.get(key), Some(value), "a's old entry {key:?}");
        }
        assert_eq!(maps.contents.maglev.len(), 2 * ROWS, "a's old table and c's");

        maps.capacity = Capacity::default();
        reconcile(&mut maps, &desired_state(new)).unwrap();
        maps.check_consistent().unwrap();
        assert_eq!(describe(&maps.contents)[0].backends.len(), 4);
        assert!(reconcile(&mut maps, &desired_state(new)).unwrap().ops.is_empty());
    }

    #[test]
    fn a_service_that_does_not_fit_is_left_out_whole_and_reported() {
        let spec: Spec = &[
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
            ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.4.2:80"]),
            ("b=10.96.0.20:53/UDP", &["10.244.3.2:53"]),
        ];
        let mut maps = FakeMaps::default();
        maps.sizes.backends = 3;
        let report = reconcile(&mut maps, &desired_state(spec)).unwrap();
        let left_out: Vec<_> = report.left_out.iter().map(|l| (l.service.to_string(), l.map)).collect();
        assert_eq!(left_out, [("default/b".to_owned(), ingress_common::maps::BACKENDS_MAP)]);
        assert_eq!((report.frontends, report.backends), (1, 2));
        assert_eq!(described_without_backend_ids(&maps.contents), ["10.96.0.10:80/TCP rev-nat 1 -> 10.244.1.2:80 10.244.2.2:80"]);
        maps.check_consistent().unwrap();
    }

    /// Applies a sequence of changes with one `Reconciler` (incremental after
    /// the first pass) and with full passes on other maps: after every step
    /// both hold the same entries with the same ids, every intermediate state
    /// is consistent, and the incremental pass writes no more than the full one.
    #[test]
    fn incremental_passes_end_where_full_passes_do() {
        let steps: &[(&str, Spec)] = &[
            ("first", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80*"]),
                ("c=10.96.0.30:80/TCP", &["10.244.4.2:80"]),
            ]),
            ("nothing changes", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80*"]),
                ("c=10.96.0.30:80/TCP", &["10.244.4.2:80"]),
            ]),
            ("one endpoint of c moves", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80*"]),
                ("c=10.96.0.30:80/TCP", &["10.244.5.2:80"]),
            ]),
            ("a shared backend turns terminating in one Service only", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80~", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("b=10.96.0.20:80/TCP", &["10.244.3.2:80", "10.244.1.2:80*"]),
                ("c=10.96.0.30:80/TCP", &["10.244.5.2:80"]),
            ]),
            ("b goes, so the shared backend is a's alone and terminating", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80~", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("c=10.96.0.30:80/TCP", &["10.244.5.2:80"]),
            ]),
            ("a frontend moves from c to a new d, new backends get fresh ids", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80~", "10.244.2.2:80"]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("d=10.96.0.30:80/TCP", &["10.244.6.2:80", "10.244.7.2:80"]),
                ("d=10.96.0.30:53/UDP", &[]),
            ]),
            ("a loses every endpoint of one port", &[
                ("a=10.96.0.10:80/TCP", &[]),
                ("a=10.96.0.10:53/UDP", &["10.244.1.2:53"]),
                ("d=10.96.0.30:80/TCP", &["10.244.6.2:80", "10.244.7.2:80"]),
                ("d=10.96.0.30:53/UDP", &["10.244.1.2:53"]),
            ]),
            ("everything goes", &[]),
            ("and comes back", &[
                ("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"]),
                ("e=10.96.0.50:80/TCP", &["10.244.1.2:80*"]),
            ]),
        ];
        let mut incremental_maps = FakeMaps::default();
        let mut full_maps = FakeMaps::default();
        let mut reconciler = Reconciler::default();
        for (index, (name, spec)) in steps.iter().enumerate() {
            let desired = desired_state(spec);
            let logged = incremental_maps.log.len();
            let before = incremental_maps.contents.clone();
            let report = reconciler.reconcile(&mut incremental_maps, &desired).unwrap();
            let full = reconcile(&mut full_maps, &desired).unwrap();
            assert_eq!(incremental_maps.contents, full_maps.contents, "{name}");
            assert_eq!(reconciler.contents(), Some(&full_maps.contents), "{name}: what it knows");
            assert_eq!((report.frontends, report.backends, report.usage), (full.frontends, full.backends, full.usage), "{name}");
            assert!(report.ops.values().sum::<usize>() <= full.ops.values().sum::<usize>() || index == 0, "{name}: {:?} vs {:?}", report.ops, full.ops);
            // Replay the incremental pass's writes one at a time.
            let mut replay = FakeMaps { contents: before, ..FakeMaps::default() };
            for op in &incremental_maps.log[logged..] {
                replay.apply(op).unwrap();
                replay.check_consistent().unwrap_or_else(|problem| panic!("{name}: after {op:?}: {problem}"));
            }
            // And from scratch, on empty maps, the same entries (ids aside).
            let scratch = plan(&desired, &MapContents::default(), &MapSizes::default());
            let described = |contents: &MapContents| -> Vec<String> {
                describe(contents).iter().map(|p| {
                    let backends: Vec<String> = p.backends.iter().map(|(_, b)| format!("{:?}", b)).collect();
                    format!("{} {}", p.frontend, backends.join(" "))
                }).collect()
            };
            assert_eq!(described(&incremental_maps.contents), described(&scratch.contents), "{name}");
        }
        assert_eq!(reconciler.reconcile(&mut incremental_maps, &desired_state(steps[8].1)).unwrap().ops.len(), 0);
    }

    #[test]
    fn a_leaving_backend_stays_while_tcp_flows_use_it() {
        let both: Spec = &[("a=10.96.0.10:80/TCP", &["10.244.1.2:80", "10.244.2.2:80"])];
        let one: Spec = &[("a=10.96.0.10:80/TCP", &["10.244.1.2:80"])];
        let mut without_it = FakeMaps::default();
        reconcile(&mut without_it, &desired_state(one)).unwrap();
        type Pass = fn(&mut Reconciler, &mut dyn MapWriter, &DesiredState) -> anyhow::Result<ReconcileReport>;
        let passes: [(&str, Pass); 2] = [("incremental", Reconciler::reconcile), ("full", Reconciler::full)];
        for (mode, pass) in passes {
            let mut maps = FakeMaps::default();
            let mut reconciler = Reconciler::default();
            pass(&mut reconciler, &mut maps, &desired_state(both)).unwrap();
            let with_it = maps.contents.clone();
            let (&leaving, &value) = with_it.backends.iter().find(|(id, _)| !without_it.contents.backends.contains_key(id)).unwrap();
            let mut held = without_it.contents.clone();
            held.backends.insert(leaving, value);

            maps.tcp_flows_to.insert(leaving);
            pass(&mut reconciler, &mut maps, &desired_state(one)).unwrap();
            assert_eq!(maps.contents, held, "{mode}: the Service lost it, the map kept it");
            maps.check_consistent().unwrap();
            assert_eq!(reconciler.release_drained(&mut maps).unwrap(), 0, "{mode}: its flow goes on");
            assert_eq!(maps.contents, held, "{mode}");

            pass(&mut reconciler, &mut maps, &desired_state(both)).unwrap();
            assert_eq!(maps.contents, with_it, "{mode}: back in the Service, with its id");
            maps.tcp_flows_to.clear();
            assert_eq!(reconciler.release_drained(&mut maps).unwrap(), 0, "{mode}: a Service names it");

            maps.tcp_flows_to.insert(leaving);
            pass(&mut reconciler, &mut maps, &desired_state(one)).unwrap();
            maps.tcp_flows_to.clear();
            assert_eq!(reconciler.release_drained(&mut maps).unwrap(), 1, "{mode}: its flows ended");
            assert_eq!(maps.contents, without_it.contents, "{mode}");
            assert_eq!(reconciler.contents(), Some(&maps.contents), "{mode}: what it knows");
            assert_eq!(pass(&mut reconciler, &mut maps, &desired_state(one)).unwrap().ops.len(), 0, "{mode}");

            pass(&mut reconciler, &mut maps, &desired_state(both)).unwrap();
            pass(&mut reconciler, &mut maps, &desired_state(one)).unwrap();
            assert_eq!(maps.contents, without_it.contents, "{mode}: without flows it goes at once");
        }
    }

    #[test]
    fn incremental_passes_fall_back_to_full_ones_when_a_map_fills_or_a_write_fails() {
        let small: Spec = &[("a=10.96.0.10:80/TCP", &["10.244.1.2:80"]), ("b=10.96.0.20:80/TCP", &["10.244.2.2:80"])];
        let large: Spec = &[
            ("a=10.96.0.10:80/TCP", &["10.244.1.2:80"]),
            ("b=10.96.0.20:80/TCP", &["10.244.2.2:80", "10.244.3.2:80", "10.244.4.2:80"]),
        ];
        let mut maps = FakeMaps::default();
        maps.sizes.backends = 3;
        let mut reconciler = Reconciler::default();
        reconciler.reconcile(&mut maps, &desired_state(small)).unwrap();
        let report = reconciler.reconcile(&mut maps, &desired_state(large)).unwrap();
        let left_out: Vec<_> = report.left_out.iter().map(|l| l.service.name.clone()).collect();
        assert_eq!(left_out, ["b"], "a full pass leaves b out");
        assert!(reconciler.contents().is_none(), "nothing known after a pass with a left-out Service");

        let mut maps = FakeMaps::default();
        let mut reconciler = Reconciler::default();
        reconciler.reconcile(&mut maps, &desired_state(small)).unwrap();
        maps.capacity = Capacity { backends: Some(3), ..Capacity::default() };
        assert!(reconciler.reconcile(&mut maps, &desired_state(large)).is_err());
        maps.check_consistent().unwrap();
        maps.capacity = Capacity::default();
        reconciler.reconcile(&mut maps, &desired_state(large)).unwrap();
        let mut full = FakeMaps::default();
        reconcile(&mut full, &desired_state(small)).unwrap();
        reconcile(&mut full, &desired_state(large)).unwrap();
        assert_eq!(maps.contents, full.contents);
    }
}
