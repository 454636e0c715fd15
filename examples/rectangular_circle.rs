//! Density estimation on a learned 1-D manifold with rectangular flows (Caterini et al.,
//! NeurIPS 2021): data on the unit circle in R², four ways of handling the volume term.
//!
//! **Data**: `x = (cos θ, sin θ)` with `θ ~ von Mises(μ = π/2, κ = 1)` (the library's
//! `VonMises`), `--n-train` training and `--n-test` test points from fixed seeds. Per unit
//! arc length the density is `p(x) = exp(κ cos(θ − μ)) / (2π I₀(κ))`, so the expected log-density
//! under the truth is `E[log p] = κ A(κ) − log(2π I₀(κ))`, `A = I₁/I₀`
//! (`true_expected_log_density`, ≈ −1.627 for κ = 1).
//!
//! **Model**: a [`RectangularFlow`](ppl::flows::RectangularFlow): `z ∈ R` with a
//! rational-quadratic spline flow on a standard normal (`--prior-layers 0`: standard normal), padded to `(z, 0)` and pushed
//! through a square Real NVP on R² (`--couplings` affine couplings, tanh conditioners of
//! widths `--hidden`, LU-linear mixing). Its density on the learned curve is
//! `log p_Z(z) − ½ log det(JᵀJ)` at `z = g†(x)`. The curve `g(R)` can cover the circle
//! only up to one point: the fit is best away from that gap.
//!
//! **Training** (the same initial weights and data for each): `Rectangular` with
//! `loss = −w_t (log p_Z(z) − ½ log det JᵀJ) + β ‖x − g(g†(x))‖²`, the volume gradient by
//! `exact` (tangents + Cholesky), `hutchinson` (probes + CG), `fif` (free-form surrogate)
//! or `no_logdet` (ignored: the two-step baseline); Adam, cosine learning rate, likelihood
//! warm-up `w_t` over `--warmup` steps.
//!
//! **Metrics** per estimator (JSON `runs`): `test_log_density` (the exact log-density on
//! the learned manifold at `g†(x)`, mean over the test points), `recon_mse` (mean
//! `‖x − g(g†(x))‖²`), and from 20 000 model samples `g(z)`: `mean_radius`,
//! `resultant_length` (truth `A(κ)` ≈ 0.446) and `mean_direction` (radians, truth π/2).
//!
//! **Pictures** in `--out`: `rectangular_circle_density.png` (learned density along the
//! circle against the truth, per estimator) and `rectangular_circle_manifolds.png` (the
//! learned curves with the unit circle).
//!
//! Run: `cargo run --release --example rectangular_circle`; `--quick` for CI.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::distributions::VonMises;
use ppl::engines::evaluate_injective;
use ppl::flows::Injective;
use ppl::plots::{line_chart, Series, YRange};
use ppl::prelude::*;
use std::f64::consts::PI;
use std::path::PathBuf;

#[path = "common/rectangular.rs"]
mod rectangular;
use rectangular::{direction_stats, panel, rows, tensor, train, TrainArgs, ESTIMATORS};

const KAPPA: f64 = 1.0;
const MU: f64 = PI / 2.0;

#[derive(Parser, Debug)]
#[command(about = "Rectangular flows on the circle: exact, Hutchinson, free-form and no log-det")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Affine couplings of the square flow.
    #[arg(long, default_value_t = 5)]
    couplings: usize,
    /// A rational-quadratic spline flow on z (1) or a standard normal (0).
    #[arg(long, default_value_t = 1)]
    prior_layers: usize,
    /// Reconstruction weight β.
    #[arg(long, default_value_t = 10.0)]
    beta: f64,
    /// Output directory.
    #[arg(long, default_value = "target/rectangular_circle")]
    out: PathBuf,
}

type Error = Box<dyn std::error::Error>;

/// `n` points on the circle with von Mises angles.
fn circle(rng: &mut PplRng, n: usize) -> Result<Vec<Vec<f64>>> {
    let vm = VonMises::new(
        &Tensor::new(MU, &Device::Cpu)?,
        &Tensor::new(KAPPA, &Device::Cpu)?,
    )?;
    let theta: Vec<f64> = vm.sample(rng, &[n])?.to_vec1()?;
    Ok(theta.iter().map(|t| vec![t.cos(), t.sin()]).collect())
}

/// `(log(2π I₀(κ)), A(κ) = I₁(κ)/I₀(κ))`.
fn von_mises_constants() -> Result<(f64, f64)> {
    let k = Tensor::new(KAPPA, &Device::Cpu)?;
    let li0 = ppl::special::log_bessel_i0(&k)?.to_scalar::<f64>()?;
    let li1 = ppl::special::log_bessel_i1(&k)?.to_scalar::<f64>()?;
    Ok(((2.0 * PI).ln() + li0, (li1 - li0).exp()))
}

fn main() -> std::result::Result<(), Error> {
    let mut args = Args::parse();
    args.train.apply_quick()?;
    std::fs::create_dir_all(&args.out)?;
    let _v = ppl::validation::disable();

    let (train_x, test_x) = args.train.data(circle)?;
    let (log_norm, a_kappa) = von_mises_constants()?;
    let true_expected = KAPPA * a_kappa - log_norm;

    let cfg = args
        .train
        .config(2, 1, args.couplings, args.prior_layers, args.beta);
    let grid: Vec<f64> = (0..=720)
        .map(|i| -PI + 2.0 * PI * i as f64 / 720.0)
        .collect();
    let grid_x = tensor(
        &grid
            .iter()
            .map(|t| vec![t.cos(), t.sin()])
            .collect::<Vec<_>>(),
    )?;
    let colours = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [148, 103, 189],
    ];
    let mut runs = Vec::new();
    let mut density_series = vec![Series::new(
        "truth: von Mises(π/2, 1)",
        grid.iter()
            .map(|t| (*t, (KAPPA * (t - MU).cos() - log_norm).exp()))
            .collect(),
    )
    .color([0, 0, 0])
    .width(3)];
    let circle_pts: Vec<(f64, f64)> = grid.iter().map(|t| (t.cos(), t.sin())).collect();
    let mut curve_series = vec![Series::new("unit circle", circle_pts)
        .color([170, 170, 170])
        .width(4)];
    for (i, name) in args.train.estimators.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let fit = train(&cfg, name, &train_x, &test_x, args.train.n_samples)?;
        let (radius, resultant, dir) = direction_stats(&fit.samples);
        let direction = dir[1].atan2(dir[0]);
        if !args.train.quiet {
            eprintln!(
                "{name}: test log-density {:.4} (truth's expectation {true_expected:.4}), recon {:.2e}, \
                 radius {radius:.3}, resultant {resultant:.3}, direction {direction:.3} ({:.1} s)",
                fit.test_log_density, fit.recon_mse, fit.seconds
            );
        }
        // Learned density along the circle (at the projection onto the learned curve).
        let lp: Vec<f64> = evaluate_injective(&fit.model, &grid_x, 2048)?
            .log_density
            .to_dtype(DType::F64)?
            .to_vec1()?;
        density_series.push(
            Series::new(
                format!("{name} (test log-density {:.3})", fit.test_log_density),
                grid.iter().zip(&lp).map(|(t, l)| (*t, l.exp())).collect(),
            )
            .color(colour)
            .width(2),
        );
        // The learned curve g(z) for z ∈ [−4, 4].
        let zs: Vec<Vec<f64>> = (0..=800).map(|j| vec![-4.0 + j as f64 / 100.0]).collect();
        let curve = rows(&fit.model.decode(&tensor(&zs)?)?.detach())?;
        curve_series.push(
            Series::new(
                name.clone(),
                curve
                    .iter()
                    .filter(|p| p[0].abs() <= 1.6 && p[1].abs() <= 1.6)
                    .map(|p| (p[0], p[1]))
                    .collect(),
            )
            .color(colour)
            .width(2),
        );
        runs.push(serde_json::json!({
            "estimator": name,
            "test_log_density": fit.test_log_density,
            "recon_mse": fit.recon_mse,
            "mean_radius": radius,
            "resultant_length": resultant,
            "mean_direction": direction,
            "seconds": fit.seconds,
        }));
    }
    let top = density_series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max)
        .min(1.0);
    line_chart(
        args.out.join("rectangular_circle_density.png"),
        "Rectangular flows on the circle: learned density per unit arc length",
        &[panel(
            "density along the circle",
            "angle θ (radians)",
            "p(x)",
            density_series,
            YRange::Fixed(0.0, 1.1 * top),
        )],
    )?;
    line_chart(
        args.out.join("rectangular_circle_manifolds.png"),
        "Learned manifolds g(z), z in [-4, 4], against the unit circle",
        &[panel(
            "learned curves",
            "x1",
            "x2",
            curve_series,
            YRange::Fixed(-1.6, 1.6),
        )],
    )?;
    let json = serde_json::json!({
        "example": "rectangular_circle",
        "steps": args.train.steps,
        "batch": args.train.batch,
        "n_train": args.train.n_train,
        "n_test": args.train.n_test,
        "n_samples": args.train.n_samples,
        "beta": args.beta,
        "true_expected_log_density": true_expected,
        "true_resultant_length": a_kappa,
        "true_mean_direction": MU,
        "estimators": ESTIMATORS,
        "runs": runs,
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
