//! One reconciliation pass: read what the maps hold, plan the desired state
//! with the ids already in use, and write only the differences, in order.
//!
//! The maps are the only state: after a failed write (a full map, say) the
//! next pass reads what they hold and carries on from there.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use ingress_common::maps::ServiceKey;

use crate::dataplane::diff::diff;
use crate::dataplane::plan::{LeftOut, Plan, plan};
use crate::dataplane::{MapContents, MapOp, MapWriter, abi, rollback};
use crate::model::DesiredState;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Ops applied, by `op_kind` label.
    pub ops: BTreeMap<&'static str, usize>,
    pub frontends: usize,
    /// Distinct backends (pod address and port) programmed.
    pub backends: usize,
    /// What the maps hold now.
    pub planned: MapContents,
    /// Conntrack entries of UDP flows to removed backends, deleted.
    pub udp_flows_flushed: usize,
    /// Service ports left out whole because a map is full.
    pub left_out: Vec<LeftOut>,
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
pub fn reconcile(writer: &mut dyn MapWriter, desired: &DesiredState) -> anyhow::Result<ReconcileReport> {
    let current = writer.read().context("reading the dataplane maps")?;
    let Plan { contents: mut planned, services, left_out } = plan(desired, &current, &writer.sizes());
    for LeftOut { service, map } in &left_out {
        tracing::error!(%service, map, "the map {map} is full: Service port {service} is left out of the dataplane");
    }
    let mut report = ReconcileReport { left_out, ..ReconcileReport::default() };
    let mut written = current;
    let mut failures = Vec::new();
    for (service, part) in &services {
        let before = rollback::entries_at(&written, part);
        let ops = diff(&before, part);
        match apply(writer, &ops, &mut report) {
            Ok(()) => written.overlay(part),
            Err((applied, error)) => {
                let undo = rollback::undo(&before, &ops[..applied]);
                apply(writer, &undo, &mut report).map_err(|(_, undo_error)| {
                    undo_error.context(format!("rolling back Service port {service} after: {error:#}"))
                })?;
                tracing::error!(%service, "Service port {service} rolled back: {error:#}");
                rollback::keep_unwritten(&mut planned, &written, part);
                failures.push(error.context(format!("Service port {service} rolled back")));
            }
        }
    }
    if !failures.is_empty() {
        rollback::drop_unreferenced(&mut planned);
    }
    let removals = diff(&written, &planned);
    apply(writer, &removals, &mut report).map_err(|(_, error)| error)?;
    flush_udp_flows_of_removed_backends(writer, &removals, &mut report);
    report.frontends = planned.services.keys().filter(|key| key.slot == 0).count();
    report.backends = planned.backends.len();
    report.planned = planned;
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(report),
    }
}

/// Deletes the UDP conntrack entries of the backends `ops` removed: a stale
/// UDP entry would keep sending a client's datagrams (DNS, say) nowhere.
fn flush_udp_flows_of_removed_backends(writer: &mut dyn MapWriter, ops: &[MapOp], report: &mut ReconcileReport) {
    let removed: BTreeSet<u32> =
        ops.iter().filter_map(|op| if let MapOp::DeleteBackend(id) = op { Some(*id) } else { None }).collect();
    if removed.is_empty() {
        return;
    }
    // Not an error of the pass: the backends are gone either way, and a
    // retry would not know which ones to flush. The sweep gets the rest.
    match writer.flush_udp_flows(&removed) {
        Ok(flushed) => report.udp_flows_flushed = flushed,
        Err(error) => tracing::warn!("flushing the UDP flows of removed backends failed: {error:#}"),
    }
}

/// Applies `ops` in order, counting them; on a failure, how many were applied.
fn apply(writer: &mut dyn MapWriter, ops: &[MapOp], report: &mut ReconcileReport) -> Result<(), (usize, anyhow::Error)> {
    for (index, op) in ops.iter().enumerate() {
        writer.apply(op).map_err(|error| {
            (index, error.context(format!("map write {} of {} failed: {}", index + 1, ops.len(), describe_op(op))))
        })?;
        *report.ops.entry(op_kind(op)).or_default() += 1;
    }
    Ok(())
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
            format!("put rev-NAT {id} ({addr}:{port})")
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
    use crate::dataplane::plan::describe;

    /// `addr -> backend id` of everything programmed.
    fn backend_ids(maps: &FakeMaps) -> BTreeMap<String, u32> {
        let contents = &maps.contents.backends;
        contents
            .iter()
            .map(|(id, value)| (abi::backend_addr_of(value).to_string(), *id))
            .collect()
    }

    #[test]
    fn passes_keep_ids_and_write_only_changes() {
        type Step = (&'static str, Spec<'static>, &'static [(&'static str, usize)]);
        let steps: &[Step] = &[
            (
                "first sync",
                &[("10.96.0.10:80/TCP", &["10.244.1.2:8080", "10.244.2.2:8080"])],
                &[("put_backend", 2), ("put_maglev_row", 4), ("put_rev_nat", 1), ("put_service", 3)],
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
                &[("put_backend", 1), ("put_maglev_row", 4), ("put_service", 2)],
            ),
            (
                "an endpoint is removed: slots shift, the table changes, the last slot and the backend go",
                &[("10.96.0.10:80/TCP", &["10.244.2.2:8080", "10.244.3.2:8080"])],
                &[("delete_backend", 1), ("delete_service", 1), ("put_maglev_row", 4), ("put_service", 3)],
            ),
            (
                "everything is removed",
                &[],
                &[("delete_backend", 2), ("delete_maglev_row", 4), ("delete_rev_nat", 1), ("delete_service", 3)],
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
        assert!(message.contains("put backend 4 (10.244.4.2:80)"), "{message}");
        maps.check_consistent().unwrap();
        let described: Vec<String> = describe(&maps.contents).iter().map(ToString::to_string).collect();
        assert_eq!(
            described,
            [
                "10.96.0.10:80/TCP rev-nat 1 -> #1 10.244.1.2:80 #2 10.244.2.2:80",
                "10.96.0.30:80/TCP rev-nat 2 -> #1 10.244.1.2:80",
            ],
            "a keeps its old version whole, c is written"
        );
        for (key, value) in &programmed_old.services {
            assert_eq!(maps.contents.services.get(key), Some(value), "a's old entry {key:?}");
        }
        assert_eq!(maps.contents.maglev.len(), 2 * 4, "a's old table and c's");

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
        let described: Vec<String> = describe(&maps.contents).iter().map(ToString::to_string).collect();
        assert_eq!(described, ["10.96.0.10:80/TCP rev-nat 1 -> #1 10.244.1.2:80 #2 10.244.2.2:80"]);
        maps.check_consistent().unwrap();
    }
}
