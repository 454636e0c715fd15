//! # ppl-inference
//!
//! Inference engines of the `ppl` library: the engine interface, the shared training loop,
//! variational objectives, guides, optimisers, checkpoints and prediction.
//!
//! | module | contents |
//! |---|---|
//! | [`engine`] | the [`Engine`](engine::Engine) trait: one step's differentiable loss |
//! | [`train`] | [`Trainer`](train::Trainer): the loop all engines share, with [`Observer`](train::Observer)s |
//! | [`observers`] | progress bar, CSV log, loss-curve SVG, early stopping |
//! | [`schedule`] | learning-rate schedules |
//! | [`optim`] | [`Adam`](optim::Adam) (AdamW) and [`Sgd`](optim::Sgd) with savable state |
//! | [`autoguide`] | guides built from the model's trace: Delta (MAP), Normal, MVN, low-rank MVN, amortised MLP |
//! | [`checkpoint`] | atomic checkpoints: params, optimiser state, RNG state, step |
//! | [`objective`] | the [`Objective`](objective::Objective) trait: a surrogate loss and a bound |
//! | [`trace_elbo`] | [`TraceElbo`](trace_elbo::TraceElbo): reparameterised + score-function ELBO (baselines, Rao-Blackwellisation, analytic KL) |
//! | [`iwae`] | [`Iwae`](iwae::Iwae): IWAE, Rényi-α and DReG, per data point with local latents |
//! | [`particles`] | `K` particles vectorised in one run; reductions of site densities |
//! | [`plots`] | line charts (loss and metric panels, PNG or SVG) and image grids (samples, reconstructions) as PNG, with text from an embedded font |
//! | [`predictive`] | posterior predictive samples, per-point IWAE `log p(x_i)`, `.npz` export |
//! | [`svi`] | [`Svi`](svi::Svi): the SVI engine over any objective |

#![warn(missing_docs)]

pub mod autoguide;
pub mod checkpoint;
pub mod engine;
pub mod iwae;
pub mod objective;
pub mod observers;
pub mod optim;
pub mod particles;
pub mod plots;
pub mod predictive;
pub mod schedule;
pub mod svi;
pub mod trace_elbo;
pub mod train;

pub use engine::{Engine, StepLoss};
pub use iwae::Iwae;
pub use objective::{Objective, ObjectiveOutput};
pub use svi::Svi;
pub use trace_elbo::{Baseline, TraceElbo};
pub use train::{Control, Observer, StepInfo, TrainReport, Trainer};
