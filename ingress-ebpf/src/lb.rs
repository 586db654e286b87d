//! The decision: is this packet a reply to reverse-translate, a packet to a
//! frontend to send to a backend, or neither?

use ingress_common::maps::{Backend, SCOPE_EXTERNAL, ServiceKey};
use ingress_common::stats::*;

use crate::affinity;
use crate::conntrack;
use crate::maglev;
use crate::stats;
use crate::maps::{BACKENDS, REV_NAT, SERVICES};
use crate::nat::{Side, Translation};
use crate::parse::Flow;

/// What happened to a packet, with the `ingress_common::stats` reason it is
/// counted under.
pub enum Outcome {
    Translated(u32),
    Pass(u32),
    Drop(u32),
}

impl Outcome {
    #[inline(always)]
    pub fn reason(&self) -> u32 {
        match self {
            Outcome::Translated(r) | Outcome::Pass(r) | Outcome::Drop(r) => *r,
        }
    }
}

/// A reply from a backend: its source becomes the frontend the client used.
/// Runs where packets leave the node (after routing): rewriting the source
/// to a node address on the way in would make the packet a martian.
#[inline(always)]
pub fn reverse(flow: &Flow) -> Result<Translation, Outcome> {
    let entry = conntrack::reply(flow).ok_or(Outcome::Pass(PASS_NOT_A_REPLY))?;
    // SAFETY: map values are plain data; the agent replaces them whole.
    let frontend = unsafe { REV_NAT.get(entry.rev_nat_id) }.ok_or(Outcome::Pass(PASS_NOT_A_REPLY))?;
    Ok(Translation { side: Side::Source, addr: frontend.addr, port: frontend.port })
}

#[inline(always)]
pub fn slot_key(flow: &Flow, slot: u16) -> ServiceKey {
    ServiceKey {
        addr: flow.daddr,
        port: flow.dport,
        proto: flow.proto,
        scope: SCOPE_EXTERNAL,
        slot,
        _pad: [0; 2],
    }
}

/// A packet to a frontend: its destination becomes a backend. Runs where
/// packets enter the node (before routing, which then follows the backend).
#[inline(always)]
pub fn forward(flow: &Flow, bytes: u64) -> Result<Translation, Outcome> {
    // SAFETY (all map reads below): plain data, replaced whole by the agent.
    let Some(header) = (unsafe { SERVICES.get(slot_key(flow, 0)) }).copied() else {
        if flow.opens_connection() {
            // A new connection straight to a backend may reuse the ports of
            // an old translated one; its replies must not be rewritten.
            conntrack::forget_translated_flow_replying_as(flow);
        }
        return Err(Outcome::Pass(PASS_NO_SERVICE));
    };
    stats::count_frontend(header.rev_nat_id, bytes);

    // An established flow keeps its backend for as long as that backend exists.
    if let Some(entry) = conntrack::forward(flow) {
        if let Some(backend) = unsafe { BACKENDS.get(entry.backend_id) } {
            if flow.opens_connection() {
                // Ports reused for a new connection: the reply entry may be gone.
                conntrack::create(flow, entry.backend_id, backend, header.rev_nat_id)
                    .map_err(|()| Outcome::Drop(DROP_REWRITE_FAILED))?;
            }
            return Ok(to_backend(backend));
        }
    }

    if header.count == 0 {
        return Err(Outcome::Drop(DROP_NO_BACKEND));
    }
    let (backend_id, backend) = match affinity::remembered(flow, &header) {
        Some(chosen) => chosen,
        None => maglev::choose(flow, &header)?,
    };
    affinity::remember(flow, &header, backend_id);
    // Terminating backends are only in the slots when nothing is ready
    // (the agent's choice), so both states may take a new flow here.
    conntrack::create(flow, backend_id, &backend, header.rev_nat_id)
        .map_err(|()| Outcome::Drop(DROP_REWRITE_FAILED))?;
    Ok(to_backend(&backend))
}

#[inline(always)]
fn to_backend(backend: &Backend) -> Translation {
    Translation { side: Side::Destination, addr: backend.addr, port: backend.port }
}
