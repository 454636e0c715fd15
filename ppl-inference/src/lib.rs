//! # ppl-inference
//!
//! Inference engines of the `ppl` library and the plumbing they share. A map:
//!
//! | where | what |
//! |---|---|
//! | [`Engine`] (`engine.rs`) | the engine contract: `init` once, then `step` → loss, reported value, named [`Metrics`]; `state` for checkpoints |
//! | [`engines`] (`engines/<name>/`) | one folder per engine: `svi/` ([`engines::Svi`] over an [`engines::Objective`]: Trace ELBO with baselines, IWAE/Rényi/DReG), `ebm/` ([`engines::Ebm`]: latent-variable energy-based models, [`engines::EnergyModel`] inference by grid, gradient refinement or sampling), `wake_sleep/` ([`engines::WakeSleep`], [`engines::ReweightedWakeSleep`]), `krr/` ([`engines::KrrWakeSleep`]: amortised learning by kernel ridge regression on sleep samples), `hybrid/` ([`engines::Hybrid`]: a flow's exact `log p(x)` with a GLM head on its features). No engine imports another |
//! | `importance/` | [`Particles`] (vectorised, guide→model tracing), [`ModelInfo`] (the one-time probe: checks, inferred plate nesting), [`LogWeights`] and [`WeightBuilder`] (per-point weights, plate-aware sums, effective sample size) |
//! | [`guides`] (`guides/`) | autoguides built from the model's trace: Delta (MAP), Normal, MVN, low-rank MVN, amortised MLP |
//! | `train/` | [`Trainer`] (the loop every engine shares), [`ParamGroup`]s with an [`Optimizer`] ([`Adam`], [`Sgd`]) and a [`Schedule`] each, [`save_checkpoint`]/[`load_checkpoint`], [`observers`] |
//! | `predictive.rs` | [`Predictive`] samples, per-point [`log_likelihood`], [`save_npz`] |
//! | [`plots`] (`plots.rs`) | line charts (loss and metric panels, PNG or SVG) and image grids, with text from an embedded font |

#![warn(missing_docs)]

mod engine;
pub mod engines;
pub mod guides;
mod importance;
pub mod plots;
mod predictive;
mod train;

pub use engine::{Engine, Metrics, StepOutput};
pub use importance::{
    log_mean_exp0, plate_nesting, GuideLogQ, LogWeights, ModelInfo, Particles, WeightBuilder,
    WeightParts, PARTICLES,
};
pub use predictive::{log_likelihood, save_npz, Predictive, Samples};
pub use train::observers;
pub use train::{
    load_checkpoint, save_checkpoint, Adam, Constant, Control, Cosine, ExponentialDecay, Observer,
    Optimizer, ParamGroup, Schedule, Sgd, StepInfo, TrainReport, Trainer,
};
