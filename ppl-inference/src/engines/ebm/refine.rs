use super::energy::{select_per_point, subsamples_of, Data, EnergyModel, LatentInfo};
use super::free_energy::FreeEnergy;
use candle_core::{Tensor, Var};
use ppl_core::transforms::{biject_to, Transform};
use ppl_core::{ChoiceMap, Constraint, Ctx, Model, PplError, Result};
use std::sync::Arc;

/// The update rule of gradient refinement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// `u ← u − lr ∇_u E`.
    GradientDescent {
        /// The step size.
        lr: f64,
    },
    /// Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) per element of `u`.
    Adam {
        /// The step size.
        lr: f64,
    },
    /// L-BFGS per point (two-loop recursion over the last `history` pairs of each point,
    /// Armijo backtracking line search per point from the unit step), vectorised over
    /// points and restarts. Hand-written: the problems are many small independent ones,
    /// which a general solver would run one by one.
    Lbfgs {
        /// The number of `(s, y)` pairs kept (≥ 1).
        history: usize,
    },
}

/// Gradient refinement of the latents: a method and a number of steps.
///
/// Every point (and restart) is its own minimisation problem; they run together as one
/// vectorised model run per step, and the sum of their energies is differentiated (the
/// gradient of the sum with respect to one point's latents is that point's gradient).
/// The latents are optimised in unconstrained coordinates `u`: `z = T(u)` with `T` the
/// bijection onto the site's support (`biject_to`; the identity on the reals), or the
/// wrap onto `[lo, lo + period)` for a site declared [periodic](EnergyModel::periodic).
/// The best iterate per point is kept, so refinement never increases a point's energy.
/// Only the latents move: nothing is applied to the model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Refine {
    /// The update rule.
    pub method: Method,
    /// The number of gradient steps.
    pub steps: usize,
}

impl Refine {
    /// `steps` steps of plain gradient descent with step size `lr > 0`.
    pub fn gradient_descent(lr: f64, steps: usize) -> Result<Self> {
        Self::check(lr)?;
        Ok(Refine {
            method: Method::GradientDescent { lr },
            steps,
        })
    }

    /// `steps` steps of Adam with step size `lr > 0`.
    pub fn adam(lr: f64, steps: usize) -> Result<Self> {
        Self::check(lr)?;
        Ok(Refine {
            method: Method::Adam { lr },
            steps,
        })
    }

    /// `steps` iterations of L-BFGS keeping `history ≥ 1` pairs (each iteration runs the
    /// model for the gradient and for each line-search trial).
    pub fn lbfgs(history: usize, steps: usize) -> Result<Self> {
        if history == 0 {
            return Err(PplError::config(
                "Refine::lbfgs",
                "the history must be at least 1",
            ));
        }
        Ok(Refine {
            method: Method::Lbfgs { history },
            steps,
        })
    }

    fn check(lr: f64) -> Result<()> {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::config(
                "Refine",
                format!("the step size must be positive and finite, got {lr}"),
            ));
        }
        Ok(())
    }
}

/// Starting points of refinement: `R` restarts, each a value per latent site.
///
/// Each value is `[R, …site shape]`. Restarts are vectorised (another outermost plate);
/// after refinement the best restart per point is kept.
#[derive(Debug, Clone)]
pub struct Starts {
    r: usize,
    values: ChoiceMap,
}

impl Starts {
    /// One start per point: `z` holds a value per latent with the site's own shape (e.g.
    /// [`FreeEnergy::z`] from a grid search, or an encoder's prediction).
    pub fn from_choices(z: &ChoiceMap) -> Result<Self> {
        let mut values = ChoiceMap::new();
        for (n, v) in z.iter() {
            values.insert(n.clone(), v.detach().unsqueeze(0)?);
        }
        Self::stacked(values)
    }

    /// `R` starts per point: every value is `[R, …site shape]`.
    pub fn stacked(values: ChoiceMap) -> Result<Self> {
        let mut r = None;
        for (n, v) in values.iter() {
            let d = v.dims().first().copied().unwrap_or(0);
            if d == 0 || r.is_some_and(|r| r != d) {
                return Err(PplError::config(
                    "Starts",
                    format!(
                        "`{n}` has shape {:?}; every value needs the same leading number of \
                         restarts (≥ 1)",
                        v.dims()
                    ),
                ));
            }
            r = Some(d);
        }
        let r = r.ok_or_else(|| PplError::config("Starts", "no latent values"))?;
        Ok(Starts { r, values })
    }

    /// `self`'s restarts followed by `other`'s (the same sites).
    pub fn and(self, other: Starts) -> Result<Self> {
        let mut values = ChoiceMap::new();
        for (n, v) in self.values.iter() {
            let w = other.values.get(n).ok_or_else(|| {
                PplError::config(
                    "Starts::and",
                    format!("`{n}` is missing from the second set"),
                )
            })?;
            values.insert(n.clone(), Tensor::cat(&[v, &w.to_dtype(v.dtype())?], 0)?);
        }
        if other.values.len() != self.values.len() {
            return Err(PplError::config(
                "Starts::and",
                "the two sets of starts have different sites",
            ));
        }
        Self::stacked(values)
    }

    /// The number of restarts `R`.
    pub fn len(&self) -> usize {
        self.r
    }

    /// Whether there is no restart (never).
    pub fn is_empty(&self) -> bool {
        self.r == 0
    }

    /// The values, `[R, …site shape]` per site.
    pub fn values(&self) -> &ChoiceMap {
        &self.values
    }
}

/// How a site's unconstrained coordinates map to its value.
enum Coord {
    Periodic(f64, f64),
    Bijection(Arc<dyn Transform>, bool),
}

impl Coord {
    fn of(l: &LatentInfo, periodic: Option<&(f64, f64)>) -> Result<Self> {
        if let Some(&(lo, p)) = periodic {
            return Ok(Coord::Periodic(lo, p));
        }
        if l.support.is_discrete() || matches!(l.support, Constraint::TensorInterval { .. }) {
            return Err(PplError::site(
                &l.name,
                "",
                format!(
                    "cannot be refined by gradients: its support is {} (search it on a grid; \
                     a Uniform latent needs scalar bounds, or declare it periodic)",
                    l.support.describe()
                ),
            ));
        }
        let t = biject_to(&l.support).map_err(|e| PplError::at_site(&l.name, "", e))?;
        let identity = matches!(l.support, Constraint::Real | Constraint::RealVector);
        Ok(Coord::Bijection(t, identity))
    }

    fn forward(&self, u: &Tensor) -> Result<Tensor> {
        match self {
            Coord::Periodic(lo, p) => {
                let k = u.affine(1.0 / p, -lo / p)?.floor()?.detach();
                Ok((u - k.affine(*p, 0.0)?)?)
            }
            Coord::Bijection(t, _) => t.forward(u),
        }
    }

    fn inverse(&self, z: &Tensor) -> Result<Tensor> {
        match self {
            Coord::Periodic(..) => Ok(z.clone()),
            Coord::Bijection(_, true) => Ok(z.clone()),
            // A start on the boundary of the support maps to ±∞: keep it finite.
            Coord::Bijection(t, false) => Ok(t.inverse(z)?.clamp(-30.0, 30.0)?),
        }
    }
}

impl<M: Model + ?Sized> EnergyModel<'_, M> {
    /// `r` starts per point drawn from the latents' priors, in one run.
    pub fn prior_starts(&mut self, ctx: &mut Ctx, r: usize, data: &Data) -> Result<Starts> {
        Ok(self.prior_starts_with(ctx, r, data)?.0)
    }

    /// [`EnergyModel::prior_starts`] and the subsample indices the run used.
    pub(crate) fn prior_starts_with(
        &mut self,
        ctx: &mut Ctx,
        r: usize,
        data: &Data,
    ) -> Result<(Starts, ChoiceMap)> {
        self.ensure_init(ctx)?;
        if r == 0 {
            return Err(PplError::config("EnergyModel::prior_starts", "need r ≥ 1"));
        }
        let ev = self.evaluate(ctx, r, None, data)?;
        let mut values = ChoiceMap::new();
        for l in &self.latents {
            let mut v = ev.trace.value(l.name.clone())?.detach();
            while v.rank() > l.rank + 1 {
                v = v.squeeze(1)?;
            }
            values.insert(l.name.clone(), v);
        }
        Ok((Starts::stacked(values)?, subsamples_of(&ev.trace)))
    }

    /// Gradient refinement (see [`Refine`]) from `starts`: per point the lowest energy
    /// reached over all restarts and iterates. The result's `f` and `energy` are that
    /// energy, detached (evaluate [`EnergyModel::energy`] at `z` for a differentiable
    /// `F∞`); `energies` holds the best energy of each restart `[R, B]`.
    pub fn refine(
        &mut self,
        ctx: &mut Ctx,
        starts: &Starts,
        refine: &Refine,
        data: &Data,
    ) -> Result<FreeEnergy> {
        self.ensure_init(ctx)?;
        let r = starts.r;
        let mut coords = Vec::new();
        let mut us = Vec::new();
        let mut axes = Vec::new();
        for l in &self.latents {
            let z0 = starts.values.get(&l.name).ok_or_else(|| {
                PplError::config(
                    "EnergyModel::refine",
                    format!("no start value for latent `{}`", l.name),
                )
            })?;
            if z0.rank() != l.rank + 1 {
                return Err(PplError::site(
                    &l.name,
                    "",
                    format!(
                        "start of shape {:?} needs rank {} ([R, …site shape])",
                        z0.dims(),
                        l.rank + 1
                    ),
                ));
            }
            let coord = Coord::of(l, self.periodic.get(&l.name))?;
            us.push(coord.inverse(&z0.detach())?);
            coords.push(coord);
            axes.push(l.data_axis + 1);
        }
        let mut run = Run {
            coords,
            axes,
            r,
            data: data.clone(),
            best_e: None,
            best_z: Vec::new(),
        };
        match refine.method {
            Method::Lbfgs { history } => {
                super::lbfgs::minimise(self, ctx, &mut run, us, history, refine.steps)?
            }
            Method::GradientDescent { .. } | Method::Adam { .. } => {
                let mut m: Vec<Tensor> = us
                    .iter()
                    .map(|u| u.zeros_like())
                    .collect::<candle_core::Result<_>>()?;
                let mut v = m.clone();
                for t in 0..=refine.steps {
                    let grads = run.eval(self, ctx, &us, t < refine.steps)?.1;
                    if t == refine.steps {
                        break;
                    }
                    for (k, g) in grads.iter().enumerate() {
                        match refine.method {
                            Method::Adam { lr } => {
                                let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
                                m[k] = (m[k].affine(b1, 0.0)? + g.affine(1.0 - b1, 0.0)?)?;
                                v[k] = (v[k].affine(b2, 0.0)? + g.sqr()?.affine(1.0 - b2, 0.0)?)?;
                                let p = (t + 1) as i32;
                                let mh = m[k].affine(1.0 / (1.0 - b1.powi(p)), 0.0)?;
                                let vh = v[k].affine(1.0 / (1.0 - b2.powi(p)), 0.0)?;
                                let step =
                                    mh.div(&vh.sqrt()?.affine(1.0, eps)?)?.affine(lr, 0.0)?;
                                us[k] = (&us[k] - step)?;
                            }
                            Method::GradientDescent { lr } => {
                                us[k] = (&us[k] - g.affine(lr, 0.0)?)?;
                            }
                            Method::Lbfgs { .. } => {}
                        }
                    }
                }
            }
        }
        let best_e = run
            .best_e
            .ok_or_else(|| PplError::config("EnergyModel::refine", "no step"))?;
        let idx = best_e.argmin(0)?;
        let f = best_e.gather(&idx.unsqueeze(0)?, 0)?.squeeze(0)?;
        let mut zhat = ChoiceMap::new();
        for ((l, bz), axis) in self.latents.iter().zip(&run.best_z).zip(&run.axes) {
            zhat.insert(l.name.clone(), select_per_point(bz, &idx, *axis)?);
        }
        Ok(FreeEnergy {
            f: f.clone(),
            energy: f,
            z: zhat,
            energies: Some(best_e),
            weights: None,
            subsamples: run.data.subsamples,
        })
    }
}

/// The state of one refinement: coordinates, data, and the best iterate per point.
pub(crate) struct Run {
    coords: Vec<Coord>,
    /// The data axis of each site's `[R, …site shape]` tensors.
    pub(crate) axes: Vec<usize>,
    r: usize,
    data: Data,
    best_e: Option<Tensor>,
    best_z: Vec<Tensor>,
}

impl Run {
    /// Energies `[R, B]` at unconstrained `us` (detached) and, when `grad`, their
    /// gradients with respect to `us` (a NaN entry, e.g. outside a support, becomes 0);
    /// records the best iterate per point.
    pub(crate) fn eval<M: Model + ?Sized>(
        &mut self,
        em: &EnergyModel<'_, M>,
        ctx: &mut Ctx,
        us: &[Tensor],
        grad: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let vars = us
            .iter()
            .map(|u| Var::from_tensor(&u.detach()))
            .collect::<candle_core::Result<Vec<_>>>()?;
        let mut z = ChoiceMap::new();
        let mut zs = Vec::with_capacity(us.len());
        for ((l, c), v) in em.latents.iter().zip(&self.coords).zip(&vars) {
            let zv = c.forward(v.as_tensor())?;
            z.insert(l.name.clone(), zv.clone());
            zs.push(zv.detach());
        }
        let ev = em.evaluate(ctx, self.r, Some(&z), &self.data)?;
        if self.data.subsamples.is_empty() {
            self.data.subsamples = subsamples_of(&ev.trace);
        }
        let e = ev.energy.detach();
        self.track(&e, &zs)?;
        let mut grads = Vec::new();
        if grad {
            let store = ev.energy.sum_all()?.backward()?;
            for v in &vars {
                let g = match store.get(v.as_tensor()) {
                    Some(g) => g.clone(),
                    None => v.as_tensor().zeros_like()?,
                };
                grads.push(g.ne(&g)?.where_cond(&g.zeros_like()?, &g)?);
            }
        }
        Ok((e, grads))
    }

    fn track(&mut self, e: &Tensor, zs: &[Tensor]) -> Result<()> {
        match &self.best_e {
            None => {
                self.best_z = zs.to_vec();
                self.best_e = Some(e.clone());
            }
            Some(b) => {
                let better = e.lt(b)?;
                for ((bz, v), axis) in self.best_z.iter_mut().zip(zs).zip(&self.axes) {
                    let m = per_point_mask(&better, v, *axis)?;
                    *bz = m.where_cond(v, bz)?;
                }
                self.best_e = Some(better.where_cond(e, b)?);
            }
        }
        Ok(())
    }
}

/// `mask` `[R, B]` reshaped so that it broadcasts over `v` `[R, …]` with the points at
/// axis `data_axis` of `v`.
pub(crate) fn per_point_mask(mask: &Tensor, v: &Tensor, data_axis: usize) -> Result<Tensor> {
    let mut shape = vec![1usize; v.rank()];
    shape[0] = mask.dim(0)?;
    shape[data_axis] = mask.dim(1)?;
    Ok(mask.reshape(shape)?.broadcast_as(v.dims())?.contiguous()?)
}
