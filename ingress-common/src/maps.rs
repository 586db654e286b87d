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

/// Default capacities; the agent may be configured with others later.
pub const SERVICES_MAX_ENTRIES: u32 = 65_536;
pub const BACKENDS_MAX_ENTRIES: u32 = 65_536;
pub const REV_NAT_MAX_ENTRIES: u32 = 65_536;
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// `ServiceKey::scope` of a frontend's header and slots over all its backends.
pub const SCOPE_EXTERNAL: u8 = 0;
/// `ServiceKey::scope` of a second header and slots over only the backends on
/// this node, present when the `SCOPE_EXTERNAL` header has a `SERVICE_FLAG_LOCAL_*`
/// bit (a Local traffic policy).
pub const SCOPE_LOCAL: u8 = 1;

/// `ServiceValue::flags` bit: clients arriving on an uplink (externalTrafficPolicy:
/// Local) get only the `SCOPE_LOCAL` backends, and no endpoint when there is none.
pub const SERVICE_FLAG_LOCAL_EXTERNAL: u16 = 1;
/// `ServiceValue::flags` bit: clients in pods of this node (internalTrafficPolicy:
/// Local) get only the `SCOPE_LOCAL` backends.
pub const SERVICE_FLAG_LOCAL_INTERNAL: u16 = 2;

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
    /// `SCOPE_EXTERNAL` (all backends) or `SCOPE_LOCAL` (this node's only).
    pub scope: u8,
    /// 0 = header, 1..=count = backend slot.
    pub slot: u16,
    pub _pad: [u8; 2],
}

/// Slot 0: `count`, `rev_nat_id`, `flags`. Slot i: `backend_id`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceValue {
    /// In backend slots: the backend to use. 0 in the header.
    pub backend_id: u32,
    /// In the header: how many backend slots follow. 0 means "no endpoint".
    pub count: u16,
    /// In the header: `SERVICE_FLAG_*` bits (set in the `SCOPE_EXTERNAL` header only).
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
    unsafe impl aya::Pod for crate::stats::Counter {}
}
