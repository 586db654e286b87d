//! The decision: is this packet a reply to reverse-translate, a packet to a
//! frontend to send to a backend, or neither?

use ingress_common::maps::{Backend, SCOPE_EXTERNAL, SCOPE_LOCAL, ServiceValue};
use ingress_common::IPPROTO_TCP;
use ingress_common::stats::*;

use crate::affinity;
use crate::conntrack;
use crate::flow_filter;
use crate::maglev;
use crate::reject;
use crate::snat;
use crate::source_range;
use crate::stats;
use crate::maps::{BACKENDS, REV_NAT, SERVICES};
use crate::nat::Translation;
use crate::outcome::Outcome;
use crate::parse::Flow;
use crate::service::{Origin, slot_key};

/// A reply from a backend: its source becomes the frontend the client used.
/// Runs where packets leave the node (after routing): rewriting the source
/// to a node address on the way in would make the packet a martian.
#[inline(never)]
pub fn reverse(flow: &Flow) -> Result<Translation, Outcome> {
    if !flow_filter::may_be_backend(&flow.saddr, flow.sport) {
        return Err(Outcome::Pass(PASS_NOT_A_REPLY));
    }
    let entry = conntrack::reply(flow).ok_or(Outcome::Pass(PASS_NOT_A_REPLY))?;
    // SAFETY: map values are plain data; the agent replaces them whole.
    let frontend = unsafe { REV_NAT.get(entry.rev_nat_id) }.ok_or(Outcome::Pass(PASS_NOT_A_REPLY))?;
    Ok(Translation::from_frontend(frontend.addr, frontend.port))
}

/// The scope a new connection picks its backend in, and that scope's header:
/// the node-local slots when the frontend's Local policy covers this client,
/// else all of them. A local header not written yet (mid-update) counts as
/// no local endpoint: sending the client elsewhere would break the policy.
#[inline(always)]
fn scoped(flow: &Flow, header: ServiceValue, origin: Origin) -> (u8, ServiceValue) {
    if header.flags & origin.local_flag() == 0 {
        return (SCOPE_EXTERNAL, header);
    }
    // SAFETY: plain data, replaced whole by the agent.
    let local = unsafe { SERVICES.get(slot_key(flow, SCOPE_LOCAL, 0)) }.copied();
    (SCOPE_LOCAL, local.unwrap_or(ServiceValue { count: 0, ..header }))
}

/// A packet to a frontend: its destination becomes a backend. Runs where
/// packets enter the node (before routing, which then follows the backend).
/// Also says whether the flow must leave the node source-translated
/// (`snat::needed`): the caller reserves its port (`snat::prepare`) one call
/// level up, where the verifier's 512 bytes of stack for the whole call
/// chain leave room for it, and drops the packet if there is none.
#[inline(never)]
pub fn forward(flow: &Flow, bytes: u64, origin: Origin) -> Result<(Translation, bool), Outcome> {
    let header = if flow_filter::may_be_frontend(&flow.daddr, flow.dport) {
        // SAFETY (all map reads below): plain data, replaced whole by the agent.
        unsafe { SERVICES.get(slot_key(flow, SCOPE_EXTERNAL, 0)) }.copied()
    } else {
        None
    };
    let Some(header) = header else {
        // Only a backend's flows have entries keyed by its address and port.
        if flow.opens_connection() && flow_filter::may_be_backend(&flow.daddr, flow.dport) {
            // A new connection straight to a backend may reuse the ports of
            // an old translated one; its replies must not be rewritten.
            conntrack::forget_translated_flow_replying_as(flow);
        }
        return Err(Outcome::Pass(PASS_NO_SERVICE));
    };
    stats::count_frontend(header.rev_nat_id, bytes);
    if !source_range::allows(flow, &header) {
        return Err(Outcome::Drop(DROP_SOURCE_RANGE));
    }

    // An established flow keeps its backend for as long as that backend exists.
    if let Some(entry) = conntrack::forward(flow) {
        if let Some(backend) = unsafe { BACKENDS.get(entry.backend_id) } {
            let snat = snat::needed(origin, header.flags, backend);
            let recreated = if flow.opens_connection() {
                // Ports reused for a new connection: the reply entry may be gone.
                conntrack::create(flow, entry.backend_id, backend, header.rev_nat_id).map(|()| false)
            } else {
                conntrack::keep_reply(flow, &entry, backend)
            };
            let recreated = recreated.map_err(|()| Outcome::Drop(DROP_REWRITE_FAILED))?;
            return Ok((to_backend(backend, recreated), snat));
        }
    }

    // The external header's flags: a local scope's header has none.
    let flags = header.flags;
    let (scope, header) = scoped(flow, header, origin);
    if header.count == 0 {
        return Err(reject::no_backend(flow));
    }
    let (backend_id, backend) = match affinity::remembered(flow, &header) {
        Some(chosen) => chosen,
        None => maglev::choose(flow, scope, &header)?,
    };
    affinity::remember(flow, &header, backend_id);
    // Terminating backends are only in the slots when nothing is ready
    // (the agent's choice), so both states may take a new flow here.
    conntrack::create(flow, backend_id, &backend, header.rev_nat_id)
        .map_err(|()| Outcome::Drop(DROP_REWRITE_FAILED))?;
    // A TCP packet past its SYN had an entry once: evicted, idled out, or
    // its backend gone. Chosen again as above, it mostly keeps its backend.
    let recreated = flow.proto == IPPROTO_TCP && !flow.opens_connection();
    Ok((to_backend(&backend, recreated), snat::needed(origin, flags, &backend)))
}

/// The backend a tracked flow's forward packets go to, found as `forward`
/// finds it for an established flow (the entry is marked used, as by any
/// packet of the flow), but never choosing one or creating entries: for an
/// ICMP error about the flow's reply (see `icmp_error`), whose quote turned
/// around is such a forward packet.
#[inline(never)]
pub fn established(flow: &Flow) -> Option<Translation> {
    let entry = conntrack::forward(flow)?;
    // SAFETY: plain data, replaced whole by the agent.
    let backend = unsafe { BACKENDS.get(entry.backend_id) }?;
    Some(Translation::to_backend(backend.addr, backend.port))
}

/// The translation to `backend`, counted apart when the flow's conntrack had
/// to be re-created.
#[inline(always)]
fn to_backend(backend: &Backend, ct_recreated: bool) -> Translation {
    let translation = Translation::to_backend(backend.addr, backend.port);
    if ct_recreated { Translation { reason: FORWARD_CT_RECREATED, ..translation } } else { translation }
}
