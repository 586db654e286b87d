//! The backend the programs give a new flow, computed from the maps' contents
//! the way `ingress-ebpf/src/maglev.rs` does (the frontend's Maglev table,
//! else hashing over its slots), so a test can tell a fresh choice from a
//! remembered one.

use std::net::Ipv4Addr;

use ingress_common::hash::flow_hash;
use ingress_common::maps::{DEFAULT_MAGLEV_TABLE_SIZE, MaglevKey, SCOPE_EXTERNAL, ServiceKey, maglev_position};
use ingress_userspace::dataplane::MapContents;

/// One new flow: client and frontend, in host byte order.
#[derive(Clone, Copy, Debug)]
pub struct NewFlow {
    pub client: Ipv4Addr,
    pub sport: u16,
    pub frontend: Ipv4Addr,
    pub port: u16,
    pub proto: u8,
}

/// The backend address `flow` gets with no conntrack or affinity entry, for
/// programs loaded with the default Maglev table size.
pub fn fresh_choice(contents: &MapContents, flow: NewFlow) -> Ipv4Addr {
    let key = |slot| ServiceKey {
        addr: u32::from(flow.frontend).to_be(),
        port: flow.port.to_be(),
        proto: flow.proto,
        scope: SCOPE_EXTERNAL,
        slot,
        _pad: [0; 2],
    };
    let header = contents.services[&key(0)];
    let hash = flow_hash(
        u32::from(flow.client).to_be(),
        u32::from(flow.frontend).to_be(),
        flow.sport.to_be(),
        flow.port.to_be(),
        flow.proto,
    );
    let id = if header.backend_id != 0 {
        let (row, column) = maglev_position(hash % DEFAULT_MAGLEV_TABLE_SIZE);
        contents.maglev[&MaglevKey { table: header.backend_id, row }].backend_ids[column]
    } else {
        contents.services[&key((hash % u32::from(header.count)) as u16 + 1)].backend_id
    };
    Ipv4Addr::from(u32::from_be(contents.backends[&id].addr))
}
