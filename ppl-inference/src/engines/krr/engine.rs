use super::learned::FeatureNet;
use super::options::{Features, KrrOptions};
use super::ridge::{grid_search, median_host, to_host, to_tensor, HostMat, KernelRidge};
use crate::engine::{Engine, Metrics, StepOutput};
use crate::guides::AutoAmortized;
use crate::importance::ModelInfo;
use candle_core::{DType, Device, Tensor};
use faer::Mat;
use ppl_core::handlers::{Condition, Replay, StopGradient, Uncondition};
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result, SiteKind, SiteName, Trace};
use std::collections::HashMap;

const CONTEXT: &str = "KrrWakeSleep";

/// A sleep-phase loss for a recognition model: `(ctx, detached sleep trace) → loss`.
type SleepGuide<'a> = Box<dyn Fn(&mut Ctx, &Trace) -> Result<Tensor> + 'a>;

/// What `init` learns from one run of the model on its data.
#[derive(Debug, Clone)]
struct Setup {
    /// Size of the data plate on the data.
    n: usize,
    /// Input sites whose leading dim is the data plate: `(name, trailing dims, dtype, device)`.
    inputs: Vec<(SiteName, Vec<usize>, DType, Device)>,
    /// The observed sites inside the data plate (the regression's `x`), in trace order.
    observed: Vec<SiteName>,
    /// The observed data, one row per point `[n, D]`.
    x_data: Tensor,
    /// The observed sites with an exponential-family likelihood (split), in order.
    split: Vec<SiteName>,
    /// `T(x)` of the split sites on the data `[n, F]` and `Σ log h(x)` `[n]`.
    t_data: Option<(Tensor, Tensor)>,
}

/// The outcome of one KRR estimate (what [`KrrWakeSleep::estimate`] returns).
#[derive(Debug, Clone)]
pub struct KrrEstimate {
    /// The wake loss `−mean_m f̂_θ(x_m)` up to terms constant in `θ`; its gradient is the
    /// KRR estimate of `−∇θ mean_m log p_θ(x_m)`.
    pub loss: Tensor,
    /// `−mean_m f̂_θ(x_m)` (the regression's estimate of `−E[log p_θ(x, z) | x]` averaged
    /// over the wake points, a surrogate: not `−log p_θ(x)`).
    pub value: f64,
    /// The sleep samples `(z_n, x_n) ~ p_θ`, detached (observed sites sampled).
    pub sleep: Trace,
    /// `l_θ[n] = log p_θ(x_n, z_n)` `[N]`, with gradients to `θ`.
    pub log_joint: Tensor,
    /// `w[n] = mean_m A[n, m]` `[N]`: without the split, `loss = −Σ_n w[n] l_θ[n]`.
    pub weights: Tensor,
    /// Whether the exponential-family split was used.
    pub split: bool,
    /// Bandwidth, `λ` and (after tuning) the validation error.
    pub metrics: Metrics,
}

/// Amortised learning by wake-sleep with kernel ridge regression (Wenliang, Moskovitz,
/// Kanagawa & Sahani, *Amortised learning by wake-sleep*, ICML 2020).
///
/// **What it learns.** The parameters `θ` of a model `p_θ(x, z) = Π_i p_θ(z_i) p_θ(x_i | z_i)`
/// whose data points `x_i` and local latents `z_i` live in one *data plate*, by maximum
/// likelihood, with no posterior approximation, no reparameterisation and no assumption
/// on `z`'s type: discrete latents and latents on the circle work as well as Gaussian ones.
///
/// **The maths.** Fisher's identity writes the score as a conditional expectation,
/// `∇θ log p_θ(x) = E_{p_θ(z | x)}[∇θ log p_θ(x, z)]`, and a conditional expectation is
/// what least-squares regression on joint samples estimates. Each step:
/// 1. *Sleep.* `N` joint samples `(z_n, x_n) ~ p_θ` from one vectorised run of the model
///    with its data plate re-sized to `N` and every observed site sampled (`Uncondition`);
///    the samples are detached (no gradient flows through sampling).
/// 2. *Regression.* Kernel ridge regression of `l_θ[n] = log p_θ(x_n, z_n)` on `x_n` with a
///    Gaussian kernel `k(x, y) = exp(−‖φ(x) − φ(y)‖² / 2σ²)`:
///    `f̂_θ(x) = Σ_n A_n(x) l_θ[n]`, `A(x) = (K + λI)⁻¹ k(X_s, x)`. The weights `A` do not
///    depend on `θ`: one solve per step, detached.
/// 3. *Wake.* `loss = −mean_m f̂_θ(x_m)` over the data (or a random `wake_batch` of it);
///    `∇θ loss = −mean_m Σ_n A_n(x_m) ∇θ l_θ[n]`, the KRR estimate of `−∇θ mean_m log p_θ(x_m)`
///    (regressing the gradients and differentiating the regressed function are the same
///    linear map, so one backward pass through `l_θ` gives it).
///
/// **Exponential-family split.** When an observed site's likelihood is an exponential
/// family ([`ExponentialFamily`](ppl_core::distributions::ExponentialFamily)),
/// `log p_θ(x | z) = ⟨η_θ(z), T(x)⟩ − A(η_θ(z)) + log h(x)`: only `η_θ(z)` and
/// `r_θ = log p_θ(z) − A(η_θ(z))` need regressing, and `T(x_m)` is plugged in exactly at the
/// wake points: `f̂_θ(x_m) = ⟨KRR[η_θ](x_m), T(x_m)⟩ + KRR[r_θ](x_m) + log h(x_m)`. This is
/// on by default ([`KrrOptions::exp_family_split`]); other observed sites stay in `r_θ`.
/// Both estimators have the same limit; the split one has lower variance because the part
/// of `l_θ` that varies fastest with `x` is not regressed. At a training point with `λ → 0`
/// both interpolate and coincide.
///
/// **Kernel, bandwidth and `λ`.** `σ` is a multiple of the median distance between the
/// sleep points' features: `φ` = the raw observed values, a fixed map
/// ([`Features::Map`](super::Features)) or a learned one
/// ([`Features::Learned`](super::Features)). The multiple and `λ` are learned as in the
/// paper, by minimising the prediction error of the regression targets on a fresh
/// validation sleep set, every `every` steps ([`Tuning`](super::Tuning)):
/// - *Grid search* (always): multiples × `λ` values. One symmetric eigendecomposition
///   `K = UΛUᵀ` per bandwidth gives the validation error of every `λ` at once, exactly and
///   deterministically, and the error is non-convex in `σ`, where gradient descent from a
///   bad start stalls.
/// - *Gradient descent through the solve* (with learned features): from the grid's best,
///   Adam on the weights `ψ` of a small MLP `φ_ψ`, `log` multiple and `log λ` jointly,
///   minimising `Σ_c mean_v (k(x_v, X_s)(K + λI)⁻¹ y_c − y_{v,c})² / var_v(y_c)`. The solve
///   is a differentiable op ([`spd_solve`](super::spd_solve): faer Cholesky forward,
///   `∂/∂B = A⁻¹G`, `∂/∂A = −sym(A⁻¹G Xᵀ)` backward), so this is the paper's procedure;
///   it costs a solve per iteration, which is why it refines the grid's answer rather
///   than replacing it. Random-feature regression would be differentiable without a
///   custom op but adds Monte Carlo noise to the very error being minimised.
///
/// The parameters change slowly, so re-tuning every few steps loses little. The error of
/// column `c` is divided by its validation variance so that every target (`l_θ`, or `r_θ`
/// and each `η` column) weighs the same; constant columns are skipped. The network's
/// weights, the multiple and `λ` are engine state, saved in checkpoints.
///
/// **Linear algebra.** On the host in f64 with faer: the `N × N` Cholesky of `K + λI` (a
/// growing jitter if it fails, a typed error after), or for large `N`
/// [`KernelApprox::RandomFourier`](super::KernelApprox) (`O(N F²)`) and
/// [`KernelApprox::Nystrom`](super::KernelApprox) (`O(N L²)`). Only `N × d` inputs and the
/// `N × (1 + F)` weights cross between host and device; candle has no solver, and a
/// device conjugate-gradient solve needs hundreds of iterations in f64 and does not reach
/// the accuracy in f32 at small `λ` (see `candle-facts`).
///
/// **How the model must be written.** The data plate takes its size from the leading dim
/// of data read through an input site (`let x = input!(x, data)` / `ctx.input("x", data)`,
/// then `plate!("data", x.dim(0)?, ...)`): the engine re-sizes the plate to `N` by
/// conditioning every input whose leading dim is the plate's size on zeros of `N` rows
/// (placeholders: the observed sites are sampled, so their values are never read). Every
/// latent must be local to the data plate, and every observed site in the plate must have
/// the plate as its value's first axis. Violations are typed errors from `init`.
///
/// **Recognition network.** [`KrrWakeSleep::with_guide`] (or
/// [`KrrWakeSleep::with_amortized_guide`]) trains `q_φ(z | x)` alongside on the sleep
/// samples with loss `−mean_n log q_φ(z_n | x_n)` (added to the step's loss; its
/// parameters are disjoint from `θ`, so put them in their own
/// [`ParamGroup`](crate::ParamGroup) for their own rate), for posterior queries after
/// learning.
///
/// Swapping SVI for this engine on the same model is one line (the engine needs no
/// guide; the same [`Trainer`](crate::Trainer) runs it):
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use ppl_core::prelude::*;
/// use ppl_inference::engines::{KrrOptions, KrrWakeSleep};
/// use ppl_inference::{Adam, Trainer};
/// # fn main() -> ppl_core::Result<()> {
/// let data = Tensor::new(&[0.3f64, -1.2, 0.8, 2.0, 1.1, -0.4], &Device::Cpu)?;
/// // z_i ~ N(0, 1), x_i ~ N(z_i + μ, 0.5²); the data come through an input site.
/// let model = |ctx: &mut Ctx| -> ppl_core::Result<()> {
///     let x = ctx.input("x", &data)?;
///     let mu = ctx.param("mu", || Ok(Tensor::new(0f64, &Device::Cpu)?), Constraint::Real)?;
///     let n = x.dim(0)?;
///     ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
///         let z = ctx.sample("z", Normal::standard(&[n], DType::F64, &Device::Cpu)?)?;
///         let loc = z.broadcast_add(&mu)?;
///         ctx.observe("obs", Normal::new(&loc, &loc.ones_like()?.affine(0.5, 0.0)?)?, &x)?;
///         Ok(())
///     })
/// };
/// let mut ctx = Ctx::new(0).with_dtype(DType::F64);
/// let mut trainer = Trainer::new(Adam::new(), 0.05)?;
/// // trainer.run(&mut ctx, &mut Svi::new(&model, &guide, TraceElbo::new()), 20)?;
/// let mut engine = KrrWakeSleep::new(&model, "data", KrrOptions::default().sleep_samples(200));
/// let report = trainer.run(&mut ctx, &mut engine, 20)?;
/// assert_eq!(report.losses.len(), 20);
/// assert!(report.metrics["lambda"].iter().all(|l| *l > 0.0));
/// # Ok(()) }
/// ```
pub struct KrrWakeSleep<'a, M: ?Sized> {
    model: &'a M,
    plate: String,
    opts: KrrOptions,
    guide: Option<SleepGuide<'a>>,
    setup: Option<Setup>,
    bandwidth_multiplier: f64,
    lambda: f64,
    val_err: Option<f64>,
    steps: u64,
    /// The learned feature network ([`Features::Learned`]), built by `init`.
    net: Option<FeatureNet>,
    /// Network weights loaded before `init` built the network.
    pending: Option<HashMap<String, Tensor>>,
}

impl<'a, M: Model + ?Sized> KrrWakeSleep<'a, M> {
    /// The engine for `model`, whose data points live in plate `data_plate`.
    pub fn new(model: &'a M, data_plate: &str, options: KrrOptions) -> Self {
        KrrWakeSleep {
            model,
            plate: data_plate.to_string(),
            bandwidth_multiplier: options.bandwidth_multiplier,
            lambda: options.lambda,
            opts: options,
            guide: None,
            setup: None,
            val_err: None,
            steps: 0,
            net: None,
            pending: None,
        }
    }

    /// Trains the recognition model `guide` in the sleep phase: `loss += −(1/N) Σ_n log
    /// q_φ(z_n | x_n)` with the guide's latents replayed from the sleep samples and its
    /// inputs set by `inputs` (built from the sleep trace, e.g. the simulated `x` for the
    /// guide's data input).
    pub fn with_guide<G: Model + ?Sized>(
        mut self,
        guide: &'a G,
        inputs: impl Fn(&Trace) -> Result<ChoiceMap> + 'a,
    ) -> Self {
        self.guide = Some(Box::new(move |ctx: &mut Ctx, sleep: &Trace| {
            let choices = inputs(sleep)?;
            let ((), g) = ctx.trace(|ctx| {
                ctx.handle(Condition::new(choices), |ctx| {
                    ctx.handle(Replay::new(sleep), |ctx| guide.run(ctx).map(|_| ()))
                        .map(|(r, _)| r)
                })
                .map(|(r, _)| r)
            })?;
            let lq = g.log_prob_sum(|s| s.is_latent())?;
            let n = sleep_size(sleep)?;
            Ok(lq.affine(-1.0 / n as f64, 0.0)?)
        }));
        self
    }

    /// [`KrrWakeSleep::with_guide`] for an [`AutoAmortized`] guide (its inputs built with
    /// [`AutoAmortized::input_choices`]).
    pub fn with_amortized_guide(self, guide: &'a AutoAmortized) -> Self {
        self.with_guide(guide, move |t| guide.input_choices(t))
    }

    /// The options.
    pub fn options(&self) -> &KrrOptions {
        &self.opts
    }

    /// The current bandwidth multiple of the median heuristic and `λ`.
    pub fn kernel_params(&self) -> (f64, f64) {
        (self.bandwidth_multiplier, self.lambda)
    }

    fn setup(&mut self, ctx: &mut Ctx) -> Result<Setup> {
        if let Some(s) = &self.setup {
            return Ok(s.clone());
        }
        self.init(ctx)?;
        self.setup
            .clone()
            .ok_or_else(|| PplError::config(CONTEXT, "initialisation left no setup"))
    }

    /// Draws `n` detached joint samples `(z, x) ~ p_θ`: the model with its data plate
    /// re-sized to `n` and every observed site sampled.
    pub fn sleep(&mut self, ctx: &mut Ctx, n: usize) -> Result<Trace> {
        let setup = self.setup(ctx)?;
        self.sleep_with(ctx, &setup, n)
    }

    fn sleep_with(&self, ctx: &mut Ctx, setup: &Setup, n: usize) -> Result<Trace> {
        let mut choices = ChoiceMap::new();
        for (name, rest, dt, dev) in &setup.inputs {
            let mut shape = vec![n];
            shape.extend_from_slice(rest);
            choices.insert(name.clone(), Tensor::zeros(shape, *dt, dev)?);
        }
        let model = self.model;
        let ((), t) = ctx.trace(|ctx| {
            ctx.handle(Condition::new(choices), |ctx| {
                ctx.handle(StopGradient::all(), |ctx| {
                    ctx.handle(Uncondition::new(), |ctx| model.run(ctx).map(|_| ()))
                        .map(|(r, _)| r)
                })
                .map(|(r, _)| r)
            })
            .map(|(r, _)| r)
        })?;
        let size = plate_size(&t, &self.plate)?;
        if size != n {
            return Err(PplError::config(
                CONTEXT,
                format!(
                    "the sleep run of the model has plate `{}` of size {size}, not the {n} \
                     requested: the plate must take its size from the leading dim of the \
                     data read through an input site",
                    self.plate
                ),
            ));
        }
        Ok(t)
    }

    /// `(l_θ [N], r_θ [N], H [N, F])` of a trace of the model (split parts when `split`).
    fn targets(
        &self,
        setup: &Setup,
        t: &Trace,
        split: bool,
    ) -> Result<(Tensor, Option<(Tensor, Tensor)>)> {
        let l = t.log_prob_per(&self.plate)?;
        if !split {
            return Ok((l, None));
        }
        let n = l.dim(0)?;
        let mut r = l.clone();
        let mut etas = Vec::new();
        for name in &setup.split {
            let site = t.site(name.clone())?;
            let ef = site
                .dist
                .as_ref()
                .and_then(|d| d.exponential_family())
                .ok_or_else(|| {
                    PplError::site(
                        name,
                        ppl_core::describe_plates(&site.plates),
                        "the likelihood had an exponential-family form on the data but not \
                         in this run",
                    )
                })?;
            let eta = ef.natural_params()?.reshape((n, ()))?;
            let stat = ef.sufficient_stat(&site.value)?.reshape((n, ()))?;
            let logh = ef.log_base_measure(&site.value)?.reshape((n, ()))?.sum(1)?;
            let inner = (&eta * stat.to_dtype(eta.dtype())?)?.sum(1)?;
            r = ((r - inner)? - logh.to_dtype(l.dtype())?)?;
            etas.push(eta);
        }
        let h = Tensor::cat(&etas, 1)?;
        Ok((l, Some((r, h))))
    }

    fn features(&self, x: &Tensor) -> Result<HostMat> {
        match &self.opts.features {
            Features::Raw => to_host(x, "the observed values"),
            Features::Map(f) => to_host(&f(x)?, "the features φ(x)"),
            Features::Learned(_) => self
                .net
                .as_ref()
                .ok_or_else(|| PplError::config(CONTEXT, "learned features used before init"))?
                .features(x),
        }
    }

    /// One KRR estimate of `−∇θ mean log p_θ(x_wake)` (the step without the guide's sleep
    /// loss): sleep samples, targets with gradients, kernel (re-tuned when due), weights.
    pub fn estimate(&mut self, ctx: &mut Ctx) -> Result<KrrEstimate> {
        let setup = self.setup(ctx)?;
        let n = self.opts.sleep_samples;
        let split = self.opts.exp_family_split && !setup.split.is_empty();
        let sleep = self.sleep_with(ctx, &setup, n)?;
        let xs = per_rows(&sleep, &setup.observed)?;
        let mut xs_h = self.features(&xs)?;
        // Replay the detached samples with gradients to θ.
        let model = self.model;
        let ((), replayed) = ctx.trace(|ctx| {
            ctx.handle(Replay::new(&sleep), |ctx| {
                ctx.handle(Uncondition::new(), |ctx| model.run(ctx).map(|_| ()))
                    .map(|(r, _)| r)
            })
            .map(|(r, _)| r)
        })?;
        let (l, parts) = self.targets(&setup, &replayed, split)?;
        let (dtype, device) = (l.dtype(), l.device().clone());

        let median = median_host(&xs_h)?;
        let mut metrics = Metrics::new();
        if let Some(tuning) = self.opts.tuning.clone() {
            if self.steps % tuning.every as u64 == 0 {
                let val = self.sleep_with(ctx, &setup, tuning.validation)?;
                let xv_raw = per_rows(&val, &setup.observed)?;
                let xv = self.features(&xv_raw)?;
                let (lv, pv) = self.targets(&setup, &val, split)?;
                let yv = target_matrix(&lv, pv.as_ref())?;
                let ys = target_matrix(&l, parts.as_ref())?;
                let k = tuning.max_train.min(n);
                let xs_t = xs_h.subrows(0, k).to_owned();
                let ys_t = ys.subrows(0, k).to_owned();
                let bws: Vec<f64> = tuning
                    .bandwidth_multipliers
                    .iter()
                    .map(|m| m * median)
                    .collect();
                let (bw, lam, err) = grid_search(&xs_t, &ys_t, &xv, &yv, &bws, &tuning.lambdas)?;
                self.bandwidth_multiplier = bw / median;
                self.lambda = lam;
                self.val_err = Some(err);
                if let Some(net) = self.net.as_mut() {
                    // Refine ψ, the multiple and λ from the grid's best by gradient descent
                    // through the solve, then recompute the step's features.
                    let (mult, lam, err) = net.fit(
                        &xs.narrow(0, 0, k)?,
                        &ys_t,
                        &xv_raw,
                        &yv,
                        self.bandwidth_multiplier,
                        self.lambda,
                    )?;
                    self.bandwidth_multiplier = mult;
                    self.lambda = lam;
                    self.val_err = Some(err);
                    xs_h = self.features(&xs)?;
                }
            }
        }
        let median = if self.net.is_some() {
            median_host(&xs_h)?
        } else {
            median
        };
        let bandwidth = self.bandwidth_multiplier * median;
        let ridge =
            KernelRidge::fit_host(xs_h, bandwidth, self.lambda, &self.opts.approx, ctx.rng())?;

        // The wake minibatch.
        let idx: Option<Vec<u32>> = match self.opts.wake_batch {
            Some(m) if m < setup.n => Some(
                super::ridge::sample_without_replacement(ctx.rng(), setup.n, m)
                    .into_iter()
                    .map(|i| i as u32)
                    .collect(),
            ),
            _ => None,
        };
        let pick = |t: &Tensor| -> Result<Tensor> {
            match &idx {
                None => Ok(t.clone()),
                Some(i) => {
                    let it = Tensor::new(i.as_slice(), t.device())?;
                    Ok(t.index_select(&it, 0)?)
                }
            }
        };
        let xw = pick(&setup.x_data)?;
        let m = xw.dim(0)?;
        let xw_h = self.features(&xw)?;
        // B = [1/M | T(x_m)/M]: A·B gives the weights of r_θ and of each η column.
        let (b, mean_logh) = match (&setup.t_data, split) {
            (Some((t, logh)), true) => {
                let t = to_host(&pick(t)?, "T(x)")?;
                let logh_mean = crate::importance::scalar(&pick(logh)?)? / m as f64;
                let f = t.ncols();
                (
                    Mat::from_fn(m, 1 + f, |i, j| {
                        if j == 0 {
                            1.0 / m as f64
                        } else {
                            t[(i, j - 1)] / m as f64
                        }
                    }),
                    logh_mean,
                )
            }
            _ => (Mat::from_fn(m, 1, |_, _| 1.0 / m as f64), 0.0),
        };
        let ab = to_tensor(&ridge.weights_times_host(&xw_h, &b)?, dtype, &device)?;
        let w = ab.narrow(1, 0, 1)?.squeeze(1)?;
        let fhat = match &parts {
            Some((r, h)) => {
                let g = ab.narrow(1, 1, ab.dim(1)? - 1)?;
                ((&w * r)?.sum_all()? + (h * g)?.sum_all()?)?
            }
            None => (&w * &l)?.sum_all()?,
        };
        let loss = fhat.neg()?;
        let value = -(crate::importance::scalar(&fhat)? + mean_logh);
        metrics.insert("bandwidth", bandwidth);
        metrics.insert("lambda", self.lambda);
        if let Some(e) = self.val_err {
            metrics.insert("val_err", e);
        }
        self.steps += 1;
        Ok(KrrEstimate {
            loss,
            value,
            sleep,
            log_joint: l,
            weights: w,
            split,
            metrics,
        })
    }
}

impl<M: Model + ?Sized> Engine for KrrWakeSleep<'_, M> {
    fn name(&self) -> &str {
        "krr_wake_sleep"
    }

    /// Validates the options and learns the model's layout from one run on its data
    /// (under a clone of the random stream): the data plate, the input sites that size it,
    /// the observed sites, the exponential-family likelihoods and their statistics `T(x)`.
    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        self.opts.validate()?;
        let info = ModelInfo::probe_model(ctx, self.model)?;
        let t = &info.model;
        let plate = self.plate.as_str();
        let n = plate_size(t, plate)?;
        let mut inputs = Vec::new();
        for s in t.inputs() {
            if s.value.rank() >= 1 && s.value.dim(0)? == n {
                let v = &s.value;
                inputs.push((
                    s.name.clone(),
                    v.dims()[1..].to_vec(),
                    v.dtype(),
                    v.device().clone(),
                ));
            }
        }
        if inputs.is_empty() {
            return Err(PplError::config(
                CONTEXT,
                format!(
                    "no input site has a leading dim of {n}, the size of plate `{plate}`: read \
                     the data with `input!` (`ctx.input`) and size the plate from it, so the \
                     engine can re-size the plate for sleep samples"
                ),
            ));
        }
        let mut observed = Vec::new();
        let mut rows = Vec::new();
        let mut split = Vec::new();
        let mut stats = Vec::new();
        let mut loghs = Vec::new();
        for s in t.sites() {
            if s.kind != SiteKind::Sample {
                continue;
            }
            let frame = s.plates.iter().find(|f| f.name.matches(plate));
            if s.is_latent() {
                if frame.is_none() && !s.auxiliary {
                    return Err(PplError::site(
                        &s.name,
                        ppl_core::describe_plates(&s.plates),
                        format!(
                            "a latent outside the data plate `{plate}`: the KRR engine learns \
                             parameters of models whose latents are all local to the data \
                             plate (make it a parameter, or use SVI)"
                        ),
                    ));
                }
                continue;
            }
            let Some(frame) = frame else { continue };
            let batch_rank = s.dist.as_ref().map_or(0, |d| d.batch_shape().len()) as isize;
            if frame.subsample_size != frame.size || batch_rank + frame.dim != 0 {
                return Err(PplError::site(
                    &s.name,
                    ppl_core::describe_plates(&s.plates),
                    format!(
                        "the KRR engine needs observed sites whose first axis is the data plate \
                         `{plate}`, not subsampled (use `KrrOptions::wake_batch` for minibatches)"
                    ),
                ));
            }
            rows.push(s.value.reshape((n, ()))?.to_dtype(ctx.dtype())?);
            observed.push(s.name.clone());
            if self.opts.exp_family_split && s.mask.is_none() {
                if let Some(ef) = s.dist.as_ref().and_then(|d| d.exponential_family()) {
                    stats.push(
                        ef.sufficient_stat(&s.value)?
                            .reshape((n, ()))?
                            .to_dtype(ctx.dtype())?,
                    );
                    loghs.push(
                        ef.log_base_measure(&s.value)?
                            .reshape((n, ()))?
                            .sum(1)?
                            .to_dtype(ctx.dtype())?,
                    );
                    split.push(s.name.clone());
                }
            }
        }
        if observed.is_empty() {
            return Err(PplError::config(
                CONTEXT,
                format!("the model has no observed site inside plate `{plate}`"),
            ));
        }
        let t_data = if split.is_empty() {
            None
        } else {
            let mut logh = loghs[0].clone();
            for l in &loghs[1..] {
                logh = (logh + l)?;
            }
            Some((Tensor::cat(&stats, 1)?, logh))
        };
        let x_data = Tensor::cat(&rows, 1)?;
        if let (Features::Learned(l), None) = (&self.opts.features, &self.net) {
            // Weights loaded from a checkpoint replace the initial ones: draw the seed only
            // for a fresh start, so that a resumed run's random stream equals the straight
            // run's (which drew it once, at its own start).
            let net = match self.pending.take() {
                Some(state) => {
                    let net = FeatureNet::new(&x_data, l, 0)?;
                    net.load(&state)?;
                    net
                }
                None => {
                    let seed = (ctx.rng().uniform_open() * (1u64 << 53) as f64) as u64;
                    FeatureNet::new(&x_data, l, seed)?
                }
            };
            self.net = Some(net);
        }
        self.setup = Some(Setup {
            n,
            inputs,
            observed,
            x_data,
            split,
            t_data,
        });
        Ok(())
    }

    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let est = self.estimate(ctx)?;
        let mut loss = est.loss;
        let mut metrics = est.metrics;
        if let Some(g) = &self.guide {
            let sl = g(ctx, &est.sleep)?;
            metrics.insert("sleep_loss", crate::importance::scalar(&sl)?);
            let sl = sl.to_dtype(loss.dtype())?;
            loss = (loss + sl)?;
        }
        Ok(StepOutput {
            loss,
            value: est.value,
            metrics,
        })
    }

    fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let s = |v: f64| Tensor::new(v, &Device::Cpu);
        Ok([
            (
                "krr/bandwidth_multiplier".into(),
                s(self.bandwidth_multiplier)?,
            ),
            ("krr/lambda".into(), s(self.lambda)?),
            ("krr/steps".into(), s(self.steps as f64)?),
        ]
        .into_iter()
        .chain(self.net.iter().flat_map(|n| n.state()))
        .collect())
    }

    fn load_state(&mut self, state: HashMap<String, Tensor>) -> Result<()> {
        let get = |k: &str| -> Result<f64> {
            let t = state.get(k).ok_or_else(|| {
                PplError::config(
                    "KrrWakeSleep::load_state",
                    format!("the checkpoint has no `{k}`"),
                )
            })?;
            Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
        };
        let (bw, lam, steps) = (
            get("krr/bandwidth_multiplier")?,
            get("krr/lambda")?,
            get("krr/steps")?,
        );
        if let Some(k) = state.keys().find(|k| !k.starts_with("krr/")) {
            return Err(PplError::config(
                "KrrWakeSleep::load_state",
                format!("unknown state `{k}` (a checkpoint of another engine?)"),
            ));
        }
        let has_net = state.keys().any(|k| k.starts_with(super::learned::PREFIX));
        let learned = matches!(self.opts.features, Features::Learned(_));
        if has_net != learned {
            return Err(PplError::config(
                "KrrWakeSleep::load_state",
                if learned {
                    "the engine learns its kernel features but the checkpoint has no feature \
                     weights (`krr/features/...`): it was saved with other `features`"
                } else {
                    "the checkpoint has learned kernel features (`krr/features/...`) but this \
                     engine's `features` is not `Features::Learned`"
                },
            ));
        }
        match &self.net {
            Some(net) => net.load(&state)?,
            None if has_net => self.pending = Some(state),
            None => {}
        }
        self.bandwidth_multiplier = bw;
        self.lambda = lam;
        self.steps = steps as u64;
        Ok(())
    }
}

/// The size of plate `plate` in a trace.
fn plate_size(t: &Trace, plate: &str) -> Result<usize> {
    t.sites()
        .iter()
        .flat_map(|s| s.plates.iter())
        .find(|f| f.name.matches(plate))
        .map(|f| f.size)
        .ok_or_else(|| PplError::config(CONTEXT, format!("the model has no plate named `{plate}`")))
}

/// The number of points of a sleep trace (rows of its first latent or unconditioned site).
fn sleep_size(t: &Trace) -> Result<usize> {
    t.sites()
        .iter()
        .find(|s| s.kind == SiteKind::Sample && s.was_observed)
        .map(|s| s.value.dim(0))
        .transpose()?
        .ok_or_else(|| PplError::config(CONTEXT, "the sleep trace has no sampled observation"))
}

/// The values of `sites` in `t`, one row per data point, concatenated `[n, D]`.
fn per_rows(t: &Trace, sites: &[SiteName]) -> Result<Tensor> {
    let mut rows = Vec::with_capacity(sites.len());
    for name in sites {
        let v = t.value(name.clone())?;
        let n = v.dim(0)?;
        rows.push(v.reshape((n, ()))?.to_dtype(DType::F64)?);
    }
    Ok(Tensor::cat(&rows, 1)?)
}

/// The regression targets `[N, c]` on the host: `l` alone, or `[r | H]`.
fn target_matrix(l: &Tensor, parts: Option<&(Tensor, Tensor)>) -> Result<HostMat> {
    let y = match parts {
        None => l.unsqueeze(1)?,
        Some((r, h)) => Tensor::cat(&[r.unsqueeze(1)?, h.clone()], 1)?,
    };
    to_host(&y.detach(), "the regression targets")
}
