//! Conversions between the model and the map ABI. The ABI keeps addresses and
//! ports in network byte order (as loaded from a packet), so every swap
//! happens here and nowhere else.

use std::net::Ipv4Addr;

use ingress_common::maps::{self, RevNat, SCOPE_EXTERNAL, SOURCE_RANGE_EXACT_BITS, ServiceKey, SourceRangeKey};

use super::SourceRangeEntry;
use crate::model::{Backend, BackendAddr, BackendState, Frontend, Protocol, SourceRange};

pub fn addr_to_be(addr: Ipv4Addr) -> u32 {
    u32::from(addr).to_be()
}

pub fn addr_from_be(raw: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be(raw))
}

pub fn service_key(frontend: &Frontend, slot: u16) -> ServiceKey {
    ServiceKey {
        addr: addr_to_be(frontend.addr),
        port: frontend.port.to_be(),
        proto: frontend.protocol.number(),
        scope: SCOPE_EXTERNAL,
        slot,
        _pad: [0; 2],
    }
}

/// `None` for a protocol this agent does not know (written by a newer one).
pub fn frontend_of(key: &ServiceKey) -> Option<Frontend> {
    Some(Frontend {
        addr: addr_from_be(key.addr),
        port: u16::from_be(key.port),
        protocol: Protocol::from_number(key.proto)?,
    })
}

pub fn source_range_entry(frontend: &Frontend, rev_nat_id: u32, range: &SourceRange) -> SourceRangeEntry {
    let key = SourceRangeKey {
        rev_nat_id,
        proto: frontend.protocol.number(),
        _pad: [0; 3],
        addr: addr_to_be(range.addr),
    };
    (SOURCE_RANGE_EXACT_BITS + u32::from(range.prefix_len), key)
}

/// "client range for rev-NAT id / protocol", for logs.
pub fn describe_source_range((prefix_len, key): &SourceRangeEntry) -> String {
    let len = prefix_len.saturating_sub(SOURCE_RANGE_EXACT_BITS);
    format!("{}/{len} for rev-NAT {} proto {}", addr_from_be(key.addr), key.rev_nat_id, key.proto)
}

pub fn backend_value(backend: &Backend) -> maps::Backend {
    maps::Backend {
        addr: addr_to_be(backend.addr.addr),
        port: backend.addr.port.to_be(),
        state: match backend.state {
            BackendState::Active => maps::BACKEND_STATE_ACTIVE,
            BackendState::Terminating => maps::BACKEND_STATE_TERMINATING,
        },
        flags: if backend.local { maps::BACKEND_FLAG_LOCAL } else { 0 },
    }
}

pub fn backend_addr_of(value: &maps::Backend) -> BackendAddr {
    BackendAddr {
        addr: addr_from_be(value.addr),
        port: u16::from_be(value.port),
    }
}

/// `None` for a state this agent does not know.
pub fn backend_of(value: &maps::Backend) -> Option<Backend> {
    let state = match value.state {
        maps::BACKEND_STATE_ACTIVE => BackendState::Active,
        maps::BACKEND_STATE_TERMINATING => BackendState::Terminating,
        _ => return None,
    };
    Some(Backend {
        addr: backend_addr_of(value),
        state,
        local: value.flags & maps::BACKEND_FLAG_LOCAL != 0,
    })
}

pub fn rev_nat_value(addr: Ipv4Addr, port: u16) -> RevNat {
    RevNat {
        addr: addr_to_be(addr),
        port: port.to_be(),
        _pad: [0; 2],
    }
}

pub fn rev_nat_of(value: &RevNat) -> (Ipv4Addr, u16) {
    (addr_from_be(value.addr), u16::from_be(value.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_network_order() {
        let frontend = Frontend {
            addr: Ipv4Addr::new(10, 96, 0, 10),
            port: 80,
            protocol: Protocol::Udp,
        };
        let key = service_key(&frontend, 3);
        assert_eq!(key.addr.to_ne_bytes(), [10, 96, 0, 10]);
        assert_eq!(key.port.to_ne_bytes(), [0, 80]);
        assert_eq!((frontend_of(&key), key.slot), (Some(frontend), 3));

        for (state, local) in [(BackendState::Active, true), (BackendState::Terminating, false)] {
            let addr = BackendAddr {
                addr: Ipv4Addr::new(10, 244, 1, 2),
                port: 8080,
            };
            let backend = Backend { addr, state, local };
            assert_eq!(backend_of(&backend_value(&backend)), Some(backend));
        }
        let rev_nat = rev_nat_value(Ipv4Addr::new(192, 168, 1, 1), 30080);
        assert_eq!(rev_nat_of(&rev_nat), (Ipv4Addr::new(192, 168, 1, 1), 30080));
    }
}
