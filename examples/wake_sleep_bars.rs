//! Classic wake-sleep and reweighted wake-sleep on a sigmoid belief net over 4×4 "bars".
//!
//! **Data** (generated here with the library's seeded RNG; no data ship): each image
//! picks an orientation, horizontal or vertical, with probability ½; each of the 4 bars
//! of that orientation (rows or columns) is on independently with probability ¼; an image
//! with no bar on is drawn again. So every image is a non-empty union of full rows or a
//! non-empty union of full columns: 29 distinct images. An image is **valid** when it is
//! such a union (binary pixels, at least one on, and every row uniform or every column
//! uniform).
//!
//! **Model** (two-layer sigmoid belief net, parameters under `gen/`): top units
//! `h2 ∈ {0,1}²` with `h2_j ~ Bernoulli(σ(b_j))`; bar units `h1 ∈ {0,1}⁸` with
//! `h1 | h2 ~ Bernoulli(σ(V h2 + c))`; pixels `x ∈ {0,1}¹⁶` with
//! `x | h1 ~ Bernoulli(σ(W h1 + d))`, independently per image in plate `data`
//! (minibatches of `--batch`).
//!
//! **Recognition network** (guide, parameters under `rec/`): an MLP `x → tanh(32) →
//! logits of h1`, then `h2 | h1` by a linear layer; it reads the images through the input
//! site `rec/x`, so the sleep phase can hand it dreamed images.
//!
//! Both engines train from the same initial parameters and seed for the same number of
//! steps, with separate Adam groups for `gen/` (θ) and `rec/` (φ): [`WakeSleep`] (one wake
//! sample, one dream per step) and [`ReweightedWakeSleep`] with `--particles` per image,
//! per-image weights and wake-φ. Afterwards each model dreams `--samples` images: the
//! share of valid ones is `valid_fraction`; a grid of the first 64 is written to
//! `<out>/samples_<engine>.png` and the loss curves to `<out>/loss_<engine>.png`. Both
//! are also scored by the same yardstick, a per-image IWAE estimate of `log p(x)` with
//! 100 particles on 200 fresh images (`test_ll`), against the best possible value, minus
//! the data distribution's entropy (`data_entropy`, 3.07 nats).
//!
//! Ends with one JSON line. Run: `cargo run --release --example wake_sleep_bars`
//! (`--quick` for a short run).

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};
use clap::Parser;
use ppl::engines::{ReweightedWakeSleep, WakeSleep};
use ppl::handlers::Uncondition;
use ppl::observers::{LossPlot, Progress};
use ppl::plots::image_grid;
use ppl::prelude::*;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(about = "Wake-sleep and reweighted wake-sleep on 4x4 bars")]
struct Args {
    /// Training steps per engine.
    #[arg(long, default_value_t = 10000)]
    steps: u64,
    /// A short run for CI (600 steps, 200 dreamed images).
    #[arg(long)]
    quick: bool,
    /// Training images.
    #[arg(long, default_value_t = 1000)]
    n: usize,
    /// Images per step.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// RWS particles per image.
    #[arg(long, default_value_t = 10)]
    particles: usize,
    /// Adam learning rate of both groups.
    #[arg(long, default_value_t = 1e-2)]
    lr: f64,
    /// Dreamed images for `valid_fraction`.
    #[arg(long, default_value_t = 2000)]
    samples: usize,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output folder.
    #[arg(long, default_value = "target/wake_sleep_bars")]
    out: PathBuf,
}

const SIDE: usize = 4;
const PIXELS: usize = SIDE * SIDE;
const TOP: usize = 2;
const BARS: usize = 8;
const HIDDEN: usize = 32;

/// `n` bars images `[n, 16]` (see the module docs), drawn with `seed`.
fn bars(n: usize, seed: u64) -> Result<Tensor> {
    let mut rng = PplRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n * PIXELS);
    while out.len() < n * PIXELS {
        let u = rng.uniforms(1 + SIDE);
        let on: Vec<bool> = u[1..].iter().map(|v| *v < 0.25).collect();
        if !on.iter().any(|b| *b) {
            continue;
        }
        let horizontal = u[0] < 0.5;
        for r in 0..SIDE {
            for c in 0..SIDE {
                let bar = if horizontal { r } else { c };
                out.push(if on[bar] { 1.0f32 } else { 0.0 });
            }
        }
    }
    Ok(Tensor::from_vec(out, (n, PIXELS), &Device::Cpu)?)
}

/// The entropy (nats) of the bars distribution, by enumerating the 29 images: `−H` is the
/// best expected log-likelihood per image any model can reach.
fn data_entropy() -> f64 {
    let z = 1.0 - 0.75f64.powi(SIDE as i32);
    let p = |k: i32| 0.25f64.powi(k) * 0.75f64.powi(SIDE as i32 - k) / z;
    // Per orientation, C(4, k) images with k bars (k = 1..3), each with prob ½ p(k); the
    // full image (k = 4) comes from both orientations.
    let mut h = 0.0;
    for (k, count) in [(1, 4.0), (2, 6.0), (3, 4.0)] {
        let q = 0.5 * p(k);
        h -= 2.0 * count * q * q.ln();
    }
    h - p(4) * p(4).ln()
}

/// Whether a 16-pixel image is a non-empty union of full rows or of full columns.
fn valid(img: &[f32]) -> bool {
    let px = |r: usize, c: usize| img[r * SIDE + c];
    let binary = img.iter().all(|v| *v == 0.0 || *v == 1.0);
    let rows = (0..SIDE).all(|r| (0..SIDE).all(|c| px(r, c) == px(r, 0)));
    let cols = (0..SIDE).all(|c| (0..SIDE).all(|r| px(r, c) == px(0, c)));
    binary && img.contains(&1.0) && (rows || cols)
}

/// The sigmoid belief net (see the module docs).
struct Sbn {
    x: Tensor,
    batch: Option<usize>,
    top: Tensor,
    l2: Linear,
    l1: Linear,
}

impl Sbn {
    fn new(ctx: &mut Ctx, x: Tensor, batch: Option<usize>) -> Result<Self> {
        let top = ctx.param(
            "gen/top",
            || Ok(Tensor::zeros(TOP, DType::F32, &Device::Cpu)?),
            Constraint::Real,
        )?;
        let l2 = ctx.module("gen/l2", |vb| candle_nn::linear(TOP, BARS, vb))?;
        let l1 = ctx.module("gen/l1", |vb| candle_nn::linear(BARS, PIXELS, vb))?;
        Ok(Sbn {
            x,
            batch,
            top,
            l2,
            l1,
        })
    }
}

impl Model for Sbn {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let n = self.x.dim(0)?;
        let opts = PlateOpts {
            subsample_size: self.batch.filter(|b| *b < n),
            ..Default::default()
        };
        ctx.plate("data", n, opts, |ctx, g| {
            let x = match g.frame().subsample_size < n {
                true => self.x.index_select(&g.indices()?, 0)?,
                false => self.x.clone(),
            };
            let h2 = ctx.sample("h2", Bernoulli::from_logits(&self.top)?.to_event(1)?)?;
            let h1 = ctx.sample(
                "h1",
                Bernoulli::from_logits(&self.l2.forward(&h2)?)?.to_event(1)?,
            )?;
            let px = Bernoulli::from_logits(&self.l1.forward(&h1)?)?.to_event(1)?;
            ctx.observe("x", px, &x)?;
            Ok(())
        })
    }
}

/// The recognition network (see the module docs).
struct Recognition {
    x: Tensor,
    batch: Option<usize>,
    hidden: Linear,
    bars: Linear,
    top: Linear,
}

impl Recognition {
    fn new(ctx: &mut Ctx, x: Tensor, batch: Option<usize>) -> Result<Self> {
        Ok(Recognition {
            x,
            batch,
            hidden: ctx.module("rec/hidden", |vb| candle_nn::linear(PIXELS, HIDDEN, vb))?,
            bars: ctx.module("rec/bars", |vb| candle_nn::linear(HIDDEN, BARS, vb))?,
            top: ctx.module("rec/top", |vb| candle_nn::linear(BARS, TOP, vb))?,
        })
    }

    /// `|t| {rec/x: the dreamed images}`: the sleep phase's guide inputs.
    fn inputs(t: &Trace) -> Result<ChoiceMap> {
        Ok(ChoiceMap::new().with("rec/x", t.value("x")?))
    }
}

impl Model for Recognition {
    type Output = ();
    fn run(&self, ctx: &mut Ctx) -> Result<()> {
        let xs = ctx.input("rec/x", &self.x)?;
        // The data (subsampled like the model's plate) or dreamed images [.., m, 16].
        let own = xs.dims() == self.x.dims();
        let n = if own {
            xs.dim(0)?
        } else {
            xs.dim(xs.rank() - 2)?
        };
        let opts = PlateOpts {
            subsample_size: self.batch.filter(|b| own && *b < n),
            ..Default::default()
        };
        ctx.plate("data", n, opts, |ctx, g| {
            let x = match g.frame().subsample_size < n {
                true => xs.index_select(&g.indices()?, 0)?,
                false => xs.clone(),
            };
            let h = self.hidden.forward(&x)?.tanh()?;
            let q1 = Bernoulli::from_logits(&self.bars.forward(&h)?)?.to_event(1)?;
            let h1 = ctx.sample("h1", q1)?;
            let q2 = Bernoulli::from_logits(&self.top.forward(&h1)?)?.to_event(1)?;
            ctx.sample("h2", q2)?;
            Ok(())
        })
    }
}

/// Dreams `count` images from the model, `[count, 16]`.
fn dream(ctx: &mut Ctx, model: &Sbn, count: usize) -> Result<Tensor> {
    let mut images = Vec::new();
    let mut have = 0;
    while have < count {
        let ((), t) = ctx.trace(|ctx| {
            ctx.handle(Uncondition::new(), |ctx| model.run(ctx))
                .map(|(r, _)| r)
        })?;
        let x = t.value("x")?;
        have += x.dim(0)?;
        images.push(x);
    }
    Ok(Tensor::cat(&images, 0)?.narrow(0, 0, count)?)
}

struct Outcome {
    valid_fraction: f64,
    final_loss: f64,
    test_ll: f64,
    seconds: f64,
}

fn train(args: &Args, which: &str, data: &Tensor, test: &Tensor, steps: u64) -> Result<Outcome> {
    // The same seed: the same initial parameters and the same random stream for both.
    let mut ctx = Ctx::new(args.seed);
    let model = Sbn::new(&mut ctx, data.clone(), Some(args.batch))?;
    let guide = Recognition::new(&mut ctx, data.clone(), Some(args.batch))?;
    let groups = vec![
        ParamGroup::new("gen", Adam::new(), args.lr)?.with_prefixes(["gen/"])?,
        ParamGroup::new("rec", Adam::new(), args.lr)?.with_prefixes(["rec/"])?,
    ];
    let mut trainer = Trainer::with_groups(groups)?
        .observe(LossPlot::new(args.out.join(format!("loss_{which}.png"))));
    if !args.quiet {
        trainer = trainer.observe(Progress::new(steps));
    }
    let start = std::time::Instant::now();
    let report = match which {
        "wake_sleep" => {
            let mut e = WakeSleep::new(&model, &guide, Recognition::inputs);
            trainer.run(&mut ctx, &mut e, steps)?
        }
        _ => {
            let mut e =
                ReweightedWakeSleep::new(&model, &guide, args.particles)?.with_local_plate("data");
            trainer.run(&mut ctx, &mut e, steps)?
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let tail = report.losses.len().clamp(1, 100);
    // Each step's value estimates a full-data quantity (−ELBO or −IWAE bound, scaled N/n).
    let final_loss =
        report.losses.iter().rev().take(tail).sum::<f64>() / tail as f64 / args.n as f64;

    let samples = dream(&mut ctx, &model, args.samples)?;
    let rows: Vec<Vec<f32>> = samples.to_vec2()?;
    let valid_fraction = rows.iter().filter(|r| valid(r)).count() as f64 / rows.len() as f64;
    let grid = samples.narrow(0, 0, args.samples.min(64))?;
    let grid = grid.reshape((grid.dim(0)?, SIDE, SIDE))?;
    image_grid(args.out.join(format!("samples_{which}.png")), &grid, 8, 8)?;

    // The same yardstick for both: per-image IWAE log-likelihood on fresh images.
    let test_model = Sbn::new(&mut ctx, test.clone(), None)?;
    let test_guide = Recognition::new(&mut ctx, test.clone(), None)?;
    let ll = ppl::log_likelihood(&mut ctx, &test_model, &test_guide, "data", 100, 100)?;
    let test_ll = ll.to_dtype(DType::F64)?.mean_all()?.to_scalar::<f64>()?;
    Ok(Outcome {
        valid_fraction,
        final_loss,
        test_ll,
        seconds,
    })
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = 600;
        args.samples = 200;
    }
    std::fs::create_dir_all(&args.out).map_err(|e| PplError::file(&args.out, e.to_string()))?;
    let data = bars(args.n, args.seed.wrapping_add(1))?;
    let test = bars(200, args.seed.wrapping_add(2))?;
    let base: Vec<Vec<f32>> = data.to_vec2()?;
    let data_valid = base.iter().filter(|r| valid(r)).count() as f64 / base.len() as f64;
    let grid = data.narrow(0, 0, args.n.min(64))?;
    let grid = grid.reshape((grid.dim(0)?, SIDE, SIDE))?;
    image_grid(args.out.join("data.png"), &grid, 8, 8)?;

    let mut engines = serde_json::Map::new();
    for which in ["wake_sleep", "reweighted_wake_sleep"] {
        let o = train(&args, which, &data, &test, args.steps)?;
        engines.insert(
            which.to_string(),
            serde_json::json!({
                "valid_fraction": o.valid_fraction,
                "final_loss_per_image": o.final_loss,
                "test_ll": o.test_ll,
                "seconds": o.seconds,
            }),
        );
    }
    let json = serde_json::json!({
        "example": "wake_sleep_bars",
        "steps": args.steps,
        "batch": args.batch,
        "particles": args.particles,
        "n": args.n,
        "samples": args.samples,
        "data_valid_fraction": data_valid,
        "data_entropy": data_entropy(),
        "engines": engines,
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
