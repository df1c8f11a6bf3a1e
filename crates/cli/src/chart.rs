//! Charts an analyst can put in a report: a ranking as horizontal bars, a time series
//! as a line, written as SVG with plotters.

use std::path::Path;

use plotters::prelude::*;

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct ChartError {
    path: String,
    message: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> ChartError {
    ChartError { path: path.display().to_string(), message: e.to_string() }
}

/// Bars, largest first as given: `(label, value)`.
pub fn ranking(path: &Path, title: &str, bars: &[(String, i64)]) -> Result<(), ChartError> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(err(path, "charts are written as .svg"));
    }
    let height = 120 + 28 * bars.len().max(1) as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = bars.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(240)
        .build_cartesian_2d(0i64..max + max / 10 + 1, (0..n).into_segmented())
        .map_err(|e| err(path, e))?;
    let labels: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| crate::output::group(*v))
        .draw()
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let i = i as i32;
            let mut bar = Rectangle::new(
                [(0, SegmentValue::Exact(i)), (*v, SegmentValue::Exact(i + 1))],
                RGBColor(31, 119, 180).filled(),
            );
            bar.set_margin(3, 3, 0, 0);
            bar
        }))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// A line over labelled points: `(period, value)`.
pub fn series(path: &Path, title: &str, points: &[(String, i64)]) -> Result<(), ChartError> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(err(path, "charts are written as .svg"));
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = points.len().max(1) as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(120)
        .build_cartesian_2d(0..n, 0i64..max + max / 10 + 1)
        .map_err(|e| err(path, e))?;
    let labels: Vec<String> = points.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|i| labels.get(*i as usize).cloned().unwrap_or_default())
        .y_label_formatter(&|v| crate::output::group(*v))
        .draw()
        .map_err(|e| err(path, e))?;
    let style = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(
            points.iter().enumerate().map(|(i, (_, v))| (i as i32, *v)),
            style.stroke_width(2),
        ))
        .map_err(|e| err(path, e))?;
    chart
        .draw_series(points.iter().enumerate().map(|(i, (_, v))| Circle::new((i as i32, *v), 4, style.filled())))
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}
