//! The chart: one panel per target (a driver, plain or over TLS), the latency CDF of each method
//! on a log-scale µs axis.

use std::path::Path;

use plotters::prelude::*;

use crate::measure::{BoxError, Samples};

/// Points per line: enough for a smooth curve, few enough for a small SVG.
const POINTS: usize = 400;

pub fn draw(path: &Path, samples: &[Samples]) -> Result<(), BoxError> {
    let height = 440 * samples.len().max(1) as u32;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((samples.len().max(1), 1));
    for (area, s) in panels.iter().zip(samples) {
        panel(area, s)?;
    }
    root.present()
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    s: &Samples,
) -> Result<(), BoxError> {
    let all = s.per_method.iter().flat_map(|(_, ns)| ns.iter().copied());
    let (lo, hi) = all.fold((u64::MAX, 0), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi == 0 {
        return Ok(());
    }
    // Whole decades, in µs.
    let lo = 10f64.powf((lo.max(1) as f64 / 1000.0).log10().floor());
    let hi = 10f64.powf((hi as f64 / 1000.0).log10().ceil());
    let caption = format!("{}: latency CDF ({})", s.title(), short_paths(&s.shown));
    let mut chart = ChartBuilder::on(area)
        .caption(&caption, ("sans-serif", caption_size(&caption)))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..100.0)?;
    chart
        .configure_mesh()
        .x_desc("latency per call, µs (log scale)")
        .y_desc("% of calls at or below")
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 16))
        .draw()?;
    for (i, (method, ns)) in s.per_method.iter().enumerate() {
        if ns.is_empty() || method.is_part() {
            continue;
        }
        let mut sorted = ns.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        let step = n.div_ceil(POINTS).max(1);
        let points = (0..n)
            .step_by(step)
            .chain(std::iter::once(n - 1))
            .map(|k| (sorted[k] as f64 / 1000.0, 100.0 * (k + 1) as f64 / n as f64));
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(method.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    Ok(())
}

/// The caption's font size: 22, smaller for a caption that would not fit the 1000 px panel at
/// that size. plotters' SVG text is 0.77 px per unit of size, and a sans-serif character about
/// half as wide as it is high, so a caption of n characters fits below 2400 / n; 2200 leaves a
/// margin.
fn caption_size(caption: &str) -> u32 {
    let fits = 2200 / caption.chars().count().max(1);
    fits.clamp(12, 22) as u32
}

/// `shown` with each file path cut to its last part (`sslrootcert=…/ca.crt`): a TLS target's
/// CA path would push its caption past the panel's width, and the name says enough there.
fn short_paths(shown: &str) -> String {
    shown
        .split(' ')
        .map(|pair| match pair.split_once('=') {
            Some((key, value)) if value.contains('/') => {
                let last = value.rsplit('/').next().unwrap_or(value);
                format!("{key}=…/{last}")
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}
