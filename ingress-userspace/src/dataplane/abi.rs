//! Conversions between the model and the map ABI. The ABI keeps addresses and
//! ports in network byte order (as loaded from a packet) and both address
//! families in one 16-byte `Addr`, so every swap and mapping happens here and
//! nowhere else.

use std::net::IpAddr;

use ingress_common::addr::Addr;
use ingress_common::maps::{
    self, RevNat, SCOPE_EXTERNAL, SOURCE_RANGE_EXACT_BITS, ServiceKey, SourceRangeKey, V4_MAPPED_PREFIX_BITS,
};

use super::SourceRangeEntry;
use crate::model::{Backend, BackendAddr, BackendState, Frontend, Protocol, SourceRange};

pub fn service_key(frontend: &Frontend, slot: u16) -> ServiceKey {
    ServiceKey {
        addr: frontend.addr.into(),
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
        addr: key.addr.into(),
        port: u16::from_be(key.port),
        protocol: Protocol::from_number(key.proto)?,
    })
}

pub fn source_range_entry(frontend: &Frontend, rev_nat_id: u32, range: &SourceRange) -> SourceRangeEntry {
    let key = SourceRangeKey {
        rev_nat_id,
        proto: frontend.protocol.number(),
        _pad: [0; 3],
        addr: range.addr.into(),
    };
    (SOURCE_RANGE_EXACT_BITS + mapped_prefix_bits(&key.addr) + u32::from(range.prefix_len), key)
}

/// What an address's prefix length gains in the 16-byte form: an IPv4 range
/// matches only the IPv4-mapped addresses, whose first 96 bits are fixed.
fn mapped_prefix_bits(addr: &Addr) -> u32 {
    if addr.is_v4() { V4_MAPPED_PREFIX_BITS } else { 0 }
}

/// "client range for rev-NAT id / protocol", for logs.
pub fn describe_source_range((prefix_len, key): &SourceRangeEntry) -> String {
    let len = prefix_len.saturating_sub(SOURCE_RANGE_EXACT_BITS + mapped_prefix_bits(&key.addr));
    format!("{}/{len} for rev-NAT {} proto {}", IpAddr::from(key.addr), key.rev_nat_id, key.proto)
}

pub fn backend_value(backend: &Backend) -> maps::Backend {
    maps::Backend {
        addr: backend.addr.addr.into(),
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
        addr: value.addr.into(),
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

pub fn rev_nat_value(addr: IpAddr, port: u16) -> RevNat {
    RevNat {
        addr: addr.into(),
        port: port.to_be(),
        _pad: [0; 2],
    }
}

pub fn rev_nat_of(value: &RevNat) -> (IpAddr, u16) {
    (value.addr.into(), u16::from_be(value.port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn round_trips_in_network_order() {
        let mapped = std::net::Ipv4Addr::new(10, 96, 0, 10).to_ipv6_mapped().octets();
        let cases = [
            ("IPv4", "10.96.0.10", "10.244.1.2", mapped),
            ("IPv6", "fd00:10:96::a", "fd00:10:244:1::2", [0xfd, 0, 0, 0x10, 0, 0x96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xa]),
        ];
        for (family, vip, pod, wire) in cases {
            let frontend = Frontend { addr: ip(vip), port: 80, protocol: Protocol::Udp };
            let key = service_key(&frontend, 3);
            assert_eq!(key.addr.octets(), wire, "{family}: as a packet holds it");
            assert_eq!(key.port.to_ne_bytes(), [0, 80], "{family}");
            assert_eq!((frontend_of(&key), key.slot), (Some(frontend), 3), "{family}");

            for (state, local) in [(BackendState::Active, true), (BackendState::Terminating, false)] {
                let backend = Backend { addr: BackendAddr { addr: ip(pod), port: 8080 }, state, local };
                assert_eq!(backend_of(&backend_value(&backend)), Some(backend), "{family}");
            }
            let rev_nat = rev_nat_value(ip(vip), 30080);
            assert_eq!(rev_nat_of(&rev_nat), (ip(vip), 30080), "{family}");
        }
    }

    #[test]
    fn source_range_prefixes_count_the_mapped_ipv4_bits() {
        let cases = [
            ("192.0.2.0", 24, 64 + 96 + 24),
            ("0.0.0.0", 0, 64 + 96),
            ("2001:db8::", 32, 64 + 32),
            ("::", 0, 64),
        ];
        for (addr, prefix_len, trie_prefix) in cases {
            let frontend = Frontend { addr: ip("fd00::1"), port: 443, protocol: Protocol::Tcp };
            let range = SourceRange::new(ip(addr), prefix_len).unwrap();
            let entry = source_range_entry(&frontend, 7, &range);
            assert_eq!(entry.0, trie_prefix, "{range}");
            assert_eq!(IpAddr::from(entry.1.addr), range.addr, "{range}");
            assert_eq!(describe_source_range(&entry), format!("{range} for rev-NAT 7 proto 6"));
        }
    }
}
