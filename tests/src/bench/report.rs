//! The figures of a run: per round, their medians, the markdown table, JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The contenders, in the order they alternate within a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Contender {
    Direct,
    /// The agent as it ships: host routing `auto`, which on the lab's node
    /// (no netfilter chain) routes a Service's packets in the programs,
    /// past the node's IP stack.
    Ebpf,
    /// The agent with `--host-routing off`: the node's stack forwards, as
    /// on a node whose netfilter has chains the flows must pass.
    #[serde(rename = "ebpf-fwd")]
    EbpfForwarded,
    Iptables,
}

impl Contender {
    pub const ALL: [Contender; 4] = [Contender::Direct, Contender::Ebpf, Contender::EbpfForwarded, Contender::Iptables];
}

impl Named for Contender {
    const KIND: &'static str = "contender";

    fn all() -> &'static [Contender] {
        &Contender::ALL
    }

    fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::Ebpf => "ebpf",
            Contender::EbpfForwarded => "ebpf-fwd",
            Contender::Iptables => "iptables",
        }
    }
}

/// A closed set of values, each with a name of its own, as the benchmarks'
/// flags and reports spell them.
pub trait Named: Copy + 'static {
    /// What the values are, for messages ("contender").
    const KIND: &'static str;

    fn all() -> &'static [Self];

    fn name(self) -> &'static str;

    /// The value `name` names; else a message listing the names there are.
    fn from_name(name: &str) -> Result<Self, String> {
        Self::all().iter().copied().find(|value| value.name() == name).ok_or_else(|| {
            let names = Self::all().iter().map(|value| value.name()).collect::<Vec<_>>();
            format!("unknown {} {name:?} ({})", Self::KIND, names.join(", "))
        })
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
    /// `ebpf`: the program on the uplink's ingress (`lb_xdp` or `lb_tc_uplink`).
    pub uplink_program: Option<&'static str>,
    /// `ebpf`: nanoseconds per packet of each program over an RR run after
    /// the measured traffic, from the kernel's run-time statistics.
    pub uplink_ns_per_packet: Option<f64>,
    pub tc_in_ns_per_packet: Option<f64>,
    pub tc_out_ns_per_packet: Option<f64>,
}

/// The uplink's ingress programs the agent may attach.
const UPLINK_PROGRAMS: [&str; 2] = ["lb_xdp", "lb_tc_uplink"];

impl Figures {
    /// Takes each program's nanoseconds per run, by program name.
    pub fn set_ns_per_packet(&mut self, by_program: &BTreeMap<String, f64>) {
        let uplink = UPLINK_PROGRAMS.into_iter().find(|name| by_program.contains_key(*name));
        self.uplink_program = uplink;
        self.uplink_ns_per_packet = uplink.and_then(|name| by_program.get(name).copied());
        self.tc_in_ns_per_packet = by_program.get("lb_tc_in").copied();
        self.tc_out_ns_per_packet = by_program.get("lb_tc_out").copied();
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub services: usize,
    pub contender: Contender,
    pub median: Figures,
    /// The lowest and highest RR p50 of the rounds: how far apart rounds
    /// are, to tell noise from a gap between contenders.
    pub rr_p50_range_us: (f64, f64),
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
            uplink_program: rounds.iter().find_map(|f| f.uplink_program),
            uplink_ns_per_packet: opt(|f| f.uplink_ns_per_packet),
            tc_in_ns_per_packet: opt(|f| f.tc_in_ns_per_packet),
            tc_out_ns_per_packet: opt(|f| f.tc_out_ns_per_packet),
        };
        let p50s = rounds.iter().map(|f| f.rr_p50_us);
        let rr_p50_range_us = (p50s.clone().fold(f64::NAN, f64::min), p50s.fold(f64::NAN, f64::max));
        Cell { services, contender, median, rr_p50_range_us, rounds }
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
    /// What the agent reads its Services from.
    pub agent_input: &'static str,
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
            "L4 benchmark, {} on {}; `{}`.\nPath: {}. Agent input: {}. Medians over rounds (contenders alternated within each round); \
             ×direct = ratio to `direct` at the same N in this run.\n\n",
            self.date, self.machine, self.command, self.path, self.agent_input
        );
        md.push_str(
            "| N | contender | rounds | RR p50 µs | RR p50 min-max µs | RR p99 µs | RR p99.9 µs | RR p50 ×direct | RR p99 ×direct | CRR conn/s | CRR p50 µs | CRR p99 µs | ",
        );
        let _ = writeln!(md, "req/s @{} conns | CPU µs/req | programming ms | endpoint change ms |", self.concurrency);
        md.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for cell in &self.cells {
            let f = &cell.median;
            let direct = self.cell(cell.services, Contender::Direct);
            let ratio = |v: f64, base: Option<f64>| base.map_or("-".into(), |b| format!("{:.2}", v / b));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.2} | {:.2}-{:.2} | {:.1} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {} | {} |",
                cell.services,
                cell.contender.name(),
                cell.rounds.len(),
                f.rr_p50_us,
                cell.rr_p50_range_us.0,
                cell.rr_p50_range_us.1,
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
        md.push_str(&self.ns_per_packet());
        md.push_str(&self.targets());
        md
    }

    /// The `ebpf` programs' nanoseconds per packet (medians over rounds), or
    /// nothing when no run measured them.
    fn ns_per_packet(&self) -> String {
        let measured: Vec<&Cell> = self.cells.iter().filter(|c| c.median.uplink_program.is_some()).collect();
        if measured.is_empty() {
            return String::new();
        }
        let mut md = String::from(
            "`ebpf` programs, ns per packet over an RR run after the measured traffic (kernel run-time statistics, \
             run_time_ns / run_cnt; medians over rounds):\n\n\
             | N | contender | uplink program | uplink ns/pkt | lb_tc_in ns/pkt | lb_tc_out ns/pkt |\n|---:|---|---|---:|---:|---:|\n",
        );
        for cell in measured {
            let f = &cell.median;
            let ns = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell.services,
                cell.contender.name(),
                f.uplink_program.unwrap_or("-"),
                ns(f.uplink_ns_per_packet),
                ns(f.tc_in_ns_per_packet),
                ns(f.tc_out_ns_per_packet)
            );
        }
        md.push('\n');
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
            "| RR `ebpf` p50/p99 within 10% of `direct` at N={first} | {:.2}/{:.1} µs vs {:.2}/{:.1} µs | {} |",
            ebpf1.rr_p50_us,
            ebpf1.rr_p99_us,
            direct1.rr_p50_us,
            direct1.rr_p99_us,
            verdict(within(ebpf1.rr_p50_us, direct1.rr_p50_us) && within(ebpf1.rr_p99_us, direct1.rr_p99_us))
        );
        for contender in [Contender::Ebpf, Contender::EbpfForwarded] {
            let ratios: Vec<(usize, f64)> = sizes
                .iter()
                .filter_map(|&n| Some((n, self.cell(n, contender)?.rr_p50_us / self.cell(n, Contender::Direct)?.rr_p50_us)))
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let listed: Vec<String> = ratios.iter().map(|(n, r)| format!("{r:.2}x at N={n}")).collect();
            let _ = writeln!(
                md,
                "| RR `{}` p50 <= 1.05x `direct` at every N | {} | {} |",
                contender.name(),
                listed.join(", "),
                verdict(ratios.iter().all(|(_, r)| *r <= 1.05))
            );
        }
        let _ = writeln!(
            md,
            "| RR `ebpf` p50/p99 flat within 10% from N={first} to N={last} | {:.2}/{:.1} µs at N={last} | {} |",
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
            "| programming N={last} Services < 1 s (iptables-restore beside it) | {} ms (iptables-restore {} ms) | {} |",
            optional(ebpf_n.programming_ms),
            optional(ipt_n.programming_ms),
            verdict(ebpf_n.programming_ms.is_some_and(|ms| ms < 1000.0))
        );
        let _ = writeln!(
            md,
            "| one endpoint change at N={last} reflected in traffic < 50 ms | {} ms (iptables {} ms) | {} |",
            optional(ebpf_n.endpoint_change_ms),
            optional(ipt_n.endpoint_change_ms),
            verdict(ebpf_n.endpoint_change_ms.is_some_and(|ms| ms < 50.0))
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
            agent_input: "test",
            concurrency: 8,
            cells: vec![
                Cell::new(1, Contender::Direct, vec![figures(10.0), figures(30.0), figures(20.0)]),
                Cell::new(1, Contender::Ebpf, vec![figures(21.0)]),
            ],
        };
        let md = report.markdown();
        assert!(md.contains("| 1 | direct | 3 | 20.00 | 10.00-30.00 | 40.0 |"), "{md}");
        assert!(md.contains("| 1 | ebpf | 1 | 21.00 | 21.00-21.00 | 42.0 | 0 | 1.05 | 1.05 |"), "{md}");
        assert!(md.contains("| NOT met |"), "{md}");
        assert!(md.contains("| RR `ebpf` p50 <= 1.05x `direct` at every N | 1.05x at N=1 | met |"), "{md}");
        assert!(!md.contains("RR `ebpf-fwd`"), "no row for a contender not run\n{md}");
        assert!(!md.contains("ns per packet"), "no program figures measured: no table\n{md}");
    }

    #[test]
    fn ns_per_packet_names_the_uplink_program_and_takes_medians() {
        let measured = |uplink: &str, ns: f64| {
            let mut f = Figures::default();
            let by_program = BTreeMap::from([(uplink.to_string(), ns), ("lb_tc_in".into(), 40.0), ("lb_tc_out".into(), 2.0 * ns)]);
            f.set_ns_per_packet(&by_program);
            f
        };
        let cells = vec![
            Cell::new(1, Contender::Ebpf, vec![measured("lb_tc_uplink", 100.0), measured("lb_tc_uplink", 300.0), measured("lb_tc_uplink", 200.0)]),
            Cell::new(1000, Contender::Ebpf, vec![measured("lb_xdp", 150.0)]),
        ];
        let report = Report { suite: "l4", date: "today".into(), machine: "m".into(), command: "bench".into(), path: "p", agent_input: "i", concurrency: 8, cells };
        let md = report.markdown();
        assert!(md.contains("| 1 | ebpf | lb_tc_uplink | 200 | 40 | 400 |"), "{md}");
        assert!(md.contains("| 1000 | ebpf | lb_xdp | 150 | 40 | 300 |"), "{md}");
    }
}
