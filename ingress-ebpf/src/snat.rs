//! Source NAT for a flow from an uplink to a pod on another node
//! (externalTrafficPolicy: Cluster). Without it the pod would answer the
//! client directly, from its own address, and the client would drop the
//! answer; with it the pod answers this node, which translates the answer
//! back and sends it to the client from the address the client called.
//!
//! SNAT is a layer around the DNAT, in its own map (`lb4_snat`), so the
//! conntrack entries and the reverse DNAT stay exactly as for a local pod:
//!
//! ```text
//! client -> node (lb_xdp)        C:c -> F:f     DNAT  C:c -> P:p  (snat entries reserved)
//! node -> node B (lb_tc_out)      C:c -> P:p     SNAT  N:n -> P:p
//! node B -> node (lb_xdp)         P:p -> N:n     back  P:p -> C:c  (passed to the stack)
//! node -> client (lb_tc_out)      P:p -> C:c     reverse DNAT (conntrack)  F:f -> C:c
//! ```
//!
//! The port is chosen in `lb_xdp`, when the backend is chosen, not on the
//! way out: only there is it known that the flow came in on an uplink, which
//! frontend it is for (an externalTrafficPolicy Local one never SNATs) and
//! whether its backend is local; and a flow without a free port is dropped
//! before the stack spends anything on it. `lb_tc_out` then only applies the
//! reserved mapping. A flow tries `SNAT_PORT_TRIES` ports of the agent's
//! range, each at a hash of its own (`snat_port_offset`; consecutive ports
//! would gather the ports in use in runs). A port belongs to a flow as long
//! as its reply entry exists and the forward entry it names is alive (see
//! `SnatEntry`), and is reused otherwise. The reply entry is inserted
//! with `BPF_NOEXIST`, so two CPUs can never give one port to two flows.
//!
//! Lifecycle: the forward entry is refreshed by every packet in either
//! direction and expires like a conntrack entry (`CtTimeouts`: FIN/RST
//! shorten it); the agent sweeps dead entries (`conntrack_gc`).

use aya_ebpf::bindings::BPF_NOEXIST;
use ingress_common::addr::Addr;
use ingress_common::hash::{flow_hash, snat_port_offset};
use ingress_common::maps::{
    BACKEND_FLAG_LOCAL, Backend, CtTimeouts, SERVICE_FLAG_LOCAL_EXTERNAL, SNAT_FORWARD, SNAT_PORT_TRIES, SNAT_REPLY,
    SnatConfig, SnatEntry, SnatKey,
};
use ingress_common::stats::{DROP_REWRITE_FAILED, DROP_SNAT_PORTS_EXHAUSTED, SNAT_REPLY_TRANSLATED, SNAT_TRANSLATED};

use crate::clock;
use crate::conntrack;
use crate::flow_filter;
use crate::maps::{SNAT, SNAT_CONFIG};
use crate::nat::{Side, Translation};
use crate::outcome::Outcome;
use crate::parse::Flow;
use crate::scratch;
use crate::service::Origin;

/// The agent's SNAT settings for a flow towards `dst`: the node address of
/// `dst`'s family and the port range; `None` while SNAT is off for that
/// family (no node address of it).
#[inline(always)]
fn config(dst: &Addr) -> Option<(Addr, &'static SnatConfig)> {
    let config = SNAT_CONFIG.get(0)?;
    let node = config.addr_like(dst);
    if node == Addr::default() || config.port_min > config.port_max {
        return None;
    }
    Some((node, config))
}

/// Whether a flow to `backend` must leave with the node's address: it came
/// in on an uplink (pods' addresses are routable between nodes, outside
/// clients' replies are not), its frontend (header `flags`) has no
/// externalTrafficPolicy Local (which keeps the client's address), and the
/// backend runs on another node (a local pod answers through this node anyway).
#[inline(always)]
pub fn needed(origin: Origin, flags: u16, backend: &Backend) -> bool {
    matches!(origin, Origin::Uplink) && flags & SERVICE_FLAG_LOCAL_EXTERNAL == 0 && backend.flags & BACKEND_FLAG_LOCAL == 0
}

#[inline(always)]
fn forward_key(flow: &Flow, to_backend: &Translation) -> SnatKey {
    SnatKey {
        saddr: flow.saddr,
        daddr: to_backend.addr,
        sport: flow.sport,
        dport: to_backend.port,
        proto: flow.proto,
        direction: SNAT_FORWARD,
        _pad: [0; 2],
    }
}

/// Makes sure the flow of `flow` (a client's packet on its way to the backend
/// of `to_backend`, before that DNAT) has a SNAT port: keeps a live one, refreshed, else takes
/// a free one. Nothing to do while SNAT is off.
#[inline(always)]
pub fn prepare(flow: &Flow, to_backend: &Translation) -> Result<(), Outcome> {
    let request = scratch::snat_request(*flow, *to_backend).ok_or(Outcome::Drop(DROP_REWRITE_FAILED))?;
    match lb_snat_prepare(request) {
        0 => Ok(()),
        reason => Err(Outcome::Drop(reason)),
    }
}

/// `prepare` as a global function (exported, with BTF: see
/// `.cargo/config.toml`), which the verifier checks once, on its own,
/// rather than once for every state its callers reach it in, each walk
/// going through all `SNAT_PORT_TRIES` tries (half of `lb_tc_uplink`'s
/// verification when it was static). 0, else the reason to drop the packet.
/// Its argument is in scratch memory, not on the caller's stack: the
/// verifier takes a global function to write what it is given, and would
/// forget what it knew of the caller's stack (a flow's L4 offset among it).
#[unsafe(no_mangle)]
#[inline(never)]
fn lb_snat_prepare(request: *const scratch::SnatRequest) -> u32 {
    // SAFETY: null or this CPU's scratch (the verifier has the global
    // function check for null).
    let Some(request) = (unsafe { request.as_ref() }) else { return DROP_REWRITE_FAILED };
    match reserve(&request.flow, &request.to_backend) {
        Ok(()) => 0,
        Err(outcome) => outcome.reason(),
    }
}

#[inline(always)]
fn reserve(flow: &Flow, to_backend: &Translation) -> Result<(), Outcome> {
    let Some((node, config)) = config(&to_backend.addr) else { return Ok(()) };
    let forward = scratch::snat(0, forward_key(flow, to_backend)).ok_or(Outcome::Drop(DROP_REWRITE_FAILED))?;
    let now = clock::now_ns();
    let timeouts = conntrack::timeouts();
    if let Some(entry) = SNAT.get_ptr_mut(forward) {
        // SAFETY: the pointer comes from a successful lookup; racing writers
        // on other CPUs only store timestamps and OR in flags.
        unsafe {
            if (*entry).addr == node && !(*entry).expired(&timeouts, flow.proto, now) {
                (*entry).last_seen_ns = now;
                // A new connection on the same ports keeps its port but not
                // the old one's FIN (which would shorten its life).
                (*entry).tcp_flags = if flow.opens_connection() { flow.tcp_flags } else { (*entry).tcp_flags | flow.tcp_flags };
                return Ok(());
            }
        }
    }
    allocate(node, config, flow, to_backend, forward, now, &timeouts)
}

/// Whether the port of the reply entry `reply` belongs to a live flow.
#[inline(always)]
fn in_use(reply: &SnatKey, now: u64, timeouts: &CtTimeouts) -> bool {
    // SAFETY (both lookups): plain data.
    let Some(client) = (unsafe { SNAT.get(reply) }).copied() else { return false };
    let Some(forward) = scratch::snat(2, reply.forward_of_reply(&client)) else { return true };
    match unsafe { SNAT.get(forward) } {
        Some(forward) => forward.owns(reply) && !forward.expired(timeouts, reply.proto, now),
        None => false,
    }
}

#[inline(always)]
fn allocate(
    node: Addr,
    config: &SnatConfig,
    flow: &Flow,
    to_backend: &Translation,
    forward: &SnatKey,
    now: u64,
    timeouts: &CtTimeouts,
) -> Result<(), Outcome> {
    let span = (config.port_max - config.port_min) as u32 + 1;
    let hash = flow_hash(flow.saddr.fold(), to_backend.addr.fold(), flow.sport, to_backend.port, flow.proto);
    let client = SnatEntry { last_seen_ns: now, addr: flow.saddr, port: flow.sport, tcp_flags: 0, _pad: [0; 5] };
    let client = scratch::snat_entry(0, client).ok_or(Outcome::Drop(DROP_REWRITE_FAILED))?;
    for i in 0..SNAT_PORT_TRIES {
        let port = ((config.port_min as u32 + snat_port_offset(hash, i, span)) as u16).to_be();
        let reply = SnatKey {
            saddr: to_backend.addr,
            daddr: node,
            sport: to_backend.port,
            dport: port,
            proto: flow.proto,
            direction: SNAT_REPLY,
            _pad: [0; 2],
        };
        let reply = scratch::snat(1, reply).ok_or(Outcome::Drop(DROP_REWRITE_FAILED))?;
        if SNAT.insert(reply, client, BPF_NOEXIST as u64).is_err() {
            // Taken. A port whose flow is gone is free: remove its stale
            // entry and race for it like for a fresh one.
            if in_use(reply, now, timeouts) {
                continue;
            }
            let _ = SNAT.remove(reply);
            if SNAT.insert(reply, client, BPF_NOEXIST as u64).is_err() {
                continue;
            }
        }
        let to_node = SnatEntry { last_seen_ns: now, addr: node, port, tcp_flags: flow.tcp_flags, _pad: [0; 5] };
        let to_node = scratch::snat_entry(1, to_node).ok_or(Outcome::Drop(DROP_REWRITE_FAILED))?;
        if SNAT.insert(forward, to_node, 0).is_err() {
            let _ = SNAT.remove(reply);
            return Err(Outcome::Drop(DROP_REWRITE_FAILED));
        }
        return Ok(());
    }
    Err(Outcome::Drop(DROP_SNAT_PORTS_EXHAUSTED))
}

/// The packet's own addresses and ports as a key of `direction`.
#[inline(always)]
fn own_key(flow: &Flow, direction: u8) -> SnatKey {
    SnatKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction,
        _pad: [0; 2],
    }
}

/// A client's packet leaving the node towards a pod on another node (after
/// its DNAT, after routing): its source becomes the node's address and the
/// flow's port. `None` for any packet of no live translated flow.
#[inline(never)]
pub fn source(flow: &Flow) -> Option<Translation> {
    if !flow_filter::may_be_remote_backend(&flow.daddr, flow.dport) {
        return None;
    }
    let key = scratch::snat(0, own_key(flow, SNAT_FORWARD))?;
    // SAFETY: plain data.
    let node = (unsafe { SNAT.get(key) }).copied()?;
    // Refreshed by this packet in lb_xdp a moment ago; an expired entry is
    // one left behind, and must not translate a packet of another flow.
    if node.expired(&conntrack::timeouts(), flow.proto, clock::now_ns()) {
        return None;
    }
    Some(Translation { side: Side::Source, addr: node.addr, port: node.port, reason: SNAT_TRANSLATED })
}

/// A pod's reply to the node's SNAT address and one of its ports: its
/// destination becomes the client again; the stack then routes it to the
/// client and `lb_tc_out` reverses the DNAT. `None` for anything else.
#[inline(never)]
pub fn reply(flow: &Flow) -> Option<Translation> {
    let (node, config) = config(&flow.daddr)?;
    let port = u16::from_be(flow.dport);
    if flow.daddr != node || port < config.port_min || port > config.port_max {
        return None;
    }
    let key = scratch::snat(0, own_key(flow, SNAT_REPLY))?;
    // SAFETY: plain data.
    let client = (unsafe { SNAT.get(key) }).copied()?;
    let forward = SNAT.get_ptr_mut(scratch::snat(1, key.forward_of_reply(&client))?)?;
    let now = clock::now_ns();
    // SAFETY: as in `prepare`.
    unsafe {
        if !(*forward).owns(key) || (*forward).expired(&conntrack::timeouts(), flow.proto, now) {
            return None;
        }
        (*forward).last_seen_ns = now;
        (*forward).tcp_flags |= flow.tcp_flags;
    }
    Some(Translation { side: Side::Destination, addr: client.addr, port: client.port, reason: SNAT_REPLY_TRANSLATED })
}
