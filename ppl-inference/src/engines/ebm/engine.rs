use super::energy::{Data, EnergyModel};
use super::free_energy::FreeEnergy;
use super::inference::Inference;
use super::loss::{encoder_loss, Loss};
use crate::engine::{Engine, Metrics, StepOutput};
use candle_core::{DType, Tensor};
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result};

/// Contrastive observations for a step: replacement values `ȳ` of observed sites or inputs
/// for the step's minibatch (`Data::subsamples` holds its indices).
pub type Contrastive<'a> = Box<dyn FnMut(&mut Ctx, &Data) -> Result<ChoiceMap> + 'a>;

/// Training a latent-variable energy-based model by energy minimisation.
///
/// A latent-variable energy-based model, trained as an [`Engine`].
///
/// The model is an ordinary model read as an energy `E_θ(x, y, z)` per point of its data
/// plate ([`EnergyModel`]). Each step:
/// 1. **Inference** on the step's minibatch ([`Inference`]): the zero-temperature free
///    energy `F∞(x, y) = min_z E(x, y, z)` and its minimiser `ž` (grid search, gradient
///    refinement from restarts or an encoder), or the relaxed free energy
///    `F_β(x, y) = −(1/β) log((1/|Z|) ∫ exp(−βE(x, y, z)) dz)` (log-sum-exp over a grid,
///    or Monte Carlo over prior samples). `β → ∞` gives `F∞`; `β → 0` the mean energy
///    over `Z`; `F_β` is non-increasing in `β`: `−F_β = log ((1/|Z|)∫ (e^{−E})^β dz)^{1/β}`
///    is the log of a power mean of `e^{−E}`, which grows with its exponent `β`.
/// 2. **Loss** ([`Loss`]): `mean F` (energy loss), or a contrastive hinge
///    `mean [F(x, y) − F(x, ȳ) + m]₊` or log loss `mean softplus(F(x, y) − F(x, ȳ))`
///    with `ȳ` from a user closure ([`Ebm::with_contrastive`]), `F(x, ȳ)` inferred the
///    same way with the observed sites replaced by `ȳ`.
/// 3. **Gradient** to the model's parameters `θ`: for `F∞` through `E(x, y, ž)` with `ž`
///    detached (envelope theorem: `∇_θ min_z E = ∇_θ E(ž)`, since `∇_z E(ž) = 0` or `ž`
///    is on the boundary); for `F_β` through the log-sum-exp:
///    `∇_θ F_β = Σ_g w_g ∇_θ E_g` with the soft-argmin weights `w = softmax(−βE)`.
///
/// Regularisation against collapse (`F → −∞` everywhere): keep `z` low-dimensional or
/// bounded (its support), or penalise it ([`Penalty`](super::Penalty) on the
/// [`EnergyModel`], or a `Normal` prior, which is L2). A guard stops a diverging run
/// with [`PplError::Diverged`]: a non-finite mean free energy, or one below
/// [`Ebm::with_min_free_energy`], on data or contrastive samples.
///
/// Metrics: `free_energy` (mean `F` on data), `z_norm` (root mean square of `ž` over
/// points and latent elements), and with a contrastive loss `contrastive_free_energy`.
/// Inference alone (no training) is [`EnergyModel::infer`]. Run by [`Svi`](crate::engines::Svi)
/// with an `AutoDelta` guide the same model is fitted by MAP: zero-temperature inference
/// finds the same `ž` and energy.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use ppl_core::prelude::*;
/// use ppl_inference::engines::{Data, Ebm, EnergyModel, Grid, Inference, Loss, Refine};
/// use ppl_inference::{Adam, Trainer};
/// use std::f64::consts::PI;
/// # fn main() -> ppl_core::Result<()> {
/// // Points y on an ellipse; decoder g(z) = (w₁ cos z, w₂ sin z), z an angle per point.
/// let y = Tensor::new(&[[2.0f64, 0.0], [0.0, 1.5], [-2.0, 0.0]], &Device::Cpu)?;
/// let model = move |ctx: &mut Ctx| -> Result<()> {
///     let w = ctx.param("w", || Ok(Tensor::new(&[-1.5f64, 0.4], &Device::Cpu)?), Constraint::Real)?;
///     ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
///         let (lo, hi) = (Tensor::new(0.0f64, &Device::Cpu)?, Tensor::new(2.0 * PI, &Device::Cpu)?);
///         let z = ctx.sample("z", Uniform::new(&lo, &hi)?)?; // [B], or [G, B] in a search
///         let d1 = y.narrow(1, 0, 1)?.squeeze(1)?.broadcast_sub(&z.cos()?.broadcast_mul(&w.get(0)?)?)?;
///         let d2 = y.narrow(1, 1, 1)?.squeeze(1)?.broadcast_sub(&z.sin()?.broadcast_mul(&w.get(1)?)?)?;
///         ctx.factor("energy", &(d1.sqr()? + d2.sqr()?)?.neg()?) // −E
///     })
/// };
/// let mut ctx = Ctx::new(0);
/// let energy = EnergyModel::new(&model, "data").periodic("z", 0.0, 2.0 * PI)?;
/// let inference = Inference::grid(Grid::periodic("z", 0.0, 2.0 * PI, 48)?)
///     .with_refine(Refine::lbfgs(5, 10)?);
/// let mut ebm = Ebm::new(energy, inference, Loss::Energy);
/// let report = Trainer::new(Adam::new(), 0.05)?.run(&mut ctx, &mut ebm, 5)?;
/// assert_eq!(report.losses.len(), 5);
/// // Inference alone on the trained model: F∞ and ž per point.
/// let fe = ebm.energy_model().infer(&mut ctx, &mut Inference::grid(Grid::periodic("z", 0.0, 2.0 * PI, 48)?), &Data::model())?;
/// assert_eq!(fe.f.dims(), &[3]);
/// # Ok(()) }
/// ```
pub struct Ebm<'a, M: ?Sized> {
    energy: EnergyModel<'a, M>,
    inference: Inference<'a>,
    loss: Loss,
    contrastive: Option<Contrastive<'a>>,
    min_free_energy: f64,
    train_encoder: bool,
    steps: u64,
    last: Option<FreeEnergy>,
}

impl<'a, M: Model + ?Sized> Ebm<'a, M> {
    /// Trains `energy`'s model with `loss`, inferring free energies by `inference`.
    pub fn new(energy: EnergyModel<'a, M>, inference: Inference<'a>, loss: Loss) -> Self {
        Ebm {
            energy,
            inference,
            loss,
            contrastive: None,
            min_free_energy: f64::NEG_INFINITY,
            train_encoder: false,
            steps: 0,
            last: None,
        }
    }

    /// The contrastive observations of a contrastive [`Loss`] (e.g. perturbed `y`).
    pub fn with_contrastive(
        mut self,
        f: impl FnMut(&mut Ctx, &Data) -> Result<ChoiceMap> + 'a,
    ) -> Self {
        self.contrastive = Some(Box::new(f));
        self
    }

    /// Stops training with [`PplError::Diverged`] when a mean free energy falls below
    /// `bound` (energy collapse); non-finite means always stop it.
    pub fn with_min_free_energy(mut self, bound: f64) -> Result<Self> {
        if bound.is_nan() {
            return Err(PplError::config("Ebm", "the free-energy bound is NaN"));
        }
        self.min_free_energy = bound;
        Ok(self)
    }

    /// Adds the encoder's regression loss towards the (detached) inferred `ž`
    /// ([`encoder_loss`]) to each step's loss, so an encoder given by
    /// [`Inference::with_encoder`] learns to predict it (give its parameters their own
    /// [`ParamGroup`](crate::ParamGroup); its prediction enters refinement detached, so
    /// only this term trains it).
    pub fn with_encoder_training(mut self) -> Result<Self> {
        if !self.inference.has_encoder() {
            return Err(PplError::config(
                "Ebm::with_encoder_training",
                "the inference has no encoder (Inference::with_encoder)",
            ));
        }
        self.train_encoder = true;
        Ok(self)
    }

    /// The energy model (e.g. for inference after training).
    pub fn energy_model(&mut self) -> &mut EnergyModel<'a, M> {
        &mut self.energy
    }

    /// The inference recipe.
    pub fn inference(&mut self) -> &mut Inference<'a> {
        &mut self.inference
    }

    /// The last step's inference on its data (`f`, `ž`, energies), for reading values.
    pub fn last(&self) -> Option<&FreeEnergy> {
        self.last.as_ref()
    }

    fn guard(&self, what: &str, mean: f64) -> Result<()> {
        if !mean.is_finite() {
            return Err(PplError::diverged(
                "Ebm",
                self.steps,
                format!("the mean free energy on {what} is {mean}"),
            ));
        }
        if mean < self.min_free_energy {
            return Err(PplError::diverged(
                "Ebm",
                self.steps,
                format!(
                    "the mean free energy on {what} is {mean}, below the bound {} (energy \
                     collapse: regularise z, bound its range, or use a contrastive loss)",
                    self.min_free_energy
                ),
            ));
        }
        Ok(())
    }
}

/// Root mean square of the latents' elements.
fn z_norm(z: &ChoiceMap) -> Result<f64> {
    let (mut s, mut n) = (0.0, 0usize);
    for (_, v) in z.iter() {
        s += v
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
        n += v.elem_count();
    }
    Ok(if n == 0 { 0.0 } else { (s / n as f64).sqrt() })
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

impl<M: Model + ?Sized> Engine for Ebm<'_, M> {
    fn name(&self) -> &str {
        "ebm"
    }

    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        if self.loss.is_contrastive() && self.contrastive.is_none() {
            return Err(PplError::config(
                "Ebm",
                format!(
                    "{:?} needs contrastive samples (Ebm::with_contrastive)",
                    self.loss
                ),
            ));
        }
        self.energy.init(ctx)
    }

    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        if !self.energy.initialised {
            self.init(ctx)?;
        }
        let (fe, pred) =
            self.energy
                .infer_with_prediction(ctx, &mut self.inference, &Data::model())?;
        let fixed = Data {
            values: ChoiceMap::new(),
            subsamples: fe.subsamples.clone(),
        };
        let mean_f = fe.mean()?;
        self.guard("data", mean_f)?;
        let mut metrics = Metrics::new()
            .with("free_energy", mean_f)
            .with("z_norm", z_norm(&fe.z)?);
        let f_bar = match (&mut self.contrastive, self.loss.is_contrastive()) {
            (Some(c), true) => {
                let values = c(ctx, &fixed)?;
                let data = Data {
                    values,
                    subsamples: fixed.subsamples.clone(),
                };
                let fb = self.energy.infer(ctx, &mut self.inference, &data)?;
                let m = fb.mean()?;
                self.guard("contrastive samples", m)?;
                metrics.insert("contrastive_free_energy", m);
                Some(fb.f)
            }
            (None, true) => {
                return Err(PplError::config(
                    "Ebm",
                    format!(
                        "{:?} needs contrastive samples (Ebm::with_contrastive)",
                        self.loss
                    ),
                ))
            }
            _ => None,
        };
        let mut loss = self.loss.value(&fe.f, f_bar.as_ref())?;
        let value = scalar(&loss)?;
        if self.train_encoder {
            if let Some(p) = &pred {
                let reg = encoder_loss(p, &fe.z)?;
                metrics.insert("encoder_loss", scalar(&reg)?);
                let reg = reg.to_dtype(loss.dtype())?;
                loss = (loss + reg)?;
            }
        }
        self.steps += 1;
        self.last = Some(fe);
        Ok(StepOutput {
            loss,
            value,
            metrics,
        })
    }
}
