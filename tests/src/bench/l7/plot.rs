//! `l7.png`: one bar per contender and kind of pods for requests/s, p50 and p99 latency, and
//! the failed requests while routes changed.

use std::path::Path;

use anyhow::Result;
use plotters::prelude::*;

use super::report::{Contender, Report};
use crate::bench::Named;
use crate::bench::plot::load_font;

fn color(contender: Contender) -> RGBColor {
    match contender {
        Contender::Direct => RGBColor(90, 90, 90),
        Contender::EbpfLb => RGBColor(31, 119, 180),
        Contender::Nginx => RGBColor(44, 160, 44),
        Contender::Haproxy => RGBColor(214, 39, 40),
    }
}

pub fn bars_png(path: &Path, report: &Report) -> Result<()> {
    load_font()?;
    let root = BitMapBackend::new(path, (1800, 800)).into_drawing_area();
    root.fill(&WHITE)?;
    let median = |f: fn(&super::report::Figures) -> f64| -> Vec<(Contender, String, f64)> {
        report.cells.iter().map(|c| (c.contender, format!("{} {}", c.contender.name(), c.pods.name()), f(&c.median))).collect()
    };
    let panels = [
        ("requests/s (higher is better)", median(|f| f.requests_per_s)),
        ("latency p50 µs", median(|f| f.p50_us)),
        ("latency p99 µs", median(|f| f.p99_us)),
        ("failed requests while routes change", report.churn.iter().map(|c| (c.contender, c.contender.name().to_owned(), c.failed as f64)).collect()),
    ];
    for (area, (title, bars)) in root.split_evenly((2, 2)).iter().zip(panels) {
        bar_panel(area, title, &bars)?;
    }
    root.present()?;
    Ok(())
}

fn bar_panel(area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>, title: &str, bars: &[(Contender, String, f64)]) -> Result<()> {
    let y_max = bars.iter().map(|(_, _, v)| *v).fold(1.0, f64::max) * 1.15;
    let names: Vec<&str> = bars.iter().map(|(_, name, _)| name.as_str()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((0..bars.len()).into_segmented(), 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => names.get(*i).map_or(String::new(), |n| (*n).to_owned()),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (contender, _, value))| {
        let mut bar = Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), *value)], color(*contender).filled());
        bar.set_margin(0, 0, 20, 20);
        bar
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, (_, _, value))| {
        Text::new(format!("{value:.0}"), (SegmentValue::CenterOf(i), *value + y_max * 0.02), ("sans-serif", 16))
    }))?;
    Ok(())
}
