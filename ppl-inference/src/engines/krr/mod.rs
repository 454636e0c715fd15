//! Amortised learning by wake-sleep with kernel ridge regression: the
//! [`KrrWakeSleep`] engine learns a model's parameters from the regression of
//! `log p_θ(x, z)` on sleep samples, with no posterior approximation.

mod engine;
mod learned;
mod options;
mod ridge;
mod solve;

pub use engine::{KrrEstimate, KrrWakeSleep};
pub use options::{FeatureMap, Features, KernelApprox, KrrOptions, LearnedFeatures, Tuning};
pub use ridge::{median_bandwidth, KernelRidge};
pub use solve::spd_solve;
