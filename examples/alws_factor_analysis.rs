//! Learning factor analysis from a random start with amortised learning by wake-sleep
//! ([`KrrWakeSleep`]), against the maximum-likelihood fit by EM on the same data.
//!
//! **Model** (f64): `z ~ N(0, I₂)`, `x | z ~ N(W z + b, diag(σ²))` in R⁵, learnable `W`
//! (5×2), `b` (5) and `log σ` (5). Its marginal is `x ~ N(b, W Wᵀ + diag(σ²))`, so the
//! exact log-likelihood of any parameter value is known in closed form.
//!
//! **Data**: `--n` points drawn at `W*`, `b*`, `σ* = (0.3, 0.5, 0.4, 0.6, 0.5)` with the
//! library's seeded RNG. **Start**: `W` with N(0, 0.1²) entries, `b = 0`, `σ = 1`.
//!
//! **Training**: `--steps` Adam steps of the KRR engine (`--sleep` samples a step, the exact
//! Gaussian kernel, the exponential-family split, bandwidth and `λ` tuned every 25 steps),
//! all the data as wake points. Every `--eval-every` steps an observer reads the current
//! parameters and records the exact log-likelihood per point.
//!
//! **Reference**: EM for factor analysis on the host in f64 (`b` = the sample mean, then
//! the classic E/M updates of `W` and `diag(σ²)` from the sample covariance) until the
//! log-likelihood gains less than 1e-12 per iteration: the MLE's log-likelihood per point.
//!
//! Outputs: `<out>/ll.png` (exact log-likelihood per point over training with the MLE
//! line, full range and close-up). Ends with one JSON line with `train_ll_per_point` (at
//! the final parameters) and `mle_ll_per_point`.
//!
//! Run: `cargo run --release --example alws_factor_analysis` (`--quick` for CI).

// Small dense matrices on the host: index loops read like the formulas.
#![allow(clippy::needless_range_loop)]

use candle_core::{DType, Device, Tensor, Var};
use clap::Parser;
use ppl::engines::{KrrOptions, KrrWakeSleep};
use ppl::observers::Progress;
use ppl::plots::{line_chart, Panel, Series, YRange};
use ppl::prelude::*;
use ppl::{Control, Observer, StepInfo};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const DEV: Device = Device::Cpu;
const D: usize = 5;
const K: usize = 2;
const LN_2PI: f64 = 1.837_877_066_409_345_5;
const W_TRUE: [[f64; K]; D] = [[1.0, 0.0], [0.5, 1.0], [-0.8, 0.6], [0.3, -1.2], [0.9, 0.4]];
const B_TRUE: [f64; D] = [0.5, -1.0, 0.2, 0.0, 0.8];
const S_TRUE: [f64; D] = [0.3, 0.5, 0.4, 0.6, 0.5];

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "Factor analysis learnt with the KRR engine, against the EM maximum likelihood")]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 800)]
    steps: u64,
    /// Sleep samples per step.
    #[arg(long, default_value_t = 1000)]
    sleep: usize,
    /// Data points.
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// Record the exact log-likelihood every this many steps.
    #[arg(long, default_value_t = 10)]
    eval_every: u64,
    /// A short run for CI (400 steps, 300 sleep samples).
    #[arg(long)]
    quick: bool,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/alws_factor_analysis")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

type M = Vec<Vec<f64>>;

fn matmul(a: &M, b: &M) -> M {
    let (n, k, m) = (a.len(), b.len(), b[0].len());
    (0..n)
        .map(|i| {
            (0..m)
                .map(|j| (0..k).map(|l| a[i][l] * b[l][j]).sum())
                .collect()
        })
        .collect()
}

fn transpose(a: &M) -> M {
    (0..a[0].len())
        .map(|j| a.iter().map(|r| r[j]).collect())
        .collect()
}

/// The lower Cholesky factor of a small SPD matrix (`None` when not positive definite).
fn cholesky(a: &M) -> Option<M> {
    let n = a.len();
    let mut l = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i][j] - (0..j).map(|k| l[i][k] * l[j][k]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i][i] = s.sqrt();
            } else {
                l[i][j] = s / l[j][j];
            }
        }
    }
    Some(l)
}

/// The inverse and log-determinant of a small SPD matrix, through its Cholesky factor.
fn inv_logdet(a: &M) -> Result<(M, f64)> {
    let l = cholesky(a).ok_or_else(|| {
        PplError::config(
            "alws_factor_analysis",
            "a covariance is not positive definite",
        )
    })?;
    let n = a.len();
    let logdet = 2.0 * (0..n).map(|i| l[i][i].ln()).sum::<f64>();
    // Columns of L⁻¹ by forward substitution, then A⁻¹ = L⁻ᵀ L⁻¹.
    let mut li = vec![vec![0.0; n]; n];
    for c in 0..n {
        for i in 0..n {
            let rhs = if i == c { 1.0 } else { 0.0 };
            let s: f64 = (0..i).map(|k| l[i][k] * li[k][c]).sum();
            li[i][c] = (rhs - s) / l[i][i];
        }
    }
    Ok((matmul(&transpose(&li), &li), logdet))
}

/// Sample mean and (biased) covariance of the rows of `x`.
fn moments(x: &M) -> (Vec<f64>, M) {
    let m = x.len() as f64;
    let mean: Vec<f64> = (0..D)
        .map(|j| x.iter().map(|r| r[j]).sum::<f64>() / m)
        .collect();
    let mut s = vec![vec![0.0; D]; D];
    for r in x {
        for i in 0..D {
            for j in 0..D {
                s[i][j] += (r[i] - mean[i]) * (r[j] - mean[j]) / m;
            }
        }
    }
    (mean, s)
}

/// The exact mean log-likelihood `mean_m log N(x_m; b, W Wᵀ + diag(ψ))`, from the data's
/// moments (the mean squared Mahalanobis distance is `tr(C⁻¹ (S + (x̄ − b)(x̄ − b)ᵀ))`).
fn fa_ll(w: &M, b: &[f64], psi: &[f64], mean: &[f64], s: &M) -> Result<f64> {
    let mut c = matmul(w, &transpose(w));
    for i in 0..D {
        c[i][i] += psi[i];
    }
    let (ci, logdet) = inv_logdet(&c)?;
    let mut quad = 0.0;
    for i in 0..D {
        for j in 0..D {
            quad += ci[i][j] * (s[j][i] + (mean[j] - b[j]) * (mean[i] - b[i]));
        }
    }
    Ok(-0.5 * (D as f64 * LN_2PI + logdet + quad))
}

/// EM for factor analysis from `(w, ψ)` to convergence: the maximum log-likelihood per
/// point and the number of iterations.
fn em(mut w: M, mut psi: Vec<f64>, mean: &[f64], s: &M) -> Result<(f64, usize)> {
    let mut ll = fa_ll(&w, mean, &psi, mean, s)?;
    for it in 1..=200_000 {
        let mut c = matmul(&w, &transpose(&w));
        for i in 0..D {
            c[i][i] += psi[i];
        }
        let (ci, _) = inv_logdet(&c)?;
        let beta = matmul(&transpose(&w), &ci); // K×D
        let bs = matmul(&beta, s); // K×D
        let mut ezz = matmul(&bs, &transpose(&beta)); // β S βᵀ
        let bw = matmul(&beta, &w);
        for i in 0..K {
            for j in 0..K {
                ezz[i][j] += if i == j { 1.0 } else { 0.0 } - bw[i][j];
            }
        }
        let (ezz_inv, _) = inv_logdet(&ezz)?;
        w = matmul(&transpose(&bs), &ezz_inv); // S βᵀ E[zzᵀ]⁻¹
        let wbs = matmul(&w, &bs);
        psi = (0..D).map(|i| (s[i][i] - wbs[i][i]).max(1e-9)).collect();
        let next = fa_ll(&w, mean, &psi, mean, s)?;
        if next - ll < 1e-12 {
            return Ok((next.max(ll), it));
        }
        ll = next;
    }
    Ok((ll, 200_000))
}

fn data(n: usize, seed: u64) -> Result<Tensor> {
    let mut rng = PplRng::seed_from_u64(seed);
    let g = rng.normals(n * (K + D));
    let mut v = Vec::with_capacity(n * D);
    for i in 0..n {
        let z = &g[i * (K + D)..i * (K + D) + K];
        for j in 0..D {
            let e = g[i * (K + D) + K + j];
            v.push(W_TRUE[j][0] * z[0] + W_TRUE[j][1] * z[1] + B_TRUE[j] + S_TRUE[j] * e);
        }
    }
    Ok(Tensor::from_vec(v, (n, D), &DEV)?)
}

struct Fa {
    data: Tensor,
    w0: Tensor,
}

impl Model for Fa {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let x = ctx.input("x", &self.data)?;
        let w = ctx.param("w", || Ok(self.w0.clone()), Constraint::Real)?;
        let b = ctx.param(
            "b",
            || Ok(Tensor::zeros(D, DType::F64, &DEV)?),
            Constraint::Real,
        )?;
        let log_sigma = ctx.param(
            "log_sigma",
            || Ok(Tensor::zeros(D, DType::F64, &DEV)?),
            Constraint::Real,
        )?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let z = ctx.sample(
                "z",
                Normal::standard(&[n, K], DType::F64, &DEV)?.to_event(1)?,
            )?;
            let loc = z.matmul(&w.t()?)?.broadcast_add(&b)?;
            let scale = log_sigma.exp()?.broadcast_as(loc.shape())?.contiguous()?;
            ctx.observe("obs", Normal::new(&loc, &scale)?.to_event(1)?, &x)?;
            Ok(())
        })
    }
}

fn host(t: &Tensor) -> Result<M> {
    Ok(t.to_vec2::<f64>()?)
}

/// Records the exact log-likelihood per point of the current parameters every `every` steps.
struct LlTracker {
    vars: Vec<Var>,
    mean: Vec<f64>,
    s: M,
    every: u64,
    out: Arc<Mutex<Vec<(f64, f64)>>>,
}

impl LlTracker {
    fn ll(&self) -> Result<f64> {
        let w = host(self.vars[0].as_tensor())?;
        let b: Vec<f64> = self.vars[1].as_tensor().to_vec1()?;
        let ls: Vec<f64> = self.vars[2].as_tensor().to_vec1()?;
        let psi: Vec<f64> = ls.iter().map(|l| (2.0 * l).exp()).collect();
        fa_ll(&w, &b, &psi, &self.mean, &self.s)
    }
}

impl Observer for LlTracker {
    fn on_step(&mut self, info: &StepInfo) -> Result<Control> {
        if (info.step + 1) % self.every == 0 {
            let ll = self.ll()?;
            if let Ok(mut v) = self.out.lock() {
                v.push(((info.step + 1) as f64, ll));
            }
        }
        Ok(Control::Continue)
    }
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 400;
        args.sleep = 300;
    }
    threads::default_threads(args.threads);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let x = data(args.n, args.seed.wrapping_add(1))?;
    let (mean, s) = moments(&host(&x)?);
    let mut rng = PplRng::seed_from_u64(args.seed.wrapping_add(2));
    let w0v: Vec<f64> = rng.normals(D * K).iter().map(|v| 0.1 * v).collect();
    let w0 = Tensor::from_vec(w0v, (D, K), &DEV)?;

    // The maximum-likelihood reference, from the same start.
    let (mle, em_iterations) = em(host(&w0)?, vec![1.0; D], &mean, &s)?;
    let w_true: M = W_TRUE.iter().map(|r| r.to_vec()).collect();
    let psi_true: Vec<f64> = S_TRUE.iter().map(|v| v * v).collect();
    let truth_ll = fa_ll(&w_true, &B_TRUE, &psi_true, &mean, &s)?;

    let model = Fa { data: x, w0 };
    let mut ctx = Ctx::new(args.seed).with_dtype(DType::F64);
    let opts = KrrOptions::default().sleep_samples(args.sleep);
    let mut engine = KrrWakeSleep::new(&model, "data", opts);
    engine.init(&mut ctx)?;
    let vars: Vec<Var> = ["w", "b", "log_sigma"]
        .iter()
        .map(|n| ctx.params().unconstrained(n))
        .collect::<Result<_>>()?;
    let curve = Arc::new(Mutex::new(Vec::new()));
    let tracker = LlTracker {
        vars,
        mean: mean.clone(),
        s: s.clone(),
        every: args.eval_every.max(1),
        out: curve.clone(),
    };
    let initial = tracker.ll()?;
    if let Ok(mut v) = curve.lock() {
        v.push((0.0, initial));
    }
    let final_tracker = LlTracker {
        vars: tracker.vars.clone(),
        mean,
        s,
        every: 1,
        out: Arc::new(Mutex::new(Vec::new())),
    };
    let mut trainer = Trainer::new(Adam::new(), args.lr)?.observe(tracker);
    if !args.quiet {
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let t0 = Instant::now();
    let report = trainer.run(&mut ctx, &mut engine, args.steps)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let final_ll = final_tracker.ll()?;

    let curve = curve.lock().map(|v| v.clone()).unwrap_or_default();
    let last = args.steps as f64;
    let mle_line = || {
        Series::new("maximum likelihood (EM)", vec![(0.0, mle), (last, mle)]).color([200, 30, 30])
    };
    let krr = || Series::new("KRR wake-sleep", curve.clone()).color([31, 119, 180]);
    let y_label = "exact log-lik. per point";
    line_chart(
        args.out.join("ll.png"),
        "Factor analysis learnt by amortised learning (KRR) vs the MLE",
        &[
            Panel::new("whole run", "step", y_label)
                .with_series(krr())
                .with_series(mle_line())
                .with_y_range(YRange::Full),
            Panel::new("close-up near the maximum", "step", y_label)
                .with_series(krr())
                .with_series(mle_line())
                .with_y_range(YRange::Fixed(mle - 0.1, mle + 0.01)),
        ],
    )?;
    let (bw, lam) = engine.kernel_params();
    let json = serde_json::json!({
        "example": "alws_factor_analysis",
        "n": args.n,
        "steps": args.steps,
        "sleep_samples": args.sleep,
        "skipped_steps": report.skipped,
        "initial_ll_per_point": initial,
        "train_ll_per_point": final_ll,
        "mle_ll_per_point": mle,
        "gap_to_mle": mle - final_ll,
        "truth_ll_per_point": truth_ll,
        "em_iterations": em_iterations,
        "bandwidth_multiplier": bw,
        "lambda": lam,
        "steps_per_sec": args.steps as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
