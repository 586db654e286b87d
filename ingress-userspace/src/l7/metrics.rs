//! Per-route request counters and latency histograms, rendered in the
//! Prometheus text format for the agent's `/metrics` to append.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds, in seconds, of the latency histogram buckets.
const BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Every L7 thread counts into a shard of its own (see [`L7Metrics::shard`]),
/// so that no request waits on a lock another thread holds; a scrape merges
/// the shards.
#[derive(Default)]
pub struct L7Metrics {
    shards: Mutex<Vec<Arc<MetricsShard>>>,
    /// By [`MirrorOutcome`]; mirrors are few, so one shared set of atomics.
    mirrors: [AtomicU64; MirrorOutcome::ALL.len()],
}

/// What became of a request copy a RequestMirror filter asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MirrorOutcome {
    /// The mirror answered (whatever it answered).
    Answered,
    /// Connecting, sending or reading failed, or it timed out.
    Failed,
    /// Not sent: as many copies as allowed were already in flight.
    DroppedInFlightLimit,
    /// Not sent: the request has a body, which is not copied.
    SkippedBody,
    /// Not sent: the mirror Service has no ready endpoint.
    NoEndpoint,
}

impl MirrorOutcome {
    const ALL: [MirrorOutcome; 5] = [
        MirrorOutcome::Answered,
        MirrorOutcome::Failed,
        MirrorOutcome::DroppedInFlightLimit,
        MirrorOutcome::SkippedBody,
        MirrorOutcome::NoEndpoint,
    ];

    fn label(self) -> &'static str {
        match self {
            MirrorOutcome::Answered => "answered",
            MirrorOutcome::Failed => "failed",
            MirrorOutcome::DroppedInFlightLimit => "dropped_in_flight_limit",
            MirrorOutcome::SkippedBody => "skipped_body",
            MirrorOutcome::NoEndpoint => "no_endpoint",
        }
    }
}

/// One thread's counters: its lock is only ever contended by a scrape.
#[derive(Default)]
pub struct MetricsShard {
    routes: Mutex<Routes>,
}

type Routes = BTreeMap<String, RouteStats>;

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    /// Non-cumulative counts per bucket; rendering accumulates them.
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl MetricsShard {
    pub fn observe(&self, route: &str, status: u16, elapsed: Duration) {
        let mut routes = lock(&self.routes);
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), RouteStats::default());
        }
        let stats = routes.get_mut(route).expect("inserted above");
        *stats.by_status.entry(status).or_default() += 1;
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = BUCKETS.iter().position(|bound| seconds <= *bound) {
            stats.buckets[bucket] += 1;
        }
        stats.sum_seconds += seconds;
        stats.count += 1;
    }
}

impl RouteStats {
    fn add(&mut self, other: &RouteStats) {
        for (status, count) in &other.by_status {
            *self.by_status.entry(*status).or_default() += count;
        }
        for (sum, count) in self.buckets.iter_mut().zip(other.buckets) {
            *sum += count;
        }
        self.sum_seconds += other.sum_seconds;
        self.count += other.count;
    }
}

impl L7Metrics {
    /// A new shard for one thread (or one listener of it) to count into.
    pub fn shard(&self) -> Arc<MetricsShard> {
        let shard = Arc::new(MetricsShard::default());
        lock(&self.shards).push(shard.clone());
        shard
    }

    pub fn count_mirror(&self, outcome: MirrorOutcome) {
        self.mirrors[outcome as usize].fetch_add(1, Relaxed);
    }

    pub fn mirrors(&self, outcome: MirrorOutcome) -> u64 {
        self.mirrors[outcome as usize].load(Relaxed)
    }

    pub fn requests(&self, route: &str, status: u16) -> u64 {
        let merged = self.merged();
        merged.get(route).and_then(|stats| stats.by_status.get(&status)).copied().unwrap_or(0)
    }

    fn merged(&self) -> Routes {
        let mut merged = Routes::new();
        for shard in lock(&self.shards).iter() {
            for (route, stats) in lock(&shard.routes).iter() {
                merged.entry(route.clone()).or_default().add(stats);
            }
        }
        merged
    }

    pub fn render(&self) -> String {
        let routes = self.merged();
        let mut out = String::new();
        out.push_str("# HELP lb_l7_requests_total L7 proxy requests, by route and response status.\n");
        out.push_str("# TYPE lb_l7_requests_total counter\n");
        for (route, stats) in routes.iter() {
            let route = escape(route);
            for (status, count) in &stats.by_status {
                let _ = writeln!(out, "lb_l7_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}");
            }
        }
        out.push_str("# HELP lb_l7_request_duration_seconds L7 proxy request latency, by route.\n");
        out.push_str("# TYPE lb_l7_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            let route = escape(route);
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(stats.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "lb_l7_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let name = "lb_l7_request_duration_seconds";
            let _ = writeln!(out, "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", stats.count);
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", stats.sum_seconds);
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", stats.count);
        }
        out.push_str("# HELP lb_l7_mirror_requests_total Request copies of RequestMirror filters, by what became of them.\n");
        out.push_str("# TYPE lb_l7_mirror_requests_total counter\n");
        for outcome in MirrorOutcome::ALL {
            let _ = writeln!(out, "lb_l7_mirror_requests_total{{outcome=\"{}\"}} {}", outcome.label(), self.mirrors(outcome));
        }
        out
    }
}

/// Counters stay usable after a thread panicked while holding the lock.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status_with_a_cumulative_histogram() {
        let metrics = L7Metrics::default();
        // Two threads' shards, merged by the scrape.
        let (one, two) = (metrics.shard(), metrics.shard());
        one.observe("ingress:default/web:h/", 200, Duration::from_millis(3));
        two.observe("ingress:default/web:h/", 200, Duration::from_millis(200));
        one.observe("ingress:default/web:h/", 502, Duration::from_secs(60));
        two.observe("regex \"q\"", 404, Duration::ZERO);
        metrics.count_mirror(MirrorOutcome::DroppedInFlightLimit);
        assert_eq!(metrics.requests("ingress:default/web:h/", 200), 2);
        let text = metrics.render();
        let expected = [
            "lb_l7_requests_total{route=\"ingress:default/web:h/\",status=\"200\"} 2",
            "lb_l7_requests_total{route=\"ingress:default/web:h/\",status=\"502\"} 1",
            "lb_l7_requests_total{route=\"regex \\\"q\\\"\",status=\"404\"} 1",
            "lb_l7_request_duration_seconds_bucket{route=\"ingress:default/web:h/\",le=\"0.005\"} 1",
            "lb_l7_request_duration_seconds_bucket{route=\"ingress:default/web:h/\",le=\"0.25\"} 2",
            "lb_l7_request_duration_seconds_bucket{route=\"ingress:default/web:h/\",le=\"30\"} 2",
            "lb_l7_request_duration_seconds_bucket{route=\"ingress:default/web:h/\",le=\"+Inf\"} 3",
            "lb_l7_request_duration_seconds_count{route=\"ingress:default/web:h/\"} 3",
            "lb_l7_mirror_requests_total{outcome=\"dropped_in_flight_limit\"} 1",
            "lb_l7_mirror_requests_total{outcome=\"answered\"} 0",
        ];
        for line in expected {
            assert!(text.lines().any(|candidate| candidate == line), "missing {line} in\n{text}");
        }
    }
}
