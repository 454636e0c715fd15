//! Training steps per second of the conditional-horn energy-based model: the library's
//! `Ebm` engine against `../shared/bench/bench_ebm_torch.py` (PyTorch eager), same maths.
//!
//! `cargo run --release --example bench_ebm -- [--batch 1000] [--inner 50] [--steps N] [--repeats R]`
//!
//! Data: 8192 horn points (`x ~ U(0,1)`, `y = ρ(x) ⊙ (cos θ, sin θ) + N(0, 0.05²)`), from the
//! library's seeded generator. Energy `E = ‖y − f(x) ⊙ (cos z, sin z)‖²` with `f` an MLP
//! 1-8-8-2 (ReLU), f32. One training step on a minibatch of `--batch` points:
//! 1. inference: `z₀` = the best of the 48-point grid `kπ/24`, then `--inner` steps of
//!    gradient descent on `z` at learning rate 0.05 (as the script);
//! 2. learning: loss = mean `E(x, y, ž)`, backward to `f`'s parameters, Adam (lr 1e-2).
//!
//! Two runs of the same work:
//! - `ebm`: the engine as a user runs it (`Ebm` + `Inference::grid(..).with_refine(
//!   Refine::gradient_descent(0.05, inner))` + `Trainer` with `Adam`); its steps/s is the
//!   headline number.
//! - `phased`: the same three phases called one by one (`grid_search`, `refine`, then the
//!   energy at `ž` as the loss of a `Trainer` step), each timed, for the time split the
//!   script prints (`grid`, `inner`, `learn`).
//!
//! Differences from the script, all part of what is measured: the library reruns the whole
//! model (the MLP on the batch included) at each refinement step, where the script computes
//! `f(x)` once per step; it keeps each point's best iterate (a comparison and a select per
//! step); the minibatch is a random subsample (an index select) instead of a slice.
//!
//! Threads: `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` (default here: 1). Prints one JSON
//! line, in the script's format (`steps_per_s_median`, `steps_per_s`, `ms_split_median`).

use candle_core::DType;
use clap::Parser;
use ppl::engines::{Data, Ebm, EnergyModel, Grid, Inference, Loss, Refine, Starts, Temperature};
use ppl::prelude::*;
use ppl::{Adam, Engine, StepOutput, Trainer};
use std::f64::consts::PI;
use std::time::{Duration, Instant};

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
struct Args {
    /// Points per minibatch.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Gradient-descent steps on z after the grid.
    #[arg(long, default_value_t = 50)]
    inner: usize,
    /// Steps per repeat.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Repeats (the median rate is reported).
    #[arg(long, default_value_t = 5)]
    repeats: usize,
}

type Error = Box<dyn std::error::Error>;

#[path = "common/horn.rs"]
mod horn;
use horn::{horn, Predictor};

/// The engine's work in three timed phases.
struct Phased<'a, M> {
    em: EnergyModel<'a, M>,
    grid: Grid,
    refine: Refine,
    t_grid: Duration,
    t_inner: Duration,
}

impl<M: Model> Engine for Phased<'_, M> {
    fn name(&self) -> &str {
        "phased"
    }

    fn init(&mut self, ctx: &mut Ctx) -> Result<()> {
        self.em.init(ctx)
    }

    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let t0 = Instant::now();
        let g = self
            .em
            .grid_search(ctx, &self.grid, Temperature::Zero, &Data::model())?;
        let t1 = Instant::now();
        let data = Data {
            values: Default::default(),
            subsamples: g.subsamples.clone(),
        };
        let r = self
            .em
            .refine(ctx, &Starts::from_choices(&g.z)?, &self.refine, &data)?;
        let t2 = Instant::now();
        self.t_grid += t1 - t0;
        self.t_inner += t2 - t1;
        let loss = self.em.energy(ctx, &r.z, &data)?.mean_all()?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(StepOutput::new(loss, value))
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

fn main() -> std::result::Result<(), Error> {
    let a = Args::parse();
    threads::default_threads(1);
    let threads = std::env::var("CANDLE_NUM_THREADS").unwrap_or_default();
    let _v = ppl::validation::disable();
    let grid = || Grid::periodic("z", 0.0, 2.0 * PI, 48);
    let refine = Refine::gradient_descent(0.05, a.inner)?;

    // The engine as a user runs it.
    let mut ctx = Ctx::new(0);
    let (x, y) = horn(&mut ctx, 8192)?;
    let f = Predictor::new(&mut ctx)?;
    let model = |c: &mut Ctx| f.model(c, &x, &y, Some(a.batch));
    let em = EnergyModel::new(&model, "data").periodic("z", 0.0, 2.0 * PI)?;
    let mut ebm = Ebm::new(
        em,
        Inference::grid(grid()?).with_refine(refine),
        Loss::Energy,
    );
    let mut trainer = Trainer::new(Adam::new(), 1e-2)?;
    trainer.run(&mut ctx, &mut ebm, 3)?; // warm-up (and init)
    let mut rates = Vec::new();
    for _ in 0..a.repeats {
        let t = Instant::now();
        for _ in 0..a.steps {
            trainer.step(&mut ctx, &mut ebm)?;
        }
        rates.push(a.steps as f64 / t.elapsed().as_secs_f64());
    }

    // The same work phase by phase, for the split.
    let mut ctx2 = Ctx::new(0);
    let (x2, y2) = horn(&mut ctx2, 8192)?;
    let f2 = Predictor::new(&mut ctx2)?;
    let model2 = |c: &mut Ctx| f2.model(c, &x2, &y2, Some(a.batch));
    let mut phased = Phased {
        em: EnergyModel::new(&model2, "data").periodic("z", 0.0, 2.0 * PI)?,
        grid: grid()?,
        refine,
        t_grid: Duration::ZERO,
        t_inner: Duration::ZERO,
    };
    let mut trainer2 = Trainer::new(Adam::new(), 1e-2)?;
    trainer2.run(&mut ctx2, &mut phased, 3)?;
    let (mut split_grid, mut split_inner, mut split_learn, mut rates_phased) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..a.repeats {
        phased.t_grid = Duration::ZERO;
        phased.t_inner = Duration::ZERO;
        let t = Instant::now();
        for _ in 0..a.steps {
            trainer2.step(&mut ctx2, &mut phased)?;
        }
        let total = t.elapsed().as_secs_f64();
        let (g, i) = (phased.t_grid.as_secs_f64(), phased.t_inner.as_secs_f64());
        let n = a.steps as f64;
        split_grid.push(1000.0 * g / n);
        split_inner.push(1000.0 * i / n);
        split_learn.push(1000.0 * (total - g - i) / n);
        rates_phased.push(n / total);
    }
    let json = serde_json::json!({
        "bench": "ebm_horn_step",
        "lib": "ppl",
        "threads": threads,
        "batch": a.batch,
        "inner_steps": a.inner,
        "steps_per_s_median": median(&rates),
        "steps_per_s": rates,
        "phased_steps_per_s_median": median(&rates_phased),
        "ms_split_median": {
            "grid": median(&split_grid),
            "inner": median(&split_inner),
            "learn": median(&split_learn),
        },
    });
    println!("{json}");
    Ok(())
}
