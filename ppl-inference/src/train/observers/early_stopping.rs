use crate::train::{Control, Observer, StepInfo};
use ppl_core::error::Result;

/// Stops when the moving-average loss has not improved by more than `min_delta` for
/// `patience` steps (a plateau).
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    patience: u64,
    min_delta: f64,
    best: f64,
    since: u64,
}

impl EarlyStopping {
    /// Plateau detection with the given patience and minimum improvement.
    pub fn new(patience: u64, min_delta: f64) -> Self {
        EarlyStopping {
            patience,
            min_delta,
            best: f64::INFINITY,
            since: 0,
        }
    }
}

impl Observer for EarlyStopping {
    fn on_step(&mut self, info: &StepInfo) -> Result<Control> {
        if info.average < self.best - self.min_delta {
            self.best = info.average;
            self.since = 0;
        } else {
            self.since += 1;
        }
        Ok(if self.since >= self.patience {
            Control::Stop
        } else {
            Control::Continue
        })
    }
}
