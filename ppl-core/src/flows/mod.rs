//! Normalizing flows: learnable bijectors with forward-mode tangents.
//!
//! | file | what |
//! |---|---|
//! | `bijector.rs` | the [`Bijector`] contract (`to_data` sampling direction, `to_base` density direction, tangents, [`Fast`]) |
//! | `conditioner.rs` | [`Conditioner`], the MLP of coupling layers (with tangents); [`soft_clamp`] |
//! | `compose.rs` | [`Flow`] (a sequence of layers) and [`Inverse`] (directions swapped: MAF ↔ IAF); `Arc<B>` is a bijector |
//! | `coupling.rs` | [`AffineCoupling`] (Real NVP affine coupling, binary mask) and its [`CouplingOptions`] |
//! | `actnorm.rs` | [`ActNorm`] (per-dimension affine, data-dependent init saved with the parameters) |
//! | `lu.rs` | [`LuLinear`] (invertible linear `W = P L U`) |
//! | `permute.rs` | [`Permutation`] (fixed or seeded), [`Reverse`] |
//! | `transform.rs` | [`BijectorTransform`]: a flow as a [`crate::transforms::Transform`] |
//! | `distribution.rs` | [`FlowDistribution`]: a base distribution pushed through a flow (usable at any sample site) |
//! | `realnvp.rs` | [`RealNvp::build`]: alternating-mask coupling stacks with [`Mixing`] and optional ActNorm |
//! | `shape.rs` | crate-private shape checks and index helpers |

mod actnorm;
mod bijector;
mod compose;
mod conditioner;
mod coupling;
mod distribution;
mod lu;
mod permute;
mod realnvp;
mod shape;
mod transform;

pub use actnorm::ActNorm;
pub use bijector::{Bijector, Fast};
pub use compose::{Flow, Inverse};
pub use conditioner::{soft_clamp, soft_clamp_derivative, Activation, Conditioner};
pub use coupling::{AffineCoupling, CouplingOptions};
pub use distribution::FlowDistribution;
pub use lu::LuLinear;
pub use permute::{Permutation, Reverse};
pub use realnvp::{Mixing, RealNvp, RealNvpOptions};
pub use transform::BijectorTransform;
