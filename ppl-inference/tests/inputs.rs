//! The input channel end to end: an amortised autoguide runs on new data and on data
//! simulated by the model (the sleep phase of wake-sleep) without being rebuilt.

use candle_core::{Device, Tensor};
use ppl_core::handlers::Condition;
use ppl_core::prelude::*;
use ppl_inference::guides::AutoAmortized;
use ppl_inference::Particles;

fn s(v: f64) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

/// z_i ~ N(0, 1), x_i ~ N(z_i, 0.5²) in plate `data`; the data come through an input site.
fn model(ctx: &mut Ctx, data: &Tensor) -> Result<()> {
    let x = ctx.input("x", data)?;
    let n = x.dim(0)?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.observe("x_obs", Normal::new(&z, &s(0.5))?, &x)
    })?;
    Ok(())
}

/// `Σ_i log N(z_i; μ_i, σ_i)` with the encoder's `(μ, softplus(raw) + 1e-5)` for rows `x`.
fn log_q(guide: &AutoAmortized, x: &Tensor, z: &Tensor) -> f64 {
    let out = guide.encode(&x.unsqueeze(1).unwrap()).unwrap();
    let loc = out.narrow(1, 0, 1).unwrap().squeeze(1).unwrap();
    let raw = out.narrow(1, 1, 1).unwrap().squeeze(1).unwrap();
    let scale = (ppl_core::special::softplus(&raw).unwrap() + 1e-5).unwrap();
    Normal::new(&loc, &scale)
        .unwrap()
        .log_prob(z)
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn amortised_guide_runs_on_new_and_simulated_data_without_rebuilding() {
    let data = Tensor::new(&[0.3f64, -1.2, 0.8, 2.0, -0.1, 0.5], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(3).with_dtype(candle_core::DType::F64);
    let m = |c: &mut Ctx| model(c, &data);
    let guide = AutoAmortized::new(&mut ctx, &m, "data", &[8]).unwrap();

    // On its own data: the input site records the data and z has one row per point.
    let ((), g) = ctx.trace(|c| guide.run(c)).unwrap();
    assert_eq!(g.site("z").unwrap().value.dims(), &[6]);
    assert_eq!(g.inputs().count(), 1);

    // New data with another number of rows, through the model's own trace on them.
    let new = Tensor::new(&[1.5f64, -0.7, 0.0], &Device::Cpu).unwrap();
    let ((), on_new) = ctx.trace(|c| model(c, &new)).unwrap();
    let choices = guide.input_choices(&on_new).unwrap();
    let ((), g) = ctx
        .trace(|c| {
            c.handle(Condition::new(choices), |c| guide.run(c))
                .map(|(r, _)| r)
        })
        .unwrap();
    let z = g.site("z").unwrap().value.clone();
    assert_eq!(z.dims(), &[3]);
    let lq = g.site("z").unwrap().log_prob().unwrap().sum_all().unwrap();
    assert!((lq.to_scalar::<f64>().unwrap() - log_q(&guide, &new, &z)).abs() < 1e-10);

    // Sleep: (z, x) ~ p from the model, then q(z | x) scored at the simulated pair.
    let (mt, gt) = Particles::single()
        .model_then_guide(&mut ctx, &m, &guide, |t| guide.input_choices(t))
        .unwrap();
    let x_sim = mt.site("x_obs").unwrap();
    assert!(x_sim.is_latent(), "the observed site was sampled");
    let x_sim = x_sim.value.clone();
    let z_sim = mt.site("z").unwrap().value.clone();
    assert_ne!(
        x_sim.to_vec1::<f64>().unwrap(),
        data.to_vec1::<f64>().unwrap()
    );
    let zg = gt.site("z").unwrap();
    assert_eq!(
        zg.value.to_vec1::<f64>().unwrap(),
        z_sim.to_vec1::<f64>().unwrap(),
        "the guide's latents are the model's simulated ones"
    );
    let lq = zg
        .log_prob()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(
        (lq - log_q(&guide, &x_sim, &z_sim)).abs() < 1e-10,
        "scored at the simulated x"
    );
    // ... and not at the real data
    assert!((lq - log_q(&guide, &data, &z_sim)).abs() > 1e-3);
}

#[test]
fn sleep_traces_vectorise_over_particles() {
    // Under K particles, each particle simulates its own data set: the simulated x has a
    // particle axis and differs across particles; the guide sees each particle's own x.
    let data = Tensor::new(&[0.3f64, -1.2, 0.8, 2.0], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(5);
    let m = |c: &mut Ctx| model(c, &data);
    let guide = |ctx: &mut Ctx| -> Result<()> {
        let x = ctx.input("x", &data)?;
        // the exact posterior: N(0.8 x, 0.2)
        ctx.plate("data", 4, PlateOpts::default(), |ctx, _| {
            ctx.sample("z", Normal::new(&(&x * 0.8)?, &s(0.2f64.sqrt()))?)?;
            Ok(())
        })
    };
    let p = Particles::new(16, 1, "test").unwrap();
    let (mt, gt) = p
        .model_then_guide(&mut ctx, &m, &guide, |t| {
            Ok(ChoiceMap::new().with("x", t.site("x_obs")?.value.clone()))
        })
        .unwrap();
    let x_sim = mt.site("x_obs").unwrap().value.clone();
    assert_eq!(x_sim.dims(), &[16, 4]);
    let rows: Vec<Vec<f64>> = x_sim.to_vec2().unwrap();
    assert_ne!(rows[0], rows[1]);
    // log q(z | x) per particle equals the closed form at the simulated pairs
    let z: Vec<Vec<f64>> = mt.site("z").unwrap().value.to_vec2().unwrap();
    let lq: Vec<Vec<f64>> = gt.site("z").unwrap().log_prob().unwrap().to_vec2().unwrap();
    for k in [0, 7, 15] {
        for i in 0..4 {
            let (mu, var) = (0.8 * rows[k][i], 0.2);
            let exact =
                -0.5 * (z[k][i] - mu).powi(2) / var - 0.5 * (2.0 * std::f64::consts::PI * var).ln();
            assert!((lq[k][i] - exact).abs() < 1e-10);
        }
    }
}
