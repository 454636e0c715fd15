//! Normalizing flows: learnable bijectors with forward-mode tangents.
//!
//! | file | what |
//! |---|---|
//! | `bijector.rs` | the [`Bijector`] contract (`to_data` sampling direction, `to_base` density direction, tangents, [`Fast`]) |
//! | `conditioner.rs` | [`Conditioner`], the MLP of coupling layers (with tangents); [`soft_clamp`] |
//! | `shapes.rs` | (private) broadcasting of inputs, contexts and tangents, with layer-named errors |
//! | `made.rs` | [`Made`], the masked autoregressive MLP (MADE) with tangents |
//! | `dual.rs` | (private) dual numbers on tensors: values with tangents, for the spline's JVPs |
//! | `spline.rs` | [`rational_quadratic_spline`] and [`SplineCoupling`] (Neural Spline Flows) |
//! | `autoregressive.rs` | [`MaskedAffineAutoregressive`]: MAF and IAF ([`AutoregressiveMode`]) |
//! | `planar.rs` | [`Planar`] flow (inverse by a 1-D root solve) |
//! | `radial.rs` | [`Radial`] flow (closed-form inverse along the radius) |

mod autoregressive;
mod bijector;
mod conditioner;
mod dual;
mod made;
mod planar;
mod radial;
mod shapes;
mod spline;

pub use autoregressive::{AutoregressiveMode, MaskedAffineAutoregressive, DEFAULT_SCALE_BOUND};
pub use bijector::{Bijector, Fast};
pub use conditioner::{soft_clamp, soft_clamp_derivative, Activation, Conditioner};
pub use made::Made;
pub use planar::Planar;
pub use radial::Radial;
pub use spline::{
    rational_quadratic_spline, spline_params_per_dim, SplineCoupling, SPLINE_MIN_BIN_HEIGHT,
    SPLINE_MIN_BIN_WIDTH, SPLINE_MIN_DERIVATIVE,
};
