//! The library's error type. Every public function returns [`Result`].

use std::fmt;

/// Errors raised by `ppl-core`. Each variant names what went wrong precisely enough to act
/// on: the distribution family, the parameter, and the shapes or values involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PplError {
    /// A constructor argument violates its constraint (NaN, infinite, negative scale,
    /// probabilities outside `[0, 1]`, a non-simplex, ...).
    #[error("{family}: invalid parameter `{param}`: {reason}")]
    InvalidParameter {
        /// Distribution family, e.g. `"Normal"`.
        family: &'static str,
        /// Parameter name, e.g. `"scale"`.
        param: &'static str,
        /// What is wrong, with the offending index and value.
        reason: String,
    },
    /// Shapes that do not fit together (parameters that do not broadcast, a value whose
    /// shape does not match batch + event shape, an invalid `expand` or `to_event`).
    #[error("{family}: {message}")]
    Shape {
        /// Distribution family or operation.
        family: &'static str,
        /// Human-readable description naming the shapes.
        message: String,
    },
    /// A value passed to `log_prob` lies outside the distribution's support.
    #[error("{family}: value outside the support {support}: {detail}")]
    OutsideSupport {
        /// Distribution family.
        family: &'static str,
        /// The support, e.g. `positive`.
        support: String,
        /// Offending index and value.
        detail: String,
    },
    /// A quantity (mean, variance, entropy, ...) that has no closed form or is undefined.
    #[error("{family}: {quantity} {why}")]
    NotAvailable {
        /// Distribution family.
        family: &'static str,
        /// The quantity asked for.
        quantity: &'static str,
        /// Why it is not available.
        why: &'static str,
    },
    /// No analytic KL divergence is registered for this pair of families.
    #[error(
        "no analytic KL divergence between {p} and {q}; use a Monte-Carlo estimate \
         (E_p[log p - log q]) instead"
    )]
    NoAnalyticKl {
        /// Family of `p`.
        p: String,
        /// Family of `q`.
        q: String,
    },
    /// A linear-algebra failure (e.g. a matrix that is not positive definite).
    #[error("{op}: {reason}")]
    Linalg {
        /// The operation, e.g. `"cholesky"`.
        op: &'static str,
        /// What failed.
        reason: String,
    },
    /// An invalid setting of an engine, objective, optimiser, trainer or guide (a number
    /// of particles of 0, a learning rate that is not positive, an unknown parameter
    /// group, ...). Built with [`PplError::config`].
    #[error("{context}: invalid configuration: {message}")]
    InvalidConfig {
        /// The type or function whose setting is invalid, e.g. `"TraceElbo"`.
        context: &'static str,
        /// What is wrong, naming the value given.
        message: String,
    },
    /// An argument that is malformed in a way no other variant describes.
    #[error("{context}: {message}")]
    InvalidArgument {
        /// The function or setting that rejected the argument.
        context: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A problem at a named site of a model run: a distribution whose batch shape does not
    /// fit its plates, a value of the wrong shape, an invalid primitive argument. `plates`
    /// describes the enclosing plates (empty outside any plate).
    #[error("site `{site}`{plates}: {message}")]
    Site {
        /// The site name, e.g. `x` or `enc/z[3]`.
        site: String,
        /// ` in plate `data` (size 128)`, or empty.
        plates: String,
        /// What is wrong, naming the shapes.
        message: String,
    },
    /// An error raised while running or scoring a named site (a distribution's
    /// [`PplError::OutsideSupport`] or [`PplError::Shape`] when its `log_prob` or `sample`
    /// fails there), with the original error kept as the [`source`](std::error::Error::source):
    /// match on [`PplError::root_cause`] to find it. Built with [`PplError::at_site`].
    #[error("site `{site}`{plates}: {source}")]
    AtSite {
        /// The site name, e.g. `x` or `enc/z[3]`.
        site: String,
        /// ` in plate `data` (size 128)`, or empty.
        plates: String,
        /// The error raised at the site (dereferences to the [`PplError`]).
        #[source]
        source: Cause,
    },
    /// Two sample/observe/factor/deterministic sites with the same name in one run.
    #[error(
        "duplicate site name `{site}`: a site of this name already ran in this run, and \
         every site needs a unique name within one run (in a loop, or in a closure called \
         more than once such as `.map(|i| ...)`, use a dynamic name such as \
         (\"{site}\", i) or format!(\"{site}_{{i}}\"))"
    )]
    DuplicateSite {
        /// The repeated name.
        site: String,
    },
    /// A guide that does not fit its model (a missing or extra latent, a different shape
    /// or support), or choices that name no site.
    #[error("guide/model mismatch at site `{site}`: {reason}")]
    GuideMismatch {
        /// The site name.
        site: String,
        /// What differs, naming both shapes or supports.
        reason: String,
    },
    /// A parameter-store error: unknown parameter, shape or constraint mismatch, an initial
    /// value outside the constraint.
    #[error("parameter `{name}`: {reason}")]
    Param {
        /// The parameter path.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file that cannot be written or read, or whose contents are corrupt or do not match.
    #[error("{path}: {reason}")]
    File {
        /// The file path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A file that cannot be read or written, or whose contents cannot be decoded, with the
    /// underlying error (a `std::io::Error`, a safetensors or candle error) kept as the
    /// [`source`](std::error::Error::source). Built with [`PplError::file_io`];
    /// [`PplError::is_file`] is true for it and for [`PplError::File`].
    #[error("{path}: {reason}: {source}")]
    FileIo {
        /// The file path.
        path: String,
        /// What failed, e.g. `cannot read`.
        reason: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// Training produced too many non-finite losses in a row.
    #[error(
        "{count} non-finite losses in a row (last at step {step}); lower the learning rate, \
         check the model for NaN-producing parameters, or raise the limit"
    )]
    NonFiniteLoss {
        /// The step of the last non-finite loss.
        step: u64,
        /// How many in a row.
        count: usize,
    },
    /// Training produced too many steps in a row whose loss was finite but whose gradient
    /// was not (the parameters and optimiser state were left as they were at each).
    #[error(
        "{count} non-finite gradients in a row (last at step {step}, parameters {params:?}) \
         although the loss was finite; look for a square root, log or division at the edge \
         of a support, or clip the values that reach it"
    )]
    NonFiniteGradient {
        /// The step of the last non-finite gradient.
        step: u64,
        /// How many non-finite steps in a row.
        count: usize,
        /// The parameters whose gradient had a NaN or infinite entry at that step.
        params: Vec<String>,
    },
    /// A training run that diverged: a non-finite or unboundedly decreasing objective
    /// (e.g. an energy-based model whose free energy collapses to `−∞` on data and on
    /// contrastive samples alike). Built with [`PplError::diverged`].
    #[error("{context}: training diverged at step {step}: {reason}")]
    Diverged {
        /// The engine or function that stopped, e.g. `"Ebm"`.
        context: &'static str,
        /// The step (counted by the engine) at which it stopped.
        step: u64,
        /// What was observed, naming the values and the bound.
        reason: String,
    },
    /// An error raised by candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

impl PplError {
    /// A [`PplError::Site`] at site `site` (e.g. `x` or `enc/z[3]`), with `plates` the
    /// enclosing plates as [`describe_plates`](crate::message::describe_plates) writes them
    /// (empty outside any plate).
    pub fn site(
        site: impl ToString,
        plates: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PplError::Site {
            site: site.to_string(),
            plates: plates.into(),
            message: message.into(),
        }
    }

    /// A [`PplError::AtSite`]: `source`, raised at site `site` (with `plates` as for
    /// [`PplError::site`]), kept matchable through [`PplError::root_cause`].
    pub fn at_site(site: impl ToString, plates: impl Into<String>, source: PplError) -> Self {
        PplError::AtSite {
            site: site.to_string(),
            plates: plates.into(),
            source: Cause(Box::new(source)),
        }
    }

    /// The innermost error under any [`PplError::AtSite`] wrappers (the error itself when
    /// it wraps nothing): `matches!(e.root_cause(), PplError::OutsideSupport { .. })`.
    pub fn root_cause(&self) -> &PplError {
        let mut e = self;
        while let PplError::AtSite { source, .. } = e {
            e = &**source;
        }
        e
    }

    /// The site an error names ([`PplError::Site`], [`PplError::AtSite`],
    /// [`PplError::DuplicateSite`], [`PplError::GuideMismatch`]), if any.
    pub fn site_name(&self) -> Option<&str> {
        match self {
            PplError::Site { site, .. }
            | PplError::AtSite { site, .. }
            | PplError::DuplicateSite { site }
            | PplError::GuideMismatch { site, .. } => Some(site),
            _ => None,
        }
    }

    /// A [`PplError::File`] about `path`.
    pub fn file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        PplError::File {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// A [`PplError::FileIo`] about `path`: `reason` says what failed (e.g. `cannot read`),
    /// `source` is the underlying error (e.g. a `std::io::Error`), kept as the source.
    pub fn file_io(
        path: &std::path::Path,
        reason: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        PplError::FileIo {
            path: path.display().to_string(),
            reason: reason.into(),
            source: source.into(),
        }
    }

    /// Whether this is a file error ([`PplError::File`] or [`PplError::FileIo`]).
    pub fn is_file(&self) -> bool {
        matches!(self, PplError::File { .. } | PplError::FileIo { .. })
    }

    /// A [`PplError::Param`] about parameter `name`.
    pub fn param(name: impl ToString, reason: impl Into<String>) -> Self {
        PplError::Param {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`PplError::InvalidParameter`] of `family`'s parameter `param`.
    pub fn invalid_parameter(
        family: &'static str,
        param: &'static str,
        reason: impl Into<String>,
    ) -> Self {
        PplError::InvalidParameter {
            family,
            param,
            reason: reason.into(),
        }
    }

    /// An [`PplError::InvalidArgument`]: a malformed argument that is not a setting (use
    /// [`PplError::config`] for settings) and not tied to a site (use [`PplError::site`]).
    pub fn invalid_argument(context: &'static str, message: impl Into<String>) -> Self {
        PplError::InvalidArgument {
            context,
            message: message.into(),
        }
    }

    /// A [`PplError::GuideMismatch`] at site `site`.
    pub fn guide_mismatch(site: impl ToString, reason: impl Into<String>) -> Self {
        PplError::GuideMismatch {
            site: site.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`PplError::Diverged`]: `context` names the engine, `step` its step count,
    /// `reason` what diverged (with the values seen).
    pub fn diverged(context: &'static str, step: u64, reason: impl Into<String>) -> Self {
        PplError::Diverged {
            context,
            step,
            reason: reason.into(),
        }
    }

    /// An [`PplError::InvalidConfig`]: `context` names the type or function, `message`
    /// what is wrong with the value given.
    pub fn config(context: &'static str, message: impl Into<String>) -> Self {
        PplError::InvalidConfig {
            context,
            message: message.into(),
        }
    }
}

/// The boxed inner error of [`PplError::AtSite`]; dereferences to it. (A newtype rather
/// than `Box<PplError>` so that [`std::error::Error::source`] yields the [`PplError`]
/// itself, and `downcast_ref::<PplError>()` on it works.)
pub struct Cause(Box<PplError>);

impl Cause {
    /// The inner error.
    pub fn into_inner(self) -> PplError {
        *self.0
    }
}

impl std::ops::Deref for Cause {
    type Target = PplError;
    fn deref(&self) -> &PplError {
        &self.0
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

/// `Result` with [`PplError`].
pub type Result<T> = std::result::Result<T, PplError>;

/// Formats a shape as `[a, b, c]`.
pub(crate) struct ShapeFmt<'a>(pub &'a [usize]);

impl fmt::Display for ShapeFmt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

pub(crate) fn shape_err(family: &'static str, message: impl Into<String>) -> PplError {
    PplError::Shape {
        family,
        message: message.into(),
    }
}

pub(crate) fn not_available(
    family: &'static str,
    quantity: &'static str,
    why: &'static str,
) -> PplError {
    PplError::NotAvailable {
        family,
        quantity,
        why,
    }
}
