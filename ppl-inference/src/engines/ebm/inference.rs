use super::energy::{Data, EnergyModel};
use super::free_energy::{FreeEnergy, Temperature};
use super::grid::Grid;
use super::refine::{Refine, Starts};
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result};

/// An amortised encoder: predicts the latents per point (each value with the site's own
/// shape) from the data of the run: `Data::subsamples` holds the minibatch's indices and
/// `Data::values` any replaced observations (e.g. the contrastive `ȳ`).
pub type Encoder<'a> = Box<dyn FnMut(&mut Ctx, &Data) -> Result<ChoiceMap> + 'a>;

/// How to infer the free energy: a grid or samples, then optionally gradient refinement.
///
/// One recipe for [`EnergyModel::infer`] and the [`Ebm`](super::Ebm) engine:
/// 1. a candidate search: a [`Grid`] ([`Inference::grid`]) or `S` prior samples
///    ([`Inference::samples`]), at a [`Temperature`] (`Zero` by default);
/// 2. optionally [`Refine`]ment at zero temperature from the candidates' best `ž`, from
///    `R` prior draws ([`Inference::with_prior_restarts`]) and from an amortised
///    [`Encoder`]'s prediction ([`Inference::with_encoder`]); the best restart per point
///    is kept.
pub struct Inference<'a> {
    grid: Option<Grid>,
    samples: usize,
    temperature: Temperature,
    refine: Option<Refine>,
    prior_restarts: usize,
    encoder: Option<Encoder<'a>>,
}

impl std::fmt::Debug for Inference<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inference")
            .field("grid", &self.grid.as_ref().map(|g| g.len()))
            .field("samples", &self.samples)
            .field("temperature", &self.temperature)
            .field("refine", &self.refine)
            .field("prior_restarts", &self.prior_restarts)
            .field("encoder", &self.encoder.is_some())
            .finish()
    }
}

impl<'a> Inference<'a> {
    fn empty() -> Self {
        Inference {
            grid: None,
            samples: 0,
            temperature: Temperature::Zero,
            refine: None,
            prior_restarts: 0,
            encoder: None,
        }
    }

    /// Exhaustive search over `grid` (zero temperature unless
    /// [`with_temperature`](Inference::with_temperature)).
    pub fn grid(grid: Grid) -> Self {
        Inference {
            grid: Some(grid),
            ..Self::empty()
        }
    }

    /// `s` samples from the latents' priors per point (Monte Carlo `F_β`, see
    /// [`EnergyModel::sample_free_energy`]; at zero temperature the best sample). The
    /// prior is the base measure here, so its terms are not part of the energy (the same
    /// for `Uniform` priors, whose terms are never part of it).
    ///
    /// ```no_run
    /// # use ppl_inference::engines::{Inference, Temperature};
    /// let inf = Inference::samples(1000).with_temperature(Temperature::Beta(2.0));
    /// ```
    pub fn samples(s: usize) -> Self {
        Inference {
            samples: s,
            ..Self::empty()
        }
    }

    /// Gradient refinement alone, from `r ≥ 1` prior draws and/or an encoder.
    pub fn refined(refine: Refine, r: usize) -> Self {
        Inference {
            refine: Some(refine),
            prior_restarts: r,
            ..Self::empty()
        }
    }

    /// The temperature of the free energy (grid or samples).
    pub fn with_temperature(mut self, t: Temperature) -> Self {
        self.temperature = t;
        self
    }

    /// Refines the candidates' best `ž` by gradients (zero temperature only).
    pub fn with_refine(mut self, refine: Refine) -> Self {
        self.refine = Some(refine);
        self
    }

    /// Adds `r` restarts drawn from the priors to the refinement.
    pub fn with_prior_restarts(mut self, r: usize) -> Self {
        self.prior_restarts = r;
        self
    }

    /// Adds an encoder's prediction as a refinement start (amortised initialisation);
    /// [`Ebm::with_encoder_training`](super::Ebm::with_encoder_training) trains it.
    pub fn with_encoder(
        mut self,
        encoder: impl FnMut(&mut Ctx, &Data) -> Result<ChoiceMap> + 'a,
    ) -> Self {
        self.encoder = Some(Box::new(encoder));
        self
    }

    /// The temperature.
    pub fn temperature(&self) -> Temperature {
        self.temperature
    }

    pub(crate) fn has_encoder(&self) -> bool {
        self.encoder.is_some()
    }

    fn check(&self) -> Result<()> {
        self.temperature.check()?;
        if self.grid.is_some() && self.samples > 0 {
            return Err(PplError::config(
                "Inference",
                "use a grid or samples, not both",
            ));
        }
        let candidates = self.grid.is_some() || self.samples > 0;
        if self.refine.is_some() {
            if self.temperature != Temperature::Zero {
                return Err(PplError::config(
                    "Inference",
                    "gradient refinement minimises the energy (zero temperature); a relaxed \
                     free energy comes from a grid or samples alone",
                ));
            }
            if !candidates && self.prior_restarts == 0 && self.encoder.is_none() {
                return Err(PplError::config(
                    "Inference",
                    "refinement needs starts: a grid, samples, prior restarts or an encoder",
                ));
            }
        } else if !candidates {
            return Err(PplError::config(
                "Inference",
                "nothing to search: give a grid, samples or refinement",
            ));
        }
        Ok(())
    }
}

impl<M: Model + ?Sized> EnergyModel<'_, M> {
    /// Inference per data point as `inference` describes, on `data` (see [`Inference`]).
    /// The free energy `f` is differentiable in the model's parameters: the grid's or
    /// samples' (log-sum-exp) expression, or after refinement the energy at the detached
    /// minimiser (envelope theorem: `∇_θ F∞ = ∇_θ E(x, y, ž)`).
    pub fn infer(
        &mut self,
        ctx: &mut Ctx,
        inference: &mut Inference,
        data: &Data,
    ) -> Result<FreeEnergy> {
        Ok(self.infer_with_prediction(ctx, inference, data)?.0)
    }

    /// [`EnergyModel::infer`] and the encoder's prediction, if any.
    pub(crate) fn infer_with_prediction(
        &mut self,
        ctx: &mut Ctx,
        inf: &mut Inference,
        data: &Data,
    ) -> Result<(FreeEnergy, Option<ChoiceMap>)> {
        self.ensure_init(ctx)?;
        inf.check()?;
        let mut data = data.clone();
        let base = if let Some(grid) = &inf.grid {
            Some(self.grid_search(ctx, grid, inf.temperature, &data)?)
        } else if inf.samples > 0 {
            let beta = match inf.temperature {
                Temperature::Beta(b) => b,
                Temperature::Zero => f64::INFINITY,
            };
            let mut fe = if beta.is_finite() {
                self.sample_free_energy(ctx, inf.samples, beta, None, &data)?
            } else {
                let mut fe = self.sample_free_energy(ctx, inf.samples, 1.0, None, &data)?;
                fe.f = fe.energy.clone();
                fe.weights = None;
                fe
            };
            if data.subsamples.is_empty() {
                data.subsamples = fe.subsamples.clone();
            }
            fe.subsamples = data.subsamples.clone();
            Some(fe)
        } else {
            None
        };
        if let Some(b) = &base {
            if data.subsamples.is_empty() {
                data.subsamples = b.subsamples.clone();
            }
        }
        let Some(refine) = inf.refine else {
            return base
                .map(|b| (b, None))
                .ok_or_else(|| PplError::config("Inference", "nothing to search"));
        };
        let mut starts: Option<Starts> = None;
        let mut push = |s: Starts| -> Result<()> {
            starts = Some(match starts.take() {
                None => s,
                Some(a) => a.and(s)?,
            });
            Ok(())
        };
        if let Some(b) = &base {
            push(Starts::from_choices(&b.z)?)?;
        }
        if inf.prior_restarts > 0 {
            let (s, drawn) = self.prior_starts_with(ctx, inf.prior_restarts, &data)?;
            if data.subsamples.is_empty() {
                // The prior draws' run drew the minibatch: keep it.
                data.subsamples = drawn;
            }
            push(s)?;
        }
        let mut prediction = None;
        if let Some(enc) = &mut inf.encoder {
            let p = enc(ctx, &data)?;
            push(Starts::from_choices(&p)?)?;
            prediction = Some(p);
        }
        let starts =
            starts.ok_or_else(|| PplError::config("Inference", "refinement needs starts"))?;
        let refined = self.refine(ctx, &starts, &refine, &data)?;
        data.subsamples = refined.subsamples.clone();
        let e = self.energy(ctx, &refined.z, &data)?;
        Ok((
            FreeEnergy {
                f: e.clone(),
                energy: e,
                z: refined.z,
                energies: base.as_ref().and_then(|b| b.energies.clone()),
                weights: None,
                subsamples: data.subsamples,
            },
            prediction,
        ))
    }
}
