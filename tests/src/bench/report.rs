//! The figures of a run: per round, their medians, the markdown table, JSON.

use std::fmt::Write as _;

use serde::Serialize;

/// The contenders, in the order they alternate within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    Direct,
    Ebpf,
    Iptables,
}

impl Contender {
    pub const ALL: [Contender; 3] = [Contender::Direct, Contender::Ebpf, Contender::Iptables];

    /// The contender named `name` (as `name()` spells it).
    pub fn parse(name: &str) -> Option<Contender> {
        Contender::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::Ebpf => "ebpf",
            Contender::Iptables => "iptables",
        }
    }
}

/// One contender at one size in one round; latencies in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Figures {
    pub rr_p50_us: f64,
    pub rr_p99_us: f64,
    pub rr_p999_us: f64,
    pub crr_per_s: f64,
    pub crr_p50_us: f64,
    pub crr_p99_us: f64,
    pub throughput_per_s: f64,
    pub cpu_us_per_request: f64,
    /// From empty to the measured Service programmed (ebpf, iptables).
    pub programming_ms: Option<f64>,
    /// From one endpoint change to traffic reaching the new endpoint (largest N).
    pub endpoint_change_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub services: usize,
    pub contender: Contender,
    pub median: Figures,
    pub rounds: Vec<Figures>,
}

impl Cell {
    pub fn new(services: usize, contender: Contender, rounds: Vec<Figures>) -> Cell {
        let m = |f: fn(&Figures) -> f64| median(rounds.iter().map(f).collect()).unwrap_or(f64::NAN);
        let opt = |f: fn(&Figures) -> Option<f64>| median(rounds.iter().filter_map(f).collect());
        let median = Figures {
            rr_p50_us: m(|f| f.rr_p50_us),
            rr_p99_us: m(|f| f.rr_p99_us),
            rr_p999_us: m(|f| f.rr_p999_us),
            crr_per_s: m(|f| f.crr_per_s),
            crr_p50_us: m(|f| f.crr_p50_us),
            crr_p99_us: m(|f| f.crr_p99_us),
            throughput_per_s: m(|f| f.throughput_per_s),
            cpu_us_per_request: m(|f| f.cpu_us_per_request),
            programming_ms: opt(|f| f.programming_ms),
            endpoint_change_ms: opt(|f| f.endpoint_change_ms),
        };
        Cell { services, contender, median, rounds }
    }
}

pub(super) fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub suite: &'static str,
    pub date: String,
    pub machine: String,
    pub command: String,
    /// How the `ebpf` and `iptables` contenders are reached.
    pub path: &'static str,
    pub concurrency: usize,
    pub cells: Vec<Cell>,
}

impl Report {
    fn cell(&self, services: usize, contender: Contender) -> Option<&Figures> {
        self.cells.iter().find(|c| c.services == services && c.contender == contender).map(|c| &c.median)
    }

    fn sizes(&self) -> Vec<usize> {
        let mut sizes: Vec<usize> = self.cells.iter().map(|c| c.services).collect();
        sizes.dedup();
        sizes
    }

    pub fn markdown(&self) -> String {
        let mut md = format!(
            "L4 benchmark, {} on {}; `{}`.\nPath: {}. Medians over rounds (contenders alternated within each round); \
             ×direct = ratio to `direct` at the same N in this run.\n\n",
            self.date, self.machine, self.command, self.path
        );
        md.push_str(
            "| N | contender | rounds | RR p50 µs | RR p99 µs | RR p99.9 µs | RR p50 ×direct | RR p99 ×direct | CRR conn/s | CRR p50 µs | CRR p99 µs | ",
        );
        let _ = writeln!(md, "req/s @{} conns | CPU µs/req | programming ms | endpoint change ms |", self.concurrency);
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for cell in &self.cells {
            let f = &cell.median;
            let direct = self.cell(cell.services, Contender::Direct);
            let ratio = |v: f64, base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", v / b));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} |",
                cell.services,
                cell.contender.name(),
                cell.rounds.len(),
                f.rr_p50_us,
                f.rr_p99_us,
                f.rr_p999_us,
                ratio(f.rr_p50_us, direct.map(|d| d.rr_p50_us)),
                ratio(f.rr_p99_us, direct.map(|d| d.rr_p99_us)),
                f.crr_per_s,
                f.crr_p50_us,
                f.crr_p99_us,
                f.throughput_per_s,
                f.cpu_us_per_request,
                optional(f.programming_ms),
                optional(f.endpoint_change_ms),
            );
        }
        md.push('\n');
        md.push_str(&self.targets());
        md
    }

    /// The targets, each with the measured figures and whether it is met.
    fn targets(&self) -> String {
        let sizes = self.sizes();
        let (Some(&first), Some(&last)) = (sizes.first(), sizes.last()) else { return String::new() };
        let get = |n, c| self.cell(n, c).copied().unwrap_or_default();
        let (direct1, ebpf1, ebpf_n, ipt_n) =
            (get(first, Contender::Direct), get(first, Contender::Ebpf), get(last, Contender::Ebpf), get(last, Contender::Iptables));
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        let mut md = String::from("| target | measured | verdict |\n|---|---|---|\n");
        let within = |a: f64, b: f64| a <= b * 1.10;
        let _ = writeln!(
            md,
            "| RR `ebpf` p50/p99 within 10% of `direct` at N={first} | {:.0}/{:.0} µs vs {:.0}/{:.0} µs | {} |",
            ebpf1.rr_p50_us,
            ebpf1.rr_p99_us,
            direct1.rr_p50_us,
            direct1.rr_p99_us,
            verdict(within(ebpf1.rr_p50_us, direct1.rr_p50_us) && within(ebpf1.rr_p99_us, direct1.rr_p99_us))
        );
        let _ = writeln!(
            md,
            "| RR `ebpf` p50/p99 flat within 10% from N={first} to N={last} | {:.0}/{:.0} µs at N={last} | {} |",
            ebpf_n.rr_p50_us,
            ebpf_n.rr_p99_us,
            verdict(within(ebpf_n.rr_p50_us, ebpf1.rr_p50_us) && within(ebpf_n.rr_p99_us, ebpf1.rr_p99_us))
        );
        let _ = writeln!(
            md,
            "| CRR at N={last}: `ebpf` >= 1.5x `iptables` rate, lower p99 | {:.0} vs {:.0} conn/s ({:.2}x), p99 {:.0} vs {:.0} µs | {} |",
            ebpf_n.crr_per_s,
            ipt_n.crr_per_s,
            ebpf_n.crr_per_s / ipt_n.crr_per_s,
            ebpf_n.crr_p99_us,
            ipt_n.crr_p99_us,
            verdict(ebpf_n.crr_per_s >= 1.5 * ipt_n.crr_per_s && ebpf_n.crr_p99_us < ipt_n.crr_p99_us)
        );
        let _ = writeln!(
            md,
            "| programming N={last} Services < 2 s (iptables-restore beside it) | {} ms (iptables-restore {} ms) | {} |",
            optional(ebpf_n.programming_ms),
            optional(ipt_n.programming_ms),
            verdict(ebpf_n.programming_ms.is_some_and(|ms| ms < 2000.0))
        );
        let _ = writeln!(
            md,
            "| one endpoint change at N={last} reflected in traffic < 100 ms | {} ms (iptables {} ms) | {} |",
            optional(ebpf_n.endpoint_change_ms),
            optional(ipt_n.endpoint_change_ms),
            verdict(ebpf_n.endpoint_change_ms.is_some_and(|ms| ms < 100.0))
        );
        md
    }
}

fn optional(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.0}"))
}

/// CPU count, model and kernel, for the report.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())))
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpus} CPUs ({model}), Linux {}", kernel.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_table() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        let figures = |p50| Figures { rr_p50_us: p50, rr_p99_us: 2.0 * p50, crr_per_s: 1000.0, ..Figures::default() };
        let report = Report {
            suite: "l4",
            date: "today".into(),
            machine: machine(),
            command: "bench".into(),
            path: "test",
            concurrency: 8,
            cells: vec![
                Cell::new(1, Contender::Direct, vec![figures(10.0), figures(30.0), figures(20.0)]),
                Cell::new(1, Contender::Ebpf, vec![figures(21.0)]),
            ],
        };
        let md = report.markdown();
        assert!(md.contains("| 1 | direct | 3 | 20 | 40 |"), "{md}");
        assert!(md.contains("| 1 | ebpf | 1 | 21 | 42 | 0 | 1.05 | 1.05 |"), "{md}");
        assert!(md.contains("| NOT met |"), "{md}");
    }
}
