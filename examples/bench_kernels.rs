//! The fused CPU kernels against the same maths in plain candle ops, one kernel at a time:
//! a dense layer forward + backward (`ppl::fused::linear` vs `matmul` + `broadcast_add` +
//! `relu`), the Bernoulli log-density from logits forward + backward, and one Adam step.
//!
//! `cargo run --release --example bench_kernels -- [--batch 128] [--inp 784] [--out 400] [--reps 200]`
//!
//! Both sides of each kernel alternate call by call in one process (the machine is shared:
//! compare the ratios, not absolute times across runs). Threads: `ppl::threads::configure`
//! (`RAYON_NUM_THREADS` for products, default all cores; `CANDLE_NUM_THREADS` default 1). Prints one JSON line.

use candle_core::{DType, Device, Tensor, Var};
use clap::Parser;
use ppl::fused::{self, Activation};
use ppl::prelude::*;
use ppl::{Adam, Optimizer};
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 784)]
    inp: usize,
    #[arg(long, default_value_t = 400)]
    out: usize,
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    reps: u64,
}

type Error = Box<dyn std::error::Error>;

/// Median seconds per call of `a` and `b`, alternating call by call.
fn alternate(
    reps: usize,
    mut a: impl FnMut() -> std::result::Result<(), Error>,
    mut b: impl FnMut() -> std::result::Result<(), Error>,
) -> std::result::Result<(f64, f64), Error> {
    for _ in 0..5 {
        a()?;
        b()?;
    }
    let (mut ta, mut tb) = (Vec::with_capacity(reps), Vec::with_capacity(reps));
    for _ in 0..reps {
        let t = Instant::now();
        a()?;
        ta.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        b()?;
        tb.push(t.elapsed().as_secs_f64());
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(|x, y| x.total_cmp(y));
        v[v.len() / 2]
    };
    Ok((med(&mut ta), med(&mut tb)))
}

fn randn(rng: &mut PplRng, shape: &[usize], scale: f64) -> candle_core::Result<Tensor> {
    let n = shape.iter().product();
    let v: Vec<f32> = rng
        .normals(n)
        .into_iter()
        .map(|x| (x * scale) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

fn main() -> std::result::Result<(), Error> {
    let a = Args::parse();
    let policy = ppl::threads::configure(None);
    let mut rng = PplRng::seed_from_u64(0);
    let (m, k, n) = (a.batch, a.inp, a.out);
    let x = randn(&mut rng, &[m, k], 1.0)?;
    let w = Var::from_tensor(&randn(&mut rng, &[n, k], 0.05)?)?;
    let b = Var::from_tensor(&randn(&mut rng, &[n], 0.05)?)?;
    let up = randn(&mut rng, &[m, n], 1.0)?;

    // Dense layer + relu, forward and backward, gradient of W and b only (x is data).
    let layer = |on: bool| -> std::result::Result<(), Error> {
        let _off = (!on).then(fused::disable);
        let y = fused::linear(&x, w.as_tensor(), Some(b.as_tensor()), Activation::Relu)?;
        let g = (y * &up)?.sum_all()?.backward()?;
        std::hint::black_box(g.get(w.as_tensor()).is_some());
        Ok(())
    };
    let (lin_fused, lin_plain) = alternate(a.reps as usize, || layer(true), || layer(false))?;

    // Bernoulli log-density of m×k binary values from logits, forward and backward.
    let logits = Var::from_tensor(&randn(&mut rng, &[m, k], 3.0)?)?;
    let data = randn(&mut rng, &[m, k], 1.0)?
        .ge(0.0)?
        .to_dtype(DType::F32)?;
    let bern = |on: bool| -> std::result::Result<(), Error> {
        let _off = (!on).then(fused::disable);
        let _v = ppl::validation::disable();
        let lp = Bernoulli::from_logits(logits.as_tensor())?.log_prob(&data)?;
        let g = lp.sum_all()?.backward()?;
        std::hint::black_box(g.get(logits.as_tensor()).is_some());
        Ok(())
    };
    let (bern_fused, bern_plain) = alternate(a.reps as usize, || bern(true), || bern(false))?;

    // One Adam step over the layer's parameters (W and b), fused and with tensor ops.
    let vars = vec![("w".to_string(), w.clone()), ("b".to_string(), b.clone())];
    let grads = {
        let y = fused::linear(&x, w.as_tensor(), Some(b.as_tensor()), Activation::Relu)?;
        (y * &up)?.sum_all()?.backward()?
    };
    let (mut fa, mut ta) = (Adam::new(), Adam::new().with_fused(false));
    let (adam_fused, adam_plain) = alternate(
        a.reps as usize,
        || Ok(fa.step(&vars, &grads, 1e-6)?),
        || Ok(ta.step(&vars, &grads, 1e-6)?),
    )?;

    let threads = [policy.matmul_threads, policy.elementwise_threads];
    let ms = |s: f64| s * 1e3;
    println!(
        "{}",
        serde_json::json!({
            "bench": "kernels", "shape": [m, k, n], "threads": threads,
            "linear_relu_fwd_bwd_ms": {"fused": ms(lin_fused), "candle": ms(lin_plain), "speedup": lin_plain / lin_fused},
            "bernoulli_fwd_bwd_ms": {"fused": ms(bern_fused), "candle": ms(bern_plain), "speedup": bern_plain / bern_fused},
            "adam_step_ms": {"fused": ms(adam_fused), "candle": ms(adam_plain), "speedup": adam_plain / adam_fused},
        })
    );
    Ok(())
}
