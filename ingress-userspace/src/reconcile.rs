//! One reconciliation pass: read what the maps hold, plan the desired state
//! with the ids already in use, and write only the differences, in order.
//!
//! The maps are the only state: after a failed write (a full map, say) the
//! next pass reads the partial result and carries on from there.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;
use ingress_common::maps::ServiceKey;

use crate::dataplane::diff::diff;
use crate::dataplane::plan::plan;
use crate::dataplane::{MapContents, MapOp, MapWriter, abi};
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
    }
}

pub fn reconcile(writer: &mut dyn MapWriter, desired: &DesiredState) -> anyhow::Result<ReconcileReport> {
    let current = writer.read().context("reading the dataplane maps")?;
    let planned = plan(desired, &current);
    let ops = diff(&current, &planned);
    let mut report = ReconcileReport {
        frontends: desired.frontends.len(),
        backends: planned.backends.len(),
        ..ReconcileReport::default()
    };
    for (index, op) in ops.iter().enumerate() {
        writer
            .apply(op)
            .with_context(|| format!("map write {} of {} failed: {}", index + 1, ops.len(), describe_op(op)))?;
        *report.ops.entry(op_kind(op)).or_default() += 1;
    }
    let removed: BTreeSet<u32> =
        ops.iter().filter_map(|op| if let MapOp::DeleteBackend(id) = op { Some(*id) } else { None }).collect();
    if !removed.is_empty() {
        // Not an error of the pass: the backends are gone either way, and a
        // retry would not know which ones to flush. The sweep gets the rest.
        match writer.flush_udp_flows(&removed) {
            Ok(flushed) => report.udp_flows_flushed = flushed,
            Err(error) => tracing::warn!("flushing the UDP flows of removed backends failed: {error:#}"),
        }
    }
    report.planned = planned;
    Ok(report)
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
                &[("put_backend", 2), ("put_rev_nat", 1), ("put_service", 3)],
            ),
            (
                "same state again",
                &[("10.96.0.10:80/TCP", &["10.244.1.2:8080", "10.244.2.2:8080"])],
                &[],
            ),
            (
                "an endpoint is added: one backend, one slot, the header",
                &[(
                    "10.96.0.10:80/TCP",
                    &["10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"],
                )],
                &[("put_backend", 1), ("put_service", 2)],
            ),
            (
                "an endpoint is removed: slots shift, the last slot and the backend go",
                &[("10.96.0.10:80/TCP", &["10.244.2.2:8080", "10.244.3.2:8080"])],
                &[("delete_backend", 1), ("delete_service", 1), ("put_service", 3)],
            ),
            (
                "everything is removed",
                &[],
                &[("delete_backend", 2), ("delete_rev_nat", 1), ("delete_service", 3)],
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
    fn a_failed_write_stops_the_pass_and_the_next_pass_finishes() {
        let desired = desired_state(&[(
            "10.96.0.10:80/TCP",
            &["10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"],
        )]);
        let mut maps = FakeMaps {
            capacity: Capacity {
                backends: Some(2),
                ..Capacity::default()
            },
            ..FakeMaps::default()
        };

        let error = reconcile(&mut maps, &desired).unwrap_err();
        assert!(
            format!("{error:#}").contains("put backend 3 (10.244.3.2:8080)"),
            "{error:#}"
        );
        assert_eq!(maps.log.len(), 2);
        maps.check_consistent().unwrap();

        maps.capacity = Capacity::default();
        let report = reconcile(&mut maps, &desired).unwrap();
        assert_eq!(report.ops.values().sum::<usize>(), 1 + 1 + 4);
        assert_eq!(describe(&maps.contents)[0].backends.len(), 3);
        assert!(reconcile(&mut maps, &desired).unwrap().ops.is_empty());
    }
}
