//! Hairpin: a pod calling its own Service and given itself as the backend.
//!
//! Translating only the destination would deliver a packet from the pod's
//! own address to the pod, and its kernel drops a packet from outside whose
//! source is a local address. So, like Cilium, the source is rewritten too,
//! to the link-local `HAIRPIN_ADDR` (169.254.42.1; for IPv6 the unique-local
//! `HAIRPIN_ADDR6`, fd00:6c62::a9fe:2a01), the client port kept:
//!
//! ```text
//! pod -> node (tc ingress)   pod:S -> VIP:80          becomes  169.254.42.1:S -> pod:8080
//! pod <- its answer           pod:8080 -> 169.254.42.1:S  becomes  VIP:80 -> pod:S
//! ```
//!
//! The pod answers the hairpin address through its default route, so the answer
//! comes back to the node on the same veth; a reply entry keyed exactly as
//! that answer looks on the wire finds the frontend it must come from. Both
//! packets are turned around on the veth they came in on (MACs swapped,
//! `bpf_redirect` to the same interface's egress) instead of being routed
//! by the node, which has no route to the hairpin address and whose reverse
//! path filter would refuse it. Only `lb_tc_in` hairpins: the uplink has no
//! pods behind it. An ICMP error the pod sends about either packet is
//! translated on both ends at once and turned around the same way
//! (`icmp_error`).

use aya_ebpf::bindings::TC_ACT_SHOT;
use aya_ebpf::helpers::bpf_redirect;
use aya_ebpf::programs::TcContext;
use ingress_common::addr::Addr;
use ingress_common::{HAIRPIN_ADDR_V4, HAIRPIN_ADDR_V6};
use ingress_common::maps::{CT_FORWARD, CT_REPLY, CtKey};
use ingress_common::stats::{
    DROP_REWRITE_FAILED, HAIRPIN_REPLY_TRANSLATED, HAIRPIN_TRANSLATED, ICMP_ERROR_HAIRPIN_TRANSLATED, PASS_NOT_A_REPLY,
};

use crate::conntrack;
use crate::maps::{CONNTRACK, REV_NAT};
use crate::nat::{Rewriter, Side, Translation};
use crate::outcome::Outcome;
use crate::parse::Flow;
use crate::scratch;

/// The hairpin source of `flow`'s family.
#[inline(always)]
fn hairpin_addr(flow: &Flow) -> Addr {
    if flow.v6 { HAIRPIN_ADDR_V6 } else { HAIRPIN_ADDR_V4 }
}

/// Whether a forward translation sends the packet back to its sender.
#[inline(always)]
pub fn is_hairpin(flow: &Flow, to_backend: &Translation) -> bool {
    to_backend.side == Side::Destination && to_backend.addr == flow.saddr
}

/// After the destination became the pod itself: records where the answer
/// will come from and returns the source rewrite to the hairpin address
/// (which the caller applies: one call level less on the verifier's stack).
#[inline(never)]
pub fn turn(flow: &Flow, to_backend: &Translation) -> Result<Translation, Outcome> {
    let forward = CtKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction: CT_FORWARD,
        _pad: [0; 2],
    };
    let answer = CtKey {
        saddr: to_backend.addr,
        daddr: hairpin_addr(flow),
        sport: to_backend.port,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        _pad: [0; 2],
    };
    let failed = Outcome::Drop(DROP_REWRITE_FAILED);
    let (Some(forward), Some(answer)) = (scratch::ct(0, forward), scratch::ct(1, answer)) else {
        return Err(failed);
    };
    // SAFETY: plain data; the forward entry was written for this packet.
    let Some(entry) = (unsafe { CONNTRACK.get(forward) }).copied() else {
        return Err(failed);
    };
    if CONNTRACK.insert(answer, &entry, 0).is_err() {
        return Err(failed);
    }
    Ok(from_hairpin(flow))
}

/// A hairpinned packet's source rewrite: from the hairpin address, the
/// client port kept.
#[inline(always)]
pub fn from_hairpin(flow: &Flow) -> Translation {
    Translation { reason: HAIRPIN_TRANSLATED, ..Translation::from_frontend(hairpin_addr(flow), flow.sport) }
}

/// Whether `flow` is addressed to the hairpin address: a pod's answer to a
/// hairpinned packet.
#[inline(always)]
pub fn is_answer(flow: &Flow) -> bool {
    flow.daddr == hairpin_addr(flow)
}

/// An answer's destination rewrite: to the pod, which is the answer's
/// source as well (the pod is the client), the client port kept.
#[inline(always)]
pub fn to_pod(answer: &Flow) -> Translation {
    Translation::to_backend(answer.saddr, answer.dport)
}

/// A pod's answer to a hairpinned packet becomes frontend -> pod; `None`
/// when the packet is not addressed to the hairpin address.
#[inline(never)]
pub fn answer<P: Rewriter>(packet: &P, flow: &Flow) -> Option<Outcome> {
    if !is_answer(flow) {
        return None;
    }
    let Some(entry) = conntrack::reply(flow) else { return Some(Outcome::Pass(PASS_NOT_A_REPLY)) };
    // SAFETY: plain data, replaced whole by the agent.
    let Some(frontend) = (unsafe { REV_NAT.get(entry.rev_nat_id) }) else {
        return Some(Outcome::Pass(PASS_NOT_A_REPLY));
    };
    let from_frontend = Translation::from_frontend(frontend.addr, frontend.port);
    let rewritten = packet.rewrite(flow, &from_frontend).and_then(|()| packet.rewrite(flow, &to_pod(flow)));
    Some(match rewritten {
        Ok(()) => Outcome::Translated(HAIRPIN_REPLY_TRANSLATED),
        Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
    })
}

/// Whether an outcome's packet must be sent back out of its veth: a
/// hairpinned packet, its answer, or an ICMP error between the two (see
/// `icmp_error`).
#[inline(always)]
pub fn turns_around(reason: u32) -> bool {
    reason == HAIRPIN_TRANSLATED || reason == HAIRPIN_REPLY_TRANSLATED || reason == ICMP_ERROR_HAIRPIN_TRANSLATED
}

/// Sends the packet back out of the interface it came in on: its Ethernet
/// source (the pod) becomes the destination, and the other way round.
#[inline(always)]
pub fn send_back(ctx: &TcContext) -> i32 {
    let (Ok(dst), Ok(src)) = (ctx.load::<[u8; 6]>(0), ctx.load::<[u8; 6]>(6)) else { return TC_ACT_SHOT };
    if ctx.store(0, &src, 0).is_err() || ctx.store(6, &dst, 0).is_err() {
        return TC_ACT_SHOT;
    }
    // SAFETY: reads a field of the context the kernel gave the program.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    // SAFETY: a helper call with plain arguments.
    unsafe { bpf_redirect(ifindex, 0) as i32 }
}
