//! Steps per second of one amortised-learning step ([`KrrWakeSleep`] with the exact
//! kernel) against `../shared/bench/bench_alws_torch.py` (the same step in PyTorch).
//!
//!   `cargo run --release --example bench_alws -- N D H Z WAKE_BATCH STEPS REPEATS`
//!
//! The model is the baseline's: `z ~ N(0, I_Z)`, `x | z ~ N(f(z), σ² I_D)` with `f` an MLP
//! Z-H(tanh)-D and a learnt `log σ` (f64). The data are 8192 draws from the same model at
//! other parameters. One step: `N` sleep samples, the Gaussian kernel on them with the
//! median-heuristic bandwidth and `λ = 1e-3` (no tuning, no exponential-family split: the
//! same work as the baseline), the Cholesky solve for `WAKE_BATCH` wake points, the
//! replay of `log p_θ(x_n, z_n)` with gradients, backward and an Adam step.
//!
//! Timing: 3 warm-up steps, then `REPEATS` runs of `STEPS` steps; steps/s of each run and
//! their median. The split is measured after, over `STEPS` calls each of the public
//! pieces: `sleep` ([`KrrWakeSleep::sleep`]), `kernel_solve` (median bandwidth,
//! [`KernelRidge::fit`] and the weights for the wake points), `step` (a whole
//! [`Trainer::step`]); `rest = step − sleep − kernel_solve` is the replay with gradients,
//! backward and Adam. All in milliseconds, medians.
//!
//! Threads: set `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` (the comparison in
//! `docs/performance.md` uses 1, and `BENCH_THREADS=1` for the baseline). Prints one JSON line.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};
use ppl::engines::{median_bandwidth, KernelApprox, KernelRidge, KrrOptions, KrrWakeSleep};
use ppl::prelude::*;
use std::time::Instant;

const DEV: Device = Device::Cpu;

struct Gen {
    data: Tensor,
    l1: Linear,
    l2: Linear,
    z: usize,
}

impl Gen {
    fn new(ctx: &mut Ctx, data: Tensor, d: usize, h: usize, z: usize) -> Result<Self> {
        Ok(Gen {
            data,
            l1: ctx.module("dec/l1", |vb| candle_nn::linear(z, h, vb))?,
            l2: ctx.module("dec/l2", |vb| candle_nn::linear(h, d, vb))?,
            z,
        })
    }
}

impl Model for Gen {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let x = ctx.input("x", &self.data)?;
        let log_sigma = ctx.param(
            "log_sigma",
            || Ok(Tensor::new(-1.0f64, &DEV)?),
            Constraint::Real,
        )?;
        let n = x.dim(0)?;
        ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
            let prior = Normal::standard(&[n, self.z], DType::F64, &DEV)?;
            let z = ctx.sample("z", prior.to_event(1)?)?;
            let mean = self.l2.forward(&self.l1.forward(&z)?.tanh()?)?;
            let sd = log_sigma.exp()?.broadcast_as(mean.shape())?.contiguous()?;
            ctx.observe("obs", Normal::new(&mean, &sd)?.to_event(1)?, &x)?;
            Ok(())
        })
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn main() -> Result<()> {
    let a: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| PplError::config("bench_alws", format!("arguments: {e}")))?;
    if a.len() != 7 || a.contains(&0) {
        return Err(PplError::config(
            "bench_alws",
            "usage: bench_alws N D H Z WAKE_BATCH STEPS REPEATS (all positive integers)",
        ));
    }
    let (n, d, h, z, m, steps, repeats) = (a[0], a[1], a[2], a[3], a[4], a[5], a[6]);
    let lambda = 1e-3;
    let opts = || {
        KrrOptions::default()
            .sleep_samples(n)
            .wake_batch(m)
            .tuning(None)
            .lambda(lambda)
            .exp_family_split(false)
    };

    // Data: 8192 draws from the model at other (seed 1) parameters.
    let placeholder = Tensor::zeros((8192, d), DType::F64, &DEV)?;
    let mut truth_ctx = Ctx::new(1).with_dtype(DType::F64);
    let truth = Gen::new(&mut truth_ctx, placeholder, d, h, z)?;
    let data = KrrWakeSleep::new(&truth, "data", opts())
        .sleep(&mut truth_ctx, 8192)?
        .value("obs")?;

    let mut ctx = Ctx::new(0).with_dtype(DType::F64);
    let model = Gen::new(&mut ctx, data.clone(), d, h, z)?;
    let mut engine = KrrWakeSleep::new(&model, "data", opts());
    engine.init(&mut ctx)?;
    let mut trainer = Trainer::new(Adam::new(), 1e-3)?;
    for _ in 0..3 {
        trainer.step(&mut ctx, &mut engine)?;
    }
    let mut rates = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = Instant::now();
        for _ in 0..steps {
            trainer.step(&mut ctx, &mut engine)?;
        }
        rates.push(steps as f64 / t.elapsed().as_secs_f64());
    }

    // The split, from the public pieces.
    let (mut sleep_ms, mut kernel_ms, mut step_ms) = (Vec::new(), Vec::new(), Vec::new());
    let wake = data.narrow(0, 0, m)?;
    let ones = Tensor::full(1.0 / m as f64, (m, 1), &DEV)?;
    let mut rng = PplRng::seed_from_u64(2);
    for _ in 0..steps {
        let t = Instant::now();
        let xs = engine.sleep(&mut ctx, n)?.value("obs")?;
        sleep_ms.push(1e3 * t.elapsed().as_secs_f64());
        let t = Instant::now();
        let bw = median_bandwidth(&xs)?;
        let ridge = KernelRidge::fit(&xs, bw, lambda, &KernelApprox::Exact, &mut rng)?;
        let w = ridge.weights_times(&wake, &ones)?;
        kernel_ms.push(1e3 * t.elapsed().as_secs_f64());
        std::hint::black_box(w);
        let t = Instant::now();
        trainer.step(&mut ctx, &mut engine)?;
        step_ms.push(1e3 * t.elapsed().as_secs_f64());
    }
    let (s, k, st) = (median(&sleep_ms), median(&kernel_ms), median(&step_ms));
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    let json = serde_json::json!({
        "bench": "alws_step",
        "lib": "ppl",
        "threads": threads,
        "n_sleep": n, "d": d, "h": h, "z": z, "wake_batch": m, "prec": "f64",
        "steps_per_s_median": median(&rates),
        "steps_per_s": rates,
        "ms_split_median": {"sleep": s, "kernel_solve": k, "step": st, "rest": (st - s - k).max(0.0)},
    });
    println!("{json}");
    Ok(())
}
