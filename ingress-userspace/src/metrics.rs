//! The agent's counters, rendered in the Prometheus text format together with
//! the dataplane's per-reason packet counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use ingress_common::stats::{Counter, REASON_NAMES};

use crate::dataplane::socket_shortcut::ShortcutCounts;
use crate::dataplane::usage::SnatFlows;

#[derive(Default)]
pub struct Metrics {
    /// Malformed or rejected input by problem kind.
    problems: Mutex<BTreeMap<&'static str, u64>>,
    /// Failed API server requests and watch errors, by resource.
    api_errors: Mutex<BTreeMap<&'static str, u64>>,
    syncs_ok: AtomicU64,
    syncs_failed: AtomicU64,
    map_writes: AtomicU64,
    frontends: AtomicU64,
    backends: AtomicU64,
    /// Expired conntrack entries the agent's sweep deleted.
    conntrack_swept: AtomicU64,
    /// Conntrack entries of UDP flows to removed backends, deleted.
    conntrack_udp_flushed: AtomicU64,
    ready: AtomicBool,
    /// 1 while the programs route translated packets themselves (host
    /// routing in force), 0 while the node's stack routes them.
    host_routing: AtomicU64,
    /// 1 while the L7 proxy's socket shortcut to local pods is attached.
    socket_shortcut: AtomicU64,
    /// Scans of the node's netfilter hooks that failed (host routing, auto).
    netfilter_scan_errors: AtomicU64,
    /// Seconds from a new snapshot to its maps written.
    sync_seconds: Mutex<Histogram>,
    /// (entries, capacity) of each agent-written map.
    map_usage: Mutex<BTreeMap<&'static str, (usize, u32)>>,
    /// Service ports left out of a pass because this map was full.
    map_full: Mutex<BTreeMap<&'static str, u64>>,
    /// Flows being source-translated, by family, as of the last SNAT walk.
    snat_flows: Mutex<Option<SnatFlows>>,
}

/// A Prometheus histogram with fixed buckets.
struct Histogram {
    counts: [u64; SYNC_BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: [0; SYNC_BUCKETS.len()], sum: 0.0, count: 0 }
    }
}

/// Upper bounds, in seconds, from one small edit to 10k Services.
const SYNC_BUCKETS: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0];

impl Metrics {
    pub fn count_problem(&self, kind: &'static str) {
        *self.problems.lock().unwrap().entry(kind).or_default() += 1;
    }

    pub fn count_api_error(&self, resource: &'static str) {
        *self.api_errors.lock().unwrap().entry(resource).or_default() += 1;
    }

    pub fn sync_succeeded(&self, map_writes: usize, frontends: usize, backends: usize) {
        self.syncs_ok.fetch_add(1, Relaxed);
        self.map_writes.fetch_add(map_writes as u64, Relaxed);
        self.frontends.store(frontends as u64, Relaxed);
        self.backends.store(backends as u64, Relaxed);
        self.ready.store(true, Relaxed);
    }

    pub fn observe_sync(&self, took: std::time::Duration) {
        let seconds = took.as_secs_f64();
        let mut histogram = self.sync_seconds.lock().unwrap();
        for (bound, count) in SYNC_BUCKETS.iter().zip(histogram.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    pub fn set_map_usage(&self, map: &'static str, entries: usize, capacity: u32) {
        self.map_usage.lock().unwrap().insert(map, (entries, capacity));
    }

    pub fn set_snat_flows(&self, flows: SnatFlows) {
        *self.snat_flows.lock().unwrap() = Some(flows);
    }

    pub fn conntrack_swept(&self, removed: usize) {
        self.conntrack_swept.fetch_add(removed as u64, Relaxed);
    }

    pub fn conntrack_udp_flushed(&self, removed: usize) {
        self.conntrack_udp_flushed.fetch_add(removed as u64, Relaxed);
    }

    pub fn count_map_full(&self, map: &'static str) {
        *self.map_full.lock().unwrap().entry(map).or_default() += 1;
    }

    pub fn map_full(&self, map: &str) -> u64 {
        self.map_full.lock().unwrap().get(map).copied().unwrap_or(0)
    }

    pub fn set_host_routing(&self, on: bool) {
        self.host_routing.store(u64::from(on), Relaxed);
    }

    pub fn set_socket_shortcut(&self, attached: bool) {
        self.socket_shortcut.store(u64::from(attached), Relaxed);
    }

    pub fn count_netfilter_scan_error(&self) {
        self.netfilter_scan_errors.fetch_add(1, Relaxed);
    }

    pub fn sync_failed(&self) {
        self.syncs_failed.fetch_add(1, Relaxed);
    }

    /// Ready once a complete desired state has been programmed.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Relaxed)
    }

    pub fn problems(&self, kind: &str) -> u64 {
        self.problems.lock().unwrap().get(kind).copied().unwrap_or(0)
    }

    pub fn api_errors(&self, resource: &str) -> u64 {
        self.api_errors.lock().unwrap().get(resource).copied().unwrap_or(0)
    }

    pub fn render(&self, dataplane: &[Counter]) -> String {
        let mut out = String::new();
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(&mut out, "lb_input_problems_total", "counter", "Malformed or rejected input objects and fields, by kind.");
        for (kind, n) in self.problems.lock().unwrap().iter() {
            let _ = writeln!(out, "lb_input_problems_total{{kind=\"{kind}\"}} {n}");
        }
        family(&mut out, "lb_api_errors_total", "counter", "Failed API server requests and watch errors, by resource.");
        for (resource, n) in self.api_errors.lock().unwrap().iter() {
            let _ = writeln!(out, "lb_api_errors_total{{resource=\"{resource}\"}} {n}");
        }
        let simple = [
            ("lb_syncs_total{result=\"ok\"}", "counter", &self.syncs_ok),
            ("lb_syncs_total{result=\"failed\"}", "counter", &self.syncs_failed),
            ("lb_map_writes_total", "counter", &self.map_writes),
            ("lb_frontends_programmed", "gauge", &self.frontends),
            ("lb_backends_programmed", "gauge", &self.backends),
            ("lb_conntrack_swept_total", "counter", &self.conntrack_swept),
            ("lb_conntrack_udp_flushed_total", "counter", &self.conntrack_udp_flushed),
            ("lb_host_routing", "gauge", &self.host_routing),
            ("lb_l7_socket_shortcut", "gauge", &self.socket_shortcut),
            ("lb_netfilter_scan_errors_total", "counter", &self.netfilter_scan_errors),
        ];
        for (series, kind, value) in simple {
            let name = series.split('{').next().unwrap_or(series);
            if !out.contains(&format!("# TYPE {name} ")) {
                let _ = writeln!(out, "# TYPE {name} {kind}");
            }
            let _ = writeln!(out, "{series} {}", value.load(Relaxed));
        }
        family(&mut out, "lb_sync_duration_seconds", "histogram", "Time from a new snapshot to its maps written.");
        let histogram = self.sync_seconds.lock().unwrap();
        for (bound, count) in SYNC_BUCKETS.iter().zip(histogram.counts) {
            let _ = writeln!(out, "lb_sync_duration_seconds_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "lb_sync_duration_seconds_bucket{{le=\"+Inf\"}} {}", histogram.count);
        let _ = writeln!(out, "lb_sync_duration_seconds_sum {}", histogram.sum);
        let _ = writeln!(out, "lb_sync_duration_seconds_count {}", histogram.count);
        family(&mut out, "lb_map_entries", "gauge", "Entries in each agent-written eBPF map.");
        let usage = self.map_usage.lock().unwrap();
        for (map, (entries, _)) in usage.iter() {
            let _ = writeln!(out, "lb_map_entries{{map=\"{map}\"}} {entries}");
        }
        family(&mut out, "lb_map_capacity", "gauge", "Capacity (max_entries) of each agent-written eBPF map.");
        for (map, (_, capacity)) in usage.iter() {
            let _ = writeln!(out, "lb_map_capacity{{map=\"{map}\"}} {capacity}");
        }
        family(&mut out, "lb_map_full_total", "counter", "Service ports left out of a sync whole because this map was full.");
        for (map, n) in self.map_full.lock().unwrap().iter() {
            let _ = writeln!(out, "lb_map_full_total{{map=\"{map}\"}} {n}");
        }
        if let Some(flows) = *self.snat_flows.lock().unwrap() {
            family(&mut out, "lb_snat_flows", "gauge", "Flows to pods on other nodes being source-translated, by family.");
            let _ = writeln!(out, "lb_snat_flows{{family=\"ipv4\"}} {}\nlb_snat_flows{{family=\"ipv6\"}} {}", flows.v4, flows.v6);
        }
        let _ = writeln!(out, "# HELP lb_dataplane_packets_total Packets seen by the eBPF programs, by verdict reason.");
        let _ = writeln!(out, "# TYPE lb_dataplane_packets_total counter");
        for (name, counter) in REASON_NAMES.iter().zip(dataplane) {
            let _ = writeln!(out, "lb_dataplane_packets_total{{reason=\"{name}\"}} {}", counter.packets);
        }
        let _ = writeln!(out, "# TYPE lb_dataplane_bytes_total counter");
        for (name, counter) in REASON_NAMES.iter().zip(dataplane) {
            let _ = writeln!(out, "lb_dataplane_bytes_total{{reason=\"{name}\"}} {}", counter.bytes);
        }
        out
    }
}

/// The socket shortcut's counters of the proxy's upstream connections, as
/// the programs count them (only while it is attached).
pub fn socket_shortcut_connections(counts: &ShortcutCounts) -> String {
    let [taken, refused, not_stored] = *counts;
    format!(
        "# HELP lb_l7_socket_shortcut_connections_total The L7 proxy's upstream connections, by the way their requests went: \
         socket (paired with a local pod's socket) or tcp (no paired peer at the first send: a pod on another node).\n\
         # TYPE lb_l7_socket_shortcut_connections_total counter\n\
         lb_l7_socket_shortcut_connections_total{{way=\"socket\"}} {taken}\n\
         lb_l7_socket_shortcut_connections_total{{way=\"tcp\"}} {refused}\n\
         # HELP lb_l7_socket_shortcut_not_stored_total Sockets the shortcut's maps could not take (full): their connections stayed on TCP.\n\
         # TYPE lb_l7_socket_shortcut_not_stored_total counter\n\
         lb_l7_socket_shortcut_not_stored_total {not_stored}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_problems_syncs_and_dataplane_counters() {
        let metrics = Metrics::default();
        metrics.count_problem("invalid_port");
        metrics.count_problem("invalid_port");
        metrics.sync_succeeded(7, 3, 4);
        metrics.observe_sync(std::time::Duration::from_millis(3));
        metrics.set_map_usage("lb_services", 12, 65_536);
        metrics.count_map_full("lb_backends");
        metrics.count_map_full("lb_backends");
        metrics.set_snat_flows(SnatFlows { v4: 3, v6: 1 });
        let mut dataplane = vec![Counter::default(); REASON_NAMES.len()];
        dataplane[0] = Counter { packets: 5, bytes: 500 };
        let text = metrics.render(&dataplane);
        for line in [
            "lb_input_problems_total{kind=\"invalid_port\"} 2",
            "lb_syncs_total{result=\"ok\"} 1",
            "lb_syncs_total{result=\"failed\"} 0",
            "lb_frontends_programmed 3",
            "lb_sync_duration_seconds_bucket{le=\"0.001\"} 0",
            "lb_sync_duration_seconds_bucket{le=\"0.005\"} 1",
            "lb_sync_duration_seconds_count 1",
            "lb_map_entries{map=\"lb_services\"} 12",
            "lb_map_capacity{map=\"lb_services\"} 65536",
            "lb_map_full_total{map=\"lb_backends\"} 2",
            "lb_snat_flows{family=\"ipv4\"} 3",
            "lb_snat_flows{family=\"ipv6\"} 1",
            "lb_dataplane_packets_total{reason=\"forward_translated\"} 5",
            "lb_dataplane_bytes_total{reason=\"forward_translated\"} 500",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(metrics.is_ready());
    }

    #[test]
    fn renders_the_socket_shortcut_connections_by_way() {
        let text = socket_shortcut_connections(&[7, 2, 1]);
        for line in [
            "lb_l7_socket_shortcut_connections_total{way=\"socket\"} 7",
            "lb_l7_socket_shortcut_connections_total{way=\"tcp\"} 2",
            "lb_l7_socket_shortcut_not_stored_total 1",
            "# TYPE lb_l7_socket_shortcut_connections_total counter",
        ] {
            assert!(text.lines().any(|rendered| rendered == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn renders_api_errors_by_resource() {
        let metrics = Metrics::default();
        let text = metrics.render(&[]);
        assert!(!text.contains("lb_api_errors_total{"), "{text}");
        metrics.count_api_error("services");
        metrics.count_api_error("services");
        metrics.count_api_error("nodes");
        let text = metrics.render(&[]);
        for line in ["lb_api_errors_total{resource=\"nodes\"} 1", "lb_api_errors_total{resource=\"services\"} 2"] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn not_ready_before_the_first_sync() {
        assert!(!Metrics::default().is_ready());
    }
}
