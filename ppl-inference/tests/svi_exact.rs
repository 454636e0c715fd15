//! The SVI estimators against exact answers, in every legitimate way of writing the model:
//! other site orders, vectorised particles, plates, minibatches, f32 and f64.
//!
//! 1. At a guide equal to the exact posterior, `log p(x, z) − log q(z) = log p(x)` for
//!    every `z`: `TraceElbo`, `Iwae` and the Rényi bound give the evidence to rounding
//!    for every particle, and under subsampling are unbiased for it.
//! 2. Away from the posterior, the reparameterised ELBO gradients (loc and scale) and the
//!    ELBO value match the closed-form Gaussian ELBO, also with the guide sampling its
//!    sites in the other order than the model.
//! 3. Discrete latents: the score-function gradient matches the gradient by enumeration,
//!    and a Categorical guide trained with it reaches the exact mixture responsibilities.
//! 4. Autoguides trained end to end reach the exact posterior and evidence.
//!
//! The shared fixtures are in `tests/common`; two formulations are added here: `TwoLevel`
//! (a two-latent chain whose exact guide samples in reverse order) and `PlatedConjugate`
//! (the conjugate model with its coordinates in a plate instead of an event dim). A
//! hand-written `MultivariateNormal` guide for a `Normal(..).to_event(1)` latent is checked
//! too (`check_guide` once refused it: `real vector` vs `real`).

// Row-major host arrays are indexed as `x[i * d + j]` next to other arrays.
#![allow(clippy::needless_range_loop)]

mod common;

use candle_core::{DType, Device, Tensor};
use common::host::{cholesky, mean_and_se};
use common::{
    ctx_on, rows, scalar, test_on_devices, upload_rounded, ConjugateGaussian, GaussianConfig,
    GaussianMixture, LinearRegression, LocalGaussian,
};
use ppl_core::prelude::*;
use ppl_inference::engines::{Iwae, Objective, Svi, TraceElbo};
use ppl_inference::guides::{AutoMultivariateNormal, AutoNormal};
use ppl_inference::{Adam, Trainer};
use std::cell::RefCell;

const DTYPES: [DType; 2] = [DType::F64, DType::F32];

/// The rounding tolerance of a sum of log densities whose terms add up to `s` in absolute
/// value (`s` is bounded by the caller from the fixture: a few tens here). f64: every term
/// is exact to a few ulps (1e-16 relative); 1e-13·(1 + s) is ~1000 ulps of the sum (the
/// measured worst error is 8e-15 at s = 60, against 6e-12). f32: each term is off by a few ulps (6e-8
/// relative) and the sample `z = loc + sd·ε` itself is rounded, so `(z − loc)/sd` is off by
/// ~1e-7·|z|/sd; 3e-7·(1 + s) bounds both (measured worst 2.4e-6 against 1.8e-5). A wrong
/// scale, sign, or a dropped term moves the value by O(1).
fn tol(dtype: DType, s: f64) -> f64 {
    match dtype {
        DType::F64 => 1e-13 * (1.0 + s),
        _ => 3e-7 * (1.0 + s),
    }
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    ppl_core::tensor::host_f64(t).unwrap()
}

// ---------------------------------------------------------------------------------------
// Guides equal to (or, with other parameters, away from) the exact posteriors.

/// `q(z) = N(loc, sd² I_d)` for one global latent `name`, with parameters `q/loc` (`[d]`,
/// real) and `q/sd` (positive); mirrors plate `data` when it is subsampled (so the model
/// replays the guide's minibatch).
struct GlobalNormal {
    name: &'static str,
    /// Sample the `d` coordinates in plate `dims` (dim −1) instead of as an event.
    plated: bool,
    loc: Vec<f64>,
    sd: f64,
    n: usize,
    opts: PlateOpts,
    dtype: DType,
    device: Device,
}

impl GlobalNormal {
    fn for_conjugate(f: &ConjugateGaussian, loc: Vec<f64>, sd: f64) -> Self {
        GlobalNormal {
            name: "z",
            plated: false,
            loc,
            sd,
            n: f.config.n,
            opts: f.plate_opts(),
            dtype: f.dtype,
            device: f.device.clone(),
        }
    }

    fn exact(f: &ConjugateGaussian) -> Self {
        let (mean, var) = f.exact_posterior();
        Self::for_conjugate(f, mean, var.sqrt())
    }
}

impl Model for GlobalNormal {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let d = self.loc.len();
        let (dtype, device) = (self.dtype, &self.device);
        let loc = ctx.param(
            "q/loc",
            || ppl_core::upload(self.loc.clone(), &[d], dtype, device),
            Constraint::Real,
        )?;
        let sd = ctx.param(
            "q/sd",
            || scalar(self.sd, dtype, device),
            Constraint::Positive,
        )?;
        if self.plated {
            ctx.plate("dims", d, dims_opts(), |ctx, _| {
                ctx.sample(self.name, Normal::new(&loc, &sd)?)
            })?;
        } else {
            ctx.sample(self.name, Normal::new(&loc, &sd)?.to_event(1)?)?;
        }
        if self.opts.subsample_size.is_some() {
            let mut opts = self.opts.clone();
            if self.plated {
                opts.dim = Some(-2);
            }
            ctx.plate("data", self.n, opts, |_, _| Ok(()))?;
        }
        Ok(())
    }
}

/// The Gaussian configuration with `d = 2` and non-default hyper-parameters.
fn two_dims() -> GaussianConfig {
    GaussianConfig {
        n: 10,
        d: 2,
        prior_loc: 0.5,
        prior_scale: 1.5,
        noise_scale: 0.8,
    }
}

/// The options of plate `dims` (always dim −1, whichever plate encloses it).
fn dims_opts() -> PlateOpts {
    PlateOpts {
        dim: Some(-1),
        ..Default::default()
    }
}

/// [`ConjugateGaussian`] written with plates instead of event dims: `z_j ~ N(μ0, σ0²)` in
/// plate `dims` (dim −1) and `x_ij ~ N(z_j, σ²)` in plates `data` (dim −2) × `dims`. The
/// same joint density, so the fixture's exact answers hold; particles go at dim −3.
struct PlatedConjugate {
    f: ConjugateGaussian,
    mu0: Tensor,
    s0: Tensor,
    sigma: Tensor,
}

impl PlatedConjugate {
    fn new(f: ConjugateGaussian) -> Self {
        let c = f.config;
        let up = |v: f64| scalar(v, f.dtype, &f.device).unwrap();
        PlatedConjugate {
            mu0: up(c.prior_loc),
            s0: up(c.prior_scale),
            sigma: up(c.noise_scale),
            f,
        }
    }

    /// The exact guide, sampling in plate `dims` too.
    fn exact_guide(&self) -> GlobalNormal {
        GlobalNormal {
            plated: true,
            ..GlobalNormal::exact(&self.f)
        }
    }
}

impl Model for PlatedConjugate {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (n, d) = (self.f.config.n, self.f.config.d);
        let z = ctx.plate("dims", d, dims_opts(), |ctx, _| {
            ctx.sample("z", Normal::new(&self.mu0, &self.s0)?)
        })?;
        let opts = PlateOpts {
            dim: Some(-2),
            ..self.f.plate_opts()
        };
        ctx.plate("data", n, opts, |ctx, g| {
            let x = rows(&self.f.x, g, self.f.subsample)?;
            ctx.plate("dims", d, dims_opts(), |ctx, _| {
                ctx.observe("x", Normal::new(&z, &self.sigma)?, &x)
            })
        })?;
        Ok(())
    }
}

/// `q(w) = N(loc, L Lᵀ)` for [`LinearRegression`]: `q/loc` a parameter, `L` fixed.
struct MvnGuide {
    loc: Vec<f64>,
    tril: Tensor,
    n: usize,
    opts: PlateOpts,
    dtype: DType,
    device: Device,
}

impl MvnGuide {
    fn new(f: &LinearRegression, loc: Vec<f64>, cov: &[Vec<f64>]) -> Self {
        let l = cholesky(&cov.to_vec()).unwrap();
        let d = l.len();
        let flat: Vec<f64> = l.iter().flatten().copied().collect();
        MvnGuide {
            loc,
            tril: upload_rounded(flat, &[d, d], f.dtype, &f.device).unwrap().0,
            n: f.config.n,
            opts: f.plate_opts(),
            dtype: f.dtype,
            device: f.device.clone(),
        }
    }

    fn exact(f: &LinearRegression) -> Self {
        let (mean, cov) = f.exact_posterior().unwrap();
        Self::new(f, mean, &cov)
    }
}

impl Model for MvnGuide {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let d = self.loc.len();
        let (dtype, device) = (self.dtype, &self.device);
        let loc = ctx.param(
            "q/loc",
            || ppl_core::upload(self.loc.clone(), &[d], dtype, device),
            Constraint::Real,
        )?;
        ctx.sample("w", MultivariateNormal::new(&loc, &self.tril)?)?;
        if self.opts.subsample_size.is_some() {
            ctx.plate("data", self.n, self.opts.clone(), |_, _| Ok(()))?;
        }
        Ok(())
    }
}

/// `q(z_i) = N(loc_i, sd² I_d)` in plate `data` for [`LocalGaussian`], `q/loc` `[n, d]`
/// (the minibatch's rows are selected); records the last minibatch's indices.
struct LocalNormal {
    loc: Vec<f64>,
    sd: Tensor,
    n: usize,
    d: usize,
    subsample: Option<usize>,
    dtype: DType,
    device: Device,
    last: RefCell<Vec<usize>>,
}

impl LocalNormal {
    fn exact(f: &LocalGaussian) -> Self {
        let (mean, var) = f.exact_posterior();
        LocalNormal {
            loc: mean,
            sd: scalar(var.sqrt(), f.dtype, &f.device).unwrap(),
            n: f.config.n,
            d: f.config.d,
            subsample: f.subsample,
            dtype: f.dtype,
            device: f.device.clone(),
            last: RefCell::new(Vec::new()),
        }
    }
}

impl Model for LocalNormal {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (dtype, device) = (self.dtype, &self.device);
        let loc = ctx.param(
            "q/loc",
            || ppl_core::upload(self.loc.clone(), &[self.n, self.d], dtype, device),
            Constraint::Real,
        )?;
        let opts = PlateOpts {
            subsample_size: self.subsample,
            ..Default::default()
        };
        ctx.plate("data", self.n, opts, |ctx, g| {
            let idx = g.indices()?;
            *self.last.borrow_mut() = to_f64(&idx).iter().map(|v| *v as usize).collect();
            let loc = rows(&loc, g, self.subsample)?;
            ctx.sample("z", Normal::new(&loc, &self.sd)?.to_event(1)?)?;
            Ok(())
        })
    }
}

/// Sets `AutoMultivariateNormal`'s parameters in `ctx`'s store to the exact posterior of
/// `f`: `auto_mvn/loc = m`, `auto_mvn/scale_tril = chol(Σ)`.
fn set_auto_mvn(ctx: &Ctx, f: &LinearRegression) {
    let (mean, cov) = f.exact_posterior().unwrap();
    let l = cholesky(&cov).unwrap();
    let d = l.len();
    let up = |v: Vec<f64>, shape: &[usize]| upload_rounded(v, shape, f.dtype, &f.device).unwrap().0;
    let p = ctx.params();
    p.insert("auto_mvn/loc", &up(mean, &[d]), &Constraint::Real)
        .unwrap();
    let flat: Vec<f64> = l.iter().flatten().copied().collect();
    p.insert(
        "auto_mvn/scale_tril",
        &up(flat, &[d, d]),
        &Constraint::ScaledUnitLowerCholesky,
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------
// A two-latent model whose exact guide samples its sites in the other order.

/// `z1 ~ N(μ0, σ1²)`, `z2 | z1 ~ N(z1, τ²)`, `x_i | z2 ~ N(z2, σ²)` in plate `data`
/// (`d = 1`), on the data of a [`ConjugateGaussian`] whose prior scale is
/// `σ0 = √(σ1² + τ²)`: marginally `z2 ~ N(μ0, σ0²)`, so `p(z2 | x)` and `p(x)` are the
/// fixture's exact answers, and `p(z1 | z2, x) = p(z1 | z2) = N(a z2 + b, u)` with
/// `u = 1/(1/σ1² + 1/τ²)`, `a = u/τ²`, `b = u μ0/σ1²`. The exact guide samples `z2`
/// first and then `z1` given `z2`: the reverse of the model's order.
struct TwoLevel {
    f: ConjugateGaussian,
    s1: f64,
    tau: f64,
    t_mu0: Tensor,
    t_s1: Tensor,
    t_tau: Tensor,
    t_sigma: Tensor,
}

impl TwoLevel {
    /// σ1 = 0.6, τ = 0.8 (σ0 = 1 up to the dtype's rounding of σ1 and τ, which the
    /// fixture's exact answers see through `prior_scale`), μ0 = 0.5, σ = 0.5, `n` points.
    fn new(seed: u64, n: usize, dtype: DType, device: &Device) -> Self {
        let r = |v: f64| match dtype {
            DType::F32 => v as f32 as f64,
            _ => v,
        };
        let (s1, tau) = (r(0.6), r(0.8));
        let config = GaussianConfig {
            n,
            d: 1,
            prior_loc: 0.5,
            prior_scale: (s1 * s1 + tau * tau).sqrt(),
            noise_scale: 0.5,
        };
        let f = ConjugateGaussian::from_config(seed, config, dtype, device).unwrap();
        let c = f.config;
        TwoLevel {
            t_mu0: upload_rounded(vec![c.prior_loc], &[1], dtype, device)
                .unwrap()
                .0,
            t_s1: scalar(s1, dtype, device).unwrap(),
            t_tau: scalar(tau, dtype, device).unwrap(),
            t_sigma: scalar(c.noise_scale, dtype, device).unwrap(),
            f,
            s1,
            tau,
        }
    }

    fn with_subsample(mut self, m: usize) -> Self {
        self.f = self.f.with_subsample(m).unwrap();
        self
    }

    /// `(a, b, u)` of the exact `p(z1 | z2) = N(a z2 + b, u)`.
    fn exact_conditional(&self) -> (f64, f64, f64) {
        let (v1, vt) = (self.s1 * self.s1, self.tau * self.tau);
        let u = 1.0 / (1.0 / v1 + 1.0 / vt);
        (u / vt, u * self.f.config.prior_loc / v1, u)
    }
}

impl Model for TwoLevel {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let z1 = ctx.sample("z1", Normal::new(&self.t_mu0, &self.t_s1)?.to_event(1)?)?;
        let z2 = ctx.sample("z2", Normal::new(&z1, &self.t_tau)?.to_event(1)?)?;
        let f = &self.f;
        ctx.plate("data", f.config.n, f.plate_opts(), |ctx, g| {
            let x = rows(&f.x, g, f.subsample)?;
            ctx.observe("x", Normal::new(&z2, &self.t_sigma)?.to_event(1)?, &x)?;
            Ok(())
        })
    }
}

/// `q(z2) = N(m2, s2²)` (parameter `q/m2`), then `q(z1 | z2) = N(a z2 + b, s1²)`.
struct ReverseGuide {
    m2: f64,
    t_s2: Tensor,
    a: f64,
    b: f64,
    t_s1: Tensor,
    n: usize,
    opts: PlateOpts,
    dtype: DType,
    device: Device,
}

impl ReverseGuide {
    fn new(t: &TwoLevel, m2: f64, s2: f64, (a, b, s1): (f64, f64, f64)) -> Self {
        let (dtype, device) = (t.f.dtype, &t.f.device);
        ReverseGuide {
            m2,
            t_s2: scalar(s2, dtype, device).unwrap(),
            a,
            b,
            t_s1: scalar(s1, dtype, device).unwrap(),
            n: t.f.config.n,
            opts: t.f.plate_opts(),
            dtype,
            device: device.clone(),
        }
    }

    fn exact(t: &TwoLevel) -> Self {
        let (m, v) = t.f.exact_posterior();
        let (a, b, u) = t.exact_conditional();
        Self::new(t, m[0], v.sqrt(), (a, b, u.sqrt()))
    }
}

impl Model for ReverseGuide {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (dtype, device) = (self.dtype, &self.device);
        let m2 = ctx.param(
            "q/m2",
            || ppl_core::upload(vec![self.m2], &[1], dtype, device),
            Constraint::Real,
        )?;
        let z2 = ctx.sample("z2", Normal::new(&m2, &self.t_s2)?.to_event(1)?)?;
        let loc = z2.affine(self.a, self.b)?;
        ctx.sample("z1", Normal::new(&loc, &self.t_s1)?.to_event(1)?)?;
        if self.opts.subsample_size.is_some() {
            ctx.plate("data", self.n, self.opts.clone(), |_, _| Ok(()))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Drivers.

/// A named model, a guide for it, and its exact log evidence.
type Case<'a> = (
    &'a str,
    &'a dyn Model<Output = ()>,
    &'a dyn Model<Output = ()>,
    f64,
);

/// `r` values of `obj`'s bound on a fresh context (initialised with `init_with`).
fn bounds<O: Objective, M: Model + ?Sized, G: Model + ?Sized>(
    mut obj: O,
    ctx: &mut Ctx,
    model: &M,
    guide: &G,
    r: usize,
) -> Vec<f64> {
    obj.init_with(ctx, model, guide).unwrap();
    (0..r)
        .map(|_| obj.loss(ctx, model, guide).unwrap().bound)
        .collect()
}

/// `obj`'s bound as a function of the context, initialised on first use.
fn loss_fn<'a, O: Objective + 'a, M: Model + ?Sized, G: Model + ?Sized>(
    mut obj: O,
    model: &'a M,
    guide: &'a G,
) -> Box<dyn FnMut(&mut Ctx) -> f64 + 'a> {
    let mut ready = false;
    Box::new(move |ctx: &mut Ctx| {
        if !ready {
            obj.init_with(ctx, model, guide).unwrap();
            ready = true;
        }
        obj.loss(ctx, model, guide).unwrap().bound
    })
}

/// Asserts every value of `v` is `exact` to rounding.
fn all_exact(v: &[f64], exact: f64, dtype: DType, s: f64, what: &str) {
    let t = tol(dtype, s);
    for (i, b) in v.iter().enumerate() {
        assert!(
            (b - exact).abs() < t,
            "{what} ({dtype:?}) value {i}: {b} vs exact {exact} (tolerance {t:e})"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 1. At the exact posterior: the evidence, to rounding, for every particle.

test_on_devices!(fn bounds_at_the_exact_posterior_equal_the_evidence_for_every_particle(device) {
    // At q = p(z | x), log w(z) = log p(x, z) − log q(z) = log p(x) for every z, so the
    // ELBO with any K, the IWAE bound and the Rényi bound all equal log p(x) on every draw,
    // and so does each particle's log weight. The sums of |log density| here are below 60
    // (n = 10 points, log densities of a few nats each): the tolerance is tol(dtype, 60).
    let _v = ppl_core::validation::disable();
    for dtype in DTYPES {
        let s = 60.0;
        let cg = ConjugateGaussian::new(1, 10, dtype, &device).unwrap();
        let cg_q = GlobalNormal::exact(&cg);
        let lr = LinearRegression::new(2, 10, 3, dtype, &device).unwrap();
        let lr_q = AutoMultivariateNormal::new(&mut ctx_on(0, &device, dtype), &lr).unwrap();
        let lg = LocalGaussian::new(3, 10, dtype, &device).unwrap();
        let lg_q = LocalNormal::exact(&lg);
        let tl = TwoLevel::new(4, 10, dtype, &device);
        let tl_q = ReverseGuide::exact(&tl);
        let pc = PlatedConjugate::new(ConjugateGaussian::from_config(5, two_dims(), dtype, &device).unwrap());
        let pc_q = pc.exact_guide();
        let cases: [Case; 5] = [
            ("ConjugateGaussian", &cg, &cg_q, cg.exact_log_evidence()),
            ("LinearRegression", &lr, &lr_q, lr.exact_log_evidence().unwrap()),
            ("LocalGaussian", &lg, &lg_q, lg.exact_log_evidence()),
            ("TwoLevel (guide in reverse order)", &tl, &tl_q, tl.f.exact_log_evidence()),
            ("PlatedConjugate (d = 2 in a plate)", &pc, &pc_q, pc.f.exact_log_evidence()),
        ];
        // A context whose store holds the exact AutoMultivariateNormal parameters (the
        // other guides create theirs at the exact posterior).
        let ctx_for = |seed: u64| {
            let ctx = ctx_on(seed, &device, dtype);
            set_auto_mvn(&ctx, &lr);
            ctx
        };
        for (name, model, guide, exact) in cases {
            for k in [1usize, 16] {
                let mut ctx = ctx_for(10 + k as u64);
                let elbo = TraceElbo::new().with_particles(k).unwrap();
                let b = bounds(elbo, &mut ctx, model, guide, 3);
                all_exact(&b, exact, dtype, s, &format!("{name}: TraceElbo K = {k}"));
            }
            let mut ctx = ctx_for(20);
            let b = bounds(Iwae::new(8).unwrap(), &mut ctx, model, guide, 3);
            all_exact(&b, exact, dtype, s, &format!("{name}: Iwae K = 8"));
            let b = bounds(Iwae::renyi(0.5, 8).unwrap(), &mut ctx, model, guide, 3);
            all_exact(&b, exact, dtype, s, &format!("{name}: Rényi α = 0.5, K = 8"));
            // Every particle's own log weight.
            let mut iwae = Iwae::new(8).unwrap();
            iwae.init_with(&mut ctx, model, guide).unwrap();
            let lw = iwae.log_weights(&mut ctx, model, guide).unwrap();
            assert!(lw.local.is_none());
            all_exact(&to_f64(&lw.global), exact, dtype, s, &format!("{name}: log w_k"));
        }
        // LocalGaussian per data point: log w_{k,i} = log p(x_i) for every particle and
        // point, with the bound taken per point (`with_local_plate`).
        let per_point = lg.exact_log_evidence_per_point();
        let mut ctx = ctx_on(30, &device, dtype);
        for obj in [Iwae::new(8).unwrap(), Iwae::renyi(0.5, 8).unwrap()] {
            let mut obj = obj.with_local_plate("data");
            obj.init_with(&mut ctx, &lg, &lg_q).unwrap();
            let b = obj.loss(&mut ctx, &lg, &lg_q).unwrap().bound;
            all_exact(&[b], lg.exact_log_evidence(), dtype, s, "LocalGaussian local plate");
            let lw = obj.log_weights(&mut ctx, &lg, &lg_q).unwrap();
            let local = lw.local.as_ref().unwrap();
            assert_eq!(local.dims(), &[8, 10]);
            let local: Vec<Vec<f64>> = local.to_dtype(DType::F64).unwrap().to_vec2().unwrap();
            for row in &local {
                for (i, v) in row.iter().enumerate() {
                    all_exact(&[*v], per_point[i], dtype, 6.0, "log w_{k,i}");
                }
            }
            let pp = to_f64(&lw.per_point().unwrap());
            for (i, v) in pp.iter().enumerate() {
                all_exact(&[*v], per_point[i], dtype, 6.0, "per-point IWAE");
            }
        }
    }
});

#[test]
fn hand_written_mvn_guide_at_the_exact_posterior_gives_the_evidence() {
    // The same check as above for LinearRegression, with the exact posterior written by
    // hand as `MultivariateNormal(m, chol Σ)` instead of AutoMultivariateNormal (which
    // works around the check by sampling an auxiliary site and `Delta`s carrying the
    // model's support). Both describe the same set (ℝ^d): the guide is legitimate.
    let _v = ppl_core::validation::disable();
    for dtype in DTYPES {
        let lr = LinearRegression::new(2, 10, 3, dtype, &Device::Cpu).unwrap();
        let q = MvnGuide::exact(&lr);
        let exact = lr.exact_log_evidence().unwrap();
        for k in [1usize, 16] {
            let mut ctx = ctx_on(1, &Device::Cpu, dtype);
            let b = bounds(
                TraceElbo::new().with_particles(k).unwrap(),
                &mut ctx,
                &lr,
                &q,
                3,
            );
            all_exact(&b, exact, dtype, 60.0, "LinearRegression, MVN guide");
        }
    }
}

#[test]
fn a_model_that_misplaces_the_particle_dim_is_an_error_naming_the_site() {
    // `matvec(x, w)` with w [K, 1, d] under the particle plate gives a mean [K, 1, n]; the
    // particle plate (dim −2) used to expand its 1 to K, pairing every particle's weights
    // with every other's and summing K² terms into each particle: a silently wrong bound
    // (and K²·n memory). With one particle the model is fine and exact; with K it must be
    // a typed error naming the site `y` and its shape, for every objective and dtype.
    let _v = ppl_core::validation::disable();
    for dtype in DTYPES {
        let lr = LinearRegression::new(2, 10, 3, dtype, &Device::Cpu).unwrap();
        let q = MvnGuide::exact(&lr);
        let exact = lr.exact_log_evidence().unwrap();
        let model = |ctx: &mut Ctx| lr.matvec_model(ctx);
        let mut ctx = ctx_on(1, &Device::Cpu, dtype);
        let b = bounds(TraceElbo::new(), &mut ctx, &model, &q, 3);
        all_exact(&b, exact, dtype, 60.0, "matvec model, one particle");
        let errors = [
            {
                let mut obj = TraceElbo::new().with_particles(16).unwrap();
                let mut ctx = ctx_on(1, &Device::Cpu, dtype);
                obj.init_with(&mut ctx, &model, &q).unwrap();
                obj.loss(&mut ctx, &model, &q).map(|_| ()).unwrap_err()
            },
            {
                let mut obj = Iwae::new(16).unwrap();
                let mut ctx = ctx_on(1, &Device::Cpu, dtype);
                obj.init_with(&mut ctx, &model, &q).unwrap();
                obj.loss(&mut ctx, &model, &q).map(|_| ()).unwrap_err()
            },
        ];
        for e in errors {
            let msg = e.to_string();
            assert!(
                matches!(e.root_cause(), PplError::Site { .. }) || msg.contains("site `y`"),
                "{msg}"
            );
            for needle in ["`y`", "[16, 1, 10]", "__particles", "docs/models.md"] {
                assert!(msg.contains(needle), "missing {needle:?} in: {msg}");
            }
        }
    }
}

test_on_devices!(fn bounds_under_subsampling_are_unbiased_for_the_evidence(device) {
    // Plate `data` subsampled 3 of n = 10 points at a time, guides still exact (global
    // guides mirror the plate or, for AutoMultivariateNormal, let the model draw the
    // minibatch). Then log w = log p(z) + (N/m) Σ_{i∈B} log p(x_i | z) − log q(z) is no longer
    // constant, but its expectation over B (and z ~ q = posterior) is log p(x): the mean of
    // R bounds must match log p(x) within 4 standard errors, computed from the draws
    // (R = 3000: the spread of one bound is a few nats, so 4 se ≈ 0.2–0.3 nats, while a
    // dropped or doubled N/m moves the mean by ~log p(x)·0.7 ≈ 5–10 nats).
    // For LocalGaussian the weight of each point is exact, so every single bound equals
    // (N/m) Σ_{i∈B} log p(x_i) to rounding, with B the minibatch the guide drew, for
    // TraceElbo, IWAE and Rényi per point (`with_local_plate`), and each point's IWAE
    // estimate is log p(x_i).
    let _v = ppl_core::validation::disable();
    let (n, m, r) = (10usize, 3usize, 3000usize);
    let scale = n as f64 / m as f64;
    for dtype in DTYPES {
        let cg = ConjugateGaussian::new(1, n, dtype, &device).unwrap().with_subsample(m).unwrap();
        let cg_q = GlobalNormal::exact(&cg);
        let lr = LinearRegression::new(2, n, 3, dtype, &device).unwrap().with_subsample(m).unwrap();
        let lr_q = AutoMultivariateNormal::new(&mut ctx_on(0, &device, dtype), &lr).unwrap();
        let tl = TwoLevel::new(4, n, dtype, &device).with_subsample(m);
        let tl_q = ReverseGuide::exact(&tl);
        let pc = ConjugateGaussian::from_config(5, two_dims(), dtype, &device).unwrap();
        let pc = PlatedConjugate::new(pc.with_subsample(m).unwrap());
        let pc_q = pc.exact_guide();
        let cases: [Case; 4] = [
            ("ConjugateGaussian", &cg, &cg_q, cg.exact_log_evidence()),
            ("LinearRegression", &lr, &lr_q, lr.exact_log_evidence().unwrap()),
            ("TwoLevel", &tl, &tl_q, tl.f.exact_log_evidence()),
            ("PlatedConjugate", &pc, &pc_q, pc.f.exact_log_evidence()),
        ];
        for (name, model, guide, exact) in cases {
            for k in [1usize, 16] {
                let mut ctx = ctx_on(40 + k as u64, &device, dtype);
                set_auto_mvn(&ctx, &lr);
                let elbo = TraceElbo::new().with_particles(k).unwrap();
                let b = bounds(elbo, &mut ctx, model, guide, r);
                let (mean, se) = mean_and_se(&b);
                println!("{name} ({dtype:?}) K = {k}: mean {mean} ± {se} vs {exact}");
                assert!(se > 0.0 && se < 0.2, "{name}: se {se}");
                assert!(
                    (mean - exact).abs() < 4.0 * se,
                    "{name} ({dtype:?}), K = {k}: mean bound {mean} (se {se}) vs log p(x) {exact}"
                );
            }
        }
        // LocalGaussian: exact draw by draw, unbiased on average.
        let lg = LocalGaussian::new(3, n, dtype, &device).unwrap().with_subsample(m).unwrap();
        let lg_q = LocalNormal::exact(&lg);
        let per_point = lg.exact_log_evidence_per_point();
        let exact = lg.exact_log_evidence();
        let minibatch = |q: &LocalNormal| -> f64 {
            scale * q.last.borrow().iter().map(|i| per_point[*i]).sum::<f64>()
        };
        let check = |name: &str, mut obj: Box<dyn FnMut(&mut Ctx) -> f64>| {
            let mut ctx = ctx_on(50, &device, dtype);
            let mut draws = Vec::new();
            for _ in 0..500 {
                let b = obj(&mut ctx);
                all_exact(&[b], minibatch(&lg_q), dtype, 60.0, &format!("LocalGaussian {name}"));
                draws.push(b);
            }
            let (mean, se) = mean_and_se(&draws);
            println!("LocalGaussian {name} ({dtype:?}): mean {mean} ± {se} vs {exact}");
            assert!((mean - exact).abs() < 4.0 * se, "LocalGaussian {name}: {mean} ± {se} vs {exact}");
        };
        check("TraceElbo K = 1", loss_fn(TraceElbo::new(), &lg, &lg_q));
        check("TraceElbo K = 16", loss_fn(TraceElbo::new().with_particles(16).unwrap(), &lg, &lg_q));
        check("Iwae K = 8, per point", loss_fn(Iwae::new(8).unwrap().with_local_plate("data"), &lg, &lg_q));
        check(
            "Rényi α = 0.5, K = 8, per point",
            loss_fn(Iwae::renyi(0.5, 8).unwrap().with_local_plate("data"), &lg, &lg_q),
        );
        let mut iwae = Iwae::new(8).unwrap().with_local_plate("data");
        let mut ctx = ctx_on(51, &device, dtype);
        iwae.init_with(&mut ctx, &lg, &lg_q).unwrap();
        for _ in 0..20 {
            let lw = iwae.log_weights(&mut ctx, &lg, &lg_q).unwrap();
            assert_eq!(lw.scale, scale);
            let pp = to_f64(&lw.per_point().unwrap());
            let idx = lg_q.last.borrow().clone();
            assert_eq!(pp.len(), m);
            for (v, i) in pp.iter().zip(&idx) {
                all_exact(&[*v], per_point[*i], dtype, 6.0, "subsampled per-point IWAE");
            }
        }
    }
});

// ---------------------------------------------------------------------------------------
// 2. Reparameterised gradients against the closed-form ELBO.

/// `r` draws of the gradient of `obj`'s loss with respect to the unconstrained parameter
/// `param` (flattened), with the bound of each draw.
fn grad_draws<O: Objective, M: Model + ?Sized, G: Model + ?Sized>(
    mut obj: O,
    ctx: &mut Ctx,
    model: &M,
    guide: &G,
    param: &str,
    r: usize,
) -> (Vec<Vec<f64>>, Vec<f64>) {
    obj.init_with(ctx, model, guide).unwrap();
    let var = ctx.params().unconstrained(param).unwrap();
    let (mut grads, mut values) = (Vec::new(), Vec::new());
    for _ in 0..r {
        let out = obj.loss(ctx, model, guide).unwrap();
        let g = out.loss.backward().unwrap();
        grads.push(to_f64(g.get(var.as_tensor()).unwrap()));
        values.push(out.bound);
    }
    (grads, values)
}

/// Column `j` of a list of gradient draws.
fn column(draws: &[Vec<f64>], j: usize) -> Vec<f64> {
    draws.iter().map(|g| g[j]).collect()
}

/// The sample variance.
fn variance(v: &[f64]) -> f64 {
    let (m, _) = mean_and_se(v);
    v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
}

test_on_devices!(fn elbo_gradients_of_a_global_gaussian_match_the_closed_form(device) {
    // ConjugateGaussian with d = 2, q(z) = N(m, s² I) away from the posterior N(m*, v I),
    // Λ = 1/v = 1/σ0² + n/σ². Per dim j, with E_q[(z_j − c)²] = (m_j − c)² + s²:
    //   ELBO = Σ_j { −½ log 2πσ0² − ((m_j − μ0)² + s²)/(2σ0²)
    //               + Σ_i [−½ log 2πσ² − ((x_ij − m_j)² + s²)/(2σ²)] + ½ log 2πe s² },
    //   ∂ELBO/∂m_j = −(m_j − μ0)/σ0² + Σ_i (x_ij − m_j)/σ² = Λ (m*_j − m_j),
    //   ∂ELBO/∂log s = Σ_j (1 − Λ s²) = d (1 − Λ s²).
    // One reparameterised draw z = m + s ε gives (log q(m + sε; m, s) = −½ε² − log s − …)
    //   g_m_j = ∂_z log p(x, z) = Λ (m*_j − z_j): mean Λ (m*_j − m_j), variance Λ² s²;
    //   g_log s = Σ_j [Λ (m*_j − z_j) s ε_j + 1]: mean d (1 − Λ s²).
    // The loss gradient is minus the average over the K particles, so its variance for
    // m_j is Λ² s² / K exactly. R draws (R·K = 4000 particles): the mean must match the
    // closed form within 4 standard errors (se = Λ s / √(R K) for m; from the draws for
    // log s) and the variance of the m-gradient must match Λ² s²/K within 4 standard
    // errors of a Gaussian sample variance (√(2/(R−1)) relative): that catches particles
    // that are not independent or not averaged. Under subsampling (3 of 10) the gradient
    // is unbiased for the same value (minibatch noise added; se from the draws). The model
    // is written both with the d coordinates as an event dim (the fixture) and in a plate
    // `dims` (PlatedConjugate, with the guide sampling in the same plate).
    let _v = ppl_core::validation::disable();
    let config = two_dims();
    for dtype in DTYPES {
        for sub in [None, Some(3)] {
            let mut f = ConjugateGaussian::from_config(5, config, dtype, &device).unwrap();
            if let Some(m) = sub {
                f = f.with_subsample(m).unwrap();
            }
            let (mstar, v) = f.exact_posterior();
            let lambda = 1.0 / v;
            let s = 0.3;
            let m: Vec<f64> = mstar.iter().zip([0.4, -0.7]).map(|(a, b)| a + b).collect();
            let q = GlobalNormal::for_conjugate(&f, m.clone(), s);
            // The closed-form ELBO at (m, s), checked against the bound's mean below.
            let c = &f.config;
            let elbo_exact: f64 = (0..2)
                .map(|j| {
                    let tau = 2.0 * std::f64::consts::PI;
                    let mut e = -0.5 * (tau * c.prior_scale.powi(2)).ln()
                        - ((m[j] - c.prior_loc).powi(2) + s * s) / (2.0 * c.prior_scale.powi(2))
                        + 0.5 * (tau * std::f64::consts::E * s * s).ln();
                    for i in 0..c.n {
                        e += -0.5 * (tau * c.noise_scale.powi(2)).ln()
                            - ((f.x_host[i * 2 + j] - m[j]).powi(2) + s * s)
                                / (2.0 * c.noise_scale.powi(2));
                    }
                    e
                })
                .sum();
            // The same model and guide with the coordinates in plate `dims` instead.
            let pc = PlatedConjugate::new(f.clone());
            let pq = GlobalNormal {
                plated: true,
                ..GlobalNormal::for_conjugate(&f, m.clone(), s)
            };
            let forms: [(&str, &dyn Model<Output = ()>, &GlobalNormal); 2] =
                [("event dim", &f, &q), ("plate", &pc, &pq)];
            for ((form, model, q), k) in forms.into_iter().flat_map(|f| [(f, 1usize), (f, 8)]) {
                let r = 4000 / k;
                let elbo = || TraceElbo::new().with_particles(k).unwrap();
                let mut ctx = ctx_on(60 + k as u64, &device, dtype);
                let (g, values) = grad_draws(elbo(), &mut ctx, model, q, "q/loc", r);
                let what = format!("{dtype:?}, d as {form}, K = {k}, subsample {sub:?}");
                for j in 0..2 {
                    let col = column(&g, j);
                    let (mean, emp_se) = mean_and_se(&col);
                    let want = -lambda * (mstar[j] - m[j]);
                    let sd = lambda * s / (k as f64).sqrt();
                    let se = if sub.is_some() { emp_se } else { sd / (r as f64).sqrt() };
                    println!("{what}: ∂loss/∂m_{j} {mean} ± {se} vs {want}; var {} vs {}", variance(&col), sd * sd);
                    assert!((mean - want).abs() < 4.0 * se, "{what}: ∂/∂m_{j} {mean} vs {want} (se {se})");
                    if sub.is_none() {
                        let rel = 4.0 * (2.0 / (r as f64 - 1.0)).sqrt();
                        let var = variance(&col);
                        assert!(
                            (var / (sd * sd) - 1.0).abs() < rel,
                            "{what}: variance {var} vs {} (K independent particles)",
                            sd * sd
                        );
                    }
                }
                let mut ctx = ctx_on(70 + k as u64, &device, dtype);
                let (g, _) = grad_draws(elbo(), &mut ctx, model, q, "q/sd", r);
                let (mean, se) = mean_and_se(&column(&g, 0));
                let want = -2.0 * (1.0 - lambda * s * s);
                println!("{what}: ∂loss/∂log s {mean} ± {se} vs {want}");
                assert!((mean - want).abs() < 4.0 * se, "{what}: ∂/∂log s {mean} vs {want} (se {se})");
                let (mean, se) = mean_and_se(&values);
                println!("{what}: ELBO {mean} ± {se} vs closed form {elbo_exact}");
                assert!((mean - elbo_exact).abs() < 4.0 * se, "{what}: ELBO {mean} vs {elbo_exact}");
            }
        }
    }
});

test_on_devices!(fn elbo_gradients_with_the_guide_in_the_other_site_order_match_the_closed_form(device) {
    // TwoLevel: the model samples z1 then z2; the guide samples z2 ~ N(m2, s2²) first, then
    // z1 | z2 ~ N(a z2 + b, s1²) (a, b, s1 not the exact ones). With z2 = m2 + s2 ε2 and
    // z1 = a z2 + b + s1 ε1, E z1 = a m2 + b, Var z1 = a² s2² + s1²,
    // z2 − z1 = (1 − a) z2 − b − s1 ε1:
    //   ELBO = −½ log 2πσ1² − [(a m2 + b − μ0)² + a² s2² + s1²]/(2σ1²)
    //          −½ log 2πτ² − [((1 − a) m2 − b)² + (1 − a)² s2² + s1²]/(2τ²)
    //          + Σ_i [−½ log 2πσ² − ((x_i − m2)² + s2²)/(2σ²)]
    //          + ½ log 2πe s2² + ½ log 2πe s1²,
    //   ∂ELBO/∂m2 = a [−(a m2 + b − μ0)/σ1² + ((1 − a) m2 − b)/τ²]
    //               − ((1 − a) m2 − b)/τ² + Σ_i (x_i − m2)/σ².
    // A reparameterised draw gives g = a ∂_{z1} log p + ∂_{z2} log p (both log q terms are
    // constant in m2 along the path), linear in (z1, z2): g − E g = A (z1 − E z1) +
    // B (z2 − E z2) with A = 1/τ² − a (1/σ1² + 1/τ²), B = (a − 1)/τ² − n/σ², so
    // Var g = A² s1² + (A a + B)² s2². Same checks as for the global Gaussian: mean within
    // 4 se, variance of the K-particle average Var g / K, ELBO value, K = 1 and 8, full
    // batch and subsampled (3 of 10), f64 and f32. At the exact guide the closed form
    // must give log p(x) (checked first: it validates the formula against the fixture).
    let _v = ppl_core::validation::disable();
    for dtype in DTYPES {
        for sub in [None, Some(3)] {
            let mut t = TwoLevel::new(6, 10, dtype, &device);
            if let Some(m) = sub {
                t = t.with_subsample(m);
            }
            let c = t.f.config;
            let (mu0, sg) = (c.prior_loc, c.noise_scale);
            let (v1, vt, s2n) = (t.s1 * t.s1, t.tau * t.tau, sg * sg);
            let xs = &t.f.x_host;
            let tau2pi = 2.0 * std::f64::consts::PI;
            let elbo_of = |m2: f64, s2: f64, a: f64, b: f64, s1: f64| -> f64 {
                let mut e = -0.5 * (tau2pi * v1).ln()
                    - ((a * m2 + b - mu0).powi(2) + a * a * s2 * s2 + s1 * s1) / (2.0 * v1)
                    - 0.5 * (tau2pi * vt).ln()
                    - (((1.0 - a) * m2 - b).powi(2) + (1.0 - a).powi(2) * s2 * s2 + s1 * s1)
                        / (2.0 * vt)
                    + 0.5 * (tau2pi * std::f64::consts::E * s2 * s2).ln()
                    + 0.5 * (tau2pi * std::f64::consts::E * s1 * s1).ln();
                for x in xs {
                    e += -0.5 * (tau2pi * s2n).ln() - ((x - m2).powi(2) + s2 * s2) / (2.0 * s2n);
                }
                e
            };
            let (mstar, vstar) = t.f.exact_posterior();
            let (ea, eb, eu) = t.exact_conditional();
            let at_exact = elbo_of(mstar[0], vstar.sqrt(), ea, eb, eu.sqrt());
            let evidence = t.f.exact_log_evidence();
            // (f32: the fixture's σ0 is √(σ1² + τ²) rounded to f32, 6e-8 relative.)
            let close = if dtype == DType::F64 { 1e-10 } else { 1e-6 };
            assert!((at_exact - evidence).abs() < close, "closed form {at_exact} vs {evidence}");
            let (m2, s2, a, b, s1) = (mstar[0] + 0.5, 0.3, ea + 0.3, eb - 0.2, 0.5);
            let n = c.n as f64;
            let want = -(a * (-(a * m2 + b - mu0) / v1 + ((1.0 - a) * m2 - b) / vt)
                - ((1.0 - a) * m2 - b) / vt
                + xs.iter().map(|x| (x - m2) / s2n).sum::<f64>());
            let big_a = 1.0 / vt - a * (1.0 / v1 + 1.0 / vt);
            let big_b = (a - 1.0) / vt - n / s2n;
            let var_g = big_a * big_a * s1 * s1 + (big_a * a + big_b).powi(2) * s2 * s2;
            let elbo_exact = elbo_of(m2, s2, a, b, s1);
            let q = ReverseGuide::new(&t, m2, s2, (a, b, s1));
            for k in [1usize, 8] {
                let r = 4000 / k;
                let mut ctx = ctx_on(80 + k as u64, &device, dtype);
                let elbo = TraceElbo::new().with_particles(k).unwrap();
                let (g, values) = grad_draws(elbo, &mut ctx, &t, &q, "q/m2", r);
                let col = column(&g, 0);
                let (mean, emp_se) = mean_and_se(&col);
                let var = variance(&col);
                let sd2 = var_g / k as f64;
                let se = if sub.is_some() { emp_se } else { (sd2 / r as f64).sqrt() };
                let what = format!("{dtype:?}, K = {k}, subsample {sub:?}");
                println!("{what}: ∂loss/∂m2 {mean} ± {se} vs {want}; var {var} vs {sd2}");
                assert!((mean - want).abs() < 4.0 * se, "{what}: ∂/∂m2 {mean} vs {want} (se {se})");
                if sub.is_none() {
                    let rel = 4.0 * (2.0 / (r as f64 - 1.0)).sqrt();
                    assert!((var / sd2 - 1.0).abs() < rel, "{what}: variance {var} vs {sd2}");
                }
                let (mean, se) = mean_and_se(&values);
                println!("{what}: ELBO {mean} ± {se} vs closed form {elbo_exact}");
                assert!((mean - elbo_exact).abs() < 4.0 * se, "{what}: ELBO {mean} vs {elbo_exact}");
            }
        }
    }
});

// ---------------------------------------------------------------------------------------
// 3. Discrete latents: score-function gradients reach the exact responsibilities.

/// `q(c_i) = Categorical(softmax(l_i))` in plate `data` (mirroring the fixture's
/// subsampling), with learnable logits `q/logits` `[n, K]` starting at `init` (zero:
/// uniform).
struct CategoricalGuide {
    n: usize,
    k: usize,
    init: Vec<f64>,
    subsample: Option<usize>,
    dtype: DType,
    device: Device,
}

impl CategoricalGuide {
    fn new(f: &GaussianMixture) -> Self {
        CategoricalGuide {
            n: f.config.n,
            k: f.num_components(),
            init: vec![0.0; f.config.n * f.num_components()],
            subsample: f.subsample,
            dtype: f.dtype,
            device: f.device.clone(),
        }
    }

    /// `softmax(l_i)` for every point, `[n][K]`.
    fn probs(&self, ctx: &Ctx) -> Vec<Vec<f64>> {
        let l = ctx.params().get("q/logits").unwrap();
        let p = candle_nn::ops::softmax(&l.to_dtype(DType::F64).unwrap(), 1).unwrap();
        p.to_vec2().unwrap()
    }
}

impl Model for CategoricalGuide {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (n, k) = (self.n, self.k);
        let logits = ctx.param(
            "q/logits",
            || ppl_core::upload(self.init.clone(), &[n, k], self.dtype, &self.device),
            Constraint::Real,
        )?;
        let opts = PlateOpts {
            subsample_size: self.subsample,
            ..Default::default()
        };
        ctx.plate("data", n, opts, |ctx, g| {
            let l = rows(&logits, g, self.subsample)?;
            ctx.sample("c", Categorical::from_logits(&l)?)?;
            Ok(())
        })
    }
}

/// Trains `guide` on `f` with `elbo` (`Svi` + `Trainer::run` for `warm` steps at Adam's
/// `lr`, then `avg` more steps), and returns the guide's probabilities averaged over the
/// last `avg` steps.
fn fit_mixture(
    f: &GaussianMixture,
    elbo: TraceElbo,
    lr: f64,
    warm: u64,
    avg: u64,
    seed: u64,
) -> Vec<Vec<f64>> {
    let guide = CategoricalGuide::new(f);
    let mut ctx = ctx_on(seed, &f.device, f.dtype);
    let mut trainer = Trainer::new(Adam::new(), lr).unwrap();
    let mut svi = Svi::new(f, &guide, elbo);
    trainer.run(&mut ctx, &mut svi, warm).unwrap();
    let mut acc = vec![vec![0.0; guide.k]; guide.n];
    for _ in 0..avg {
        trainer.step(&mut ctx, &mut svi).unwrap();
        for (a, p) in acc.iter_mut().zip(guide.probs(&ctx)) {
            for (a, p) in a.iter_mut().zip(p) {
                *a += p / avg as f64;
            }
        }
    }
    acc
}

/// The largest `|a − b|` over two `[n][K]` tables.
fn max_abs_error(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    a.iter()
        .zip(b)
        .flat_map(|(r, s)| r.iter().zip(s).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn score_function_elbo_reaches_the_exact_mixture_responsibilities() {
    // GaussianMixture (n = 6, three overlapping components), q(c_i) = Categorical(softmax
    // (l_i)) from uniform logits, TraceElbo with 16 particles, moving-average baseline,
    // Adam at lr 0.05: 1500 steps through `Trainer::run`, then the guide's probabilities
    // averaged over 1000 more. The family contains the posterior, so the optimum is the
    // exact responsibilities, but the score-function noise does not vanish there (the
    // advantage log p(x_i) − baseline differs between points), so the iterates hover and
    // are averaged. Measured max |error| over 12 seeds: ≤ 0.010 (full batch, RB), ≤ 0.012
    // (no RB), ≤ 0.018 (subsampled 2 of 6: each point gets a third of the updates);
    // tolerances 0.02 and 0.03 are ~2x those, and 20–30x below the initial error (0.62).
    // Part of the error is structural: a category with responsibility 1e-25 keeps ~2e-4
    // (its gradient vanishes as it stops being sampled).
    let _v = ppl_core::validation::disable();
    let device = Device::Cpu;
    let configs: [(&str, DType, Option<usize>, bool, f64); 5] = [
        ("full batch, f64", DType::F64, None, true, 0.02),
        ("full batch, f32", DType::F32, None, true, 0.02),
        (
            "full batch, no Rao-Blackwellisation",
            DType::F64,
            None,
            false,
            0.02,
        ),
        ("subsampled 2 of 6", DType::F64, Some(2), true, 0.03),
        (
            "subsampled 2 of 6, no Rao-Blackwellisation",
            DType::F64,
            Some(2),
            false,
            0.03,
        ),
    ];
    for (name, dtype, sub, rb, tolerance) in configs {
        let mut f = GaussianMixture::new(7, 6, dtype, &device).unwrap();
        if let Some(m) = sub {
            f = f.with_subsample(m).unwrap();
        }
        let exact = f.exact_responsibilities();
        let start = max_abs_error(&vec![vec![1.0 / 3.0; 3]; 6], &exact);
        let elbo = TraceElbo::new()
            .with_particles(16)
            .unwrap()
            .with_rao_blackwellization(rb);
        let got = fit_mixture(&f, elbo, 0.05, 1500, 1000, 8);
        let err = max_abs_error(&got, &exact);
        println!("{name}: max |q − exact responsibility| = {err:.4} (initially {start:.3})");
        assert!(
            err < tolerance,
            "{name}: max error {err} (tolerance {tolerance})\n  exact {exact:?}\n  got {got:?}"
        );
    }
}

test_on_devices!(fn score_function_gradients_match_the_enumerated_gradient(device) {
    // GaussianMixture with q(c_i) = Categorical(softmax(l_i)) at fixed logits l away from the
    // posterior. With f_ik = log π_k + log N(x_i; μ_k, σ_k) − log q_ik, the ELBO is
    // Σ_i Σ_k q_ik f_ik exactly (enumeration), and since ∂q_ik/∂l_ij = q_ik (δ_kj − q_ij) and
    // Σ_k q_ik ∂log q_ik/∂l_ij = 0:
    //   ∂ELBO/∂l_ij = q_ij (f_ij − Σ_k q_ik f_ik).
    // TraceElbo estimates it with score-function terms (moving-average baseline, which is
    // fixed before each draw, so unbiased): the mean of R draws of ∂loss/∂l must match
    // −∂ELBO/∂l for all 18 logits within 4.5 standard errors (from the draws; with 18
    // logits × 8 configurations, a correct estimator exceeds 4.5 se somewhere with
    // probability ~0.1%), and the ELBO estimate must match the enumerated ELBO. Full batch
    // and subsampled (2 of 6: each point is in the minibatch with probability 1/3 and then
    // counts 3 times, so unbiased), Rao-Blackwellised or not, K = 1 and 8.
    let _v = ppl_core::validation::disable();
    let dtype = DType::F64;
    for sub in [None, Some(2)] {
        let mut f = GaussianMixture::new(7, 6, dtype, &device).unwrap();
        if let Some(m) = sub {
            f = f.with_subsample(m).unwrap();
        }
        let (n, nk) = (f.config.n, f.num_components());
        let mut guide = CategoricalGuide::new(&f);
        guide.init = PplRng::seed_from_u64(9).normals(n * nk);
        let c = &f.config;
        let (mut want, mut elbo_exact) = (vec![0.0; n * nk], 0.0);
        for i in 0..n {
            let l = &guide.init[i * nk..(i + 1) * nk];
            let lse = common::host::logsumexp(l);
            let q: Vec<f64> = l.iter().map(|v| (v - lse).exp()).collect();
            let fk: Vec<f64> = (0..nk)
                .map(|k| {
                    c.weights[k].ln() + common::host::log_normal(f.x_host[i], c.means[k], c.scales[k])
                        - (l[k] - lse)
                })
                .collect();
            let big_f: f64 = q.iter().zip(&fk).map(|(a, b)| a * b).sum();
            elbo_exact += big_f;
            for j in 0..nk {
                want[i * nk + j] = -q[j] * (fk[j] - big_f);
            }
        }
        for rb in [true, false] {
            for k in [1usize, 8] {
                let r = 8000 / k;
                let elbo = TraceElbo::new().with_particles(k).unwrap().with_rao_blackwellization(rb);
                let mut ctx = ctx_on(90 + k as u64, &device, dtype);
                let (g, values) = grad_draws(elbo, &mut ctx, &f, &guide, "q/logits", r);
                let what = format!("subsample {sub:?}, RB {rb}, K = {k}");
                let mut worst: f64 = 0.0;
                for e in 0..n * nk {
                    let (mean, se) = mean_and_se(&column(&g, e));
                    assert!(se > 0.0, "{what}: logit {e} has no gradient noise");
                    let z = (mean - want[e]) / se;
                    worst = worst.max(z.abs());
                    assert!(
                        z.abs() < 4.5,
                        "{what}: ∂loss/∂l[{}, {}] = {mean} ± {se} vs exact {}",
                        e / nk, e % nk, want[e]
                    );
                }
                let (mean, se) = mean_and_se(&values);
                println!("{what}: worst |z| over the logits {worst:.2}; ELBO {mean} ± {se} vs {elbo_exact}");
                assert!((mean - elbo_exact).abs() < 4.0 * se, "{what}: ELBO {mean} vs {elbo_exact}");
            }
        }
    }
});

// ---------------------------------------------------------------------------------------
// 3b. Score-function costs when the model samples in another order than the guide.

/// A semi-supervised toy in plate `data` (n points): `z_i ~ N(0, 1)`, `y_i ~ Bernoulli(½)`,
/// `x_i ~ N(z_i, 1)` observed, with `z` sampled before `y` (`z_first`, as Pyro's
/// semi-supervised VAE) or after it. The densities do not depend on the order.
struct SemiSupervised {
    x: Vec<f64>,
    z_first: bool,
    dtype: DType,
    device: Device,
}

impl Model for SemiSupervised {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (dt, dev) = (self.dtype, &self.device);
        let x = ppl_core::upload(self.x.clone(), &[self.x.len()], dt, dev)?;
        let (zero, one, half) = (
            scalar(0.0, dt, dev)?,
            scalar(1.0, dt, dev)?,
            scalar(0.5, dt, dev)?,
        );
        ctx.plate("data", self.x.len(), PlateOpts::default(), |ctx, _| {
            let z = if self.z_first {
                let z = ctx.sample("z", Normal::new(&zero, &one)?)?;
                ctx.sample("y", Bernoulli::from_probs(&half)?)?;
                z
            } else {
                ctx.sample("y", Bernoulli::from_probs(&half)?)?;
                ctx.sample("z", Normal::new(&zero, &one)?)?
            };
            ctx.observe("x", Normal::new(&z, &one)?, &x)?;
            Ok(())
        })
    }
}

/// The guide draws the label first: `y_i ~ Bernoulli(σ(l_i))` (`q/logits`, `[n]`), then
/// `z_i ~ N(3 y_i, 1)` (no parameters).
struct LabelFirstGuide {
    init: Vec<f64>,
    dtype: DType,
    device: Device,
}

impl LabelFirstGuide {
    fn logits(&self, ctx: &Ctx) -> Vec<f64> {
        to_f64(&ctx.params().get("q/logits").unwrap())
    }
}

impl Model for LabelFirstGuide {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let (dt, dev) = (self.dtype, &self.device);
        let n = self.init.len();
        let l = ctx.param(
            "q/logits",
            || ppl_core::upload(self.init.clone(), &[n], dt, dev),
            Constraint::Real,
        )?;
        let one = scalar(1.0, dt, dev)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let y = ctx.sample("y", Bernoulli::from_logits(&l)?)?;
            ctx.sample("z", Normal::new(&y.affine(3.0, 0.0)?, &one)?)?;
            Ok(())
        })
    }
}

/// `∂ELBO/∂l_i` by enumerating `y_i ∈ {0, 1}`. With `m_y = 3y` and, for `z ~ N(m, 1)`,
/// `E[log N(z; 0, 1)] = c − (m² + 1)/2`, `E[log N(x; z, 1)] = c − ((x − m)² + 1)/2` and
/// `E[log N(z; m, 1)] = c − ½`, point i's expected log ratio given `y` is
/// `f_i(y) = log ½ − log q(y) − m_y²/2 − (x_i − m_y)²/2 + const`, so
/// `f_i(1) − f_i(0) = 3x_i − 9 − l_i` and (as `Σ_y q(y) ∂log q(y)/∂l = 0`)
/// `∂ELBO/∂l_i = Σ_y ∂q(y)/∂l_i · f_i(y) = p_i (1 − p_i)(3x_i − 9 − l_i)`, `p_i = σ(l_i)`.
/// The optimum is `l_i* = 3x_i − 9`: at `x = 1.5`, `p* = σ(−4.5) = 0.0110`.
fn semi_supervised_exact_gradient(x: &[f64], l: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(l)
        .map(|(x, l)| {
            let p = 1.0 / (1.0 + (-l).exp());
            p * (1.0 - p) * (3.0 * x - 9.0 - l)
        })
        .collect()
}

test_on_devices!(fn score_function_gradients_match_the_enumerated_gradient_in_both_model_orders(device) {
    // SemiSupervised with the guide drawing y before z. Whatever the model's order, the
    // guide's z_i depends on y_i, so the model's log p(z_i) depends on y_i even when the
    // model samples z_i first: a Rao-Blackwellised cost that drops it by the model's order
    // is biased by p_i(1 − p_i)·4.5 (the mean of E[log p(z) | y = 1] − E[.. | y = 0]). The
    // mean of R draws of ∂loss/∂l must match −∂ELBO/∂l (enumerated, above) for all 4
    // logits within 4.5 standard errors, for both model orders, RB on and off, K = 1 and
    // 8 (32 comparisons; a correct estimator exceeds 4.5 se somewhere with probability
    // ~2e-4). The bias (≥ 0.6 here) is 20+ standard errors (≤ 0.03).
    let _v = ppl_core::validation::disable();
    let dtype = DType::F64;
    let x = vec![1.5, 2.0, 3.5, 0.5];
    let l0 = vec![0.0, -1.0, 0.5, -0.8];
    let want: Vec<f64> = semi_supervised_exact_gradient(&x, &l0).iter().map(|g| -g).collect();
    for z_first in [true, false] {
        let model = SemiSupervised { x: x.clone(), z_first, dtype, device: device.clone() };
        let guide = LabelFirstGuide { init: l0.clone(), dtype, device: device.clone() };
        for rb in [true, false] {
            for k in [1usize, 8] {
                let r = 8000 / k;
                let elbo = TraceElbo::new().with_particles(k).unwrap().with_rao_blackwellization(rb);
                let mut ctx = ctx_on(40 + k as u64, &device, dtype);
                let (g, _) = grad_draws(elbo, &mut ctx, &model, &guide, "q/logits", r);
                let what = format!("z first {z_first}, RB {rb}, K = {k}");
                for (i, want) in want.iter().enumerate() {
                    let (mean, se) = mean_and_se(&column(&g, i));
                    println!("{what}: ∂loss/∂l[{i}] = {mean:.4} ± {se:.4} vs exact {want:.4}");
                    assert!(se > 0.0, "{what}: logit {i} has no gradient noise");
                    assert!(
                        (mean - want).abs() < 4.5 * se,
                        "{what}: ∂loss/∂l[{i}] = {mean} ± {se} vs exact {want}"
                    );
                }
            }
        }
    }
});

#[test]
fn rao_blackwellisation_by_plates_cuts_the_variance_in_both_model_orders() {
    // SemiSupervised (4 points): the cost of y_0 may drop the terms of points 1..3 (other
    // elements of plate `data`), whatever the model's order. Over M = 8000 draws each, the
    // RB and plain means for l_0 agree within 4 standard errors of their difference, and
    // the RB variance is at most half the plain one (the three other points' log ratios
    // carry most of the plain variance).
    let _v = ppl_core::validation::disable();
    let (dtype, device) = (DType::F64, Device::Cpu);
    let x = vec![1.5, 2.0, 3.5, 0.5];
    for z_first in [true, false] {
        let model = SemiSupervised {
            x: x.clone(),
            z_first,
            dtype,
            device: device.clone(),
        };
        let guide = LabelFirstGuide {
            init: vec![0.0, -1.0, 0.5, -0.8],
            dtype,
            device: device.clone(),
        };
        let m = 8000;
        let mut draws = Vec::new();
        for (rb, seed) in [(true, 61u64), (false, 62)] {
            let elbo = TraceElbo::new().with_rao_blackwellization(rb);
            let mut ctx = ctx_on(seed, &device, dtype);
            let (g, _) = grad_draws(elbo, &mut ctx, &model, &guide, "q/logits", m);
            draws.push(column(&g, 0));
        }
        let (rm, rse) = mean_and_se(&draws[0]);
        let (pm, pse) = mean_and_se(&draws[1]);
        let (rv, pv) = (variance(&draws[0]), variance(&draws[1]));
        println!("z first {z_first}: RB {rm} (var {rv}), plain {pm} (var {pv})");
        let se = (rse * rse + pse * pse).sqrt();
        assert!(
            (rm - pm).abs() < 4.0 * se,
            "z first {z_first}: {rm} vs {pm} (se {se})"
        );
        assert!(
            rv < 0.5 * pv,
            "z first {z_first}: RB variance {rv} vs plain {pv}"
        );
    }
}

#[test]
fn score_function_training_reaches_the_closed_form_label_probability() {
    // The toy: with x = 1.5 the optimum is p* = σ(3x − 9) = σ(−4.5) = 0.0110 in
    // both model orders (a cost biased by the model's order drove p to 0.46 with the model
    // sampling z first). Points x = (1.5, 2.5, 3.5) have p* = (0.0110, 0.182, 0.818).
    // TraceElbo (K = 8, Rao-Blackwellised, moving-average baseline), Adam at lr 0.05 from
    // l = 0: 1500 steps, then the probabilities averaged over 1000 more. Tolerance 0.03 on
    // each probability (measured max error 0.009 at this seed; the biased estimator
    // misses the first by 0.49).
    let _v = ppl_core::validation::disable();
    let (dtype, device) = (DType::F64, Device::Cpu);
    let x = vec![1.5, 2.5, 3.5];
    let exact: Vec<f64> = x
        .iter()
        .map(|x: &f64| 1.0 / (1.0 + (9.0 - 3.0 * x).exp()))
        .collect();
    for z_first in [true, false] {
        let model = SemiSupervised {
            x: x.clone(),
            z_first,
            dtype,
            device: device.clone(),
        };
        let guide = LabelFirstGuide {
            init: vec![0.0; 3],
            dtype,
            device: device.clone(),
        };
        let mut ctx = ctx_on(77, &device, dtype);
        let mut trainer = Trainer::new(Adam::new(), 0.05).unwrap();
        let elbo = TraceElbo::new().with_particles(8).unwrap();
        let mut svi = Svi::new(&model, &guide, elbo);
        trainer.run(&mut ctx, &mut svi, 1500).unwrap();
        let avg = 1000;
        let mut got = vec![0.0; x.len()];
        for _ in 0..avg {
            trainer.step(&mut ctx, &mut svi).unwrap();
            for (g, l) in got.iter_mut().zip(guide.logits(&ctx)) {
                *g += 1.0 / (1.0 + (-l).exp()) / avg as f64;
            }
        }
        println!("z first {z_first}: p = {got:?} vs exact {exact:?}");
        for (g, e) in got.iter().zip(&exact) {
            assert!(
                (g - e).abs() < 0.03,
                "z first {z_first}: p = {got:?} vs exact {exact:?}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Autoguides trained end to end.

#[test]
fn auto_normal_reaches_the_exact_conjugate_posterior() {
    // ConjugateGaussian (n = 10, d = 1): exact posterior N(m*, s*²), s* = 1/√Λ = 0.156.
    // AutoNormal contains it. Svi + Trainer::run with TraceElbo (K = 8 particles) and Adam
    // at lr 0.01 for 2000 steps, then T = 2000 more steps whose iterates are averaged.
    // At the optimum the reparameterised gradient noise does not vanish: per particle
    // g_loc = Λ (m* − z) (variance Λ²s*² = Λ) and g_log s = 1 − ε² (variance 2), with
    // curvatures H = Λ and 2. Near the optimum Adam is SGD preconditioned by the gradient's
    // RMS, and the Polyak average of such iterates has variance H⁻¹ S H⁻¹ / T whatever the
    // step size (S the per-step gradient variance): s*²/(K T) for the loc and 1/(2 K T) for
    // log s, i.e. standard errors 0.0012 (0.8% of s*) and 0.56% relative on the scale. The
    // constant-rate bias on the scale is about the stationary variance of log s,
    // lr·√(2/K)/(2·2) ≈ 0.1%. Measured over 10 seeds: RMS errors 0.0009 on the loc and
    // 0.3% on the scale, within those predictions. Tolerances: 4 se on the loc; 4 se +
    // 0.2% on the scale.
    let _v = ppl_core::validation::disable();
    let (k, warm, t) = (8usize, 2000u64, 2000usize);
    for dtype in DTYPES {
        let f = ConjugateGaussian::new(11, 10, dtype, &Device::Cpu).unwrap();
        let (mstar, v) = f.exact_posterior();
        let sstar = v.sqrt();
        let mut ctx = ctx_on(12, &Device::Cpu, dtype);
        let guide = AutoNormal::new(&mut ctx, &f).unwrap();
        let mut trainer = Trainer::new(Adam::new(), 0.01).unwrap();
        let mut svi = Svi::new(&f, &guide, TraceElbo::new().with_particles(k).unwrap());
        let report = trainer.run(&mut ctx, &mut svi, warm).unwrap();
        assert_eq!(report.losses.len(), warm as usize);
        let (mut loc, mut sd) = (0.0, 0.0);
        for _ in 0..t {
            trainer.step(&mut ctx, &mut svi).unwrap();
            loc += to_f64(&guide.loc(&ctx, "z").unwrap())[0] / t as f64;
            sd += to_f64(&guide.scale(&ctx, "z").unwrap())[0] / t as f64;
        }
        let kt = (k * t) as f64;
        let (tol_loc, tol_sd) = (4.0 * sstar / kt.sqrt(), 4.0 / (2.0 * kt).sqrt() + 0.002);
        println!(
            "{dtype:?}: loc {loc} vs {} (error {:.2e}, tolerance {tol_loc:.1e}); sd {sd} vs \
             {sstar} (relative error {:.2e}, tolerance {tol_sd:.1e})",
            mstar[0],
            (loc - mstar[0]).abs(),
            (sd / sstar - 1.0).abs()
        );
        assert!(
            (loc - mstar[0]).abs() < tol_loc,
            "{dtype:?}: loc {loc} vs {}",
            mstar[0]
        );
        assert!(
            (sd / sstar - 1.0).abs() < tol_sd,
            "{dtype:?}: sd {sd} vs {sstar}"
        );
    }
}

/// `KL(N(m, S) ‖ N(mp, P))` on the host.
fn kl_gauss(m: &[f64], s: &[Vec<f64>], mp: &[f64], p: &[Vec<f64>]) -> f64 {
    let d = m.len();
    let lp = cholesky(&p.to_vec()).unwrap();
    let ls = cholesky(&s.to_vec()).unwrap();
    let pinv = common::host::inverse_from_cholesky(&lp);
    let mut tr = 0.0;
    for i in 0..d {
        for j in 0..d {
            tr += pinv[i][j] * s[j][i];
        }
    }
    let dm: Vec<f64> = m.iter().zip(mp).map(|(a, b)| a - b).collect();
    let mut quad = 0.0;
    for i in 0..d {
        for j in 0..d {
            quad += dm[i] * pinv[i][j] * dm[j];
        }
    }
    0.5 * (tr + quad - d as f64 + common::host::log_det_from_cholesky(&lp)
        - common::host::log_det_from_cholesky(&ls))
}

#[test]
fn auto_multivariate_normal_reaches_the_exact_regression_posterior_and_evidence() {
    // LinearRegression (n = 20, d = 3): exact posterior N(m*, Σ*) and evidence log p(y).
    // AutoMultivariateNormal (a full-rank Gaussian on w) contains the posterior. Svi +
    // Trainer::run with TraceElbo (K = 32), Adam at lr 0.01, 3000 steps, then T = 2000
    // steps whose loc and covariance L Lᵀ are averaged. As for AutoNormal, the averaged loc
    // has covariance Σ*/(K T) (per-particle gradient Λ(m* − w), covariance Λ, Hessian Λ):
    // each coordinate's error is 1/√(KT) = 0.004 posterior sds (measured RMS over 10 seeds:
    // 0.0047, max 0.0099); tolerance 5/√(KT) = 0.020. Covariance entries, relative to
    // √(Σ*_ii Σ*_jj): the averaged scale's se is ~1/√(2KT) per entry of L, twice that for
    // Σ_ii = Σ_k L_ik² (0.6%); measured RMS over 10 seeds 0.9% on the diagonal (max 1.6%)
    // and 0.34% off it; tolerance 4%. With K = 8 the spread doubled (a seed reached 4.6%),
    // hence K = 32. Then the guide is set to the averaged (m̄, Σ̄): its ELBO is
    // log p(y) − KL(q̄ ‖ p(w | y)) exactly (Gaussian posterior), estimated with 20 draws of
    // 1000 particles (log w is then nearly constant, se ~2e-4), within 4 se; and
    // KL(q̄ ‖ p) must be < 0.002 nats (measured 5e-5 to 2e-4 over 10 seeds; a wrong
    // optimum, e.g. a mean-field covariance, costs > 0.01).
    let _v = ppl_core::validation::disable();
    let (k, warm, t) = (32usize, 3000u64, 2000usize);
    for dtype in DTYPES {
        let f = LinearRegression::new(13, 20, 3, dtype, &Device::Cpu).unwrap();
        let (mstar, cstar) = f.exact_posterior().unwrap();
        let evidence = f.exact_log_evidence().unwrap();
        let mut ctx = ctx_on(14, &Device::Cpu, dtype);
        let guide = AutoMultivariateNormal::new(&mut ctx, &f).unwrap();
        let mut trainer = Trainer::new(Adam::new(), 0.01).unwrap();
        let mut svi = Svi::new(&f, &guide, TraceElbo::new().with_particles(k).unwrap());
        trainer.run(&mut ctx, &mut svi, warm).unwrap();
        let (mut loc, mut cov) = (vec![0.0; 3], vec![vec![0.0; 3]; 3]);
        for _ in 0..t {
            trainer.step(&mut ctx, &mut svi).unwrap();
            let l = to_f64(&guide.loc(&ctx).unwrap());
            let c = to_f64(&guide.covariance(&ctx).unwrap());
            for i in 0..3 {
                loc[i] += l[i] / t as f64;
                for j in 0..3 {
                    cov[i][j] += c[i * 3 + j] / t as f64;
                }
            }
        }
        let kt = (k * t) as f64;
        for i in 0..3 {
            let z = (loc[i] - mstar[i]) / cstar[i][i].sqrt();
            println!(
                "{dtype:?}: loc[{i}] {} vs {} ({z:.4} posterior sds)",
                loc[i], mstar[i]
            );
            assert!(
                z.abs() < 5.0 / kt.sqrt(),
                "{dtype:?}: loc[{i}] {} vs {}",
                loc[i],
                mstar[i]
            );
            for j in 0..3 {
                let rel = (cov[i][j] - cstar[i][j]) / (cstar[i][i] * cstar[j][j]).sqrt();
                println!(
                    "  cov[{i}][{j}] {} vs {} ({rel:.4})",
                    cov[i][j], cstar[i][j]
                );
                assert!(
                    rel.abs() < 0.04,
                    "{dtype:?}: cov[{i}][{j}] {} vs {}",
                    cov[i][j],
                    cstar[i][j]
                );
            }
        }
        // The ELBO of the averaged guide.
        let kl = kl_gauss(&loc, &cov, &mstar, &cstar);
        let l = cholesky(&cov).unwrap();
        let up =
            |v: Vec<f64>, shape: &[usize]| upload_rounded(v, shape, dtype, &Device::Cpu).unwrap().0;
        let p = ctx.params();
        p.insert("auto_mvn/loc", &up(loc.clone(), &[3]), &Constraint::Real)
            .unwrap();
        let flat: Vec<f64> = l.iter().flatten().copied().collect();
        p.insert(
            "auto_mvn/scale_tril",
            &up(flat, &[3, 3]),
            &Constraint::ScaledUnitLowerCholesky,
        )
        .unwrap();
        let elbo = TraceElbo::new().with_particles(1000).unwrap();
        let b = bounds(elbo, &mut ctx, &f, &guide, 20);
        let (mean, se) = mean_and_se(&b);
        let want = evidence - kl;
        println!("{dtype:?}: ELBO {mean} ± {se} vs log p(y) − KL = {want} (log p(y) {evidence}, KL {kl:.2e})");
        assert!(kl < 0.002, "{dtype:?}: KL(q ‖ posterior) = {kl}");
        // f32: the 1000-particle mean of log densities of ~20 nats carries ~1e-5 rounding.
        let floor = if dtype == DType::F32 { 1e-4 } else { 0.0 };
        assert!(
            (mean - want).abs() < 4.0 * se + floor,
            "{dtype:?}: ELBO {mean} ± {se} vs {want}"
        );
    }
}

/// The local-level model: `z_1 ~ N(0, σ_z²)`, `z_t ~ N(z_{t−1}, σ_z²)`, `y_t ~ N(z_t, σ_y²)`
/// for `t = 1..T`, the random-walk prior written as one `MultivariateNormal` with
/// `L = σ_z · tril(1)`; data drawn from the model with a seeded `PplRng`.
struct LocalLevel {
    y: Tensor,
    yh: Vec<f64>,
    sz: f64,
    sy: f64,
    prior_tril: Tensor,
}

impl LocalLevel {
    fn new(t: usize, sz: f64, sy: f64, seed: u64) -> Self {
        let mut rng = PplRng::seed_from_u64(seed);
        let mut z = 0.0;
        let yh: Vec<f64> = (0..t)
            .map(|_| {
                z += sz * rng.standard_normal();
                z + sy * rng.standard_normal()
            })
            .collect();
        let y = Tensor::from_vec(yh.clone(), t, &Device::Cpu).unwrap();
        let prior_tril = (Tensor::tril2(t, DType::F64, &Device::Cpu).unwrap() * sz).unwrap();
        LocalLevel {
            y,
            yh,
            sz,
            sy,
            prior_tril,
        }
    }

    /// `log p(y)` by the Kalman filter (exact).
    fn log_evidence(&self) -> f64 {
        let (mut m, mut p, mut lp) = (0.0, 0.0, 0.0);
        for &y in &self.yh {
            p += self.sz * self.sz;
            let s = p + self.sy * self.sy;
            lp -= 0.5 * ((2.0 * std::f64::consts::PI * s).ln() + (y - m) * (y - m) / s);
            let k = p / s;
            m += k * (y - m);
            p *= 1.0 - k;
        }
        lp
    }
}

impl Model for LocalLevel {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let zero = Tensor::zeros(self.yh.len(), DType::F64, &Device::Cpu)?;
        let z = ctx.sample("z", MultivariateNormal::new(&zero, &self.prior_tril)?)?;
        let sy = Tensor::new(self.sy, &Device::Cpu)?;
        ctx.observe("y", Normal::new(&z, &sy)?.to_event(1)?, &self.y)?;
        Ok(())
    }
}

#[test]
fn auto_multivariate_normal_trains_a_local_level_model_as_numpyro_does() {
    // Issue 11: AutoMultivariateNormal stalled far below log p(y) where NumPyro's did not.
    // Local-level model, T = 100, σ_z = 0.5, σ_y = 1: the posterior is Gaussian and the
    // family contains it, so the ELBO's optimum is log p(y) = −158.81 (Kalman filter).
    // Adam lr 0.01, one particle, 2000 steps from the prototype; then the ELBO with 1000
    // particles (per-particle log weights spread a few nats, so its standard error is
    // ~0.1-0.2 nat). Measured on these data: the earlier parameterisation of L (exp
    // diagonal, raw off-diagonal entries) ends 104.1 nats below log p(y) (89 after 3000
    // steps); the scaled unit-lower factor ends 20.4 below (17.0 after 3000 steps), the
    // noise floor of one-particle Adam at lr 0.01 for D = 100 (it falls with the lr):
    // NumPyro 0.22's AutoMultivariateNormal (scaled_unit_lower_cholesky) on the same data,
    // model, lr and 3000 steps ends 16.5 and 17.4 below (two seeds), and 73-76 below with
    // its lower_cholesky (exp diagonal) constraint. Tolerance: within 25 nats of log p(y)
    // (well inside NumPyro's floor plus the shorter run, far from the old 90+), and not
    // above it by more than 1 nat (the ELBO is a lower bound; 5+ standard errors).
    let _v = ppl_core::validation::disable();
    let f = LocalLevel::new(100, 0.5, 1.0, 7);
    let evidence = f.log_evidence();
    assert!((evidence + 158.806).abs() < 1e-3, "log p(y) = {evidence}");
    let mut ctx = Ctx::new(11).with_dtype(DType::F64);
    let guide = AutoMultivariateNormal::new(&mut ctx, &f).unwrap();
    let mut trainer = Trainer::new(Adam::new(), 0.01).unwrap();
    let mut svi = Svi::new(&f, &guide, TraceElbo::new());
    trainer.run(&mut ctx, &mut svi, 2000).unwrap();
    let elbo = bounds(
        TraceElbo::new().with_particles(1000).unwrap(),
        &mut ctx,
        &f,
        &guide,
        1,
    )[0];
    println!(
        "ELBO {elbo} vs log p(y) {evidence}: gap {}",
        evidence - elbo
    );
    assert!(
        evidence - elbo < 25.0,
        "ELBO {elbo} is {} nats below log p(y) = {evidence}",
        evidence - elbo
    );
    assert!(
        elbo < evidence + 1.0,
        "ELBO {elbo} above log p(y) = {evidence}"
    );
}
