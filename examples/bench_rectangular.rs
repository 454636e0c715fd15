//! Training-step speed of rectangular (injective) flows for each volume estimator, against
//! the latent size `d` and the data size `D`: the Rust side of a same-run comparison with
//! `examples/python/bench_rectangular_torch.py` (the reference implementation's approach in
//! PyTorch: `torch.func.jvp` / `vjp`).
//!
//! The model and step match the Python script: a square Real NVP on R^D (`--couplings`
//! affine couplings with alternating checkerboard masks, no mixing layers, ReLU
//! conditioners of widths `--hidden`, log-scales soft-clamped to ±3, f32), `z` padded into
//! the first `d` coordinates, a standard-normal latent prior. One step is one
//! `Trainer::step` of the `Rectangular` engine (β = 1, no warm-up, `--batch` random rows of
//! 8192 fixed standard-normal points, Adam with learning rate 1e-3):
//! `exact` (d tangents + Cholesky), `hutchinson` (one Gaussian probe, exactly d CG
//! iterations: tolerance 0), `fif` (one Gaussian probe), `no_logdet`.
//!
//! Timing: per (d, D, estimator) a fresh model, `--warmup` steps, then `--repeats` rounds of
//! `--steps` steps; the median per-round rate. Threads: `RAYON_NUM_THREADS=1
//! CANDLE_NUM_THREADS=1` for one. Prints one JSON line.
//!
//! Run: `cargo run --release --example bench_rectangular -- --grid 1x2,4x8,8x32`.

use candle_core::{DType, Device};
use clap::Parser;
use ppl::engines::{Probe, Rectangular, RectangularOptions, VolumeEstimator};
use ppl::flows::{Activation, Mixing, RealNvp, RealNvpOptions, RectangularFlow};
use ppl::prelude::*;
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Rectangular-flow training step: steps per second per estimator")]
struct Args {
    /// `d x D` pairs (comma-separated), e.g. `1x2,4x8`.
    #[arg(
        long,
        default_value = "1x2,2x3,2x8,4x8,4x32,8x32",
        value_delimiter = ','
    )]
    grid: Vec<String>,
    /// Estimators (comma-separated).
    #[arg(
        long,
        default_value = "exact,hutchinson,fif,no_logdet",
        value_delimiter = ','
    )]
    estimators: Vec<String>,
    /// Affine couplings of the square flow.
    #[arg(long, default_value_t = 4)]
    couplings: usize,
    /// Hidden widths of each conditioner (comma-separated).
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Points per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Steps per timed round.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Timed rounds.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
}

type Error = Box<dyn std::error::Error>;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn estimator(name: &str, d: usize) -> std::result::Result<VolumeEstimator, Error> {
    Ok(match name {
        "exact" => VolumeEstimator::Exact,
        "hutchinson" => VolumeEstimator::Hutchinson {
            probes: 1,
            probe: Probe::Gaussian,
            cg_tol: 0.0,
            cg_max_iter: Some(d),
        },
        "fif" => VolumeEstimator::free_form(1),
        "no_logdet" => VolumeEstimator::NoLogDet,
        other => return Err(format!("unknown estimator `{other}`").into()),
    })
}

fn main() -> std::result::Result<(), Error> {
    let a = Args::parse();
    if a.steps == 0 || a.repeats == 0 || a.batch == 0 {
        return Err("steps, repeats and batch must be positive".into());
    }
    let _v = ppl::validation::disable();
    let dev = Device::Cpu;
    let mut results = Vec::new();
    for pair in &a.grid {
        let (d, big) = pair
            .split_once('x')
            .and_then(|(l, r)| Some((l.parse::<usize>().ok()?, r.parse::<usize>().ok()?)))
            .ok_or_else(|| format!("grid entries are dxD, got `{pair}`"))?;
        let n = 8192.max(a.batch);
        let mut rng = PplRng::seed_from_u64(0);
        let data = rng.normal_tensor(&[n, big], DType::F32, &dev)?;
        for name in &a.estimators {
            let mut ctx = Ctx::new(0);
            let opts = RealNvpOptions {
                activation: Activation::Relu,
                mixing: Mixing::None,
                ..RealNvpOptions::default()
            };
            let square = RealNvp::build(
                ctx.params().var_builder(DType::F32, &dev, 0),
                big,
                0,
                a.couplings,
                &a.hidden,
                &opts,
            )?;
            let model = RectangularFlow::new(Arc::new(square), d)?;
            let ropts = RectangularOptions::default()
                .estimator(estimator(name, d)?)
                .beta(1.0)
                .batch_size(a.batch);
            let mut engine = Rectangular::new(&model, &data, ropts);
            let mut trainer = Trainer::new(Adam::new(), 1e-3)?;
            engine.init(&mut ctx)?;
            for _ in 0..a.warmup {
                trainer.step(&mut ctx, &mut engine)?;
            }
            let mut rates = Vec::new();
            for _ in 0..a.repeats {
                let t0 = Instant::now();
                for _ in 0..a.steps {
                    trainer.step(&mut ctx, &mut engine)?;
                }
                rates.push(a.steps as f64 / t0.elapsed().as_secs_f64());
            }
            let rate = median(&rates);
            eprintln!("d={d} D={big} {name}: {rate:.1} steps/s");
            results.push(serde_json::json!({
                "d": d, "D": big, "estimator": name, "steps_per_s": rate, "rates": rates,
            }));
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "bench": "rectangular_ppl",
            "batch": a.batch,
            "couplings": a.couplings,
            "hidden": a.hidden,
            "threads": std::env::var("RAYON_NUM_THREADS").ok(),
            "results": results,
        })
    );
    Ok(())
}
