//! The agent's side of connection tracking. The programs create and refresh
//! entries and treat an idle one as absent (`CtTimeouts`); the agent writes
//! the timeouts they read, sweeps expired entries out of the map a bounded
//! number at a time, and deletes the UDP entries of a removed backend at once
//! (a stale UDP entry would otherwise keep a DNS client's queries going to a
//! pod that is gone until it idles out: a known kube-proxy failure). A TCP
//! flow keeps its backend: the reconciler leaves a removed backend in the
//! map while tracked TCP flows use it (`tcp_flows_hold`).
//!
//! The SNAT table of flows to pods on other nodes (`lb_snat`, see
//! `ingress-ebpf/src/snat.rs`) follows the same lifecycle: the agent writes
//! the address and port range the programs use, and the sweep removes the
//! entries of flows that expired.
//!
//! Which keys go is decided by pure functions; the map I/O is at the bottom.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use aya::Pod;
use aya::maps::{Array, HashMap, MapData};
use ingress_common::{IPPROTO_TCP, IPPROTO_UDP};
use ingress_common::addr::Addr;
use ingress_common::maps::{
    AFFINITY_MAP, AffinityKey, AffinityValue, CONNTRACK_MAP, CT_FORWARD, CT_TIMEOUTS_MAP, CtEntry, CtKey, CtTimeouts, DEFAULT_SNAT_PORT_MAX, DEFAULT_SNAT_PORT_MIN,
    SNAT_CONFIG_MAP, SNAT_FORWARD, SNAT_MAP, SnatConfig, SnatEntry, SnatKey,
};

use super::usage::{KernelMapUsage, SnatFlows};

/// The agent's conntrack settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub timeouts: CtTimeouts,
    /// How often expired entries are swept out.
    pub sweep_interval: Duration,
    /// At most this many entries are looked at per sweep (of each of the
    /// conntrack and SNAT maps); the next sweep carries on where this one stopped.
    pub sweep_budget: usize,
    /// The ports flows to pods on other nodes are source-translated to.
    pub snat_ports: SnatPorts,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            timeouts: CtTimeouts::DEFAULT,
            sweep_interval: Duration::from_secs(10),
            sweep_budget: 16_384,
            snat_ports: SnatPorts::default(),
        }
    }
}

/// The SNAT port range, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnatPorts {
    pub min: u16,
    pub max: u16,
}

/// Kubernetes' default `--service-node-port-range`: a SNAT port there could
/// be taken for a NodePort by the node's own clients' replies.
const NODE_PORTS: (u16, u16) = (30_000, 32_767);

impl Default for SnatPorts {
    fn default() -> Self {
        SnatPorts { min: DEFAULT_SNAT_PORT_MIN, max: DEFAULT_SNAT_PORT_MAX }
    }
}

impl fmt::Display for SnatPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

impl FromStr for SnatPorts {
    type Err = String;

    /// "MIN-MAX": unprivileged ports (1024 and up), MIN <= MAX, clear of the
    /// default NodePort range.
    fn from_str(text: &str) -> Result<SnatPorts, String> {
        let (min, max) = text
            .split_once('-')
            .ok_or_else(|| format!("{text:?} is not a port range: expected MIN-MAX, e.g. 61000-65535"))?;
        let port = |part: &str| {
            part.trim().parse::<u16>().map_err(|_| format!("{part:?} in {text:?} is not a port (1024-65535)"))
        };
        let ports = SnatPorts { min: port(min)?, max: port(max)? };
        if ports.min < 1024 {
            return Err(format!("{text:?} starts below 1024: privileged ports belong to the node's services"));
        }
        if ports.min > ports.max {
            return Err(format!("{text:?} is empty: MIN must not be above MAX"));
        }
        if ports.min <= NODE_PORTS.1 && ports.max >= NODE_PORTS.0 {
            return Err(format!(
                "{text:?} overlaps the NodePort range {}-{}: replies to a SNAT port must never look like \
                 connections to a NodePort",
                NODE_PORTS.0, NODE_PORTS.1
            ));
        }
        Ok(ports)
    }
}

/// What the programs SNAT to: per family, the node's first address of that
/// family (the one NodePorts and other nodes know it by), or SNAT off for a
/// family the node has no address of.
pub fn snat_config(addresses: &[IpAddr], ports: SnatPorts) -> SnatConfig {
    let (v4, v6) = snat_addresses(addresses);
    if v4.is_none() && v6.is_none() {
        return SnatConfig::default();
    }
    let addr = |family: Option<&IpAddr>| family.map_or(Addr::default(), |addr| Addr::from(*addr));
    SnatConfig { v4: addr(v4), v6: addr(v6), port_min: ports.min, port_max: ports.max }
}

/// The node's first IPv4 and first IPv6 address.
fn snat_addresses(addresses: &[IpAddr]) -> (Option<&IpAddr>, Option<&IpAddr>) {
    (addresses.iter().find(|addr| addr.is_ipv4()), addresses.iter().find(|addr| addr.is_ipv6()))
}

/// Whether the SNAT entry under `key` is dead at `now_ns`: a forward entry
/// idle for longer than its timeout, or a reply entry whose forward entry
/// (found with `lookup`) is gone, dead, or gives its flow another port.
pub fn snat_entry_dead(
    key: &SnatKey,
    entry: &SnatEntry,
    lookup: impl Fn(&SnatKey) -> Option<SnatEntry>,
    timeouts: &CtTimeouts,
    now_ns: u64,
) -> bool {
    if key.direction == SNAT_FORWARD {
        return entry.expired(timeouts, key.proto, now_ns);
    }
    match lookup(&key.forward_of_reply(entry)) {
        Some(forward) => !forward.owns(key) || forward.expired(timeouts, key.proto, now_ns),
        None => true,
    }
}

/// Writes the SNAT addresses and port range into `lb_snat_config`, only
/// when they change (the node's addresses may come and go with its Node object).
pub struct SnatConfigWriter {
    map: Array<MapData, SnatConfig>,
    ports: SnatPorts,
    written: Option<SnatConfig>,
}

impl SnatConfigWriter {
    pub fn open(pin_dir: &Path, ports: SnatPorts) -> anyhow::Result<SnatConfigWriter> {
        let path = pin_dir.join(SNAT_CONFIG_MAP);
        let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
        let map = Array::try_from(aya::maps::Map::from_map_data(data)?)?;
        Ok(SnatConfigWriter { map, ports, written: None })
    }

    /// SNAT each family to the first of the node's `addresses` of that
    /// family; a family without one is forwarded untranslated.
    pub fn update(&mut self, addresses: &[IpAddr]) -> anyhow::Result<()> {
        let config = snat_config(addresses, self.ports);
        if self.written == Some(config) {
            return Ok(());
        }
        self.map.set(0, config, 0).with_context(|| format!("writing {SNAT_CONFIG_MAP}"))?;
        match snat_addresses(addresses) {
            (None, None) => tracing::warn!("no node address: flows to pods on other nodes are forwarded without SNAT"),
            (v4, v6) => {
                for (family, addr) in [("IPv4", v4), ("IPv6", v6)] {
                    match addr {
                        Some(addr) => tracing::info!(%addr, ports = %self.ports, "{family} flows to pods on other nodes leave with this node's address"),
                        None => tracing::info!("no {family} node address: {family} flows to pods on other nodes are forwarded without SNAT"),
                    }
                }
            }
        }
        self.written = Some(config);
        Ok(())
    }
}

/// Writes the SNAT settings the programs read, in the maps pinned in `pin_dir`.
pub fn write_snat_config(pin_dir: &Path, config: &SnatConfig) -> anyhow::Result<()> {
    let path = pin_dir.join(SNAT_CONFIG_MAP);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut map: Array<MapData, SnatConfig> = Array::try_from(aya::maps::Map::from_map_data(data)?)?;
    map.set(0, config, 0).with_context(|| format!("writing {}", path.display()))
}

/// The entries among `entries` that have been idle too long at `now_ns`.
pub fn expired_keys(entries: &[(CtKey, CtEntry)], timeouts: &CtTimeouts, now_ns: u64) -> Vec<CtKey> {
    entries.iter().filter(|(key, entry)| timeouts.expired(key, entry, now_ns)).map(|(key, _)| *key).collect()
}

/// The backends among `leaving` that a tracked TCP flow (its forward entry)
/// still uses. Expired entries count until the sweep removes them: one
/// sweep interval later than need be, never too early.
pub fn tcp_flows_hold(entries: &[(CtKey, CtEntry)], leaving: &BTreeSet<u32>) -> BTreeSet<u32> {
    entries
        .iter()
        .filter(|(key, entry)| key.proto == IPPROTO_TCP && key.direction == CT_FORWARD && leaving.contains(&entry.backend_id))
        .map(|(_, entry)| entry.backend_id)
        .collect()
}

/// Both directions of every UDP flow pinned to one of `removed` backends.
/// TCP entries stay, and hold their backend (`tcp_flows_hold`).
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

/// One pinned hash map walked a budget at a time, from where the last walk
/// stopped.
struct Walk<K: Pod, V: Pod> {
    table: HashMap<MapData, K, V>,
    /// The same map, for `BPF_MAP_GET_NEXT_KEY` from a saved key (aya only
    /// iterates from the start).
    raw: MapData,
    /// The next key to look at; `None` starts over from the first.
    next: Option<K>,
    /// Entries seen so far in the pass under way.
    counting: usize,
    /// Entries seen in the last complete pass over the whole map.
    counted: Option<usize>,
}

impl<K: Pod + Default, V: Pod> Walk<K, V> {
    fn open(pin_dir: &Path, name: &str) -> anyhow::Result<Walk<K, V>> {
        let path = pin_dir.join(name);
        let open = || MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()));
        let table = HashMap::try_from(aya::maps::Map::from_map_data(open()?)?)?;
        Ok(Walk { table, raw: open()?, next: None, counting: 0, counted: None })
    }

    /// Up to `budget` entries after the last walk's.
    fn batch(&mut self, budget: usize) -> anyhow::Result<Vec<(K, V)>> {
        let mut batch = Vec::new();
        let mut key = match self.next.take() {
            Some(key) => Some(key),
            None => self.next_key(None)?,
        };
        let mut examined = 0;
        while let Some(at) = key
            && examined < budget
        {
            examined += 1;
            // Gone since it was listed (LRU eviction, a program): skip it.
            if let Ok(entry) = self.table.get(&at, 0) {
                batch.push((at, entry));
            }
            key = self.next_key(Some(&at))?;
        }
        self.next = key;
        self.counting += batch.len();
        if self.pass_complete() {
            self.counted = Some(std::mem::take(&mut self.counting));
        }
        Ok(batch)
    }

    /// Whether the last batch reached the end of the map.
    fn pass_complete(&self) -> bool {
        self.next.is_none()
    }

    /// Deletes `keys` and says how many went (already gone is as good as
    /// removed by us).
    fn remove(&mut self, keys: &[K]) -> usize {
        keys.iter().filter(|key| self.table.remove(key).is_ok()).count()
    }

    /// The key after `key` (the first without one), or `None` at the end. A
    /// `key` no longer in the map gives the first key again.
    fn next_key(&self, key: Option<&K>) -> anyhow::Result<Option<K>> {
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
        let mut next = K::default();
        let attr = ElemAttr {
            map_fd: self.raw.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: key.map_or(0, |key| key as *const K as u64),
            next_key: &mut next as *mut K as u64,
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
        Err(error).context("listing a pinned map")
    }
}

/// Walks the pinned conntrack and SNAT maps a budget at a time and deletes
/// what expired; counts, on the way, how full they and the affinity map are.
pub struct Sweeper {
    conntrack: Walk<CtKey, CtEntry>,
    snat: Walk<SnatKey, SnatEntry>,
    /// Walked only to be counted: the kernel's LRU ages it out.
    affinity: Walk<AffinityKey, AffinityValue>,
    /// Live SNAT flows seen so far in the pass under way, and in the last.
    snat_flows_counting: SnatFlows,
    snat_flows: Option<SnatFlows>,
    config: ConntrackConfig,
}

impl Sweeper {
    pub fn open(pin_dir: &Path, config: ConntrackConfig) -> anyhow::Result<Sweeper> {
        Ok(Sweeper {
            conntrack: Walk::open(pin_dir, CONNTRACK_MAP)?,
            snat: Walk::open(pin_dir, SNAT_MAP)?,
            affinity: Walk::open(pin_dir, AFFINITY_MAP)?,
            snat_flows_counting: SnatFlows::default(),
            snat_flows: None,
            config,
        })
    }

    /// Looks at up to `sweep_budget` entries of each map after the last
    /// sweep's and deletes the expired ones.
    pub fn sweep(&mut self) -> anyhow::Result<Sweep> {
        let budget = self.config.sweep_budget;
        let timeouts = self.config.timeouts;
        let batch = self.conntrack.batch(budget)?;
        let expired = expired_keys(&batch, &timeouts, monotonic_now_ns());
        let mut done = Sweep { examined: batch.len(), removed: self.conntrack.remove(&expired) };

        let batch = self.snat.batch(budget)?;
        let now = monotonic_now_ns();
        let table = &self.snat.table;
        let (dead, live): (Vec<_>, Vec<_>) = batch
            .iter()
            .partition(|(key, entry)| snat_entry_dead(key, entry, |forward| table.get(forward, 0).ok(), &timeouts, now));
        self.snat_flows_counting = self.snat_flows_counting + SnatFlows::count(live.iter().map(|(key, _)| key));
        if self.snat.pass_complete() {
            self.snat_flows = Some(std::mem::take(&mut self.snat_flows_counting));
        }
        let dead: Vec<SnatKey> = dead.iter().map(|(key, _)| *key).collect();
        done.examined += batch.len();
        done.removed += self.snat.remove(&dead);

        self.affinity.batch(budget)?;
        Ok(done)
    }

    /// The maps' fill as of each one's last complete walk.
    pub fn usage(&self) -> KernelMapUsage {
        KernelMapUsage {
            conntrack: self.conntrack.counted,
            snat_entries: self.snat.counted,
            snat_flows: self.snat_flows,
            affinity: self.affinity.counted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingress_common::maps::{CT_REPLY, TCP_ACK, TCP_FIN, TCP_SYN};

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
    fn snat_ports_parse_and_refuse_what_cannot_work() {
        assert_eq!("61000-65535".parse(), Ok(SnatPorts::default()));
        assert_eq!("40000-40000".parse(), Ok(SnatPorts { min: 40_000, max: 40_000 }));
        for bad in ["", "61000", "61000-", "a-b", "65535-61000", "80-2000", "29000-31000", "60000-70000"] {
            assert!(bad.parse::<SnatPorts>().is_err(), "{bad:?} accepted");
        }
        assert!("65535-61000".parse::<SnatPorts>().unwrap_err().contains("MIN"));
        assert!("29000-31000".parse::<SnatPorts>().unwrap_err().contains("NodePort"));
        assert_eq!(SnatPorts::default().to_string().parse(), Ok(SnatPorts::default()));
    }

    #[test]
    fn the_snat_config_takes_the_first_node_address_of_each_family() {
        let ports = SnatPorts { min: 62_000, max: 62_010 };
        // (name, node addresses, IPv4 SNAT address, IPv6 SNAT address)
        type Case = (&'static str, &'static [&'static str], Option<&'static str>, Option<&'static str>);
        let cases: &[Case] = &[
            ("IPv4 only", &["192.0.2.1", "192.0.2.2"], Some("192.0.2.1"), None),
            ("IPv6 only", &["2001:db8::1", "2001:db8::2"], None, Some("2001:db8::1")),
            ("dual-stack, IPv6 listed first", &["2001:db8::1", "192.0.2.2", "192.0.2.1"], Some("192.0.2.2"), Some("2001:db8::1")),
            ("no address: SNAT off", &[], None, None),
        ];
        for (name, addresses, v4, v6) in cases {
            let addresses: Vec<IpAddr> = addresses.iter().map(|a| a.parse().unwrap()).collect();
            let config = snat_config(&addresses, ports);
            let read = |addr: Addr| (addr != Addr::default()).then(|| IpAddr::from(addr).to_string());
            assert_eq!((read(config.v4).as_deref(), read(config.v6).as_deref()), (*v4, *v6), "{name}");
            let ports_set = (config.port_min, config.port_max) == (62_000, 62_010);
            assert_eq!(ports_set, !addresses.is_empty(), "{name}: SNAT off is the all-zero config");
        }
        let config = snat_config(&["192.0.2.1".parse().unwrap()], ports);
        assert_eq!(config.v4.v4().to_ne_bytes(), [192, 0, 2, 1], "network byte order, as in packets");
    }

    #[test]
    fn a_snat_pair_dies_with_its_forward_entry() {
        use ingress_common::maps::SNAT_REPLY;
        let timeouts = CtTimeouts { udp_ms: 5_000, ..CtTimeouts::DEFAULT };
        let (client, backend, node) = (Addr::from_v4(1), Addr::from_v4(2), Addr::from_v4(3));
        let forward = |sport: u16| SnatKey { saddr: client, daddr: backend, sport, dport: 80, proto: IPPROTO_UDP, direction: SNAT_FORWARD, _pad: [0; 2] };
        let reply = |port: u16| SnatKey { saddr: backend, daddr: node, sport: 80, dport: port, proto: IPPROTO_UDP, direction: SNAT_REPLY, _pad: [0; 2] };
        let to_node = |port: u16, last_seen_s: u64| SnatEntry { addr: node, port, last_seen_ns: last_seen_s * S, ..SnatEntry::default() };
        let to_client = |sport: u16| SnatEntry { addr: client, port: sport, ..SnatEntry::default() };
        // Flow 1 (client port 1) is alive on port 100; flow 2 (port 2) idled
        // out on port 200; port 300 was taken over by flow 1's entry meanwhile
        // being given port 100; port 400's flow is gone altogether.
        let table: std::collections::BTreeMap<SnatKey, SnatEntry> = [
            (forward(1), to_node(100, 98)),
            (reply(100), to_client(1)),
            (forward(2), to_node(200, 90)),
            (reply(200), to_client(2)),
            (reply(300), to_client(1)),
            (reply(400), to_client(4)),
        ]
        .into();
        let dead: Vec<_> = table
            .iter()
            .filter(|(key, entry)| snat_entry_dead(key, entry, |k| table.get(k).copied(), &timeouts, 100 * S))
            .map(|(key, _)| (key.direction, key.sport, key.dport))
            .collect();
        assert_eq!(dead, [(SNAT_FORWARD, 2, 80), (SNAT_REPLY, 80, 200), (SNAT_REPLY, 80, 300), (SNAT_REPLY, 80, 400)]);
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

    #[test]
    fn tcp_forward_entries_hold_their_leaving_backend() {
        let reply_of = |(key, entry): (CtKey, CtEntry)| (CtKey { direction: CT_REPLY, ..key }, entry);
        let entries = [
            entry(1, IPPROTO_TCP, 7, TCP_ACK, 0),
            entry(2, IPPROTO_TCP, 8, TCP_FIN, 0),
            entry(3, IPPROTO_UDP, 9, 0, 0),
            reply_of(entry(4, IPPROTO_TCP, 10, TCP_ACK, 0)),
            entry(5, IPPROTO_TCP, 7, TCP_SYN, 0),
        ];
        let cases: &[(&str, &[u32], &[u32])] = &[
            ("nothing leaving", &[], &[]),
            ("an established flow's backend", &[7], &[7]),
            ("a closing flow still holds its backend", &[8], &[8]),
            ("UDP flows hold nothing (they are flushed)", &[9], &[]),
            ("a reply entry alone holds nothing", &[10], &[]),
            ("only the leaving ones", &[7, 9, 42], &[7]),
        ];
        for (name, leaving, expected) in cases {
            let leaving: BTreeSet<u32> = leaving.iter().copied().collect();
            let held: Vec<u32> = tcp_flows_hold(&entries, &leaving).into_iter().collect();
            assert_eq!(&held, expected, "{name}");
        }
    }
}
