use super::phases::{self, GuideInputs};
use crate::engine::{Engine, Metrics, StepOutput};
use crate::importance::{scalar, GuideLogQ, ModelInfo, Particles, WeightBuilder};
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result, Trace};

/// Classic wake-sleep (Hinton, Dayan, Frey & Neal 1995: the Helmholtz machine).
///
/// A model `p_θ(x, z)` and a recognition model (guide) `q_φ(z | x)` are learned by two
/// phases, both in every [`Engine::step`]:
///
/// * **wake** (θ): draw `z_k ~ q_φ(z | x)` on the data, `k = 1..K_w`, and maximise
///   `(1/K_w) Σ_k log p_θ(x, z_k)` with the `z_k` held fixed (detached). Its gradient
///   `E_q[∇θ log p_θ(x, z)]` equals `∇θ log p_θ(x) = E_{p_θ(z|x)}[∇θ log p_θ(x, z)]`
///   exactly when `q` is the posterior; otherwise it is the gradient of the ELBO with
///   respect to θ.
/// * **sleep** (φ): dream `(z_k, x_k) ~ p_θ`, `k = 1..K_s` (the observed sites sampled:
///   `Uncondition`), and maximise `(1/K_s) Σ_k log q_φ(z_k | x_k)`: a stochastic estimate
///   of `−E_{p_θ(x)} KL(p_θ(z | x) ‖ q_φ(z | x)) + const`, so `q` is fitted to the model's
///   posterior *averaged over the model's own data*, not over the real data (the sleep
///   phase's known bias; see [`ReweightedWakeSleep`](super::ReweightedWakeSleep) for a
///   wake-phase φ update).
///
/// The step's loss is `−wake − sleep`. The wake term depends on θ only (the guide's values
/// are detached, so no gradient reaches φ through them) and the sleep term on φ only (the
/// dreams and the guide's inputs are detached), so one backward pass of the sum gives θ
/// the wake gradient and φ the sleep gradient, as two separate backward passes would
/// (this needs θ and φ to be disjoint parameter sets). Use
/// [`ParamGroup::with_prefixes`](crate::ParamGroup::with_prefixes) to give them their own
/// optimisers.
///
/// Neither phase differentiates through a sample, so discrete latents work. Global latents
/// are dreamed from their prior, so the sleep phase fits their guide to the prior: classic
/// wake-sleep is meant for local latents. Subsampled data plates are fine: the wake term
/// uses the sites' scales (`N/n`), an unbiased estimate of the full-data term.
///
/// The reported value is the negative ELBO estimate `−(1/K_w) Σ_k [log p_θ(x, z_k) −
/// log q_φ(z_k | x)]`; metrics `wake_theta` (`−wake`) and `sleep_phi` (`−sleep`).
pub struct WakeSleep<'a, M: ?Sized, G: ?Sized> {
    model: &'a M,
    guide: &'a G,
    inputs: GuideInputs<'a>,
    wake_k: usize,
    sleep_k: usize,
    /// `(wake, sleep)` particles, set by `init` (the plate nesting comes from the model).
    particles: Option<(Particles, Particles)>,
}

impl<'a, M: Model + ?Sized, G: Model + ?Sized> WakeSleep<'a, M, G> {
    /// Wake-sleep of `model` with recognition model `guide`; `inputs` builds the guide's
    /// input choices from a dream of the model (see [`GuideInputs`]). One wake and one
    /// sleep particle per step.
    pub fn new(
        model: &'a M,
        guide: &'a G,
        inputs: impl Fn(&Trace) -> Result<ChoiceMap> + 'a,
    ) -> Self {
        WakeSleep {
            model,
            guide,
            inputs: Box::new(inputs),
            wake_k: 1,
            sleep_k: 1,
            particles: None,
        }
    }

    /// `wake ≥ 1` guide samples and `sleep ≥ 1` dreams per step (vectorised).
    pub fn with_particles(mut self, wake: usize, sleep: usize) -> Result<Self> {
        Particles::new(wake, 0, "WakeSleep: wake particles")?;
        Particles::new(sleep, 0, "WakeSleep: sleep particles")?;
        self.wake_k = wake;
        self.sleep_k = sleep;
        self.particles = None;
        Ok(self)
    }
}

impl<M: Model + ?Sized, G: Model + ?Sized> Engine for WakeSleep<'_, M, G> {
    fn name(&self) -> &str {
        "wake_sleep"
    }

    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        let info = ModelInfo::probe(ctx, self.model, self.guide)?;
        let n = info.max_plate_nesting;
        self.particles = Some((
            Particles::new(self.wake_k, n, "WakeSleep")?,
            Particles::new(self.sleep_k, n, "WakeSleep")?,
        ));
        Ok(())
    }

    /// One wake and one sleep phase; initialises the engine first if nobody did.
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        if self.particles.is_none() {
            self.init(ctx)?;
        }
        let (wp, sp) = self
            .particles
            .ok_or_else(|| PplError::config("WakeSleep", "not initialised"))?;
        // Wake: log p_θ(x, z_k) with z_k ~ q detached, one value per particle.
        let (g, m) = phases::wake(ctx, &wp, self.model, self.guide)?;
        let w = WeightBuilder::new(wp, None);
        let no_density = || PplError::config("WakeSleep", "the model has no site with a density");
        let lp = w
            .parts(&m, |_| true, GuideLogQ::Attached)?
            .0
            .ok_or_else(no_density)?;
        let lq = w.parts(&g, |s| s.is_latent(), GuideLogQ::Attached)?.0;
        let wake = lp.mean(0)?;
        let elbo = match lq {
            Some(lq) => scalar(&(&lp - lq.to_dtype(lp.dtype())?)?.mean(0)?)?,
            None => scalar(&wake)?,
        };
        // Sleep: log q_φ(z | x) at dreams (z, x) ~ p_θ, everything from the model detached.
        let lq_sleep =
            phases::sleep_log_q(ctx, &sp, self.model, self.guide, &self.inputs, "WakeSleep")?;
        let sleep = lq_sleep.mean(0)?.to_dtype(wake.dtype())?;
        let metrics = Metrics::new()
            .with("wake_theta", -scalar(&wake)?)
            .with("sleep_phi", -scalar(&sleep)?);
        Ok(StepOutput {
            loss: (wake + sleep)?.neg()?,
            value: -elbo,
            metrics,
        })
    }
}
