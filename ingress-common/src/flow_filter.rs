//! The flow filter (pinned array of one `FlowFilter`; written by the agent,
//! read by the programs): one bit per hash of an address and port, set for
//! every frontend, every backend and every backend on another node the maps
//! hold. A clear bit means "certainly not one", so a packet that can belong
//! to no translated flow skips the lookups in the large hash maps
//! (services, conntrack, SNAT), each a cache miss for it: on a pod veth,
//! the L7 proxy's connections to pods and the pods' other traffic; on an
//! uplink, everything addressed to the node itself. A set bit only means
//! "maybe": the lookups decide, as without the filter.
//!
//! The agent sets a bit before the entry it stands for is written and
//! clears it after the last such entry is gone, so a packet the maps would
//! translate is never filtered out. A backend removed while TCP flows still
//! use it stays in the backends map until they end (the agent's
//! `release_drained`), and so keeps its bit: its replies are still
//! translated.

use crate::addr::Addr;

/// Name of the pinned map.
pub const FLOW_FILTER_MAP: &str = "lb_flow_filter";
/// Bits per set: 2^17 (16 KiB), about 7% set at 10,000 distinct endpoints.
pub const FLOW_FILTER_BITS_LOG2: u32 = 17;
pub const FLOW_FILTER_WORDS: usize = (1 << FLOW_FILTER_BITS_LOG2) / 64;
/// The sets, by index in `FlowFilter::sets`: the frontends (`SERVICES`
/// headers) a client's packet is addressed to; every backend, which a reply
/// comes from (conntrack reply entries are keyed by it); the backends on
/// other nodes, which a source-translated flow goes to (`SNAT`).
pub const FILTER_FRONTENDS: usize = 0;
pub const FILTER_BACKENDS: usize = 1;
pub const FILTER_REMOTE_BACKENDS: usize = 2;
pub const FILTER_SETS: usize = 3;

/// `FlowFilter::ready` once the agent has written the sets: until then (a
/// map just created, as after an upgrade) the programs look everything up.
pub const FLOW_FILTER_READY: u32 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowFilter {
    /// `FLOW_FILTER_READY`, or 0: the filter is not used.
    pub ready: u32,
    pub _pad: u32,
    /// Bit `flow_filter_bit(addr, port)` of set `FILTER_*`: word `bit / 64`,
    /// bit `bit % 64` of it.
    pub sets: [[u64; FLOW_FILTER_WORDS]; FILTER_SETS],
}

impl FlowFilter {
    /// Not ready, no bit set.
    pub const EMPTY: FlowFilter = FlowFilter { ready: 0, _pad: 0, sets: [[0; FLOW_FILTER_WORDS]; FILTER_SETS] };

    /// Whether set `set` may hold `addr`:`port` (always while not ready).
    #[inline(always)]
    pub fn may_hold(&self, set: usize, addr: &Addr, port: u16) -> bool {
        if self.ready != FLOW_FILTER_READY {
            return true;
        }
        let bit = flow_filter_bit(addr, port) as usize;
        let word = self.sets[set % FILTER_SETS][(bit / 64) % FLOW_FILTER_WORDS];
        word & (1 << (bit % 64)) != 0
    }
}

/// The bit of an address and port (network byte order, as in a packet and
/// the maps) in every set: multiply-shift hashing, whose top bits depend on
/// every input bit; two instructions in the programs.
#[inline(always)]
pub fn flow_filter_bit(addr: &Addr, port: u16) -> u32 {
    let key = ((addr.fold() as u64) << 16) | port as u64;
    (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - FLOW_FILTER_BITS_LOG2)) as u32
}

const _: () = assert!(core::mem::size_of::<FlowFilter>() == 8 + 8 * FLOW_FILTER_WORDS * FILTER_SETS);

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, padding explicit: no invalid bit patterns.
unsafe impl aya::Pod for FlowFilter {}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(last: u8) -> Addr {
        Addr::from_v4(u32::from_ne_bytes([10, 244, 0, last]))
    }

    #[test]
    fn a_filter_not_ready_holds_everything_and_a_ready_one_only_its_bits() {
        let mut filter = FlowFilter::EMPTY;
        assert!(filter.may_hold(FILTER_BACKENDS, &v4(7), 8080u16.to_be()), "not ready: no filtering");
        filter.ready = FLOW_FILTER_READY;
        assert!(!filter.may_hold(FILTER_BACKENDS, &v4(7), 8080u16.to_be()));
        let bit = flow_filter_bit(&v4(7), 8080u16.to_be()) as usize;
        filter.sets[FILTER_BACKENDS][bit / 64] |= 1 << (bit % 64);
        assert!(filter.may_hold(FILTER_BACKENDS, &v4(7), 8080u16.to_be()));
        assert!(!filter.may_hold(FILTER_FRONTENDS, &v4(7), 8080u16.to_be()), "sets are apart");
    }

    #[test]
    fn nearby_addresses_and_ports_spread_over_the_bits() {
        // 256 pods x 4 ports: a good hash sets close to 1024 distinct bits
        // of 131,072 (about 4 collide by chance).
        let mut filter = FlowFilter::EMPTY;
        for last in 0..=255 {
            for port in [80u16, 443, 8080, 9090] {
                let bit = flow_filter_bit(&v4(last), port.to_be()) as usize;
                filter.sets[0][bit / 64] |= 1 << (bit % 64);
            }
        }
        let distinct: u32 = filter.sets[0].iter().map(|word| word.count_ones()).sum();
        assert!(distinct >= 1000, "{distinct} distinct bits of 1024");
    }
}
