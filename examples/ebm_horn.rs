//! A latent-variable energy-based model on the "horn" data at x = 0: learning an ellipse by
//! energy minimisation (Canziani's NYU Deep Learning lectures, week 15).
//!
//! Data: 24 points `y = ρ ⊙ (cos θ, sin θ) + ε` with `ρ = ρ(0) = (2, 1.5)`, the angles
//! evenly spaced, `θ_k = 2πk/24` (not drawn), and `ε ~ N(0, (1/20)² I)` drawn from the
//! library's seeded generator (`--seed`).
//!
//! Model: a decoder `g(z) = (w₁ cos z, w₂ sin z)` with a latent angle `z ~ Uniform[0, 2π)`
//! per point and the energy `E(y, z) = ‖y − g(z)‖²`, written as a `factor` of `−E` in the
//! data plate. Inference: the 48-point grid `z ∈ {kπ/24}`; the zero-temperature free
//! energy `F∞(y) = min_z E(y, z)`. Training: the energy loss `mean_k F∞(y_k)`, full batch,
//! plain gradient descent (`Sgd` without momentum, `--lr`, `--steps`) from
//! `w = (−1.5, 0.4)`. The sign of each `w_i` is not identifiable (`z → π − z` flips `w₁`,
//! `z → −z` flips `w₂`), so the fit is judged by `|w_i|` against `(2, 1.5)`.
//!
//! Temperature ablation: the same start, steps and learning rate with the relaxed free
//! energy `F_β = −(1/β) log((1/48) Σ_z exp(−βE))` for β = 10, 1, 0.1. As `β → 0`, `F_β`
//! tends to the mean energy over `z`, `|y|² + (w₁² + w₂²)/2`, whose minimiser is `w = 0`:
//! a small β shrinks the ellipse.
//!
//! Outputs in `--out` (default `target/ebm_horn`): `energy.png` (E over z for one point,
//! before and after training, with the grid's minimiser), `free_energy.png` (a heat map of
//! `F∞` over y with the learned ellipse and the data), `ellipse.png` (the data, the initial
//! and learned ellipses, and the β sweep's), `loss.png`. Ends with one JSON line: `w1`,
//! `w2`, `final_loss`, `beta_sweep`.
//!
//! Run: `cargo run --release --example ebm_horn` (a second); `--quick` for CI.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::engines::{Data, Ebm, EnergyModel, Grid, Inference, Loss, Temperature};
use ppl::observers::Progress;
use ppl::plots::{heat_map, line_chart, line_chart_sized, ChartSize, HeatMap, Panel, Series};
use ppl::prelude::*;
use ppl::{ChoiceMap, Sgd, Trainer};
use std::f64::consts::PI;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(about = "Latent-variable EBM: learn the horn's ellipse at x = 0")]
struct Args {
    /// Gradient-descent steps (each run).
    #[arg(long, default_value_t = 100)]
    steps: u64,
    /// Learning rate of plain gradient descent.
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// Seed of the noise.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fewer heat-map cells (for CI).
    #[arg(long)]
    quick: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output directory.
    #[arg(long, default_value = "target/ebm_horn")]
    out: PathBuf,
}

type Error = Box<dyn std::error::Error>;

const W0: [f64; 2] = [-1.5, 0.4];
const RHO: [f64; 2] = [2.0, 1.5];

/// The ellipse model on the points `y` `[B, 2]` (an input: replaced to evaluate F at other
/// points), with the learnable decoder weights `w` (init `W0`).
fn ellipse(y: Tensor) -> impl Fn(&mut Ctx) -> Result<()> {
    move |ctx: &mut Ctx| {
        let dev = Device::Cpu;
        let y = ctx.input("y", &y)?;
        let w = ctx.param("w", || Ok(Tensor::new(&W0, &dev)?), Constraint::Real)?;
        ctx.plate("data", y.dim(0)?, PlateOpts::default(), |ctx, _| {
            let (lo, hi) = (Tensor::new(0.0, &dev)?, Tensor::new(2.0 * PI, &dev)?);
            // [B] in a plain run, [G, B] when the engine searches G candidates at once.
            let z = ctx.sample("z", Uniform::new(&lo, &hi)?)?;
            let d1 = y
                .get_on_dim(1, 0)?
                .broadcast_sub(&z.cos()?.broadcast_mul(&w.get(0)?)?)?;
            let d2 = y
                .get_on_dim(1, 1)?
                .broadcast_sub(&z.sin()?.broadcast_mul(&w.get(1)?)?)?;
            ctx.factor("energy", &(d1.sqr()? + d2.sqr()?)?.neg()?)
        })
    }
}

fn grid() -> Result<Grid> {
    Grid::periodic("z", 0.0, 2.0 * PI, 48)
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

fn w_of(ctx: &Ctx) -> std::result::Result<[f64; 2], Error> {
    let w = host(&ctx.params().get("w")?)?;
    Ok([w[0], w[1]])
}

/// Trains from `W0` at `temperature` in a fresh context; returns it (holding the trained
/// `w`) and the losses.
fn train(
    y: &Tensor,
    temperature: Temperature,
    args: &Args,
    label: &str,
) -> std::result::Result<(Ctx, Vec<f64>), Error> {
    let model = ellipse(y.clone());
    let mut ctx = Ctx::new(args.seed);
    let energy = EnergyModel::new(&model, "data");
    let inference = Inference::grid(grid()?).with_temperature(temperature);
    let mut ebm = Ebm::new(energy, inference, Loss::Energy);
    let mut trainer = Trainer::new(Sgd::new(0.0)?, args.lr)?;
    if !args.quiet {
        eprintln!("{label}");
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let report = trainer.run(&mut ctx, &mut ebm, args.steps)?;
    Ok((ctx, report.losses))
}

/// `n` points of the ellipse `(w₁ cos t, w₂ sin t)`, closed.
fn ellipse_points(w: [f64; 2], n: usize) -> Vec<(f64, f64)> {
    (0..=n)
        .map(|k| {
            let t = 2.0 * PI * k as f64 / n as f64;
            (w[0] * t.cos(), w[1] * t.sin())
        })
        .collect()
}

fn main() -> std::result::Result<(), Error> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    let dev = Device::Cpu;

    // The data: evenly spaced angles, seeded noise of sd 1/20.
    let n = 24;
    let mut ctx = Ctx::new(args.seed);
    let eps = Normal::standard(&[n, 2], DType::F64, &dev)?.sample(ctx.rng(), &[])?;
    let eps = host(&eps)?;
    let mut pts = Vec::with_capacity(2 * n);
    for k in 0..n {
        let t = 2.0 * PI * k as f64 / n as f64;
        pts.push(RHO[0] * t.cos() + eps[2 * k] / 20.0);
        pts.push(RHO[1] * t.sin() + eps[2 * k + 1] / 20.0);
    }
    let y = Tensor::from_vec(pts.clone(), (n, 2), &dev)?;
    let data: Vec<(f64, f64)> = pts.chunks(2).map(|p| (p[0], p[1])).collect();

    // Zero temperature.
    let (mut ctx, losses) = train(&y, Temperature::Zero, &args, "zero temperature")?;
    let w = w_of(&ctx)?;
    let final_loss = *losses.last().ok_or("no training steps")?;

    // The temperature ablation.
    let mut sweep = Vec::new();
    let mut sweep_losses = Vec::new();
    for beta in [10.0, 1.0, 0.1] {
        let (c, l) = train(&y, Temperature::Beta(beta), &args, &format!("β = {beta}"))?;
        let wb = w_of(&c)?;
        sweep.push((beta, wb));
        sweep_losses.push((beta, l));
    }

    // Energy over z for one point, before and after training (fine z, 480 points).
    let model = ellipse(y.clone());
    let k = 3;
    let one = Data::with_values(ChoiceMap::new().with("y", y.narrow(0, k, 1)?));
    let zs: Vec<f64> = (0..480).map(|i| 2.0 * PI * i as f64 / 480.0).collect();
    let zt = Tensor::new(zs.as_slice(), &dev)?;
    let z_fine = ChoiceMap::new().with("z", zt);
    let mut em = EnergyModel::new(&model, "data");
    let e_after = host(&em.energies(&mut ctx, &z_fine, &one)?)?;
    let fe = em.grid_search(&mut ctx, &grid()?, Temperature::Zero, &one)?;
    let z_hat = host(fe.z.get(&"z".into()).ok_or("no ž")?)?[0];
    let f_after = host(&fe.f)?[0];
    let mut ctx0 = Ctx::new(args.seed);
    let mut em0 = EnergyModel::new(&model, "data");
    let e_before = host(&em0.energies(&mut ctx0, &z_fine, &one)?)?;
    let fe0 = em0.grid_search(&mut ctx0, &grid()?, Temperature::Zero, &one)?;
    let z_hat0 = host(fe0.z.get(&"z".into()).ok_or("no ž")?)?[0];
    let f_before = host(&fe0.f)?[0];
    let curve = |e: &[f64]| {
        zs.iter()
            .copied()
            .zip(e.iter().copied())
            .collect::<Vec<_>>()
    };
    line_chart(
        args.out.join("energy.png"),
        &format!(
            "Energy E(y, z) of point {k}, y = ({:.2}, {:.2})",
            data[k].0, data[k].1
        ),
        &[Panel::new("", "latent z (radians)", "energy E")
            .with_series(Series::new("initial w", curve(&e_before)).color([170, 170, 170]))
            .with_series(Series::new("trained w", curve(&e_after)).color([31, 119, 180]))
            .with_series(
                Series::new("grid minimiser ž, F∞ (initial)", vec![(z_hat0, f_before)])
                    .markers(6)
                    .color([120, 120, 120]),
            )
            .with_series(
                Series::new("grid minimiser ž, F∞ (trained)", vec![(z_hat, f_after)])
                    .markers(6)
                    .color([214, 39, 40]),
            )
            .with_y_range(ppl::plots::YRange::Full)],
    )?;

    // F∞ over y: a heat map from one vectorised grid search over all cells' centres.
    let cells = if args.quick { 41 } else { 121 };
    let (lo, hi) = (-3.0, 3.0);
    let step = (hi - lo) / cells as f64;
    let mut centres = Vec::with_capacity(2 * cells * cells);
    for j in 0..cells {
        for i in 0..cells {
            centres.push(lo + (i as f64 + 0.5) * step);
            centres.push(lo + (j as f64 + 0.5) * step);
        }
    }
    let grid_y = Tensor::from_vec(centres, (cells * cells, 2), &dev)?;
    let all = Data::with_values(ChoiceMap::new().with("y", grid_y));
    let f_map = host(
        &em.grid_search(&mut ctx, &grid()?, Temperature::Zero, &all)?
            .f,
    )?;
    let map = HeatMap::new(
        "Zero-temperature free energy F∞(y) = min_z E(y, z), trained w",
        "y1",
        "y2",
        (lo, hi),
        (lo, hi),
        cells,
        cells,
        f_map,
    )?
    .with_value_label("F∞")
    .with_overlay(
        Series::new("learned ellipse g(z)", ellipse_points(w, 200))
            .color([255, 255, 255])
            .width(2),
    )
    .with_overlay(
        Series::new("data", data.clone())
            .markers(4)
            .color([214, 39, 40]),
    );
    heat_map(args.out.join("free_energy.png"), &map)?;

    // The data and the ellipses.
    let mut panel = Panel::new("", "y1", "y2")
        .with_series(Series::new("initial w", ellipse_points(W0, 200)).color([170, 170, 170]))
        .with_series(
            Series::new("F∞ (zero temperature)", ellipse_points(w, 200))
                .color([31, 119, 180])
                .width(3),
        );
    let colours = [[44, 160, 44], [255, 127, 14], [148, 103, 189]];
    for ((beta, wb), c) in sweep.iter().zip(colours) {
        panel = panel.with_series(
            Series::new(format!("F_β, β = {beta}"), ellipse_points(*wb, 200)).color(c),
        );
    }
    panel = panel
        .with_series(
            Series::new("data", data.clone())
                .markers(4)
                .color([214, 39, 40]),
        )
        .with_y_range(ppl::plots::YRange::Fixed(-2.2, 2.2));
    line_chart_sized(
        args.out.join("ellipse.png"),
        "Learned ellipses over the data (x = 0)",
        &[panel],
        ChartSize {
            width: 800,
            panel_height: 560,
        },
    )?;

    let mut loss_panel = Panel::new("", "step", "loss (mean free energy)").with_series(
        Series::from_values("F∞", &losses)
            .color([31, 119, 180])
            .width(3),
    );
    for ((beta, l), c) in sweep_losses.iter().zip(colours) {
        loss_panel =
            loss_panel.with_series(Series::from_values(format!("F_β, β = {beta}"), l).color(c));
    }
    line_chart(
        args.out.join("loss.png"),
        "Energy loss by gradient descent",
        &[loss_panel.with_y_range(ppl::plots::YRange::Full)],
    )?;

    let json = serde_json::json!({
        "example": "ebm_horn",
        "n": n,
        "steps": args.steps,
        "lr": args.lr,
        "w1": w[0],
        "w2": w[1],
        "final_loss": final_loss,
        "beta_sweep": sweep.iter().map(|(b, wb)| serde_json::json!({"beta": b, "w1": wb[0], "w2": wb[1]})).collect::<Vec<_>>(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
