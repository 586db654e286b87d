//! Map names, keys and values. A layout change gets a new map name (suffix
//! `_v2`, ...) so an upgraded agent never reads bytes written in an old layout;
//! the old names are listed in `RETIRED_MAPS`. Every address is an `Addr`:
//! one set of maps serves IPv4 and IPv6.

use crate::addr::Addr;

/// Maps of earlier layouts (IPv4-only keys, shorter stats), which the agent
/// unpins at start: nothing reads them any more.
pub const RETIRED_MAPS: &[&str] = &[
    "lb_host_ifaces",
    "lb4_services",
    "lb4_backends",
    "lb4_rev_nat",
    "lb4_ct",
    "lb4_ct_timeouts",
    "lb4_affinity",
    "lb4_maglev",
    "lb4_fe_stats",
    "lb4_fe_names",
    "lb4_src_ranges",
    "lb4_snat",
    "lb4_snat_config",
    "lb_stats",
    "lb_stats_v2",
    "lb_stats_v3",
    "lb_maglev",
    "lb_maglev_v2",
    "lb_maglev_v3",
];

/// Frontends and their backend slots (hash map, pinned).
pub const SERVICES_MAP: &str = "lb_services";
/// Backend id -> pod address (hash map, pinned).
pub const BACKENDS_MAP: &str = "lb_backends";
/// Reverse-NAT id -> the frontend a reply must appear to come from (hash map, pinned).
pub const REV_NAT_MAP: &str = "lb_rev_nat";
/// Connection tracking (LRU hash map, pinned).
pub const CONNTRACK_MAP: &str = "lb_ct";
/// Conntrack idle timeouts (array of one `CtTimeouts`, pinned; written by
/// the agent, read by the programs).
pub const CT_TIMEOUTS_MAP: &str = "lb_ct_timeouts";
/// Packet counters by reason (per-CPU array, pinned). `_v2`: the array grew
/// with the reasons added after the first release (hairpin, reject, source
/// ranges); `_v3`: it grew again with the SNAT reasons; `_v4`: with the
/// translated ICMP errors. An old pinned array would be too short.
pub const STATS_MAP: &str = "lb_stats_v4";
/// Packets and bytes sent to each frontend, indexed by its reverse-NAT id
/// (per-CPU array, pinned).
pub const FRONTEND_STATS_MAP: &str = "lb_fe_stats";

/// (frontend, client address) -> the backend it last got, for ClientIP
/// session affinity (LRU hash map, pinned; written by the programs).
pub const AFFINITY_MAP: &str = "lb_affinity";
pub const AFFINITY_MAX_ENTRIES: u32 = 65_536;

/// Reverse-NAT id -> the Service port a frontend belongs to, for people
/// reading the maps (hash map, pinned; written by the agent, never read by
/// the programs).
pub const FRONTEND_NAMES_MAP: &str = "lb_fe_names";

/// Client ranges allowed to reach LoadBalancer frontends that set
/// `loadBalancerSourceRanges` (LPM trie, pinned; written only by the agent).
pub const SOURCE_RANGES_MAP: &str = "lb_src_ranges";
pub const SOURCE_RANGES_MAX_ENTRIES: u32 = 16_384;

/// Default capacities, overridden by the agent's flags at load time. Sized
/// for 10,000 Services of 10 endpoints each: 110,000 service entries (a
/// header and 10 slots per frontend) and 100,000 distinct backends.
pub const SERVICES_MAX_ENTRIES: u32 = 262_144;
pub const BACKENDS_MAX_ENTRIES: u32 = 131_072;
pub const REV_NAT_MAX_ENTRIES: u32 = 65_536;
pub const CONNTRACK_MAX_ENTRIES: u32 = 262_144;

/// Row `(table - 1) * rows per table + row` -> that row of the table's
/// entries (array, pinned; written by the agent). `_v4`: an array of 1,024-
/// entry rows, preallocated, where `_v3` was a hash map of 480-entry rows
/// without preallocation: the kernel took 2.7 us to allocate each 1 KiB
/// element of that hash map, 0.25 s of a first pass over 30,000 Services,
/// against 0.35 us to copy a row into an array.
pub const MAGLEV_MAP: &str = "lb_maglev_v4";
/// Entries per `MaglevRow`: the default table (1,021 entries) fits one row,
/// so it is one map write and 2 KiB of kernel memory.
pub const MAGLEV_ROW_LEN: usize = 1024;
/// Default number of Maglev tables (one per frontend that has endpoints).
pub const MAGLEV_MAX_TABLES: u32 = 16_384;
/// The programs' global holding M, the Maglev table size (set at load).
pub const MAGLEV_TABLE_SIZE_GLOBAL: &str = "MAGLEV_TABLE_SIZE";
/// Default M. Maglev needs M prime and well above the backend count: with
/// M >= 100 x N the busiest backend gets at most ~1% more than its share.
/// 1021 keeps that for 10 backends in one 2 KiB row per table: the default
/// 16,384 tables preallocate 32 MiB; Cilium's 16381 would take 16 times that.
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 1021;

/// Rows a table of `table_size` entries takes.
pub const fn maglev_rows(table_size: u32) -> u32 {
    table_size.div_ceil(MAGLEV_ROW_LEN as u32)
}

/// Default capacity of the Maglev map, in rows.
pub const MAGLEV_MAX_ENTRIES: u32 = MAGLEV_MAX_TABLES * maglev_rows(DEFAULT_MAGLEV_TABLE_SIZE);

/// The Maglev array's index of `row` of table `table` (>= 1), for tables
/// of `rows_per_table` rows. Wrapping: the programs' caller has checked
/// `table`, and an index past the array is a failed lookup or write.
#[inline(always)]
pub const fn maglev_row_index(table: u32, row: u32, rows_per_table: u32) -> u32 {
    table.wrapping_sub(1).wrapping_mul(rows_per_table).wrapping_add(row)
}

/// Where entry `index` of a Maglev table lives: (row, column in the row).
#[inline(always)]
pub fn maglev_position(index: u32) -> (u32, usize) {
    (index / MAGLEV_ROW_LEN as u32, index as usize % MAGLEV_ROW_LEN)
}

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
    /// Frontend address.
    pub addr: Addr,
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
    /// In backend slots: the backend to use. In the header: the frontend's
    /// Maglev table (`MaglevKey::table`), 0 = none (choose by slot).
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

/// Header flag: only clients inside one of the frontend's `lb4_src_ranges`
/// entries are served; the others are dropped.
pub const SERVICE_FLAG_SOURCE_RANGES: u16 = 4;

/// A backend state a new connection may pick.
pub const BACKEND_STATE_ACTIVE: u8 = 0;
/// A backend that only keeps its established flows (serving, terminating).
pub const BACKEND_STATE_TERMINATING: u8 = 1;
/// `Backend::flags` bit: the pod runs on this node.
pub const BACKEND_FLAG_LOCAL: u8 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Backend {
    /// Pod address (of its frontend's family).
    pub addr: Addr,
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
    /// Frontend address.
    pub addr: Addr,
    /// Frontend port, network byte order.
    pub port: u16,
    pub _pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityKey {
    /// The frontend's reverse-NAT id (one per frontend address and port).
    pub rev_nat_id: u32,
    /// Client address.
    pub client: Addr,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AffinityValue {
    pub backend_id: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns()` of the client's last new connection.
    pub last_used_ns: u64,
}

/// The data of an `lb4_src_ranges` key: the frontend, matched exactly, then
/// the client address, matched on the range's prefix. The trie key's prefix
/// length is `SOURCE_RANGE_EXACT_BITS` plus the range's own prefix length.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceRangeKey {
    /// The frontend's reverse-NAT id.
    pub rev_nat_id: u32,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`: both protocols of one address and port
    /// may belong to different Services.
    pub proto: u8,
    pub _pad: [u8; 3],
    /// Client address (a range's first address; an IPv4 range is IPv4-mapped
    /// and its prefix length 96 longer).
    pub addr: Addr,
}

/// Bits of `SourceRangeKey` before `addr`, always matched in full.
pub const SOURCE_RANGE_EXACT_BITS: u32 = 64;
/// Bits an IPv4 prefix gains in the IPv4-mapped form.
pub const V4_MAPPED_PREFIX_BITS: u32 = 96;

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
    /// Slot numbers (1..=count) of the `SCOPE_EXTERNAL` slots of the
    /// frontends whose headers name the table: a flow's backend is the one
    /// its entry's slot names.
    pub slots: [u16; MAGLEV_ROW_LEN],
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
    /// Source address.
    pub saddr: Addr,
    /// Destination address.
    pub daddr: Addr,
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
    /// TCP flags seen in this direction, OR-ed together; a FIN or RST seen in
    /// the other direction is OR-ed in too, so both directions close together.
    pub tcp_flags: u8,
    pub _pad: [u8; 7],
}

/// TCP flag bits as in the TCP header's flags byte.
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_ACK: u8 = 0x10;

/// How long a conntrack entry may stay idle before the programs treat it as
/// absent and the agent sweeps it out, in milliseconds; 0 = the default
/// (`CtTimeouts::DEFAULT`), so a map the agent never wrote still works.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTimeouts {
    /// A TCP direction that has seen ACK and no FIN or RST.
    pub tcp_established_ms: u32,
    /// A TCP direction that has seen FIN or RST (closing), or only a SYN so
    /// far (half-open: the handshake never completed).
    pub tcp_closing_ms: u32,
    /// Any UDP flow.
    pub udp_ms: u32,
    pub _pad: u32,
}

impl CtTimeouts {
    /// Modelled on kube-proxy's and Linux's conntrack defaults: kube-proxy's
    /// `conntrack.tcpEstablishedTimeout` (24 h), Linux's
    /// `nf_conntrack_tcp_timeout_close` (10 s) and `nf_conntrack_udp_timeout`
    /// (30 s). Closing flows get 10 s, as Cilium's FIN timeout, not the 120 s
    /// of Linux's TIME_WAIT: a closed flow to a pod on another node holds its
    /// SNAT port until it expires, and at 120 s the default range (4,536
    /// ports per backend) ran out at 38 new connections a second per backend
    /// (the API churn test's NodePort traffic found it).
    pub const DEFAULT: CtTimeouts =
        CtTimeouts { tcp_established_ms: 86_400_000, tcp_closing_ms: 10_000, udp_ms: 30_000, _pad: 0 };

    /// The idle time after which an entry of `proto` that has seen
    /// `tcp_flags` is dead, in nanoseconds (the unit of `bpf_ktime_get_ns`).
    #[inline(always)]
    pub fn idle_limit_ns(&self, proto: u8, tcp_flags: u8) -> u64 {
        let or_default = |ms: u32, default: u32| if ms == 0 { default } else { ms };
        let ms = if proto != crate::IPPROTO_TCP {
            or_default(self.udp_ms, Self::DEFAULT.udp_ms)
        } else if tcp_flags & (TCP_FIN | TCP_RST) != 0 || tcp_flags & TCP_ACK == 0 {
            or_default(self.tcp_closing_ms, Self::DEFAULT.tcp_closing_ms)
        } else {
            or_default(self.tcp_established_ms, Self::DEFAULT.tcp_established_ms)
        };
        ms as u64 * 1_000_000
    }

    /// Whether the entry under `key` has been idle too long at `now_ns`.
    #[inline(always)]
    pub fn expired(&self, key: &CtKey, entry: &CtEntry, now_ns: u64) -> bool {
        now_ns.saturating_sub(entry.last_seen_ns) > self.idle_limit_ns(key.proto, entry.tcp_flags)
    }
}

/// Source NAT of flows from an uplink to a backend on another node
/// (externalTrafficPolicy: Cluster), both directions of every such flow (LRU
/// hash map, pinned; written by the programs, swept by the agent). See
/// `ingress-ebpf/src/snat.rs`.
pub const SNAT_MAP: &str = "lb_snat";
/// Two entries per translated flow.
pub const SNAT_MAX_ENTRIES: u32 = 131_072;
/// Index 0: the address and port range SNAT uses (array of one `SnatConfig`,
/// pinned; written by the agent, read by the programs).
pub const SNAT_CONFIG_MAP: &str = "lb_snat_config";
/// The default SNAT port range: above Linux's default ephemeral range
/// (32768-60999, `net.ipv4.ip_local_port_range`) and the NodePort range
/// (30000-32767), so a translated flow never takes a port the node's own
/// connections or a NodePort use.
pub const DEFAULT_SNAT_PORT_MIN: u16 = 61_000;
pub const DEFAULT_SNAT_PORT_MAX: u16 = 65_535;
/// Ports tried for a new flow before it is dropped as
/// `DROP_SNAT_PORTS_EXHAUSTED`.
pub const SNAT_PORT_TRIES: u32 = 16;

/// `SnatKey::direction` of a client -> backend packet as it leaves the node
/// (after the DNAT): its value is the node address and port it is given.
pub const SNAT_FORWARD: u8 = 0;
/// `SnatKey::direction` of a backend -> node reply as it arrives: its value
/// is the client address and port it is for.
pub const SNAT_REPLY: u8 = 1;

/// A translated flow as seen on the wire in one direction (the `CtKey`
/// layout, in its own type: the two maps are not interchangeable).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnatKey {
    /// Source address: the client (`SNAT_FORWARD`) or the backend (`SNAT_REPLY`).
    pub saddr: Addr,
    /// Destination address: the backend (`SNAT_FORWARD`) or the node's SNAT
    /// address (`SNAT_REPLY`).
    pub daddr: Addr,
    /// Source port, network byte order: the client's or the backend's.
    pub sport: u16,
    /// Destination port, network byte order: the backend's or the SNAT port.
    pub dport: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// `SNAT_FORWARD` or `SNAT_REPLY`.
    pub direction: u8,
    pub _pad: [u8; 2],
}

/// One direction of a translated flow. The forward entry carries the flow's
/// life: every packet of either direction refreshes it and ORs its TCP
/// flags in, and it expires by `CtTimeouts` like a conntrack entry. A reply
/// entry lives exactly as long as the forward entry that names its port
/// (its own `last_seen_ns` and `tcp_flags` stay as created), so one
/// direction can never outlive the other and hand its port to a new flow
/// while the old one still uses it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnatEntry {
    /// `bpf_ktime_get_ns()` of the flow's last packet (forward entries) or
    /// of the entry's creation (reply entries).
    pub last_seen_ns: u64,
    /// `SNAT_FORWARD`: the node address the source becomes. `SNAT_REPLY`: the
    /// client address the destination becomes.
    pub addr: Addr,
    /// The matching port, network byte order.
    pub port: u16,
    /// TCP flags seen in either direction, OR-ed together (forward entries).
    pub tcp_flags: u8,
    pub _pad: [u8; 5],
}

impl SnatEntry {
    /// Whether this forward entry has been idle too long at `now_ns`.
    #[inline(always)]
    pub fn expired(&self, timeouts: &CtTimeouts, proto: u8, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_seen_ns) > timeouts.idle_limit_ns(proto, self.tcp_flags)
    }

    /// Whether this forward entry gives its flow the reply entry `reply`'s
    /// port: only then is `reply` in use.
    #[inline(always)]
    pub fn owns(&self, reply: &SnatKey) -> bool {
        self.addr == reply.daddr && self.port == reply.dport
    }
}

impl SnatKey {
    /// The forward key of the flow a reply entry (`self`, with its value)
    /// belongs to.
    #[inline(always)]
    pub fn forward_of_reply(&self, reply: &SnatEntry) -> SnatKey {
        SnatKey {
            saddr: reply.addr,
            daddr: self.saddr,
            sport: reply.port,
            dport: self.sport,
            proto: self.proto,
            direction: SNAT_FORWARD,
            _pad: [0; 2],
        }
    }
}

/// What the programs SNAT to. All zero (the map as created) turns SNAT off:
/// flows to other nodes are then forwarded with the client's address, as
/// before SNAT existed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnatConfig {
    /// The node's IPv4 address translated IPv4 flows leave with; all zero =
    /// SNAT off for IPv4.
    pub v4: Addr,
    /// The node's IPv6 address translated IPv6 flows leave with; all zero =
    /// SNAT off for IPv6.
    pub v6: Addr,
    /// The first port of the range, host byte order (it is counted with,
    /// never compared with a packet's bytes).
    pub port_min: u16,
    /// The last port of the range (inclusive), host byte order; >= `port_min`.
    pub port_max: u16,
}

impl SnatConfig {
    /// The node address flows of `dst`'s family leave with (all zero: SNAT
    /// off for that family).
    #[inline(always)]
    pub fn addr_like(&self, dst: &Addr) -> Addr {
        if dst.is_v4() { self.v4 } else { self.v6 }
    }
}

/// Host routing (pinned array; written by the agent, read by the programs):
/// interface index -> `HostIface`, kind 0 where none is listed. A packet
/// translated where it enters is sent by the program itself to the listed
/// interface the node's FIB names for it (`bpf_redirect_peer` into a pod,
/// `bpf_redirect` out of an uplink), skipping the node's IP stack and
/// netfilter. All zero (the default): the node routes every packet itself.
pub const HOST_IFACES_MAP: &str = "lb_host_iface_kinds";
/// The eBPF object's global that turns host routing on (1) or off (0), set
/// at load time: with it off the verifier drops every host-routing path.
pub const HOST_ROUTING_GLOBAL: &str = "HOST_ROUTING";
/// Interface indices host routing covers (1 MiB of `HostIface`s). A node's
/// indices grow by one with every interface created in its namespace, a
/// veth per pod; an interface past the limit takes the kernel's path.
pub const HOST_IFACE_INDEX_LIMIT: u32 = 1 << 18;
/// The entry of `HOST_IFACES_MAP` that no interface has (index 0) holds
/// host routing's switch: kind `HOST_ROUTING_ON` while the agent lets the
/// programs route, 0 once it takes that back (a netfilter hook appeared
/// that the node's flows must pass; see the agent's `host_routing`).
pub const HOST_ROUTING_SWITCH_INDEX: u32 = 0;
/// `HostIface::kind` of the switch entry while host routing is in force.
pub const HOST_ROUTING_ON: u32 = 1;
/// `HostIface::kind` of a node uplink: packets leave through its egress.
pub const HOST_IFACE_UPLINK: u32 = 1;
/// `HostIface::kind` of a pod veth's host side: packets go straight to the
/// ingress of its peer, the pod's interface.
pub const HOST_IFACE_POD: u32 = 2;
/// `skb->mark` of a reply translated where it entered the node and routed
/// out of an uplink by the programs, from there to `lb_tc_out` on that
/// uplink, which takes it off: the reply has nothing left to translate.
pub const ROUTED_REPLY_MARK: u32 = 0x6c62_7272;

/// Tail-call tables (pinned program arrays, filled by the agent when it
/// loads the programs): the ICMP error translation of each hook is a
/// program of its own (`icmp_error`), which the hook's program jumps to when
/// it meets an ICMP error. Inline, the verifier walked it again on every
/// path that reaches it: 57% of the uplink program's walk, for a packet
/// that is rare. TC programs jump through `TAIL_TC_MAP`, XDP through
/// `TAIL_XDP_MAP` (a table holds one program type).
pub const TAIL_TC_MAP: &str = "lb_tail_tc";
pub const TAIL_XDP_MAP: &str = "lb_tail_xdp";
/// The slots: ICMP errors met at an uplink's ingress (XDP or TC), at a pod
/// veth's ingress, and at any egress. An empty slot lets the error pass
/// untranslated, as the stack would.
pub const TAIL_ICMP_UPLINK: u32 = 0;
pub const TAIL_ICMP_POD: u32 = 1;
pub const TAIL_ICMP_OUT: u32 = 2;
pub const TAIL_SLOTS: u32 = 3;

/// An interface the programs route to (see `HOST_IFACES_MAP`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HostIface {
    /// `HOST_IFACE_UPLINK` or `HOST_IFACE_POD` (`HOST_ROUTING_ON` at
    /// `HOST_ROUTING_SWITCH_INDEX`).
    pub kind: u32,
}

const _: () = assert!(core::mem::size_of::<SnatKey>() == 40);
const _: () = assert!(core::mem::size_of::<SnatEntry>() == 32);
const _: () = assert!(core::mem::size_of::<SnatConfig>() == 36);
const _: () = assert!(core::mem::size_of::<HostIface>() == 4);
const _: () = assert!(core::mem::size_of::<ServiceKey>() == 24);
const _: () = assert!(core::mem::size_of::<CtTimeouts>() == 16);
const _: () = assert!(core::mem::size_of::<ServiceValue>() == 16);
const _: () = assert!(core::mem::size_of::<Backend>() == 20);
const _: () = assert!(core::mem::size_of::<RevNat>() == 20);
const _: () = assert!(core::mem::size_of::<CtKey>() == 40);
const _: () = assert!(core::mem::size_of::<CtEntry>() == 24);
const _: () = assert!(core::mem::size_of::<FrontendName>() == 64);
const _: () = assert!(core::mem::size_of::<AffinityKey>() == 20);
const _: () = assert!(core::mem::size_of::<AffinityValue>() == 16);
const _: () = assert!(core::mem::size_of::<SourceRangeKey>() == 24);
const _: () = assert!(core::mem::size_of::<MaglevKey>() == 8);
const _: () = assert!(core::mem::size_of::<MaglevRow>() == 2 * MAGLEV_ROW_LEN);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: every type is repr(C), Copy, has explicit padding and no
    // invalid bit patterns, which is what aya::Pod requires.
    unsafe impl aya::Pod for super::ServiceKey {}
    unsafe impl aya::Pod for super::HostIface {}
    unsafe impl aya::Pod for super::ServiceValue {}
    unsafe impl aya::Pod for super::Backend {}
    unsafe impl aya::Pod for super::RevNat {}
    unsafe impl aya::Pod for super::CtKey {}
    unsafe impl aya::Pod for super::CtEntry {}
    unsafe impl aya::Pod for super::CtTimeouts {}
    unsafe impl aya::Pod for super::FrontendName {}
    unsafe impl aya::Pod for super::AffinityKey {}
    unsafe impl aya::Pod for super::AffinityValue {}
    unsafe impl aya::Pod for super::SourceRangeKey {}
    unsafe impl aya::Pod for super::MaglevKey {}
    unsafe impl aya::Pod for super::MaglevRow {}
    unsafe impl aya::Pod for super::SnatKey {}
    unsafe impl aya::Pod for super::SnatEntry {}
    unsafe impl aya::Pod for super::SnatConfig {}
    unsafe impl aya::Pod for crate::stats::Counter {}
    unsafe impl aya::Pod for crate::addr::Addr {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IPPROTO_TCP, IPPROTO_UDP};

    const S: u64 = 1_000_000_000;

    fn key(proto: u8) -> CtKey {
        CtKey { proto, ..CtKey::default() }
    }

    fn entry(tcp_flags: u8, last_seen_ns: u64) -> CtEntry {
        CtEntry { tcp_flags, last_seen_ns, ..CtEntry::default() }
    }

    #[test]
    fn the_timeout_follows_the_protocol_and_the_tcp_state() {
        let set = CtTimeouts { tcp_established_ms: 3_000, tcp_closing_ms: 2_000, udp_ms: 1_000, _pad: 0 };
        let cases: &[(&str, u8, u8, u64)] = &[
            ("udp", IPPROTO_UDP, 0, S),
            ("tcp SYN only: half-open", IPPROTO_TCP, TCP_SYN, 2 * S),
            ("tcp SYN then ACK: established", IPPROTO_TCP, TCP_SYN | TCP_ACK, 3 * S),
            ("tcp ACK only (picked up mid-flow): established", IPPROTO_TCP, TCP_ACK, 3 * S),
            ("tcp FIN seen: closing", IPPROTO_TCP, TCP_SYN | TCP_ACK | TCP_FIN, 2 * S),
            ("tcp RST seen: closing", IPPROTO_TCP, TCP_ACK | TCP_RST, 2 * S),
        ];
        for (name, proto, flags, limit) in cases {
            assert_eq!(set.idle_limit_ns(*proto, *flags), *limit, "{name}");
        }
    }

    #[test]
    fn zero_means_the_default() {
        let unset = CtTimeouts::default();
        assert_eq!(unset.idle_limit_ns(IPPROTO_UDP, 0), 30 * S);
        assert_eq!(unset.idle_limit_ns(IPPROTO_TCP, TCP_ACK), 86_400 * S);
        assert_eq!(unset.idle_limit_ns(IPPROTO_TCP, TCP_ACK | TCP_FIN), 10 * S);
    }

    #[test]
    fn an_entry_expires_only_after_its_idle_limit() {
        let set = CtTimeouts { udp_ms: 1_000, ..CtTimeouts::default() };
        let seen = entry(0, 10 * S);
        assert!(!set.expired(&key(IPPROTO_UDP), &seen, 11 * S), "exactly at the limit it lives");
        assert!(set.expired(&key(IPPROTO_UDP), &seen, 11 * S + 1));
        assert!(!set.expired(&key(IPPROTO_UDP), &seen, 5 * S), "a clock behind the entry never expires it");
    }
}
