use super::phases::{self, GuideInputs};
use crate::engine::{Engine, Metrics, StepOutput};
use crate::importance::{scalar, GuideLogQ, LogWeights, ModelInfo, Particles, WeightBuilder};
use candle_core::Tensor;
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result, Trace};

/// Reweighted wake-sleep (Bornschein & Bengio 2015; Le, Kosiorek, Siddharth, Teh & Wood
/// 2019, "Revisiting reweighted wake-sleep").
///
/// With `K` particles `z_k ~ q_φ(z | x)` on the data and their self-normalised importance
/// weights `w̃_k = w_k / Σ_j w_j`, `w_k = p_θ(x, z_k) / q_φ(z_k | x)` (held fixed: no
/// gradient flows through them or through the `z_k`):
///
/// * **wake-θ**: maximise `Σ_k w̃_k log p_θ(x, z_k)`. Its gradient is the IWAE gradient
///   `∇θ log (1/K) Σ_k w_k`, a self-normalised importance-sampling estimate of
///   `∇θ log p_θ(x) = E_{p_θ(z|x)}[∇θ log p_θ(x, z)]`, consistent as `K → ∞`.
/// * **wake-φ**: maximise `Σ_k w̃_k log q_φ(z_k | x)`: a self-normalised estimate of
///   `−∇φ KL(p_θ(z | x) ‖ q_φ(z | x))` at the real data.
/// * **sleep-φ**: maximise `(1/K_s) Σ_k log q_φ(z_k | x_k)` at dreams `(z_k, x_k) ~ p_θ`
///   (as in [`WakeSleep`](super::WakeSleep)).
///
/// The φ objective is `insomnia · wake-φ + (1 − insomnia) · sleep-φ`
/// ([`ReweightedWakeSleep::with_insomnia`], the name Pyro uses; default 1: wake-φ only,
/// which Le et al. recommend). The loss is `−wake-θ − φ objective`; as in
/// [`WakeSleep`](super::WakeSleep) each term is built with the other parameter set
/// detached, so one backward pass gives θ and φ their own gradients.
///
/// **Local latents and minibatches** ([`ReweightedWakeSleep::with_local_plate`]). When
/// every guide latent lives in a data plate `i = 1..N` (a latent per data point), the
/// posterior factorises, `p(z | x) = Π_i p(z_i | x_i)`, and so do the targets:
/// `∇θ log p(x) = Σ_i ∇θ log p(x_i)`. The weights are then normalised **per data point**
/// over the particles, `w̃_{k,i} ∝ p(x_i, z_{k,i}) / q(z_{k,i} | x_i)` (point `i`'s own
/// sites, [`LogWeights`]), and the terms are summed over the minibatch with the factor
/// `N/n`: `wake-θ = Σ_{global sites}/K + (N/n) Σ_{i ∈ batch} Σ_k w̃_{k,i} log p(x_i, z_{k,i})`,
/// and the same for wake-φ. Each point's estimate has the bias of `K` particles in *its
/// own* latent space, and the sum over a uniform minibatch times `N/n` is an unbiased
/// estimate of the sum over all points. Normalising over the whole batch instead (one
/// weight per particle from the summed, `N/n`-scaled minibatch log densities, as Pyro's
/// `ReweightedWakeSleep` does) treats the `n` points' latents as one `n·d`-dimensional
/// latent with `K` particles: its effective sample size collapses with `n`, the scale
/// `N/n` sharpens the weights further, and the estimate is biased for any minibatch
/// size. This engine refuses that case: a subsampled plate without `with_local_plate`,
/// or with guide latents outside the plate (no per-point form), is a typed error.
/// Without subsampling, latents outside the plate fold the plate into one joint weight
/// (standard importance sampling over everything).
///
/// Neither term differentiates through a sample, so discrete latents work. The reported
/// value is the negative IWAE bound `−log (1/K) Σ_k w_k` (per point and summed with `N/n`
/// with a local plate); metrics `wake_theta`, `wake_phi` (when `insomnia > 0`),
/// `sleep_phi` (when `insomnia < 1`), each the negated objective, and `ess`, the mean
/// effective sample size of the weights.
pub struct ReweightedWakeSleep<'a, M: ?Sized, G: ?Sized> {
    model: &'a M,
    guide: &'a G,
    k: usize,
    sleep_k: usize,
    insomnia: f64,
    inputs: Option<GuideInputs<'a>>,
    data_plate: Option<String>,
    /// Set by `init`: the wake weights and the sleep particles.
    state: Option<(WeightBuilder, Particles)>,
}

impl<'a, M: Model + ?Sized, G: Model + ?Sized> ReweightedWakeSleep<'a, M, G> {
    /// RWS of `model` with guide `guide` and `k ≥ 1` particles (vectorised), wake-φ only.
    pub fn new(model: &'a M, guide: &'a G, k: usize) -> Result<Self> {
        Particles::new(k, 0, "ReweightedWakeSleep")?;
        Ok(ReweightedWakeSleep {
            model,
            guide,
            k,
            sleep_k: k,
            insomnia: 1.0,
            inputs: None,
            data_plate: None,
            state: None,
        })
    }

    /// Normalises the weights per data point of plate `name` (see the
    /// [`ReweightedWakeSleep`]).
    pub fn with_local_plate(mut self, name: impl Into<String>) -> Self {
        self.data_plate = Some(name.into());
        self.state = None;
        self
    }

    /// Mixes the φ updates: `insomnia · wake-φ + (1 − insomnia) · sleep-φ`, `insomnia` in
    /// `[0, 1]`. Below 1 the sleep phase runs and needs [`Self::with_sleep`].
    pub fn with_insomnia(mut self, insomnia: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&insomnia) {
            return Err(PplError::config(
                "ReweightedWakeSleep::with_insomnia",
                format!("insomnia must be in [0, 1], got {insomnia}"),
            ));
        }
        self.insomnia = insomnia;
        Ok(self)
    }

    /// How the sleep phase feeds dreamed data to the guide ([`GuideInputs`]) and how many
    /// dreams `sleep_k ≥ 1` it draws per step (vectorised).
    pub fn with_sleep(
        mut self,
        inputs: impl Fn(&Trace) -> Result<ChoiceMap> + 'a,
        sleep_k: usize,
    ) -> Result<Self> {
        Particles::new(sleep_k, 0, "ReweightedWakeSleep::with_sleep")?;
        self.inputs = Some(Box::new(inputs));
        self.sleep_k = sleep_k;
        self.state = None;
        Ok(self)
    }

    /// The wake terms: `(wake-θ objective, −Σ w̃ log q as the negated wake-φ objective,
    /// log weights)`.
    fn wake(&self, ctx: &mut Ctx, w: &WeightBuilder) -> Result<(Tensor, Tensor, LogWeights)> {
        let (g, m) = phases::wake(ctx, &w.particles, self.model, self.guide)?;
        let mp = w.parts(&m, |_| true, GuideLogQ::Attached)?;
        let gq = w.parts(&g, |s| s.is_latent(), GuideLogQ::Attached)?;
        let lw = w.combine(&g, mp.clone(), gq.clone())?;
        // The same split applied to log p alone and to −log q alone.
        let lp = w.combine(&g, mp, (None, None, None))?;
        let nq = w.combine(&g, (None, None, None), gq)?;
        let dt = lw.global.dtype();
        let (theta, nphi) = match (&lw.local, &lp.local, &nq.local) {
            (Some(l), lp_local, nq_local) => {
                let logits = l.broadcast_add(&lw.global.unsqueeze(1)?)?.detach();
                let wt = candle_nn::ops::softmax(&logits, 0)?;
                let weighted = |t: &Option<Tensor>| -> Result<Tensor> {
                    match t {
                        Some(t) => Ok(((t.to_dtype(dt)? * &wt)?.sum_all()? * lw.scale)?),
                        None => Ok(Tensor::zeros((), dt, wt.device())?),
                    }
                };
                let theta = (lp.global.to_dtype(dt)?.mean(0)? + weighted(lp_local)?)?;
                let nphi = (nq.global.to_dtype(dt)?.mean(0)? + weighted(nq_local)?)?;
                (theta, nphi)
            }
            _ => {
                let wt = candle_nn::ops::softmax(&lw.global.detach(), 0)?;
                let theta = (lp.global.to_dtype(dt)? * &wt)?.sum_all()?;
                let nphi = (nq.global.to_dtype(dt)? * &wt)?.sum_all()?;
                (theta, nphi)
            }
        };
        Ok((theta, nphi, lw))
    }
}

impl<M: Model + ?Sized, G: Model + ?Sized> Engine for ReweightedWakeSleep<'_, M, G> {
    fn name(&self) -> &str {
        "reweighted_wake_sleep"
    }

    /// Probes the pair, infers the plate nesting and checks the weights' form: a
    /// subsampled plate needs per-point weights (`with_local_plate`) and a guide with every
    /// latent inside that plate; a sleep phase needs `with_sleep`.
    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        const CTX: &str = "ReweightedWakeSleep";
        if self.insomnia < 1.0 && self.inputs.is_none() {
            return Err(PplError::config(
                CTX,
                format!(
                    "insomnia {} < 1 runs the sleep phase, which needs `with_sleep(inputs, k)` \
                     to feed dreamed data to the guide",
                    self.insomnia
                ),
            ));
        }
        let info = ModelInfo::probe(ctx, self.model, self.guide)?;
        let n = info.max_plate_nesting;
        let mut plate = self.data_plate.clone();
        if let Some(name) = &self.data_plate {
            let inside = |s: &ppl_core::Site| s.plates.iter().any(|f| f.name.matches(name));
            if !info
                .model
                .sites()
                .iter()
                .any(|s| s.has_density() && inside(s))
            {
                return Err(PplError::config(
                    CTX,
                    format!("no site of the model is inside the data plate `{name}`"),
                ));
            }
            if let Some(s) = info.guide.latent_sites().find(|s| !inside(s)) {
                if let Some((_, p)) = phases::subsampled_plate(&[&info.model, &info.guide]) {
                    return Err(PplError::guide_mismatch(
                        &s.name,
                        format!(
                            "is a latent outside the data plate `{name}` while plate `{p}` is \
                             subsampled: the importance weights have no per-point form, and \
                             weights of the whole minibatch are biased (use the full batch)"
                        ),
                    ));
                }
                // Joint weights over everything: the plate folds into one weight.
                plate = None;
            }
        } else if let Some((site, p)) = phases::subsampled_plate(&[&info.model, &info.guide]) {
            return Err(PplError::config(
                CTX,
                format!(
                    "site `{site}` is in the subsampled plate `{p}`: weights normalised over \
                     the whole minibatch are biased; call `with_local_plate(\"{p}\")` to \
                     normalise them per data point"
                ),
            ));
        }
        let w = WeightBuilder::new(Particles::new(self.k, n, CTX)?, plate);
        self.state = Some((w, Particles::new(self.sleep_k, n, CTX)?));
        Ok(())
    }

    /// One wake phase (and a sleep phase when `insomnia < 1`); initialises first if
    /// nobody did.
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        if self.state.is_none() {
            self.init(ctx)?;
        }
        let (w, sp) = self
            .state
            .clone()
            .ok_or_else(|| PplError::config("ReweightedWakeSleep", "not initialised"))?;
        let (theta, nphi, lw) = self.wake(ctx, &w)?;
        let bound = scalar(&lw.bound(0.0)?)?;
        let mut metrics = Metrics::new().with("wake_theta", -scalar(&theta)?);
        let mut loss = theta.neg()?;
        if self.insomnia > 0.0 {
            metrics.insert("wake_phi", scalar(&nphi)?);
            loss = (loss + (nphi * self.insomnia)?)?;
        }
        if self.insomnia < 1.0 {
            let inputs = self.inputs.as_ref().ok_or_else(|| {
                PplError::config("ReweightedWakeSleep", "the sleep phase needs `with_sleep`")
            })?;
            let lq = phases::sleep_log_q(
                ctx,
                &sp,
                self.model,
                self.guide,
                inputs,
                "ReweightedWakeSleep",
            )?;
            let sleep = lq.mean(0)?.to_dtype(loss.dtype())?;
            metrics.insert("sleep_phi", -scalar(&sleep)?);
            loss = (loss - (sleep * (1.0 - self.insomnia))?)?;
        }
        if bound.is_finite() {
            let ess = lw.ess()?;
            metrics.insert("ess", scalar(&ess)? / ess.elem_count() as f64);
        }
        Ok(StepOutput {
            loss,
            value: -bound,
            metrics,
        })
    }
}
