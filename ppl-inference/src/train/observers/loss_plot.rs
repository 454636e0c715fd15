use crate::plots::{line_chart, Panel, Series};
use crate::train::{Control, Observer, StepInfo, TrainReport};
use ppl_core::Result;
use std::path::PathBuf;

/// Draws, at the end of the run, the loss curve and its moving average in a top panel and
/// one panel per engine metric below it (wake and sleep losses, effective sample sizes,
/// solver iterations, ...), with title, axes, ticks and legends: a PNG for a path ending in
/// `.png`, an SVG otherwise. The y axes follow the bulk of each curve (see
/// [`crate::plots`]), so the large first losses do not hide the rest of the run.
pub struct LossPlot {
    path: PathBuf,
    avg: Vec<f64>,
}

impl LossPlot {
    /// Plots to `path` (`.png`, or SVG).
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
        if report.losses.is_empty() {
            return Ok(());
        }
        let mut panels = vec![
            Panel::new(format!("{} loss", report.engine), "step", "loss")
                .with_series(
                    Series::from_values("loss", &report.losses)
                        .color([170, 190, 220])
                        .width(1),
                )
                .with_series(
                    Series::from_values("moving average", &self.avg).color([31, 119, 180]),
                ),
        ];
        for (name, values) in &report.metrics {
            panels.push(
                Panel::new(name.replace('_', " "), "step", name.as_str())
                    .with_series(Series::from_values(name.as_str(), values).color([214, 39, 40])),
            );
        }
        line_chart(&self.path, &format!("{} training", report.engine), &panels)
    }
}
