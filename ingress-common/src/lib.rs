//! The contract between the agent (userspace) and the eBPF programs.
//!
//! Everything in a map key or value is `#[repr(C)]` with explicit padding and
//! a compile-time size check, so both sides agree on every byte. Addresses and
//! ports are stored in network byte order exactly as they appear in a packet:
//! the per-packet path never swaps bytes, the agent does it once when it writes.
#![no_std]

pub mod checksum;
pub mod hash;
pub mod maps;
pub mod stats;

/// IANA protocol numbers the dataplane translates.
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// The source address a pod's packet gets when its Service sends it back to
/// that same pod (hairpin), as Cilium's `169.254.42.1`: link-local, so it is
/// never a pod's or a node's address. See `ingress-ebpf/src/hairpin.rs`.
pub const HAIRPIN_ADDR: [u8; 4] = [169, 254, 42, 1];
/// `HAIRPIN_ADDR` as loaded from a packet (network byte order).
pub const HAIRPIN_ADDR_BE: u32 = u32::from_ne_bytes(HAIRPIN_ADDR);
