//! The maps, pinned by name under the agent's bpffs directory so traffic keeps
//! flowing while the agent restarts. Layouts live in `ingress_common::maps`.

use aya_ebpf::macros::map;
use aya_ebpf::maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray};
use ingress_common::flow_filter::FlowFilter;
use ingress_common::maps::*;
use ingress_common::stats::{Counter, REASON_COUNT};

/// (frontend, slot) -> header or backend id. Written only by the agent.
#[map(name = "lb_services")]
pub static SERVICES: HashMap<ServiceKey, ServiceValue> = HashMap::pinned(SERVICES_MAX_ENTRIES, 0);

/// Backend id -> pod address. Written only by the agent; ids are stable
/// for as long as the endpoint exists so conntrack entries stay valid.
#[map(name = "lb_backends")]
pub static BACKENDS: HashMap<u32, Backend> = HashMap::pinned(BACKENDS_MAX_ENTRIES, 0);

/// Reverse-NAT id -> frontend address a reply must show. Written only by the agent.
#[map(name = "lb_rev_nat")]
pub static REV_NAT: HashMap<u32, RevNat> = HashMap::pinned(REV_NAT_MAX_ENTRIES, 0);

/// Flows in both directions. Written by the programs; LRU so a flood of new
/// flows evicts the idle ones instead of failing inserts.
#[map(name = "lb_ct")]
pub static CONNTRACK: LruHashMap<CtKey, CtEntry> = LruHashMap::pinned(CONNTRACK_MAX_ENTRIES, 0);

/// Index 0: the conntrack idle timeouts. Written only by the agent; all
/// zero (the defaults) until it does.
#[map(name = "lb_ct_timeouts")]
pub static CT_TIMEOUTS: Array<CtTimeouts> = Array::pinned(1, 0);

/// The backend each client of a ClientIP-affinity frontend last got. LRU:
/// the oldest clients go first when it is full.
#[map(name = "lb_affinity")]
pub static AFFINITY: LruHashMap<AffinityKey, AffinityValue> = LruHashMap::pinned(AFFINITY_MAX_ENTRIES, 0);

/// Rows of the Maglev tables (`maglev_row_index`) -> slot numbers. Written
/// only by the agent; a row no header names is never read.
#[map(name = "lb_maglev_v4")]
pub static MAGLEV: Array<MaglevRow> = Array::pinned(MAGLEV_MAX_ENTRIES, 0);

/// Packets and bytes by `ingress_common::stats` reason, per CPU.
#[map(name = "lb_stats_v4")]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::pinned(REASON_COUNT, 0);

/// Packets and bytes addressed to each frontend, by its reverse-NAT id
/// (ids start at 1; slot 0 stays empty), per CPU.
#[map(name = "lb_fe_stats")]
pub static FRONTEND_STATS: PerCpuArray<Counter> = PerCpuArray::pinned(REV_NAT_MAX_ENTRIES + 1, 0);

/// (frontend, client prefix) of LoadBalancer frontends with source ranges.
/// Written only by the agent; read only for frontends whose header has
/// `SERVICE_FLAG_SOURCE_RANGES`.
#[map(name = "lb_src_ranges")]
pub static SOURCE_RANGES: LpmTrie<SourceRangeKey, u32> = LpmTrie::pinned(SOURCE_RANGES_MAX_ENTRIES, 0);

/// Both directions of every flow from an uplink to a pod on another node,
/// source-translated to the node (see `snat`). Written by the programs and
/// swept by the agent; LRU so a flood of new flows evicts the idle ones.
#[map(name = "lb_snat")]
pub static SNAT: LruHashMap<SnatKey, SnatEntry> = LruHashMap::pinned(SNAT_MAX_ENTRIES, 0);

/// Index 0: the SNAT address and port range. Written only by the agent; all
/// zero (SNAT off) until it does.
#[map(name = "lb_snat_config")]
pub static SNAT_CONFIG: Array<SnatConfig> = Array::pinned(1, 0);

/// Interfaces the programs route translated packets to themselves (see
/// `host_route`), by index; kind 0 where none is listed. Written only by
/// the agent; all zero unless host routing is on.
#[map(name = "lb_host_iface_kinds")]
pub static HOST_IFACES: Array<HostIface> = Array::pinned(HOST_IFACE_INDEX_LIMIT, 0);

/// The TC programs' ICMP error translation, by `TAIL_ICMP_*` slot (see
/// `TAIL_TC_MAP`). Written only by the agent.
#[map(name = "lb_tail_tc")]
pub static TAIL_TC: ProgramArray = ProgramArray::pinned(TAIL_SLOTS, 0);

/// `lb_xdp`'s ICMP error translation, at `TAIL_ICMP_UPLINK`. Written only by
/// the agent.
#[map(name = "lb_tail_xdp")]
pub static TAIL_XDP: ProgramArray = ProgramArray::pinned(TAIL_SLOTS, 0);

/// Index 0: which addresses and ports can be frontends, backends or
/// backends on other nodes (see `ingress_common::flow_filter`). Written only
/// by the agent; not ready (no filtering) until it does.
#[map(name = "lb_flow_filter")]
pub static FLOW_FILTER: Array<FlowFilter> = Array::pinned(1, 0);
