//! Importance-sampling plumbing every engine shares: vectorised particles
//! ([`Particles`]), guide→model tracing, the one-time probe of a model/guide pair
//! ([`ModelInfo`]: checks and the inferred plate nesting), log weights split into global
//! and per-data-point terms with plate-aware sums ([`LogWeights`], [`WeightBuilder`]) and
//! their effective sample size.

mod log_weights;
mod model_info;
mod particles;

pub use log_weights::{GuideLogQ, LogWeights, WeightBuilder, WeightParts};
pub use model_info::{plate_nesting, ModelInfo};
pub use particles::{log_mean_exp0, scalar, Particles, PARTICLES};
