//! A loop-heavy model: a local-level (random walk plus noise) state-space model over
//! `T` steps, written with a loop and dynamic site names `("mu", t)` / `("y", t)`, fitted
//! by `Svi` + `TraceElbo` with an `AutoNormal` guide over its `T + 2` scalar latents; the
//! same model and guide in NumPyro (`examples/python/bench_local_level_numpyro.py`).
//!
//! `cargo run --release --example bench_local_level -- [--t 100] [--steps 2000] [--rounds 5]`
//!
//! Model: `σ_level, σ_obs ~ LogNormal(−1, 1)`, `μ_0 ~ Normal(0, 5)`,
//! `μ_t ~ Normal(μ_{t−1}, σ_level)`, `y_t ~ Normal(μ_t, σ_obs)`; data
//! `y_t = 2 sin(t/10) + (((37 t) mod 11)/11 − ½)/2` (the Python side uses the same
//! formula); f32; Adam at lr 0.01, one particle.
//!
//! Reported: `cold_start_s`, the time from the start of `main` to `--steps` steps done
//! (set-up, guide discovery, every step; add the process start, a few ms, measured outside
//! with `/usr/bin/time` in docs/performance.md); then the steady-state rate: `--rounds`
//! rounds of 500 steps, median of the per-round rates, with argument validation on (the
//! default) and off. Prints one JSON line.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::engines::{Svi, TraceElbo};
use ppl::guides::AutoNormal;
use ppl::prelude::*;
use ppl::{Adam, Trainer};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// Time steps of the series.
    #[arg(long, default_value_t = 100)]
    t: usize,
    /// Steps of the cold-start run.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Timed rounds of 500 steps for the steady-state rate.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
}

type Error = Box<dyn std::error::Error>;

fn scalar(v: f32) -> candle_core::Result<Tensor> {
    Tensor::new(v, &Device::Cpu)
}

/// Steady-state steps per second: median over `rounds` rounds of 500 steps.
fn steady(
    ctx: &mut Ctx,
    trainer: &mut Trainer,
    svi: &mut dyn ppl::Engine,
    rounds: usize,
) -> std::result::Result<(f64, Vec<f64>), Error> {
    let mut rates = Vec::new();
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..500 {
            trainer.step(ctx, svi)?;
        }
        rates.push(500.0 / t.elapsed().as_secs_f64());
    }
    let mut s = rates.clone();
    s.sort_by(|a, b| a.total_cmp(b));
    Ok((s[s.len() / 2], rates))
}

fn main() -> std::result::Result<(), Error> {
    let start = Instant::now();
    let a = Args::parse();
    let policy = ppl::threads::configure(Some(1));
    let n = a.t;
    let ys: Vec<Tensor> = (0..n)
        .map(|t| {
            let noise = ((37 * t) % 11) as f32 / 11.0 - 0.5;
            scalar(2.0 * (t as f32 / 10.0).sin() + 0.5 * noise)
        })
        .collect::<candle_core::Result<_>>()?;
    let (zero, one, five, m1) = (scalar(0.0)?, scalar(1.0)?, scalar(5.0)?, scalar(-1.0)?);
    let model = |c: &mut Ctx| -> Result<()> {
        let s_level = c.sample("sigma_level", LogNormal::new(&m1, &one)?)?;
        let s_obs = c.sample("sigma_obs", LogNormal::new(&m1, &one)?)?;
        let mut mu = c.sample(("mu", 0), Normal::new(&zero, &five)?)?;
        for (t, y) in ys.iter().enumerate() {
            if t > 0 {
                mu = c.sample(("mu", t), Normal::new(&mu, &s_level)?)?;
            }
            c.observe(("y", t), Normal::new(&mu, &s_obs)?, y)?;
        }
        Ok(())
    };

    // Cold start: everything from here to `steps` steps done, validation on.
    let mut ctx = Ctx::new(0);
    let guide = AutoNormal::new(&mut ctx, &model)?;
    let mut svi = Svi::new(&model, &guide, TraceElbo::new());
    let mut trainer = Trainer::new(Adam::new(), 0.01)?;
    let mut loss = f64::NAN;
    for _ in 0..a.steps {
        loss = trainer.step(&mut ctx, &mut svi)?.unwrap_or(f64::NAN);
    }
    let cold = start.elapsed().as_secs_f64();
    let sigma_obs = guide
        .median(&ctx, "sigma_obs")?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;

    let (on, on_rates) = steady(&mut ctx, &mut trainer, &mut svi, a.rounds as usize)?;
    let (off, off_rates) = {
        let _v = ppl::validation::disable();
        steady(&mut ctx, &mut trainer, &mut svi, a.rounds as usize)?
    };
    println!(
        "{}",
        serde_json::json!({
            "bench": "local_level", "lib": "ppl", "t": n, "latents": n + 2,
            "threads": [policy.matmul_threads, policy.elementwise_threads],
            "cold_start_s": cold, "cold_steps": a.steps,
            "steps_per_s_validation_on": on, "rates_on": on_rates,
            "steps_per_s_validation_off": off, "rates_off": off_rates,
            "final_loss": loss, "sigma_obs_median": sigma_obs,
        })
    );
    Ok(())
}
