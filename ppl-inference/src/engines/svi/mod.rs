//! Stochastic variational inference: the [`Svi`] engine follows the gradient of a
//! variational [`Objective`] of a model and a guide.

mod baseline;
mod engine;
mod iwae;
mod objective;
mod trace_elbo;

pub use baseline::Baseline;
pub use engine::Svi;
pub use iwae::Iwae;
pub use objective::{Objective, ObjectiveOutput};
pub use trace_elbo::TraceElbo;
