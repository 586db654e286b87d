//! Backend choice for a new flow: Maglev consistent hashing (Eisenbud et al.,
//! NSDI'16). The agent fills each frontend's table of M entries, each a slot
//! of the frontend; a flow takes entry hash(5-tuple) % M, so removing one
//! backend moves only the flows that were on it (and a few more), unlike
//! hash % count which moves almost all.

use ingress_common::hash::flow_hash;
use ingress_common::maps::{Backend, DEFAULT_MAGLEV_TABLE_SIZE, ServiceValue, maglev_position, maglev_row_index, maglev_rows};
use ingress_common::stats::DROP_BAD_SLOT;

use crate::maps::{BACKENDS, MAGLEV, SERVICES};
use crate::outcome::Outcome;
use crate::parse::Flow;
use crate::service::slot_key;

/// M, the entries of every table; set by the agent at load time
/// (`MAGLEV_TABLE_SIZE_GLOBAL`). Read-only data, so the verifier sees a constant.
#[unsafe(no_mangle)]
static MAGLEV_TABLE_SIZE: u32 = DEFAULT_MAGLEV_TABLE_SIZE;

/// The backend for a new flow to `header`'s frontend, which has endpoints,
/// among the slots of `scope` (a local scope's header names no table).
#[inline(always)]
pub fn choose(flow: &Flow, scope: u8, header: &ServiceValue) -> Result<(u32, Backend), Outcome> {
    let hash = flow_hash(flow.saddr.fold(), flow.daddr.fold(), flow.sport, flow.dport, flow.proto);
    // No table: a local scope, maps written by an agent before this table
    // layout, or rows of another table size while a restarted agent
    // rewrites them. The slots still name every backend of the scope.
    let slot = from_table(hash, header.backend_id).unwrap_or_else(|| (hash % header.count as u32) as u16 + 1);
    // SAFETY: plain data, replaced whole by the agent.
    let backend_id = unsafe { SERVICES.get(slot_key(flow, scope, slot)) }.ok_or(Outcome::Drop(DROP_BAD_SLOT))?.backend_id;
    // SAFETY: plain data, replaced whole by the agent.
    let backend: Backend = *unsafe { BACKENDS.get(backend_id) }.ok_or(Outcome::Drop(DROP_BAD_SLOT))?;
    Ok((backend_id, backend))
}

#[inline(always)]
fn from_table(hash: u32, table: u32) -> Option<u16> {
    // SAFETY: a plain u32; volatile so the compiler keeps the load the
    // loader's value is patched into instead of folding the default.
    let size = unsafe { core::ptr::read_volatile(&MAGLEV_TABLE_SIZE) };
    if table == 0 || size == 0 {
        return None;
    }
    let (row, column) = maglev_position(hash % size);
    // Plain data, replaced whole by the agent.
    let row = MAGLEV.get(maglev_row_index(table, row, maglev_rows(size)))?;
    let slot = *row.slots.get(column)?;
    (slot != 0).then_some(slot)
}
