//! Issue #12's L7 bars, checked against a run's medians for each kind of
//! pods: requests/s at least 1.2x nginx's and at least HAProxy's, added p50
//! below both, p99 at most both. The spread of requests/s over rounds is
//! printed beside each ratio, and whether the rounds of two contenders
//! overlap: a ratio inside the spread is not a result.

use std::fmt::Write as _;

use crate::bench::report::Named;

use super::report::{Cell, Contender, Pods, Report};

/// Requests/s over each rival's that the bar asks for.
fn bar(rival: Contender) -> f64 {
    if rival == Contender::Nginx { 1.2 } else { 1.0 }
}

const RIVALS: [Contender; 2] = [Contender::Nginx, Contender::Haproxy];

/// The rows for every kind of pods that `ebpf-lb` and a rival ran against;
/// empty when there is none.
pub(super) fn markdown(report: &Report) -> String {
    let mut rows = String::new();
    for pods in Pods::ALL {
        let cell = |contender| report.cells.iter().find(|cell| cell.contender == contender && cell.pods == pods);
        let Some(ours) = cell(Contender::EbpfLb) else { continue };
        let rivals: Vec<&Cell> = RIVALS.into_iter().filter_map(cell).collect();
        if rivals.is_empty() {
            continue;
        }
        let missing: Vec<&str> = RIVALS.into_iter().filter(|rival| cell(*rival).is_none()).map(Contender::name).collect();
        let verdict = |ok: bool| match (ok, missing.is_empty()) {
            (false, _) => "NOT met".to_owned(),
            (true, true) => "met".to_owned(),
            (true, false) => format!("met where run ({} not run)", missing.join(", ")),
        };
        let pods = pods.name();

        let (low, high) = ours.requests_range();
        let mut measured = format!("ebpf-lb {:.0} ({low:.0}-{high:.0})", ours.median.requests_per_s);
        for rival in &rivals {
            let (rival_low, rival_high) = rival.requests_range();
            let spread = if low > rival_high || high < rival_low { "rounds apart" } else { "rounds overlap" };
            let _ = write!(
                measured,
                "; {} {:.0} ({rival_low:.0}-{rival_high:.0}): {:.2}x, {spread}",
                rival.contender.name(),
                rival.median.requests_per_s,
                ours.median.requests_per_s / rival.median.requests_per_s
            );
        }
        let fast_enough = rivals.iter().all(|rival| ours.median.requests_per_s >= bar(rival.contender) * rival.median.requests_per_s);
        let _ = writeln!(rows, "| {pods} pods: req/s >= 1.2x nginx and >= HAProxy | {measured} | {} |", verdict(fast_enough));

        if let Some(direct) = cell(Contender::Direct) {
            let added = |cell: &Cell| cell.median.p50_us - direct.median.p50_us;
            let listed = latencies(ours, &rivals, added);
            let below = rivals.iter().all(|rival| added(ours) < added(rival));
            let _ = writeln!(rows, "| {pods} pods: added p50 below nginx and HAProxy | {listed} | {} |", verdict(below));
        }
        let p99 = |cell: &Cell| cell.median.p99_us;
        let at_most = rivals.iter().all(|rival| p99(ours) <= p99(rival));
        let _ = writeln!(rows, "| {pods} pods: p99 <= nginx and <= HAProxy | {} | {} |", latencies(ours, &rivals, p99), verdict(at_most));
    }
    if rows.is_empty() {
        return rows;
    }
    format!("\nAgainst issue #12's L7 bars (medians; req/s ranges over rounds):\n\n| target | measured | verdict |\n|---|---|---|\n{rows}")
}

fn latencies(ours: &Cell, rivals: &[&Cell], figure: impl Fn(&Cell) -> f64) -> String {
    let mut listed = format!("ebpf-lb {:.0} µs", figure(ours));
    for rival in rivals {
        let _ = write!(listed, "; {} {:.0}", rival.contender.name(), figure(rival));
    }
    listed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::l7::report::Figures;

    fn cell(contender: Contender, pods: Pods, rates: &[f64], p50_us: f64, p99_us: f64) -> Cell {
        let rounds = rates.iter().map(|&requests_per_s| Figures { requests_per_s, p50_us, p99_us, failed: 0.0, peak_rss_mib: None, proxy_cpu_us: None }).collect();
        Cell::new(contender, pods, rounds)
    }

    #[test]
    fn each_bar_is_checked_against_both_rivals_with_the_spread_of_rounds() {
        use Contender::*;
        use Pods::*;
        let cases: [(&str, Vec<Cell>, &[&str]); 4] = [
            (
                "ahead of both, rounds apart",
                vec![
                    cell(Direct, KeepAlive, &[100.0], 50.0, 80.0),
                    cell(EbpfLb, KeepAlive, &[1300.0, 1250.0, 1280.0], 60.0, 90.0),
                    cell(Nginx, KeepAlive, &[1000.0, 1040.0, 1020.0], 70.0, 95.0),
                    cell(Haproxy, KeepAlive, &[1100.0], 80.0, 90.0),
                ],
                &[
                    "| keep-alive pods: req/s >= 1.2x nginx and >= HAProxy | ebpf-lb 1280 (1250-1300); nginx 1020 (1000-1040): 1.25x, rounds apart; haproxy 1100 (1100-1100): 1.16x, rounds apart | met |",
                    "| keep-alive pods: added p50 below nginx and HAProxy | ebpf-lb 10 µs; nginx 20; haproxy 30 | met |",
                    "| keep-alive pods: p99 <= nginx and <= HAProxy | ebpf-lb 90 µs; nginx 95; haproxy 90 | met |",
                ],
            ),
            (
                "ahead of nginx but not by 1.2x, rounds overlapping",
                vec![
                    cell(EbpfLb, Close, &[1090.0, 1000.0], 60.0, 100.0),
                    cell(Nginx, Close, &[1000.0, 1010.0], 70.0, 99.0),
                    cell(Haproxy, Close, &[900.0], 80.0, 120.0),
                ],
                &[
                    "| close pods: req/s >= 1.2x nginx and >= HAProxy | ebpf-lb 1045 (1000-1090); nginx 1005 (1000-1010): 1.04x, rounds overlap; haproxy 900 (900-900): 1.16x, rounds apart | NOT met |",
                    "| close pods: p99 <= nginx and <= HAProxy | ebpf-lb 100 µs; nginx 99; haproxy 120 | NOT met |",
                ],
            ),
            (
                "HAProxy not run",
                vec![cell(EbpfLb, Close, &[1300.0], 60.0, 90.0), cell(Nginx, Close, &[1000.0], 70.0, 95.0)],
                &["| close pods: req/s >= 1.2x nginx and >= HAProxy | ebpf-lb 1300 (1300-1300); nginx 1000 (1000-1000): 1.30x, rounds apart | met where run (haproxy not run) |"],
            ),
            ("no rival", vec![cell(EbpfLb, Close, &[1300.0], 60.0, 90.0)], &[]),
        ];
        for (name, cells, rows) in cases {
            let md = markdown(&Report::of_test(cells, Vec::new()));
            for row in rows {
                assert!(md.lines().any(|line| line == *row), "{name}: no {row:?} in\n{md}");
            }
            assert_eq!(md.is_empty(), rows.is_empty(), "{name}:\n{md}");
        }
    }
}
