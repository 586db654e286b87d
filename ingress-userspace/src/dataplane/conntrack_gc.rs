//! The agent's side of connection tracking. The programs create and refresh
//! entries and treat an idle one as absent (`CtTimeouts`); the agent writes
//! the timeouts they read, sweeps expired entries out of the map a bounded
//! number at a time, and deletes the UDP entries of a removed backend at once
//! (a stale UDP entry would otherwise keep a DNS client's queries going to a
//! pod that is gone until it idles out: a known kube-proxy failure).
//!
//! Which keys go is decided by pure functions; the map I/O is at the bottom.

use std::collections::BTreeSet;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use aya::maps::{Array, HashMap, MapData};
use ingress_common::IPPROTO_UDP;
use ingress_common::maps::{CONNTRACK_MAP, CT_TIMEOUTS_MAP, CtEntry, CtKey, CtTimeouts};

/// The agent's conntrack settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub timeouts: CtTimeouts,
    /// How often expired entries are swept out.
    pub sweep_interval: Duration,
    /// At most this many entries are looked at per sweep; the next sweep
    /// carries on where this one stopped.
    pub sweep_budget: usize,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig { timeouts: CtTimeouts::DEFAULT, sweep_interval: Duration::from_secs(10), sweep_budget: 16_384 }
    }
}

/// The entries among `entries` that have been idle too long at `now_ns`.
pub fn expired_keys(entries: &[(CtKey, CtEntry)], timeouts: &CtTimeouts, now_ns: u64) -> Vec<CtKey> {
    entries.iter().filter(|(key, entry)| timeouts.expired(key, entry, now_ns)).map(|(key, _)| *key).collect()
}

/// Both directions of every UDP flow pinned to one of `removed` backends.
/// TCP entries stay: the programs re-balance a flow whose backend is gone,
/// and the connection breaks anyway.
pub fn udp_flows_to_flush(entries: &[(CtKey, CtEntry)], removed: &BTreeSet<u32>) -> Vec<CtKey> {
    entries
        .iter()
        .filter(|(key, entry)| key.proto == IPPROTO_UDP && removed.contains(&entry.backend_id))
        .map(|(key, _)| *key)
        .collect()
}

/// `bpf_ktime_get_ns()`'s clock, which the entries' timestamps use.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Writes the timeouts the programs read, in the maps pinned in `pin_dir`.
pub fn write_timeouts(pin_dir: &Path, timeouts: &CtTimeouts) -> anyhow::Result<()> {
    let path = pin_dir.join(CT_TIMEOUTS_MAP);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut map: Array<MapData, CtTimeouts> = Array::try_from(aya::maps::Map::from_map_data(data)?)?;
    map.set(0, timeouts, 0).with_context(|| format!("writing {}", path.display()))
}

/// What one sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    pub examined: usize,
    pub removed: usize,
}

/// Walks the pinned conntrack map a budget at a time and deletes what expired.
pub struct Sweeper {
    table: HashMap<MapData, CtKey, CtEntry>,
    /// The same map, for `BPF_MAP_GET_NEXT_KEY` from a saved key (aya only
    /// iterates from the start).
    raw: MapData,
    /// The next key to look at; `None` starts over from the first.
    next: Option<CtKey>,
    config: ConntrackConfig,
}

impl Sweeper {
    pub fn open(pin_dir: &Path, config: ConntrackConfig) -> anyhow::Result<Sweeper> {
        let path = pin_dir.join(CONNTRACK_MAP);
        let open = || MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()));
        let table = HashMap::try_from(aya::maps::Map::from_map_data(open()?)?)?;
        Ok(Sweeper { table, raw: open()?, next: None, config })
    }

    /// Looks at up to `sweep_budget` entries after the last sweep's and
    /// deletes the expired ones.
    pub fn sweep(&mut self) -> anyhow::Result<Sweep> {
        let mut batch = Vec::new();
        let mut key = match self.next.take() {
            Some(key) => Some(key),
            None => self.next_key(None)?,
        };
        let mut examined = 0;
        while let Some(at) = key
            && examined < self.config.sweep_budget
        {
            examined += 1;
            // Gone since it was listed (LRU eviction, a program): skip it.
            if let Ok(entry) = self.table.get(&at, 0) {
                batch.push((at, entry));
            }
            key = self.next_key(Some(&at))?;
        }
        self.next = key;
        let expired = expired_keys(&batch, &self.config.timeouts, monotonic_now_ns());
        let mut removed = 0;
        for key in &expired {
            // Already gone is as good as removed by us.
            if self.table.remove(key).is_ok() {
                removed += 1;
            }
        }
        Ok(Sweep { examined, removed })
    }

    /// The key after `key` (the first without one), or `None` at the end. A
    /// `key` no longer in the map gives the first key again.
    fn next_key(&self, key: Option<&CtKey>) -> anyhow::Result<Option<CtKey>> {
        /// The `bpf_attr` of the map element commands.
        #[repr(C)]
        struct ElemAttr {
            map_fd: u32,
            _pad: u32,
            key: u64,
            next_key: u64,
            flags: u64,
        }
        const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
        let mut next = CtKey::default();
        let attr = ElemAttr {
            map_fd: self.raw.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: key.map_or(0, |key| key as *const CtKey as u64),
            next_key: &mut next as *mut CtKey as u64,
            flags: 0,
        };
        // SAFETY: the attr points at a key and a writable key of the map's
        // key size, both alive for the call.
        let rc = unsafe {
            libc::syscall(libc::SYS_bpf, BPF_MAP_GET_NEXT_KEY, &attr as *const ElemAttr, size_of::<ElemAttr>())
        };
        if rc == 0 {
            return Ok(Some(next));
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        Err(error).context("listing the conntrack map")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_common::IPPROTO_TCP;
    use ingress_common::maps::{TCP_ACK, TCP_FIN, TCP_SYN};

    const S: u64 = 1_000_000_000;

    fn entry(sport: u16, proto: u8, backend_id: u32, tcp_flags: u8, last_seen_s: u64) -> (CtKey, CtEntry) {
        let key = CtKey { sport, proto, ..CtKey::default() };
        (key, CtEntry { backend_id, tcp_flags, last_seen_ns: last_seen_s * S, ..CtEntry::default() })
    }

    #[test]
    fn expired_keys_are_those_idle_past_their_own_timeout() {
        let timeouts = CtTimeouts { tcp_established_ms: 100_000, tcp_closing_ms: 10_000, udp_ms: 5_000, _pad: 0 };
        let entries = [
            entry(1, IPPROTO_UDP, 1, 0, 94),                           // idle 6 s > 5: expired
            entry(2, IPPROTO_UDP, 1, 0, 96),                           // idle 4 s
            entry(3, IPPROTO_TCP, 1, TCP_SYN | TCP_ACK, 50),           // idle 50 s < 100
            entry(4, IPPROTO_TCP, 1, TCP_SYN | TCP_ACK | TCP_FIN, 80), // closing, idle 20 s > 10: expired
            entry(5, IPPROTO_TCP, 1, TCP_SYN, 85),                     // half-open, idle 15 s > 10: expired
            entry(6, IPPROTO_TCP, 1, TCP_ACK, 0),                      // idle 100 s = limit: lives
        ];
        let sports: Vec<u16> = expired_keys(&entries, &timeouts, 100 * S).iter().map(|k| k.sport).collect();
        assert_eq!(sports, [1, 4, 5]);
    }

    #[test]
    fn the_udp_flush_takes_every_udp_entry_of_a_removed_backend_and_nothing_else() {
        let entries = [
            entry(1, IPPROTO_UDP, 7, 0, 0),
            entry(2, IPPROTO_UDP, 8, 0, 0),
            entry(3, IPPROTO_TCP, 7, TCP_ACK, 0),
            entry(4, IPPROTO_UDP, 9, 0, 0),
            entry(5, IPPROTO_UDP, 7, 0, 0),
        ];
        let cases: &[(&str, &[u32], &[u16])] = &[
            ("nothing removed", &[], &[]),
            ("one backend", &[7], &[1, 5]),
            ("two backends", &[7, 9], &[1, 4, 5]),
            ("a backend without flows", &[42], &[]),
        ];
        for (name, removed, expected) in cases {
            let removed: BTreeSet<u32> = removed.iter().copied().collect();
            let sports: Vec<u16> = udp_flows_to_flush(&entries, &removed).iter().map(|k| k.sport).collect();
            assert_eq!(&sports, expected, "{name}");
        }
    }
}
