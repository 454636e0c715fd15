//! # ppl-inference
//!
//! Inference engines of the `ppl` library. Work in progress (issue 4).
//!
//! | module | contents |
//! |---|---|
//! | [`engine`] | the [`Engine`](engine::Engine) trait: one step's differentiable loss |
//! | [`train`] | [`Trainer`](train::Trainer): the loop all engines share, with [`Observer`](train::Observer)s |
//! | [`observers`] | progress bar, CSV log, loss-curve SVG, early stopping |
//! | [`schedule`] | learning-rate schedules |
//! | [`optim`] | [`Adam`](optim::Adam) (AdamW) and [`Sgd`](optim::Sgd) with savable state |
//! | [`autoguide`] | guides built from the model's trace: [`AutoDelta`](autoguide::AutoDelta) (MAP) |
//! | [`checkpoint`] | atomic checkpoints: params, optimiser state, RNG state, step |
//! | [`trace_elbo`] | [`TraceElbo`](trace_elbo::TraceElbo): reparameterised + score-function ELBO with vectorised particles |
//! | [`svi`] | [`Svi`](svi::Svi): the SVI engine |
//! | [`iwae`] | importance weights of `K` vectorised particles and the IWAE bound |

#![warn(missing_docs)]

pub mod autoguide;
pub mod checkpoint;
pub mod engine;
pub mod iwae;
pub mod observers;
pub mod optim;
pub mod schedule;
pub mod svi;
pub mod trace_elbo;
pub mod train;

pub use engine::{Engine, StepLoss};
pub use svi::Svi;
pub use trace_elbo::{ElboOutput, TraceElbo};
pub use train::{Control, Observer, StepInfo, TrainReport, Trainer};
