//! Connection tracking: a forward entry pins a flow to its backend, a reply
//! entry (keyed as the backend's packets look on the wire) finds the frontend
//! the reply must appear to come from.
//!
//! Lifecycle: an entry idle for longer than its timeout (`CtTimeouts`: TCP
//! established, TCP closing or half-open, UDP) is treated as absent, so a new
//! connection on reused ports gets a fresh choice; the agent sweeps such
//! entries out of the map. A FIN or RST in either direction marks both
//! entries of the flow, which moves them to the short closing timeout.

use ingress_common::maps::{Backend, CT_FORWARD, CT_REPLY, CtEntry, CtKey, CtTimeouts, TCP_FIN, TCP_RST};

use crate::clock;
use crate::maps::{CONNTRACK, CT_TIMEOUTS, REV_NAT};
use crate::parse::Flow;
use crate::scratch;

#[inline(always)]
fn key(flow: &Flow, direction: u8) -> CtKey {
    CtKey {
        saddr: flow.saddr,
        daddr: flow.daddr,
        sport: flow.sport,
        dport: flow.dport,
        proto: flow.proto,
        direction,
        _pad: [0; 2],
    }
}

/// The key of the other direction's entry: the reply entry of a forward
/// flow as its backend will answer it.
#[inline(always)]
fn reply_key(flow: &Flow, backend: &Backend) -> CtKey {
    CtKey {
        saddr: backend.addr,
        daddr: flow.saddr,
        sport: backend.port,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        _pad: [0; 2],
    }
}

#[inline(always)]
pub fn timeouts() -> CtTimeouts {
    CT_TIMEOUTS.get(0).copied().unwrap_or_default()
}

/// Marks a live entry as used by this packet and returns it; an expired
/// entry is left for the agent's sweep and reads as absent.
#[inline(always)]
fn touch(key: &CtKey, tcp_flags: u8) -> Option<CtEntry> {
    let entry = CONNTRACK.get_ptr_mut(key)?;
    let now = clock::now_ns();
    // SAFETY: the pointer comes from a successful lookup; racing writers on
    // other CPUs only ever store timestamps and OR in flags.
    unsafe {
        if timeouts().expired(key, &*entry, now) {
            return None;
        }
        (*entry).last_seen_ns = now;
        (*entry).tcp_flags |= tcp_flags;
        Some(*entry)
    }
}

/// ORs a FIN or RST into the other direction's entry, so the whole flow
/// takes the closing timeout whichever side ends it.
#[inline(always)]
fn close_other_direction(other: &CtKey, tcp_flags: u8) {
    let closing = tcp_flags & (TCP_FIN | TCP_RST);
    if closing == 0 {
        return;
    }
    if let Some(entry) = CONNTRACK.get_ptr_mut(other) {
        // SAFETY: as in `touch`.
        unsafe { (*entry).tcp_flags |= closing };
    }
}

/// The entry of a flow already going to a backend, if any (and alive).
/// The caller keeps its reply entry (`keep_reply`).
#[inline(always)]
pub fn forward(flow: &Flow) -> Option<CtEntry> {
    touch(scratch::ct(0, key(flow, CT_FORWARD))?, flow.tcp_flags)
}

/// Makes sure the reply entry of a live forward flow (`entry`, to `backend`)
/// is there, passing a FIN or RST on to it; says whether it had to be
/// re-created. The two entries are evicted from the LRU map one by one, and
/// a reply without its entry would leave with the backend's address, which
/// the client's socket does not know (TCP answers it with a RST). The lookup
/// also marks the entry as used, so a flow sending only forward keeps both.
#[inline(always)]
pub fn keep_reply(flow: &Flow, entry: &CtEntry, backend: &Backend) -> Result<bool, ()> {
    let reply = scratch::ct(1, reply_key(flow, backend)).ok_or(())?;
    if let Some(other) = CONNTRACK.get_ptr_mut(reply) {
        let closing = flow.tcp_flags & (TCP_FIN | TCP_RST);
        if closing != 0 {
            // SAFETY: as in `touch`.
            unsafe { (*other).tcp_flags |= closing };
        }
        return Ok(false);
    }
    // The forward entry as this packet left it (seen now) serves as is.
    CONNTRACK.insert(reply, entry, 0).map_err(|_| ())?;
    Ok(true)
}

/// The entry of a reply from a backend, if this packet is one (and alive).
#[inline(always)]
pub fn reply(flow: &Flow) -> Option<CtEntry> {
    let entry = touch(scratch::ct(0, key(flow, CT_REPLY))?, flow.tcp_flags)?;
    if flow.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
        // SAFETY: plain data, replaced whole by the agent.
        if let Some(frontend) = unsafe { REV_NAT.get(entry.rev_nat_id) } {
            let forward = CtKey {
                saddr: flow.daddr,
                daddr: frontend.addr,
                sport: flow.dport,
                dport: frontend.port,
                proto: flow.proto,
                direction: CT_FORWARD,
                _pad: [0; 2],
            };
            close_other_direction(scratch::ct(1, forward)?, flow.tcp_flags);
        }
    }
    Some(entry)
}

/// Records both directions of a flow the moment it is given a backend.
#[inline(always)]
pub fn create(flow: &Flow, backend_id: u32, backend: &Backend, rev_nat_id: u32) -> Result<(), ()> {
    let entry = CtEntry {
        backend_id,
        rev_nat_id,
        last_seen_ns: clock::now_ns(),
        tcp_flags: flow.tcp_flags,
        _pad: [0; 7],
    };
    CONNTRACK.insert(scratch::ct(0, key(flow, CT_FORWARD)).ok_or(())?, &entry, 0).map_err(|_| ())?;
    CONNTRACK.insert(scratch::ct(1, reply_key(flow, backend)).ok_or(())?, &entry, 0).map_err(|_| ())
}

/// Removes the translated flow whose replies look exactly like the replies
/// `flow` (a new, untranslated connection) will get, so that they are not
/// rewritten to come from that flow's frontend.
#[inline(always)]
pub fn forget_translated_flow_replying_as(flow: &Flow) {
    let reply = CtKey {
        saddr: flow.daddr,
        daddr: flow.saddr,
        sport: flow.dport,
        dport: flow.sport,
        proto: flow.proto,
        direction: CT_REPLY,
        _pad: [0; 2],
    };
    let Some(reply) = scratch::ct(0, reply) else { return };
    // SAFETY: plain data.
    let Some(entry) = (unsafe { CONNTRACK.get(reply) }).copied() else { return };
    // SAFETY: plain data, replaced whole by the agent.
    if let Some(frontend) = unsafe { REV_NAT.get(entry.rev_nat_id) } {
        let forward = CtKey {
            saddr: flow.saddr,
            daddr: frontend.addr,
            sport: flow.sport,
            dport: frontend.port,
            proto: flow.proto,
            direction: CT_FORWARD,
            _pad: [0; 2],
        };
        if let Some(forward) = scratch::ct(1, forward) {
            let _ = CONNTRACK.remove(forward);
        }
    }
    let _ = CONNTRACK.remove(reply);
}
