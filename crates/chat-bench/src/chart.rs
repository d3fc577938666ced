//! SVG charts drawn by the tool itself: delivery latency percentiles
//! against the offered rate, from the steps of a `max` ramp.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::pairs::StepResult;

/// One plotted percentile: its name, colour and how to read it.
type Percentile = (&'static str, RGBColor, fn(&StepResult) -> f64);

/// Draws p50/p90/p99/p99.9 send->delivered latency against offered rate,
/// with the limit as a dashed line, on a logarithmic latency axis.
///
/// # Errors
/// When the file cannot be written.
pub fn latency_vs_rate(
    path: &Path,
    title: &str,
    steps: &[StepResult],
    limit_ms: f64,
) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let max_rate = steps.iter().map(|s| s.offered_rate).fold(1.0_f64, f64::max) * 1.05;
    let max_latency = steps
        .iter()
        .map(|s| s.delivered_latency.p999_ms)
        .fold(limit_ms, f64::max)
        .max(1.0)
        * 2.0;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing {}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..max_rate, (0.1..max_latency).log_scale())
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_desc("offered rate (messages/s)")
        .y_desc("send -> delivered latency (ms, log scale)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| draw(&e))?;
    let series: [Percentile; 4] = [
        ("p50", RGBColor(44, 123, 182), |s| {
            s.delivered_latency.p50_ms
        }),
        ("p90", RGBColor(0, 166, 90), |s| s.delivered_latency.p90_ms),
        ("p99", RGBColor(253, 174, 97), |s| {
            s.delivered_latency.p99_ms
        }),
        ("p99.9", RGBColor(215, 25, 28), |s| {
            s.delivered_latency.p999_ms
        }),
    ];
    for (name, color, value) in series {
        let points: Vec<(f64, f64)> = steps
            .iter()
            .map(|s| (s.offered_rate, value(s).max(0.1)))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(|e| draw(&e))?;
    }
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, limit_ms), (max_rate, limit_ms)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(|e| draw(&e))?
        .label(format!("limit {limit_ms} ms"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}
