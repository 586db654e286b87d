//! Per-CPU scratch memory for the keys and headers a packet's path builds.
//! The verifier allows 512 bytes of stack across a whole call chain, and
//! with 16-byte addresses (see `ingress_common::addr`) a conntrack or SNAT
//! key takes 40: built on the stack, the keys of one path overflow it. A key
//! is built, moved here, and only a reference into this memory is passed to
//! the map helpers.
//!
//! One slot per CPU is enough: each program runs to completion on its CPU,
//! and never inside another run of these programs (XDP and TC ingress run
//! in softirq context, TC egress with softirqs disabled, and none of them
//! calls into the stack while it runs).

use aya_ebpf::bindings::bpf_fib_lookup;
use aya_ebpf::macros::map;
use aya_ebpf::maps::PerCpuArray;
use ingress_common::maps::{CtKey, SnatEntry, SnatKey};

use crate::nat::Translation;
use crate::parse::Flow;

/// The largest reject the programs build: Ethernet, IPv6 and TCP headers.
pub const FRAME_MAX: usize = 14 + 40 + 20;

#[repr(C)]
pub struct Scratch {
    /// Conntrack keys: a flow's own entry (0) and its other direction's (1).
    ct: [CtKey; 2],
    /// SNAT keys: the flow's forward key (0), the reply key being tried (1),
    /// and the forward key a reply key names (2).
    snat: [SnatKey; 3],
    /// SNAT entries being inserted: a flow's reply entry (0) and its forward
    /// entry (1).
    snat_entries: [SnatEntry; 2],
    /// The headers of a reject being built, in words (see `frame`).
    frame: [u64; FRAME_MAX.div_ceil(8)],
    /// The ICMP error being translated back.
    quote: Quoted,
    /// The FIB lookup of a packet the program routes itself, and its answer.
    route: Route,
    /// What `snat::prepare` hands its global function.
    snat_request: SnatRequest,
}

#[map(name = "lb_scratch")]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn scratch() -> Option<*mut Scratch> {
    SCRATCH.get_ptr_mut(0)
}

/// Stores `value` in `slots[slot]` and returns it there.
#[inline(always)]
fn store<T, const N: usize>(slots: *mut [T; N], slot: usize, value: T) -> Option<&'static T> {
    // SAFETY: this CPU's scratch, used by one packet at a time (see above);
    // a caller holds a reference only until it stores another value in the
    // same slot.
    let place = unsafe { (*slots).get_mut(slot)? };
    *place = value;
    Some(place)
}

/// Stores `key` in conntrack slot `slot` (0 or 1) and returns it there.
#[inline(always)]
pub fn ct(slot: usize, key: CtKey) -> Option<&'static CtKey> {
    // SAFETY: a field of this CPU's scratch; no reference is made to it here.
    store(unsafe { &raw mut (*scratch()?).ct }, slot, key)
}

/// Stores `key` in SNAT slot `slot` (0, 1 or 2) and returns it there.
#[inline(always)]
pub fn snat(slot: usize, key: SnatKey) -> Option<&'static SnatKey> {
    // SAFETY: as in `ct`.
    store(unsafe { &raw mut (*scratch()?).snat }, slot, key)
}

/// Stores `entry` in SNAT entry slot `slot` (0 or 1) and returns it there.
#[inline(always)]
pub fn snat_entry(slot: usize, entry: SnatEntry) -> Option<&'static SnatEntry> {
    // SAFETY: as in `ct`.
    store(unsafe { &raw mut (*scratch()?).snat_entries }, slot, entry)
}

/// Stores a SNAT port request and returns it there.
#[inline(always)]
pub fn snat_request(flow: Flow, to_backend: Translation) -> Option<&'static SnatRequest> {
    let scratch = scratch()?;
    // SAFETY: as in `store`.
    let place = unsafe { &mut (*scratch).snat_request };
    *place = SnatRequest { flow, to_backend };
    Some(place)
}

/// The memory a reject's headers are built in, all zero.
///
/// Zeroed a word at a time: a `fill(0)` of the bytes stays a call to
/// `memset` in the eBPF build, a byte loop the verifier walks byte by
/// byte for every state that reaches it (about 10,000 of `lb_tc_in`'s
/// instructions processed). Volatile, so that the stores are not turned
/// back into that call.
#[inline(always)]
pub fn frame() -> Option<&'static mut [u8; FRAME_MAX]> {
    let scratch = scratch()?;
    // SAFETY: as in `store`.
    let words = unsafe { &mut (*scratch).frame };
    for word in words.iter_mut() {
        // SAFETY: a reference to a u64 of this CPU's scratch.
        unsafe { core::ptr::write_volatile(word, 0) };
    }
    // SAFETY: the words hold at least FRAME_MAX bytes, and any bytes are a
    // valid [u8; FRAME_MAX].
    Some(unsafe { &mut *words.as_mut_ptr().cast::<[u8; FRAME_MAX]>() })
}

/// The memory an ICMP error's quote is parsed into.
#[inline(always)]
pub fn quote() -> Option<&'static mut Quoted> {
    let scratch = scratch()?;
    // SAFETY: as in `store`.
    Some(unsafe { &mut (*scratch).quote })
}

/// The memory a host-routed packet's FIB lookup is made in.
#[inline(always)]
pub fn route() -> Option<&'static mut Route> {
    let scratch = scratch()?;
    // SAFETY: as in `store`.
    Some(unsafe { &mut (*scratch).route })
}

/// A host-routed packet's route, as `host_route::find` leaves it for
/// `host_route::send`.
#[repr(C)]
pub struct Route {
    /// The FIB lookup's question and answer: egress `ifindex`, `smac`, `dmac`.
    pub fib: bpf_fib_lookup,
    /// `HostIface::kind` of the egress interface.
    pub kind: u32,
    /// The FIB gave both MACs (else the neighbour layer must resolve them).
    pub neighbour_known: u32,
    /// The packet is IPv6 (else IPv4): where its hop limit is.
    pub v6: u32,
}

/// An ICMP error and the packet it quotes, as `icmp_error` reads it.
pub struct Quoted {
    /// The quoted packet turned around: how the flow's packets going the
    /// error's way look (replies for an error about a forward packet,
    /// forward packets for one about a reply). `l4` is where the quoted L4
    /// header is.
    pub turned: Flow,
    /// Where the ICMP header is.
    pub icmp: usize,
    /// Where the error's IP packet ends by its length field: the quote may
    /// stop anywhere after its first 8 L4 bytes.
    pub end: usize,
    /// What those packets are translated to.
    pub translation: Translation,
    /// The other end's translation as well, for an error between a
    /// hairpinned pod and itself.
    pub then: Option<Translation>,
}

/// A client's packet on its way to a backend on another node, whose flow
/// needs a SNAT port (`snat::prepare`).
pub struct SnatRequest {
    pub flow: Flow,
    pub to_backend: Translation,
}
