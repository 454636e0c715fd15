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
//! | `shapes.rs` | (private) event and tangent checks, broadcasting of inputs, contexts and tangents with layer-named errors, index helpers |
//! | `made.rs` | [`Made`], the masked autoregressive MLP (MADE) with tangents |
//! | `dual.rs` | (private) dual numbers on tensors: values with tangents, for the spline's JVPs |
//! | `spline.rs` | [`rational_quadratic_spline`] and [`SplineCoupling`] (Neural Spline Flows) |
//! | `autoregressive.rs` | [`MaskedAffineAutoregressive`]: MAF and IAF ([`AutoregressiveMode`]) |
//! | `planar.rs` | [`Planar`] flow (inverse by a 1-D root solve) |
//! | `radial.rs` | [`Radial`] flow (closed-form inverse along the radius) |
//! | `elementwise.rs` | [`ElementwiseSpline`]: an unconditional rational-quadratic spline per dimension (1-D flows) |
//! | `injective.rs` | [`Injective`] maps `R^d → R^D` with a left inverse, and [`RectangularFlow`] (a padded square flow, optional latent flow) |

mod actnorm;
mod autoregressive;
pub(crate) mod bijector;
mod compose;
mod conditioner;
mod coupling;
mod distribution;
mod dual;
mod elementwise;
mod injective;
mod lu;
mod made;
mod permute;
mod planar;
mod radial;
mod realnvp;
mod shapes;
mod spline;
mod transform;

pub use actnorm::ActNorm;
pub use autoregressive::{AutoregressiveMode, MaskedAffineAutoregressive, DEFAULT_SCALE_BOUND};
pub use bijector::{Bijector, Fast};
pub use compose::{Flow, Inverse};
pub use conditioner::{soft_clamp, soft_clamp_derivative, Activation, Conditioner};
pub use coupling::{AffineCoupling, CouplingOptions};
pub use distribution::FlowDistribution;
pub use elementwise::ElementwiseSpline;
pub use injective::{Injective, RectangularFlow};
pub use lu::LuLinear;
pub use made::Made;
pub use permute::{Permutation, Reverse};
pub use planar::Planar;
pub use radial::Radial;
pub use realnvp::{Mixing, RealNvp, RealNvpOptions};
pub use spline::{
    rational_quadratic_spline, spline_params_per_dim, SplineCoupling, SPLINE_MIN_BIN_HEIGHT,
    SPLINE_MIN_BIN_WIDTH, SPLINE_MIN_DERIVATIVE,
};
pub use transform::BijectorTransform;
