//! A conditional latent-variable energy-based model: the "horn" (Canziani's NYU Deep
//! Learning lectures, week 15), an ellipse whose radii grow with an input x.
//!
//! Data: `x ~ U(0, 1)`, `θ ~ U(0, 2π)`, `y = ρ(x) ⊙ (cos θ, sin θ) + ε`,
//! `ρ(x) = ((1.5x + 2(1−x)) e^{2x}, (2x + 1.5(1−x)) e^{2x})`, `ε ~ N(0, (1/20)² I)`, all
//! from the library's seeded generator; 1000 training and 1000 test points.
//!
//! Model: a predictor MLP `f: 1-8-8-2` (ReLU, candle-nn layers in the parameter store via
//! `ctx.module`), a latent angle `z ~ Uniform[0, 2π)` per point, and the energy
//! `E(x, y, z) = (y₁ − f₁(x) cos z)² + (y₂ − f₂(x) sin z)²` (a `factor` of `−E`).
//! Training: the zero-temperature energy loss `mean F∞(x, y)`, `F∞ = min_z E` from the
//! 48-point grid `z ∈ {kπ/24}` refined by `--refine-steps` L-BFGS iterations, on
//! minibatches of 100 (the data plate subsampled), Adam (`--lr`, `--steps`).
//!
//! Evaluation:
//! - `radius_rel_err_mean` / `radius_rel_err_max`: on the 51 inputs `x = 0, 0.02, …, 1`,
//!   the relative error of each component up to sign, `||f_i(x)| − ρ_i(x)| / ρ_i(x)`
//!   (the sign of `f_i` is not identifiable: `z → π − z` flips `f₁`, `z → −z` flips `f₂`),
//!   averaged over / maximised over the 102 values;
//! - `test_free_energy_grid`: the mean `F∞` of the 1000 test points from the grid alone;
//!   `test_free_energy_refined`: the same after 20 L-BFGS iterations on `z` from the best
//!   grid point (never larger: refinement keeps each point's best iterate).
//!
//! Outputs in `--out` (default `target/ebm_conditional_horn`): `horn.png` (the training
//! data and the learned ellipses `f(x) ⊙ (cos z, sin z)` at several x over the true ones),
//! `radius.png` (`|f_i(x)|` against `ρ_i(x)`), `loss.png`. Ends with one JSON line.
//!
//! Run: `cargo run --release --example ebm_conditional_horn`; `--quick` for CI.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::engines::{Data, Ebm, EnergyModel, Grid, Inference, Loss, Refine};
use ppl::observers::{LossPlot, Progress};
use ppl::plots::{line_chart, line_chart_sized, ChartSize, Panel, Series, YRange};
use ppl::prelude::*;
use ppl::{Adam, Trainer};
use std::f64::consts::PI;
use std::path::PathBuf;
use std::time::Instant;

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "Conditional latent-variable EBM on the horn")]
struct Args {
    /// Adam steps (minibatches of `--batch`).
    #[arg(long, default_value_t = 10000)]
    steps: u64,
    /// Points per minibatch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 0.01)]
    lr: f64,
    /// L-BFGS iterations refining z from the grid in training (0: the grid alone).
    #[arg(long, default_value_t = 5)]
    refine_steps: usize,
    /// Seed of the data and the initial weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A short run for CI (400 steps).
    #[arg(long)]
    quick: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output directory.
    #[arg(long, default_value = "target/ebm_conditional_horn")]
    out: PathBuf,
}

type Error = Box<dyn std::error::Error>;

#[path = "common/horn.rs"]
mod horn;
use horn::{horn, rho, Predictor};

fn grid() -> Result<Grid> {
    Grid::periodic("z", 0.0, 2.0 * PI, 48)
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

fn main() -> std::result::Result<(), Error> {
    let args = Args::parse();
    // One thread is fastest for these small tensors.
    threads::default_threads(1);
    let start = Instant::now();
    std::fs::create_dir_all(&args.out)?;
    let steps = if args.quick { 400 } else { args.steps };
    let mut ctx = Ctx::new(args.seed);
    let (x_train, y_train) = horn(&mut ctx, 1000)?;
    let (x_test, y_test) = horn(&mut ctx, 1000)?;
    let f = Predictor::new(&mut ctx)?;

    // Training.
    let model = |c: &mut Ctx| f.model(c, &x_train, &y_train, Some(args.batch));
    let energy = EnergyModel::new(&model, "data").periodic("z", 0.0, 2.0 * PI)?;
    let mut inference = Inference::grid(grid()?);
    if args.refine_steps > 0 {
        inference = inference.with_refine(Refine::lbfgs(5, args.refine_steps)?);
    }
    let mut ebm = Ebm::new(energy, inference, Loss::Energy);
    let mut trainer =
        Trainer::new(Adam::new(), args.lr)?.observe(LossPlot::new(args.out.join("loss.png")));
    if !args.quiet {
        trainer = trainer.observe(Progress::new(steps));
    }
    let train_start = Instant::now();
    let report = trainer.run(&mut ctx, &mut ebm, steps)?;
    let train_seconds = train_start.elapsed().as_secs_f64();
    drop(ebm);

    // Radii on 51 inputs, up to sign.
    let xs: Vec<f64> = (0..=50).map(|k| k as f64 / 50.0).collect();
    let xt = Tensor::from_vec(xs.clone(), (51, 1), &Device::Cpu)?.to_dtype(DType::F32)?;
    let fx = host(&f.forward(&xt)?)?;
    let mut errs = Vec::with_capacity(102);
    for (k, &x) in xs.iter().enumerate() {
        let r = rho(x);
        for i in 0..2 {
            errs.push((fx[2 * k + i].abs() - r[i]).abs() / r[i]);
        }
    }
    let err_mean = errs.iter().sum::<f64>() / errs.len() as f64;
    let err_max = errs.iter().cloned().fold(0.0, f64::max);

    // Test free energies: the grid, then L-BFGS from its best point.
    let test_model = |c: &mut Ctx| f.model(c, &x_test, &y_test, None);
    let mut em = EnergyModel::new(&test_model, "data").periodic("z", 0.0, 2.0 * PI)?;
    let f_grid = em
        .infer(&mut ctx, &mut Inference::grid(grid()?), &Data::model())?
        .mean()?;
    let mut refined = Inference::grid(grid()?).with_refine(Refine::lbfgs(5, 20)?);
    let f_refined = em.infer(&mut ctx, &mut refined, &Data::model())?.mean()?;

    // Pictures: the horn (data and ellipses at several x), the radii.
    let ytr = host(&y_train)?;
    let data: Vec<(f64, f64)> = ytr.chunks(2).map(|p| (p[0], p[1])).collect();
    let mut horn_panel = Panel::new("", "y1", "y2").with_series(
        Series::new("training data", data)
            .markers(2)
            .color([190, 190, 190]),
    );
    let at = [0.0, 0.25, 0.5, 0.75, 1.0];
    let colours = [
        [31, 119, 180],
        [44, 160, 44],
        [255, 127, 14],
        [148, 103, 189],
        [214, 39, 40],
    ];
    let xa = Tensor::from_vec(at.to_vec(), (at.len(), 1), &Device::Cpu)?.to_dtype(DType::F32)?;
    let fa = host(&f.forward(&xa)?)?;
    for (k, (&x, c)) in at.iter().zip(colours).enumerate() {
        let ring = |r: [f64; 2]| -> Vec<(f64, f64)> {
            (0..=200)
                .map(|j| {
                    let t = 2.0 * PI * j as f64 / 200.0;
                    (r[0] * t.cos(), r[1] * t.sin())
                })
                .collect()
        };
        let label = if k == 0 { "true ρ(x)" } else { "" };
        horn_panel = horn_panel
            .with_series(Series::new(label, ring(rho(x))).color([0, 0, 0]).width(1))
            .with_series(
                Series::new(
                    format!("learned f(x), x = {x}"),
                    ring([fa[2 * k], fa[2 * k + 1]]),
                )
                .color(c)
                .width(3),
            );
    }
    line_chart_sized(
        args.out.join("horn.png"),
        "Conditional horn: data and learned ellipses (f1(x) cos z, f2(x) sin z)",
        &[horn_panel.with_y_range(YRange::Full)],
        ChartSize {
            width: 800,
            panel_height: 760,
        },
    )?;
    let curve = |i: usize, learned: bool| -> Vec<(f64, f64)> {
        xs.iter()
            .enumerate()
            .map(|(k, &x)| {
                (
                    x,
                    if learned {
                        fx[2 * k + i].abs()
                    } else {
                        rho(x)[i]
                    },
                )
            })
            .collect()
    };
    line_chart(
        args.out.join("radius.png"),
        "Radii of the horn: learned |f(x)| against the true ρ(x)",
        &[Panel::new("", "x", "radius")
            .with_series(
                Series::new("ρ1(x)", curve(0, false))
                    .color([31, 119, 180])
                    .width(1),
            )
            .with_series(
                Series::new("|f1(x)|", curve(0, true))
                    .color([31, 119, 180])
                    .width(3),
            )
            .with_series(
                Series::new("ρ2(x)", curve(1, false))
                    .color([214, 39, 40])
                    .width(1),
            )
            .with_series(
                Series::new("|f2(x)|", curve(1, true))
                    .color([214, 39, 40])
                    .width(3),
            )
            .with_y_range(YRange::Full)],
    )?;

    let final_loss =
        report.losses.iter().rev().take(50).sum::<f64>() / report.losses.len().clamp(1, 50) as f64;
    let json = serde_json::json!({
        "example": "ebm_conditional_horn",
        "steps": report.losses.len(),
        "batch": args.batch,
        "refine_steps": args.refine_steps,
        "train_loss": final_loss,
        "radius_rel_err_mean": err_mean,
        "radius_rel_err_max": err_max,
        "test_free_energy_grid": f_grid,
        "test_free_energy_refined": f_refined,
        "steps_per_sec": report.losses.len() as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
