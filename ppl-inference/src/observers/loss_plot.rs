use crate::train::{Control, Observer, StepInfo, TrainReport};
use plotters::prelude::*;
use ppl_core::error::{PplError, Result};
use std::path::PathBuf;

/// Draws the loss curve and its moving average as an SVG at the end of the run.
pub struct LossPlot {
    path: PathBuf,
    avg: Vec<f64>,
}

impl LossPlot {
    /// Plots to `path` (SVG).
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
        let root = SVGBackend::new(&self.path, (800, 480)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{} loss", report.engine), ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..losses.len() as f64, (lo - pad)..(hi + pad))
            .map_err(|e| err(e.to_string()))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                losses.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                RGBColor(170, 190, 220),
            ))
            .map_err(|e| err(e.to_string()))?;
        chart
            .draw_series(LineSeries::new(
                self.avg.iter().enumerate().map(|(i, v)| (i as f64, *v)),
                BLUE,
            ))
            .map_err(|e| err(e.to_string()))?;
        root.present().map_err(|e| err(e.to_string()))
    }
}
