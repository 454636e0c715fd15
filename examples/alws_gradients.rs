//! How accurate is the KRR gradient? Amortised learning by wake-sleep
//! ([`KrrWakeSleep`]) against exact gradients of the log-likelihood, on three models whose
//! marginal `p_θ(x)` is tractable, with self-normalised importance sampling (SNIS, the
//! prior as proposal) as the yardstick.
//!
//! **Models** (all f64; each has `--data` points drawn at its data-generating parameters
//! θ*; the gradient of the mean log-likelihood is compared at a point θ near θ*, so that it
//! is not dominated by the data's own noise):
//! - `fa`, factor analysis: `z ~ N(0, I₂)`, `x | z ~ N(W z + b, 0.5² I₅)`, learnable `W`
//!   (5×2) and `b` (5). Exact: `x ~ N(b, W Wᵀ + 0.25 I)`, by Cholesky. θ = (0.8 W*, b* + 0.3).
//! - `circle`, a latent on the unit circle: `z ~ VonMises(0, 0)` (uniform angle),
//!   `x | z ~ N(r (cos z, sin z) + c, 0.3² I₂)`, learnable `r`, `c`. Exact: the trapezoid
//!   rule with 512 nodes (spectrally accurate for a smooth periodic integrand). θ* = (2,
//!   (0.5, −0.5)), θ = (1.7, (0.3, −0.2)).
//! - `mixture`, a discrete latent: `z ~ Categorical(¼, ¼, ¼, ¼)`, `x | z ~ N(μ_z, 0.5²)`,
//!   learnable `μ`. Exact: a logsumexp over the 4 components. μ* = (−3, −1, 1, 3),
//!   μ = (−2.6, −1.3, 0.7, 3.3).
//!
//! **Estimators**, each with `N` samples for N in 100, 300, 1000, 2000 and `--seeds` seeds:
//! - KRR: one [`KrrWakeSleep::estimate`] with `N` sleep samples and the default options
//!   (exact Gaussian kernel, exponential-family split, bandwidth and `λ` tuned on a fresh
//!   validation sleep set); its gradient is the estimate of `∇θ mean_m log p_θ(x_m)`.
//! - SNIS: `N` prior draws `z_n` shared by all data points; per point the weights
//!   `w_mn ∝ p_θ(x_m | z_n)`, and `Σ_n w_mn ∇θ log p_θ(x_m | z_n)` averaged over `m`.
//!
//! Reported per model and `N`: the mean (over seeds) cosine similarity with the exact
//! gradient and the mean relative error `‖ĝ − g‖ / ‖g‖`. Pictures: `<out>/gradients.png`
//! (cosine and relative error against N, one row per model, KRR and SNIS). Ends with one
//! JSON line `{"fa": {"n": [...], "cosine": [...], "rel_err": [...], "snis": {"cosine":
//! [...], "rel_err": [...]}}, "circle": {...}, "mixture": {...}, ...}`.
//!
//! Run: `cargo run --release --example alws_gradients` (`--quick`: 2 seeds).

use candle_core::{DType, Device, Tensor, Var, D};
use clap::Parser;
use ppl::engines::{KrrOptions, KrrWakeSleep};
use ppl::plots::{line_chart_sized, ChartSize, Panel, Series, YRange};
use ppl::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

const DEV: Device = Device::Cpu;
const LN_2PI: f64 = 1.837_877_066_409_345_5;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "KRR (amortised learning) gradients against exact ones, with SNIS")]
struct Args {
    /// Seeds per sample size.
    #[arg(long, default_value_t = 5)]
    seeds: u64,
    /// Data points per model.
    #[arg(long, default_value_t = 300)]
    data: usize,
    /// A short run for CI: 2 seeds.
    #[arg(long)]
    quick: bool,
    /// No progress lines on stderr.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/alws_gradients")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Fa,
    Circle,
    Mixture,
}

const FA_W: [[f64; 2]; 5] = [[1.0, 0.0], [0.5, 1.0], [-0.8, 0.6], [0.3, -1.2], [0.9, 0.4]];
const FA_B: [f64; 5] = [0.5, -1.0, 0.2, 0.0, 0.8];
const MIX_MU: [f64; 4] = [-3.0, -1.0, 1.0, 3.0];

fn t2(rows: &[Vec<f64>]) -> Result<Tensor> {
    let (r, c) = (rows.len(), rows.first().map_or(0, |v| v.len()));
    Ok(Tensor::from_vec(rows.concat(), (r, c), &DEV)?)
}

impl Kind {
    fn key(self) -> &'static str {
        match self {
            Kind::Fa => "fa",
            Kind::Circle => "circle",
            Kind::Mixture => "mixture",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Kind::Fa => "factor analysis (z in R^2, x in R^5)",
            Kind::Circle => "latent on the unit circle (x in R^2)",
            Kind::Mixture => "4-component discrete mixture (x in R)",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            Kind::Fa => &["w", "b"],
            Kind::Circle => &["r", "c"],
            Kind::Mixture => &["mu"],
        }
    }

    fn noise(self) -> f64 {
        match self {
            Kind::Fa | Kind::Mixture => 0.5,
            Kind::Circle => 0.3,
        }
    }

    /// The data-generating parameters (`truth`) or the evaluation point.
    fn params(self, truth: bool) -> Result<Vec<Tensor>> {
        let w = t2(&FA_W.iter().map(|r| r.to_vec()).collect::<Vec<_>>())?;
        let b = Tensor::new(&FA_B, &DEV)?;
        Ok(match (self, truth) {
            (Kind::Fa, true) => vec![w, b],
            (Kind::Fa, false) => vec![(w * 0.8)?, (b + 0.3)?],
            (Kind::Circle, true) => vec![
                Tensor::new(2.0f64, &DEV)?,
                Tensor::new(&[0.5f64, -0.5], &DEV)?,
            ],
            (Kind::Circle, false) => vec![
                Tensor::new(1.7f64, &DEV)?,
                Tensor::new(&[0.3f64, -0.2], &DEV)?,
            ],
            (Kind::Mixture, true) => vec![Tensor::new(&MIX_MU, &DEV)?],
            (Kind::Mixture, false) => vec![Tensor::new(&[-2.6f64, -1.3, 0.7, 3.3], &DEV)?],
        })
    }

    /// `n` prior draws of `z`: `[n, 2]` (fa), `[n]` angles (circle), `[n]` u32 (mixture).
    fn prior(self, rng: &mut PplRng, n: usize) -> Result<Tensor> {
        Ok(match self {
            Kind::Fa => Tensor::from_vec(rng.normals(2 * n), (n, 2), &DEV)?,
            Kind::Circle => Tensor::from_vec(
                rng.uniforms(n)
                    .iter()
                    .map(|u| u * std::f64::consts::TAU)
                    .collect(),
                n,
                &DEV,
            )?,
            Kind::Mixture => Tensor::from_vec(
                rng.uniforms(n)
                    .iter()
                    .map(|u| ((u * 4.0) as u32).min(3))
                    .collect(),
                n,
                &DEV,
            )?,
        })
    }

    /// The mean of `x | z` for each row of `z`: `[n, d]`.
    fn mean(self, p: &[Tensor], z: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Kind::Fa => z.matmul(&p[0].t()?)?.broadcast_add(&p[1])?,
            Kind::Circle => Tensor::stack(&[z.cos()?, z.sin()?], 1)?
                .broadcast_mul(&p[0])?
                .broadcast_add(&p[1])?,
            Kind::Mixture => p[0].index_select(z, 0)?.unsqueeze(1)?,
        })
    }

    /// `log p_θ(x_m | z_n)` `[M, N]` for data rows `x` `[M, d]` (mixture: `[M]`).
    fn loglik(self, p: &[Tensor], x: &Tensor, z: &Tensor) -> Result<Tensor> {
        let mu = self.mean(p, z)?;
        let x = if x.rank() == 1 {
            x.unsqueeze(1)?
        } else {
            x.clone()
        };
        let d = x.dim(1)? as f64;
        let s = self.noise();
        let diff = x.unsqueeze(1)?.broadcast_sub(&mu.unsqueeze(0)?)?;
        Ok(diff
            .sqr()?
            .sum(D::Minus1)?
            .affine(-0.5 / (s * s), -d * (s.ln() + 0.5 * LN_2PI))?)
    }

    /// `m` data points at the data-generating parameters.
    fn data(self, m: usize, seed: u64) -> Result<Tensor> {
        let mut rng = PplRng::seed_from_u64(seed);
        let truth = self.params(true)?;
        let z = self.prior(&mut rng, m)?;
        let mu = self.mean(&truth, &z)?;
        let eps = Tensor::from_vec(rng.normals(mu.elem_count()), mu.dims(), &DEV)?;
        let x = (mu + (eps * self.noise())?)?;
        Ok(match self {
            Kind::Mixture => x.squeeze(1)?,
            _ => x,
        })
    }

    /// The exact mean log-likelihood of `x`, differentiable in `p`.
    fn exact(self, p: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let m = x.dim(0)? as f64;
        match self {
            Kind::Fa => {
                let c = (p[0].matmul(&p[0].t()?)? + (Tensor::eye(5, DType::F64, &DEV)? * 0.25)?)?;
                let l = ppl::linalg::cholesky(&c)?;
                let r = x.broadcast_sub(&p[1])?.t()?.contiguous()?;
                let y = ppl::linalg::solve_lower_triangular(&l, &r)?;
                let logdet = ppl::linalg::diagonal(&l)?.log()?.sum_all()?;
                let quad = (y.sqr()?.sum_all()? * (-0.5 / m))?;
                Ok((quad - logdet)?.affine(1.0, -2.5 * LN_2PI)?)
            }
            Kind::Circle | Kind::Mixture => {
                let (z, q) = match self {
                    Kind::Circle => {
                        let q = 512;
                        let th: Vec<f64> = (0..q)
                            .map(|i| std::f64::consts::TAU * i as f64 / q as f64)
                            .collect();
                        (Tensor::new(th, &DEV)?, q)
                    }
                    _ => (Tensor::new(&[0u32, 1, 2, 3], &DEV)?, 4),
                };
                let lp = self.loglik(p, x, &z)?;
                Ok(logsumexp_rows(&lp)?
                    .mean_all()?
                    .affine(1.0, -(q as f64).ln())?)
            }
        }
    }
}

/// `log Σ_n exp(a[m, n])` `[M]`.
fn logsumexp_rows(a: &Tensor) -> Result<Tensor> {
    let mx = a.max_keepdim(1)?.detach();
    let s = a.broadcast_sub(&mx)?.exp()?.sum_keepdim(1)?;
    Ok((s.log()? + mx)?.squeeze(1)?)
}

/// The model as the engine sees it: data through an input site, parameters initialised at
/// the evaluation point.
struct Case {
    kind: Kind,
    data: Tensor,
    init: Vec<Tensor>,
}

impl Model for Case {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let x = ctx.input("x", &self.data)?;
        let mut p = Vec::new();
        for (name, v) in self.kind.names().iter().zip(&self.init) {
            p.push(ctx.param(*name, || Ok(v.clone()), Constraint::Real)?);
        }
        let n = x.dim(0)?;
        let s = self.kind.noise();
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            match self.kind {
                Kind::Fa => {
                    let z = ctx.sample(
                        "z",
                        Normal::standard(&[n, 2], DType::F64, &DEV)?.to_event(1)?,
                    )?;
                    let loc = self.kind.mean(&p, &z)?;
                    let scale = loc.ones_like()?.affine(s, 0.0)?;
                    ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
                }
                Kind::Circle => {
                    let zeros = Tensor::zeros(n, DType::F64, &DEV)?;
                    let z = ctx.sample("z", VonMises::new(&zeros, &zeros)?)?;
                    let loc = self.kind.mean(&p, &z)?;
                    let scale = loc.ones_like()?.affine(s, 0.0)?;
                    ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
                }
                Kind::Mixture => {
                    let probs = Tensor::full(0.25f64, (n, 4), &DEV)?;
                    let z = ctx.sample("z", Categorical::from_probs(&probs)?)?;
                    let loc = p[0].index_select(&z.to_dtype(DType::U32)?, 0)?;
                    let scale = loc.ones_like()?.affine(s, 0.0)?;
                    ctx.observe("obs", Normal::new(&loc, &scale)?, &x)?;
                }
            }
            Ok(())
        })
    }
}

fn grads_of(loss: &Tensor, vars: &[Var]) -> Result<Vec<f64>> {
    let g = loss.backward()?;
    let mut out = Vec::new();
    for v in vars {
        let t = match g.get(v.as_tensor()) {
            Some(t) => t.clone(),
            None => v.as_tensor().zeros_like()?,
        };
        out.extend(t.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// `(cosine, relative error)` of `g` against `exact`.
fn compare(g: &[f64], exact: &[f64]) -> (f64, f64) {
    let dot: f64 = g.iter().zip(exact).map(|(u, v)| u * v).sum();
    let norm = |a: &[f64]| a.iter().map(|u| u * u).sum::<f64>().sqrt();
    let diff: Vec<f64> = g.iter().zip(exact).map(|(u, v)| u - v).collect();
    (dot / (norm(g) * norm(exact)), norm(&diff) / norm(exact))
}

/// The KRR gradient of the mean log-likelihood with `n` sleep samples.
fn krr_gradient(case: &Case, n: usize, seed: u64) -> Result<Vec<f64>> {
    let mut ctx = Ctx::new(seed).with_dtype(DType::F64);
    let mut e = KrrWakeSleep::new(case, "data", KrrOptions::default().sleep_samples(n));
    e.init(&mut ctx)?;
    let vars: Vec<Var> = case
        .kind
        .names()
        .iter()
        .map(|name| ctx.params().unconstrained(name))
        .collect::<Result<_>>()?;
    let est = e.estimate(&mut ctx)?;
    Ok(grads_of(&est.loss, &vars)?.iter().map(|g| -g).collect())
}

/// The SNIS gradient (the prior as proposal, `n` draws shared by the data points).
fn snis_gradient(case: &Case, vars: &[Var], n: usize, seed: u64) -> Result<Vec<f64>> {
    let mut rng = PplRng::seed_from_u64(seed.wrapping_add(1000));
    let z = case.kind.prior(&mut rng, n)?;
    let p: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
    let ll = case.kind.loglik(&p, &case.data, &z)?;
    let w = ll
        .broadcast_sub(&logsumexp_rows(&ll)?.unsqueeze(1)?)?
        .exp()?
        .detach();
    let m = case.data.dim(0)? as f64;
    let loss = ((w * ll)?.sum_all()? / m)?;
    grads_of(&loss, vars)
}

#[derive(Default)]
struct Curve {
    cosine: Vec<f64>,
    rel_err: Vec<f64>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    threads::default_threads(args.threads);
    let start = Instant::now();
    let ns = vec![100, 300, 1000, 2000];
    let seeds = if args.quick { 2 } else { args.seeds.max(1) };
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let mut json = serde_json::Map::new();
    let mut panels = Vec::new();
    for (k, kind) in [Kind::Fa, Kind::Circle, Kind::Mixture]
        .into_iter()
        .enumerate()
    {
        let case = Case {
            kind,
            data: kind.data(args.data, 7 + k as u64)?,
            init: kind.params(false)?,
        };
        let vars: Vec<Var> = case
            .init
            .iter()
            .map(Var::from_tensor)
            .collect::<candle_core::Result<_>>()?;
        let p: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let exact = grads_of(&kind.exact(&p, &case.data)?, &vars)?;
        let (mut krr, mut snis) = (Curve::default(), Curve::default());
        for &n in &ns {
            let (mut kc, mut ke, mut sc, mut se) = (0.0, 0.0, 0.0, 0.0);
            for seed in 0..seeds {
                let (c, e) = compare(&krr_gradient(&case, n, seed)?, &exact);
                kc += c / seeds as f64;
                ke += e / seeds as f64;
                let (c, e) = compare(&snis_gradient(&case, &vars, n, seed)?, &exact);
                sc += c / seeds as f64;
                se += e / seeds as f64;
            }
            if !args.quiet {
                eprintln!(
                    "{:8} N={n:5}: KRR cosine {kc:.4} rel.err {ke:.4} | SNIS cosine {sc:.4} \
                     rel.err {se:.4} ({:.1} s)",
                    kind.key(),
                    start.elapsed().as_secs_f64()
                );
            }
            krr.cosine.push(kc);
            krr.rel_err.push(ke);
            snis.cosine.push(sc);
            snis.rel_err.push(se);
        }
        json.insert(
            kind.key().into(),
            serde_json::json!({
                "n": ns, "cosine": krr.cosine, "rel_err": krr.rel_err,
                "snis": {"cosine": snis.cosine, "rel_err": snis.rel_err},
            }),
        );
        let pts = |v: &[f64]| -> Vec<(f64, f64)> {
            ns.iter()
                .zip(v)
                .map(|(n, y)| ((*n as f64).log10(), *y))
                .collect()
        };
        let (blue, orange) = ([31, 119, 180], [255, 127, 14]);
        panels.push(
            Panel::new(
                format!("{}: cosine similarity", kind.title()),
                "log10 N (samples)",
                "cosine",
            )
            .with_series(Series::new("KRR", pts(&krr.cosine)).color(blue))
            .with_series(Series::new("SNIS (prior proposal)", pts(&snis.cosine)).color(orange))
            .with_y_range(YRange::Full),
        );
        panels.push(
            Panel::new(
                format!("{}: relative error", kind.title()),
                "log10 N (samples)",
                "|g - g*| / |g*|",
            )
            .with_series(Series::new("KRR", pts(&krr.rel_err)).color(blue))
            .with_series(Series::new("SNIS (prior proposal)", pts(&snis.rel_err)).color(orange))
            .with_y_range(YRange::Full),
        );
    }
    line_chart_sized(
        args.out.join("gradients.png"),
        &format!("Gradient accuracy against the exact gradient (mean over {seeds} seeds)"),
        &panels,
        ChartSize {
            width: 900,
            panel_height: 260,
        },
    )?;
    json.insert("example".into(), "alws_gradients".into());
    json.insert("seeds".into(), seeds.into());
    json.insert("data".into(), args.data.into());
    json.insert("seconds".into(), start.elapsed().as_secs_f64().into());
    json.insert("out".into(), args.out.display().to_string().into());
    println!("{}", serde_json::Value::Object(json));
    Ok(())
}
