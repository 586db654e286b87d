//! The backend the programs give a new flow, computed from the maps' contents
//! the way `ingress-ebpf/src/maglev.rs` does (the frontend's Maglev table,
//! else hashing over its slots), so a test can tell a fresh choice from a
//! remembered one. Either family: addresses are hashed folded
//! (`Addr::fold`), as the programs do.

use std::net::IpAddr;

use ingress_common::addr::Addr;
use ingress_common::hash::flow_hash;
use ingress_common::maps::{DEFAULT_MAGLEV_TABLE_SIZE, MaglevKey, SCOPE_EXTERNAL, ServiceKey, maglev_position};
use ingress_userspace::dataplane::MapContents;

/// One new flow: client and frontend (of one family), ports in host byte order.
#[derive(Clone, Copy, Debug)]
pub struct NewFlow {
    pub client: IpAddr,
    pub sport: u16,
    pub frontend: IpAddr,
    pub port: u16,
    pub proto: u8,
}

/// The backend address `flow` gets with no conntrack or affinity entry, for
/// programs loaded with the default Maglev table size.
pub fn fresh_choice(contents: &MapContents, flow: NewFlow) -> IpAddr {
    let (client, frontend) = (Addr::from(flow.client), Addr::from(flow.frontend));
    let key = |slot| ServiceKey {
        addr: frontend,
        port: flow.port.to_be(),
        proto: flow.proto,
        scope: SCOPE_EXTERNAL,
        slot,
        _pad: [0; 2],
    };
    let header = contents.services[&key(0)];
    let hash = flow_hash(client.fold(), frontend.fold(), flow.sport.to_be(), flow.port.to_be(), flow.proto);
    let slot = if header.backend_id != 0 {
        let (row, column) = maglev_position(hash % DEFAULT_MAGLEV_TABLE_SIZE);
        contents.maglev[&MaglevKey { table: header.backend_id, row }].slots[column]
    } else {
        (hash % u32::from(header.count)) as u16 + 1
    };
    let id = contents.services[&key(slot)].backend_id;
    IpAddr::from(contents.backends[&id].addr)
}
