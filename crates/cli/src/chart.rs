//! Charts an analyst can put in a report: a ranking as horizontal bars, a time series
//! as a line, written as SVG with plotters. Titled and labelled in words, in
//! Vietnamese or English, numbers in the reader's format; a chart with nothing to draw
//! says so instead of drawing empty axes.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

#[derive(Debug, thiserror::Error)]
#[error("cannot draw {path}: {message}")]
pub struct ChartError {
    path: String,
    message: String,
}

fn err(path: &Path, e: impl std::fmt::Display) -> ChartError {
    ChartError { path: path.display().to_string(), message: e.to_string() }
}

/// The language of a chart's words and numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Vietnamese: `1.234.567`.
    Vi,
    /// English: `1,234,567`.
    En,
}

impl Lang {
    /// A whole number grouped in thousands as the reader writes it.
    pub fn number(self, n: i64) -> String {
        let vi = crate::output::group(n);
        match self {
            Lang::Vi => vi,
            Lang::En => vi.replace('.', ","),
        }
    }

    /// The words of `vi` or `en`, whichever is this language.
    pub fn pick<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }
}

/// What a chart says besides its values.
#[derive(Debug, Clone)]
pub struct Labels {
    pub lang: Lang,
    /// Figure, unit and period, in words.
    pub title: String,
    /// What the values are (the figure).
    pub value_axis: String,
    /// What the categories are (units, periods).
    pub category_axis: String,
}

impl Labels {
    fn no_data(&self) -> &'static str {
        self.lang.pick("Không có số liệu cho kỳ này", "No data for this period")
    }
}

fn svg_path(path: &Path) -> Result<(), ChartError> {
    if path.extension().is_none_or(|e| e != "svg") {
        return Err(err(path, "charts are written as .svg"));
    }
    Ok(())
}

/// A chart with no value to draw: its title and a plain sentence saying so.
fn nothing_to_draw(path: &Path, labels: &Labels) -> Result<(), ChartError> {
    let root = SVGBackend::new(path, (900, 200)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let root = root.titled(&labels.title, ("sans-serif", 22)).map_err(|e| err(path, e))?;
    let centre = TextStyle::from(("sans-serif", 18).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    root.draw(&Text::new(labels.no_data(), (450, 70), centre)).map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))?;
    Ok(())
}

/// Bars, largest first as given: `(unit name, value)`.
pub fn ranking(path: &Path, labels: &Labels, bars: &[(String, i64)]) -> Result<(), ChartError> {
    svg_path(path)?;
    if bars.iter().all(|(_, v)| *v == 0) {
        return nothing_to_draw(path, labels);
    }
    let height = 140 + 28 * bars.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let max = bars.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = bars.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(&labels.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(260)
        .build_cartesian_2d(0i64..max + max / 10 + 1, (0..n).into_segmented())
        .map_err(|e| err(path, e))?;
    let names: Vec<String> = bars.iter().map(|(l, _)| l.clone()).collect();
    let lang = labels.lang;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| lang.number(*v))
        .x_desc(&labels.value_axis)
        .y_desc(&labels.category_axis)
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
pub fn series(path: &Path, labels: &Labels, points: &[(String, i64)]) -> Result<(), ChartError> {
    svg_path(path)?;
    if points.iter().all(|(_, v)| *v == 0) {
        return nothing_to_draw(path, labels);
    }
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let max = points.iter().map(|(_, v)| *v).max().unwrap_or(0).max(1);
    let n = points.len() as i32;
    let mut chart = ChartBuilder::on(&root)
        .caption(&labels.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(140)
        .build_cartesian_2d(0..n, 0i64..max + max / 10 + 1)
        .map_err(|e| err(path, e))?;
    let periods: Vec<String> = points.iter().map(|(l, _)| l.clone()).collect();
    let lang = labels.lang;
    chart
        .configure_mesh()
        .x_labels(points.len())
        .x_label_formatter(&|i| periods.get(*i as usize).cloned().unwrap_or_default())
        .y_label_formatter(&|v| lang.number(*v))
        .x_desc(&labels.category_axis)
        .y_desc(&labels.value_axis)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(lang: Lang) -> Labels {
        Labels {
            lang,
            title: lang
                .pick("Số mô hình được công nhận — Việt Nam, kỳ 2024", "Models recognised — Viet Nam, 2024")
                .into(),
            value_axis: lang.pick("Số mô hình được công nhận", "Models recognised").into(),
            category_axis: lang.pick("Đơn vị", "Unit").into(),
        }
    }

    #[test]
    fn a_ranking_is_titled_and_labelled_in_words_with_the_readers_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.svg");
        let bars = vec![("Tỉnh Quảng Ninh".to_owned(), 1_234_567), ("Tỉnh Bắc Ninh".to_owned(), 45)];
        ranking(&path, &labels(Lang::Vi), &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        for text in ["Số mô hình được công nhận — Việt Nam, kỳ 2024", "Đơn vị", "Tỉnh Quảng Ninh", "1.000.000"]
        {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(!svg.contains("Models") && !svg.contains("1,000,000"));
        ranking(&path, &labels(Lang::En), &bars).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("Models recognised — Viet Nam, 2024") && svg.contains("1,000,000"), "{svg}");
    }

    #[test]
    fn a_chart_with_nothing_to_draw_says_so_instead_of_empty_axes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z.svg");
        let zeros = vec![("Tỉnh Quảng Ninh".to_owned(), 0), ("Tỉnh Bắc Ninh".to_owned(), 0)];
        ranking(&path, &labels(Lang::Vi), &zeros).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("Không có số liệu cho kỳ này") && svg.contains("kỳ 2024"), "{svg}");
        assert!(!svg.contains("Tỉnh Quảng Ninh") && !svg.to_uppercase().contains("#1F77B4"), "{svg}");
        series(&path, &labels(Lang::En), &[]).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("No data for this period"));
    }
}
