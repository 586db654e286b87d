//! A frontend as the dataplane sees it: where its client came from (which
//! traffic policy applies) and the `SERVICES` keys of its slots.

use ingress_common::maps::{SERVICE_FLAG_LOCAL_EXTERNAL, SERVICE_FLAG_LOCAL_INTERNAL, ServiceKey};

use crate::parse::Flow;

/// Where a client's packet entered the node: it decides which of a
/// frontend's traffic policies applies.
#[derive(Clone, Copy)]
pub enum Origin {
    /// An uplink: an external client (externalTrafficPolicy).
    Uplink,
    /// A pod veth: a pod of this node (internalTrafficPolicy).
    Pod,
}

/// Which way a program translates.
#[derive(Clone, Copy)]
pub enum Way {
    /// Client -> frontend becomes client -> backend; the client came in there.
    /// From a pod, the client may be given itself as the backend (hairpin,
    /// see `hairpin`).
    In(Origin),
    /// Backend -> client becomes frontend -> client.
    Out,
}

impl Origin {
    #[inline(always)]
    pub fn local_flag(self) -> u16 {
        match self {
            Origin::Uplink => SERVICE_FLAG_LOCAL_EXTERNAL,
            Origin::Pod => SERVICE_FLAG_LOCAL_INTERNAL,
        }
    }
}

#[inline(always)]
pub fn slot_key(flow: &Flow, scope: u8, slot: u16) -> ServiceKey {
    ServiceKey {
        addr: flow.daddr,
        port: flow.dport,
        proto: flow.proto,
        scope,
        slot,
        _pad: [0; 2],
    }
}
