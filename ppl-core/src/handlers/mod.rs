//! Effect handlers: one short type per file, all implementing the tiny [`Handler`] trait.
//!
//! The semantics follow NumPyro. A primitive builds a [`Message`]; the context runs
//! `process` of each active handler from the innermost outwards (a handler that sets
//! `msg.stop` hides the site from the handlers outside it), then the default action
//! (sample from the distribution, read the parameter store), then `postprocess` from the
//! outermost handler that saw the message inwards. Handlers are pushed with
//! [`Ctx::handle`](crate::ctx::Ctx::handle), which returns the handler afterwards:
//!
//! ```
//! use ppl_core::prelude::*;
//! use ppl_core::handlers::{Condition, Scale};
//! use candle_core::{DType, Device, Tensor};
//! # fn main() -> ppl_core::Result<()> {
//! let model = |ctx: &mut Ctx| ctx.sample("z", Normal::standard(&[], DType::F64, &Device::Cpu)?);
//! let data = ChoiceMap::new().with("z", Tensor::new(0.5f64, &Device::Cpu)?);
//! let mut ctx = Ctx::new(0);
//! // trace(scale(condition(model))): z is observed at 0.5 and its log density doubled
//! let (_, trace) = ctx.trace(|ctx| {
//!     Ok(ctx.handle(Scale::new(2.0)?, |ctx| Ok(ctx.handle(Condition::new(data), model)?.0))?.0)
//! })?;
//! let lp = trace.log_joint()?.to_scalar::<f64>()?;
//! let exact = 2.0 * (-0.5f64 * 0.25 - 0.5 * (2.0 * std::f64::consts::PI).ln());
//! assert!((lp - exact).abs() < 1e-12);
//! # Ok(()) }
//! ```
//!
//! | handler | effect |
//! |---|---|
//! | [`TraceHandler`] | records every site into a [`Trace`](crate::trace::Trace) |
//! | [`Replay`] | reuses a trace's latents, subsample indices and inputs |
//! | [`Condition`] | observes latents at given values; replaces named inputs |
//! | [`Substitute`] | replaces latent, param (and named input) values without observing them |
//! | [`Uncondition`] | samples observed sites as latents (joint draws `(z, x) ~ p`, wake-sleep) |
//! | [`Block`] | hides sites from the handlers outside it |
//! | [`Scale`], [`Mask`] | multiply / mask log densities |
//! | [`Scope`] | prefixes site names |
//! | [`Seed`] | a seeded generator for the sites inside |
//! | [`StopGradient`] | detaches latent samples |
//! | [`Plate`] | the handler behind `Ctx::plate_enter` |
//!
//! A user-defined handler implements [`Handler`] (both methods have no-op defaults).

mod block;
mod condition;
mod mask;
mod plate;
mod replay;
mod scale;
mod scope;
mod seed;
mod stop_gradient;
mod substitute;
mod trace;
mod uncondition;

pub use block::Block;
pub use condition::Condition;
pub use mask::Mask;
pub use plate::Plate;
pub use replay::Replay;
pub use scale::Scale;
pub use scope::Scope;
pub use seed::Seed;
pub use stop_gradient::StopGradient;
pub use substitute::Substitute;
pub use trace::TraceHandler;
pub use uncondition::Uncondition;

use crate::error::Result;
use crate::message::{Message, PlateFrame};
use crate::rng::PplRng;
use std::any::Any;

/// An effect handler. See the [module docs](self).
pub trait Handler: Any + Send {
    /// Called on the way out (innermost handler first), before the default action.
    fn process(&mut self, _msg: &mut Message) -> Result<()> {
        Ok(())
    }

    /// Called after the default action (outermost handler first).
    fn postprocess(&mut self, _msg: &mut Message) -> Result<()> {
        Ok(())
    }

    /// A handler that supplies randomness (like [`Seed`]) returns its generator.
    fn rng(&mut self) -> Option<&mut PplRng> {
        None
    }

    /// A plate handler returns its frame, so new plates can pick a free dim.
    fn plate_frame(&self) -> Option<&PlateFrame> {
        None
    }
}

/// A predicate selecting sites, used by [`Block`], [`StopGradient`] and others.
pub type SiteFilter = Box<dyn Fn(&Message) -> bool + Send>;
