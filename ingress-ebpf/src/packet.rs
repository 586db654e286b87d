//! Bounds-checked access to packet bytes, the same for XDP and TC, and
//! reshaping a packet into a reply to its sender.

use aya_ebpf::bindings::bpf_adj_room_mode::BPF_ADJ_ROOM_MAC;
use aya_ebpf::helpers::{
    bpf_redirect, bpf_skb_change_tail, bpf_xdp_adjust_head, bpf_xdp_adjust_tail, bpf_xdp_get_buff_len,
};
use aya_ebpf::programs::{TcContext, XdpContext};
use ingress_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

/// The largest Ethernet + IPv4 (with options) + TCP header the parser reads.
const MAX_HEADERS: u32 = 14 + 60 + 20;
/// The most 16-bit words `sum_words` adds: an IPv4 header with options and
/// 8 bytes after it, what an ICMP error quotes.
pub const MAX_SUM_WORDS: usize = (60 + 8) / 2;

pub trait Packet {
    fn start(&self) -> usize;
    fn end(&self) -> usize;

    /// A pointer to a `T` at `offset`, or `None` when the frame is shorter.
    /// The explicit check against `end` is what the verifier needs to see.
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Option<*mut T> {
        self.ptr_from(self.start(), offset)
    }

    /// Like `ptr_at`, from a `base` inside the packet (see `opaque_base`).
    #[inline(always)]
    fn ptr_from<T>(&self, base: usize, offset: usize) -> Option<*mut T> {
        let at = base + offset;
        if at + core::mem::size_of::<T>() > self.end() {
            return None;
        }
        Some(at as *mut T)
    }

    /// Reads an unaligned `T` at `offset`.
    #[inline(always)]
    fn read<T: Copy>(&self, offset: usize) -> Option<T> {
        self.read_from(self.start(), offset)
    }

    #[inline(always)]
    fn read_from<T: Copy>(&self, base: usize, offset: usize) -> Option<T> {
        // SAFETY: ptr_from checked that the bytes are inside the packet.
        self.ptr_from::<T>(base, offset)
            .map(|ptr| unsafe { core::ptr::read_unaligned(ptr) })
    }

    /// The unfolded one's-complement sum of `words` big-endian 16-bit words
    /// from `offset` (at most `MAX_SUM_WORDS`), for a checksum over bytes
    /// that stay in the packet.
    #[inline(always)]
    fn sum_words(&self, offset: usize, words: usize) -> Option<u32> {
        let mut sum = 0u32;
        for i in 0..MAX_SUM_WORDS {
            if i >= words {
                break;
            }
            let word: [u8; 2] = self.read(offset + 2 * i)?;
            sum += u16::from_be_bytes(word) as u32;
        }
        Some(sum)
    }

    /// The address of a header that starts at a variable offset (after IPv4
    /// options). The verifier tracks bounds per variable-offset pointer, so
    /// every check and access must derive from one such pointer; the volatile
    /// read stops LLVM from re-deriving it from `start` at each use.
    #[inline(always)]
    fn opaque_base(&self, offset: usize) -> usize {
        let base = self.start() + offset;
        // SAFETY: reads a local.
        unsafe { core::ptr::read_volatile(&base) }
    }
}

pub struct XdpPacket<'a>(pub &'a XdpContext);
pub struct TcPacket<'a>(pub &'a TcContext);

impl Packet for XdpPacket<'_> {
    #[inline(always)]
    fn start(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.0.data_end()
    }
}

impl Packet for TcPacket<'_> {
    #[inline(always)]
    fn start(&self) -> usize {
        self.0.data()
    }
    #[inline(always)]
    fn end(&self) -> usize {
        self.0.data_end()
    }
}

impl TcPacket<'_> {
    /// An skb may carry its headers outside the linear area that direct
    /// packet access sees; pull them in once, before any pointer is taken.
    /// Only as far as this packet's headers really go: a TCP segment from a
    /// local socket has its payload in page fragments right after a 66-byte
    /// head, and pulling beyond it would copy the (cloned) skb's head on
    /// every packet, even the ones that are only passed.
    #[inline(always)]
    pub fn make_headers_linear(&self) -> Result<(), ()> {
        let headers = self.headers_len().unwrap_or(MAX_HEADERS);
        let want = if self.0.len() < headers { self.0.len() } else { headers };
        if ((self.end() - self.start()) as u32) < want {
            self.0.pull_data(want).map_err(|_| ())?;
        }
        Ok(())
    }

    /// How many bytes of headers the parser reads from this packet: Ethernet,
    /// IP (with IPv4 options) and the fixed TCP or UDP header, or an ICMP
    /// error's header and as much of its quote as `icmp_error` may rewrite.
    /// `None` when the IP header itself is not linear; then the most the
    /// parser could read of a TCP or UDP packet.
    #[inline(always)]
    fn headers_len(&self) -> Option<u32> {
        let ethertype: u16 = self.read(12)?;
        let (l4, proto, icmp, quoted_ip) = if ethertype == 0x0800u16.to_be() {
            let version_ihl: u8 = self.read(14)?;
            (14 + (version_ihl & 0x0f) as u32 * 4, self.read::<u8>(14 + 9)?, IPPROTO_ICMP, 60)
        } else if ethertype == 0x86ddu16.to_be() {
            (14 + 40, self.read::<u8>(14 + 6)?, IPPROTO_ICMPV6, 40)
        } else {
            return Some(14);
        };
        Some(match proto {
            IPPROTO_TCP => l4 + 20,
            IPPROTO_UDP => l4 + 8,
            // The quoted TCP header up to its checksum: ICMP is rare, and a
            // short error is pulled no further than its own length.
            p if p == icmp => l4 + 8 + quoted_ip + 20,
            _ => l4,
        })
    }
}

/// Turning a packet into a reply in place: every helper here may move the
/// packet, so callers take no pointer across a call.
pub trait Reshape {
    /// Keeps only the first `len` bytes.
    fn truncate(&self, len: u32) -> Result<(), ()>;
    /// Makes `len` more bytes of room within the first `ETH_HLEN + len`
    /// bytes, in front of the IP header; the caller rewrites all of them.
    fn grow_front(&self, len: u32) -> Result<(), ()>;
    /// Overwrites the first `N` bytes.
    fn write_front<const N: usize>(&self, bytes: &[u8; N]) -> Result<(), ()>;
}

impl Reshape for XdpPacket<'_> {
    #[inline(always)]
    fn truncate(&self, len: u32) -> Result<(), ()> {
        // The length from a helper, not from `end - start`: in a subprogram
        // the verifier refuses arithmetic LLVM may reorder onto `data_end`.
        // SAFETY: a helper call on the program's own context.
        let current = unsafe { bpf_xdp_get_buff_len(self.0.ctx) };
        let delta = len as i32 - current as i32;
        // SAFETY: a helper call on the program's own context.
        match unsafe { bpf_xdp_adjust_tail(self.0.ctx, delta) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    #[inline(always)]
    fn grow_front(&self, len: u32) -> Result<(), ()> {
        // SAFETY: as above; XDP keeps headroom in front of every frame.
        match unsafe { bpf_xdp_adjust_head(self.0.ctx, -(len as i32)) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    #[inline(always)]
    fn write_front<const N: usize>(&self, bytes: &[u8; N]) -> Result<(), ()> {
        let ptr = self.ptr_at::<[u8; N]>(0).ok_or(())?;
        // SAFETY: ptr_at checked the bounds.
        unsafe { core::ptr::write_unaligned(ptr, *bytes) };
        Ok(())
    }
}

impl Reshape for TcPacket<'_> {
    #[inline(always)]
    fn truncate(&self, len: u32) -> Result<(), ()> {
        // SAFETY: a helper call on the program's own skb.
        match unsafe { bpf_skb_change_tail(self.0.skb.skb, len, 0) } {
            0 => Ok(()),
            _ => Err(()),
        }
    }

    #[inline(always)]
    fn grow_front(&self, len: u32) -> Result<(), ()> {
        // Room between the Ethernet and the IP header: the skb's header
        // offsets then still describe the packet.
        self.0.adjust_room(len as i32, BPF_ADJ_ROOM_MAC, 0).map_err(|_| ())
    }

    #[inline(always)]
    fn write_front<const N: usize>(&self, bytes: &[u8; N]) -> Result<(), ()> {
        self.0.store(0, bytes, 0).map_err(|_| ())
    }
}

impl TcPacket<'_> {
    /// The verdict that sends the packet back out of the interface it came
    /// in on (its egress: towards whoever sent it, a pod or the uplink's peer).
    #[inline(always)]
    pub fn redirect_back(&self) -> i32 {
        // SAFETY: reads the context and calls a helper without pointers.
        unsafe { bpf_redirect((*self.0.skb.skb).ifindex, 0) as i32 }
    }
}
