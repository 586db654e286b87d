//! Host routing: a packet translated where it enters the node is sent on by
//! the program itself, where the node's own forwarding would send it, so it
//! skips the node's IP stack: routing, netfilter, the neighbour layer and
//! the backlog queue of a second veth. As Cilium's BPF host routing, when
//! the agent's `--host-routing` lets the programs route, and only to the
//! interfaces it lists in `HOST_IFACES`: those it attached the programs to.
//!
//! - The node's FIB, asked from the ingress interface as forwarding would
//!   (`bpf_fib_lookup`), names the egress interface and both MACs. Without
//!   a neighbour entry yet, `bpf_redirect_neigh` sends the packet out of that
//!   interface through the neighbour layer, which resolves it.
//! - Into a pod of this node: `bpf_redirect_peer`, straight to the ingress of
//!   the pod's interface in its namespace. `lb_tc_out` on the veth does not
//!   run; for a packet on its way in it has nothing to do.
//! - Out of an uplink: `bpf_redirect` to its egress, where `lb_tc_out` still
//!   runs (it source-translates a flow to another node's pod).
//! - Both directions of a flow, so that the node's netfilter sees neither
//!   (a half-flow may be dropped as INVALID there): a client's packet after
//!   its DNAT where it enters (uplink or pod veth), and the backend's reply
//!   where it enters (its pod veth, or the uplink from a pod on another
//!   node), reverse-translated there instead of at `lb_tc_out` (`reply`).
//!   Sent out of an uplink, such a reply carries `ROUTED_REPLY_MARK` to
//!   `lb_tc_out` there, which takes it off and lets the packet go
//!   (`is_routed_reply`). A reply
//!   to a flow this node source-translated (`snat`) is routed after its
//!   destination is restored, and `lb_tc_out` on the uplink still restores
//!   its source.
//!
//! What host routing cannot forward takes the kernel's path exactly as
//! without it: a packet bigger than the egress MTU or a TTL about to run out
//! (the kernel sends the ICMP error), an egress interface that is not listed,
//! no route.

use aya_ebpf::bindings::{BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup};
use aya_ebpf::helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect, bpf_redirect_neigh, bpf_redirect_peer};
use aya_ebpf::programs::TcContext;
use ingress_common::maps::{HOST_IFACE_POD, HOST_ROUTING_ON, HOST_ROUTING_SWITCH_INDEX, ROUTED_REPLY_MARK};
use ingress_common::checksum::replace16;
use ingress_common::stats::{DROP_REWRITE_FAILED, HOST_ROUTED_TO_POD, HOST_ROUTED_TO_UPLINK, REPLY_TRANSLATED};

use crate::lb;
use crate::maps::HOST_IFACES;
use crate::nat::{Rewriter, Side, Translation};
use crate::outcome::Outcome;
use crate::packet::{Packet, TcPacket, XdpPacket};
use crate::parse::{ETH_HLEN, Flow};
use crate::scratch;
use crate::stats;

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
/// IPv4's TTL (followed by the protocol, one 16-bit word under the header
/// checksum) and IPv6's hop limit.
const IPV4_TTL_OFFSET: usize = ETH_HLEN + 8;
const IPV4_CSUM_OFFSET: usize = ETH_HLEN + 10;
const IPV6_HOP_LIMIT_OFFSET: usize = ETH_HLEN + 7;

/// 1 when the agent loads the programs to route (`--host-routing on`, or
/// `auto` on a node whose netfilter has no hook the flows would pass), set
/// at load time (`HOST_ROUTING_GLOBAL`); the agent's switch in `HOST_IFACES`
/// can then still take routing back. Read-only data, so the verifier sees a
/// constant: with 0 it skips every host-routing path, and the programs load
/// as fast as they did before host routing existed.
#[unsafe(no_mangle)]
static HOST_ROUTING: u32 = 0;

#[inline(always)]
fn loaded_with_host_routing() -> bool {
    // SAFETY: reads a global the loader set.
    unsafe { core::ptr::read_volatile(&HOST_ROUTING) != 0 }
}

/// Where a routed packet may go.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Egresses {
    /// Into a pod of this node, or out of an uplink.
    Any,
    /// Out of an uplink only: a flow this node source-translates gets that
    /// from `lb_tc_out` where it leaves, which `bpf_redirect_peer` into a
    /// pod would skip for some of its packets (those whose neighbour was
    /// known) and not others (a backend the agent knows as another node's,
    /// reached through a pod veth of this one).
    Uplinks,
}

/// Which packets a program may route itself.
pub trait Router {
    /// Whether host routing is on for the packet's hook.
    fn routes_itself(&self) -> bool;
    /// Asks the FIB where `flow`'s packet goes once `translation` is
    /// written; `true`, with the answer kept for `send`, when the program
    /// can send it there itself, one of `egresses`.
    fn find(&self, flow: &Flow, translation: &Translation, egresses: Egresses) -> bool;
}

/// XDP passes every packet to the stack: it has no peer redirect, and an
/// XDP redirect into a veth needs an XDP program on the pod's side.
impl Router for XdpPacket<'_> {
    #[inline(always)]
    fn routes_itself(&self) -> bool {
        false
    }
    #[inline(always)]
    fn find(&self, _: &Flow, _: &Translation, _: Egresses) -> bool {
        false
    }
}

impl Router for TcPacket<'_> {
    /// Every interface a TC program runs on is one the agent attached it
    /// to and lists (an uplink or a pod veth), so the global and the
    /// agent's switch are enough; the egress is checked in `find`.
    #[inline(always)]
    fn routes_itself(&self) -> bool {
        loaded_with_host_routing()
            && HOST_IFACES.get(HOST_ROUTING_SWITCH_INDEX).is_some_and(|switch| switch.kind == HOST_ROUTING_ON)
    }

    #[inline(never)]
    fn find(&self, flow: &Flow, translation: &Translation, egresses: Egresses) -> bool {
        find(self, flow, translation, egresses).is_some()
    }
}

#[inline(always)]
fn find(packet: &TcPacket, flow: &Flow, translation: &Translation, egresses: Egresses) -> Option<()> {
    let hop_limit: u8 = packet.read(if flow.v6 { IPV6_HOP_LIMIT_OFFSET } else { IPV4_TTL_OFFSET })?;
    if hop_limit <= 1 {
        return None;
    }
    let (src, sport, dst, dport) = match translation.side {
        Side::Destination => (flow.saddr, flow.sport, translation.addr, translation.port),
        Side::Source => (translation.addr, translation.port, flow.daddr, flow.dport),
    };
    let route = scratch::route()?;
    zero(&mut route.fib);
    let fib = &mut route.fib;
    fib.l4_protocol = flow.proto;
    fib.sport = sport;
    fib.dport = dport;
    // SAFETY: reads a field of the program's own context.
    fib.ifindex = unsafe { (*packet.0.skb.skb).ifindex };
    if flow.v6 {
        fib.family = AF_INET6;
        fib.__bindgen_anon_3.ipv6_src = src.words;
        fib.__bindgen_anon_4.ipv6_dst = dst.words;
    } else {
        fib.family = AF_INET;
        fib.__bindgen_anon_3.ipv4_src = src.v4();
        fib.__bindgen_anon_4.ipv4_dst = dst.v4();
    }
    let size = core::mem::size_of::<bpf_fib_lookup>() as i32;
    // SAFETY: the params point into this CPU's scratch, `size` bytes long.
    let rc = unsafe { fib_lookup(packet.0.skb.skb as *mut _, fib, size, 0) };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 && rc != BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return None;
    }
    // The switch's index is no interface's, so it is never an egress.
    let egress = HOST_IFACES
        .get(fib.ifindex)
        .filter(|egress| egress.kind != 0 && (egresses == Egresses::Any || egress.kind != HOST_IFACE_POD))?;
    route.kind = egress.kind;
    route.neighbour_known = (rc == BPF_FIB_LKUP_RET_SUCCESS as i64) as u32;
    route.v6 = flow.v6 as u32;
    Some(())
}

/// All zero asks about this skb's length for the MTU and the main table.
/// Stored a word at a time: a plain zeroing compiles to a call of a
/// byte-by-byte memset, which cost more than the rest of `find` but the
/// lookup itself.
#[inline(always)]
fn zero(fib: &mut bpf_fib_lookup) {
    const WORDS: usize = core::mem::size_of::<bpf_fib_lookup>() / 4;
    const _: () = assert!(core::mem::size_of::<bpf_fib_lookup>() == WORDS * 4);
    const _: () = assert!(core::mem::align_of::<bpf_fib_lookup>() >= 4);
    let words = (fib as *mut bpf_fib_lookup).cast::<u32>();
    for i in 0..WORDS {
        // SAFETY: within the struct, which is aligned for u32 (above).
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// A backend's reply to a client of a frontend, reverse-translated where it
/// enters and routed here when the FIB can answer at once; `None` leaves it
/// untouched for `lb_tc_out`, which translates it after the node routed it.
#[inline(never)]
pub fn reply<P: Rewriter + Router>(packet: &P, flow: &Flow) -> Option<Outcome> {
    let from_frontend = lb::reverse(flow).ok()?;
    if !packet.find(flow, &from_frontend, Egresses::Any) {
        return None;
    }
    Some(match packet.rewrite(flow, &from_frontend) {
        Ok(()) => Outcome::Routed(from_frontend.reason()),
        Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
    })
}

/// Sends a packet `find` found a route for: the TTL or hop limit one less
/// (the node forwards it), then with the route's MACs straight into the pod
/// or out of the uplink, or without them through the neighbour layer. If
/// the packet cannot be written, the node routes it as without host routing.
#[inline(always)]
pub fn send(packet: &TcPacket, reason: u32, bytes: u64) -> i32 {
    let Some(route) = scratch::route() else { return TC_ACT_OK };
    if hop(packet, route.v6 != 0).is_none() {
        return TC_ACT_OK;
    }
    let (neighbour_known, ifindex) = (route.neighbour_known != 0, route.fib.ifindex);
    if neighbour_known {
        let Some(macs) = packet.ptr_at::<[[u8; 6]; 2]>(0) else { return TC_ACT_OK };
        // SAFETY: ptr_at checked the bounds; the headers are linear (`tc`).
        unsafe { core::ptr::write_unaligned(macs, [route.fib.dmac, route.fib.smac]) };
    }
    let into_pod = route.kind == HOST_IFACE_POD;
    stats::count(if into_pod { HOST_ROUTED_TO_POD } else { HOST_ROUTED_TO_UPLINK }, bytes);
    let ctx = packet.0;
    // SAFETY: reads a field of the program's own context.
    if !into_pod && reason == REPLY_TRANSLATED && unsafe { (*ctx.skb.skb).mark } == 0 {
        ctx.set_mark(ROUTED_REPLY_MARK);
    }
    // SAFETY (the helper calls): plain arguments; without neighbour
    // parameters the neighbour layer looks the next hop up itself.
    unsafe {
        if !neighbour_known {
            bpf_redirect_neigh(ifindex, core::ptr::null_mut(), 0, 0) as i32
        } else if into_pod {
            bpf_redirect_peer(ifindex, 0) as i32
        } else {
            bpf_redirect(ifindex, 0) as i32
        }
    }
}

/// Takes one off the TTL (with the IPv4 header checksum) or the hop limit;
/// `find` made sure it stays above zero. Written directly: a helper call
/// per field costs more than the rest of the routing.
#[inline(always)]
fn hop(packet: &TcPacket, v6: bool) -> Option<()> {
    if v6 {
        let hop_limit = packet.ptr_at::<u8>(IPV6_HOP_LIMIT_OFFSET)?;
        // SAFETY: ptr_at checked the bounds.
        unsafe { *hop_limit = (*hop_limit).wrapping_sub(1) };
        return Some(());
    }
    let ttl_proto = packet.ptr_at::<[u8; 2]>(IPV4_TTL_OFFSET)?;
    let csum = packet.ptr_at::<u16>(IPV4_CSUM_OFFSET)?;
    // SAFETY: ptr_at checked the bounds of both.
    unsafe {
        let old = core::ptr::read_unaligned(ttl_proto);
        let new = [old[0].wrapping_sub(1), old[1]];
        let check = replace16(core::ptr::read_unaligned(csum), u16::from_ne_bytes(old), u16::from_ne_bytes(new));
        core::ptr::write_unaligned(csum, check);
        core::ptr::write_unaligned(ttl_proto, new);
    }
    Some(())
}

/// Whether `lb_tc_out` sees a reply `send` routed out of its uplink; takes
/// the mark off. `send` marks only a packet whose mark was 0, which a pod's
/// packet always is on its host-side veth (the kernel scrubs the mark
/// between namespaces), and nothing between the two programs reads it: the
/// redirect skips routing and netfilter. (`tc_index` cannot carry it: TCX
/// sets it from the control block's leftovers on every pass verdict.)
#[inline(always)]
pub fn is_routed_reply(ctx: &TcContext) -> bool {
    // SAFETY: reads a field of the program's own context.
    let marked = loaded_with_host_routing() && unsafe { (*ctx.skb.skb).mark } == ROUTED_REPLY_MARK;
    if marked {
        ctx.set_mark(0);
    }
    marked
}
