//! Map names, keys and values. A layout change gets a new map name (suffix
//! `_v2`, ...) so an upgraded agent never reads bytes written in an old layout.

/// Frontends and their backend slots (hash map, pinned).
pub const SERVICES_MAP: &str = "lb4_services";
/// Backend id -> pod address (hash map, pinned).
pub const BACKENDS_MAP: &str = "lb4_backends";
/// Reverse-NAT id -> the frontend a reply must appear to come from (hash map, pinned).
pub const REV_NAT_MAP: &str = "lb4_rev_nat";
/// Connection tracking (LRU hash map, pinned).
pub const CONNTRACK_MAP: &str = "lb4_ct";
/// Packet counters by reason (per-CPU array, pinned).
pub const STATS_MAP: &str = "lb_stats";
/// Packets and bytes sent to each frontend, indexed by its reverse-NAT id
/// (per-CPU array, pinned).
pub const FRONTEND_STATS_MAP: &str = "lb4_fe_stats";

/// (frontend, client address) -> the backend it last got, for ClientIP
/// session affinity (LRU hash map, pinned; written by the programs).
pub const AFFINITY_MAP: &str = "lb4_affinity";
pub const AFFINITY_MAX_ENTRIES: u32 = 65_536;

/// Reverse-NAT id -> the Service port a frontend belongs to, for people
/// reading the maps (hash map, pinned; written by the agent, never read by
/// the programs).
pub const FRONTEND_NAMES_MAP: &str = "lb4_fe_names";

/// Default capacities, overridden by the agent's flags at load time. Sized
/// for 10,000 Services of 10 endpoints each: 110,000 service entries (a
/// header and 10 slots per frontend) and 100,000 distinct backends.
pub const SERVICES_MAX_ENTRIES: u32 = 262_144;
pub const BACKENDS_MAX_ENTRIES: u32 = 131_072;
pub const REV_NAT_MAX_ENTRIES: u32 = 65_536;
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// (Maglev table, row) -> a row of that table's backend ids (hash map
/// without preallocation, so only programmed tables take kernel memory;
/// pinned; written by the agent).
pub const MAGLEV_MAP: &str = "lb4_maglev";
/// Backend ids per `MaglevRow`. A table of M entries takes ceil(M / 256)
/// rows: one map write per 256 entries instead of one per entry.
pub const MAGLEV_ROW_LEN: usize = 256;
/// Default number of Maglev tables (one per frontend that has endpoints).
pub const MAGLEV_MAX_TABLES: u32 = 16_384;
/// The programs' global holding M, the Maglev table size (set at load).
pub const MAGLEV_TABLE_SIZE_GLOBAL: &str = "MAGLEV_TABLE_SIZE";
/// Default M. Maglev needs M prime and well above the backend count: with
/// M >= 100 x N the busiest backend gets at most ~1% more than its share.
/// 1021 keeps that for 10 backends while 10,000 tables take 4 rows of
/// 1 KiB each (~40 MiB); Cilium's 16381 would take 16 times that.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 1021;

/// Rows a table of `table_size` entries takes.
pub const fn maglev_rows(table_size: u32) -> u32 {
    table_size.div_ceil(MAGLEV_ROW_LEN as u32)
}

/// Default capacity of the Maglev map, in rows.
pub const MAGLEV_MAX_ENTRIES: u32 = MAGLEV_MAX_TABLES * maglev_rows(DEFAULT_MAGLEV_TABLE_SIZE);

/// Where entry `index` of a Maglev table lives: (row, column in the row).
#[inline(always)]
pub fn maglev_position(index: u32) -> (u32, usize) {
    (index / MAGLEV_ROW_LEN as u32, index as usize % MAGLEV_ROW_LEN)
}

/// `ServiceKey::scope` of a frontend reachable from anywhere. (A second scope
/// for node-local-only backends arrives with the traffic policies.)
pub const SCOPE_EXTERNAL: u8 = 0;

/// One frontend (VIP, port, protocol) and one of its slots. Slot 0 holds the
/// service header; slots `1..=count` hold backend ids, in a stable order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Frontend IPv4 address, network byte order.
    pub addr: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// `SCOPE_EXTERNAL` for now.
    pub scope: u8,
    /// 0 = header, 1..=count = backend slot.
    pub slot: u16,
    pub _pad: [u8; 2],
}

/// Slot 0: `count`, `rev_nat_id`, `flags`. Slot i: `backend_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// In backend slots: the backend to use. In the header: the frontend's
    /// Maglev table (`MaglevKey::table`), 0 = none (choose by slot).
    pub backend_id: u32,
    /// In the header: how many backend slots follow. 0 means "no endpoint".
    pub count: u16,
    /// In the header: `SERVICE_FLAG_*` bits (none defined yet).
    pub flags: u16,
    /// In the header: the `rev_nat` entry that rewrites replies of this frontend.
    pub rev_nat_id: u32,
    /// In the header: ClientIP affinity timeout in seconds, 0 = no affinity.
    pub affinity_timeout_s: u32,
}

/// A backend state a new connection may pick.
pub const BACKEND_STATE_ACTIVE: u8 = 0;
/// A backend that only keeps its established flows (serving, terminating).
pub const BACKEND_STATE_TERMINATING: u8 = 1;
/// `Backend::flags` bit: the pod runs on this node.
pub const BACKEND_FLAG_LOCAL: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Pod IPv4 address, network byte order.
    pub addr: u32,
    /// Pod port, network byte order.
    pub port: u16,
    /// `BACKEND_STATE_*`.
    pub state: u8,
    /// `BACKEND_FLAG_*` bits.
    pub flags: u8,
}

/// What a reply's source is rewritten to: the frontend the client talked to.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RevNat {
    /// Frontend IPv4 address, network byte order.
    pub addr: u32,
    /// Frontend port, network byte order.
    pub port: u16,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The frontend's reverse-NAT id (one per frontend address and port).
    pub rev_nat_id: u32,
    /// Client IPv4 address, network byte order.
    pub client: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` of the client's last new connection.
    pub last_used_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MaglevKey {
    /// The table id a frontend's header names (>= 1).
    pub table: u32,
    /// Row of the table: entries `row * MAGLEV_ROW_LEN ..`.
    pub row: u32,
}

/// `MAGLEV_ROW_LEN` consecutive entries of a Maglev table; entries past the
/// table's end (in its last row) are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MaglevRow {
    /// Backend ids.
    pub backend_ids: [u32; MAGLEV_ROW_LEN],
}

/// "namespace/name:port", NUL-padded (cut at 63 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FrontendName {
    pub bytes: [u8; 64],
}

/// `CtKey::direction` of the client -> frontend entry.
pub const CT_FORWARD: u8 = 0;
/// `CtKey::direction` of the backend -> client entry that reverse-translates replies.
pub const CT_REPLY: u8 = 1;

/// A flow as seen on the wire in one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtKey {
    /// Source IPv4 address, network byte order.
    pub saddr: u32,
    /// Destination IPv4 address, network byte order.
    pub daddr: u32,
    /// Source port, network byte order.
    pub sport: u16,
    /// Destination port, network byte order.
    pub dport: u16,
    pub proto: u8,
    /// `CT_FORWARD` or `CT_REPLY`.
    pub direction: u8,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtEntry {
    /// The backend this flow was given; a forward entry whose backend is gone
    /// is re-balanced.
    pub backend_id: u32,
    /// The frontend replies must appear to come from.
    pub rev_nat_id: u32,
    /// `bpf_ktime_get_ns()` of the last packet, for idle expiry.
    pub last_seen_ns: u64,
    /// TCP flags seen in this direction, OR-ed together.
    pub tcp_flags: u8,
    pub _pad: [u8; 7],
}

const _: () = assert!(core::mem::size_of::<ServiceKey>() == 12);
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 16);
const _: () = assert!(core::mem::size_of::<Backend>() == 8);
const _: () = assert!(core::mem::size_of::<RevNat>() == 8);
const _: () = assert!(core::mem::size_of::<CtKey>() == 16);
const _: () = assert!(core::mem::size_of::<CtEntry>() == 24);
const _: () = assert!(core::mem::size_of::<FrontendName>() == 64);
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 8);
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);
const _: () = assert!(core::mem::size_of::<MaglevKey>() == 8);
const _: () = assert!(core::mem::size_of::<MaglevRow>() == 4 * MAGLEV_ROW_LEN);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is repr(C), Copy, has explicit padding and no
    // invalid bit patterns, which is what aya::Pod requires.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::RevNat {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::FrontendName {}
    unsafe impl aya::Pod for super::AffinityKey {}
    unsafe impl aya::Pod for super::AffinityValue {}
    unsafe impl aya::Pod for super::MaglevKey {}
    unsafe impl aya::Pod for super::MaglevRow {}
    unsafe impl aya::Pod for crate::stats::Counter {}
}
