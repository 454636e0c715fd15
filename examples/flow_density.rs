//! Density estimation with Real NVP (Dinh et al. 2017) by maximum likelihood on three 2-D
//! data sets, each with a train and a test split drawn from fixed seeds.
//!
//! **Data** (generated with the library's seeded RNG; the test split from its own seed):
//! - `moons`: the two interleaving half circles of scikit-learn's `make_moons`, upper
//!   `(cos t, sin t)` and lower `(1 − cos t, ½ − sin t)` with `t ~ U(0, π)`, plus
//!   `N(0, 0.1²)` noise per coordinate (no closed-form density);
//! - `mixture`: eight Gaussians of sd 0.2, equal weights, centred on a circle of radius 2
//!   at the angles `kπ/4` (closed-form density: the test log-likelihood under the true
//!   mixture is printed next to the flow's);
//! - `gaussian`: `N(0, Σ)` with `Σ = [[2, 1.2], [1.2, 1]]`, drawn as `x = A ε` with `A` the
//!   Cholesky factor. The flow's test log-likelihood per point must approach the exact
//!   negative entropy `−H = −½ log((2πe)² det Σ)`; the test log-likelihood under the true
//!   density is printed too (it differs from `−H` only by sampling noise, sd ≈ 1/√n).
//!
//! **Flow**: [`RealNvp::build`] with `--couplings` affine couplings (alternating masks,
//! conditioner widths `--hidden`, ReLU, log-scales soft-clamped to ±3), an ActNorm before
//! each coupling (initialised from the first minibatch) and a learnable LU linear layer
//! between couplings (so the Gaussian is in the model family exactly). Base: a standard
//! normal. f32.
//!
//! **Training**: the mean negative log-likelihood of minibatches (`--batch`, epochs of a
//! fresh permutation) with the library's `Trainer` and `Adam`, learning rate cosine-annealed
//! from `--lr` to `--lr`/100 over `--steps` steps, through a small engine ([`FlowMle`])
//! written here.
//!
//! **Outputs** in `--out` (default `target/flow_density`): `flow_density_moons.png` and
//! `flow_density_mixture.png` (heat maps of the learned density `p(x)` with flow samples
//! on top), `flow_density_gaussian.png` (the same for the Gaussian), and
//! `flow_density_training.png` (test log-likelihood during training against the
//! references). Ends with one JSON line: `gaussian_test_ll`, `gaussian_neg_entropy`,
//! `gaussian_true_test_ll`, `moons_test_ll`, `mixture_test_ll`, `mixture_true_test_ll`.
//!
//! Run: `cargo run --release --example flow_density` (a few minutes); `--quick` for CI.

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use ppl::flows::{Activation, FlowDistribution, Mixing, RealNvp, RealNvpOptions};
use ppl::observers::Progress;
use ppl::plots::{heat_map, line_chart, HeatMap, Panel, Series, YRange};
use ppl::prelude::*;
use ppl::{Control, Cosine, Observer, StepInfo, StepOutput};
use std::cell::RefCell;
use std::f64::consts::PI;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

#[path = "common/moons.rs"]
mod moons;

const DEV: Device = Device::Cpu;

#[derive(Parser, Debug)]
#[command(about = "Real NVP density estimation on two moons, a ring of Gaussians and a Gaussian")]
struct Args {
    /// Training steps per data set.
    #[arg(long, default_value_t = 4000)]
    steps: u64,
    /// Minibatch size.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Training points per data set.
    #[arg(long, default_value_t = 4000)]
    n_train: usize,
    /// Test points per data set.
    #[arg(long, default_value_t = 10000)]
    n_test: usize,
    /// Affine coupling layers.
    #[arg(long, default_value_t = 8)]
    couplings: usize,
    /// Hidden widths of each conditioner (comma-separated).
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    hidden: Vec<usize>,
    /// ReLU conditioners instead of tanh ones.
    #[arg(long)]
    relu: bool,
    /// Initial Adam learning rate (cosine-annealed to a hundredth).
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Evaluate the test log-likelihood every this many steps.
    #[arg(long, default_value_t = 200)]
    eval_every: u64,
    /// Seed of the data and the training.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A short run for CI (300 steps, 1000 training points, coarse heat maps).
    #[arg(long)]
    quick: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Output directory.
    #[arg(long, default_value = "target/flow_density")]
    out: PathBuf,
}

type Error = Box<dyn std::error::Error>;

/// The Cholesky factor of the Gaussian's `Σ = [[2, 1.2], [1.2, 1]]`: `A = [[a11, 0], [a21, a22]]`.
fn gaussian_factor() -> (f64, f64, f64) {
    let a11 = 2f64.sqrt();
    let a21 = 1.2 / a11;
    let a22 = (1.0 - a21 * a21).sqrt();
    (a11, a21, a22)
}

const RING_RADIUS: f64 = 2.0;
const RING_SD: f64 = 0.2;
const MOONS_SD: f64 = 0.1;

/// A data set: `n` points `[n, 2]` (row-major) and, where the density is known, the
/// log-density of each point.
struct Sample {
    points: Vec<f64>,
    true_log_density: Option<Vec<f64>>,
}

fn moons(rng: &mut PplRng, n: usize) -> Sample {
    Sample {
        points: moons::two_moons_points(rng, n, MOONS_SD).0,
        true_log_density: None,
    }
}

fn ring_centre(k: usize) -> (f64, f64) {
    let a = PI * k as f64 / 4.0;
    (RING_RADIUS * a.cos(), RING_RADIUS * a.sin())
}

fn mixture(rng: &mut PplRng, n: usize) -> Sample {
    let mut points = Vec::with_capacity(2 * n);
    for _ in 0..n {
        let k = ((8.0 * rng.uniform_open()) as usize).min(7);
        let (cx, cy) = ring_centre(k);
        points.push(cx + RING_SD * rng.standard_normal());
        points.push(cy + RING_SD * rng.standard_normal());
    }
    // log p(x) = log (1/8) Σ_k N(x; μ_k, s² I), by log-sum-exp.
    let norm = -(2.0 * PI * RING_SD * RING_SD).ln() - 8f64.ln();
    let lp = points
        .chunks(2)
        .map(|p| {
            let terms: Vec<f64> = (0..8)
                .map(|k| {
                    let (cx, cy) = ring_centre(k);
                    -((p[0] - cx).powi(2) + (p[1] - cy).powi(2)) / (2.0 * RING_SD * RING_SD)
                })
                .collect();
            let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            norm + m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
        })
        .collect();
    Sample {
        points,
        true_log_density: Some(lp),
    }
}

fn gaussian(rng: &mut PplRng, n: usize) -> Sample {
    let (a11, a21, a22) = gaussian_factor();
    let e = rng.normals(2 * n);
    let points = e
        .chunks(2)
        .flat_map(|r| [a11 * r[0], a21 * r[0] + a22 * r[1]])
        .collect();
    // x = A ε: log p(x) = −½|ε|² − log|det A| − log 2π.
    let logdet = (a11 * a22).ln();
    let lp = e
        .chunks(2)
        .map(|r| -0.5 * (r[0] * r[0] + r[1] * r[1]) - logdet - (2.0 * PI).ln())
        .collect();
    Sample {
        points,
        true_log_density: Some(lp),
    }
}

/// `−H = −½ log((2πe)² det Σ)` of the Gaussian.
fn gaussian_neg_entropy() -> f64 {
    let (a11, _, a22) = gaussian_factor();
    let det = (a11 * a22).powi(2);
    -0.5 * ((2.0 * PI * std::f64::consts::E).powi(2) * det).ln()
}

fn tensor(points: &[f64]) -> Result<Tensor> {
    let v: Vec<f32> = points.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, (points.len() / 2, 2), &DEV)?)
}

fn host(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Maximum likelihood for a flow distribution: each step is the mean negative
/// log-likelihood of the next minibatch of an epoch (a fresh permutation of the training
/// points from the context's generator every epoch).
struct FlowMle<'a> {
    dist: &'a FlowDistribution,
    data: Tensor,
    batch: usize,
    order: Vec<usize>,
    pos: usize,
}

impl<'a> FlowMle<'a> {
    fn new(dist: &'a FlowDistribution, data: Tensor, batch: usize) -> Result<Self> {
        let n = data.dim(0)?;
        if batch == 0 || batch > n {
            return Err(PplError::invalid_argument(
                "FlowMle",
                format!("batch must be in 1..={n} (the training points), got {batch}"),
            ));
        }
        Ok(FlowMle {
            dist,
            data,
            batch,
            order: Vec::new(),
            pos: 0,
        })
    }
}

impl Engine for FlowMle<'_> {
    fn name(&self) -> &str {
        "flow_mle"
    }
    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let n = self.data.dim(0)?;
        if self.pos + self.batch > self.order.len() {
            self.order = ctx.rng().permutation(n);
            self.pos = 0;
        }
        let idx: Vec<u32> = self.order[self.pos..self.pos + self.batch]
            .iter()
            .map(|&i| i as u32)
            .collect();
        self.pos += self.batch;
        let idx = Tensor::from_vec(idx, self.batch, &DEV)?;
        let x = self.data.index_select(&idx, 0)?;
        let loss = self.dist.log_prob(&x)?.mean_all()?.neg()?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        Ok(StepOutput::new(loss, value))
    }
}

/// Records the test log-likelihood every `every` steps (and after the last).
struct TestLl {
    dist: FlowDistribution,
    test: Tensor,
    every: u64,
    curve: Rc<RefCell<Vec<(f64, f64)>>>,
}

impl Observer for TestLl {
    fn on_step(&mut self, info: &StepInfo) -> Result<Control> {
        if (info.step + 1) % self.every == 0 {
            let ll = mean(&host(&self.dist.log_prob(&self.test)?.detach())?);
            self.curve.borrow_mut().push(((info.step + 1) as f64, ll));
        }
        Ok(Control::Continue)
    }
}

/// A data generator: `n` points from a seeded generator.
type Gen = fn(&mut PplRng, usize) -> Sample;
/// The picture's `(x range, y range)`.
type Window = ((f64, f64), (f64, f64));

/// What one data set's run gives.
struct Fit {
    test_ll: f64,
    true_test_ll: Option<f64>,
    /// `(step, test log-likelihood)` during training.
    curve: Vec<(f64, f64)>,
    seconds: f64,
}

/// Trains a fresh Real NVP on `train` and scores it on `test`; draws the heat map of its
/// density over `range × range` (with samples) to `picture`.
fn fit(
    name: &str,
    index: u64,
    train: &Sample,
    test: &Sample,
    range: Window,
    picture: PathBuf,
    args: &Args,
) -> std::result::Result<Fit, Error> {
    let mut ctx = Ctx::new(args.seed.wrapping_add(100 + index));
    let opts = RealNvpOptions {
        actnorm: true,
        mixing: Mixing::LuLinear,
        activation: if args.relu {
            Activation::Relu
        } else {
            Activation::Tanh
        },
        ..RealNvpOptions::default()
    };
    let flow = RealNvp::build(
        ctx.params()
            .var_builder(DType::F32, &DEV, args.seed.wrapping_add(index)),
        2,
        0,
        args.couplings,
        &args.hidden,
        &opts,
    )?;
    let dist = FlowDistribution::standard_normal(Arc::new(flow), None, DType::F32, &DEV)?;
    let train_x = tensor(&train.points)?;
    let test_x = tensor(&test.points)?;
    // ActNorm initialises from the first data it scores: make that the training data.
    dist.log_prob(&train_x)?;
    let test_ll =
        |d: &FlowDistribution| -> Result<f64> { Ok(mean(&host(&d.log_prob(&test_x)?.detach())?)) };

    let t0 = Instant::now();
    let mut engine = FlowMle::new(&dist, train_x, args.batch)?;
    let mut trainer = Trainer::new(Adam::new(), args.lr)?.with_schedule(Cosine {
        lr0: args.lr,
        min: args.lr / 100.0,
        steps: args.steps,
    });
    if !args.quiet {
        eprintln!("{name}");
        trainer = trainer.observe(Progress::new(args.steps));
    }
    let curve = Rc::new(RefCell::new(vec![(0.0, test_ll(&dist)?)]));
    trainer = trainer.observe(TestLl {
        dist: dist.clone(),
        test: test_x.clone(),
        every: args.eval_every.max(1),
        curve: curve.clone(),
    });
    trainer.run(&mut ctx, &mut engine, args.steps)?;
    let seconds = t0.elapsed().as_secs_f64();
    let final_ll = test_ll(&dist)?;

    // The learned density on the heat map's cell centres, and samples on top.
    let cells = if args.quick { 48 } else { 160 };
    let ((x0, x1), (y0, y1)) = range;
    let (dx, dy) = ((x1 - x0) / cells as f64, (y1 - y0) / cells as f64);
    let mut centres = Vec::with_capacity(2 * cells * cells);
    for j in 0..cells {
        for i in 0..cells {
            centres.push(x0 + (i as f64 + 0.5) * dx);
            centres.push(y0 + (j as f64 + 0.5) * dy);
        }
    }
    let density: Vec<f64> = host(&dist.log_prob(&tensor(&centres)?)?.detach())?
        .into_iter()
        .map(f64::exp)
        .collect();
    let samples = host(&dist.sample(ctx.rng(), &[400])?.detach())?;
    let samples: Vec<(f64, f64)> = samples
        .chunks(2)
        .map(|p| (p[0], p[1]))
        .filter(|p| p.0 > x0 && p.0 < x1 && p.1 > y0 && p.1 < y1)
        .collect();
    let map = HeatMap::new(
        format!("Real NVP on {name}: learned density (test log-likelihood {final_ll:.3})"),
        "x1",
        "x2",
        (x0, x1),
        (y0, y1),
        cells,
        cells,
        density,
    )?
    .with_value_label("p(x)")
    .with_overlay(
        Series::new("400 samples of the flow", samples)
            .markers(2)
            .color([240, 60, 60]),
    );
    heat_map(picture, &map)?;
    let true_test_ll = test.true_log_density.as_deref().map(mean);
    let curve = curve.borrow().clone();
    Ok(Fit {
        test_ll: final_ll,
        true_test_ll,
        curve,
        seconds,
    })
}

fn main() -> std::result::Result<(), Error> {
    let mut args = Args::parse();
    if args.quick {
        args.steps = args.steps.min(300);
        args.n_train = args.n_train.min(1000);
        args.n_test = args.n_test.min(2000);
        args.eval_every = args.eval_every.min(100);
    }
    std::fs::create_dir_all(&args.out)?;
    let _v = ppl::validation::disable();

    // Train and test splits from their own fixed seeds.
    let sets: [(&str, Gen, Window); 3] = [
        ("moons", moons, ((-1.5, 2.5), (-1.25, 1.75))),
        ("mixture", mixture, ((-3.0, 3.0), (-3.0, 3.0))),
        ("gaussian", gaussian, ((-4.5, 4.5), (-3.5, 3.5))),
    ];
    let mut fits = Vec::new();
    for (i, (name, gen, range)) in sets.iter().enumerate() {
        let mut rng_train =
            PplRng::seed_from_u64(args.seed.wrapping_mul(7919).wrapping_add(2 * i as u64));
        let mut rng_test =
            PplRng::seed_from_u64(args.seed.wrapping_mul(7919).wrapping_add(2 * i as u64 + 1));
        let train = gen(&mut rng_train, args.n_train);
        let test = gen(&mut rng_test, args.n_test);
        let picture = args.out.join(format!("flow_density_{name}.png"));
        let f = fit(name, i as u64, &train, &test, *range, picture, &args)?;
        if !args.quiet {
            eprintln!(
                "{name}: test log-likelihood {:.4}{} ({:.1} s)",
                f.test_ll,
                f.true_test_ll
                    .map(|t| format!(", under the true density {t:.4}"))
                    .unwrap_or_default(),
                f.seconds
            );
        }
        fits.push(f);
    }
    let neg_entropy = gaussian_neg_entropy();
    eprintln!(
        "gaussian: test log-likelihood {:.4} against −H = {:.4}",
        fits[2].test_ll, neg_entropy
    );

    // Test log-likelihood during training, one panel per data set, with the references.
    let colours = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];
    let mut panels = Vec::new();
    for (((name, _, _), f), c) in sets.iter().zip(&fits).zip(colours) {
        let last = f.curve.last().map(|p| p.0).unwrap_or(0.0);
        let mut panel = Panel::new(*name, "training step", "test log-likelihood per point")
            .with_series(Series::new("Real NVP", f.curve.clone()).color(c).width(2));
        if let Some(t) = f.true_test_ll {
            panel = panel.with_series(
                Series::new("true density", vec![(0.0, t), (last, t)]).color([120, 120, 120]),
            );
        }
        if *name == "gaussian" {
            panel = panel.with_series(
                Series::new("−H (exact)", vec![(0.0, neg_entropy), (last, neg_entropy)])
                    .color([214, 39, 40]),
            );
        }
        // The first evaluation (identity flow) is far below: show the last 80% of training.
        let tail: Vec<f64> = f
            .curve
            .iter()
            .filter(|p| p.0 >= 0.2 * last)
            .map(|p| p.1)
            .chain(f.true_test_ll)
            .chain((*name == "gaussian").then_some(neg_entropy))
            .collect();
        let lo = tail.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = tail.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pad = 0.1 * (hi - lo).max(0.05);
        panels.push(panel.with_y_range(YRange::Fixed(lo - pad, hi + pad)));
    }
    line_chart(
        args.out.join("flow_density_training.png"),
        "Real NVP by maximum likelihood: test log-likelihood during training",
        &panels,
    )?;

    let json = serde_json::json!({
        "example": "flow_density",
        "steps": args.steps,
        "batch": args.batch,
        "n_train": args.n_train,
        "n_test": args.n_test,
        "couplings": args.couplings,
        "hidden": args.hidden,
        "gaussian_test_ll": fits[2].test_ll,
        "gaussian_neg_entropy": neg_entropy,
        "gaussian_true_test_ll": fits[2].true_test_ll,
        "moons_test_ll": fits[0].test_ll,
        "mixture_test_ll": fits[1].test_ll,
        "mixture_true_test_ll": fits[1].true_test_ll,
        "seconds": fits.iter().map(|f| f.seconds).sum::<f64>(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
