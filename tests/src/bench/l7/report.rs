//! The figures of an L7 run, their medians, the markdown table and JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::bench::report::{Named, median};

/// The contenders, in the order they alternate within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Contender {
    /// wrk straight to one pod: the floor.
    Direct,
    /// This project's agent (`ingress-userspace`).
    EbpfLb,
    Nginx,
    Haproxy,
}

impl Contender {
    pub const ALL: [Contender; 4] = [Contender::Direct, Contender::EbpfLb, Contender::Nginx, Contender::Haproxy];
    pub const PROXIES: [Contender; 3] = [Contender::EbpfLb, Contender::Nginx, Contender::Haproxy];
}

impl Named for Contender {
    const KIND: &'static str = "contender";

    fn all() -> &'static [Contender] {
        &Contender::ALL
    }

    fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::EbpfLb => "ebpf-lb",
            Contender::Nginx => "nginx",
            Contender::Haproxy => "haproxy",
        }
    }
}

/// What the echo pods behind every proxy do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pods {
    /// HTTP/1.0 and close: every request costs a proxy a new upstream connection.
    Close,
    /// HTTP/1.1 keep-alive, as most services: a proxy can reuse its upstream connections.
    KeepAlive,
}

impl Pods {
    pub const ALL: [Pods; 2] = [Pods::Close, Pods::KeepAlive];
}

impl Named for Pods {
    const KIND: &'static str = "kind of pods";

    fn all() -> &'static [Pods] {
        &Pods::ALL
    }

    fn name(self) -> &'static str {
        match self {
            Pods::Close => "close",
            Pods::KeepAlive => "keep-alive",
        }
    }
}

/// One contender in one round; latencies in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Figures {
    pub requests_per_s: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Non-2xx/3xx responses plus socket errors.
    pub failed: f64,
    /// VmHWM of the proxy's processes (master and workers summed); none for `direct`.
    pub peak_rss_mib: Option<f64>,
    /// The proxy's processes' CPU time (user and system) over the run's
    /// requests, in µs; none for `direct`.
    pub proxy_cpu_us: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub contender: Contender,
    pub pods: Pods,
    pub median: Figures,
    pub rounds: Vec<Figures>,
}

impl Cell {
    pub fn new(contender: Contender, pods: Pods, rounds: Vec<Figures>) -> Cell {
        let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect()).unwrap_or(f64::NAN);
        let median = Figures {
            requests_per_s: m(|f| f.requests_per_s),
            p50_us: m(|f| f.p50_us),
            p99_us: m(|f| f.p99_us),
            failed: m(|f| f.failed),
            peak_rss_mib: median(rounds.iter().filter_map(|f| f.peak_rss_mib).collect()),
            proxy_cpu_us: median(rounds.iter().filter_map(|f| f.proxy_cpu_us).collect()),
        };
        Cell { contender, pods, median, rounds }
    }

    /// The lowest and highest requests/s of its rounds.
    pub fn requests_range(&self) -> (f64, f64) {
        let rates = self.rounds.iter().map(|round| round.requests_per_s);
        (rates.clone().fold(f64::NAN, f64::min), rates.fold(f64::NAN, f64::max))
    }
}

/// One run of a proxy during which a route changed again and again.
#[derive(Debug, Clone, Serialize)]
pub struct Churn {
    pub contender: Contender,
    /// How a change reaches the proxy.
    pub how: &'static str,
    pub changes: usize,
    /// Route table swaps the agent counted (`lb_syncs_total`); the others do not say.
    pub applied: Option<u64>,
    pub requests: u64,
    pub failed: u64,
    pub requests_per_s: f64,
    /// Whether the last name of the changed route answered 200 afterwards.
    pub last_route_served: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub suite: &'static str,
    pub date: String,
    pub machine: String,
    pub command: String,
    pub proxy_cpus: String,
    pub wrk_cpus: String,
    pub connections: usize,
    pub seconds_per_run: u64,
    pub cells: Vec<Cell>,
    pub churn: Vec<Churn>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut md = format!(
            "L7 benchmark, {} on {}; `{}`.\nLoad: wrk, {} connections for {} s per run, pinned to CPU {}, asking \
             `shop.example/` (one route over 10 pods); every proxy pinned to CPU {}. Medians over rounds \
             (contenders alternated within each round); added = over `direct` to the same pods in this run. \
             Pods `close` answer in HTTP/1.0 and close (a new upstream connection per request), `keep-alive` \
             pods keep their connections (HTTP/1.1). Proxy CPU: the user and system time of the proxy's \
             processes over the run's requests (from /proc; the packet work run in their system calls included).\n\n",
            self.date, self.machine, self.command, self.connections, self.seconds_per_run, self.wrk_cpus, self.proxy_cpus
        );
        md.push_str("| contender | pods | rounds | req/s | req/s range | p50 µs | p99 µs | added p50 µs | added p99 µs | proxy CPU µs/req | peak RSS MiB | failed |\n");
        md.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for cell in &self.cells {
            let direct = self.cells.iter().find(|c| c.contender == Contender::Direct && c.pods == cell.pods).map(|c| c.median);
            let f = &cell.median;
            let added = |v: f64, base: Option<f64>| match (cell.contender, base) {
                (Contender::Direct, _) | (_, None) => "-".to_owned(),
                (_, Some(base)) => format!("{:.0}", v - base),
            };
            let (low, high) = cell.requests_range();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {low:.0}-{high:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {:.0} |",
                cell.contender.name(),
                cell.pods.name(),
                cell.rounds.len(),
                f.requests_per_s,
                f.p50_us,
                f.p99_us,
                added(f.p50_us, direct.map(|d| d.p50_us)),
                added(f.p99_us, direct.map(|d| d.p99_us)),
                f.proxy_cpu_us.map_or("-".into(), |v| format!("{v:.1}")),
                f.peak_rss_mib.map_or("-".into(), |v| format!("{v:.1}")),
                f.failed,
            );
        }
        if !self.churn.is_empty() {
            md.push_str(
                "\nRoute changes: during one more run per proxy, an unused route is renamed (and flipped between two \
                 backends) again and again.\n\n| contender | how a change is applied | changes | applied | requests | \
                 failed | req/s | last route served |\n|---|---|---:|---:|---:|---:|---:|---|\n",
            );
            for churn in &self.churn {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {:.0} | {} |",
                    churn.contender.name(),
                    churn.how,
                    churn.changes,
                    churn.applied.map_or("-".into(), |n| n.to_string()),
                    churn.requests,
                    churn.failed,
                    churn.requests_per_s,
                    if churn.last_route_served { "yes" } else { "NO" },
                );
            }
        }
        md
    }
}

#[cfg(test)]
impl Report {
    /// A report of these figures from a made-up run.
    pub(super) fn of_test(cells: Vec<Cell>, churn: Vec<Churn>) -> Report {
        Report {
            suite: "l7",
            date: "today".into(),
            machine: "test".into(),
            command: "bench".into(),
            proxy_cpus: "1".into(),
            wrk_cpus: "0".into(),
            connections: 16,
            seconds_per_run: 10,
            cells,
            churn,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contenders_are_found_by_name() {
        for contender in Contender::ALL {
            assert_eq!(Contender::from_name(contender.name()), Ok(contender));
        }
        let unknown = Contender::from_name("envoy");
        assert_eq!(unknown, Err(r#"unknown contender "envoy" (direct, ebpf-lb, nginx, haproxy)"#.to_owned()));
        for pods in Pods::ALL {
            assert_eq!(Pods::from_name(pods.name()), Ok(pods));
        }
        assert_eq!(Pods::from_name("idle"), Err(r#"unknown kind of pods "idle" (close, keep-alive)"#.to_owned()));
    }

    #[test]
    fn medians_added_latency_and_route_changes_in_the_table() {
        let figures = |p50: f64, rss: Option<f64>| Figures {
            requests_per_s: 1000.0,
            p50_us: p50,
            p99_us: 2.0 * p50,
            failed: 0.0,
            peak_rss_mib: rss,
            proxy_cpu_us: rss.map(|rss| 10.0 * rss),
        };
        let report = Report::of_test(
            vec![
                Cell::new(Contender::Direct, Pods::Close, vec![figures(100.0, None), figures(300.0, None), figures(200.0, None)]),
                Cell::new(Contender::Nginx, Pods::Close, vec![figures(250.0, Some(3.0)), figures(270.0, Some(5.0))]),
                Cell::new(Contender::Direct, Pods::KeepAlive, vec![figures(50.0, None)]),
                Cell::new(Contender::Nginx, Pods::KeepAlive, vec![figures(80.0, Some(4.0))]),
            ],
            vec![Churn {
                contender: Contender::Nginx,
                how: "nginx -s reload",
                changes: 1000,
                applied: None,
                requests: 5000,
                failed: 12,
                requests_per_s: 500.0,
                last_route_served: true,
            }],
        );
        let md = report.markdown();
        assert!(md.contains("| direct | close | 3 | 1000 | 1000-1000 | 200 | 400 | - | - | - | - | 0 |"), "{md}");
        assert!(md.contains("| nginx | close | 2 | 1000 | 1000-1000 | 260 | 520 | 60 | 120 | 40.0 | 4.0 | 0 |"), "{md}");
        assert!(md.contains("| nginx | keep-alive | 1 | 1000 | 1000-1000 | 80 | 160 | 30 | 60 | 40.0 | 4.0 | 0 |"), "{md}");
        assert!(md.contains("| nginx | nginx -s reload | 1000 | - | 5000 | 12 | 500 | yes |"), "{md}");
    }
}
