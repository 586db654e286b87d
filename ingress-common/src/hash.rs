//! Flow hashing for backend choice: the same 5-tuple always lands on the same
//! slot, and different source ports spread evenly.

#[inline(always)]
fn mix(mut h: u32) -> u32 {
    // murmur3's finaliser: full avalanche in five cheap operations.
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

/// Hash of a flow's client side and frontend; the arguments are as loaded
/// from the packet (network byte order).
#[inline(always)]
pub fn flow_hash(saddr: u32, daddr: u32, sport: u16, dport: u16, proto: u8) -> u32 {
    let mut h = mix(saddr ^ 0x9e37_79b9);
    h = mix(h ^ daddr);
    h = mix(h ^ (((sport as u32) << 16) | dport as u32));
    mix(h ^ proto as u32)
}

/// The offset into a SNAT port range of `span` ports that a new flow with
/// hash `flow` tries at its `attempt`th try. Every try is a hash of its own,
/// not the next port: with consecutive tries (linear probing) the ports in
/// use gather in runs, and a flow that starts in a run longer than its tries
/// is dropped while much of the range is free. With (nearly) independent
/// tries a flow fails only when every one of its tries is taken, about
/// `(used / span)^tries`. One multiply per try, not `mix`: the verifier walks
/// these tries on every path into the SNAT allocation. The xor keeps the
/// tries apart (`(flow + c) * m` would be one fixed pattern of offsets for
/// every flow, consecutive ports in another order); the range is taken from
/// the product's high bits, which depend on all of its input.
#[inline(always)]
pub fn snat_port_offset(flow: u32, attempt: u32, span: u32) -> u32 {
    let hash = (flow ^ attempt.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x85eb_ca6b);
    ((hash as u64 * span as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_flow_same_hash() {
        assert_eq!(flow_hash(1, 2, 3, 4, 6), flow_hash(1, 2, 3, 4, 6));
    }

    #[test]
    fn each_field_changes_the_hash() {
        let base = flow_hash(1, 2, 3, 4, 6);
        for other in [
            flow_hash(9, 2, 3, 4, 6),
            flow_hash(1, 9, 3, 4, 6),
            flow_hash(1, 2, 9, 4, 6),
            flow_hash(1, 2, 3, 9, 6),
            flow_hash(1, 2, 3, 4, 17),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn source_ports_spread_over_three_slots() {
        let mut slots = [0u32; 3];
        for port in 32768u16..42768 {
            slots[(flow_hash(0x0a00_0001, 0x0a60_0001, port.to_be(), 80u16.to_be(), 6) % 3) as usize] += 1;
        }
        for count in slots {
            assert!((3000..3700).contains(&count), "uneven spread {slots:?}");
        }
    }

    /// The pattern linear probing failed on: half the range taken as one
    /// block. Flows starting in the block must still find the free half.
    #[test]
    fn snat_tries_escape_a_block_of_taken_ports() {
        const TRIES: u32 = crate::maps::SNAT_PORT_TRIES;
        for span in [64u32, 4_536] {
            let taken = |offset: u32| offset < span / 2;
            let stuck = (0..10_000u32)
                .map(|flow| flow_hash(0x0a00_0001, 0x0a60_0001, (flow as u16).to_be(), (flow >> 16) as u16, 6))
                .filter(|&hash| (0..TRIES).all(|attempt| taken(snat_port_offset(hash, attempt, span))))
                .count();
            // Independent tries: 10,000 * 2^-16 = 0.15 expected; consecutive
            // ports: about a quarter of the flows.
            assert!(stuck <= 5, "span {span}: {stuck} of 10,000 flows found no free port with half the range free");
        }
    }

    #[test]
    fn snat_tries_stay_in_the_range_and_differ() {
        for span in [1u32, 2, 1_000, 4_536, 65_536] {
            for flow in [0u32, 1, 0xdead_beef, u32::MAX] {
                let mut offsets = [0u32; crate::maps::SNAT_PORT_TRIES as usize];
                for (attempt, offset) in offsets.iter_mut().enumerate() {
                    *offset = snat_port_offset(flow, attempt as u32, span);
                }
                assert!(offsets.iter().all(|&o| o < span), "span {span}: {offsets:?}");
                offsets.sort_unstable();
                let distinct = 1 + offsets.windows(2).filter(|pair| pair[0] != pair[1]).count();
                if span >= 1_000 {
                    assert!(distinct >= 14, "span {span}, flow {flow:#x}: tries repeat {offsets:?}");
                }
            }
        }
    }
}
