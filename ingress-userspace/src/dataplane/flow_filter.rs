//! The flow filter the programs ask before their large-map lookups (see
//! `ingress_common::flow_filter`), kept in step with the map writes: how
//! many frontends and backends stand behind each bit, so that a bit is
//! cleared when its last one goes, and the order of the filter's writes
//! around the maps' (a bit is set before its entry appears and cleared
//! after it is gone).

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use ingress_common::addr::Addr;
use ingress_common::flow_filter::{
    FILTER_BACKENDS, FILTER_FRONTENDS, FILTER_REMOTE_BACKENDS, FILTER_SETS, FLOW_FILTER_READY, FlowFilter, flow_filter_bit,
};
use ingress_common::maps::{BACKEND_FLAG_LOCAL, Backend, SCOPE_EXTERNAL, ServiceKey};

use super::{MapContents, MapOp};

/// The filter of the maps' current contents, and what it is made of.
pub struct FilterState {
    filter: Box<FlowFilter>,
    /// Per set, how many entries stand behind each set bit.
    counts: [HashMap<u32, u32>; FILTER_SETS],
    /// The frontend headers and backends the maps hold.
    headers: HashSet<ServiceKey>,
    backends: HashMap<u32, Backend>,
    /// Whether the filter went out since it was made from the maps: the
    /// pinned one may be another's until then (not ready, as a map just
    /// created after an upgrade, when nothing else changes).
    written: bool,
}

/// The filter writes around a run of map writes: `before` them (the old
/// and new bits together), `after` them (the new bits); none where nothing
/// changes.
#[derive(Debug, Default)]
pub struct FilterWrites {
    pub before: Option<Box<FlowFilter>>,
    pub after: Option<Box<FlowFilter>>,
}

/// A `SERVICES` entry the programs look up first: the header of a frontend
/// for all clients.
fn is_frontend_header(key: &ServiceKey) -> bool {
    key.scope == SCOPE_EXTERNAL && key.slot == 0
}

/// The sets a backend is in.
fn backend_sets(backend: &Backend) -> &'static [usize] {
    if backend.flags & BACKEND_FLAG_LOCAL != 0 { &[FILTER_BACKENDS] } else { &[FILTER_BACKENDS, FILTER_REMOTE_BACKENDS] }
}

impl FilterState {
    /// The filter of `contents`.
    pub fn of(contents: &MapContents) -> FilterState {
        let mut state = FilterState {
            filter: Box::new(FlowFilter { ready: FLOW_FILTER_READY, ..FlowFilter::EMPTY }),
            counts: Default::default(),
            headers: HashSet::new(),
            backends: HashMap::new(),
            written: false,
        };
        for key in contents.services.keys() {
            state.put_header(key);
        }
        for (id, backend) in &contents.backends {
            state.put_backend(*id, backend);
        }
        state
    }

    pub fn filter(&self) -> &FlowFilter {
        &self.filter
    }

    /// Takes `ops` in (as if all were written) and says how to write the
    /// filter around them; the first time, `before` in any case.
    pub fn take(&mut self, ops: &[MapOp]) -> FilterWrites {
        // Runs of Maglev rows, reverse-NAT and source-range entries: the
        // filter stays as it is, and two copies of it (48 KiB each) and
        // their compare are not made.
        let about_filter = |op: &MapOp| {
            matches!(op, MapOp::PutService(..) | MapOp::DeleteService(_) | MapOp::PutBackend(..) | MapOp::DeleteBackend(_))
        };
        if self.written && !ops.iter().any(about_filter) {
            return FilterWrites::default();
        }
        let first = !std::mem::replace(&mut self.written, true);
        let old = self.filter.clone();
        for op in ops {
            match op {
                MapOp::PutService(key, _) => self.put_header(key),
                MapOp::DeleteService(key) if self.headers.remove(key) => self.count(FILTER_FRONTENDS, &key.addr, key.port, false),
                MapOp::PutBackend(id, backend) => self.put_backend(*id, backend),
                MapOp::DeleteBackend(id) => self.delete_backend(*id),
                _ => {}
            }
        }
        if *self.filter == *old {
            return FilterWrites { before: first.then_some(old), after: None };
        }
        let mut widened = old.clone();
        for (wide, new) in widened.sets.iter_mut().zip(&self.filter.sets) {
            for (word, bits) in wide.iter_mut().zip(new) {
                *word |= bits;
            }
        }
        let after = (*widened != *self.filter).then(|| self.filter.clone());
        let before = (first || *widened != *old).then_some(widened);
        FilterWrites { before, after }
    }

    fn put_header(&mut self, key: &ServiceKey) {
        if is_frontend_header(key) && self.headers.insert(*key) {
            self.count(FILTER_FRONTENDS, &key.addr, key.port, true);
        }
    }

    fn put_backend(&mut self, id: u32, backend: &Backend) {
        self.delete_backend(id);
        for &set in backend_sets(backend) {
            self.count(set, &backend.addr, backend.port, true);
        }
        self.backends.insert(id, *backend);
    }

    fn delete_backend(&mut self, id: u32) {
        if let Some(old) = self.backends.remove(&id) {
            for &set in backend_sets(&old) {
                self.count(set, &old.addr, old.port, false);
            }
        }
    }

    /// One entry more (`up`) or fewer behind the bit of `addr`:`port` in `set`.
    fn count(&mut self, set: usize, addr: &Addr, port: u16, up: bool) {
        let bit = flow_filter_bit(addr, port);
        let counts = &mut self.counts[set];
        let count = counts.entry(bit).or_default();
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
        }
        let word = &mut self.filter.sets[set][bit as usize / 64];
        let mask = 1u64 << (bit % 64);
        if *count == 0 {
            counts.remove(&bit);
            *word &= !mask;
        } else {
            *word |= mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_common::maps::{SCOPE_LOCAL, ServiceValue};

    fn addr(last: u8) -> Addr {
        Addr::from_v4(u32::from_ne_bytes([10, 0, 0, last]))
    }

    fn header(last: u8, port: u16) -> ServiceKey {
        ServiceKey { addr: addr(last), port: port.to_be(), proto: 6, scope: SCOPE_EXTERNAL, slot: 0, _pad: [0; 2] }
    }

    fn backend(last: u8, port: u16, flags: u8) -> Backend {
        Backend { addr: addr(last), port: port.to_be(), state: 0, flags }
    }

    /// Which of the probes each set may hold.
    fn held(filter: &FlowFilter, probes: &[(u8, u16)]) -> [Vec<(u8, u16)>; FILTER_SETS] {
        std::array::from_fn(|set| {
            probes.iter().filter(|(last, port)| filter.may_hold(set, &addr(*last), port.to_be())).copied().collect()
        })
    }

    const PROBES: [(u8, u16); 4] = [(1, 80), (2, 8080), (3, 8080), (4, 9090)];

    #[test]
    fn frontend_headers_and_backends_set_their_bits_and_clear_them_when_the_last_goes() {
        let value = ServiceValue::default();
        type Sets = [&'static [(u8, u16)]; FILTER_SETS];
        let cases: &[(&str, Vec<MapOp>, Sets)] = &[
            ("a frontend header", vec![MapOp::PutService(header(1, 80), value)], [&[(1, 80)], &[], &[]]),
            (
                "slots and local-scope headers are not looked up first",
                vec![
                    MapOp::PutService(ServiceKey { slot: 1, ..header(1, 80) }, value),
                    MapOp::PutService(ServiceKey { scope: SCOPE_LOCAL, ..header(1, 80) }, value),
                ],
                [&[], &[], &[]],
            ),
            (
                "a local backend, and one on another node",
                vec![MapOp::PutBackend(1, backend(2, 8080, BACKEND_FLAG_LOCAL)), MapOp::PutBackend(2, backend(3, 8080, 0))],
                [&[], &[(2, 8080), (3, 8080)], &[(3, 8080)]],
            ),
            (
                "a backend replaced by another value moves its bits",
                vec![MapOp::PutBackend(1, backend(2, 8080, 0)), MapOp::PutBackend(1, backend(4, 9090, BACKEND_FLAG_LOCAL))],
                [&[], &[(4, 9090)], &[]],
            ),
            (
                "removed, the last one clears its bit",
                vec![MapOp::PutService(header(1, 80), value), MapOp::DeleteService(header(1, 80)), MapOp::PutBackend(1, backend(2, 8080, 0)), MapOp::DeleteBackend(1)],
                [&[], &[], &[]],
            ),
            (
                "two backends of one address and port: the bit stays while one is left",
                vec![MapOp::PutBackend(1, backend(2, 8080, 0)), MapOp::PutBackend(2, backend(2, 8080, 0)), MapOp::DeleteBackend(1)],
                [&[], &[(2, 8080)], &[(2, 8080)]],
            ),
            (
                "deleting what is not there changes nothing",
                vec![MapOp::PutBackend(1, backend(2, 8080, 0)), MapOp::DeleteBackend(9), MapOp::DeleteService(header(2, 8080))],
                [&[], &[(2, 8080)], &[(2, 8080)]],
            ),
        ];
        for (name, ops, expected) in cases {
            let mut state = FilterState::of(&MapContents::default());
            state.take(ops);
            let expected: [Vec<(u8, u16)>; FILTER_SETS] = expected.map(|set| set.to_vec());
            assert_eq!(held(state.filter(), &PROBES), expected, "{name}");
            assert_eq!(*state.filter(), *FilterState::of(&contents_after(ops)).filter(), "{name}: as if read from the maps");
        }
    }

    /// The maps' contents after `ops`, from empty.
    fn contents_after(ops: &[MapOp]) -> MapContents {
        let mut contents = MapContents::default();
        for op in ops {
            match op {
                MapOp::PutService(key, value) => {
                    contents.services.insert(*key, *value);
                }
                MapOp::DeleteService(key) => {
                    contents.services.remove(key);
                }
                MapOp::PutBackend(id, value) => {
                    contents.backends.insert(*id, *value);
                }
                MapOp::DeleteBackend(id) => {
                    contents.backends.remove(id);
                }
                _ => {}
            }
        }
        contents
    }

    #[test]
    fn the_filter_of_what_the_maps_hold_goes_out_once_even_when_nothing_changes() {
        let contents = contents_after(&[MapOp::PutBackend(1, backend(2, 8080, 0))]);
        let mut state = FilterState::of(&contents);
        let first = state.take(&[]).before.expect("the first pass writes the filter");
        assert_eq!(held(&first, &PROBES), [vec![], vec![(2, 8080)], vec![(2, 8080)]]);
        assert_eq!(first.ready, FLOW_FILTER_READY);
        let again = state.take(&[]);
        assert!(again.before.is_none() && again.after.is_none(), "then only changes");
    }

    #[test]
    fn bits_are_set_before_the_writes_and_cleared_after_them() {
        let value = ServiceValue::default();
        let mut state = FilterState::of(&MapContents::default());
        state.take(&[]);
        let writes = state.take(&[MapOp::PutService(header(1, 80), value), MapOp::PutBackend(1, backend(2, 8080, 0))]);
        let before = writes.before.expect("new bits are written before the entries");
        assert_eq!(held(&before, &PROBES), [vec![(1, 80)], vec![(2, 8080)], vec![(2, 8080)]]);
        assert!(writes.after.is_none(), "nothing to clear");

        let writes = state.take(&[MapOp::PutBackend(2, backend(4, 9090, BACKEND_FLAG_LOCAL)), MapOp::DeleteBackend(1)]);
        let before = writes.before.expect("the new backend's bit before its entry");
        assert_eq!(held(&before, &PROBES), [vec![(1, 80)], vec![(2, 8080), (4, 9090)], vec![(2, 8080)]], "old bits kept meanwhile");
        let after = writes.after.expect("the removed backend's bits after");
        assert_eq!(held(&after, &PROBES), [vec![(1, 80)], vec![(4, 9090)], vec![]]);

        let writes = state.take(&[MapOp::DeleteService(header(1, 80))]);
        assert!(writes.before.is_none(), "nothing new to set");
        assert_eq!(held(&writes.after.expect("cleared after"), &PROBES), [vec![], vec![(4, 9090)], vec![]]);

        let writes = state.take(&[MapOp::DeleteRevNat(3)]);
        assert!(writes.before.is_none() && writes.after.is_none(), "other maps' writes leave the filter alone");
        assert_eq!(state.filter().ready, FLOW_FILTER_READY);
    }
}
