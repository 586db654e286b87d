//! Maglev lookup tables (Eisenbud et al., NSDI'16, section 3.4), as the
//! programs read them: a frontend's flow takes entry hash(5-tuple) % M.
//!
//! Every node must compute the same table from the same backends, so the
//! table depends only on the backends' addresses (never on map ids or input
//! order) and on hashes defined here (not std's, which may change).

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::sync::atomic::{AtomicUsize, Ordering};

use foldhash::{HashMap, HashSet};

use ingress_common::maps::{MAGLEV_ROW_LEN, MaglevRow};

use crate::model::BackendAddr;

/// Smallest and largest accepted M. Below 101 the spread of a handful of
/// backends is coarse; 65521 is the largest prime under 2^16 and already
/// 256 KiB per frontend in the kernel.
pub const MIN_TABLE_SIZE: u32 = 101;
pub const MAX_TABLE_SIZE: u32 = 65_521;

/// Checks a configured M: prime (the permutations need M coprime with every
/// skip) and within bounds.
pub fn validate_table_size(size: u32) -> Result<u32, String> {
    if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&size) {
        return Err(format!("the Maglev table size {size} is outside {MIN_TABLE_SIZE}..={MAX_TABLE_SIZE}"));
    }
    if !is_prime(size) {
        return Err(format!("the Maglev table size {size} is not prime"));
    }
    Ok(size)
}

fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d: &u32| d * d <= n).all(|d| !n.is_multiple_of(d))
}

/// 64-bit FNV-1a over the seed and the bytes, then splitmix64's finaliser
/// (FNV alone mixes its last bytes poorly into the high bits).
fn hash(seed: u8, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in std::iter::once(&seed).chain(bytes) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The table of `size` entries for `backends`: entry i is the backend flows
/// hashing to i go to. Empty without backends. Duplicates count once.
pub fn table(backends: &[BackendAddr], size: u32) -> Vec<BackendAddr> {
    let mut backends = backends.to_vec();
    backends.sort();
    backends.dedup();
    let indices: Vec<u32> = (0..).take(backends.len()).collect();
    fill(&backends, &indices, u32::MAX, size).into_iter().map(|index| backends[index as usize]).collect()
}

/// The table of `size` entries over `backends` (sorted, without duplicates),
/// each entry the value of its backend in `values`; `free` is a value none
/// of them has. Written straight in the form the caller keeps (slots for the
/// programs' rows, indices for [`table`]), with no second pass to translate.
fn fill<T: Copy + PartialEq>(backends: &[BackendAddr], values: &[T], free: T, size: u32) -> Vec<T> {
    debug_assert!(backends.is_sorted_by(|a, b| a < b), "sorted, without duplicates");
    debug_assert!(values.len() == backends.len() && !values.contains(&free));
    if backends.is_empty() {
        return Vec::new();
    }
    let m = u64::from(size);
    // Each backend's preference list is offset, offset + skip, ... (mod M).
    let permutations: Vec<(u64, u64)> = backends
        .iter()
        .map(|backend| {
            // An IPv4 backend keeps its 4-byte identity, so the tables of
            // IPv4 Services are the same as before IPv6 existed.
            let mut identity = [0; 18];
            let len = match backend.addr {
                IpAddr::V4(v4) => {
                    identity[..4].copy_from_slice(&v4.octets());
                    4
                }
                IpAddr::V6(v6) => {
                    identity[..16].copy_from_slice(&v6.octets());
                    16
                }
            };
            identity[len..len + 2].copy_from_slice(&backend.port.to_be_bytes());
            let identity = &identity[..len + 2];
            (hash(0, identity) % m, hash(1, identity) % (m - 1) + 1)
        })
        .collect();
    // Each backend's next candidate, `offset + n * skip (mod M)` for its
    // n-th try, advanced by adding `skip` (no division per step).
    let mut next: Vec<u64> = permutations.iter().map(|(offset, _)| *offset).collect();
    let advance = |position: &mut u64, skip: u64| {
        *position += skip;
        if *position >= m {
            *position -= m;
        }
    };
    let mut entries = vec![free; size as usize];
    // Backends take turns claiming their next preferred free entry, so the
    // counts differ by at most one and a removal only frees its own entries
    // (plus a few claimed differently in the reshuffled turns).
    let mut turn = 0;
    for _ in 0..size {
        // In a local, not behind a reference into `next`: the probe loop
        // then keeps it in a register.
        let (mut position, skip) = (next[turn], permutations[turn].1);
        while entries[position as usize] != free {
            advance(&mut position, skip);
        }
        entries[position as usize] = values[turn];
        advance(&mut position, skip);
        next[turn] = position;
        turn = if turn + 1 == backends.len() { 0 } else { turn + 1 };
    }
    entries
}

/// A table's backend addresses (sorted, without duplicates), each with the
/// slot of the frontend its entries name.
pub type SlotSet = Vec<(BackendAddr, u16)>;

/// Tables' rows by their [`SlotSet`].
pub type Tables = HashMap<SlotSet, Vec<Arc<MaglevRow>>>;

/// The rows of the table of `size` entries over `slots`' addresses, as the
/// programs read them: each entry is its backend's slot; entries past the
/// table's end are 0.
pub fn rows(slots: &[(BackendAddr, u16)], size: u32) -> Vec<Arc<MaglevRow>> {
    let (addrs, values): (Vec<BackendAddr>, Vec<u16>) = slots.iter().copied().unzip();
    // Slots start at 1 (0 is the header), and 0 is what the programs read
    // as "no entry": it marks free entries while the table fills.
    let entries = fill(&addrs, &values, 0, size);
    let row = |chunk: &[u16]| {
        let mut row = MaglevRow { slots: [0; MAGLEV_ROW_LEN] };
        row.slots[..chunk.len()].copy_from_slice(chunk);
        Arc::new(row)
    };
    entries.chunks(MAGLEV_ROW_LEN).map(row).collect()
}

/// Fewer tables than this per thread are computed on the calling thread:
/// a thread costs more than a few tables.
const MIN_TABLES_PER_THREAD: usize = 64;

/// Sets a thread takes at a time: enough that taking them costs nothing,
/// few enough that the threads finish together.
const SETS_PER_TAKE: usize = 16;

/// The rows of a plan's distinct non-empty [`SlotSet`]s, computed by every
/// thread that calls
/// [`TableWork::help`]: helper threads while the planner plans everything
/// else, then the planner itself. A table depends on nothing but its set and
/// M, so the result is the same however the work is shared.
pub struct TableWork {
    distinct: Vec<SlotSet>,
    size: u32,
    /// The first set no thread has taken yet.
    next: AtomicUsize,
    computed: Vec<OnceLock<Vec<Arc<MaglevRow>>>>,
}

impl TableWork {
    pub fn new(sets: impl IntoIterator<Item = SlotSet>, size: u32) -> TableWork {
        let distinct: Vec<SlotSet> =
            sets.into_iter().filter(|set| !set.is_empty()).collect::<HashSet<_>>().into_iter().collect();
        let computed = distinct.iter().map(|_| OnceLock::new()).collect();
        TableWork { distinct, size, next: AtomicUsize::new(0), computed }
    }

    /// How many threads beside the planner's are worth starting on a
    /// machine of `cpus` CPUs.
    pub fn helpers(&self, cpus: usize) -> usize {
        cpus.saturating_sub(1).min(self.distinct.len() / MIN_TABLES_PER_THREAD)
    }

    /// Computes tables no thread has taken, until none is left.
    pub fn help(&self) {
        loop {
            let start = self.next.fetch_add(SETS_PER_TAKE, Ordering::Relaxed);
            if start >= self.distinct.len() {
                return;
            }
            let end = (start + SETS_PER_TAKE).min(self.distinct.len());
            for (set, table) in self.distinct[start..end].iter().zip(&self.computed[start..end]) {
                table.set(rows(set, self.size)).expect("each set is taken by one thread");
            }
        }
    }

    /// Every table (those no thread took are computed here).
    pub fn into_tables(self) -> Tables {
        self.help();
        let computed = self.computed.into_iter().map(|table| table.into_inner().expect("every set was taken"));
        self.distinct.into_iter().zip(computed).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn pods(count: u8) -> Vec<BackendAddr> {
        (1..=count).map(|i| BackendAddr { addr: Ipv4Addr::new(10, 244, i, 2).into(), port: 8080 }).collect()
    }

    fn counts(table: &[BackendAddr]) -> BTreeMap<BackendAddr, usize> {
        let mut counts = BTreeMap::new();
        for backend in table {
            *counts.entry(*backend).or_default() += 1;
        }
        counts
    }

    #[test]
    fn rows_name_each_entrys_slot_and_end_with_zeros() {
        let backends = pods(3);
        // Slots in another order than the addresses: entries name slots.
        let slots: SlotSet = backends.iter().copied().zip([3, 1, 2]).collect();
        for size in [1021, 2053] {
            let rows = rows(&slots, size);
            assert_eq!(rows.len(), size.div_ceil(MAGLEV_ROW_LEN as u32) as usize, "M={size}");
            let entries: Vec<u16> = rows.iter().flat_map(|row| row.slots).collect();
            let expected: Vec<u16> = table(&backends, size).iter().map(|b| slots.iter().find(|(addr, _)| addr == b).unwrap().1).collect();
            assert_eq!(entries[..size as usize], expected, "M={size}");
            assert!(entries[size as usize..].iter().all(|entry| *entry == 0), "M={size}: past the table's end");
        }
    }

    #[test]
    fn table_sizes_must_be_prime_and_within_bounds() {
        let cases = [(1021, true), (16381, true), (101, true), (65521, true), (1024, false), (97, false), (65537, false), (0, false)];
        for (size, ok) in cases {
            assert_eq!(validate_table_size(size).is_ok(), ok, "{size}");
        }
        assert!(validate_table_size(1023).unwrap_err().contains("not prime"));
    }

    #[test]
    fn every_backend_gets_its_share_to_one_entry() {
        // (backends, M)
        for (count, size) in [(1u8, 101u32), (3, 101), (10, 1021), (10, 16381), (100, 1021), (7, 65521)] {
            let table = table(&pods(count), size);
            assert_eq!(table.len(), size as usize);
            let counts = counts(&table);
            assert_eq!(counts.len(), count as usize, "{count} backends, M={size}: one has no entry");
            let share = size as usize / count as usize;
            for (backend, n) in counts {
                assert!((share..=share + 1).contains(&n), "{count} backends, M={size}: {backend} has {n} entries");
            }
        }
    }

    #[test]
    fn removing_or_adding_one_backend_moves_few_other_entries() {
        // (backends before, the one removed, M): entries that did not belong
        // to the removed backend and change, at most `limit` percent.
        for (count, removed, size, limit) in [(10u8, 0usize, 1021u32, 15.0), (10, 9, 1021, 15.0), (10, 4, 16381, 15.0), (100, 50, 16381, 15.0)] {
            let before_backends = pods(count);
            let mut after_backends = before_backends.clone();
            let gone = after_backends.remove(removed);
            let (before, after) = (table(&before_backends, size), table(&after_backends, size));
            let kept: Vec<_> = (0..size as usize).filter(|&i| before[i] != gone).collect();
            let moved = kept.iter().filter(|&&i| before[i] != after[i]).count();
            let percent = 100.0 * moved as f64 / kept.len() as f64;
            assert!(percent <= limit, "{count} backends, M={size}, remove #{removed}: {percent:.1}% moved");
            assert!(after.iter().all(|backend| *backend != gone));
            // Adding it back is the same change in reverse.
            assert_eq!(table(&before_backends, size), before);
        }
    }

    #[test]
    fn the_table_depends_only_on_the_set_of_backends() {
        let backends = pods(10);
        let mut shuffled = backends.clone();
        shuffled.reverse();
        shuffled.swap(2, 7);
        shuffled.push(backends[3]);
        let expected = table(&backends, 1021);
        for (name, input) in [("same input", backends.clone()), ("shuffled with a duplicate", shuffled)] {
            assert_eq!(table(&input, 1021), expected, "{name}");
        }
        // Pinned entries: a change to the hash or the fill order changes
        // every node's table, which must be a deliberate decision.
        let first: Vec<_> = expected[..4].iter().map(|b| third_octet(b.addr)).collect();
        assert_eq!(first, PINNED_FIRST_ENTRIES);
        assert!(table(&[], 1021).is_empty());
    }

    #[test]
    fn table_work_computes_each_distinct_set_once_whatever_the_threads() {
        let pods = pods(30);
        // 13 * 17 distinct sets, each twice: enough for three threads.
        let slotted = |set: &[BackendAddr]| -> SlotSet { (1..).zip(set).map(|(slot, addr)| (*addr, slot)).collect() };
        let many: Vec<SlotSet> = (0..2 * 13 * 17).map(|i| slotted(&pods[i % 13..i % 13 + 1 + i % 17])).collect();
        // (name, sets, helper threads, distinct tables expected)
        let cases: [(&str, Vec<SlotSet>, usize, usize); 6] = [
            ("nothing", vec![], 3, 0),
            ("an empty set has no table", vec![vec![]], 3, 0),
            ("one set", vec![slotted(&pods[..3])], 3, 1),
            ("a set named twice is one table", vec![slotted(&pods[..3]), slotted(&pods[1..4]), slotted(&pods[..3])], 1, 2),
            ("many sets, no helper", many.clone(), 0, 13 * 17),
            ("many sets, three helpers", many, 3, 13 * 17),
        ];
        for (name, sets, helpers, distinct) in cases {
            let work = TableWork::new(sets.clone(), 1021);
            std::thread::scope(|scope| {
                for _ in 0..helpers {
                    scope.spawn(|| work.help());
                }
            });
            let tables = work.into_tables();
            assert_eq!(tables.len(), distinct, "{name}");
            for set in sets.iter().filter(|set| !set.is_empty()) {
                assert_eq!(tables[set], rows(set, 1021), "{name}: {set:?}");
            }
        }
        assert_eq!(TableWork::new(vec![slotted(&pods[..3])], 1021).helpers(4), 0, "one table is not worth a thread");
        let distinct = || (0..13 * 17).map(|i| slotted(&pods[i % 13..i % 13 + 1 + i % 17]));
        assert_eq!(TableWork::new(distinct(), 1021).helpers(1), 0, "one CPU");
        assert_eq!(TableWork::new(distinct(), 1021).helpers(8), 3, "a thread per 64 tables");
    }

    #[test]
    fn whole_tables_are_pinned() {
        // (backends, M, FNV-1a of the entries' third octets): every entry,
        // where the test above pins four; any change to the fill shows.
        let cases = [
            (1u8, 101u32, 0x0595_6715_cf2e_25e8u64),
            (2, 1021, 0xe760_7ec3_43be_94d4),
            (3, 1021, 0x29ed_0a65_939f_1c4c),
            (10, 1021, 0x5399_6c3a_e3da_2622),
            (100, 16381, 0xc57b_3e8a_a834_c38e),
            (7, 65521, 0x8343_1aee_e1ea_b3d0),
        ];
        for (count, size, pinned) in cases {
            let fingerprint = table(&pods(count), size).iter().fold(0xcbf2_9ce4_8422_2325u64, |h, backend| {
                (h ^ u64::from(third_octet(backend.addr))).wrapping_mul(0x0000_0100_0000_01b3)
            });
            assert_eq!(fingerprint, pinned, "{count} backends, M={size}: {fingerprint:#x}");
        }
    }

    fn third_octet(addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(v4) => v4.octets()[2],
            IpAddr::V6(_) => panic!("{addr} is not one of `pods`"),
        }
    }

    /// Third octet of the pods owning entries 0..4 with `pods(10)`, M=1021.
    const PINNED_FIRST_ENTRIES: [u8; 4] = [4, 2, 9, 3];
}
