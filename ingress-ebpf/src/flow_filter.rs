//! The first question before a lookup in a large map: can the packet's
//! address and port be what that map is keyed by at all? A "no" is
//! certain; see `ingress_common::flow_filter`.

use ingress_common::addr::Addr;
use ingress_common::flow_filter::{FILTER_BACKENDS, FILTER_FRONTENDS, FILTER_REMOTE_BACKENDS};

use crate::maps::FLOW_FILTER;

#[inline(always)]
fn may_be(set: usize, addr: &Addr, port: u16) -> bool {
    FLOW_FILTER.get(0).is_none_or(|filter| filter.may_hold(set, addr, port))
}

/// A Service frontend (a `SERVICES` header).
#[inline(always)]
pub fn may_be_frontend(addr: &Addr, port: u16) -> bool {
    may_be(FILTER_FRONTENDS, addr, port)
}

/// A backend: a reply from it may have a conntrack entry.
#[inline(always)]
pub fn may_be_backend(addr: &Addr, port: u16) -> bool {
    may_be(FILTER_BACKENDS, addr, port)
}

/// A backend on another node: a flow to it may be source-translated.
#[inline(always)]
pub fn may_be_remote_backend(addr: &Addr, port: u16) -> bool {
    may_be(FILTER_REMOTE_BACKENDS, addr, port)
}
