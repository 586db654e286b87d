//! `sessionAffinity: ClientIP`: a client's new connections go to the backend
//! its last one got, until it has made none for the frontend's timeout.

use ingress_common::maps::{AffinityKey, AffinityValue, Backend, ServiceValue};

use crate::clock;
use crate::maps::{AFFINITY, BACKENDS};
use crate::parse::Flow;

#[inline(always)]
fn key(flow: &Flow, header: &ServiceValue) -> AffinityKey {
    AffinityKey { rev_nat_id: header.rev_nat_id, client: flow.saddr }
}

/// The backend this client last got, while it is fresh and still exists.
#[inline(always)]
pub fn remembered(flow: &Flow, header: &ServiceValue) -> Option<(u32, Backend)> {
    if header.affinity_timeout_s == 0 {
        return None;
    }
    // SAFETY: plain data.
    let last = unsafe { AFFINITY.get(&key(flow, header)) }?;
    let age = clock::now_ns().saturating_sub(last.last_used_ns);
    if age > header.affinity_timeout_s as u64 * 1_000_000_000 {
        return None;
    }
    // SAFETY: plain data, replaced whole by the agent.
    let backend = unsafe { BACKENDS.get(last.backend_id) }?;
    Some((last.backend_id, *backend))
}

/// Records the backend a client's new connection got.
#[inline(always)]
pub fn remember(flow: &Flow, header: &ServiceValue, backend_id: u32) {
    if header.affinity_timeout_s == 0 {
        return;
    }
    let value = AffinityValue { backend_id, _pad: 0, last_used_ns: clock::now_ns() };
    // An insert failing only loses the affinity of this one connection.
    let _ = AFFINITY.insert(&key(flow, header), &value, 0);
}
