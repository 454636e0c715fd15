//! # ppl — probabilistic programming for Rust on candle tensors
//!
//! The facade crate: re-exports the workspace crates so programs can write
//! `use ppl::prelude::*`.
//!
//! A map: the names most programs use live at the root (`ppl::Ctx`, `ppl::Trainer`,
//! `ppl::Adam`, ...), one path each; names that are many live in namespaces:
//!
//! | namespace | contents | from |
//! |---|---|---|
//! | root | [`Ctx`], [`Trace`], [`ChoiceMap`], [`Model`], [`ParamStore`], [`PplRng`], [`PplError`]; [`Engine`], [`Trainer`], [`ParamGroup`], [`Adam`], [`Sgd`], schedules, checkpoints, [`Predictive`], [`log_likelihood`] | `ppl-core`, `ppl-inference` |
//! | [`distributions`] | the 25 families, wrappers, `kl_divergence` | `ppl-core` |
//! | [`handlers`] | effect handlers (trace, replay, condition, substitute, block, ...) | `ppl-core` |
//! | [`transforms`] | bijections onto constrained supports | `ppl-core` |
//! | [`flows`] | normalizing flows: [`flows::Bijector`], [`flows::RealNvp`], [`flows::FlowDistribution`] and their layers; [`flows::RectangularFlow`] (injective flows) | `ppl-core` |
//! | [`linalg`], [`special`], [`validation`] | differentiable linear algebra and special functions; the validation switch | `ppl-core` |
//! | [`engines`] | inference engines: [`engines::Svi`] with [`engines::TraceElbo`], [`engines::Iwae`]; [`engines::Ebm`] (energy-based models) with [`engines::EnergyModel`], [`engines::Grid`], [`engines::Refine`], [`engines::Inference`]; [`engines::WakeSleep`], [`engines::ReweightedWakeSleep`]; [`engines::KrrWakeSleep`] (amortised learning by kernel ridge regression); [`engines::Hybrid`] (flow + GLM hybrid models); [`engines::Rectangular`] (injective flows on learned manifolds) | `ppl-inference` |
//! | [`guides`] | autoguides | `ppl-inference` |
//! | [`observers`] | progress bar, CSV log, loss plot, early stopping | `ppl-inference` |
//! | [`model`](macro@model) | the `#[model]` attribute macro | `ppl-macros` |
//!
//! ## Writing a model
//!
//! A model is a function with the `#[model]` attribute. Inside it, primitives declare the
//! sites:
//!
//! | primitive | meaning |
//! |---|---|
//! | `let z = sample!(dist)` / `sample!("z", dist)` | a latent random choice (name from the `let` binding, or explicit) |
//! | `sample!("y", dist, obs = y)` | observed with `y: Option<&Tensor>` when `Some`, latent when `None` (an `Option<Tensor>` field of the latents struct, `Some` only when latent) |
//! | `observe!("x", dist, value)` | an observed random choice with data `value` |
//! | `input!("x", &data)` / `let x = input!(&data)` | data the model reads, as an input site (no density); returns it, or the replacement a `Condition`/`Substitute`/`Replay` handler gives (e.g. to run a guide on new data) |
//! | `let w = param!(init)` / `param!("w", init, constraint)` | a learnable tensor in the parameter store, kept in the support of `constraint` (default real) |
//! | `plate!("data", n, { ... })` | conditionally independent batch dim; options `subsample = m` (a `usize`, or an `Option<usize>` where `None` is the whole plate), `dim = -2`; `|idx| { ... }` binds the (sub)sample indices |
//! | `factor!("name", log_weight)` | adds an arbitrary log weight (an energy, a penalty) |
//! | `let y = deterministic!(value)` | records a value in the trace |
//! | `module!("path", \|vb\| build(vb))` | a candle-nn module whose weights live in the parameter store under `path` |
//! | `#[model]` on a method | `fn f(&self, args)` (or `&mut self`) becomes `fn f(&self, ctx: &mut Ctx, args)`; no latents struct (an `impl` cannot hold one; `#[model(latents)]` there is a compile error) |
//! | same name in exclusive branches | `if c { sample!("z", a) } else { sample!("z", b) }` (or `match` arms) is one site per run; the latents field is an `Option<Tensor>`; a name reused on one path is a compile error |
//!
//! A dynamic name such as `("x", i)` (no allocation) or `format!(...)` names sites in loops.
//! A literal name that would repeat is a compile error on the name: inside a `for`/`while`/
//! `loop` body, or inside a closure that an iterator method calls once per element
//! (`for_each`, `flat_map`, `filter_map`, `fold`, `try_for_each`, `any`, `find`, ...;
//! `map`/`filter`/`inspect` on a range, an array or an iterator-making call such as
//! `.iter()` or `.enumerate()`; `iter::repeat_with`, `from_fn`, `successors`). Closures run
//! at most once (`Option::map`, `bool::then`, a closure called once) may use literal names.
//! A repetition the macro cannot see (a closure stored in a variable and called in a loop,
//! `map` on an iterator held in a variable) fails at run time with
//! [`PplError::DuplicateSite`] naming the site.
//! The macro adds a `&mut Ctx` first parameter (declare `ctx: &mut Ctx` yourself to use the
//! context directly, e.g. to call a sub-model), and, for a free function, generates
//! `<Name>Latents`, a struct with one field per literal latent site: a `Tensor` for a site
//! that runs on every execution, an `Option<Tensor>` for one that appears only in some
//! branches or may be observed (`obs =`), `Some` when the traced site was latent.
//!
//! ```
//! use ppl::prelude::*;
//! use candle_core::{DType, Device, Tensor};
//!
//! #[model]
//! fn coin(flips: &Tensor) -> Result<Tensor> {
//!     let p = sample!(Beta::new(&Tensor::new(2f64, &Device::Cpu)?, &Tensor::new(2f64, &Device::Cpu)?)?);
//!     plate!("flips", flips.dim(0)?, {
//!         observe!("x", Bernoulli::from_probs(&p)?, flips);
//!     });
//!     Ok(p)
//! }
//!
//! # fn main() -> ppl::Result<()> {
//! let flips = Tensor::new(&[1f64, 1., 0., 1.], &Device::Cpu)?;
//! let mut ctx = Ctx::new(0);
//! let (_, trace) = ctx.trace(|ctx| coin(ctx, &flips))?;
//! let latents = CoinLatents::from_trace(&trace)?;
//! // log p(p, x) = log Beta(p; 2, 2) + 3 log p + log(1 - p)
//! let p = latents.p.to_scalar::<f64>()?;
//! let exact = (6.0 * p * (1.0 - p)).ln() + 3.0 * p.ln() + (1.0 - p).ln();
//! assert!((trace.log_joint()?.to_scalar::<f64>()? - exact).abs() < 1e-10);
//! # Ok(()) }
//! ```
//!
//! Everything also works without the macro: a model is any `Fn(&mut Ctx) -> Result<R>`
//! calling [`Ctx::sample`], [`Ctx::observe`], [`Ctx::plate`] and friends, or a type
//! implementing [`Model`].

// One path per public item: the names most programs use at the root, and a few
// namespaces where names are many.

// The model runtime.
pub use ppl_core::{
    assess, best_device, check_guide, device_from_name, generate, simulate, ChoiceMap, Constraint,
    Ctx, Message, Model, ParamStore, PlateFrame, PlateGuard, PlateOpts, PplError, PplRng, Result,
    Site, SiteKind, SiteName, Trace,
};
pub use ppl_macros::model;

// Inference: the engine contract, training, prediction.
pub use ppl_inference::{
    load_checkpoint, log_likelihood, save_checkpoint, save_npz, Adam, Constant, Control, Cosine,
    Engine, ExponentialDecay, LogWeights, Metrics, ModelInfo, Observer, Optimizer, ParamGroup,
    Particles, Predictive, Samples, Schedule, Sgd, StepInfo, StepOutput, TrainReport, Trainer,
};

// Namespaces.
pub use ppl_core::{
    distributions, flows, fused, handlers, linalg, nn, special, threads, transforms, validation,
};
pub use ppl_inference::{engines, guides, observers, plots};

/// Used by the code `#[model]` generates; not a stable API. The macro names nothing of
/// this crate outside this module, so the facade's public layout can change freely.
#[doc(hidden)]
pub mod __private {
    pub use candle_core::Tensor;
    pub use ppl_core::{ChoiceMap, Constraint, Ctx, ParamInit, PlateOpts, Result, SiteName, Trace};
}

/// A latent site: `let z = sample!(dist)` or `sample!(name, dist)`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! sample {
    ($($t:tt)*) => {
        ::core::compile_error!("`sample!` can only be used inside a `#[model]` function")
    };
}

/// An observed site: `observe!(name, dist, value)`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! observe {
    ($($t:tt)*) => {
        ::core::compile_error!("`observe!` can only be used inside a `#[model]` function")
    };
}

/// A learnable tensor: `param!(init)`, `param!(init, constraint)`, `param!(name, init[, constraint])`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! param {
    ($($t:tt)*) => {
        ::core::compile_error!("`param!` can only be used inside a `#[model]` function")
    };
}

/// Conditionally independent batch dims: `plate!(name, size [, subsample = m] [, dim = d], [|idx|] { ... })`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! plate {
    ($($t:tt)*) => {
        ::core::compile_error!("`plate!` can only be used inside a `#[model]` function")
    };
}

/// An arbitrary log-weight term: `factor!(name, log_weight)`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! factor {
    ($($t:tt)*) => {
        ::core::compile_error!("`factor!` can only be used inside a `#[model]` function")
    };
}

/// A recorded value: `let y = deterministic!(value)` or `deterministic!(name, value)`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! deterministic {
    ($($t:tt)*) => {
        ::core::compile_error!("`deterministic!` can only be used inside a `#[model]` function")
    };
}

/// A candle-nn module with weights in the parameter store: `module!(path, |vb| build(vb))`.
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! module {
    ($($t:tt)*) => {
        ::core::compile_error!("`module!` can only be used inside a `#[model]` function")
    };
}

/// An input site: `input!(name, data)` or `let x = input!(data)` (name from the binding).
///
/// Only valid inside a `#[model]` function, which rewrites it into a call on the model's
/// context; anywhere else it is a compile error.
#[macro_export]
macro_rules! input {
    ($($t:tt)*) => {
        ::core::compile_error!("`input!` can only be used inside a `#[model]` function")
    };
}

/// The README's code blocks, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Everything a model or an inference script usually needs.
pub mod prelude {
    pub use crate::engines::{
        Ebm, EnergyModel, Grid, Inference, Iwae, KrrOptions, KrrWakeSleep, Loss, Refine, Svi,
        TraceElbo,
    };
    pub use crate::{deterministic, factor, input, module, observe, param, plate, sample};
    pub use crate::{Adam, Engine, ParamGroup, Predictive, Sgd, Trainer};
    pub use ppl_core::prelude::*;
    pub use ppl_macros::model;
}
