//! The contract between the agent (userspace) and the eBPF programs.
//!
//! Everything in a map key or value is `#[repr(C)]` with explicit padding and
//! a compile-time size check, so both sides agree on every byte. Addresses and
//! ports are stored in network byte order exactly as they appear in a packet:
//! the per-packet path never swaps bytes, the agent does it once when it writes.
#![no_std]

pub mod addr;
pub mod checksum;
pub mod flow_filter;
pub mod hash;
pub mod maps;
pub mod sockets;
pub mod stats;

/// IANA protocol numbers the dataplane translates.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
/// The protocols of the ICMP errors the dataplane sends and translates back.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_ICMPV6: u8 = 58;

/// The source address a pod's packet gets when its Service sends it back to
/// that same pod (hairpin), as Cilium's `169.254.42.1`: link-local, so it is
/// never a pod's or a node's address. See `ingress-ebpf/src/hairpin.rs`.
pub const HAIRPIN_ADDR: [u8; 4] = [169, 254, 42, 1];
/// `HAIRPIN_ADDR` in the maps' form.
pub const HAIRPIN_ADDR_V4: addr::Addr = addr::Addr::from_v4(u32::from_ne_bytes(HAIRPIN_ADDR));
/// The IPv6 hairpin source: `HAIRPIN_ADDR` as the last four bytes under the
/// unique-local prefix `fd00:6c62::/32` (RFC 4193; "lb"), which no cluster
/// is expected to use. Not
/// link-local on purpose: a pod sends its answer to its default gateway (the
/// node) like any off-link address, without neighbour discovery for it.
pub const HAIRPIN_ADDR6: [u8; 16] = [0xfd, 0x00, 0x6c, 0x62, 0, 0, 0, 0, 0, 0, 0, 0, 0xa9, 0xfe, 0x2a, 0x01];
/// `HAIRPIN_ADDR6` in the maps' form.
pub const HAIRPIN_ADDR_V6: addr::Addr = addr::Addr::from_octets(HAIRPIN_ADDR6);
