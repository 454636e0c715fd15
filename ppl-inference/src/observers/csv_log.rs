use crate::train::{Control, Observer, StepInfo, TrainReport};
use ppl_core::error::{PplError, Result};
use std::fmt::Write;
use std::path::PathBuf;

/// Logs `step,loss,average,lr,skipped` per step; the file is written (atomically) at the
/// end of the run.
pub struct CsvLog {
    path: PathBuf,
    rows: String,
}

impl CsvLog {
    /// Logs to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLog {
            path: path.into(),
            rows: String::from("step,loss,average,lr,skipped\n"),
        }
    }
}

impl Observer for CsvLog {
    fn on_step(&mut self, i: &StepInfo) -> Result<Control> {
        let _ = writeln!(
            self.rows,
            "{},{},{},{},{}",
            i.step, i.loss, i.average, i.lr, i.skipped
        );
        Ok(Control::Continue)
    }

    fn on_end(&mut self, _report: &TrainReport) -> Result<()> {
        ppl_core::params::atomic_write(&self.path, self.rows.as_bytes()).map_err(|e| match e {
            PplError::File { .. } => e,
            other => PplError::File {
                path: self.path.display().to_string(),
                reason: other.to_string(),
            },
        })
    }
}
