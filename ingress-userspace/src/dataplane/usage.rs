//! How much of the kernel-written maps is in use (conntrack, SNAT,
//! affinity), counted from their entries, for `state` and `/metrics`. Their
//! fill is what decides when flows start to be evicted or refused.

use ingress_common::maps::{SNAT_FORWARD, SnatKey};

/// Flows being source-translated, by family: one forward entry each (the
/// reply entry belongs to the same flow).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SnatFlows {
    pub v4: usize,
    pub v6: usize,
}

impl SnatFlows {
    pub fn count<'a>(keys: impl IntoIterator<Item = &'a SnatKey>) -> SnatFlows {
        keys.into_iter().filter(|key| key.direction == SNAT_FORWARD).fold(SnatFlows::default(), |flows, key| {
            if key.saddr.is_v4() {
                SnatFlows { v4: flows.v4 + 1, ..flows }
            } else {
                SnatFlows { v6: flows.v6 + 1, ..flows }
            }
        })
    }
}

impl std::ops::Add for SnatFlows {
    type Output = SnatFlows;

    fn add(self, other: SnatFlows) -> SnatFlows {
        SnatFlows { v4: self.v4 + other.v4, v6: self.v6 + other.v6 }
    }
}

/// Entries of the kernel-written maps, as of the last complete walk of each
/// (`None` until one completed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelMapUsage {
    pub conntrack: Option<usize>,
    pub snat_entries: Option<usize>,
    pub snat_flows: Option<SnatFlows>,
    pub affinity: Option<usize>,
}

/// `entries of capacity (percent)`, the way `state` shows a map's fill.
pub fn fill(entries: usize, capacity: u32) -> String {
    let percent = if capacity == 0 { 0.0 } else { entries as f64 * 100.0 / f64::from(capacity) };
    format!("{entries} of {capacity} entries ({percent:.1}%)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_common::addr::Addr;
    use ingress_common::maps::SNAT_REPLY;
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    fn key(client: Addr, direction: u8) -> SnatKey {
        SnatKey { saddr: client, direction, ..SnatKey::default() }
    }

    #[test]
    fn snat_flows_count_forward_entries_by_the_clients_family() {
        let v4 = Addr::from(IpAddr::from(Ipv4Addr::new(198, 51, 100, 2)));
        let v6 = Addr::from(IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)));
        let cases: [(Vec<SnatKey>, SnatFlows); 4] = [
            (vec![], SnatFlows { v4: 0, v6: 0 }),
            (vec![key(v4, SNAT_FORWARD), key(v4, SNAT_REPLY)], SnatFlows { v4: 1, v6: 0 }),
            (vec![key(v6, SNAT_FORWARD), key(v6, SNAT_REPLY), key(v4, SNAT_FORWARD)], SnatFlows { v4: 1, v6: 1 }),
            (vec![key(v6, SNAT_REPLY)], SnatFlows { v4: 0, v6: 0 }),
        ];
        for (keys, expected) in cases {
            assert_eq!(SnatFlows::count(&keys), expected, "{keys:?}");
        }
    }

    #[test]
    fn fill_shows_entries_capacity_and_percent() {
        assert_eq!(fill(0, 65_536), "0 of 65536 entries (0.0%)");
        assert_eq!(fill(512, 1024), "512 of 1024 entries (50.0%)");
        assert_eq!(fill(3, 0), "3 of 0 entries (0.0%)");
    }
}
