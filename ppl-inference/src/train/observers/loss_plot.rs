use crate::train::{Control, Observer, StepInfo, TrainReport};
use plotters::prelude::*;
use ppl_core::error::{PplError, Result};
use std::path::PathBuf;

/// Draws the loss curve and its moving average at the end of the run: an SVG with caption
/// and axis labels, or, for a path ending in `.png`, a PNG (plotters' bitmap backend has no
/// fonts without system libraries, so the PNG shows the curves and grid lines only).
pub struct LossPlot {
    path: PathBuf,
    avg: Vec<f64>,
}

impl LossPlot {
    /// Plots to `path` (`.svg`, or `.png`).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LossPlot {
            path: path.into(),
            avg: Vec::new(),
        }
    }
}

impl Observer for LossPlot {
    fn on_step(&mut self, info: &StepInfo) -> Result<Control> {
        self.avg.push(info.average);
        Ok(Control::Continue)
    }

    fn on_end(&mut self, report: &TrainReport) -> Result<()> {
        let err = |e: String| PplError::File {
            path: self.path.display().to_string(),
            reason: e,
        };
        let losses = &report.losses;
        if losses.is_empty() {
            return Ok(());
        }
        let lo = losses.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = losses.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-9);
        let png = self
            .path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("png"));
        let ranges = (0f64..losses.len() as f64, (lo - pad)..(hi + pad));
        let (caption, avg) = (format!("{} loss", report.engine), &self.avg);
        let r = if png {
            let root = BitMapBackend::new(&self.path, (800, 480)).into_drawing_area();
            draw(root, None, ranges, losses, avg)
        } else {
            let root = SVGBackend::new(&self.path, (800, 480)).into_drawing_area();
            draw(root, Some(&caption), ranges, losses, avg)
        };
        r.map_err(err)
    }
}

/// Draws both curves; `caption` (and axis labels) only where the backend can render text.
fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    caption: Option<&str>,
    ranges: (std::ops::Range<f64>, std::ops::Range<f64>),
    losses: &[f64],
    avg: &[f64],
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(10);
    if let Some(c) = caption {
        builder
            .caption(c, ("sans-serif", 20))
            .x_label_area_size(30)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(ranges.0, ranges.1).map_err(e)?;
    if caption.is_some() {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(e)?;
    }
    chart
        .draw_series(LineSeries::new(
            losses.iter().enumerate().map(|(i, v)| (i as f64, *v)),
            RGBColor(170, 190, 220),
        ))
        .map_err(e)?;
    chart
        .draw_series(LineSeries::new(
            avg.iter().enumerate().map(|(i, v)| (i as f64, *v)),
            BLUE,
        ))
        .map_err(e)?;
    root.present().map_err(e)
}
