//! A hybrid model with deep invertible features (DIGLM, Nalisnick et al. 2019) on a 1-D
//! regression with input-dependent noise and a gap in the inputs, against an exact
//! Gaussian process.
//!
//! **Data** (seeded): `x` from `U(−4, −1)` or `U(1, 4)` (a fair coin picks the interval),
//! `y = x³/10 + ε`, `ε ~ N(0, (0.2 + 0.3|x|)²)`; `--n-train` training and `--n-test` test
//! points from different seeds. Nothing lies in the gap `(−1, 1)`.
//!
//! **Hybrid model** (f64): a 1-D flow `z = f(x)` ([`Bijector::to_base`]) made of, from the
//! data side, an [`ActNorm`] (data-dependent standardisation) and then `--splines` times an
//! [`ElementwiseSpline`] (`--bins` bins on `[−3, 3]`) followed by another `ActNorm` (a
//! scalar affine), onto a `N(0, 1)` base; a [`LinearGaussian`] head `y ~ N(w z + b, σ²)`.
//! Trained with the [`Hybrid`] engine at `λ = --lambda` (1: the joint likelihood
//! `log p(y | x) + log p(x)`), full batch, Adam. Then a [`BayesianLinear`] head is fitted on
//! the trained features with `σ` from the trained head and the prior precision `α` chosen
//! by the largest `log_evidence` over `10^−4 … 10^3`; its predictive mean and sd
//! (`σ² + φᵀΣφ`) are the hybrid model's predictions. Both heads are homoscedastic, like
//! the GP: none of them models the input-dependent noise, which shows in the test
//! log-likelihoods.
//!
//! **GP baseline** (`examples/common/gp.rs`): RBF kernel plus noise, hyperparameters by
//! the log marginal likelihood (grid and compass search), exact predictive mean and sd.
//!
//! **JSON** (one line at the end): `rmse` and `gp_rmse` (test RMSE of the predictive
//! means), `log_px_gap` (mean `log p(x)` of the flow on 101 evenly spaced points in
//! `(−1, 1)`, where there are no data), `log_px_support` (mean `log p(x)` over the test
//! inputs; the true density there is `1/6`, `log = −1.79`), `pred_sd_gap` and
//! `pred_sd_support` (mean hybrid predictive sd on the gap grid and at the test inputs),
//! the GP's `gp_pred_sd_gap` / `gp_pred_sd_support`, test log-likelihoods
//! (`test_log_lik`, `gp_test_log_lik`), and the fitted hyperparameters.
//!
//! Picture `<out>/hybrid_heteroscedastic.png`: the data, the hybrid and GP means ± 2 sd
//! over `x ∈ [−5, 5]` (top), and the flow's density `p(x)` against the true one (bottom).
//!
//! Run: `cargo run --release --example hybrid_heteroscedastic` (`--quick` for CI).

#[path = "common/gp.rs"]
mod gp;

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use gp::Gp;
use ppl::engines::{log_px, BayesianLinear, Hybrid, HybridOptions, LinearGaussian};
use ppl::flows::{ActNorm, Bijector, ElementwiseSpline, Flow};
use ppl::observers::Progress;
use ppl::plots::{line_chart, Panel, Series, YRange};
use ppl::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

const DEV: Device = Device::Cpu;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "DIGLM on 1-D heteroscedastic regression with a gap, against an exact GP")]
struct Args {
    /// Adam steps (full batch).
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Weight λ of log p(x) in the objective.
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// Spline layers of the flow.
    #[arg(long, default_value_t = 3)]
    splines: usize,
    /// Bins per spline.
    #[arg(long, default_value_t = 8)]
    bins: usize,
    /// Training points.
    #[arg(long, default_value_t = 400)]
    n_train: usize,
    /// Test points.
    #[arg(long, default_value_t = 400)]
    n_test: usize,
    /// A short run for CI (500 steps).
    #[arg(long)]
    quick: bool,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/hybrid_heteroscedastic")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The noise sd at `x`.
fn noise_sd(x: f64) -> f64 {
    0.2 + 0.3 * x.abs()
}

/// `n` points `(x, y)` of the data (see the module docs).
fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut xs = Vec::with_capacity(n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let u = 1.0 + 3.0 * rng.uniform_open();
        let x = if rng.uniform_open() < 0.5 { -u } else { u };
        xs.push(x);
        ys.push(x.powi(3) / 10.0 + noise_sd(x) * rng.standard_normal());
    }
    (xs, ys)
}

fn col(v: &[f64]) -> Result<Tensor> {
    Ok(Tensor::from_vec(v.to_vec(), (v.len(), 1), &DEV)?)
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// The 1-D flow, layers listed from the base side (see the module docs).
fn build_flow(ctx: &mut Ctx, splines: usize, bins: usize) -> Result<Flow> {
    let mut layers: Vec<Arc<dyn Bijector>> = Vec::new();
    for i in (0..splines).rev() {
        layers.push(Arc::new(
            ctx.try_module(&format!("flow/spline{i}"), |vb| {
                ElementwiseSpline::new(vb, 1, bins, 3.0)
            })?,
        ));
        layers.push(Arc::new(
            ctx.try_module(&format!("flow/actnorm{i}"), |vb| ActNorm::new(vb, 1))?,
        ));
    }
    Flow::new(layers)
}

/// Mean Gaussian log-density of `y` under predictive means and sds.
fn gaussian_ll(y: &[f64], m: &[f64], sd: &[f64]) -> f64 {
    let c = 0.5 * (2.0 * std::f64::consts::PI).ln();
    mean(
        &y.iter()
            .zip(m.iter().zip(sd))
            .map(|(y, (m, s))| -0.5 * ((y - m) / s).powi(2) - s.ln() - c)
            .collect::<Vec<_>>(),
    )
}

fn rmse(y: &[f64], m: &[f64]) -> f64 {
    mean(
        &y.iter()
            .zip(m)
            .map(|(a, b)| (a - b).powi(2))
            .collect::<Vec<_>>(),
    )
    .sqrt()
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 500;
    }
    threads::default_threads(args.threads);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let (x_train, y_train) = data(args.n_train, args.seed.wrapping_add(1));
    let (x_test, y_test) = data(args.n_test, args.seed.wrapping_add(2));
    let (xt, yt) = (col(&x_train)?, col(&y_train)?);

    // The hybrid model.
    let mut ctx = Ctx::new(args.seed).with_dtype(DType::F64);
    let flow = build_flow(&mut ctx, args.splines, args.bins)?;
    let head = ctx.try_module("head", |vb| LinearGaussian::new(vb, 1, 1))?;
    let mut engine = Hybrid::new(
        &flow,
        &head,
        &xt,
        &yt,
        HybridOptions::default().lambda(args.lambda),
    );
    let mut trainer = Trainer::new(Adam::new(), args.lr)?;
    if !args.quiet {
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let t0 = Instant::now();
    let report = trainer.run(&mut ctx, &mut engine, args.steps)?;
    let train_seconds = t0.elapsed().as_secs_f64();

    // Bayesian linear head on the trained features; α by evidence.
    let sigma = host(&head.sigma()?)?[0];
    let (z_train, _) = flow.to_base(&xt, None)?;
    let mut best: Option<BayesianLinear> = None;
    for k in -4..=3 {
        let fit = BayesianLinear::fit(&z_train, &yt, 10f64.powi(k), sigma)?;
        if best
            .as_ref()
            .is_none_or(|b| fit.log_evidence() > b.log_evidence())
        {
            best = Some(fit);
        }
    }
    let blr = best.ok_or_else(|| PplError::config("hybrid_heteroscedastic", "no α fitted"))?;
    let predict = |xs: &[f64]| -> Result<(Vec<f64>, Vec<f64>)> {
        let (z, _) = flow.to_base(&col(xs)?, None)?;
        let (m, v) = blr.predict(&z)?;
        Ok((host(&m)?, host(&v.sqrt()?)?))
    };
    let (m_test, sd_test) = predict(&x_test)?;
    let gap: Vec<f64> = (0..101).map(|i| -0.99 + 1.98 * i as f64 / 100.0).collect();
    let (_, sd_gap) = predict(&gap)?;
    let lpx_gap = host(&log_px(&flow, &col(&gap)?)?)?;
    let lpx_test = host(&log_px(&flow, &col(&x_test)?)?)?;

    // The GP baseline.
    let t1 = Instant::now();
    let gp = Gp::fit(&x_train, &y_train)?;
    let gp_seconds = t1.elapsed().as_secs_f64();
    let gp_test = gp.predict(&x_test);
    let gp_gap = gp.predict(&gap);
    let (gp_m, gp_sd): (Vec<f64>, Vec<f64>) = gp_test.iter().cloned().unzip();
    let gp_sd_gap: Vec<f64> = gp_gap.iter().map(|p| p.1).collect();

    // Picture.
    let grid: Vec<f64> = (0..=200).map(|i| -5.0 + 10.0 * i as f64 / 200.0).collect();
    let (hm, hsd) = predict(&grid)?;
    let gpg = gp.predict(&grid);
    let lpx_grid = host(&log_px(&flow, &col(&grid)?)?)?;
    let pts = |f: &dyn Fn(usize) -> f64| -> Vec<(f64, f64)> {
        grid.iter().enumerate().map(|(i, x)| (*x, f(i))).collect()
    };
    let (blue, light_blue) = ([31, 119, 180], [140, 190, 230]);
    let (orange, light_orange) = ([230, 110, 20], [245, 185, 130]);
    let top = Panel::new(
        "hybrid (flow + Bayesian linear head) and GP: mean ± 2 sd",
        "x",
        "y",
    )
    .with_series(
        Series::new(
            "training data",
            x_train
                .iter()
                .cloned()
                .zip(y_train.iter().cloned())
                .collect(),
        )
        .color([120, 120, 120])
        .markers(2),
    )
    .with_series(
        Series::new("true mean x³/10", pts(&|i| grid[i].powi(3) / 10.0))
            .color([0, 0, 0])
            .width(1),
    )
    .with_series(Series::new("hybrid mean", pts(&|i| hm[i])).color(blue))
    .with_series(Series::new("hybrid ± 2 sd", pts(&|i| hm[i] + 2.0 * hsd[i])).color(light_blue))
    .with_series(Series::new("", pts(&|i| hm[i] - 2.0 * hsd[i])).color(light_blue))
    .with_series(Series::new("GP mean", pts(&|i| gpg[i].0)).color(orange))
    .with_series(Series::new("GP ± 2 sd", pts(&|i| gpg[i].0 + 2.0 * gpg[i].1)).color(light_orange))
    .with_series(Series::new("", pts(&|i| gpg[i].0 - 2.0 * gpg[i].1)).color(light_orange))
    .with_y_range(YRange::Full);
    let true_px = |x: f64| {
        if (1.0..=4.0).contains(&x.abs()) {
            1.0 / 6.0
        } else {
            0.0
        }
    };
    let bottom = Panel::new("density of the inputs", "x", "p(x)")
        .with_series(Series::new("flow p(x)", pts(&|i| lpx_grid[i].exp())).color(blue))
        .with_series(
            Series::new("true p(x)", pts(&|i| true_px(grid[i])))
                .color([0, 0, 0])
                .width(1),
        )
        .with_y_range(YRange::Full);
    line_chart(
        args.out.join("hybrid_heteroscedastic.png"),
        &format!(
            "DIGLM (λ = {}) vs exact GP, y = x³/10 + N(0, (0.2 + 0.3|x|)²)",
            args.lambda
        ),
        &[top, bottom],
    )?;

    let json = serde_json::json!({
        "example": "hybrid_heteroscedastic",
        "lambda": args.lambda,
        "steps": args.steps,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "final_loss": report.losses.last().copied().unwrap_or(f64::NAN),
        "skipped_steps": report.skipped,
        "rmse": rmse(&y_test, &m_test),
        "gp_rmse": rmse(&y_test, &gp_m),
        "log_px_gap": mean(&lpx_gap),
        "log_px_support": mean(&lpx_test),
        "pred_sd_gap": mean(&sd_gap),
        "pred_sd_support": mean(&sd_test),
        "gp_pred_sd_gap": mean(&gp_sd_gap),
        "gp_pred_sd_support": mean(&gp_sd),
        "true_noise_sd_support": mean(&x_test.iter().map(|x| noise_sd(*x)).collect::<Vec<_>>()),
        "test_log_lik": gaussian_ll(&y_test, &m_test, &sd_test),
        "gp_test_log_lik": gaussian_ll(&y_test, &gp_m, &gp_sd),
        "head_sigma": sigma,
        "blr_alpha": blr.hyperparameters().0,
        "blr_log_evidence": blr.log_evidence(),
        "gp_lengthscale": gp.lengthscale,
        "gp_signal_sd": gp.signal_sd,
        "gp_noise_sd": gp.noise_sd,
        "gp_log_marginal": gp.log_marginal,
        "gp_seconds": gp_seconds,
        "steps_per_sec": args.steps as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
