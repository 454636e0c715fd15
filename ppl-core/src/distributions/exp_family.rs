//! The exponential-family form of a distribution.
//!
//! `p(x) = h(x) exp(⟨η, T(x)⟩ − A(η))`: natural parameters `η`, sufficient statistic
//! `T(x)`, log normaliser `A(η)` and base measure `h(x)`. Families that have this form
//! return it from [`Distribution::exponential_family`](super::Distribution::exponential_family);
//! the wake-sleep engine with kernel ridge regression regresses `η` on `x` and plugs in
//! `T(x)` exactly (the exponential-family split).

use crate::error::Result;
use candle_core::Tensor;

/// A distribution in exponential-family form, `p(x) = h(x) exp(⟨η, T(x)⟩ − A(η))`.
///
/// Shapes: `η` and `T(x)` carry one trailing *statistic* dim of size `S` (for a family
/// whose event has several elements, as [`Independent`](super::Independent), the event's
/// elements and their statistics are flattened into it), so
/// `log_prob(x) = Σ_s η[.., s] T(x)[.., s] − A + log h(x)` exactly.
///
/// | family | `η` | `T(x)` | `A(η)` | `log h(x)` |
/// |---|---|---|---|---|
/// | `Normal(μ, σ)` | `(μ/σ², −1/(2σ²))` | `(x, x²)` | `μ²/(2σ²) + ln σ` | `−½ ln 2π` |
/// | `Bernoulli(logits l)` | `l` | `x` | `softplus(l)` | `0` |
/// | `Poisson(λ)` | `ln λ` | `x` | `λ` | `−ln x!` |
/// | `Categorical(logits l)` | `l` | `one_hot(x)` | `logsumexp(l)` | `0` |
/// | `Gamma(α, β)` | `(α − 1, −β)` | `(ln x, x)` | `ln Γ(α) − α ln β` | `0` |
/// | `Beta(α, β)` | `(α − 1, β − 1)` | `(ln x, ln(1 − x))` | `ln B(α, β)` | `0` |
/// | `VonMises(μ, κ)` | `(κ cos μ, κ sin μ)` | `(cos x, sin x)` | `ln(2π I₀(κ))` | `0` |
/// | `Independent(base)` | base's, event and statistic dims flattened | same | summed over the event | summed |
pub trait ExponentialFamily {
    /// `η`, of shape `batch_shape + [S]`.
    fn natural_params(&self) -> Result<Tensor>;
    /// `T(x)` for a value `x` of shape `batch + event_shape` (any batch dims, so data of
    /// another batch size than the distribution's works): shape `batch + [S]`.
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor>;
    /// `A(η)`, of shape `batch_shape`.
    fn log_normalizer(&self) -> Result<Tensor>;
    /// `log h(x)` for a value `x` as in [`ExponentialFamily::sufficient_stat`]: shape
    /// `batch`.
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor>;
}

/// Stacks tensors of one shape along a new last dim.
pub(crate) fn stack_last(ts: &[Tensor]) -> Result<Tensor> {
    let rank = ts.first().map_or(0, |t| t.rank());
    Ok(Tensor::stack(ts, rank)?)
}
