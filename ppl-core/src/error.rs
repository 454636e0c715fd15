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
    /// Two sample/observe/factor/deterministic sites with the same name in one run.
    #[error(
        "duplicate site name `{site}`: every site needs a unique name within one run \
         (in a loop use a dynamic name such as (\"{site}\", i))"
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

    /// A [`PplError::File`] about `path`.
    pub fn file(path: &std::path::Path, reason: impl Into<String>) -> Self {
        PplError::File {
            path: path.display().to_string(),
            reason: reason.into(),
        }
    }

    /// A [`PplError::GuideMismatch`] at site `site`.
    pub fn guide_mismatch(site: impl ToString, reason: impl Into<String>) -> Self {
        PplError::GuideMismatch {
            site: site.to_string(),
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
