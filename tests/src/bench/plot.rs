//! `l4-latency.png`: RR latency against the number of Services, one line per
//! contender, p50 on the left and p99 on the right.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::report::{Cell, Contender, Figures, Named};

/// Debian's fonts-dejavu-core (installed by `cargo xtask install`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

pub(super) fn load_font() -> Result<()> {
    static LOADED: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (install fonts-dejavu-core)"))?;
            // ab_glyph keeps the font for the whole process.
            register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
                .map_err(|_| format!("{FONT} is not a usable font"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}

fn color(contender: Contender) -> RGBColor {
    match contender {
        Contender::Direct => RGBColor(90, 90, 90),
        Contender::Ebpf => RGBColor(31, 119, 180),
        Contender::EbpfForwarded => RGBColor(44, 160, 44),
        Contender::Iptables => RGBColor(214, 39, 40),
    }
}

/// Which figure a panel plots.
type Metric = fn(&Figures) -> f64;

pub fn latency_png(path: &Path, cells: &[Cell]) -> Result<()> {
    load_font()?;
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_n = cells.iter().map(|c| c.services).max().unwrap_or(1) as f64;
    let panels: [(&str, Metric); 2] = [("p50", |f| f.rr_p50_us), ("p99", |f| f.rr_p99_us)];
    for (area, (title, value)) in root.split_evenly((1, 2)).iter().zip(panels) {
        let y_max = cells.iter().map(|c| value(&c.median)).fold(1.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(area)
            .caption(format!("RR latency {title} (persistent connection)"), ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d((0.8..max_n * 1.25).log_scale(), 0.0..y_max)?;
        chart.configure_mesh().x_desc("Services (N)").y_desc(format!("{title} µs")).draw()?;
        for contender in Contender::ALL {
            let points: Vec<(f64, f64)> =
                cells.iter().filter(|c| c.contender == contender).map(|c| (c.services as f64, value(&c.median))).collect();
            let style = color(contender);
            chart
                .draw_series(LineSeries::new(points.clone(), style.stroke_width(2)))?
                .label(contender.name())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, style.filled())))?;
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    }
    root.present()?;
    Ok(())
}
