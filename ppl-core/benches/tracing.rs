//! Overhead of running a small model through the handler stack.
//!
//! The model has five sites (four latents, one observed inside a plate of 16). We time
//! (a) the same distribution calls made directly, without the runtime, (b) the model run
//! under a trace handler, (c) tracing plus `log_joint`. (b) − (a) is the runtime's cost.
//! Run: `cargo bench -p ppl-core --bench tracing`.

use candle_core::{DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use ppl_core::prelude::*;
use std::hint::black_box;

struct Data {
    zero: Tensor,
    one: Tensor,
    x: Tensor,
}

fn data() -> Data {
    let dev = Device::Cpu;
    Data {
        zero: Tensor::new(0f32, &dev).unwrap(),
        one: Tensor::new(1f32, &dev).unwrap(),
        x: Tensor::ones(16, DType::F32, &dev).unwrap(),
    }
}

fn model(ctx: &mut Ctx, d: &Data) -> Result<Tensor> {
    let a = ctx.sample("a", Normal::new(&d.zero, &d.one)?)?;
    let b = ctx.sample("b", Normal::new(&a, &d.one)?)?;
    let c = ctx.sample("c", Normal::new(&b, &d.one)?)?;
    let s = ctx.sample("s", LogNormal::new(&d.zero, &d.one)?)?;
    ctx.plate("data", 16, PlateOpts::default(), |ctx, _| {
        ctx.observe("x", Normal::new(&c, &s)?, &d.x)
    })
}

fn direct(rng: &mut PplRng, d: &Data) -> Result<Tensor> {
    let a = Normal::new(&d.zero, &d.one)?.sample(rng, &[])?;
    let b = Normal::new(&a, &d.one)?.sample(rng, &[])?;
    let c = Normal::new(&b, &d.one)?.sample(rng, &[])?;
    let s = LogNormal::new(&d.zero, &d.one)?.sample(rng, &[])?;
    let lik = Normal::new(&c, &s)?.expand(&[16])?;
    lik.log_prob(&d.x)
}

fn bench(c: &mut Criterion) {
    let _v = ppl_core::validation::disable();
    let d = data();
    let mut g = c.benchmark_group("five_site_model");
    let mut rng = PplRng::seed_from_u64(0);
    g.bench_function("direct_distribution_calls", |b| {
        b.iter(|| black_box(direct(&mut rng, &d).unwrap()))
    });
    let mut ctx = Ctx::new(0);
    g.bench_function("run_without_handlers", |b| {
        b.iter(|| black_box(model(&mut ctx, &d).unwrap()))
    });
    g.bench_function("trace", |b| {
        b.iter(|| black_box(ctx.trace(|ctx| model(ctx, &d)).unwrap()))
    });
    g.bench_function("trace_and_log_joint", |b| {
        b.iter(|| {
            let (_, tr) = ctx.trace(|ctx| model(ctx, &d)).unwrap();
            black_box(tr.log_joint().unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
