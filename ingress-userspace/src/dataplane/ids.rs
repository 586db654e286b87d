//! The ids of map entries: which one each object has in the maps (kept
//! between passes, so that re-planning one Service port does not first index
//! every entry of the maps), and how a plan hands out new ones.

use std::hash::Hash;
use std::net::IpAddr;

use foldhash::{HashMap, HashSet};

use ingress_common::maps::SCOPE_EXTERNAL;

use super::{MapContents, abi};
use crate::model::{BackendAddr, Frontend};

/// Where the search for a new object's id starts.
#[derive(Clone, Copy)]
pub enum IdStart {
    /// The smallest free id >= 1, so that ids which index arrays (rev-NAT ids
    /// index the per-frontend counters) stay dense.
    Smallest,
    /// A hash of the object. Conntrack and affinity entries name backends by
    /// id, and an id freed one pass and handed to another pod the next would
    /// send every flow still naming it to that pod (a client reusing its
    /// ports after TIME_WAIT found exactly that). Spread over 2^32 ids, a
    /// freed id is practically never handed on, and a pod that comes back
    /// gets its old id.
    Hashed,
}

/// The ids of one kind of object in some map contents.
#[derive(Clone, Debug)]
pub struct KnownIds<K> {
    by_object: HashMap<K, u32>,
    /// Ids in use, with how many objects hold each: a Service port's
    /// frontends share one Maglev table, and the table's id is free only
    /// once the last of them is removed.
    taken: HashMap<u32, usize>,
}

impl<K> Default for KnownIds<K> {
    fn default() -> Self {
        KnownIds { by_object: HashMap::default(), taken: HashMap::default() }
    }
}

impl<K: Hash + Eq + Copy> KnownIds<K> {
    /// Added in ascending id order, an object held twice keeps its smallest
    /// id and the other is garbage for the diff.
    fn insert(&mut self, object: K, id: u32) {
        self.by_object.entry(object).or_insert(id);
        *self.taken.entry(id).or_default() += 1;
    }

    fn remove(&mut self, object: K, id: u32) {
        if let Some(holders) = self.taken.get_mut(&id) {
            *holders -= 1;
            if *holders == 0 {
                self.taken.remove(&id);
            }
        }
        if self.by_object.get(&object) == Some(&id) {
            self.by_object.remove(&object);
        }
    }
}

/// The ids of the backends, rev-NAT entries and Maglev tables (by frontend)
/// of some map contents.
#[derive(Clone, Debug, Default)]
pub struct IdIndex {
    pub backends: KnownIds<BackendAddr>,
    pub rev_nat: KnownIds<(IpAddr, u16)>,
    pub tables: KnownIds<Frontend>,
}

impl IdIndex {
    pub fn of(contents: &MapContents) -> IdIndex {
        let mut index = IdIndex::default();
        index.add(contents);
        index
    }

    /// Entries written over the contents (after `remove` of those they replace).
    pub fn add(&mut self, contents: &MapContents) {
        for (id, value) in &contents.backends {
            self.backends.insert(abi::backend_addr_of(value), *id);
        }
        for (id, value) in &contents.rev_nat {
            self.rev_nat.insert(abi::rev_nat_of(value), *id);
        }
        for (frontend, table) in tables(contents) {
            self.tables.insert(frontend, table);
        }
    }

    /// Entries deleted from the contents, or about to be replaced.
    pub fn remove(&mut self, contents: &MapContents) {
        for (id, value) in &contents.backends {
            self.backends.remove(abi::backend_addr_of(value), *id);
        }
        for (id, value) in &contents.rev_nat {
            self.rev_nat.remove(abi::rev_nat_of(value), *id);
        }
        for (frontend, table) in tables(contents) {
            self.tables.remove(frontend, table);
        }
    }
}

/// The Maglev table each frontend's header names.
fn tables(contents: &MapContents) -> impl Iterator<Item = (Frontend, u32)> + '_ {
    contents
        .services
        .iter()
        .filter(|(key, header)| key.slot == 0 && key.scope == SCOPE_EXTERNAL && header.backend_id != 0)
        .filter_map(|(key, header)| Some((abi::frontend_of(key)?, header.backend_id)))
}

/// Hands out ids in one plan: the one an object already has unless the plan
/// gave it to another object already (frontends that shared a Maglev table
/// and are now in different Service ports), else a free id (at least 1)
/// found from where `start` says. An id being removed is
/// not recycled in the same plan: the flows that still name it must find no
/// backend (and be re-balanced), not silently a different one.
pub struct Ids<'a, K> {
    known: &'a KnownIds<K>,
    /// Ids handed out by this plan.
    taken_here: HashSet<u32>,
    assigned: HashMap<K, u32>,
    start: IdStart,
    next: u32,
}

impl<'a, K: Hash + Eq + Copy> Ids<'a, K> {
    pub fn new(start: IdStart, known: &'a KnownIds<K>) -> Self {
        Ids { known, taken_here: HashSet::default(), assigned: HashMap::default(), start, next: 1 }
    }

    fn taken(&self, id: u32) -> bool {
        self.known.taken.contains_key(&id) || self.taken_here.contains(&id)
    }

    pub fn get(&mut self, key: K) -> u32 {
        if let Some(&id) = self.assigned.get(&key) {
            return id;
        }
        let known = self.known.by_object.get(&key).copied().filter(|id| !self.taken_here.contains(id));
        let id = match (known, self.start) {
            (Some(id), _) => id,
            (None, IdStart::Smallest) => {
                while self.taken(self.next) {
                    self.next += 1;
                }
                self.next
            }
            (None, IdStart::Hashed) => {
                let mut hasher = std::hash::DefaultHasher::new();
                key.hash(&mut hasher);
                let mut id = std::hash::Hasher::finish(&hasher) as u32;
                while id == 0 || self.taken(id) {
                    id = id.wrapping_add(1);
                }
                id
            }
        };
        self.taken_here.insert(id);
        self.assigned.insert(key, id);
        id
    }

    /// The ids handed out so far, by object.
    pub fn assigned(&self) -> &HashMap<K, u32> {
        &self.assigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(entries: &[(u64, u32)]) -> KnownIds<u64> {
        let mut known = KnownIds::default();
        for &(object, id) in entries {
            known.insert(object, id);
        }
        known
    }

    #[test]
    fn a_hashed_id_that_is_taken_moves_to_the_next_free_one() {
        let key = 7u64;
        let empty = known(&[]);
        let id = Ids::new(IdStart::Hashed, &empty).get(key);
        let crowded = known(&[(8, id), (9, id.wrapping_add(1))]);
        let moved = Ids::new(IdStart::Hashed, &crowded).get(key);
        assert_eq!(moved, if id.wrapping_add(2) == 0 { 1 } else { id.wrapping_add(2) });
        let sparse = known(&[(8, 1), (9, 3)]);
        let mut smallest = Ids::new(IdStart::Smallest, &sparse);
        assert_eq!((smallest.get(key), smallest.get(10), smallest.get(8)), (2, 4, 1));
    }

    #[test]
    fn removing_an_object_frees_its_id_and_a_duplicate_keeps_the_smallest() {
        let mut ids = known(&[(8, 1), (8, 5), (9, 2)]);
        assert_eq!(Ids::new(IdStart::Smallest, &ids).get(8), 1);
        ids.remove(9, 2);
        let mut after = Ids::new(IdStart::Smallest, &ids);
        assert_eq!((after.get(9), after.get(8)), (2, 1));
        // The duplicate's id stays taken until it is removed too.
        ids.remove(8, 1);
        assert_eq!(Ids::new(IdStart::Smallest, &ids).get(10), 1);
        assert!(ids.taken.contains_key(&5));
    }

    #[test]
    fn an_id_held_by_several_objects_is_free_once_the_last_is_removed() {
        let mut ids = known(&[(8, 1), (9, 1), (10, 2)]);
        ids.remove(8, 1);
        assert_eq!(Ids::new(IdStart::Smallest, &ids).get(11), 3, "9 still holds 1");
        ids.remove(9, 1);
        assert_eq!(Ids::new(IdStart::Smallest, &ids).get(11), 1);
    }

    #[test]
    fn an_id_two_objects_know_goes_to_the_first_asking_and_the_other_gets_a_free_one() {
        let shared = known(&[(8, 1), (9, 1), (10, 2)]);
        let mut ids = Ids::new(IdStart::Smallest, &shared);
        assert_eq!((ids.get(9), ids.get(8), ids.get(10), ids.get(9)), (1, 3, 2, 1));
    }
}
