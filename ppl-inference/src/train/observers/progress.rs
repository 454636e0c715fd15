use crate::train::{Control, Observer, StepInfo, TrainReport};
use indicatif::{ProgressBar, ProgressStyle};
use ppl_core::error::Result;

/// An indicatif progress bar showing the step, the loss, its moving average, the learning
/// rate and the engine's metrics (drawn on stderr; hidden when stderr is not a terminal).
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar for a run of `steps` steps.
    pub fn new(steps: u64) -> Self {
        let bar = ProgressBar::new(steps);
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {pos}/{len} [{elapsed}<{eta}] {msg}")
        {
            bar.set_style(style);
        }
        Progress { bar }
    }
}

impl Observer for Progress {
    fn on_step(&mut self, info: &StepInfo) -> Result<Control> {
        self.bar.set_position(info.step + 1);
        if info.step % 10 == 0 {
            let mut msg = format!(
                "loss {:.4} avg {:.4} lr {:.2e}",
                info.loss, info.average, info.lr
            );
            for (name, v) in info.metrics.iter() {
                msg.push_str(&format!(" {name} {v:.4}"));
            }
            if info.skipped > 0 {
                msg.push_str(&format!(" skipped {}", info.skipped));
            }
            self.bar.set_message(msg);
        }
        Ok(Control::Continue)
    }

    fn on_end(&mut self, _report: &TrainReport) -> Result<()> {
        self.bar.finish_and_clear();
        Ok(())
    }
}
