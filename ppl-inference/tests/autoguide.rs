//! Autoguides against closed-form answers.

use candle_core::{DType, Device, Tensor};
use ppl_core::prelude::*;
use ppl_inference::autoguide::AutoDelta;
use ppl_inference::optim::Adam;
use ppl_inference::{Svi, TraceElbo, Trainer};

#[test]
fn auto_delta_finds_the_map_of_a_beta_bernoulli_model_in_its_support() {
    // p ~ Beta(3, 2); 10 flips with 7 heads: MAP = (3 − 1 + 7)/(3 + 2 − 2 + 10) = 9/13.
    let flips = Tensor::new(&[1f64, 1., 1., 0., 1., 1., 0., 1., 0., 1.], &Device::Cpu).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let c = |v: f64| Tensor::new(v, &Device::Cpu);
        let p = ctx.sample("p", Beta::new(&c(3.0)?, &c(2.0)?)?)?;
        ctx.plate("flips", 10, PlateOpts::default(), |ctx, _| {
            ctx.observe("x", Bernoulli::from_probs(&p)?, &flips)
        })?;
        Ok(())
    };
    let mut ctx = Ctx::new(0);
    let guide = AutoDelta::new(&mut ctx, &model).unwrap();
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    t.run(
        &mut ctx,
        &mut Svi::new(&model, &guide, TraceElbo::new()),
        2000,
    )
    .unwrap();
    let p = guide.value(&ctx, "p").unwrap().to_scalar::<f64>().unwrap();
    // The objective is deterministic (Delta guide), so Adam converges to the optimum up to
    // its step noise, far below 1e-3 after 2000 steps at lr 0.05 on a smooth 1-d problem.
    assert!((p - 9.0 / 13.0).abs() < 1e-3, "p = {p}");
    // the parameter lives in the unit interval (stored as a logit)
    assert_eq!(
        ctx.params().unconstrained("auto_delta/p").unwrap().dims(),
        &[] as &[usize]
    );
}

#[test]
fn auto_delta_on_a_vector_latent_is_the_posterior_mean_of_a_gaussian() {
    // w ~ N(0, I_2), y = X w + N(0, 0.5²): the Gaussian posterior's mode is its mean
    // (XᵀX/σ² + I)⁻¹ Xᵀy/σ². With X = I₂ (two rows) the mean is y·4/5.
    let y = Tensor::new(&[1.0f64, -2.0], &Device::Cpu).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let w = ctx.sample(
            "w",
            Normal::standard(&[2], DType::F64, &Device::Cpu)?.to_event(1)?,
        )?;
        ctx.observe(
            "y",
            Normal::new(&w, &Tensor::new(0.5f64, &Device::Cpu)?)?.to_event(1)?,
            &y,
        )?;
        Ok(())
    };
    let mut ctx = Ctx::new(1);
    let guide = AutoDelta::new(&mut ctx, &model).unwrap();
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    t.run(
        &mut ctx,
        &mut Svi::new(&model, &guide, TraceElbo::new()),
        2000,
    )
    .unwrap();
    let w: Vec<f64> = guide.value(&ctx, "w").unwrap().to_vec1().unwrap();
    assert!(
        (w[0] - 0.8).abs() < 1e-3 && (w[1] + 1.6).abs() < 1e-3,
        "w = {w:?}"
    );
}

#[test]
fn discrete_latents_are_refused_by_name() {
    let model = |ctx: &mut Ctx| -> Result<()> {
        ctx.sample(
            "k",
            Bernoulli::from_probs(&Tensor::new(0.5f64, &Device::Cpu)?)?,
        )?;
        Ok(())
    };
    let e = AutoDelta::new(&mut Ctx::new(0), &model).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("guide/model mismatch at site `k`: is discrete"),
        "{e}"
    );
}
