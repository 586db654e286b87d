//! Writing a translation into the packet, with correct checksums. XDP writes
//! the bytes itself; TC uses the kernel's helpers, which also handle the
//! partial checksums of locally generated packets (CHECKSUM_PARTIAL).

use aya_ebpf::bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR};
use ingress_common::addr::Addr;
use ingress_common::checksum::{replace16, replace32, replace_addr, udp_adjust};
use ingress_common::stats::{FORWARD_TRANSLATED, REPLY_TRANSLATED};
use ingress_common::IPPROTO_UDP;

use crate::packet::{Packet, TcPacket, XdpPacket};
use crate::parse::{ETH_HLEN, Flow};

/// Which end of the packet is rewritten.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Client -> frontend becomes client -> backend.
    Destination,
    /// Backend -> client becomes frontend -> client.
    Source,
}

#[derive(Clone, Copy)]
pub struct Translation {
    pub side: Side,
    /// New address, of the packet's family.
    pub addr: Addr,
    /// New port, network byte order.
    pub port: u16,
    /// The `ingress_common::stats` reason the packet is counted under.
    pub reason: u32,
}

impl Translation {
    /// Client -> frontend becomes client -> backend.
    #[inline(always)]
    pub fn to_backend(addr: Addr, port: u16) -> Translation {
        Translation { side: Side::Destination, addr, port, reason: FORWARD_TRANSLATED }
    }

    /// Backend -> client becomes frontend -> client.
    #[inline(always)]
    pub fn from_frontend(addr: Addr, port: u16) -> Translation {
        Translation { side: Side::Source, addr, port, reason: REPLY_TRANSLATED }
    }

    #[inline(always)]
    pub fn reason(&self) -> u32 {
        self.reason
    }
}

/// Where the rewritten fields are and what they held.
struct Fields {
    addr_offset: usize,
    /// Relative to the L4 header.
    port_field: usize,
    old_addr: Addr,
    old_port: u16,
}

/// IPv4's header checksum; IPv6 has none.
const IP_CSUM_OFFSET: usize = ETH_HLEN + 10;

#[inline(always)]
fn fields(flow: &Flow, side: Side) -> Fields {
    match side {
        Side::Destination => Fields {
            addr_offset: ETH_HLEN + if flow.v6 { 24 } else { 16 },
            port_field: 2,
            old_addr: flow.daddr,
            old_port: flow.dport,
        },
        Side::Source => Fields {
            addr_offset: ETH_HLEN + if flow.v6 { 8 } else { 12 },
            port_field: 0,
            old_addr: flow.saddr,
            old_port: flow.sport,
        },
    }
}

pub trait Rewriter {
    fn rewrite(&self, flow: &Flow, translation: &Translation) -> Result<(), ()>;
}

#[inline(always)]
fn write<P: Packet, T>(packet: &P, base: usize, offset: usize, value: T) -> Result<(), ()> {
    let ptr = packet.ptr_from::<T>(base, offset).ok_or(())?;
    // SAFETY: ptr_at checked the bounds.
    unsafe { core::ptr::write_unaligned(ptr, value) };
    Ok(())
}

impl Rewriter for XdpPacket<'_> {
    #[inline(never)]
    fn rewrite(&self, flow: &Flow, t: &Translation) -> Result<(), ()> {
        let f = fields(flow, t.side);
        let start = self.start();
        let csum_field = flow.l4_csum_field();
        let l4_base = self.opaque_base(flow.l4);
        let old_csum: u16 = self.read_from(l4_base, csum_field).ok_or(())?;
        let with_addr = if flow.v6 {
            write(self, start, f.addr_offset, t.addr)?;
            replace_addr(old_csum, &f.old_addr, &t.addr)
        } else {
            let ip_csum: u16 = self.read(IP_CSUM_OFFSET).ok_or(())?;
            write(self, start, IP_CSUM_OFFSET, replace32(ip_csum, f.old_addr.v4(), t.addr.v4()))?;
            write(self, start, f.addr_offset, t.addr.v4())?;
            replace32(old_csum, f.old_addr.v4(), t.addr.v4())
        };
        let mut csum = replace16(with_addr, f.old_port, t.port);
        if flow.proto == IPPROTO_UDP {
            csum = udp_adjust(old_csum, csum);
        }
        write(self, l4_base, csum_field, csum)?;
        write(self, l4_base, f.port_field, t.port)
    }
}

impl Rewriter for TcPacket<'_> {
    #[inline(never)]
    fn rewrite(&self, flow: &Flow, t: &Translation) -> Result<(), ()> {
        let f = fields(flow, t.side);
        let ctx = self.0;
        // UDP's "no checksum" 0 must stay 0 and a computed 0 become 0xffff.
        let udp = if flow.proto == IPPROTO_UDP { BPF_F_MARK_MANGLED_0 as u64 } else { 0 };
        let csum_offset = flow.l4 + flow.l4_csum_field();
        let pseudo = BPF_F_PSEUDO_HDR as u64 | udp | 4;
        if flow.v6 {
            for i in 0..4 {
                ctx.l4_csum_replace(csum_offset, f.old_addr.words[i] as u64, t.addr.words[i] as u64, pseudo)
                    .map_err(|_| ())?;
            }
        } else {
            let (old, new) = (f.old_addr.v4(), t.addr.v4());
            ctx.l4_csum_replace(csum_offset, old as u64, new as u64, pseudo).map_err(|_| ())?;
            ctx.l3_csum_replace(IP_CSUM_OFFSET, old as u64, new as u64, 4).map_err(|_| ())?;
        }
        ctx.l4_csum_replace(csum_offset, f.old_port as u64, t.port as u64, udp | 2)
            .map_err(|_| ())?;
        // The fields themselves are written directly, not with
        // bpf_skb_store_bytes (two helper calls less per packet): the
        // headers are linear (`make_headers_linear`) and the checksum
        // helpers above made them writable. Only the checksums need the
        // helpers, for the skb's checksum state.
        let start = self.start();
        if flow.v6 {
            write(self, start, f.addr_offset, t.addr)?;
        } else {
            write(self, start, f.addr_offset, t.addr.v4())?;
        }
        write(self, self.opaque_base(flow.l4), f.port_field, t.port)
    }
}
