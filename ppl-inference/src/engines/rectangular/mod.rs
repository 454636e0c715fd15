//! Injective flows trained by maximum likelihood on a manifold (rectangular flows).
//!
//! | file | what |
//! |---|---|
//! | `engine.rs` | [`Rectangular`] (the engine), [`RectangularOptions`], [`evaluate_injective`] and [`RectangularEval`] (exact densities) |
//! | `estimator.rs` | [`VolumeEstimator`] (exact, Hutchinson + CG, free-form, none), [`Probe`], [`volume_term`] |
//! | `gram.rs` | [`jacobian`] from forward-mode tangents, [`log_det_gram`], [`log_det_spd`] (Cholesky with jitter) |
//! | `logdet.rs` | (private) batched `log det` of small SPD matrices as a candle custom op (faer Cholesky forward, `A⁻¹` backward) |
//! | `cg.rs` | [`conjugate_gradients`] from matrix-vector products, [`CgInfo`] |
//! | `vjp.rs` | (private) vector-Jacobian products by backward through a fresh graph |

mod cg;
mod engine;
mod estimator;
mod gram;
mod logdet;
mod vjp;

pub use cg::{conjugate_gradients, CgInfo};
pub use engine::{evaluate_injective, Rectangular, RectangularEval, RectangularOptions};
pub use estimator::{volume_term, Probe, VolumeEstimator, VolumeTerm};
pub use gram::{jacobian, log_det_gram, log_det_spd};
