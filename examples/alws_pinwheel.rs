//! A deep generative model of the pinwheel data learnt by amortised learning by wake-sleep
//! ([`KrrWakeSleep`]): a mixture prior in 2-D and an MLP decoder, with no encoder and no
//! reparameterisation (the mixture component is a discrete latent).
//!
//! **Data** (generated here with the library's seeded RNG; Johnson et al. 2016's
//! pinwheel): 5 arms of `--per-arm` points each. For a point of arm `a`, draw
//! `u = (1 + 0.3 ε₁, 0.05 ε₂)` (radial and tangential noise), turn it by the angle
//! `2π a / 5 + 0.25 exp(u₁)`: `x = R(angle) u`. The arms curl because the angle grows with
//! the radius.
//!
//! **Model** (f64, parameters learnt by maximum likelihood): per point, a component
//! `k ~ Categorical(softmax(α))` (5 components), `z | k ~ N(μ_k, diag(exp(2 s_k)))` in 2-D,
//! `x | z ~ N(f(z), σ² I₂)` with `f` an MLP 2-`--hidden`-`--hidden`-2 (tanh) and a learnt `σ`.
//!
//! **Training**: Adam (cosine-annealed from `--lr` to `--lr`/100) on the KRR engine's gradient (`--sleep` joint samples a step,
//! `--wake-batch` data points a step, exact Gaussian kernel on `x`, the
//! exponential-family split for the Normal likelihood, bandwidth and `λ` tuned every 25
//! steps).
//!
//! **Score**: the maximum mean discrepancy between 1000 model samples and the data, with
//! a Gaussian kernel whose bandwidth is the median distance between data points (fixed,
//! so that values before and after are comparable): `MMD = √(max(0, MMD²_b))` with the
//! biased (V-statistic) estimate `MMD²_b = mean k(x, x') + mean k(y, y') − 2 mean k(x, y)`.
//!
//! Outputs: `<out>/pinwheel.png` (2-D histograms of the data, the model's samples before
//! training and after, dark = dense), `<out>/training.png` (the MMD every `--eval-every`
//! steps and the wake loss). Ends with one JSON line with
//! `mmd_initial` and `mmd_final`.
//!
//! Run: `cargo run --release --example alws_pinwheel` (`--quick` for CI).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};
use clap::Parser;
use ppl::engines::{KrrOptions, KrrWakeSleep};
use ppl::plots::image_grid_titled;
use ppl::plots::{line_chart, Panel, Series, YRange};
use ppl::prelude::*;
use std::path::PathBuf;
use std::time::Instant;

const DEV: Device = Device::Cpu;
const ARMS: usize = 5;
const COMPONENTS: usize = 5;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "Pinwheel data: mixture prior + MLP decoder learnt with the KRR engine")]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Points per arm.
    #[arg(long, default_value_t = 200)]
    per_arm: usize,
    /// Sleep samples per step.
    #[arg(long, default_value_t = 1000)]
    sleep: usize,
    /// Data points (wake points) per step.
    #[arg(long, default_value_t = 200)]
    wake_batch: usize,
    /// Hidden width of the decoder.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// A fixed observation noise `σ` (learnt when not given).
    #[arg(long)]
    noise: Option<f64>,
    /// Measure the MMD every this many steps.
    #[arg(long, default_value_t = 100)]
    eval_every: u64,
    /// A short run for CI (300 steps, 400 sleep samples).
    #[arg(long)]
    quick: bool,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/alws_pinwheel")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The pinwheel data `[ARMS · per_arm, 2]` (see the module docs).
fn pinwheel(per_arm: usize, seed: u64) -> Result<Tensor> {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(ARMS * per_arm * 2);
    for a in 0..ARMS {
        for _ in 0..per_arm {
            let e = rng.normals(2);
            let (u1, u2) = (1.0 + 0.3 * e[0], 0.05 * e[1]);
            let angle = std::f64::consts::TAU * a as f64 / ARMS as f64 + 0.25 * u1.exp();
            let (s, c) = angle.sin_cos();
            v.push(c * u1 - s * u2);
            v.push(s * u1 + c * u2);
        }
    }
    Ok(Tensor::from_vec(v, (ARMS * per_arm, 2), &DEV)?)
}

struct Pinwheel {
    data: Tensor,
    noise: Option<f64>,
    l1: Linear,
    l2: Linear,
    l3: Linear,
}

impl Pinwheel {
    fn new(ctx: &mut Ctx, data: Tensor, hidden: usize, noise: Option<f64>) -> Result<Self> {
        Ok(Pinwheel {
            data,
            noise,
            l1: ctx.module("decoder/l1", |vb| candle_nn::linear(2, hidden, vb))?,
            l2: ctx.module("decoder/l2", |vb| candle_nn::linear(hidden, hidden, vb))?,
            l3: ctx.module("decoder/l3", |vb| candle_nn::linear(hidden, 2, vb))?,
        })
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let h = self.l1.forward(z)?.tanh()?;
        let h = self.l2.forward(&h)?.tanh()?;
        Ok(self.l3.forward(&h)?)
    }
}

impl Model for Pinwheel {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let x = ctx.input("x", &self.data)?;
        let alpha = ctx.param(
            "prior/alpha",
            || Ok(Tensor::zeros(COMPONENTS, DType::F64, &DEV)?),
            Constraint::Real,
        )?;
        let mu = ctx.param(
            "prior/mu",
            || Ok(ctx_free_normals(COMPONENTS * 2, 11)?.reshape((COMPONENTS, 2))?),
            Constraint::Real,
        )?;
        let log_s = ctx.param(
            "prior/log_scale",
            || Ok(Tensor::full(-1.0f64, (COMPONENTS, 2), &DEV)?),
            Constraint::Real,
        )?;
        let log_sigma = match self.noise {
            Some(s) => Tensor::new(s.ln(), &DEV)?,
            None => ctx.param(
                "log_sigma",
                || Ok(Tensor::new(-1.0f64, &DEV)?),
                Constraint::Real,
            )?,
        };
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let logits = alpha
                .unsqueeze(0)?
                .broadcast_as((n, COMPONENTS))?
                .contiguous()?;
            let k = ctx.sample("k", Categorical::from_logits(&logits)?)?;
            let k = k.to_dtype(DType::U32)?;
            let loc = mu.index_select(&k, 0)?;
            let scale = log_s.index_select(&k, 0)?.exp()?;
            let z = ctx.sample("z", Normal::new(&loc, &scale)?.to_event(1)?)?;
            let mean = self.decode(&z)?;
            let sd = log_sigma.exp()?.broadcast_as(mean.shape())?.contiguous()?;
            ctx.observe("obs", Normal::new(&mean, &sd)?.to_event(1)?, &x)?;
            Ok(())
        })
    }
}

/// Standard normals from a fixed seed (the component means' initial values).
fn ctx_free_normals(n: usize, seed: u64) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        PplRng::seed_from_u64(seed).normals(n),
        n,
        &DEV,
    )?)
}

fn rows(t: &Tensor) -> Result<Vec<[f64; 2]>> {
    Ok(t.to_dtype(DType::F64)?
        .to_vec2::<f64>()?
        .into_iter()
        .map(|r| [r[0], r[1]])
        .collect())
}

fn sq(a: &[f64; 2], b: &[f64; 2]) -> f64 {
    (a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)
}

/// The median distance between data points.
fn median_distance(x: &[[f64; 2]]) -> f64 {
    let mut d: Vec<f64> = Vec::new();
    for i in 0..x.len() {
        for j in 0..i {
            d.push(sq(&x[i], &x[j]).sqrt());
        }
    }
    let mid = d.len() / 2;
    d.select_nth_unstable_by(mid, f64::total_cmp);
    d[mid]
}

/// `√max(0, MMD²_b)` with a Gaussian kernel of bandwidth `bw` (see the module docs).
fn mmd(x: &[[f64; 2]], y: &[[f64; 2]], bw: f64) -> f64 {
    let c = -0.5 / (bw * bw);
    let mean_k = |a: &[[f64; 2]], b: &[[f64; 2]]| {
        let mut s = 0.0;
        for p in a {
            for q in b {
                s += (c * sq(p, q)).exp();
            }
        }
        s / (a.len() * b.len()) as f64
    };
    (mean_k(x, x) + mean_k(y, y) - 2.0 * mean_k(x, y))
        .max(0.0)
        .sqrt()
}

/// A 2-D histogram `[bins, bins]` of `pts` over `[−r, r]²`, as grey levels (dark = dense,
/// square-root scaled), y upwards.
fn histogram(pts: &[[f64; 2]], r: f64, bins: usize) -> Vec<f64> {
    let mut h = vec![0.0; bins * bins];
    for p in pts {
        let cx = ((p[0] + r) / (2.0 * r) * bins as f64).floor();
        let cy = ((r - p[1]) / (2.0 * r) * bins as f64).floor();
        if cx >= 0.0 && cy >= 0.0 && (cx as usize) < bins && (cy as usize) < bins {
            h[cy as usize * bins + cx as usize] += 1.0;
        }
    }
    let max = h.iter().cloned().fold(0.0, f64::max).max(1.0);
    h.iter().map(|v| 1.0 - (v / max).sqrt()).collect()
}

/// `count` samples of `x` from the model.
fn samples(
    engine: &mut KrrWakeSleep<'_, Pinwheel>,
    ctx: &mut Ctx,
    count: usize,
) -> Result<Vec<[f64; 2]>> {
    rows(&engine.sleep(ctx, count)?.value("obs")?)
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 300;
        args.sleep = 400;
    }
    threads::default_threads(args.threads);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let data = pinwheel(args.per_arm, args.seed.wrapping_add(1))?;
    let xs = rows(&data)?;
    let bw = median_distance(&xs);
    let mut ctx = Ctx::new(args.seed).with_dtype(DType::F64);
    let model = Pinwheel::new(&mut ctx, data, args.hidden, args.noise)?;
    let opts = KrrOptions::default()
        .sleep_samples(args.sleep)
        .wake_batch(args.wake_batch);
    let mut engine = KrrWakeSleep::new(&model, "data", opts);
    engine.init(&mut ctx)?;
    let eval = 1000;
    let before = samples(&mut engine, &mut ctx, eval)?;
    let mmd_initial = mmd(&xs, &before, bw);

    // Cosine annealing to lr/100: the KRR gradient is noisy, and a constant rate keeps the
    // fit oscillating around the optimum.
    let mut trainer = Trainer::new(Adam::new(), args.lr)?.with_schedule(ppl::Cosine {
        lr0: args.lr,
        min: args.lr / 100.0,
        steps: args.steps,
    });
    let eval_every = args.eval_every.clamp(1, args.steps.max(1));
    let mut curve = vec![(0.0, mmd_initial)];
    let mut losses = Vec::new();
    let mut skipped = 0;
    let t0 = Instant::now();
    let mut done = 0;
    while done < args.steps {
        let chunk = eval_every.min(args.steps - done);
        let report = trainer.run(&mut ctx, &mut engine, chunk)?;
        losses.extend(report.losses);
        skipped += report.skipped;
        done += chunk;
        let now = samples(&mut engine, &mut ctx, eval)?;
        curve.push((done as f64, mmd(&xs, &now, bw)));
        if !args.quiet {
            eprintln!("step {done}: MMD {:.4}", curve[curve.len() - 1].1);
        }
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let after = samples(&mut engine, &mut ctx, eval)?;
    let mmd_final = mmd(&xs, &after, bw);

    let r = 1.15
        * xs.iter()
            .map(|p| p[0].abs().max(p[1].abs()))
            .fold(0.0, f64::max);
    let bins = 64;
    let mut px = histogram(&xs, r, bins);
    px.extend(histogram(&before, r, bins));
    px.extend(histogram(&after, r, bins));
    let grid = Tensor::from_vec(px, (3, bins, bins), &DEV)?;
    image_grid_titled(
        args.out.join("pinwheel.png"),
        &grid,
        3,
        4,
        Some(&format!(
            "data | model before (MMD {mmd_initial:.3}) | after {} steps (MMD {mmd_final:.3})",
            args.steps
        )),
    )?;
    let noise_sd: f64 = match args.noise {
        Some(s) => s,
        None => ctx.params().get("log_sigma")?.exp()?.to_scalar()?,
    };
    line_chart(
        args.out.join("training.png"),
        "Pinwheel: KRR wake-sleep training",
        &[
            Panel::new("MMD between 1000 model samples and the data", "step", "MMD")
                .with_series(Series::new("MMD", curve.clone()))
                .with_y_range(YRange::Full),
            Panel::new("wake loss (surrogate)", "step", "loss")
                .with_series(Series::from_values("loss", &losses)),
        ],
    )?;
    let json = serde_json::json!({
        "example": "alws_pinwheel",
        "noise_sd": noise_sd,
        "n": xs.len(),
        "steps": args.steps,
        "sleep_samples": args.sleep,
        "wake_batch": args.wake_batch,
        "skipped_steps": skipped,
        "mmd_curve": curve,
        "mmd_initial": mmd_initial,
        "mmd_final": mmd_final,
        "mmd_bandwidth": bw,
        "steps_per_sec": args.steps as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
