use super::head::GlmHead;
use crate::engine::{Engine, Metrics, StepOutput};
use candle_core::{Tensor, D};
use ppl_core::flows::Bijector;
use ppl_core::{Ctx, PplError, Result};

const CONTEXT: &str = "Hybrid";

/// Options of [`Hybrid`].
#[derive(Debug, Clone, PartialEq)]
pub struct HybridOptions {
    /// The weight `λ ≥ 0` of `log p(x)` (default 1: the joint likelihood; 0: a purely
    /// discriminative invertible network).
    pub lambda: f64,
    /// Labelled points per step (default: all).
    pub batch_size: Option<usize>,
    /// Unlabelled points per step (default: all).
    pub unlabelled_batch: Option<usize>,
}

impl Default for HybridOptions {
    fn default() -> Self {
        HybridOptions {
            lambda: 1.0,
            batch_size: None,
            unlabelled_batch: None,
        }
    }
}

impl HybridOptions {
    /// Sets [`HybridOptions::lambda`].
    pub fn lambda(mut self, lambda: f64) -> Self {
        self.lambda = lambda;
        self
    }
    /// Sets [`HybridOptions::batch_size`].
    pub fn batch_size(mut self, b: usize) -> Self {
        self.batch_size = Some(b);
        self
    }
    /// Sets [`HybridOptions::unlabelled_batch`].
    pub fn unlabelled_batch(mut self, b: usize) -> Self {
        self.unlabelled_batch = Some(b);
        self
    }

    fn validate(&self) -> Result<()> {
        if !(self.lambda >= 0.0 && self.lambda.is_finite()) {
            return Err(PplError::config(
                CONTEXT,
                format!("`lambda` must be finite and ≥ 0, got {}", self.lambda),
            ));
        }
        for (name, b) in [
            ("batch_size", self.batch_size),
            ("unlabelled_batch", self.unlabelled_batch),
        ] {
            if b == Some(0) {
                return Err(PplError::config(CONTEXT, format!("`{name}` must be ≥ 1")));
            }
        }
        Ok(())
    }
}

/// `log p(x)` `[B]` of rows `x` `[B, D]` under a flow onto a standard normal base:
/// `log N(f(x); 0, I) + log |det ∂f/∂x|` (`f` = [`Bijector::to_base`]).
pub fn log_px(flow: &dyn Bijector, x: &Tensor) -> Result<Tensor> {
    Ok(density(flow, x)?.1)
}

/// `(z, log p(x))` for rows `x` `[B, D]`.
fn density(flow: &dyn Bijector, x: &Tensor) -> Result<(Tensor, Tensor)> {
    let d = flow.dim();
    if x.rank() != 2 || x.dim(1)? != d {
        return Err(PplError::invalid_argument(
            CONTEXT,
            format!(
                "inputs must be [B, {d}] for a flow of dimension {d}, got {:?}",
                x.dims()
            ),
        ));
    }
    let (z, ladj) = flow.to_base(x, None)?;
    let log_pz =
        ((z.sqr()?.sum(D::Minus1)? * -0.5)? - 0.5 * d as f64 * (2.0 * std::f64::consts::PI).ln())?;
    Ok((z, (log_pz + ladj)?))
}

/// Per-point `log p(y | x)` and `log p(x)` of a hybrid model on some data.
#[derive(Debug, Clone)]
pub struct HybridEval {
    /// `log p(y_i | f(x_i))` `[N]`.
    pub log_py: Tensor,
    /// `log p(x_i)` `[N]`.
    pub log_px: Tensor,
    /// The features `z_i = f(x_i)` `[N, D]`.
    pub features: Tensor,
}

/// A hybrid model with deep invertible features (DIGLM; Nalisnick, Matsukawa, Teh, Gorur &
/// Lakshminarayanan, *Hybrid Models with Deep and Invertible Features*, ICML 2019).
///
/// **The model.** A normalizing flow `z = f_φ(x)` ([`Bijector::to_base`]) onto a standard
/// normal base gives the exact density `log p(x) = log N(f(x); 0, I) + log |det ∂f/∂x|`,
/// and a generalised linear model on the same features ([`GlmHead`]: linear-Gaussian,
/// softmax, logistic) gives `p(y | x) = p(y | f(x); β)`. Both share `φ`; the joint is
/// `p(y, x) = p(y | f(x)) p(x)`, computed exactly in one pass.
///
/// **The objective.** Per labelled point `log p(y | f(x)) + λ log p(x)`; per unlabelled
/// point `λ log p(x)` (semi-supervised). `λ = 1` is the joint likelihood; `λ = 0` a
/// purely discriminative invertible network, whose `p(x)` is then whatever the
/// classifier's features make it. With `N_l` labelled and `N_u` unlabelled points
/// (`N = N_l + N_u`), the loss is the negated dataset objective divided by `N`, estimated
/// without bias from minibatches:
/// `loss = −[(N_l/N) mean_l(log p(y|x) + λ log p(x)) + λ (N_u/N) mean_u log p(x)]`.
///
/// **Using the density.** [`Hybrid::evaluate`] returns per-point `log p(y | x)` and
/// `log p(x)`; thresholding `log p(x)` flags out-of-distribution inputs
/// ([`auroc`](super::auroc)) and supports selective prediction
/// ([`selective_accuracy`](super::selective_accuracy)). For regression with calibrated
/// uncertainty, fit a [`BayesianLinear`](super::BayesianLinear) head on the trained
/// features (closed-form predictive variance).
///
/// The flow's and head's weights live in the context's parameter store (build them with
/// [`Ctx::module`]), so the [`Trainer`](crate::Trainer) optimises them like any parameter.
pub struct Hybrid<'a> {
    flow: &'a dyn Bijector,
    head: &'a dyn GlmHead,
    x: Tensor,
    y: Tensor,
    unlabelled: Option<Tensor>,
    opts: HybridOptions,
}

impl<'a> Hybrid<'a> {
    /// A hybrid model of labelled data `x` `[N, D]`, `y` (leading dim `N`, the head's
    /// layout) with flow `flow` and head `head`.
    pub fn new(
        flow: &'a dyn Bijector,
        head: &'a dyn GlmHead,
        x: &Tensor,
        y: &Tensor,
        opts: HybridOptions,
    ) -> Self {
        Hybrid {
            flow,
            head,
            x: x.clone(),
            y: y.clone(),
            unlabelled: None,
            opts,
        }
    }

    /// Adds unlabelled inputs `[M, D]` (semi-supervised: they contribute `λ log p(x)`).
    pub fn with_unlabelled(mut self, x: &Tensor) -> Self {
        self.unlabelled = Some(x.clone());
        self
    }

    /// Per-point `log p(y | x)`, `log p(x)` and features on data `x`, `y`.
    pub fn evaluate(&self, x: &Tensor, y: &Tensor) -> Result<HybridEval> {
        let (z, log_px) = density(self.flow, x)?;
        let log_py = self.head.log_prob(&z, y)?;
        Ok(HybridEval {
            log_py,
            log_px,
            features: z,
        })
    }

    /// The objective's pieces on one minibatch: `(loss, mean log p(y|x), mean log p(x),
    /// mean log p(x) unlabelled)`.
    fn objective(&self, ctx: &mut Ctx) -> Result<(Tensor, f64, f64, Option<f64>)> {
        let n_l = self.x.dim(0)?;
        let n_u = self.unlabelled.as_ref().map_or(Ok(0), |u| u.dim(0))?;
        let total = (n_l + n_u) as f64;
        let lambda = self.opts.lambda;
        let (xb, yb) = match self.opts.batch_size {
            Some(b) if b < n_l => {
                let idx = batch(ctx, n_l, b, self.x.device())?;
                (self.x.index_select(&idx, 0)?, self.y.index_select(&idx, 0)?)
            }
            _ => (self.x.clone(), self.y.clone()),
        };
        let eval = self.evaluate(&xb, &yb)?;
        let labelled = (&eval.log_py + (&eval.log_px * lambda)?)?.mean_all()?;
        let mut obj = (labelled * (n_l as f64 / total))?;
        let mut unl = None;
        if let Some(u) = &self.unlabelled {
            let ub = match self.opts.unlabelled_batch {
                Some(b) if b < n_u => u.index_select(&batch(ctx, n_u, b, u.device())?, 0)?,
                _ => u.clone(),
            };
            let lpu = log_px(self.flow, &ub)?.mean_all()?;
            unl = Some(lpu.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?);
            obj = (obj + (lpu * (lambda * n_u as f64 / total))?)?;
        }
        let mean = |t: &Tensor| -> Result<f64> {
            Ok(t.mean_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?)
        };
        Ok((obj.neg()?, mean(&eval.log_py)?, mean(&eval.log_px)?, unl))
    }
}

/// `b` distinct indices below `n` from the context's generator, as a u32 tensor.
fn batch(ctx: &mut Ctx, n: usize, b: usize, device: &candle_core::Device) -> Result<Tensor> {
    let mut idx = ctx.rng().permutation(n);
    idx.truncate(b);
    let idx: Vec<u32> = idx.into_iter().map(|i| i as u32).collect();
    Ok(Tensor::from_vec(idx, b, device)?)
}

impl Engine for Hybrid<'_> {
    fn name(&self) -> &str {
        "hybrid/diglm"
    }

    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        self.opts.validate()?;
        let d = self.flow.dim();
        let n = match self.x.dims() {
            [n, dx] if *dx == d && *n > 0 => *n,
            dims => {
                return Err(PplError::config(
                    CONTEXT,
                    format!("labelled inputs must be [N ≥ 1, {d}] for a flow of dimension {d}, got {dims:?}"),
                ))
            }
        };
        if self.y.rank() == 0 || self.y.dim(0)? != n {
            return Err(PplError::config(
                CONTEXT,
                format!(
                    "targets {:?} must have leading dim {n} (the inputs' rows)",
                    self.y.dims()
                ),
            ));
        }
        if self.head.in_dim() != d {
            return Err(PplError::config(
                CONTEXT,
                format!(
                    "the head takes {} features but the flow has dimension {d}",
                    self.head.in_dim()
                ),
            ));
        }
        if let Some(u) = &self.unlabelled {
            if u.rank() != 2 || u.dim(1)? != d {
                return Err(PplError::config(
                    CONTEXT,
                    format!("unlabelled inputs must be [M, {d}], got {:?}", u.dims()),
                ));
            }
        }
        Ok(())
    }

    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let (loss, log_py, log_px, unl) = self.objective(ctx)?;
        let value = loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?;
        let mut metrics = Metrics::new();
        metrics.insert("log_py", log_py);
        metrics.insert("log_px", log_px);
        if let Some(u) = unl {
            metrics.insert("log_px_unlabelled", u);
        }
        Ok(StepOutput {
            loss,
            value,
            metrics,
        })
    }
}
