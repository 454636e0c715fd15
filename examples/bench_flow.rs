//! Steps per second of one Real NVP maximum-likelihood training step, against the same
//! flow and step in PyTorch (`examples/python/bench_flow_torch.py`).
//!
//! `cargo run --release --example bench_flow -- [--dim 8] [--couplings 6] [--hidden 64,64]
//! [--batch 256] [--steps 200] [--repeats 5]`
//!
//! The flow: [`RealNvp::build`] with `--couplings` affine couplings on `--dim` coordinates,
//! checkerboard masks that alternate (even coordinates kept, then odd ones), conditioners
//! `⌈D/2⌉ → hidden… → 2⌊D/2⌋` with ReLU, log-scales through the soft clamp `3 tanh(s/3)`,
//! no ActNorm and nothing between couplings ([`Mixing::None`]); hidden weights
//! Kaiming-normal, biases uniform ±1/√fan-in, output layer zero. Base: a standard normal;
//! f32. One step: `loss = −mean log p(x)` of a batch (consecutive slices of 8192 fixed
//! points of a correlated Gaussian), backward, the library's `Adam` (lr 1e-3).
//!
//! Timing: 20 warm-up steps, then `--repeats` rounds of `--steps` steps; the median of the
//! per-round rates is reported, with the median time of the forward pass (`log_prob` and
//! the loss), the backward pass and the optimiser step measured in a separate pass
//! afterwards. Threads come from `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` like any
//! candle program. Prints one JSON line.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::flows::{Activation, FlowDistribution, Mixing, RealNvp, RealNvpOptions};
use ppl::prelude::*;
use ppl::{Adam, Optimizer, ParamStore};
use std::sync::Arc;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(about = "Real NVP training step: steps per second")]
struct Args {
    /// Event size.
    #[arg(long, default_value_t = 8)]
    dim: usize,
    /// Affine coupling layers.
    #[arg(long, default_value_t = 6)]
    couplings: usize,
    /// Hidden widths of each conditioner (comma-separated).
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// Points per step.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Steps per timed round.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Timed rounds.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

type Error = Box<dyn std::error::Error>;

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

fn main() -> std::result::Result<(), Error> {
    let a = Args::parse();
    if a.steps == 0 || a.repeats == 0 || a.batch == 0 {
        return Err("steps, repeats and batch must be positive".into());
    }
    let _v = ppl::validation::disable();
    let dev = Device::Cpu;

    // Fixed data: x = L e with L lower-triangular (1 on the diagonal, 0.5 below), 8192 rows.
    let n = 8192.max(a.batch);
    let mut rng = PplRng::seed_from_u64(0);
    let e = rng.normals(n * a.dim);
    let mut xs = Vec::with_capacity(n * a.dim);
    for row in e.chunks(a.dim) {
        for i in 0..a.dim {
            let v = row[i] + 0.5 * row[..i].iter().sum::<f64>();
            xs.push(v as f32);
        }
    }
    let data = Tensor::from_vec(xs, (n, a.dim), &dev)?;
    let nb = n / a.batch;
    let batches: Vec<Tensor> = (0..nb)
        .map(|i| data.narrow(0, i * a.batch, a.batch))
        .collect::<candle_core::Result<_>>()?;

    let store = ParamStore::new();
    let opts = RealNvpOptions {
        activation: Activation::Relu,
        clamp: 3.0,
        actnorm: false,
        mixing: Mixing::None,
    };
    let flow = RealNvp::build(
        store.var_builder(DType::F32, &dev, 1),
        a.dim,
        0,
        a.couplings,
        &a.hidden,
        &opts,
    )?;
    let dist = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F32, &dev)?;
    let vars = store.vars();
    let n_params: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
    let mut adam = Adam::new();
    let mut i = 0usize;
    let mut last_loss = f64::NAN;
    // One step; with `split`, the time of (forward, backward, optimiser).
    let mut step = |split: bool| -> std::result::Result<[f64; 3], Error> {
        let t0 = Instant::now();
        let loss = dist.log_prob(&batches[i % nb])?.mean_all()?.neg()?;
        if split {
            last_loss = loss.to_scalar::<f32>()? as f64;
        }
        let t1 = Instant::now();
        let grads = loss.backward()?;
        let t2 = Instant::now();
        adam.step(&vars, &grads, 1e-3)?;
        let t3 = Instant::now();
        i += 1;
        Ok([
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
        ])
    };

    let first_loss = {
        let l = dist.log_prob(&batches[0])?.mean_all()?.neg()?;
        l.to_scalar::<f32>()? as f64
    };
    for _ in 0..20 {
        step(false)?;
    }
    let mut rates = Vec::with_capacity(a.repeats);
    for _ in 0..a.repeats {
        let t = Instant::now();
        for _ in 0..a.steps {
            step(false)?;
        }
        rates.push(a.steps as f64 / t.elapsed().as_secs_f64());
    }
    let (mut fwd, mut bwd, mut opt) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.steps {
        let [f, b, o] = step(true)?;
        fwd.push(f * 1e6);
        bwd.push(b * 1e6);
        opt.push(o * 1e6);
    }
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let med = median(&rates);
    println!(
        "{}",
        serde_json::json!({
            "bench": "flow",
            "lib": "ppl",
            "dim": a.dim,
            "couplings": a.couplings,
            "hidden": a.hidden,
            "batch": a.batch,
            "params": n_params,
            "threads": threads,
            "steps_per_s_median": med,
            "steps_per_s": rates,
            "ms_per_step": 1000.0 / med,
            "fwd_us": median(&fwd),
            "bwd_us": median(&bwd),
            "opt_us": median(&opt),
            "first_loss": first_loss,
            "last_loss": last_loss,
        })
    );
    Ok(())
}
