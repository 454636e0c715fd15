//! A hybrid model with deep invertible features (DIGLM, Nalisnick et al. 2019) on the real
//! 8x8 handwritten digits (UCI optdigits, `examples/data/digits.csv.gz`): a Real NVP flow
//! over the 64 pixels and a linear softmax head on its features, trained jointly.
//!
//! **Data.** Pixel values are integers `v ∈ {0, …, 16}` (17 levels). The test split is
//! `vae_digits`'s: every fifth image (row `i ≡ 4 mod 5`, 359 of 1797) is the test set;
//! every tenth of the others (144) is a validation set, and the parameters kept are those
//! with the best validation objective `mean log p(y|x) + λ log p(x)`, checked every
//! `--refresh` steps (the flow overfits the 1294 training images when trained long).
//! Each pixel is dequantised and squeezed into `(0, 1)`, `u = (v + U(0, 1)) / 17` (fresh
//! noise every `--refresh` steps during training), then mapped to the real line by
//! `x = logit(α + (1 − 2α) u)` with `α = 0.05` (Real NVP's transform, which keeps `x` in
//! `[−2.94, 2.94]`).
//!
//! **Model** (f32): `z = f(x)`, a [`RealNvp`] of `--couplings` affine couplings (hidden
//! widths `[--hidden]`, LU-linear mixing, ActNorm before each coupling) onto `N(0, I_64)`;
//! a [`Softmax`] head `p(y | z) = softmax(z W + b)` over the 10 classes. Trained with the
//! [`Hybrid`] engine on `log p(y | x) + λ log p(x)` with minibatches of `--batch` images
//! and Adam. `λ` is small by default (0.01): `log p(x)` sums 64 dimensions and is hundreds
//! of nats, `log p(y | x)` a few, and the paper scales `λ` down for images for the same
//! reason.
//!
//! **Bits per dimension.** The flow's density is over `x`. With the Jacobian of the
//! squeeze-and-logit map, `log p(u) = log p(x) + Σ_d [log(1 − 2α) − log s_d − log(1 − s_d)]`
//! (`s = α + (1 − 2α) u`); in the `[0, 256)` pixel units of the image-flow literature
//! (`w = 256 u`) the density is `log p(w) = log p(u) − 64 log 256`, and
//! `bits_per_dim = −E log p(w) / (64 ln 2)`, the expectation over test images and their
//! dequantisation noise (`--test-draws` draws each). Honest caveat: the digits have only
//! 17 levels, so in `[0, 256)` units each level's mass is spread uniformly over a cell of
//! width `256/17`; that alone costs `log₂(256/17) = 3.91` bits per dimension compared with
//! a 256-level image, so this number is not comparable with 8-bit image benchmarks. The
//! JSON therefore also gives `bits_per_dim_17_levels = −E log p(u) / (64 ln 2) + log₂ 17`,
//! an upper bound (by Jensen, uniform dequantisation) on the code length of the discrete
//! 17-level images, `−log₂ P(v) / 64` (8 bits per dimension would be the cost of storing
//! a byte per pixel; `log₂ 17 = 4.09` that of a uniform model of the 17 levels).
//!
//! Outputs: `<out>/hybrid_digits_samples.png` (flow samples at temperature 0.7 above test
//! images), `<out>/hybrid_digits_training.png` (loss, `log p(y|x)` and `log p(x)` per
//! step). One JSON line: `test_error`, `bits_per_dim`, `bits_per_dim_17_levels`,
//! `test_log_py`, ...
//!
//! Run: `cargo run --release --example hybrid_digits` (`--quick` for CI).

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use flate2::read::GzDecoder;
use ppl::engines::{log_px, Hybrid, HybridOptions, Softmax};
use ppl::flows::{Bijector, RealNvp, RealNvpOptions};
use ppl::observers::Progress;
use ppl::plots::{image_grid_titled, line_chart, Panel, Series};
use ppl::prelude::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");
const DEV: Device = Device::Cpu;
/// Pixel levels of the digits (values 0..=16).
const LEVELS: f64 = 17.0;
/// Real NVP's squeeze before the logit.
const ALPHA: f64 = 0.05;
const D: usize = 64;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "DIGLM (Real NVP + softmax head) on the 8x8 digits")]
struct Args {
    /// Adam steps at most. The flow overfits the ~1300 training images when trained long,
    /// so the parameters kept are those of the best validation objective, checked every
    /// `--refresh` steps (early stopping by model selection on held-out images).
    #[arg(long, default_value_t = 3000)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight λ of log p(x) in the objective.
    #[arg(long, default_value_t = 0.01)]
    lambda: f64,
    /// Affine coupling layers.
    #[arg(long, default_value_t = 6)]
    couplings: usize,
    /// Hidden width of the coupling conditioners.
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// New dequantisation noise every this many steps.
    #[arg(long, default_value_t = 50)]
    refresh: u64,
    /// Dequantisation draws per test image for bits per dimension.
    #[arg(long, default_value_t = 10)]
    test_draws: usize,
    /// A short run for CI (250 steps, 2 test draws).
    #[arg(long)]
    quick: bool,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/hybrid_digits")]
    out: PathBuf,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Pixel levels `[n · 64]` and labels of the train, validation and test images.
struct Digits {
    train: (Vec<f64>, Vec<u32>),
    valid: (Vec<f64>, Vec<u32>),
    test: (Vec<f64>, Vec<u32>),
}

fn load() -> Result<Digits> {
    let mut text = String::new();
    GzDecoder::new(
        std::fs::File::open(DIGITS)
            .map_err(|e| PplError::file(Path::new(DIGITS), e.to_string()))?,
    )
    .read_to_string(&mut text)
    .map_err(|e| PplError::file(Path::new(DIGITS), e.to_string()))?;
    let mut d = Digits {
        train: (Vec::new(), Vec::new()),
        valid: (Vec::new(), Vec::new()),
        test: (Vec::new(), Vec::new()),
    };
    for (i, line) in text.lines().enumerate() {
        let vals: Vec<f64> = line
            .split(',')
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| PplError::file(Path::new(DIGITS), format!("line {}: {e}", i + 1)))?;
        if vals.len() != D + 1 || vals[..D].iter().any(|v| !(0.0..LEVELS).contains(v)) {
            return Err(PplError::file(
                Path::new(DIGITS),
                format!("line {}: expected 64 pixels in 0..=16 and a label", i + 1),
            ));
        }
        // vae_digits' split: every fifth image is a test image; of the others, every
        // tenth is held out for validation (model selection).
        let part = if i % 5 == 4 {
            &mut d.test
        } else if (i - i / 5) % 10 == 9 {
            &mut d.valid
        } else {
            &mut d.train
        };
        part.0.extend_from_slice(&vals[..D]);
        part.1.push(vals[D] as u32);
    }
    Ok(d)
}

/// Dequantised, squeezed, logit-transformed images `x` `[n, 64]` (f32) and the log-Jacobian
/// `log |dx/du|` summed over the pixels, per image (see the module docs).
fn prepare(levels: &[f64], rng: &mut PplRng) -> Result<(Tensor, Vec<f64>)> {
    let n = levels.len() / D;
    let noise = rng.uniforms(levels.len());
    let mut x = Vec::with_capacity(levels.len());
    let mut ladj = vec![0.0; n];
    for (i, (v, e)) in levels.iter().zip(noise).enumerate() {
        let u = (v + e) / LEVELS;
        let s = ALPHA + (1.0 - 2.0 * ALPHA) * u;
        x.push((s / (1.0 - s)).ln() as f32);
        ladj[i / D] += (1.0 - 2.0 * ALPHA).ln() - s.ln() - (1.0 - s).ln();
    }
    Ok((Tensor::from_vec(x, (n, D), &DEV)?, ladj))
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 250;
        args.test_draws = 2;
    }
    threads::default_threads(args.threads);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let data = load()?;
    let n_train = data.train.1.len();
    let n_test = data.test.1.len();
    let y_train = Tensor::from_vec(data.train.1.clone(), n_train, &DEV)?;
    let y_test = Tensor::from_vec(data.test.1.clone(), n_test, &DEV)?;
    let mut noise_rng = PplRng::seed_from_u64(args.seed.wrapping_add(100));

    let mut ctx = Ctx::new(args.seed).with_dtype(DType::F32);
    let opts = RealNvpOptions {
        actnorm: true,
        ..RealNvpOptions::default()
    };
    let flow = ctx.try_module("flow", |vb| {
        RealNvp::build(vb, D, 0, args.couplings, &[args.hidden], &opts)
    })?;
    let head = ctx.try_module("head", |vb| Softmax::new(vb, D, 10))?;
    let hopts = HybridOptions::default()
        .lambda(args.lambda)
        .batch_size(args.batch);

    let n_valid = data.valid.1.len();
    let y_valid = Tensor::from_vec(data.valid.1.clone(), n_valid, &DEV)?;
    // One fixed dequantisation of the validation images, so scores are comparable.
    let (x_valid, _) = prepare(
        &data.valid.0,
        &mut PplRng::seed_from_u64(args.seed.wrapping_add(400)),
    )?;
    let validate = || -> Result<f64> {
        let ev = Hybrid::new(&flow, &head, &x_valid, &y_valid, hopts.clone())
            .evaluate(&x_valid, &y_valid)?;
        let obj = (ev.log_py + (ev.log_px * args.lambda)?)?;
        Ok(host(&obj)?.iter().sum::<f64>() / n_valid as f64)
    };
    let snapshot = |ctx: &Ctx| -> Result<Vec<(String, Tensor)>> {
        ctx.params()
            .vars()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect()
    };
    let (mut best_val, mut best_step, mut best) = (f64::NEG_INFINITY, 0u64, Vec::new());
    let mut val_curve = Vec::new();
    let mut trainer = Trainer::new(Adam::new(), args.lr)?;
    if !args.quiet {
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let (mut losses, mut lpy, mut lpx) = (Vec::new(), Vec::new(), Vec::new());
    let mut skipped = 0;
    let t0 = Instant::now();
    let mut done = 0;
    while done < args.steps {
        // Fresh dequantisation noise for the next chunk of steps.
        let (x_train, _) = prepare(&data.train.0, &mut noise_rng)?;
        let mut engine = Hybrid::new(&flow, &head, &x_train, &y_train, hopts.clone());
        let chunk = args.refresh.max(1).min(args.steps - done);
        let report = trainer.run(&mut ctx, &mut engine, chunk)?;
        losses.extend(report.losses);
        for (name, into) in [("log_py", &mut lpy), ("log_px", &mut lpx)] {
            if let Some(v) = report.metrics.get(name) {
                into.extend(v.iter().copied());
            }
        }
        skipped += report.skipped;
        done += chunk;
        let val = validate()?;
        val_curve.push((done as f64, val));
        if val > best_val {
            (best_val, best_step, best) = (val, done, snapshot(&ctx)?);
        }
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    // Keep the parameters of the best validation objective.
    for (name, var) in ctx.params().vars() {
        if let Some((_, t)) = best.iter().find(|(n, _)| *n == name) {
            var.set(t)?;
        }
    }

    // Test error (one dequantisation draw: the classifier sees noisy inputs in training)
    // and bits per dimension over `test_draws` draws.
    let mut eval_rng = PplRng::seed_from_u64(args.seed.wrapping_add(200));
    let (x_test, _) = prepare(&data.test.0, &mut eval_rng)?;
    let engine = Hybrid::new(&flow, &head, &x_test, &y_test, hopts.clone());
    let ev = engine.evaluate(&x_test, &y_test)?;
    let pred: Vec<u32> = head.predict(&ev.features)?.to_vec1()?;
    let errors = pred
        .iter()
        .zip(&data.test.1)
        .filter(|(p, y)| p != y)
        .count();
    let test_error = errors as f64 / n_test as f64;
    let test_log_py = host(&ev.log_py)?.iter().sum::<f64>() / n_test as f64;
    let mut log_pu = 0.0;
    for _ in 0..args.test_draws.max(1) {
        let (x, ladj) = prepare(&data.test.0, &mut eval_rng)?;
        let lp = host(&log_px(&flow, &x)?)?;
        log_pu += lp.iter().zip(&ladj).map(|(a, b)| a + b).sum::<f64>();
    }
    let log_pu = log_pu / (n_test * args.test_draws.max(1)) as f64;
    let ln2 = std::f64::consts::LN_2;
    let bits_per_dim = -(log_pu - D as f64 * 256f64.ln()) / (D as f64 * ln2);
    let bits_17 = -log_pu / (D as f64 * ln2) + LEVELS.log2();

    // Pictures: 16 flow samples at temperature 0.7 above 16 test images.
    let mut srng = PplRng::seed_from_u64(args.seed.wrapping_add(300));
    let z: Vec<f32> = srng
        .normals(16 * D)
        .into_iter()
        .map(|v| (0.7 * v) as f32)
        .collect();
    let (xs, _) = flow.to_data(&Tensor::from_vec(z, (16, D), &DEV)?, None)?;
    let to_unit = |x: &Tensor| -> Result<Tensor> {
        let s = candle_nn::ops::sigmoid(&x.to_dtype(DType::F32)?)?;
        Ok(((s - ALPHA)? / (1.0 - 2.0 * ALPHA))?.clamp(0.0, 1.0)?)
    };
    let samples = to_unit(&xs)?;
    let real = to_unit(&x_test.narrow(0, 0, 16)?)?;
    let grid = Tensor::cat(&[&samples, &real], 0)?.reshape((32, 8, 8))?;
    // image_grid draws 0 as black: show ink dark on white like the scanned digits.
    let grid = grid.affine(-1.0, 1.0)?;
    image_grid_titled(
        args.out.join("hybrid_digits_samples.png"),
        &grid,
        16,
        8,
        Some(&format!(
            "flow samples (T = 0.7, top) and test digits; test error {:.1}%",
            100.0 * test_error
        )),
    )?;
    line_chart(
        args.out.join("hybrid_digits_training.png"),
        &format!("DIGLM on the 8x8 digits (λ = {})", args.lambda),
        &[
            Panel::new("loss −[log p(y|x) + λ log p(x)] per image", "step", "loss")
                .with_series(Series::from_values("loss", &losses)),
            Panel::new("minibatch log p(y|x)", "step", "nats")
                .with_series(Series::from_values("log p(y|x)", &lpy)),
            Panel::new("minibatch log p(x) (logit space)", "step", "nats")
                .with_series(Series::from_values("log p(x)", &lpx)),
            Panel::new(
                "validation log p(y|x) + λ log p(x) (best kept)",
                "step",
                "nats",
            )
            .with_series(Series::new("validation objective", val_curve.clone()).markers(3)),
        ],
    )?;

    let json = serde_json::json!({
        "example": "hybrid_digits",
        "lambda": args.lambda,
        "steps": args.steps,
        "batch": args.batch,
        "couplings": args.couplings,
        "hidden": args.hidden,
        "n_train": n_train,
        "n_valid": n_valid,
        "n_test": n_test,
        "best_step": best_step,
        "best_valid_objective": best_val,
        "skipped_steps": skipped,
        "final_loss": losses.iter().rev().take(50).sum::<f64>() / losses.len().clamp(1, 50) as f64,
        "test_error": test_error,
        "test_log_py": test_log_py,
        "bits_per_dim": bits_per_dim,
        "bits_per_dim_17_levels": bits_17,
        "test_log_px_unit_cube": log_pu,
        "steps_per_sec": args.steps as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
