//! The dataplane seen from the agent: the maps' contents as plain values, the
//! operations that change them, and the seam (`MapWriter`) between the pure
//! planning code and the kernel.

pub mod abi;
pub mod batch;
pub mod conntrack_gc;
pub mod diff;
pub mod ebpf;
pub mod fake;
pub mod flow_filter;
pub mod host_ifaces;
pub mod host_routing;
pub mod ids;
pub mod left_out;
pub mod maglev;
pub mod netfilter_hooks;
pub mod pin_dir;
pub mod plan;
pub mod rollback;
pub mod sizes;
pub mod socket_shortcut;
pub mod uplink_hook;
pub mod usage;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ingress_common::maps::{Backend, MaglevKey, MaglevRow, RevNat, ServiceKey, ServiceValue, SourceRangeKey};

use sizes::MapSizes;

/// An `lb_src_ranges` entry: the trie prefix length and the key's data.
pub type SourceRangeEntry = (u32, SourceRangeKey);

/// The agent-owned maps' contents (conntrack and stats belong to the kernel side).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapContents {
    pub services: BTreeMap<ServiceKey, ServiceValue>,
    pub backends: BTreeMap<u32, Backend>,
    pub rev_nat: BTreeMap<u32, RevNat>,
    /// The rows of every Maglev table a header names. Shared: a row is
    /// 2 KiB and a plan hands each to several maps and ops, where copies
    /// made a full pass mostly page faults and memcpy.
    pub maglev: BTreeMap<MaglevKey, Arc<MaglevRow>>,
    pub source_ranges: BTreeSet<SourceRangeEntry>,
}

impl MapContents {
    /// Every entry of `parts`, a later part's replacing an earlier one's.
    /// Built at once: a `BTreeMap` collected from many entries is sorted
    /// and built in one go, much faster than as many inserts.
    pub fn union<'a>(parts: impl Iterator<Item = &'a MapContents> + Clone) -> MapContents {
        MapContents {
            services: parts.clone().flat_map(|part| &part.services).map(|(key, value)| (*key, *value)).collect(),
            backends: parts.clone().flat_map(|part| &part.backends).map(|(id, value)| (*id, *value)).collect(),
            rev_nat: parts.clone().flat_map(|part| &part.rev_nat).map(|(id, value)| (*id, *value)).collect(),
            maglev: parts.clone().flat_map(|part| &part.maglev).map(|(key, row)| (*key, row.clone())).collect(),
            source_ranges: parts.flat_map(|part| &part.source_ranges).copied().collect(),
        }
    }

    /// Adds or replaces every entry of `other`.
    pub fn overlay(&mut self, other: &MapContents) {
        self.services.extend(&other.services);
        self.backends.extend(&other.backends);
        self.rev_nat.extend(&other.rev_nat);
        self.maglev.extend(other.maglev.iter().map(|(key, row)| (*key, row.clone())));
        self.source_ranges.extend(&other.source_ranges);
    }
}

/// One map write. `diff` orders them so that no packet ever finds a slot
/// pointing at a missing backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MapOp {
    PutBackend(u32, Backend),
    PutRevNat(u32, RevNat),
    PutSourceRange(SourceRangeEntry),
    PutService(ServiceKey, ServiceValue),
    DeleteService(ServiceKey),
    DeleteBackend(u32),
    DeleteRevNat(u32),
    DeleteSourceRange(SourceRangeEntry),
    /// Shared with the plan's contents: a row is 1 KiB, every other op a
    /// few bytes.
    PutMaglevRow(MaglevKey, Arc<MaglevRow>),
    DeleteMaglevRow(MaglevKey),
}

/// Reads and writes the agent-owned maps: the pinned eBPF maps in the agent,
/// an in-memory fake in tests.
pub trait MapWriter {
    fn read(&self) -> anyhow::Result<MapContents>;
    /// The capacities and Maglev table size the maps were loaded with.
    fn sizes(&self) -> MapSizes;
    fn apply(&mut self, op: &MapOp) -> anyhow::Result<()>;

    /// Applies `ops` in order, as that many `apply` calls would; on a
    /// failure, the index of the op that failed (every op before it was
    /// applied, none after) and its error. The kernel writer batches runs.
    fn apply_all(&mut self, ops: &[MapOp]) -> Result<(), (usize, anyhow::Error)> {
        for (index, op) in ops.iter().enumerate() {
            self.apply(op).map_err(|error| (index, error))?;
        }
        Ok(())
    }

    /// Records which Service port each frontend (by reverse-NAT id) belongs
    /// to, for people reading the maps; nothing to do where nobody does.
    fn label_frontends(&mut self, _names: &BTreeMap<u32, String>) -> anyhow::Result<()> {
        Ok(())
    }

    /// Ends the UDP flows pinned to `leaving` backends (deletes their
    /// conntrack entries) and says which of them TCP flows still use;
    /// nothing to do without conntrack.
    fn release_backends(&mut self, _leaving: &BTreeSet<u32>) -> anyhow::Result<FlowsOfLeaving> {
        Ok(FlowsOfLeaving::default())
    }
}

/// What `MapWriter::release_backends` found among the flows of backends no
/// Service names any more.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowsOfLeaving {
    /// The backends tracked TCP flows still use: they stay in the map (a
    /// connection keeps its pod, as through kube-proxy's conntrack) until
    /// their flows end.
    pub held: BTreeSet<u32>,
    /// UDP conntrack entries deleted: a stale one would keep sending a
    /// client's datagrams (DNS, say) to a pod that left.
    pub udp_flushed: usize,
}
