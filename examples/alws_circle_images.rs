//! A latent on the unit circle generating images, learnt by amortised learning by
//! wake-sleep ([`KrrWakeSleep`]): no reparameterisation of the circle and no encoder.
//!
//! **Data** (generated here with the library's seeded RNG): `--n` oriented Gabor patches of
//! 16×16 pixels. For an angle `θ ~ Uniform[0, 2π)` the clean patch at pixel centre
//! `(u, v) ∈ [−1, 1]²` is
//! `g_θ(u, v) = ½ + ½ exp(−(u² + v²) / (2 · 0.45²)) sin(2π · 1.5 · (u cos θ + v sin θ))`,
//! a sine grating (1.5 cycles per unit) under a Gaussian window; the sine phase makes
//! `θ` and `θ + π` differ (the patches are negatives of each other), so the image
//! manifold is a circle. Each image adds N(0, 0.05²) pixel noise.
//!
//! **Model** (f64): `z ~ VonMises(0, 0)` (uniform on the circle), `x | z ~ N(f(cos z, sin z),
//! σ² I₂₅₆)` with `f` an MLP 2-`--hidden`-256 (tanh hidden layer) and a learnt `σ`. The
//! KRR engine learns `f` and `σ` by maximum likelihood (Adam, cosine-annealed from `--lr` to
//! `--lr`/100; `--sleep` joint samples a step,
//! `--wake-batch` data points a step, Gaussian kernel on the raw 256 pixels).
//!
//! **Scores** (before and after training), with the clean generator on a grid of 256
//! angles as the data manifold: `sample_to_manifold_mse`, the mean over 64 model angles
//! of the squared error (per pixel) from the decoded mean `f(z)` to the nearest clean
//! patch (are the model's images Gabor patches?), and `manifold_to_sample_mse`, the mean
//! over 64 clean patches of the error to the nearest of 256 decoded means (does the model
//! cover every orientation?).
//!
//! Outputs: `<out>/samples.png`, rows: the generator at 16 angles; the model's decoded means
//! `f(z)` at 16 angles of its own latent, before and after training; 32 noisy model
//! samples ordered by their latent angle. `<out>/loss.png`. Ends with one JSON line.
//!
//! Run: `cargo run --release --example alws_circle_images` (`--quick` for CI).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};
use clap::Parser;
use ppl::engines::{KrrOptions, KrrWakeSleep};
use ppl::observers::{LossPlot, Progress};
use ppl::plots::image_grid_titled;
use ppl::prelude::*;
use std::f64::consts::TAU;
use std::path::PathBuf;
use std::time::Instant;

const DEV: Device = Device::Cpu;
const SIDE: usize = 16;
const PIXELS: usize = SIDE * SIDE;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "Gabor patches on a circle latent, learnt with the KRR engine")]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 1500)]
    steps: u64,
    /// Training images.
    #[arg(long, default_value_t = 500)]
    n: usize,
    /// Sleep samples per step.
    #[arg(long, default_value_t = 1000)]
    sleep: usize,
    /// Data points (wake points) per step.
    #[arg(long, default_value_t = 200)]
    wake_batch: usize,
    /// Hidden width of the decoder.
    #[arg(long, default_value_t = 64)]
    hidden: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.005)]
    lr: f64,
    /// A short run for CI (400 steps, 400 sleep samples).
    #[arg(long)]
    quick: bool,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/alws_circle_images")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// The clean Gabor patch at angle `theta` (see the module docs), row-major.
fn gabor(theta: f64) -> Vec<f64> {
    let (s, c) = theta.sin_cos();
    let mut v = Vec::with_capacity(PIXELS);
    for r in 0..SIDE {
        for col in 0..SIDE {
            let u = -1.0 + (2.0 * col as f64 + 1.0) / SIDE as f64;
            let w = 1.0 - (2.0 * r as f64 + 1.0) / SIDE as f64;
            let env = (-(u * u + w * w) / (2.0 * 0.45 * 0.45)).exp();
            v.push(0.5 + 0.5 * env * (TAU * 1.5 * (u * c + w * s)).sin());
        }
    }
    v
}

fn dataset(n: usize, seed: u64) -> Result<Tensor> {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut v = Vec::with_capacity(n * PIXELS);
    for _ in 0..n {
        let theta = rng.uniform_open() * TAU;
        let noise = rng.normals(PIXELS);
        v.extend(gabor(theta).iter().zip(&noise).map(|(g, e)| g + 0.05 * e));
    }
    Ok(Tensor::from_vec(v, (n, PIXELS), &DEV)?)
}

struct Circle {
    data: Tensor,
    hidden: Linear,
    out: Linear,
}

impl Circle {
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let feats = Tensor::stack(&[z.cos()?, z.sin()?], 1)?;
        Ok(self.out.forward(&self.hidden.forward(&feats)?.tanh()?)?)
    }
}

impl Model for Circle {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let x = ctx.input("x", &self.data)?;
        let log_sigma = ctx.param(
            "log_sigma",
            || Ok(Tensor::new(-1.0f64, &DEV)?),
            Constraint::Real,
        )?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let zeros = Tensor::zeros(n, DType::F64, &DEV)?;
            let z = ctx.sample("z", VonMises::new(&zeros, &zeros)?)?;
            let mean = self.decode(&z)?;
            let sd = log_sigma.exp()?.broadcast_as(mean.shape())?.contiguous()?;
            ctx.observe("obs", Normal::new(&mean, &sd)?.to_event(1)?, &x)?;
            Ok(())
        })
    }
}

fn angles(count: usize) -> Result<Tensor> {
    let v: Vec<f64> = (0..count).map(|i| TAU * i as f64 / count as f64).collect();
    Ok(Tensor::new(v, &DEV)?)
}

fn mse(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| (u - v).powi(2)).sum::<f64>() / a.len() as f64
}

/// The mean over `from` of the squared error (per pixel) to the nearest of `to`.
fn nearest_mse(from: &[Vec<f64>], to: &[Vec<f64>]) -> f64 {
    from.iter()
        .map(|a| to.iter().map(|b| mse(a, b)).fold(f64::INFINITY, f64::min))
        .sum::<f64>()
        / from.len() as f64
}

/// `(sample_to_manifold_mse, manifold_to_sample_mse)` of the current decoder.
fn scores(model: &Circle) -> Result<(f64, f64)> {
    let clean: Vec<Vec<f64>> = (0..256).map(|i| gabor(TAU * i as f64 / 256.0)).collect();
    let probes: Vec<Vec<f64>> = (0..64)
        .map(|i| gabor(TAU * (i as f64 + 0.5) / 64.0))
        .collect();
    let coarse: Vec<Vec<f64>> = model.decode(&angles(64)?)?.to_vec2()?;
    let fine: Vec<Vec<f64>> = model.decode(&angles(256)?)?.to_vec2()?;
    Ok((nearest_mse(&coarse, &clean), nearest_mse(&probes, &fine)))
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 400;
        args.sleep = 400;
    }
    threads::default_threads(args.threads);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let data = dataset(args.n, args.seed.wrapping_add(1))?;
    let mut ctx = Ctx::new(args.seed).with_dtype(DType::F64);
    let model = Circle {
        data,
        hidden: ctx.module("decoder/hidden", |vb| candle_nn::linear(2, args.hidden, vb))?,
        out: ctx.module("decoder/out", |vb| {
            candle_nn::linear(args.hidden, PIXELS, vb)
        })?,
    };
    let opts = KrrOptions::default()
        .sleep_samples(args.sleep)
        .wake_batch(args.wake_batch);
    let mut engine = KrrWakeSleep::new(&model, "data", opts);
    let (s2m_initial, m2s_initial) = scores(&model)?;
    let before = model.decode(&angles(16)?)?;

    // Cosine annealing to lr/100: the KRR gradient is noisy, and a constant rate keeps the
    // fit wandering around the optimum.
    let schedule = ppl::Cosine {
        lr0: args.lr,
        min: args.lr / 100.0,
        steps: args.steps,
    };
    let mut trainer = Trainer::new(Adam::new(), args.lr)?
        .with_schedule(schedule)
        .observe(LossPlot::new(args.out.join("loss.png")));
    if !args.quiet {
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let t0 = Instant::now();
    let report = trainer.run(&mut ctx, &mut engine, args.steps)?;
    let train_seconds = t0.elapsed().as_secs_f64();
    let (s2m_final, m2s_final) = scores(&model)?;
    let after = model.decode(&angles(16)?)?;

    // 32 model samples ordered by their latent angle (taken evenly from 512 sorted ones).
    let sleep = engine.sleep(&mut ctx, 512)?;
    let z: Vec<f64> = sleep.value("z")?.to_vec1()?;
    let x = sleep.value("obs")?;
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|a, b| z[*a].rem_euclid(TAU).total_cmp(&z[*b].rem_euclid(TAU)));
    let pick: Vec<u32> = (0..32)
        .map(|i| order[i * order.len() / 32] as u32)
        .collect();
    let samples = x.index_select(&Tensor::new(pick.as_slice(), &DEV)?, 0)?;
    let truth: Vec<f64> = (0..16).flat_map(|i| gabor(TAU * i as f64 / 16.0)).collect();
    let truth = Tensor::from_vec(truth, (16, PIXELS), &DEV)?;
    let grid = Tensor::cat(&[&truth, &before, &after, &samples], 0)?.reshape((80, SIDE, SIDE))?;
    image_grid_titled(
        args.out.join("samples.png"),
        &grid,
        16,
        3,
        Some("rows: generator | model means before | after | samples ordered by angle"),
    )?;
    let sigma: f64 = ctx.params().get("log_sigma")?.exp()?.to_scalar()?;
    let json = serde_json::json!({
        "example": "alws_circle_images",
        "n": args.n,
        "steps": args.steps,
        "sleep_samples": args.sleep,
        "wake_batch": args.wake_batch,
        "skipped_steps": report.skipped,
        "sample_to_manifold_mse_initial": s2m_initial,
        "sample_to_manifold_mse": s2m_final,
        "manifold_to_sample_mse_initial": m2s_initial,
        "manifold_to_sample_mse": m2s_final,
        "noise_sd": sigma,
        "noise_sd_true": 0.05,
        "steps_per_sec": args.steps as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
