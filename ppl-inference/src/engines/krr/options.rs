//! Settings of the [`KrrWakeSleep`](super::KrrWakeSleep) engine.

use candle_core::Tensor;
use ppl_core::{PplError, Result};
use std::sync::Arc;

/// How the kernel matrix is represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KernelApprox {
    /// The exact `N × N` Gaussian kernel, solved by Cholesky: `O(N³)` a step.
    #[default]
    Exact,
    /// `features` random Fourier features of the Gaussian kernel (Rahimi & Recht):
    /// ridge regression in feature space, `O(N F²)`.
    RandomFourier {
        /// The number of features `F ≥ 1`.
        features: usize,
    },
    /// Nyström approximation with `landmarks` sleep points drawn afresh each step:
    /// `O(N L²)`.
    Nystrom {
        /// The number of landmarks, `1 ≤ L ≤ N`.
        landmarks: usize,
    },
}

impl KernelApprox {
    pub(crate) fn validate(&self, n: usize) -> Result<()> {
        match *self {
            KernelApprox::Exact => Ok(()),
            KernelApprox::RandomFourier { features: 0 } => Err(PplError::config(
                "KernelApprox::RandomFourier",
                "the number of features must be at least 1",
            )),
            KernelApprox::RandomFourier { .. } => Ok(()),
            KernelApprox::Nystrom { landmarks } if landmarks == 0 || landmarks > n => {
                Err(PplError::config(
                    "KernelApprox::Nystrom",
                    format!("{landmarks} landmarks for {n} points: need 1 ≤ landmarks ≤ {n}"),
                ))
            }
            KernelApprox::Nystrom { .. } => Ok(()),
        }
    }
}

/// A fixed feature map `φ` applied to the rows `[n, d]` of the observed data before the
/// kernel: `[n, d] → [n, d']`.
pub type FeatureMap = Arc<dyn Fn(&Tensor) -> Result<Tensor> + Send + Sync>;

/// What the Gaussian kernel compares.
#[derive(Clone, Default)]
pub enum Features {
    /// The observed values themselves, flattened per data point and concatenated over the
    /// observed sites of the data plate.
    #[default]
    Raw,
    /// `φ(x)` for a fixed map (e.g. a pretrained encoder, or summary statistics).
    Map(FeatureMap),
    /// `φ_ψ(x)` for a small network whose weights `ψ` are learned with the bandwidth and
    /// `λ` on the validation sleep set (needs [`KrrOptions::tuning`]).
    Learned(LearnedFeatures),
}

/// A learned feature map for the kernel: a tanh MLP on standardised `x` whose weights, the
/// bandwidth multiple and `λ` minimise the validation error of the ridge regression by
/// Adam, differentiating through the exact solve (see the engine's doc). The weights are
/// engine state (saved in checkpoints), not model parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LearnedFeatures {
    /// Hidden widths (default `[32]`).
    pub hidden: Vec<usize>,
    /// The feature dimension (default 8).
    pub out: usize,
    /// Adam iterations per tuning round (default 50).
    pub steps: usize,
    /// Adam's learning rate (default `0.01`).
    pub lr: f64,
}

impl Default for LearnedFeatures {
    fn default() -> Self {
        LearnedFeatures {
            hidden: vec![32],
            out: 8,
            steps: 50,
            lr: 0.01,
        }
    }
}

impl std::fmt::Debug for Features {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Features::Raw => f.write_str("Raw"),
            Features::Map(_) => f.write_str("Map(<fn>)"),
            Features::Learned(l) => f.debug_tuple("Learned").field(l).finish(),
        }
    }
}

/// Learning the bandwidth and `λ` on a fresh validation sleep set (see the engine's doc).
#[derive(Debug, Clone, PartialEq)]
pub struct Tuning {
    /// Tune on the first step and then every `every` steps (`≥ 1`).
    pub every: usize,
    /// The size of the validation sleep set (`≥ 2`).
    pub validation: usize,
    /// At most this many of the step's sleep points are the regression's training set
    /// while tuning (`≥ 2`; an `O(n³)` eigendecomposition per bandwidth).
    pub max_train: usize,
    /// Bandwidths on the grid, as multiples of the median heuristic (positive).
    pub bandwidth_multipliers: Vec<f64>,
    /// Values of `λ` on the grid (positive).
    pub lambdas: Vec<f64>,
}

impl Default for Tuning {
    /// Every 25 steps; 500 validation and at most 500 training points; multipliers
    /// `0.25 … 4` (5 values, ×2 apart); `λ = 10⁻⁶ … 1` (7 values, ×10 apart).
    fn default() -> Self {
        Tuning {
            every: 25,
            validation: 500,
            max_train: 500,
            bandwidth_multipliers: vec![0.25, 0.5, 1.0, 2.0, 4.0],
            lambdas: (0..7).map(|i| 10f64.powi(i - 6)).collect(),
        }
    }
}

/// Options of [`KrrWakeSleep`](super::KrrWakeSleep); build with the chainable setters
/// from [`KrrOptions::default`].
#[derive(Debug, Clone)]
pub struct KrrOptions {
    /// Sleep samples `N` per step (default 1000).
    pub sleep_samples: usize,
    /// Wake points per step: `None` (default) uses all the data, `Some(m)` a random
    /// subset of `m` rows drawn each step.
    pub wake_batch: Option<usize>,
    /// The ridge `λ` until tuning picks one (default `1e-3`).
    pub lambda: f64,
    /// The bandwidth as a multiple of the median heuristic until tuning picks one
    /// (default 1).
    pub bandwidth_multiplier: f64,
    /// Bandwidth and `λ` learning; `None` keeps them fixed (default `Some(Tuning::default())`).
    pub tuning: Option<Tuning>,
    /// Exact kernel or a scalable approximation (default exact).
    pub approx: KernelApprox,
    /// What the kernel compares (default the raw observed values).
    pub features: Features,
    /// Use the exponential-family split where the observed sites allow it (default on).
    pub exp_family_split: bool,
}

impl Default for KrrOptions {
    fn default() -> Self {
        KrrOptions {
            sleep_samples: 1000,
            wake_batch: None,
            lambda: 1e-3,
            bandwidth_multiplier: 1.0,
            tuning: Some(Tuning::default()),
            approx: KernelApprox::Exact,
            features: Features::Raw,
            exp_family_split: true,
        }
    }
}

impl KrrOptions {
    /// Sets [`KrrOptions::sleep_samples`].
    pub fn sleep_samples(mut self, n: usize) -> Self {
        self.sleep_samples = n;
        self
    }
    /// Sets [`KrrOptions::wake_batch`].
    pub fn wake_batch(mut self, m: usize) -> Self {
        self.wake_batch = Some(m);
        self
    }
    /// Sets [`KrrOptions::lambda`].
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = lambda;
        self
    }
    /// Sets [`KrrOptions::bandwidth_multiplier`].
    pub fn bandwidth_multiplier(mut self, m: f64) -> Self {
        self.bandwidth_multiplier = m;
        self
    }
    /// Sets [`KrrOptions::tuning`] (`None`: fixed bandwidth and `λ`).
    pub fn tuning(mut self, tuning: Option<Tuning>) -> Self {
        self.tuning = tuning;
        self
    }
    /// Sets [`KrrOptions::approx`].
    pub fn approx(mut self, approx: KernelApprox) -> Self {
        self.approx = approx;
        self
    }
    /// Sets [`KrrOptions::features`] to a fixed map `φ`.
    pub fn features(
        mut self,
        map: impl Fn(&Tensor) -> Result<Tensor> + Send + Sync + 'static,
    ) -> Self {
        self.features = Features::Map(Arc::new(map));
        self
    }
    /// Sets [`KrrOptions::features`] to a learned map (see [`LearnedFeatures`]).
    pub fn learned_features(mut self, learned: LearnedFeatures) -> Self {
        self.features = Features::Learned(learned);
        self
    }
    /// Sets [`KrrOptions::exp_family_split`].
    pub fn exp_family_split(mut self, on: bool) -> Self {
        self.exp_family_split = on;
        self
    }

    /// Checks every setting; a typed error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |what: &str, msg: String| Err(PplError::config("KrrOptions", format!("{what}: {msg}")));
        if self.sleep_samples < 2 {
            return bad(
                "sleep_samples",
                format!("need at least 2, got {}", self.sleep_samples),
            );
        }
        if self.wake_batch == Some(0) {
            return bad("wake_batch", "must be at least 1".into());
        }
        if !(self.lambda > 0.0 && self.lambda.is_finite()) {
            return bad(
                "lambda",
                format!("must be positive and finite, got {}", self.lambda),
            );
        }
        if !(self.bandwidth_multiplier > 0.0 && self.bandwidth_multiplier.is_finite()) {
            return bad(
                "bandwidth_multiplier",
                format!(
                    "must be positive and finite, got {}",
                    self.bandwidth_multiplier
                ),
            );
        }
        self.approx.validate(self.sleep_samples)?;
        if let Features::Learned(l) = &self.features {
            if self.tuning.is_none() {
                return bad(
                    "features",
                    "learned features are fitted on the validation sleep set: set `tuning`".into(),
                );
            }
            if l.out == 0 || l.hidden.contains(&0) {
                return bad(
                    "features",
                    format!(
                        "learned feature widths must be positive (hidden {:?}, out {})",
                        l.hidden, l.out
                    ),
                );
            }
            if !(l.lr > 0.0 && l.lr.is_finite()) {
                return bad(
                    "features",
                    format!(
                        "learned features need a positive learning rate, got {}",
                        l.lr
                    ),
                );
            }
        }
        if let Some(t) = &self.tuning {
            if t.every == 0 {
                return bad("tuning.every", "must be at least 1".into());
            }
            if t.validation < 2 || t.max_train < 2 {
                return bad(
                    "tuning",
                    "validation and max_train must be at least 2".into(),
                );
            }
            let ok = |v: &[f64]| !v.is_empty() && v.iter().all(|x| *x > 0.0 && x.is_finite());
            if !ok(&t.bandwidth_multipliers) || !ok(&t.lambdas) {
                return bad(
                    "tuning",
                    "the bandwidth multipliers and λ grid must be non-empty, positive and finite"
                        .into(),
                );
            }
        }
        Ok(())
    }
}
