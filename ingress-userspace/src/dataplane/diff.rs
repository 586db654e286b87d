//! The map writes that turn the current contents into the desired ones.
//!
//! Packets are forwarded while the writes happen, one at a time, so the order
//! is chosen for every intermediate state to be usable: a backend exists
//! before a slot names it, a slot before a Maglev row names it, slots and
//! rows exist before a header counts or names them, and a header stops counting slots (or names
//! another table) before they are deleted. A frontend's source ranges are
//! written before its header asks for them and deleted after.

use std::collections::BTreeMap;

use super::{MapContents, MapOp};

/// Entries of `to` that `from` lacks or holds with another value.
fn changed<'a, K: Ord, V: PartialEq>(
    from: &'a BTreeMap<K, V>,
    to: &'a BTreeMap<K, V>,
) -> impl Iterator<Item = (&'a K, &'a V)> {
    to.iter().filter(move |(key, value)| from.get(key) != Some(value))
}

/// Keys of `from` that `to` lacks.
fn removed<'a, K: Ord, V>(from: &'a BTreeMap<K, V>, to: &'a BTreeMap<K, V>) -> impl Iterator<Item = &'a K> {
    from.keys().filter(move |key| !to.contains_key(key))
}

/// Only the differences; equal contents give no op, so a retry after a
/// partial failure writes just what is still missing.
pub fn diff(current: &MapContents, desired: &MapContents) -> Vec<MapOp> {
    let mut ops = puts(current, desired);
    ops.extend(removals(current, desired));
    ops
}

/// The first half of [`diff`]: the entries `desired` adds or changes.
fn puts(current: &MapContents, desired: &MapContents) -> Vec<MapOp> {
    let mut ops = Vec::new();
    ops.extend(changed(&current.backends, &desired.backends).map(|(id, value)| MapOp::PutBackend(*id, *value)));
    ops.extend(changed(&current.rev_nat, &desired.rev_nat).map(|(id, value)| MapOp::PutRevNat(*id, *value)));
    ops.extend(desired.source_ranges.difference(&current.source_ranges).map(|entry| MapOp::PutSourceRange(*entry)));
    let services = || changed(&current.services, &desired.services);
    ops.extend(
        services()
            .filter(|(key, _)| key.slot != 0)
            .map(|(key, value)| MapOp::PutService(*key, *value)),
    );
    ops.extend(
        changed(&current.maglev, &desired.maglev).map(|(key, row)| MapOp::PutMaglevRow(*key, row.clone())),
    );
    ops.extend(
        services()
            .filter(|(key, _)| key.slot == 0)
            .map(|(key, value)| MapOp::PutService(*key, *value)),
    );
    ops
}

/// The second half of [`diff`]: the entries of `current` that `desired`
/// lacks, once the first half made every other one what `desired` says.
pub fn removals(current: &MapContents, desired: &MapContents) -> Vec<MapOp> {
    let mut ops = Vec::new();
    let gone = || removed(&current.services, &desired.services);
    ops.extend(gone().filter(|key| key.slot == 0).map(|key| MapOp::DeleteService(*key)));
    ops.extend(gone().filter(|key| key.slot != 0).map(|key| MapOp::DeleteService(*key)));
    ops.extend(removed(&current.maglev, &desired.maglev).map(|key| MapOp::DeleteMaglevRow(*key)));
    ops.extend(removed(&current.backends, &desired.backends).map(|id| MapOp::DeleteBackend(*id)));
    ops.extend(removed(&current.rev_nat, &desired.rev_nat).map(|id| MapOp::DeleteRevNat(*id)));
    ops.extend(current.source_ranges.difference(&desired.source_ranges).map(|entry| MapOp::DeleteSourceRange(*entry)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::fake::{FakeMaps, Spec};
    use crate::dataplane::plan::planned;
    use crate::dataplane::sizes::MapSizes;
    use crate::dataplane::{MapWriter, abi};
    use ingress_common::maps::MaglevKey;

    /// Applies the diff from `from` to `to` one op at a time, checking after
    /// each op what a packet could see, and that the end state is `to`.
    fn apply_checked(from: &MapContents, to: &MapContents) -> Vec<MapOp> {
        let ops = diff(from, to);
        let mut maps = FakeMaps {
            contents: from.clone(),
            ..FakeMaps::default()
        };
        for (index, op) in ops.iter().enumerate() {
            maps.apply(op).unwrap();
            if let Err(problem) = maps.check_consistent() {
                panic!("after op {index} {op:?}: {problem}\nops: {ops:#?}");
            }
        }
        assert_eq!(&maps.contents, to);
        ops
    }

    #[test]
    fn every_intermediate_state_is_consistent() {
        let a: Spec = &[
            ("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80", "10.1.0.3:80"]),
            ("10.0.0.2:53/UDP", &["10.1.0.9:53"]),
        ];
        let cases: &[(&str, Spec, Spec)] = &[
            ("from nothing", &[], a),
            ("to nothing", a, &[]),
            (
                "grow",
                &[("10.0.0.1:80/TCP", &["10.1.0.1:80"])],
                &[("10.0.0.1:80/TCP", &["10.1.0.0:80", "10.1.0.1:80", "10.1.0.2:80"])],
            ),
            (
                "shrink",
                a,
                &[
                    ("10.0.0.1:80/TCP", &["10.1.0.2:80"]),
                    ("10.0.0.2:53/UDP", &["10.1.0.9:53"]),
                ],
            ),
            (
                "replace all backends",
                a,
                &[
                    ("10.0.0.1:80/TCP", &["10.1.0.7:80", "10.1.0.8:80"]),
                    ("10.0.0.2:53/UDP", &["10.1.0.6:53"]),
                ],
            ),
            (
                "to zero backends",
                a,
                &[("10.0.0.1:80/TCP", &[]), ("10.0.0.2:53/UDP", &[])],
            ),
            (
                "swap frontends",
                a,
                &[
                    ("10.0.0.3:80/TCP", &["10.1.0.1:80"]),
                    ("10.0.0.2:53/UDP", &["10.1.0.1:80", "10.1.0.5:53"]),
                ],
            ),
        ];
        for (name, from, to) in cases {
            let from = planned(from, &MapContents::default());
            let to = planned(to, &from);
            assert!(!apply_checked(&from, &to).is_empty(), "{name}");
            apply_checked(&to, &MapContents::default());
            assert!(diff(&to, &to).is_empty(), "{name}: equal contents give an empty diff");
        }
    }

    #[test]
    fn slot_puts_follow_the_backend_puts_they_name() {
        let from = planned(&[("10.0.0.1:80/TCP", &["10.1.0.1:80"])], &MapContents::default());
        let to = planned(&[("10.0.0.1:80/TCP", &["10.1.0.2:80", "10.1.0.3:80"])], &from);
        let ops = diff(&from, &to);
        for (index, op) in ops.iter().enumerate() {
            if let MapOp::PutService(key, value) = op
                && key.slot != 0
            {
                let put = ops
                    .iter()
                    .position(|op| matches!(op, MapOp::PutBackend(id, _) if *id == value.backend_id));
                assert!(
                    put.is_some_and(|put| put < index),
                    "slot op {index} before its backend: {ops:#?}"
                );
            }
        }
        // Rows are rewritten after the new backends exist, before the header.
        let last_backend_put = ops.iter().rposition(|op| matches!(op, MapOp::PutBackend(..)));
        let header_put = ops.iter().position(|op| matches!(op, MapOp::PutService(key, _) if key.slot == 0));
        let rows: Vec<_> = (0..ops.len()).filter(|&i| matches!(ops[i], MapOp::PutMaglevRow(..))).collect();
        assert_eq!(rows.len(), MapSizes::default().rows_per_table() as usize, "{ops:#?}");
        assert!(rows.iter().all(|&row| Some(row) > last_backend_put && Some(row) < header_put), "{ops:#?}");
        // The old backend goes last, once no slot names it any more.
        let old_backend = *from.backends.keys().next().unwrap();
        assert!(matches!(ops.last(), Some(MapOp::DeleteBackend(id)) if *id == old_backend), "{ops:#?}");
    }

    #[test]
    fn removed_frontend_loses_its_header_first() {
        let from = planned(&[("10.0.0.1:80/TCP", &["10.1.0.1:80", "10.1.0.2:80"])], &MapContents::default());
        let ops = diff(&from, &MapContents::default());
        let header = abi::service_key(&abi::frontend_of(from.services.keys().next().unwrap()).unwrap(), 0);
        assert_eq!(ops[0], MapOp::DeleteService(header));
        let kinds: Vec<_> = ops.iter().map(std::mem::discriminant).collect();
        let rows = vec![MapOp::DeleteMaglevRow(MaglevKey::default()); MapSizes::default().rows_per_table() as usize];
        let expected = [vec![MapOp::DeleteService(header); 3], rows, vec![MapOp::DeleteBackend(0); 2], vec![MapOp::DeleteRevNat(0)]]
            .concat();
        assert_eq!(kinds, expected.iter().map(std::mem::discriminant).collect::<Vec<_>>());
    }
}
