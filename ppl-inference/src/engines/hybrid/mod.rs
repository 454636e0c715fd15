//! Hybrid models with deep invertible features (DIGLM, Nalisnick et al. 2019): a
//! normalizing flow `z = f(x)` gives exact `log p(x)`, and a generalised linear model on
//! `z` gives `p(y | x)`; [`Hybrid`] trains both with `log p(y | x) + λ log p(x)`.
//!
//! | file | what |
//! |---|---|
//! | `engine.rs` | [`Hybrid`] (the engine), [`HybridOptions`], [`log_px`], [`HybridEval`] |
//! | `head.rs` | the [`GlmHead`] contract: `log p(y \| z)` per row |
//! | `linear_gaussian.rs` | [`LinearGaussian`]: `y ~ N(zW + b, σ²)` |
//! | `softmax.rs` | [`Softmax`] (K classes) and [`Logistic`] (binary) heads |
//! | `bayes_linear.rs` | [`BayesianLinear`]: the conjugate posterior of a linear head on fixed features, closed-form predictive variance |
//! | `ood.rs` | [`auroc`] and [`selective_accuracy`]: out-of-distribution detection and selective prediction by `log p(x)` |

mod bayes_linear;
mod engine;
mod head;
mod linear_gaussian;
mod ood;
mod softmax;

pub use bayes_linear::BayesianLinear;
pub use engine::{log_px, Hybrid, HybridEval, HybridOptions};
pub use head::GlmHead;
pub use linear_gaussian::LinearGaussian;
pub use ood::{auroc, selective_accuracy};
pub use softmax::{Logistic, Softmax};
