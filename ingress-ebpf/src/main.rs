//! The node's L4 dataplane: Service frontends to pod endpoints and back.
//!
//! Frontends are translated where packets enter the node, before routing:
//! on the uplink (north-south) `lb_xdp`, before the stack allocates anything,
//! or `lb_tc_uplink` on its TC ingress where XDP cannot answer (a veth
//! uplink, as on kind nodes: see the agent's `uplink_hook`), and `lb_tc_in`
//! on the ingress of each pod veth's host side (east-west).
//! Replies are translated back where packets leave it, after routing:
//! `lb_tc_out` on the egress of the uplink and of every pod veth. All share
//! one parse and one lookup path (`lb`); XDP and TC differ only in how a
//! rewrite is written into the packet (`nat`). A packet to a frontend without
//! endpoints is turned into a reject (`reject`) and sent back the way it came:
//! XDP_TX from `lb_xdp`, in TC a redirect to the egress of the interface it
//! came in on (the uplink or the pod veth). A flow
//! from an uplink to a pod on another node is also source-translated to the
//! node on its way out, and its replies back on their way in (`snat`). ICMP
//! errors about translated flows are translated where the flow's packets
//! going their way are (`icmp_error`): toward a client about what it sent,
//! toward a pod about its replies. This file
//! is the single place where an outcome becomes a verdict and is counted.
#![no_std]
#![no_main]

mod affinity;
mod clock;
mod conntrack;
mod flow_filter;
mod hairpin;
mod host_route;
mod icmp_error;
mod lb;
mod maglev;
mod maps;
mod nat;
mod outcome;
mod packet;
mod parse;
mod reject;
mod scratch;
mod service;
mod snat;
mod socket_shortcut;
mod source_range;
mod stats;

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action};
use aya_ebpf::macros::{classifier, xdp};
use aya_ebpf::programs::{TcContext, XdpContext};
use ingress_common::stats::{
    DROP_REWRITE_FAILED, FORWARD_CT_RECREATED, FORWARD_TRANSLATED, PASS_NO_SERVICE, PASS_OTHER_PROTOCOL,
    SNAT_REPLY_TRANSLATED,
};

use host_route::{Egresses, Router};
use icmp_error::HandOver;
use nat::{Rewriter, Translation};
use outcome::Outcome;
use packet::{Packet, Reshape, TcPacket, XdpPacket};
use service::{Origin, Way};

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let packet = XdpPacket(&ctx);
    let bytes = (packet.end() - packet.start()) as u64;
    let outcome = run(&packet, Way::In(Origin::Uplink), bytes);
    xdp_verdict(outcome, bytes)
}

/// `lb_xdp`'s ICMP errors, handed over by tail call (see `icmp_error`).
#[xdp]
pub fn lb_icmp_xdp(ctx: XdpContext) -> u32 {
    let packet = XdpPacket(&ctx);
    let bytes = (packet.end() - packet.start()) as u64;
    xdp_verdict(icmp(&packet, Way::In(Origin::Uplink)), bytes)
}

/// Counts the packet under its outcome's reason, the one place an XDP
/// program's outcome becomes its verdict.
#[inline(always)]
fn xdp_verdict(outcome: Outcome, bytes: u64) -> u32 {
    stats::count(outcome.reason(), bytes);
    match outcome {
        Outcome::Drop(_) => xdp_action::XDP_DROP,
        Outcome::Pass(_) | Outcome::Translated(_) | Outcome::Routed(_) => xdp_action::XDP_PASS,
        // Back out of the uplink it came in on.
        Outcome::Reject(_) => xdp_action::XDP_TX,
    }
}

/// The uplink's ingress where XDP cannot answer: the same path as `lb_xdp`.
#[classifier]
pub fn lb_tc_uplink(ctx: TcContext) -> i32 {
    tc(&ctx, Way::In(Origin::Uplink))
}

#[classifier]
pub fn lb_tc_in(ctx: TcContext) -> i32 {
    tc(&ctx, Way::In(Origin::Pod))
}

#[classifier]
pub fn lb_tc_out(ctx: TcContext) -> i32 {
    if host_route::is_routed_reply(&ctx) {
        return TC_ACT_OK;
    }
    tc(&ctx, Way::Out)
}

#[inline(always)]
fn tc(ctx: &TcContext, way: Way) -> i32 {
    let packet = TcPacket(ctx);
    let bytes = ctx.len() as u64;
    let outcome = match packet.make_headers_linear() {
        Ok(()) => run(&packet, way, bytes),
        Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
    };
    tc_verdict(&packet, outcome, bytes)
}

/// The TC programs' ICMP errors, one program per hook, handed over by tail
/// call (see `icmp_error`) once `tc` made the headers linear.
#[classifier]
pub fn lb_icmp_tc_uplink(ctx: TcContext) -> i32 {
    icmp_tc(&ctx, Way::In(Origin::Uplink))
}

#[classifier]
pub fn lb_icmp_tc_in(ctx: TcContext) -> i32 {
    icmp_tc(&ctx, Way::In(Origin::Pod))
}

#[classifier]
pub fn lb_icmp_tc_out(ctx: TcContext) -> i32 {
    icmp_tc(&ctx, Way::Out)
}

#[inline(always)]
fn icmp_tc(ctx: &TcContext, way: Way) -> i32 {
    let packet = TcPacket(ctx);
    tc_verdict(&packet, icmp(&packet, way), ctx.len() as u64)
}

/// An ICMP error `run` handed over, translated.
#[inline(always)]
fn icmp<P: Packet>(packet: &P, way: Way) -> Outcome {
    match parse::network(packet) {
        Ok(network) => icmp_error::translate(packet, &network, way),
        Err(pass_reason) => Outcome::Pass(pass_reason),
    }
}

/// Counts the packet under its outcome's reason, the one place a TC
/// program's outcome becomes its verdict.
#[inline(always)]
fn tc_verdict(packet: &TcPacket, outcome: Outcome, bytes: u64) -> i32 {
    let ctx = packet.0;
    stats::count(outcome.reason(), bytes);
    match outcome {
        Outcome::Drop(_) => TC_ACT_SHOT,
        Outcome::Translated(reason) if hairpin::turns_around(reason) => hairpin::send_back(ctx),
        Outcome::Routed(reason) => host_route::send(packet, reason, bytes),
        Outcome::Pass(_) | Outcome::Translated(_) => TC_ACT_OK,
        Outcome::Reject(_) => packet.redirect_back(),
    }
}

#[inline(always)]
fn run<P: Packet + Rewriter + Reshape + Router + HandOver>(packet: &P, way: Way, bytes: u64) -> Outcome {
    let network = match parse::network(packet) {
        Ok(network) => network,
        Err(pass_reason) => return Outcome::Pass(pass_reason),
    };
    let flow = match parse::transport(packet, &network) {
        Ok(flow) => flow,
        // An ICMP error about a translated flow is translated with it.
        Err(PASS_OTHER_PROTOCOL) => return icmp_error::hand_over(packet, way),
        Err(pass_reason) => return Outcome::Pass(pass_reason),
    };
    if matches!(way, Way::In(Origin::Pod))
        && let Some(outcome) = hairpin::answer(packet, &flow)
    {
        return outcome;
    }
    // Whether `lb_tc_out` source-translates the packet where it leaves.
    let mut source_translated = false;
    let decision = match way {
        // A pod's reply to a flow this node source-translated comes first: it
        // is addressed to the node, never to a frontend. Usually on the
        // uplink; on a pod veth when the pod was not known to be local.
        Way::In(origin) => match snat::reply(&flow) {
            Some(to_client) => Ok(to_client),
            None => {
                // Host routing translates a backend's reply to a client of a
                // frontend where it enters (see `host_route`). On a pod veth
                // that is asked first, before the frontend lookup it would
                // miss: a pod's packets are its calls and its answers, and
                // its answers to clients from outside the node have no call
                // going the other way. Not for a SYN, which opens a
                // connection and is never a reply (`lb::forward` forgets a
                // translated flow whose replies look like this one's will).
                if matches!(origin, Origin::Pod)
                    && !flow.opens_connection()
                    && packet.routes_itself()
                    && let Some(outcome) = host_route::reply(packet, &flow)
                {
                    return outcome;
                }
                match lb::forward(&flow, bytes, origin) {
                    Ok((to_backend, true)) => {
                        source_translated = true;
                        snat::prepare(&flow, &to_backend).map(|()| to_backend)
                    }
                    Ok((to_backend, false)) => Ok(to_backend),
                    // On the uplink, from a pod of another node.
                    Err(Outcome::Pass(PASS_NO_SERVICE)) if matches!(origin, Origin::Uplink) && packet.routes_itself() => {
                        return host_route::reply(packet, &flow).unwrap_or(Outcome::Pass(PASS_NO_SERVICE));
                    }
                    Err(outcome) => Err(outcome),
                }
            }
        },
        // A reply to reverse-translate, else a client's packet on its way to
        // another node's pod, to source-translate.
        Way::Out => match lb::reverse(&flow) {
            Err(Outcome::Pass(reason)) => snat::source(&flow).ok_or(Outcome::Pass(reason)),
            decided => decided,
        },
    };
    match decision {
        Ok(translation) => match packet.rewrite(&flow, &translation) {
            Ok(()) if matches!(way, Way::In(Origin::Pod)) && hairpin::is_hairpin(&flow, &translation) => {
                match hairpin::turn(&flow, &translation) {
                    Ok(from_hairpin) => match packet.rewrite(&flow, &from_hairpin) {
                        Ok(()) => Outcome::Translated(from_hairpin.reason()),
                        Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
                    },
                    Err(outcome) => outcome,
                }
            }
            Ok(()) if matches!(way, Way::In(_)) => forwarded(packet, &flow, &translation, source_translated),
            Ok(()) => Outcome::Translated(translation.reason()),
            Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
        },
        Err(Outcome::Reject(reason)) => match reject::answer(packet, &flow) {
            Ok(()) => Outcome::Reject(reason),
            // Possibly half reshaped: only dropping is safe.
            Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
        },
        Err(outcome) => outcome,
    }
}

/// A translation where the packet entered: a client's packet to a backend,
/// or a backend's reply to a flow this node source-translated, is routed by
/// the program itself where the interface is host routed and the FIB
/// answers (see `host_route`), else by the node.
#[inline(always)]
fn forwarded<P: Router>(packet: &P, flow: &parse::Flow, translation: &Translation, source_translated: bool) -> Outcome {
    let reason = translation.reason();
    let routable = reason == FORWARD_TRANSLATED || reason == FORWARD_CT_RECREATED || reason == SNAT_REPLY_TRANSLATED;
    let egresses = if source_translated { Egresses::Uplinks } else { Egresses::Any };
    if routable && packet.routes_itself() && packet.find(flow, translation, egresses) {
        Outcome::Routed(reason)
    } else {
        Outcome::Translated(reason)
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
