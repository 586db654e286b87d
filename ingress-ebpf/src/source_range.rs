//! `loadBalancerSourceRanges`: a LoadBalancer frontend that lists client
//! ranges serves only clients inside one of them.

use aya_ebpf::maps::lpm_trie::Key;
use ingress_common::maps::{SERVICE_FLAG_SOURCE_RANGES, SOURCE_RANGE_EXACT_BITS, ServiceValue, SourceRangeKey};

use crate::maps::SOURCE_RANGES;
use crate::parse::Flow;

/// Whether `flow`'s client may use the frontend whose header is `header`.
#[inline(always)]
pub fn allows(flow: &Flow, header: &ServiceValue) -> bool {
    if header.flags & SERVICE_FLAG_SOURCE_RANGES == 0 {
        return true;
    }
    let data = SourceRangeKey {
        rev_nat_id: header.rev_nat_id,
        proto: flow.proto,
        _pad: [0; 3],
        addr: flow.saddr,
    };
    // The longest prefix: the frontend in full and all 128 bits of the client.
    let key = Key::new(SOURCE_RANGE_EXACT_BITS + 128, data);
    SOURCE_RANGES.get(&key).is_some()
}
