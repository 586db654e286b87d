//! ICMP errors about translated flows, translated like the flow's packets
//! that go the error's way. Whoever cannot take a packet of a translated
//! flow (its receiver, or a router on the way with a smaller MTU, or the
//! node itself forwarding to one) answers with an error that quotes the
//! packet as that one saw it: after the translation. The stack the error
//! reaches looks for its socket by the quoted addresses and ports and would
//! find none, so fragmentation needed / packet too big (path MTU
//! discovery), port and host unreachable and time exceeded would all be
//! lost. Here the quoted packet gets back what its sender sent, the error's
//! own addresses change where a packet of the flow going the error's way
//! would, and every checksum in the way is updated incrementally.
//!
//! Toward a client, about what it sent (uploads; `P` a pod, `N` the node's
//! SNAT address):
//!
//! ```text
//! DNAT, on the way out (lb_tc_out)    error P -> C quoting C:c -> P:p   becomes  F -> C quoting C:c -> F:f
//! SNAT, on the way in (uplink)        error P -> N quoting N:n -> P:p   becomes  P -> C quoting C:c -> P:p
//! ```
//!
//! (the SNATed error then leaves through `lb_tc_out` and has its DNAT undone
//! as above). Toward a pod, about its replies (downloads: servers send the
//! large segments), from the client or a router on its way:
//!
//! ```text
//! DNAT, on the way in (uplink, pod veth)  error C -> F quoting F:f -> C:c   becomes  C -> P quoting P:p -> C:c
//! SNAT, on the way out (lb_tc_out)        error C -> R quoting R:r -> C:c   becomes  N -> R quoting R:r -> N:n
//! ```
//!
//! (the second for `R`, a pod on another node the flow reached from an
//! uplink: the first step sends the error on toward it, and this one gives
//! it the node's side of the flow as that pod saw it; an error the node
//! itself sends `R` about its reply, which it could not forward to a link
//! with a smaller MTU, gets the same). Between a
//! hairpinned pod and itself (`hairpin`; `H` the hairpin address) both ends
//! change at once, and the error is sent back to the pod:
//!
//! ```text
//! about its packet to its Service     error P -> H quoting H:s -> P:p   becomes  F -> P quoting P:s -> F:f
//! about its answer                    error P -> F quoting F:f -> P:s   becomes  H -> P quoting P:p -> H:s
//! ```
//!
//! The flow is found with the quoted packet turned around, which is exactly
//! how the flow's packets going the error's way look: the same lookups they
//! take (a reply's for an error about a forward packet, an established
//! forward packet's for an error about a reply). An error about any other
//! packet passes untouched.

use ingress_common::checksum::{replace16, replace32, replace_addr, udp_adjust};
use ingress_common::stats::{
    DROP_REWRITE_FAILED, ICMP_ERROR_HAIRPIN_TRANSLATED, ICMP_ERROR_TRANSLATED, PASS_OTHER_PROTOCOL,
};
use ingress_common::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};

use ingress_common::maps::{TAIL_ICMP_OUT, TAIL_ICMP_POD, TAIL_ICMP_UPLINK};

use crate::hairpin;
use crate::lb;
use crate::maps::{TAIL_TC, TAIL_XDP};
use crate::nat::{Side, Translation};
use crate::outcome::Outcome;
use crate::packet::{Packet, TcPacket, XdpPacket};
use crate::parse::{
    self, ETH_HLEN, ICMP_DEST_UNREACH, ICMP_HLEN, ICMP_QUOTED_L4, ICMP_TIME_EXCEEDED, ICMPV6_DEST_UNREACH, ICMPV6_PACKET_TOO_BIG,
    ICMPV6_TIME_EXCEEDED, IPV4_HLEN, IPV6_HLEN, Network,
};
use crate::scratch::{self, Quoted};
use crate::service::{Origin, Way};
use crate::snat;

const ICMP_CSUM: usize = 2;
/// Covers every offset of a header `rewrite` writes (see there).
const OFFSET_MASK: usize = 0xff;

/// A program that can hand a packet over to the ICMP error translation of
/// its hook (see the module comment).
pub trait HandOver {
    /// Jumps to the program in `slot` of the hook's tail-call table; returns
    /// only when the slot is empty.
    fn hand_over(&self, slot: u32);
}

impl HandOver for TcPacket<'_> {
    #[inline(always)]
    fn hand_over(&self, slot: u32) {
        // SAFETY: the slot holds one of the agent's `lb_icmp_tc_*` programs
        // or nothing; control does not come back when it holds one.
        unsafe { TAIL_TC.tail_call(self.0, slot) }
    }
}

impl HandOver for XdpPacket<'_> {
    #[inline(always)]
    fn hand_over(&self, slot: u32) {
        // SAFETY: as for TC, with `lb_icmp_xdp`.
        unsafe { TAIL_XDP.tail_call(self.0, slot) }
    }
}

/// Hands an ICMP error met on `way` over to its translation; what is left
/// to do when that program is not there: pass the error untouched.
#[inline(always)]
pub fn hand_over<P: HandOver>(packet: &P, way: Way) -> Outcome {
    packet.hand_over(match way {
        Way::In(Origin::Uplink) => TAIL_ICMP_UPLINK,
        Way::In(Origin::Pod) => TAIL_ICMP_POD,
        Way::Out => TAIL_ICMP_OUT,
    });
    Outcome::Pass(PASS_OTHER_PROTOCOL)
}

/// An ICMP error about a translated flow translated (see the module
/// comment); anything else passes as the other protocol it is. Calls of
/// their own, made one after the other from the program, with what they
/// share in `scratch`: the program's frame is full with the TCP and UDP
/// path, a call chain has 512 bytes of stack, and parsing the quote takes
/// some 200 bytes of it, rewriting it some 180: nested, they did not fit.
#[inline(always)]
pub fn translate<P: Packet>(packet: &P, net: &Network, way: Way) -> Outcome {
    let Some(quoted) = scratch::quote() else { return Outcome::Pass(PASS_OTHER_PROTOCOL) };
    if quote(packet, net, quoted).is_none() {
        return Outcome::Pass(PASS_OTHER_PROTOCOL);
    }
    let Some(reason) = find_translation(quoted, way) else { return Outcome::Pass(PASS_OTHER_PROTOCOL) };
    let mut rewritten = rewrite(packet, net, quoted, &quoted.translation);
    // Only a pod's veth hairpins: on the other hooks the verifier need not
    // walk a second rewrite that never comes.
    if matches!(way, Way::In(Origin::Pod))
        && rewritten.is_ok()
        && let Some(then) = &quoted.then
    {
        rewritten = rewrite(packet, net, quoted, then);
    }
    match rewritten {
        Ok(()) => Outcome::Translated(reason),
        Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
    }
}

/// The translation of the flow's packets going the error's way, into
/// `quoted` (and the hairpin's other end into `quoted.then`), found the way
/// those packets find it; the reason the error is counted under.
#[inline(never)]
fn find_translation(quoted: &mut Quoted, way: Way) -> Option<u32> {
    let turned = &quoted.turned;
    let (translation, then) = match way {
        // Errors from pods (or routers) toward clients about their DNATed
        // packets; else, toward a pod on another node, errors about its
        // replies, which left it to the node's SNAT address.
        Way::Out => (lb::reverse(turned).ok().or_else(|| snat::source(turned))?, None),
        // Errors from outside toward clients about their SNATed packets;
        // else toward pods about their replies (a pod's veth: from a client
        // pod, or between a hairpinned pod and itself).
        Way::In(origin) => match snat::reply(turned) {
            Some(to_client) => (to_client, None),
            None if matches!(origin, Origin::Pod) && hairpin::is_answer(turned) => {
                (lb::reverse(turned).ok()?, Some(hairpin::to_pod(turned)))
            }
            None => {
                let to_backend = lb::established(turned)?;
                let hairpinned = matches!(origin, Origin::Pod) && hairpin::is_hairpin(turned, &to_backend);
                (to_backend, hairpinned.then(|| hairpin::from_hairpin(turned)))
            }
        },
    };
    let reason = if then.is_some() { ICMP_ERROR_HAIRPIN_TRANSLATED } else { ICMP_ERROR_TRANSLATED };
    (quoted.translation, quoted.then) = (translation, then);
    Some(reason)
}

#[inline(always)]
fn is_error(net: &Network, kind: u8) -> bool {
    if net.v6 {
        net.proto == IPPROTO_ICMPV6
            && matches!(kind, ICMPV6_DEST_UNREACH | ICMPV6_PACKET_TOO_BIG | ICMPV6_TIME_EXCEEDED)
    } else {
        net.proto == IPPROTO_ICMP && matches!(kind, ICMP_DEST_UNREACH | ICMP_TIME_EXCEEDED)
    }
}

/// The error `net` carries and the TCP or UDP packet it quotes, parsed as
/// the packet itself would be (no fragment, no extension header), into `out`.
#[inline(never)]
fn quote<P: Packet>(packet: &P, net: &Network, out: &mut Quoted) -> Option<()> {
    let icmp = packet.opaque_base(net.l4);
    let kind: u8 = packet.read_from(icmp, 0)?;
    if !is_error(net, kind) {
        return None;
    }
    let inner = if net.v6 {
        parse::ipv6(packet, net.l4 + ICMP_HLEN)
    } else {
        parse::ipv4(packet, net.l4 + ICMP_HLEN)
    }
    .ok()?;
    // Into scratch at once: the quoted addresses held in registers across
    // the checks below would be spilled, and this frame stacks on the
    // program's own.
    let turned = &mut out.turned;
    (turned.saddr, turned.daddr, turned.proto, turned.l4) = (inner.daddr, inner.saddr, inner.proto, inner.l4);
    if inner.proto != IPPROTO_TCP && inner.proto != IPPROTO_UDP {
        return None;
    }
    let end = if net.v6 {
        let payload: [u8; 2] = packet.read(ETH_HLEN + 4)?;
        ETH_HLEN + IPV6_HLEN + u16::from_be_bytes(payload) as usize
    } else {
        let total: [u8; 2] = packet.read(ETH_HLEN + 2)?;
        ETH_HLEN + u16::from_be_bytes(total) as usize
    };
    if inner.l4 + ICMP_QUOTED_L4 > end {
        return None;
    }
    let l4 = packet.opaque_base(inner.l4);
    packet.ptr_from::<[u8; ICMP_QUOTED_L4]>(l4, 0)?;
    let sport: u16 = packet.read_from(l4, 0)?;
    let dport: u16 = packet.read_from(l4, 2)?;
    let turned = &mut out.turned;
    (turned.sport, turned.dport, turned.tcp_flags, turned.v6) = (dport, sport, 0, net.v6);
    (out.icmp, out.end) = (net.l4, end);
    Some(())
}

#[inline(always)]
fn write<P: Packet, T>(packet: &P, base: usize, offset: usize, value: T) -> Result<(), ()> {
    let ptr = packet.ptr_from::<T>(base, offset).ok_or(())?;
    // SAFETY: ptr_from checked the bounds.
    unsafe { core::ptr::write_unaligned(ptr, value) };
    Ok(())
}

/// Writes `translation` (of the quoted packet turned around) into the
/// error: the turned packet's side of it is the quoted packet's other side
/// (a reply's new source is what the client sent to), and the error's own
/// address on that side changes only where it is the translated one (a
/// router's stays). The ICMP checksum follows every word changed under it,
/// and for ICMPv6 its pseudo-header; the quoted L4 checksum is updated
/// where the quote has it. A second translation, of the other side, reads
/// every checksum afresh and the addresses the first left alone.
#[inline(never)]
fn rewrite<P: Packet>(packet: &P, net: &Network, quoted: &Quoted, translation: &Translation) -> Result<(), ()> {
    let turned = &quoted.turned;
    let v6 = net.v6;
    let (src, dst) = if v6 { (8, 24) } else { (12, 16) };
    // (quoted address field, quoted port field, the error's own address
    // field, what both addresses held, the error's own address, old port).
    let (inner_at, port_at, outer_at, old, outer, old_port) = match translation.side {
        Side::Source => (dst, 2, src, turned.saddr, net.saddr, turned.sport),
        Side::Destination => (src, 0, dst, turned.daddr, net.daddr, turned.dport),
    };
    let new = translation.addr;
    // The offsets come back from scratch memory, where the verifier knows
    // no bounds for them: masked to what they can be (at most 14 + 60 + 8
    // + 60), so that a packet pointer plus one is bounded.
    let (icmp_at, l4_at) = (quoted.icmp & OFFSET_MASK, turned.l4 & OFFSET_MASK);
    let icmp = packet.opaque_base(icmp_at);
    let inner_ip = packet.opaque_base(icmp_at + ICMP_HLEN);
    let inner_l4 = packet.opaque_base(l4_at);
    // Everything written below is inside these, so no write fails halfway.
    packet.ptr_from::<[u8; ICMP_HLEN]>(icmp, 0).ok_or(())?;
    if v6 {
        packet.ptr_from::<[u8; IPV6_HLEN]>(inner_ip, 0).ok_or(())?;
    } else {
        packet.ptr_from::<[u8; IPV4_HLEN]>(inner_ip, 0).ok_or(())?;
    }
    packet.ptr_from::<[u8; ICMP_QUOTED_L4]>(inner_l4, 0).ok_or(())?;
    let mut icmp_csum: u16 = packet.read_from(icmp, ICMP_CSUM).ok_or(())?;

    let l4_csum_at = turned.l4_csum_field();
    if l4_at + l4_csum_at + 2 <= quoted.end
        && let Some(l4_csum) = packet.read_from::<u16>(inner_l4, l4_csum_at)
    {
        let with_addr = if v6 { replace_addr(l4_csum, &old, &new) } else { replace32(l4_csum, old.v4(), new.v4()) };
        let mut updated = replace16(with_addr, old_port, translation.port);
        if turned.proto == IPPROTO_UDP {
            updated = udp_adjust(l4_csum, updated);
        }
        write(packet, inner_l4, l4_csum_at, updated)?;
        icmp_csum = replace16(icmp_csum, l4_csum, updated);
    }
    write(packet, inner_l4, port_at, translation.port)?;
    icmp_csum = replace16(icmp_csum, old_port, translation.port);

    if v6 {
        write(packet, inner_ip, inner_at, new)?;
        icmp_csum = replace_addr(icmp_csum, &old, &new);
        if outer == old {
            write(packet, packet.start(), ETH_HLEN + outer_at, new)?;
            // ICMPv6 covers the pseudo-header (RFC 4443 2.3).
            icmp_csum = replace_addr(icmp_csum, &old, &new);
        }
    } else {
        let ip_csum: u16 = packet.read_from(inner_ip, 10).ok_or(())?;
        let ip_updated = replace32(ip_csum, old.v4(), new.v4());
        write(packet, inner_ip, 10, ip_updated)?;
        write(packet, inner_ip, inner_at, new.v4())?;
        icmp_csum = replace16(replace32(icmp_csum, old.v4(), new.v4()), ip_csum, ip_updated);
        if outer == old {
            let outer_csum: u16 = packet.read(ETH_HLEN + 10).ok_or(())?;
            write(packet, packet.start(), ETH_HLEN + 10, replace32(outer_csum, old.v4(), new.v4()))?;
            write(packet, packet.start(), ETH_HLEN + outer_at, new.v4())?;
        }
    }
    write(packet, icmp, ICMP_CSUM, icmp_csum)
}
