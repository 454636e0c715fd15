//! Learning-rate schedules. The trainer checks every rate a schedule yields (finite and
//! positive) and saves its step count in checkpoints, so a resumed run continues the
//! schedule where it stopped.

use ppl_core::error::{PplError, Result};

/// The learning rate at each step (0-based).
pub trait Schedule {
    /// Learning rate for `step`.
    fn lr(&self, step: u64) -> f64;
}

/// A constant learning rate.
#[derive(Debug, Clone, Copy)]
pub struct Constant(pub f64);

impl Constant {
    /// A constant rate `lr`, which must be finite and positive.
    pub fn new(lr: f64) -> Result<Self> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::config(
                "learning rate",
                format!("must be finite and positive, got {lr}"),
            ));
        }
        Ok(Constant(lr))
    }
}

impl Schedule for Constant {
    fn lr(&self, _step: u64) -> f64 {
        self.0
    }
}

/// `lr₀ · γ^step` (γ ∈ (0, 1]).
#[derive(Debug, Clone, Copy)]
pub struct ExponentialDecay {
    /// Initial learning rate.
    pub lr0: f64,
    /// Decay per step.
    pub gamma: f64,
}

impl Schedule for ExponentialDecay {
    fn lr(&self, step: u64) -> f64 {
        self.lr0 * self.gamma.powf(step as f64)
    }
}

/// Cosine annealing from `lr0` to `min` over `steps`, then `min`.
#[derive(Debug, Clone, Copy)]
pub struct Cosine {
    /// Initial learning rate.
    pub lr0: f64,
    /// Final learning rate.
    pub min: f64,
    /// Length of the annealing.
    pub steps: u64,
}

impl Schedule for Cosine {
    fn lr(&self, step: u64) -> f64 {
        let t = (step.min(self.steps) as f64) / self.steps.max(1) as f64;
        self.min + 0.5 * (self.lr0 - self.min) * (1.0 + (std::f64::consts::PI * t).cos())
    }
}
