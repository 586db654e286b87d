//! Writing one Service port at a time, all or nothing: what its writes
//! replace, the writes that put that back, and the end state when it could
//! not be written (its frontends keep exactly what they had).

use std::collections::BTreeMap;

use ingress_common::maps::{MaglevKey, ServiceKey};

use super::{MapContents, MapOp, SourceRangeEntry};

/// The entries `maps` holds at the keys `part` has (what writing `part`
/// would replace; a key `maps` lacks stays absent).
pub fn entries_at(maps: &MapContents, part: &MapContents) -> MapContents {
    fn at<K: Ord + Copy, V: Clone>(map: &BTreeMap<K, V>, keys: &BTreeMap<K, impl Sized>) -> BTreeMap<K, V> {
        keys.keys().filter_map(|key| Some((*key, map.get(key)?.clone()))).collect()
    }
    MapContents {
        services: at(&maps.services, &part.services),
        backends: at(&maps.backends, &part.backends),
        rev_nat: at(&maps.rev_nat, &part.rev_nat),
        maglev: at(&maps.maglev, &part.maglev),
        source_ranges: maps.source_ranges.intersection(&part.source_ranges).copied().collect(),
    }
}

/// The writes that undo `applied` (puts over `before`), newest first.
pub fn undo(before: &MapContents, applied: &[MapOp]) -> Vec<MapOp> {
    applied
        .iter()
        .rev()
        .map(|op| match op {
            MapOp::PutBackend(id, _) | MapOp::DeleteBackend(id) => match before.backends.get(id) {
                Some(old) => MapOp::PutBackend(*id, *old),
                None => MapOp::DeleteBackend(*id),
            },
            MapOp::PutRevNat(id, _) | MapOp::DeleteRevNat(id) => match before.rev_nat.get(id) {
                Some(old) => MapOp::PutRevNat(*id, *old),
                None => MapOp::DeleteRevNat(*id),
            },
            MapOp::PutService(key, _) | MapOp::DeleteService(key) => match before.services.get(key) {
                Some(old) => MapOp::PutService(*key, *old),
                None => MapOp::DeleteService(*key),
            },
            MapOp::PutMaglevRow(key, _) | MapOp::DeleteMaglevRow(key) => match before.maglev.get(key) {
                Some(old) => MapOp::PutMaglevRow(*key, old.clone()),
                None => MapOp::DeleteMaglevRow(*key),
            },
            MapOp::PutSourceRange(entry) | MapOp::DeleteSourceRange(entry) => match before.source_ranges.contains(entry) {
                true => MapOp::PutSourceRange(*entry),
                false => MapOp::DeleteSourceRange(*entry),
            },
        })
        .collect()
}

/// Changes the end state `planned` so that the frontends of `part`, a
/// Service port that could not be written, keep what `written` holds for
/// them: their old headers, slots and Maglev rows, and the backends and
/// rev-NAT entries those name.
pub fn keep_unwritten(planned: &mut MapContents, written: &MapContents, part: &MapContents) {
    // Nothing of the new version stays...
    for key in part.services.keys() {
        planned.services.remove(key);
    }
    for key in part.maglev.keys() {
        planned.maglev.remove(key);
    }
    for entry in &part.source_ranges {
        planned.source_ranges.remove(entry);
    }
    // ...and all of the old one does.
    for header_key in part.services.keys().filter(|key| key.slot == 0) {
        let Some(header) = written.services.get(header_key) else { continue };
        for slot in 0..=header.count {
            let key = ServiceKey { slot, ..*header_key };
            let Some(value) = written.services.get(&key) else { continue };
            planned.services.insert(key, *value);
            if slot != 0 {
                keep(&mut planned.backends, &written.backends, value.backend_id);
            }
        }
        keep(&mut planned.rev_nat, &written.rev_nat, header.rev_nat_id);
        let own_ranges = |(_, range): &&SourceRangeEntry| range.rev_nat_id == header.rev_nat_id && range.proto == header_key.proto;
        planned.source_ranges.extend(written.source_ranges.iter().filter(own_ranges));
        let rows = MaglevKey { table: header.backend_id, row: 0 }..MaglevKey { table: header.backend_id + 1, row: 0 };
        // The rows name slots, kept just above with the backends they name.
        for (key, row) in written.maglev.range(rows).filter(|_| header.backend_id != 0) {
            planned.maglev.insert(*key, row.clone());
        }
    }
}

fn keep<V: Copy>(planned: &mut BTreeMap<u32, V>, written: &BTreeMap<u32, V>, id: u32) {
    if let Some(value) = written.get(&id) {
        planned.entry(id).or_insert(*value);
    }
}

/// Removes the backends and rev-NAT entries no slot or header names
/// (those only the new version of an unwritten Service port needed).
pub fn drop_unreferenced(planned: &mut MapContents) {
    let mut backends = std::collections::BTreeSet::new();
    let mut rev_nat = std::collections::BTreeSet::new();
    for (key, value) in &planned.services {
        if key.slot == 0 {
            rev_nat.insert(value.rev_nat_id);
        } else {
            backends.insert(value.backend_id);
        }
    }
    planned.backends.retain(|id, _| backends.contains(id));
    planned.rev_nat.retain(|id, _| rev_nat.contains(id));
}
