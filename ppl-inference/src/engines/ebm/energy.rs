use crate::importance::ModelInfo;
use candle_core::{DType, Tensor};
use ppl_core::handlers::{Condition, Handler, Substitute};
use ppl_core::{describe_plates, ChoiceMap, Constraint, Ctx, Message, Model, PlateOpts};
use ppl_core::{PplError, Result, SiteKind, SiteName, Trace};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Name of the plate that vectorises grid points, samples and restarts.
pub const EBM_PLATE: &str = "__ebm";

/// A penalty on the latents added to the energy during inference and in the loss.
///
/// `L1(λ)` adds `λ Σ|z|`, `L2(λ)` adds `λ Σ z²` per data point (summed over every searched
/// latent element of the point). The same effect can be had through the prior: a
/// `Normal(0, σ)` latent adds `z² / (2σ²)` (plus a constant), a `Laplace(0, b)` latent
/// `|z| / b`; a bounded range comes from a latent's support (`Uniform(lo, hi)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Penalty {
    /// No penalty.
    None,
    /// `λ Σ |z|`.
    L1(f64),
    /// `λ Σ z²`.
    L2(f64),
}

/// Replacement data and fixed minibatches for an energy evaluation.
///
/// By default ([`Data::model`]) a run uses the model's own data and draws its own
/// subsample. `values` replaces observed sites and inputs ([`Ctx::input`]) by name, e.g.
/// contrastive observations `ȳ` or new data; `subsamples` fixes the subsample indices of
/// plates by plate name (every run of one training step uses the same minibatch).
#[derive(Debug, Clone, Default)]
pub struct Data {
    /// Observed sites and inputs to replace, by name.
    pub values: ChoiceMap,
    /// Subsample indices to reuse, by plate name.
    pub subsamples: ChoiceMap,
}

impl Data {
    /// The model's own data.
    pub fn model() -> Self {
        Self::default()
    }

    /// The model with observed sites / inputs replaced by `values`.
    pub fn with_values(values: ChoiceMap) -> Self {
        Data {
            values,
            subsamples: ChoiceMap::new(),
        }
    }
}

/// What the engine knows about a searched (latent) site, from the probe run.
#[derive(Debug, Clone)]
pub(crate) struct LatentInfo {
    pub name: SiteName,
    /// Rank of the site's value in a plain run (batch + event).
    pub rank: usize,
    /// Number of event dims.
    pub event_rank: usize,
    /// The axis of the data plate in the site's value (plain run).
    pub data_axis: usize,
    /// The support, with a constant `Uniform` range turned into `Interval`.
    pub support: Constraint,
    /// Whether the prior is `Uniform` (constant density: not part of the energy).
    pub flat: bool,
}

/// One vectorised evaluation: energies `[G, B]` and what MC estimators need.
#[derive(Debug, Clone)]
pub(crate) struct Evaluation {
    /// `E = −Σ log p(observed, factors) − Σ log p(non-uniform latents) + penalty`, `[G, B]`.
    pub energy: Tensor,
    /// `E` without any latent prior term (the prior as base measure), `[G, B]`.
    pub energy_no_prior: Tensor,
    /// `Σ log p(latents)` (all latent priors), `[G, B]`.
    pub log_prior: Tensor,
    /// The trace of the run.
    pub trace: Trace,
}

/// A model read as an energy `E(x, y, z)` per data point.
///
/// The energy of a model: `E(x, y, z) = −log p(y, z | x)` of the model's trace with the
/// latents `z` substituted, per element of the data plate: observed sites and `factor`
/// terms (a `factor("energy", −E)` inside the data plate is the usual way to write an
/// energy), plus `−log p(z)` of every latent whose prior is not `Uniform`, plus an
/// optional [`Penalty`]. A `Uniform` prior has the constant density `1/|Z|` on its support:
/// that constant is the normalisation of the relaxed free energy
/// `F_β = −(1/β) log((1/|Z|) ∫ exp(−βE) dz)`, so such a latent only gives the support (and
/// its contribution to `E` is 0). An `ImproperUniform` latent (flat on the reals,
/// `log p = 0`) is an unregularised `z ∈ R^d`; it cannot be sampled, so search it by a
/// grid or refine it from a grid, an encoder or given starts. A `Normal(0, σ)` prior is
/// L2 regularisation of `z`.
/// Sites outside the data plate (priors or penalties on parameters) are not part of the
/// per-point energy; every latent must be inside the data plate (a latent per point).
///
/// Every evaluation runs the model once inside an extra outermost plate ([`EBM_PLATE`], at
/// dim `−(nesting + 1)`) of size `G`: `G` candidate values of `z` for all `B` points at
/// once, read back as energies `[G, B]`. The search methods are
/// [`grid_search`](EnergyModel::grid_search), [`refine`](EnergyModel::refine),
/// [`sample_free_energy`](EnergyModel::sample_free_energy) and, combining them,
/// [`infer`](EnergyModel::infer).
pub struct EnergyModel<'a, M: ?Sized> {
    pub(crate) model: &'a M,
    pub(crate) plate: String,
    pub(crate) penalty: Penalty,
    pub(crate) periodic: HashMap<SiteName, (f64, f64)>,
    pub(crate) nesting: usize,
    pub(crate) latents: Vec<LatentInfo>,
    pub(crate) initialised: bool,
}

impl<'a, M: Model + ?Sized> EnergyModel<'a, M> {
    /// The energy of `model` per element of its data plate `plate`.
    pub fn new(model: &'a M, plate: impl Into<String>) -> Self {
        EnergyModel {
            model,
            plate: plate.into(),
            penalty: Penalty::None,
            periodic: HashMap::new(),
            nesting: 0,
            latents: Vec::new(),
            initialised: false,
        }
    }

    /// Adds `penalty` on the latents to the energy (see [`Penalty`]).
    pub fn with_penalty(mut self, penalty: Penalty) -> Result<Self> {
        if let Penalty::L1(l) | Penalty::L2(l) = penalty {
            if !(l.is_finite() && l >= 0.0) {
                return Err(PplError::config(
                    "EnergyModel::with_penalty",
                    format!("the penalty weight must be finite and non-negative, got {l}"),
                ));
            }
        }
        self.penalty = penalty;
        Ok(self)
    }

    /// Declares latent `site` an angle of period `period` starting at `lo` (values in
    /// `[lo, lo + period)`): gradient refinement wraps it onto that range instead of
    /// mapping the reals onto its support.
    pub fn periodic(mut self, site: impl Into<SiteName>, lo: f64, period: f64) -> Result<Self> {
        let site = site.into();
        if !(lo.is_finite() && period.is_finite() && period > 0.0) {
            return Err(PplError::config(
                "EnergyModel::periodic",
                format!("site `{site}`: need a finite start and a positive period, got lo = {lo}, period = {period}"),
            ));
        }
        self.periodic.insert(site, (lo, period));
        Ok(self)
    }

    /// The name of the data plate.
    pub fn plate(&self) -> &str {
        &self.plate
    }

    /// The names of the latent sites (after [`EnergyModel::init`]), in model order.
    pub fn latent_names(&self) -> Vec<SiteName> {
        self.latents.iter().map(|l| l.name.clone()).collect()
    }

    /// Probes the model once (without advancing the context's random stream): learns the
    /// plate nesting and the latent sites, and checks that every latent is inside the
    /// data plate and that every periodic site exists. Idempotent; every search method
    /// calls it when it has not run.
    pub fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        // A flat improper latent cannot be drawn: the probe gives it zeros.
        let model = self.model;
        let probe = move |ctx: &mut Ctx| -> Result<()> {
            let zeros = Substitute::with_fn(|msg: &Message| {
                let d = msg
                    .dist
                    .as_ref()
                    .filter(|d| d.family() == "ImproperUniform")?;
                let mut shape = d.batch_shape().to_vec();
                shape.extend_from_slice(d.event_shape());
                Tensor::zeros(shape, d.dtype(), &d.device()).ok()
            });
            ctx.handle(zeros, |ctx| model.run(ctx).map(|_| ()))
                .map(|(r, _)| r)
        };
        let info = ModelInfo::probe_model(ctx, &probe)?;
        let in_plate = |s: &ppl_core::Site| s.plates.iter().any(|f| f.name.matches(&self.plate));
        if !info.model.sites().iter().any(in_plate) {
            return Err(PplError::config(
                "EnergyModel",
                format!(
                    "the model has no site inside a plate named `{}`",
                    self.plate
                ),
            ));
        }
        let mut latents = Vec::new();
        for s in info.model.sites() {
            if !s.is_latent() {
                continue;
            }
            let Some(frame) = s.plates.iter().find(|f| f.name.matches(&self.plate)) else {
                return Err(PplError::site(
                    &s.name,
                    describe_plates(&s.plates),
                    format!(
                        "is a latent outside the data plate `{}`: an energy-based model's \
                         latents are per data point (make it a parameter, or move it into \
                         the plate)",
                        self.plate
                    ),
                ));
            };
            let dist = s
                .dist
                .as_ref()
                .ok_or_else(|| PplError::site(&s.name, "", "latent without a distribution"))?;
            let event_rank = dist.event_shape().len();
            let rank = s.value.rank();
            let axis = (rank - event_rank) as isize + frame.dim;
            if axis < 0 {
                return Err(PplError::site(
                    &s.name,
                    describe_plates(&s.plates),
                    format!(
                        "value of shape {:?} has no dim {} for the data plate",
                        s.value.dims(),
                        frame.dim
                    ),
                ));
            }
            let flat = matches!(dist.family(), "Uniform" | "ImproperUniform");
            let mut support = dist.support();
            while let Constraint::Independent(inner, _) = support {
                support = *inner;
            }
            if let Constraint::TensorInterval { low, high } = &support {
                let (l, h) = (
                    ppl_core::tensor::host_f64(low)?,
                    ppl_core::tensor::host_f64(high)?,
                );
                let same = |v: &[f64]| v.iter().all(|x| *x == v[0]);
                support = if !l.is_empty() && same(&l) && same(&h) {
                    Constraint::Interval(l[0], h[0])
                } else {
                    Constraint::TensorInterval {
                        low: low.clone(),
                        high: high.clone(),
                    }
                };
            }
            latents.push(LatentInfo {
                name: s.name.clone(),
                rank,
                event_rank,
                data_axis: axis as usize,
                support,
                flat,
            });
        }
        for name in self.periodic.keys() {
            if !latents.iter().any(|l| &l.name == name) {
                return Err(PplError::config(
                    "EnergyModel::periodic",
                    format!("`{name}` is not a latent site of the model"),
                ));
            }
        }
        self.nesting = info.max_plate_nesting;
        self.latents = latents;
        self.initialised = true;
        Ok(())
    }

    pub(crate) fn ensure_init(&mut self, ctx: &mut Ctx) -> Result<()> {
        if !self.initialised {
            self.init(ctx)?;
        }
        Ok(())
    }

    pub(crate) fn latent(&self, name: &SiteName) -> Result<&LatentInfo> {
        self.latents
            .iter()
            .find(|l| &l.name == name)
            .ok_or_else(|| {
                PplError::config(
                    "EnergyModel",
                    format!(
                        "`{name}` is not a latent site of the model (latents: {:?})",
                        self.latent_names()
                    ),
                )
            })
    }

    /// Energies `[G, B]` of the `G` candidate latents `z` (each value `[G, …]` with the
    /// site's shape after the leading `G`, or broadcastable to it, e.g. `[G]` for one
    /// value per candidate shared by all points) at the data `data`, in one model run.
    /// Every latent must be given.
    pub fn energies(&mut self, ctx: &mut Ctx, z: &ChoiceMap, data: &Data) -> Result<Tensor> {
        self.ensure_init(ctx)?;
        let g = self.leading(z)?;
        Ok(self.evaluate(ctx, g, Some(z), data)?.energy)
    }

    /// Energies `[B]` at one value of the latents per point (each value with the site's
    /// own shape, as a plain run of the model has it).
    pub fn energy(&mut self, ctx: &mut Ctx, z: &ChoiceMap, data: &Data) -> Result<Tensor> {
        self.ensure_init(ctx)?;
        let mut lifted = ChoiceMap::new();
        for (n, v) in z.iter() {
            lifted.insert(n.clone(), v.unsqueeze(0)?);
        }
        Ok(self
            .evaluate(ctx, 1, Some(&lifted), data)?
            .energy
            .squeeze(0)?)
    }

    /// The common leading size of the values in `z`, checked.
    pub(crate) fn leading(&self, z: &ChoiceMap) -> Result<usize> {
        let mut g = None;
        for (n, v) in z.iter() {
            self.latent(n)?;
            let d = v.dims().first().copied().ok_or_else(|| {
                PplError::config(
                    "EnergyModel",
                    format!("value of `{n}` is a scalar; it needs a leading candidate dim"),
                )
            })?;
            match g {
                None => g = Some(d),
                Some(h) if h != d => {
                    return Err(PplError::config(
                        "EnergyModel",
                        format!(
                            "values have different leading (candidate) sizes: {h} and {d} at `{n}`"
                        ),
                    ))
                }
                _ => {}
            }
        }
        g.filter(|g| *g > 0).ok_or_else(|| {
            PplError::config(
                "EnergyModel",
                "no latent values given, or a candidate size of 0",
            )
        })
    }

    /// Runs the model once inside [`EBM_PLATE`] of size `g`, latents substituted by `z`
    /// (or drawn from their priors when `z` is `None`).
    pub(crate) fn evaluate(
        &self,
        ctx: &mut Ctx,
        g: usize,
        z: Option<&ChoiceMap>,
        data: &Data,
    ) -> Result<Evaluation> {
        if let Some(z) = z {
            for n in z.names() {
                self.latent(n)?;
            }
        }
        let failure: Arc<Mutex<Option<PplError>>> = Arc::new(Mutex::new(None));
        let values = z.cloned();
        let fail = failure.clone();
        let sub = Substitute::with_fn(move |msg: &Message| {
            let values = values.as_ref()?;
            let v = values.get(&msg.name)?;
            match fit_value(msg, v) {
                Ok(t) => Some(t),
                Err(e) => {
                    if let Ok(mut f) = fail.lock() {
                        f.get_or_insert(e);
                    }
                    None
                }
            }
        });
        let opts = PlateOpts {
            dim: Some(-(self.nesting as isize) - 1),
            outermost: true,
            ..Default::default()
        };
        let model = self.model;
        let ((), trace) = ctx.trace(|ctx| {
            let run =
                |ctx: &mut Ctx| ctx.plate(EBM_PLATE, g, opts, |ctx, _| model.run(ctx).map(|_| ()));
            ctx.handle(KeepSubsamples(data.subsamples.clone()), |ctx| {
                ctx.handle(Condition::new(data.values.clone()), |ctx| {
                    ctx.handle(sub, run).map(|(r, _)| r)
                })
                .map(|(r, _)| r)
            })
            .map(|(r, _)| r)
        })?;
        if let Some(e) = failure.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        if let Some(z) = z {
            for l in &self.latents {
                if !z.contains(&l.name) {
                    return Err(PplError::config(
                        "EnergyModel",
                        format!(
                            "no value for latent `{}`: every latent must be searched",
                            l.name
                        ),
                    ));
                }
            }
        }
        self.reduce(&trace, g)
    }

    fn reduce(&self, trace: &Trace, g: usize) -> Result<Evaluation> {
        let mut obs: Option<Tensor> = None;
        let mut prior_e: Option<Tensor> = None;
        let mut log_prior: Option<Tensor> = None;
        let mut penalty: Option<Tensor> = None;
        let add = |acc: &mut Option<Tensor>, t: Tensor| -> Result<()> {
            *acc = Some(match acc.take() {
                None => t,
                Some(a) => {
                    let t = t.to_dtype(a.dtype())?;
                    (a + t)?
                }
            });
            Ok(())
        };
        for s in trace.sites() {
            let Some(frame) = s.plates.iter().find(|f| f.name.matches(&self.plate)) else {
                continue;
            };
            if s.is_latent() {
                let info = self.latent(&s.name)?;
                let lp = s.masked_log_prob()?;
                let lp = to_grid_batch(&s.name, &lp, frame.dim, g)?;
                if !info.flat {
                    add(&mut prior_e, lp.neg()?)?;
                }
                add(&mut log_prior, lp)?;
                let pen = match self.penalty {
                    Penalty::None => None,
                    Penalty::L1(l) => Some(s.value.abs()?.affine(l, 0.0)?),
                    Penalty::L2(l) => Some(s.value.sqr()?.affine(l, 0.0)?),
                };
                if let Some(p) = pen {
                    let p = ppl_core::tensor::sum_rightmost(&p, info.event_rank)?;
                    add(&mut penalty, to_grid_batch(&s.name, &p, frame.dim, g)?)?;
                }
            } else if s.has_density() {
                let lp = s.masked_log_prob()?;
                add(&mut obs, to_grid_batch(&s.name, &lp, frame.dim, g)?.neg()?)?;
            }
        }
        let obs = obs.ok_or_else(|| {
            PplError::config(
                "EnergyModel",
                format!(
                    "no observed site or factor inside the data plate `{}`: the energy is empty",
                    self.plate
                ),
            )
        })?;
        let mut no_prior = obs.clone();
        if let Some(p) = penalty {
            no_prior = no_prior.broadcast_add(&p.to_dtype(obs.dtype())?)?;
        }
        let energy = match &prior_e {
            Some(p) => no_prior.broadcast_add(&p.to_dtype(obs.dtype())?)?,
            None => no_prior.clone(),
        };
        let log_prior = match log_prior {
            Some(p) => p.to_dtype(obs.dtype())?,
            None => energy.zeros_like()?,
        };
        Ok(Evaluation {
            energy,
            energy_no_prior: no_prior,
            log_prior,
            trace: trace.clone(),
        })
    }
}

/// A site's batch-shaped tensor (grid axis 0, data plate at `dim`) summed to `[G, B]`.
fn to_grid_batch(name: &SiteName, t: &Tensor, dim: isize, g: usize) -> Result<Tensor> {
    let rank = t.rank();
    let data_axis = rank as isize + dim;
    if data_axis <= 0 || t.dim(0)? != g {
        return Err(PplError::site(
            name,
            "",
            format!(
                "log density of shape {:?} has no candidate dim of size {g} at 0 and data \
                 dim {dim} right of it",
                t.dims()
            ),
        ));
    }
    let data_axis = data_axis as usize;
    let mut out = t.clone();
    for d in (1..rank).rev() {
        if d != data_axis {
            out = out.sum(d)?;
        }
    }
    Ok(out)
}

/// A candidate value `[G, …]` reshaped and broadcast to the site's full shape (its
/// distribution's batch + event shape inside the candidate plate), in its dtype.
fn fit_value(msg: &Message, v: &Tensor) -> Result<Tensor> {
    let Some(d) = &msg.dist else {
        return Ok(v.clone());
    };
    let mut target: Vec<usize> = d.batch_shape().to_vec();
    target.extend_from_slice(d.event_shape());
    let mut v = v.to_dtype(d.dtype())?;
    if v.rank() < target.len() && v.rank() >= 1 {
        let mut shape = vec![v.dim(0)?];
        shape.extend(std::iter::repeat_n(1, target.len() - v.rank()));
        shape.extend_from_slice(&v.dims()[1..]);
        v = v.reshape(shape)?;
    }
    v.broadcast_as(target.as_slice())
        .map_err(|_| {
            PplError::site(
                &msg.name,
                describe_plates(&msg.plates),
                format!(
                    "candidate values of shape {:?} do not fit the site's shape {:?} (a leading \
                     candidate dim, then the site's shape or one broadcastable to it)",
                    v.dims(),
                    target
                ),
            )
        })?
        .contiguous()
        .map_err(Into::into)
}

/// Keeps given subsample indices (by plate name) so that every run of a step sees the
/// same minibatch.
struct KeepSubsamples(ChoiceMap);

impl Handler for KeepSubsamples {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Subsample {
            if let Some(v) = self.0.get(&msg.name) {
                msg.value = Some(v.clone());
            }
        }
        Ok(())
    }
}

/// The subsample indices a trace drew, by plate name.
pub(crate) fn subsamples_of(trace: &Trace) -> ChoiceMap {
    let mut out = ChoiceMap::new();
    for s in trace.sites() {
        if s.kind == SiteKind::Subsample {
            out.insert(s.name.clone(), s.value.clone());
        }
    }
    out
}

/// Selects along axis 0 of `v` (`[G, …]`) one row per data point: `out[…, b, …] =
/// v[idx[b], …, b, …]` with the data plate at axis `data_axis` of `v`. Returns `v`'s shape
/// without axis 0.
pub(crate) fn select_per_point(v: &Tensor, idx: &Tensor, data_axis: usize) -> Result<Tensor> {
    let dims = v.dims().to_vec();
    let b = idx.dim(0)?;
    let mut shape = vec![1usize; dims.len()];
    shape[data_axis] = b;
    let mut full = dims.clone();
    full[0] = 1;
    if dims[data_axis] != b {
        let v2 = v.broadcast_as({
            let mut d = dims.clone();
            d[data_axis] = b;
            d
        })?;
        return select_per_point(&v2.contiguous()?, idx, data_axis);
    }
    let index = idx
        .to_dtype(DType::U32)?
        .reshape(shape)?
        .broadcast_as(full)?
        .contiguous()?;
    Ok(v.contiguous()?.gather(&index, 0)?.squeeze(0)?)
}
