/// Baselines for score-function terms.
///
/// Baselines for the score-function terms of [`TraceElbo`](super::TraceElbo).
///
/// A baseline `b_s` subtracted from the downstream cost of a non-reparameterised guide
/// site `s` leaves the gradient estimator unbiased, since `E_q[∇ log q(s)] = 0`, and
/// lowers its variance when `b_s` tracks the cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// No baseline (`b = 0`).
    None,
    /// Exponential moving average of the site's mean cost with decay `β ∈ [0, 1)`
    /// (saved in checkpoints with the engine's state).
    MovingAverage(f64),
    /// A scalar parameter `baseline/<site>` per site, trained jointly on `(c − b)²`.
    Learned,
}
