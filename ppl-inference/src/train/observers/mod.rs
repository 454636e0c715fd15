//! Built-in [`Observer`](crate::train::Observer)s, one per file.

mod csv_log;
mod early_stopping;
mod loss_plot;
mod progress;

pub use csv_log::CsvLog;
pub use early_stopping::EarlyStopping;
pub use loss_plot::LossPlot;
pub use progress::Progress;
