//! The IAF autoguide on a model with a strongly correlated Gaussian posterior.

use candle_core::{DType, Device, Tensor};
use ppl_core::prelude::*;
use ppl_inference::engines::Objective;
use ppl_inference::engines::{Svi, TraceElbo};
use ppl_inference::guides::{AutoIaf, AutoNormal};
use ppl_inference::{Adam, Cosine, Trainer};

/// w ~ N(0, I₂), y ~ N(w₀ + w₁, 0.5²) with y = 1.2 observed. The posterior precision is
/// I + [[4, 4], [4, 4]], so the covariance is [[5, −4], [−4, 5]] / 9 (correlation −0.8),
/// the mean is 4.8 / 9 · (1, 1), and the evidence is y ~ N(0, 2.25).
fn model(ctx: &mut Ctx) -> Result<()> {
    let prior = Normal::standard(&[2], DType::F64, &Device::Cpu)?.to_event(1)?;
    let w = ctx.sample("w", prior)?;
    let mean = w.sum_keepdim(candle_core::D::Minus1)?;
    let y = Tensor::new(&[1.2f64], &Device::Cpu)?;
    ctx.observe(
        "y",
        Normal::new(&mean, &Tensor::new(0.5f64, &Device::Cpu)?)?.to_event(1)?,
        &y,
    )?;
    Ok(())
}

const MEAN: f64 = 4.8 / 9.0;
const VAR: f64 = 5.0 / 9.0;
const COV: f64 = -4.0 / 9.0;

fn log_evidence() -> f64 {
    let v: f64 = 2.25;
    -0.5 * (2.0 * std::f64::consts::PI * v).ln() - 0.5 * 1.2 * 1.2 / v
}

/// The ELBO averaged over 2000 particles (standard error ≈ 0.01 nats or less here).
fn elbo_of<G: Model>(ctx: &mut Ctx, guide: &G) -> f64 {
    let mut e = TraceElbo::new().with_particles(2000).unwrap();
    e.init_with(ctx, &model, guide).unwrap();
    e.loss(ctx, &model, guide).unwrap().bound
}

fn train<G: Model>(ctx: &mut Ctx, guide: &G, steps: u64) {
    let mut t = Trainer::new(Adam::new(), 0.02)
        .unwrap()
        .with_schedule(Cosine {
            lr0: 0.02,
            min: 1e-4,
            steps,
        });
    let elbo = TraceElbo::new().with_particles(16).unwrap();
    t.run(ctx, &mut Svi::new(&model, guide, elbo), steps)
        .unwrap();
}

#[test]
fn auto_iaf_recovers_a_correlated_gaussian_posterior_and_beats_mean_field() {
    let _v = ppl_core::validation::disable();
    let logz = log_evidence();

    let mut ctx = Ctx::new(3);
    let iaf = AutoIaf::new(&mut ctx, &model, 2, &[16]).unwrap();
    assert_eq!(iaf.dim(), 2);
    train(&mut ctx, &iaf, 3000);
    let elbo_iaf = elbo_of(&mut ctx, &iaf);

    // Moments of 20000 guide draws: Monte-Carlo standard errors ≈ 0.005 for the means
    // (sd 0.75) and ≈ 0.006 for the (co)variances, so the tolerances below (0.03 for the
    // mean, 0.05 for the covariance, about 10% of the variance) leave room for the
    // optimisation's own error (tanh MADEs only approximate the exact affine coupling).
    let x = iaf.sample_unconstrained(&mut ctx, 20000).unwrap();
    let x: Vec<Vec<f64>> = x.to_vec2().unwrap();
    let n = x.len() as f64;
    let m0 = x.iter().map(|r| r[0]).sum::<f64>() / n;
    let m1 = x.iter().map(|r| r[1]).sum::<f64>() / n;
    let c = |i: usize, j: usize, mi: f64, mj: f64| {
        x.iter().map(|r| (r[i] - mi) * (r[j] - mj)).sum::<f64>() / (n - 1.0)
    };
    let (c00, c01, c11) = (c(0, 0, m0, m0), c(0, 1, m0, m1), c(1, 1, m1, m1));
    println!(
        "AutoIaf: mean ({m0:.4}, {m1:.4}) vs {MEAN:.4}; cov [[{c00:.4}, {c01:.4}], [{c11:.4}]] \
         vs [[{VAR:.4}, {COV:.4}], [{VAR:.4}]]; ELBO {elbo_iaf:.4} vs log p(y) {logz:.4}"
    );
    assert!((m0 - MEAN).abs() < 0.03 && (m1 - MEAN).abs() < 0.03);
    assert!((c00 - VAR).abs() < 0.05 && (c11 - VAR).abs() < 0.05);
    assert!((c01 - COV).abs() < 0.05, "cov {c01} vs {COV}");
    // The ELBO is log p(y) − KL(q‖p): within 0.05 nats of the evidence (the 2000-particle
    // estimate's own standard error is below 0.01 once q ≈ p).
    assert!(
        elbo_iaf <= logz + 0.02 && elbo_iaf > logz - 0.05,
        "ELBO {elbo_iaf} vs {logz}"
    );

    // The flow's image of the base mean: for a (nearly) Gaussian q it is the mean.
    let med = iaf.median(&mut ctx).unwrap();
    assert_eq!(med.len(), 1);
    assert_eq!(med[0].0, "w");
    let w: Vec<f64> = med[0].1.to_vec1().unwrap();
    assert!(
        (w[0] - MEAN).abs() < 0.05 && (w[1] - MEAN).abs() < 0.05,
        "median {w:?}"
    );

    // Mean-field: the best diagonal Gaussian has variances 1/Λᵢᵢ = 1/5 and loses
    // KL = ½ (log 5 + log 5 − log 9) ≈ 0.511 nats.
    let mut ctx = Ctx::new(4);
    let normal = AutoNormal::new(&mut ctx, &model).unwrap();
    train(&mut ctx, &normal, 3000);
    let elbo_normal = elbo_of(&mut ctx, &normal);
    let gap = 0.5 * (25.0f64 / 9.0).ln();
    println!(
        "AutoNormal: ELBO {elbo_normal:.4}, exact mean-field optimum {:.4}",
        logz - gap
    );
    assert!((elbo_normal - (logz - gap)).abs() < 0.05);
    assert!(
        elbo_iaf > elbo_normal + 0.4,
        "IAF {elbo_iaf} vs mean-field {elbo_normal}"
    );
}

#[test]
fn auto_iaf_rejects_bad_settings() {
    let mut ctx = Ctx::new(0);
    assert!(AutoIaf::new(&mut ctx, &model, 0, &[8]).is_err());
    assert!(AutoIaf::new(&mut ctx, &model, 1, &[0]).is_err());
    let g = AutoIaf::new(&mut ctx, &model, 1, &[8]).unwrap();
    assert!(g.with_init_scale(-1.0).is_err());
}
