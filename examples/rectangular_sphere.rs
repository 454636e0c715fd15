//! Density estimation on a learned 2-D manifold in R³ with rectangular flows (Caterini et
//! al., NeurIPS 2021): a von Mises–Fisher distribution on the unit sphere, four ways of
//! handling the volume term.
//!
//! **Data**: `x ~ vMF(μ = (0, 0, 1), κ = 3)` on the sphere `S²`, drawn exactly (Wood's
//! method in 3-D: `w = 1 + log(u + (1 − u) e^{−2κ}) / κ`, a uniform azimuth), `--n-train`
//! training and `--n-test` test points from fixed seeds. Per unit area the density is
//! `p(x) = κ / (4π sinh κ) · exp(κ μᵀx)`, so the expected log-density under the truth is
//! `E[log p] = log(κ / (4π sinh κ)) + κ (coth κ − 1/κ)` (`true_expected_log_density`).
//!
//! **Model**: a [`RectangularFlow`](ppl::flows::RectangularFlow): `z ∈ R²` with a Real NVP
//! prior (`--prior-layers` couplings; 0 for a standard normal), padded to `(z₁, z₂, 0)` and pushed
//! through a square Real NVP on R³ (`--couplings` affine couplings, tanh conditioners,
//! LU-linear mixing). Density on the learned surface:
//! `log p_Z(z) − ½ log det(JᵀJ)` at `z = g†(x)`. The surface `g(R²)` can cover the sphere
//! only up to a point, which training pushes to where the data are sparse (near `−μ`).
//!
//! **Training** as in `rectangular_circle`: the same data and initial weights for
//! `exact`, `hutchinson`, `fif` and `no_logdet`.
//!
//! **Metrics** per estimator (JSON `runs`): `test_log_density` (exact, on the learned
//! surface at `g†(x)`), `recon_mse`, and from 20 000 samples `g(z)`: `mean_radius`,
//! `resultant_length` (truth `coth κ − 1/κ` ≈ 0.672), `mean_direction` (a unit vector,
//! truth `(0, 0, 1)`) and `direction_error_deg` (its angle from `μ`).
//!
//! **Picture** in `--out`: `rectangular_sphere_density.png`, the learned density against
//! the polar angle from `μ` (averaged over 72 azimuths, with the spread over azimuths as
//! thin lines), against the truth.
//!
//! Run: `cargo run --release --example rectangular_sphere`; `--quick` for CI.

use clap::Parser;
use ppl::engines::evaluate_injective;
use ppl::plots::{line_chart, Series, YRange};
use ppl::prelude::*;
use std::f64::consts::PI;
use std::path::PathBuf;

#[path = "common/rectangular.rs"]
mod rectangular;
use rectangular::{direction_stats, panel, tensor, train, TrainArgs, ESTIMATORS};

const KAPPA: f64 = 3.0;

#[derive(Parser, Debug)]
#[command(about = "Rectangular flows on the sphere: exact, Hutchinson, free-form and no log-det")]
struct Args {
    #[command(flatten)]
    train: TrainArgs,
    /// Affine couplings of the square flow.
    #[arg(long, default_value_t = 6)]
    couplings: usize,
    /// Couplings of the Real NVP prior on z (0: standard normal).
    #[arg(long, default_value_t = 2)]
    prior_layers: usize,
    /// Reconstruction weight β (10 left the surface ~0.2 off the sphere, inside it).
    #[arg(long, default_value_t = 100.0)]
    beta: f64,
    /// Output directory.
    #[arg(long, default_value = "target/rectangular_sphere")]
    out: PathBuf,
}

type Error = Box<dyn std::error::Error>;

/// `n` exact draws from vMF(e₃, κ) on S².
fn sphere(rng: &mut PplRng, n: usize) -> Vec<Vec<f64>> {
    (0..n)
        .map(|_| {
            let u = rng.uniform_open();
            let w = 1.0 + (u + (1.0 - u) * (-2.0 * KAPPA).exp()).ln() / KAPPA;
            let phi = 2.0 * PI * rng.uniform_open();
            let s = (1.0 - w * w).max(0.0).sqrt();
            vec![s * phi.cos(), s * phi.sin(), w]
        })
        .collect()
}

/// `log(κ / (4π sinh κ))`, the log normaliser per unit area.
fn log_norm() -> f64 {
    KAPPA.ln() - (4.0 * PI).ln() - KAPPA.sinh().ln()
}

fn main() -> std::result::Result<(), Error> {
    let mut args = Args::parse();
    args.train.apply_quick()?;
    std::fs::create_dir_all(&args.out)?;
    let _v = ppl::validation::disable();

    let (train_x, test_x) = args.train.data(|rng, n| Ok(sphere(rng, n)))?;
    let a3 = 1.0 / KAPPA.tanh() - 1.0 / KAPPA;
    let true_expected = log_norm() + KAPPA * a3;

    let cfg = args
        .train
        .config(3, 2, args.couplings, args.prior_layers, args.beta);
    // A grid on the sphere: polar angles from μ × 72 azimuths.
    let (n_polar, n_azimuth) = (91, 72);
    let polar: Vec<f64> = (0..n_polar)
        .map(|i| PI * i as f64 / (n_polar - 1) as f64)
        .collect();
    let grid: Vec<Vec<f64>> = polar
        .iter()
        .flat_map(|a| {
            (0..n_azimuth).map(move |j| {
                let phi = 2.0 * PI * j as f64 / n_azimuth as f64;
                vec![a.sin() * phi.cos(), a.sin() * phi.sin(), a.cos()]
            })
        })
        .collect();
    let grid_x = tensor(&grid)?;
    let colours = [
        [31, 119, 180],
        [255, 127, 14],
        [44, 160, 44],
        [148, 103, 189],
    ];
    let mut series = vec![Series::new(
        "truth: vMF(e3, 3)",
        polar
            .iter()
            .map(|a| (a.to_degrees(), (log_norm() + KAPPA * a.cos()).exp()))
            .collect(),
    )
    .color([0, 0, 0])
    .width(3)];
    let mut runs = Vec::new();
    for (i, name) in args.train.estimators.iter().enumerate() {
        let colour = colours[i % colours.len()];
        let fit = train(&cfg, name, &train_x, &test_x, args.train.n_samples)?;
        let (radius, resultant, dir) = direction_stats(&fit.samples);
        let error_deg = dir[2].clamp(-1.0, 1.0).acos().to_degrees();
        if !args.train.quiet {
            eprintln!(
                "{name}: test log-density {:.4} (truth's expectation {true_expected:.4}), recon {:.2e}, \
                 radius {radius:.3}, resultant {resultant:.3}, direction error {error_deg:.1}° \
                 ({:.1} s)",
                fit.test_log_density, fit.recon_mse, fit.seconds
            );
        }
        let p: Vec<f64> = evaluate_injective(&fit.model, &grid_x, 2048)?
            .log_density
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?
            .into_iter()
            .map(f64::exp)
            .collect();
        let by_polar: Vec<&[f64]> = p.chunks(n_azimuth).collect();
        let avg: Vec<(f64, f64)> = polar
            .iter()
            .zip(&by_polar)
            .map(|(a, row)| (a.to_degrees(), row.iter().sum::<f64>() / n_azimuth as f64))
            .collect();
        series.push(
            Series::new(
                format!("{name} (test log-density {:.3})", fit.test_log_density),
                avg,
            )
            .color(colour)
            .width(2),
        );
        // The spread over azimuths: the 10% and 90% quantiles at each polar angle.
        for q in [0.1, 0.9] {
            let band: Vec<(f64, f64)> = polar
                .iter()
                .zip(&by_polar)
                .map(|(a, row)| {
                    let mut r = row.to_vec();
                    r.sort_by(|x, y| x.total_cmp(y));
                    (a.to_degrees(), r[((n_azimuth - 1) as f64 * q) as usize])
                })
                .collect();
            series.push(Series::new("", band).color(colour).width(1));
        }
        runs.push(serde_json::json!({
            "estimator": name,
            "test_log_density": fit.test_log_density,
            "recon_mse": fit.recon_mse,
            "mean_radius": radius,
            "resultant_length": resultant,
            "mean_direction": dir,
            "direction_error_deg": error_deg,
            "seconds": fit.seconds,
        }));
    }
    let top = (log_norm() + KAPPA).exp();
    line_chart(
        args.out.join("rectangular_sphere_density.png"),
        "Rectangular flows on the sphere: learned density per unit area (azimuth mean, 10-90% band)",
        &[panel(
            "density against the polar angle from μ",
            "polar angle from μ (degrees)",
            "p(x)",
            series,
            YRange::Fixed(0.0, 1.6 * top),
        )],
    )?;
    let json = serde_json::json!({
        "example": "rectangular_sphere",
        "steps": args.train.steps,
        "batch": args.train.batch,
        "n_train": args.train.n_train,
        "n_test": args.train.n_test,
        "n_samples": args.train.n_samples,
        "beta": args.beta,
        "kappa": KAPPA,
        "true_expected_log_density": true_expected,
        "true_resultant_length": a3,
        "true_mean_direction": [0.0, 0.0, 1.0],
        "estimators": ESTIMATORS,
        "runs": runs,
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
