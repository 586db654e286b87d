//! Why a packet got its verdict. Each reason is an index into the per-CPU
//! `lb_stats_v4` array; the agent exports them as metrics by name.

/// One slot of `lb_stats_v4`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}
const _: () = assert!(core::mem::size_of::<Counter>() == 16);

/// A client -> frontend packet was rewritten to its backend.
pub const FORWARD_TRANSLATED: u32 = 0;
/// A backend -> client reply was rewritten to come from the frontend.
pub const REPLY_TRANSLATED: u32 = 1;
/// Neither IPv4 nor IPv6 (ARP, ...): passed untouched.
pub const PASS_NOT_IP: u32 = 2;
/// Frame too short for the headers it announces: passed for the stack to reject.
pub const PASS_TRUNCATED: u32 = 3;
/// An IPv4 header with a bad version or length, or an IPv6 header with a bad version: passed for the stack to reject.
pub const PASS_BAD_IP_HEADER: u32 = 4;
/// An IPv4 fragment (IPv6 fragments are behind an extension header, see
/// `PASS_OTHER_PROTOCOL`): no ports to look at, passed untouched.
pub const PASS_FRAGMENT: u32 = 5;
/// Neither TCP nor UDP, or IPv6 with an extension header before the
/// transport header (the stack handles those flows): passed untouched.
pub const PASS_OTHER_PROTOCOL: u32 = 6;
/// TCP/UDP to an address and port that is no frontend: passed untouched.
pub const PASS_NO_SERVICE: u32 = 7;
/// Leaving the node but no reply of a translated flow: passed untouched.
pub const PASS_NOT_A_REPLY: u32 = 8;
/// A frontend with no endpoint, and a packet that must not be answered (a
/// TCP RST, a source that is not one host): dropped.
pub const DROP_NO_BACKEND: u32 = 9;
/// The frontend's slots are inconsistent (mid-update): dropped.
pub const DROP_BAD_SLOT: u32 = 10;
/// The kernel refused the rewrite or the conntrack insert: dropped.
pub const DROP_REWRITE_FAILED: u32 = 11;
/// A pod's packet to a frontend whose chosen backend is that pod: both
/// addresses rewritten and the packet sent back out of the pod's veth.
pub const HAIRPIN_TRANSLATED: u32 = 12;
/// The pod's answer to a hairpinned packet, translated back the same way.
pub const HAIRPIN_REPLY_TRANSLATED: u32 = 13;
/// A client outside a LoadBalancer frontend's `loadBalancerSourceRanges`: dropped.
pub const DROP_SOURCE_RANGE: u32 = 14;
/// A frontend with no endpoint: answered with a TCP RST or an ICMP port
/// unreachable, as kube-proxy does, so the client fails at once.
pub const REJECT_NO_BACKEND: u32 = 15;
/// A client -> backend packet of a flow to another node's pod leaving the
/// node: its source became the node's SNAT address and port.
pub const SNAT_TRANSLATED: u32 = 16;
/// That pod's reply arriving at the node's SNAT address and port: its
/// destination became the client again (the reverse DNAT follows on the way
/// out).
pub const SNAT_REPLY_TRANSLATED: u32 = 17;
/// A new flow to another node's pod found no free SNAT port (every port tried
/// in the range is in use towards that backend): dropped.
pub const DROP_SNAT_PORTS_EXHAUSTED: u32 = 18;
/// An ICMP or ICMPv6 error (destination unreachable, fragmentation needed /
/// packet too big, time exceeded) quoting a packet of a translated flow:
/// the quoted packet and the error's own addresses translated the way the
/// flow's packets going the error's way are, so the stack it reaches finds
/// its socket: a client's, about its packets to a frontend (from the pod or
/// a router), or a pod's, about its replies (from the client or a router on
/// its way; a pod on another node gets it source-translated like the
/// flow). Path MTU discovery through a frontend depends on it, uploads on
/// the first, downloads on the second.
pub const ICMP_ERROR_TRANSLATED: u32 = 19;
/// A client -> frontend packet of an established flow whose conntrack was
/// gone, rewritten to its backend like `FORWARD_TRANSLATED`: a TCP packet
/// past its SYN whose forward entry was missing (evicted from the LRU map by
/// a flood of new flows, idled out, or naming a removed backend), so the
/// backend was chosen again the way a new flow's is (Maglev: the same one
/// while the backends are the same) and both entries were re-created; or a
/// TCP or UDP packet whose reply entry alone had been evicted, re-created so
/// that the backend's replies are translated back again.
pub const FORWARD_CT_RECREATED: u32 = 20;
/// An ICMP or ICMPv6 error between a hairpinned pod and itself (about its
/// packet to its own Service, or about its answer to it), translated as
/// `ICMP_ERROR_TRANSLATED` on both ends at once (see `HAIRPIN_TRANSLATED`)
/// and sent back out of the pod's veth.
pub const ICMP_ERROR_HAIRPIN_TRANSLATED: u32 = 21;
/// A translated packet the programs routed themselves (host routing, see
/// `HOST_IFACES_MAP`) straight into a pod of this node, skipping the
/// node's IP stack. Counted in addition to its translation's reason.
pub const HOST_ROUTED_TO_POD: u32 = 22;
/// A translated packet the programs routed themselves out of an uplink
/// (host routing). Counted in addition to its translation's reason.
pub const HOST_ROUTED_TO_UPLINK: u32 = 23;

/// Names by index, for metrics and the state dump.
pub const REASON_NAMES: [&str; 24] = [
    "forward_translated",
    "reply_translated",
    "pass_not_ip",
    "pass_truncated",
    "pass_bad_ip_header",
    "pass_fragment",
    "pass_other_protocol",
    "pass_no_service",
    "pass_not_a_reply",
    "drop_no_backend",
    "drop_bad_slot",
    "drop_rewrite_failed",
    "hairpin_translated",
    "hairpin_reply_translated",
    "drop_source_range",
    "reject_no_backend",
    "snat_translated",
    "snat_reply_translated",
    "drop_snat_ports_exhausted",
    "icmp_error_translated",
    "forward_ct_recreated",
    "icmp_error_hairpin_translated",
    "host_routed_to_pod",
    "host_routed_to_uplink",
];
pub const REASON_COUNT: u32 = REASON_NAMES.len() as u32;
