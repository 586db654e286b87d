//! The node's L4 dataplane: Service frontends to pod endpoints and back.
//!
//! Frontends are translated where packets enter the node, before routing:
//! `lb_xdp` on the uplink (north-south, before the stack allocates anything)
//! and `lb_tc_in` on the ingress of each pod veth's host side (east-west).
//! Replies are translated back where packets leave it, after routing:
//! `lb_tc_out` on the egress of the uplink and of every pod veth. All share
//! one parse and one lookup path (`lb`); XDP and TC differ only in how a
//! rewrite is written into the packet (`nat`). This file is the single place
//! where an outcome becomes a verdict and is counted.
#![no_std]
#![no_main]

mod affinity;
mod conntrack;
mod lb;
mod maglev;
mod maps;
mod nat;
mod packet;
mod parse;
mod stats;

use aya_ebpf::bindings::{TC_ACT_OK, TC_ACT_SHOT, xdp_action};
use aya_ebpf::macros::{classifier, xdp};
use aya_ebpf::programs::{TcContext, XdpContext};
use ingress_common::stats::DROP_REWRITE_FAILED;

use lb::Outcome;
use nat::Rewriter;
use packet::{Packet, TcPacket, XdpPacket};

/// Which way a program translates.
#[derive(Clone, Copy)]
enum Way {
    /// Client -> frontend becomes client -> backend.
    In,
    /// Backend -> client becomes frontend -> client.
    Out,
}

#[xdp]
pub fn lb_xdp(ctx: XdpContext) -> u32 {
    let packet = XdpPacket(&ctx);
    let bytes = (packet.end() - packet.start()) as u64;
    let outcome = run(&packet, Way::In, bytes);
    stats::count(outcome.reason(), bytes);
    match outcome {
        Outcome::Drop(_) => xdp_action::XDP_DROP,
        Outcome::Pass(_) | Outcome::Translated(_) => xdp_action::XDP_PASS,
    }
}

#[classifier]
pub fn lb_tc_in(ctx: TcContext) -> i32 {
    tc(&ctx, Way::In)
}

#[classifier]
pub fn lb_tc_out(ctx: TcContext) -> i32 {
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
    stats::count(outcome.reason(), bytes);
    match outcome {
        Outcome::Drop(_) => TC_ACT_SHOT,
        Outcome::Pass(_) | Outcome::Translated(_) => TC_ACT_OK,
    }
}

#[inline(always)]
fn run<P: Packet + Rewriter>(packet: &P, way: Way, bytes: u64) -> Outcome {
    let flow = match parse::flow(packet) {
        Ok(flow) => flow,
        Err(pass_reason) => return Outcome::Pass(pass_reason),
    };
    let decision = match way {
        Way::In => lb::forward(&flow, bytes),
        Way::Out => lb::reverse(&flow),
    };
    match decision {
        Ok(translation) => match packet.rewrite(&flow, &translation) {
            Ok(()) => Outcome::Translated(translation.reason()),
            Err(()) => Outcome::Drop(DROP_REWRITE_FAILED),
        },
        Err(outcome) => outcome,
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
