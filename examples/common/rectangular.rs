//! Shared by the `rectangular_*` examples: train a rectangular flow with one volume
//! estimator and evaluate it (exact test log-density, reconstruction error, model samples).

use candle_core::{DType, Device, Tensor};
use ppl::engines::{evaluate_injective, Probe, Rectangular, RectangularOptions, VolumeEstimator};
use ppl::flows::{
    Activation, Bijector, ElementwiseSpline, Mixing, RealNvp, RealNvpOptions, RectangularFlow,
};
use ppl::observers::Progress;
use ppl::plots::{Panel, Series, YRange};
use ppl::prelude::*;
use ppl::Cosine;
use std::sync::Arc;
use std::time::Instant;

/// Command-line settings shared by the `rectangular_*` examples (flattened into theirs).
#[derive(clap::Args, Debug, Clone)]
pub struct TrainArgs {
    /// Training steps per estimator.
    #[arg(long, default_value_t = 3000)]
    pub steps: u64,
    /// Minibatch size.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Training points.
    #[arg(long, default_value_t = 10000)]
    pub n_train: usize,
    /// Test points.
    #[arg(long, default_value_t = 5000)]
    pub n_test: usize,
    /// Model samples for the sample statistics.
    #[arg(long, default_value_t = 20000)]
    pub n_samples: usize,
    /// Hidden widths of each conditioner (comma-separated).
    #[arg(long, default_value = "64,64", value_delimiter = ',')]
    pub hidden: Vec<usize>,
    /// Initial Adam learning rate (cosine-annealed to a hundredth).
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Likelihood warm-up steps.
    #[arg(long, default_value_t = 500)]
    pub warmup: usize,
    /// Probes of the stochastic estimators.
    #[arg(long, default_value_t = 1)]
    pub probes: usize,
    /// Estimators to run (comma-separated).
    #[arg(
        long,
        default_value = "exact,hutchinson,fif,no_logdet",
        value_delimiter = ','
    )]
    pub estimators: Vec<String>,
    /// Seed of the data, model and training.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A short run for CI (200 steps, 2000 training and test points, 5000 samples).
    #[arg(long)]
    pub quick: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl TrainArgs {
    /// Checks the sizes and applies `--quick`.
    pub fn apply_quick(&mut self) -> Result<()> {
        if self.n_samples == 0 || self.n_train == 0 || self.n_test == 0 || self.steps == 0 {
            return Err(PplError::invalid_argument(
                "rectangular example",
                "--steps, --n-train, --n-test and --n-samples must be positive",
            ));
        }
        if self.quick {
            self.steps = self.steps.min(200);
            self.n_train = self.n_train.min(2000);
            self.n_test = self.n_test.min(2000);
            self.n_samples = self.n_samples.min(5000);
            self.warmup = self.warmup.min(50);
        }
        Ok(())
    }

    /// Training and test points `[n, D]` from `points(rng, n)`, with the seeds `seed` and
    /// `seed + 1`.
    pub fn data<F>(&self, mut points: F) -> Result<(Tensor, Tensor)>
    where
        F: FnMut(&mut PplRng, usize) -> Result<Vec<Vec<f64>>>,
    {
        let train = points(&mut PplRng::seed_from_u64(self.seed), self.n_train)?;
        let test = points(&mut PplRng::seed_from_u64(self.seed + 1), self.n_test)?;
        Ok((tensor(&train)?, tensor(&test)?))
    }

    /// The training configuration for a model `R^latent → R^big`.
    pub fn config(
        &self,
        big: usize,
        latent: usize,
        couplings: usize,
        prior_layers: usize,
        beta: f64,
    ) -> Config {
        Config {
            big,
            latent,
            couplings,
            hidden: self.hidden.clone(),
            prior_layers,
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            beta,
            warmup: self.warmup,
            probes: self.probes,
            seed: self.seed + 2,
            quiet: self.quiet,
        }
    }
}

/// The estimators every example compares, by their JSON names.
pub const ESTIMATORS: [&str; 4] = ["exact", "hutchinson", "fif", "no_logdet"];

/// Model and training settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data dimension `D`.
    pub big: usize,
    /// Latent dimension `d`.
    pub latent: usize,
    /// Affine couplings of the square Real NVP.
    pub couplings: usize,
    /// Hidden widths of each conditioner.
    pub hidden: Vec<usize>,
    /// Layers of the latent flow: Real NVP couplings for `d ≥ 2`, one rational-quadratic
    /// spline for `d = 1` (any positive value); 0: a standard normal.
    pub prior_layers: usize,
    /// Training steps.
    pub steps: u64,
    /// Minibatch size.
    pub batch: usize,
    /// Initial Adam learning rate (cosine-annealed to a hundredth).
    pub lr: f64,
    /// Reconstruction weight `β`.
    pub beta: f64,
    /// Likelihood warm-up steps.
    pub warmup: usize,
    /// Probes of the stochastic estimators.
    pub probes: usize,
    /// Seed of the model and training.
    pub seed: u64,
    /// No progress bar.
    pub quiet: bool,
}

/// The estimator of a JSON name.
pub fn estimator(name: &str, probes: usize) -> Result<VolumeEstimator> {
    Ok(match name {
        "exact" => VolumeEstimator::Exact,
        "hutchinson" => VolumeEstimator::Hutchinson {
            probes,
            probe: Probe::Gaussian,
            // f32: a relative residual of 1e-4 is what single precision reaches reliably.
            cg_tol: 1e-4,
            cg_max_iter: None,
        },
        "fif" => VolumeEstimator::free_form(probes),
        "no_logdet" => VolumeEstimator::NoLogDet,
        other => {
            return Err(PplError::invalid_argument(
                "estimator",
                format!("unknown estimator `{other}` (one of {ESTIMATORS:?})"),
            ))
        }
    })
}

/// A trained model and its numbers.
pub struct Trained {
    /// The model.
    pub model: RectangularFlow,
    /// Mean exact log-density of the test points on the learned manifold.
    pub test_log_density: f64,
    /// Mean squared reconstruction distance `‖x − g(g†(x))‖²` of the test points.
    pub recon_mse: f64,
    /// Model samples `g(z)`, `z ~ p_Z`, host rows.
    pub samples: Vec<Vec<f64>>,
    /// Training seconds.
    pub seconds: f64,
}

/// Host rows of a 2-D tensor.
pub fn rows(t: &Tensor) -> Result<Vec<Vec<f64>>> {
    Ok(t.to_dtype(DType::F64)?.to_vec2()?)
}

/// A 2-D f32 tensor from host rows.
pub fn tensor(rows: &[Vec<f64>]) -> Result<Tensor> {
    let cols = rows.first().map_or(0, |r| r.len());
    let v: Vec<f32> = rows.iter().flatten().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, (rows.len(), cols), &Device::Cpu)?)
}

/// Mean of a host vector.
pub fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// Trains a fresh model (the same initial weights for every estimator) with estimator
/// `name` on `train` and evaluates it on `test`; draws `n_samples` model samples.
pub fn train(
    cfg: &Config,
    name: &str,
    train: &Tensor,
    test: &Tensor,
    n_samples: usize,
) -> Result<Trained> {
    let mut ctx = Ctx::new(cfg.seed);
    let opts = RealNvpOptions {
        activation: Activation::Tanh,
        mixing: Mixing::LuLinear,
        ..RealNvpOptions::default()
    };
    let square = RealNvp::build(
        ctx.params()
            .var_builder(DType::F32, &Device::Cpu, cfg.seed)
            .pp("flow"),
        cfg.big,
        0,
        cfg.couplings,
        &cfg.hidden,
        &opts,
    )?;
    let mut model = RectangularFlow::new(Arc::new(square), cfg.latent)?;
    if cfg.prior_layers > 0 {
        let vb = ctx
            .params()
            .var_builder(DType::F32, &Device::Cpu, cfg.seed + 1)
            .pp("prior");
        let prior: Arc<dyn Bijector> = if cfg.latent == 1 {
            Arc::new(ElementwiseSpline::new(vb, 1, 8, 5.0)?)
        } else {
            Arc::new(RealNvp::build(
                vb,
                cfg.latent,
                0,
                cfg.prior_layers,
                &cfg.hidden,
                &opts,
            )?)
        };
        model = model.with_prior(prior)?;
    }
    let ropts = RectangularOptions::default()
        .estimator(estimator(name, cfg.probes)?)
        .beta(cfg.beta)
        .batch_size(cfg.batch)
        .warmup_steps(cfg.warmup);
    let t0 = Instant::now();
    {
        let mut engine = Rectangular::new(&model, train, ropts);
        let mut trainer = Trainer::new(Adam::new(), cfg.lr)?.with_schedule(Cosine {
            lr0: cfg.lr,
            min: cfg.lr / 100.0,
            steps: cfg.steps,
        });
        if !cfg.quiet {
            eprintln!("estimator {name}");
            trainer = trainer.observe(Progress::new(cfg.steps));
        }
        trainer.run(&mut ctx, &mut engine, cfg.steps)?;
    }
    let seconds = t0.elapsed().as_secs_f64();
    let eval = evaluate_injective(&model, test, 2048)?;
    let lp: Vec<f64> = eval.log_density.to_dtype(DType::F64)?.to_vec1()?;
    let re: Vec<f64> = eval.reconstruction_error.to_dtype(DType::F64)?.to_vec1()?;
    let (_, x) = model.sample(ctx.rng(), n_samples, DType::F32, &Device::Cpu)?;
    Ok(Trained {
        test_log_density: mean(&lp),
        recon_mse: mean(&re),
        samples: rows(&x.detach())?,
        model,
        seconds,
    })
}

/// `(mean radius, resultant length, mean direction)` of points: the mean of `‖x‖`, the
/// length of the mean of `x/‖x‖`, and that mean normalised.
pub fn direction_stats(points: &[Vec<f64>]) -> (f64, f64, Vec<f64>) {
    let dim = points.first().map_or(0, |p| p.len());
    let mut radius = 0.0;
    let mut m = vec![0.0; dim];
    for p in points {
        let r = p.iter().map(|v| v * v).sum::<f64>().sqrt();
        radius += r;
        for (a, v) in m.iter_mut().zip(p) {
            *a += v / r.max(f64::MIN_POSITIVE);
        }
    }
    let n = points.len().max(1) as f64;
    let m: Vec<f64> = m.into_iter().map(|v| v / n).collect();
    let len = m.iter().map(|v| v * v).sum::<f64>().sqrt();
    let dir = m.iter().map(|v| v / len.max(f64::MIN_POSITIVE)).collect();
    (radius / n, len, dir)
}

/// A chart panel with the given series and y range.
pub fn panel(title: &str, x: &str, y: &str, series: Vec<Series>, range: YRange) -> Panel {
    let mut p = Panel::new(title, x, y).with_y_range(range);
    p.series = series;
    p
}
