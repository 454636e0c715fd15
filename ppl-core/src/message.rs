//! The message a site sends through the handler stack.
//!
//! Every primitive (`sample!`, `observe!`, `param!`, `factor!`, `deterministic!`) builds a
//! [`Message`] and hands it to [`Ctx::apply`](crate::ctx::Ctx::apply), which runs it
//! through the handlers as in NumPyro: each handler's `process` from the innermost
//! outwards (stopping early when a handler sets [`Message::stop`]), then the default
//! action (draw a sample, look up a parameter), then each `postprocess` from the
//! outermost handler that saw the message inwards.

use crate::constraints::Constraint;
use crate::distributions::DynDistribution;
use crate::error::PplError;
use crate::site::{SiteKind, SiteName};
use candle_core::Tensor;
use smallvec::SmallVec;
use std::fmt::Write;

/// One enclosing plate of a site: conditionally independent data along `dim`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlateFrame {
    /// The plate's name.
    pub name: SiteName,
    /// The batch dimension the plate occupies, counted from the right (`-1` is the
    /// rightmost batch dim).
    pub dim: isize,
    /// The full size `N` of the plate.
    pub size: usize,
    /// The number of elements in this run (`n = N` without subsampling).
    pub subsample_size: usize,
    /// No batch dim may lie left of this plate's (see
    /// [`PlateOpts::outermost`](crate::PlateOpts::outermost)).
    pub outermost: bool,
}

impl PlateFrame {
    /// The log-density scale `N / n` that subsampling introduces.
    pub fn scale(&self) -> f64 {
        self.size as f64 / self.subsample_size as f64
    }
}

/// The plates of a site, innermost last. Two inline entries cover almost every model.
pub type PlateStack = SmallVec<[PlateFrame; 2]>;

/// Formats ` in plate `data` (size 128)` (or `plates` for several), empty outside plates.
pub fn describe_plates(plates: &[PlateFrame]) -> String {
    let mut s = String::new();
    if plates.is_empty() {
        return s;
    }
    s.push_str(if plates.len() == 1 {
        " in plate "
    } else {
        " in plates "
    });
    for (k, p) in plates.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "`{}` (size {}", p.name, p.size);
        if p.subsample_size != p.size {
            let _ = write!(s, ", subsample {}", p.subsample_size);
        }
        s.push(')');
    }
    s
}

/// A site on its way through the handler stack.
#[derive(Debug, Clone)]
pub struct Message {
    /// The site name (handlers such as `Scope` may rewrite it).
    pub name: SiteName,
    /// What the site is.
    pub kind: SiteKind,
    /// The distribution (sample and factor sites; `None` for params and deterministic).
    pub dist: Option<DynDistribution>,
    /// The value: given for observed, factor and deterministic sites, set by handlers
    /// (condition, replay, substitute) or by the default action otherwise.
    pub value: Option<Tensor>,
    /// Whether the value is data (`observe!`, or conditioned by a handler).
    pub observed: bool,
    /// Multiplier of the site's log density (`Scale`, plate subsampling `N/n`).
    pub scale: f64,
    /// Elements whose log density counts (`Mask`); `None` means all.
    pub mask: Option<Tensor>,
    /// Enclosing plates, outermost first.
    pub plates: PlateStack,
    /// Set by a handler to hide the site from the handlers outside it (`Block`).
    pub stop: bool,
    /// Detach the sampled value from the autodiff graph (stop-gradient).
    pub detach: bool,
    /// The constraint of a param site (`Real` for others).
    pub constraint: Constraint,
    /// For a subsample site: the plate's `(size, subsample_size)`.
    pub subsample: Option<(usize, usize)>,
    /// An auxiliary latent of a guide (Pyro's `is_auxiliary`): part of `q`, absent from
    /// the model (e.g. the joint Gaussian of `AutoMultivariateNormal`).
    pub auxiliary: bool,
    /// An observed site turned into a latent draw by
    /// [`Uncondition`](crate::handlers::Uncondition) (NumPyro's `was_observed`).
    pub was_observed: bool,
}

impl Message {
    /// A message of the given kind with no value and neutral scale/mask.
    pub fn new(name: SiteName, kind: SiteKind, dist: Option<DynDistribution>) -> Self {
        Message {
            name,
            kind,
            dist,
            value: None,
            observed: false,
            scale: 1.0,
            mask: None,
            plates: SmallVec::new(),
            stop: false,
            detach: false,
            constraint: Constraint::Real,
            subsample: None,
            auxiliary: false,
            was_observed: false,
        }
    }

    /// Whether this is a latent sample site (sampled, not observed).
    pub fn is_latent(&self) -> bool {
        self.kind == SiteKind::Sample && !self.observed
    }

    /// A [`PplError::Site`] naming this site and its plates.
    pub fn error(&self, message: impl Into<String>) -> PplError {
        PplError::site(&self.name, describe_plates(&self.plates), message)
    }

    /// `source` raised at this site: a [`PplError::AtSite`] naming the site and its plates
    /// that keeps `source` matchable through [`PplError::root_cause`].
    pub fn error_from(&self, source: PplError) -> PplError {
        PplError::at_site(&self.name, describe_plates(&self.plates), source)
    }
}
