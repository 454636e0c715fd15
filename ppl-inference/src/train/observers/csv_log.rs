use crate::train::{Control, Observer, StepInfo, TrainReport};
use ppl_core::{PplError, Result};
use std::fmt::Write;
use std::path::PathBuf;

/// Logs `step,loss,average,lr,skipped` and one column per engine metric (e.g.
/// `wake_loss`, `ess`) per step; the file is written (atomically) at the end of the run.
/// A step that did not report a metric has an empty cell.
pub struct CsvLog {
    path: PathBuf,
    columns: Vec<String>,
    rows: Vec<(String, Vec<(usize, f64)>)>,
}

impl CsvLog {
    /// Logs to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CsvLog {
            path: path.into(),
            columns: Vec::new(),
            rows: Vec::new(),
        }
    }
}

impl Observer for CsvLog {
    fn on_step(&mut self, i: &StepInfo) -> Result<Control> {
        let fixed = format!("{},{},{},{},{}", i.step, i.loss, i.average, i.lr, i.skipped);
        let mut cells = Vec::with_capacity(i.metrics.len());
        for (name, v) in i.metrics.iter() {
            let col = match self.columns.iter().position(|c| c == name) {
                Some(c) => c,
                None => {
                    self.columns.push(name.to_string());
                    self.columns.len() - 1
                }
            };
            cells.push((col, v));
        }
        self.rows.push((fixed, cells));
        Ok(Control::Continue)
    }

    fn on_end(&mut self, _report: &TrainReport) -> Result<()> {
        let mut out = String::from("step,loss,average,lr,skipped");
        for c in &self.columns {
            out.push(',');
            out.push_str(c);
        }
        out.push('\n');
        let mut line = vec![String::new(); self.columns.len()];
        for (fixed, cells) in &self.rows {
            line.iter_mut().for_each(String::clear);
            for (c, v) in cells {
                let _ = write!(line[*c], "{v}");
            }
            out.push_str(fixed);
            for cell in &line {
                out.push(',');
                out.push_str(cell);
            }
            out.push('\n');
        }
        ppl_core::atomic_write(&self.path, out.as_bytes()).map_err(|e| {
            if e.is_file() {
                e
            } else {
                PplError::file(&self.path, e.to_string())
            }
        })
    }
}
