//! The `--svg` chart: canary weight over time above, metric values over time below.

use std::collections::BTreeMap;
use std::path::Path;

use canary::RolloutPlan;
use canary::sim::SimReport;
use plotters::prelude::*;

const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Writes the chart of `report` to `out`.
pub fn write_svg(
    out: &Path,
    plan: &RolloutPlan,
    report: &SimReport,
) -> Result<(), Box<dyn std::error::Error>> {
    let end = report.summary.duration_s.max(1) as f64;
    let root = SVGBackend::new(out, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(300);

    let mut weight = ChartBuilder::on(&top)
        .caption(
            format!("{}: canary weight ({})", plan.name, report.summary.phase),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, 0f64..100f64)?;
    weight
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("weight %")
        .draw()?;
    let mut points = Vec::new();
    let mut last = 0.0;
    for row in &report.rows {
        let t = row.t as f64;
        let w = f64::from(row.canary_weight);
        points.push((t, last));
        points.push((t, w));
        last = w;
    }
    points.push((end, last));
    weight.draw_series(LineSeries::new(points, COLOURS[0].stroke_width(2)))?;

    let mut series: BTreeMap<&str, Vec<(f64, f64)>> = BTreeMap::new();
    for row in &report.rows {
        for (name, value) in &row.metrics {
            if let Some(value) = value {
                series.entry(name).or_default().push((row.t as f64, *value));
            }
        }
    }
    let values = series.values().flatten().map(|(_, v)| *v);
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let (low, high) = if low.is_finite() {
        (low, high)
    } else {
        (0.0, 1.0)
    };
    let pad = ((high - low) * 0.1).max(0.5);
    let mut metrics = ChartBuilder::on(&bottom)
        .caption("metrics at each analysis run", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..end, (low - pad)..(high + pad))?;
    metrics.configure_mesh().x_desc("seconds").draw()?;
    for (i, (name, points)) in series.into_iter().enumerate() {
        let colour = COLOURS[(i + 1) % COLOURS.len()];
        metrics
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        metrics.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, colour.filled())),
        )?;
    }
    metrics
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
