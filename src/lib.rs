//! # ppl — probabilistic programming for Rust on candle tensors
//!
//! The facade crate: re-exports the workspace crates so programs can write
//! `use ppl::prelude::*`.
//!
//! | crate | re-exported as | contents |
//! |---|---|---|
//! | `ppl-core` | [`core`], [`distributions`], [`rng`], ... | distributions, RNG, special functions, constraints, errors |
//! | `ppl-macros` | (issue 3) | the `#[model]` attribute macro |
//! | `ppl-inference` | (issue 4) | inference engines |
//!
//! ```
//! use ppl::prelude::*;
//! use candle_core::{DType, Device};
//! # fn main() -> ppl::Result<()> {
//! let mut rng = PplRng::seed_from_u64(0);
//! let d = Normal::standard(&[2], DType::F32, &Device::Cpu)?.to_event(1)?;
//! let x = d.sample(&mut rng, &[4])?;
//! assert_eq!(d.log_prob(&x)?.dims(), &[4]);
//! # Ok(()) }
//! ```

pub use ppl_core as core;
pub use ppl_core::{constraints, device, distributions, linalg, rng, special, validation};
pub use ppl_core::{PplError, Result};

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Everything a model or an inference script usually needs.
pub mod prelude {
    pub use ppl_core::prelude::*;
}
