//! Constraints: the supports of distributions and the domains of parameters.
//!
//! A [`Constraint`] describes a set of values. Distributions report theirs through
//! `Distribution::support`; validation uses [`Constraint::first_violation`] to find the
//! first element outside it; later, transforms map unconstrained reals onto it.

use crate::error::Result;
use crate::tensor::host_f64;
use candle_core::Tensor;
use std::f64::consts::PI;

/// A set of values: a distribution's support or a parameter's domain.
#[derive(Debug, Clone)]
pub enum Constraint {
    /// All reals (NaN excluded; ±∞ allowed as limits).
    Real,
    /// `x > 0`.
    Positive,
    /// `x >= 0`.
    NonNegative,
    /// `x > lower`.
    GreaterThan(f64),
    /// `lower <= x <= upper`.
    Interval(f64, f64),
    /// `[0, 1]`.
    UnitInterval,
    /// `{0, 1}`.
    Boolean,
    /// `{0, 1, 2, ...}`.
    NonNegativeInteger,
    /// `{low, ..., high}`.
    IntegerInterval(i64, i64),
    /// Angles in `[-π, π]`.
    Circular,
    /// Vectors (last dimension) of reals.
    RealVector,
    /// Vectors (last dimension) with non-negative entries summing to 1.
    Simplex,
    /// Vectors (last dimension) with one entry 1 and the rest 0.
    OneHot,
    /// Square matrices (last two dimensions), lower-triangular with positive diagonal.
    LowerCholesky,
    /// The same set as [`Constraint::LowerCholesky`], for a *parameter* stored as a positive
    /// diagonal scale times a unit lower-triangular matrix
    /// ([`ScaledUnitLowerCholeskyTransform`](crate::transforms::ScaledUnitLowerCholeskyTransform)):
    /// its off-diagonal entries are learned relative to their row's scale.
    ScaledUnitLowerCholesky,
    /// `low <= x < high` with element-wise tensor bounds (e.g. `Uniform`'s support).
    TensorInterval {
        /// Lower bound, broadcastable to the value.
        low: Tensor,
        /// Upper bound, broadcastable to the value.
        high: Tensor,
    },
    /// `{0, 1, ..., high}` with an element-wise tensor bound (e.g. `Binomial`'s support).
    TensorIntegerInterval {
        /// Upper bound, broadcastable to the value.
        high: Tensor,
    },
    /// A base constraint whose rightmost `n` batch dimensions are treated as event dims.
    Independent(Box<Constraint>, usize),
}

impl Constraint {
    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Constraint::Real => "real (not NaN)".into(),
            Constraint::Positive => "positive".into(),
            Constraint::NonNegative => "non-negative".into(),
            Constraint::GreaterThan(l) => format!("greater than {l}"),
            Constraint::Interval(l, h) => format!("in [{l}, {h}]"),
            Constraint::UnitInterval => "in [0, 1]".into(),
            Constraint::Boolean => "0 or 1".into(),
            Constraint::NonNegativeInteger => "a non-negative integer".into(),
            Constraint::IntegerInterval(l, h) => format!("an integer in {{{l}, ..., {h}}}"),
            Constraint::Circular => "an angle in [-pi, pi]".into(),
            Constraint::RealVector => "a real vector".into(),
            Constraint::Simplex => {
                "on the simplex (non-negative, summing to 1 over the last dimension)".into()
            }
            Constraint::OneHot => "one-hot over the last dimension".into(),
            Constraint::LowerCholesky => {
                "lower-triangular with a positive diagonal (last two dimensions)".into()
            }
            Constraint::ScaledUnitLowerCholesky => "lower-triangular with a positive diagonal \
                 (last two dimensions), stored as scale × unit lower-triangular"
                .into(),
            Constraint::TensorInterval { .. } => "in [low, high)".into(),
            Constraint::TensorIntegerInterval { .. } => {
                "an integer in {0, ..., total_count}".into()
            }
            Constraint::Independent(c, _) => c.describe(),
        }
    }

    /// Whether values are discrete.
    pub fn is_discrete(&self) -> bool {
        match self {
            Constraint::Boolean
            | Constraint::NonNegativeInteger
            | Constraint::IntegerInterval(..)
            | Constraint::OneHot
            | Constraint::TensorIntegerInterval { .. } => true,
            Constraint::Independent(c, _) => c.is_discrete(),
            _ => false,
        }
    }

    /// The first element (flat row-major index and value) of `values` (a tensor of shape
    /// `shape`, read to the host) that lies outside the set; `None` when all are inside.
    pub fn first_violation(&self, values: &[f64], shape: &[usize]) -> Result<Option<(usize, f64)>> {
        let scalar = |ok: &dyn Fn(f64) -> bool| values.iter().position(|&x| !ok(x));
        let found = match self {
            Constraint::Real => scalar(&|x| !x.is_nan()),
            Constraint::Positive => scalar(&|x| x > 0.0),
            Constraint::NonNegative => scalar(&|x| x >= 0.0),
            Constraint::GreaterThan(l) => scalar(&|x| x > *l),
            Constraint::Interval(l, h) => scalar(&|x| x >= *l && x <= *h),
            Constraint::UnitInterval => scalar(&|x| (0.0..=1.0).contains(&x)),
            Constraint::Boolean => scalar(&|x| x == 0.0 || x == 1.0),
            Constraint::NonNegativeInteger => scalar(&|x| x >= 0.0 && x.fract() == 0.0),
            Constraint::IntegerInterval(l, h) => {
                scalar(&|x| x.fract() == 0.0 && x >= *l as f64 && x <= *h as f64)
            }
            Constraint::Circular => scalar(&|x| (-PI - 1e-6..=PI + 1e-6).contains(&x)),
            Constraint::RealVector => scalar(&|x| !x.is_nan()),
            Constraint::Simplex => rows(values, shape, 1, |row| {
                let k = row.len() as f64;
                let tol = 1e-5f64.max(k * 2e-7);
                if let Some(j) = row.iter().position(|&x| x.is_nan() || x < 0.0) {
                    return Some(j);
                }
                let s: f64 = row.iter().sum();
                ((s - 1.0).abs() > tol).then_some(0)
            }),
            Constraint::OneHot => rows(values, shape, 1, |row| {
                if let Some(j) = row.iter().position(|&x| x != 0.0 && x != 1.0) {
                    return Some(j);
                }
                (row.iter().sum::<f64>() != 1.0).then_some(0)
            }),
            Constraint::LowerCholesky | Constraint::ScaledUnitLowerCholesky => {
                let d = shape.last().copied().unwrap_or(0);
                rows(values, shape, 2, |m| {
                    if m.len() != d * d {
                        return Some(0);
                    }
                    for i in 0..d {
                        if m[i * d + i].is_nan() || m[i * d + i] <= 0.0 {
                            return Some(i * d + i);
                        }
                        for j in i + 1..d {
                            if m[i * d + j] != 0.0 {
                                return Some(i * d + j);
                            }
                        }
                    }
                    None
                })
            }
            Constraint::TensorInterval { low, high } => {
                let lo = host_f64(&low.broadcast_as(shape)?)?;
                let hi = host_f64(&high.broadcast_as(shape)?)?;
                (0..values.len()).find(|&i| !(values[i] >= lo[i] && values[i] < hi[i]))
            }
            Constraint::TensorIntegerInterval { high } => {
                let hi = host_f64(&high.broadcast_as(shape)?)?;
                (0..values.len()).find(|&i| {
                    let x = values[i];
                    !(x >= 0.0 && x <= hi[i] && x.fract() == 0.0)
                })
            }
            Constraint::Independent(c, _) => return c.first_violation(values, shape),
        };
        Ok(found.map(|i| (i, values[i])))
    }
}

/// Applies `check` to each block of the rightmost `event_dims` dims; returns the flat index
/// of the first offending element.
fn rows(
    values: &[f64],
    shape: &[usize],
    event_dims: usize,
    check: impl Fn(&[f64]) -> Option<usize>,
) -> Option<usize> {
    if shape.len() < event_dims {
        return Some(0);
    }
    let block: usize = shape[shape.len() - event_dims..].iter().product();
    if block == 0 {
        return None;
    }
    values
        .chunks(block)
        .enumerate()
        .find_map(|(r, row)| check(row).map(|j| r * block + j))
}
