//! Normalizing flows: learnable bijectors with forward-mode tangents.
//!
//! | file | what |
//! |---|---|
//! | `bijector.rs` | the [`Bijector`] contract (`to_data` sampling direction, `to_base` density direction, tangents, [`Fast`]) |
//! | `conditioner.rs` | [`Conditioner`], the MLP of coupling layers (with tangents); [`soft_clamp`] |

mod bijector;
mod conditioner;

pub use bijector::{Bijector, Fast};
pub use conditioner::{soft_clamp, soft_clamp_derivative, Activation, Conditioner};
