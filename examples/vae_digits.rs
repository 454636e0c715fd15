//! A variational autoencoder on the real 8x8 handwritten digits (UCI optdigits), trained
//! with SVI: the flagship example.
//!
//! Model, per image `x ∈ [0,1]^64` (intensities scaled by 1/16, as in the Python baselines):
//! `z ~ N(0, I_8)`, `x ~ Bernoulli(logits = decoder(z))` with decoder `8-128-64` (ReLU).
//! Guide (amortised): `q(z | x) = N(μ(x), diag σ(x)²)` with encoder `64-128-(8, 8)`,
//! `σ = exp(½ · logvar)` (the architecture of `../shared/bench/bench_pyro.py`). The data plate
//! is subsampled (`batch` of the training images per step), so each step's ELBO is an
//! unbiased estimate over the whole training set.
//!
//! `--iwae` trains the importance-weighted bound instead (`--particles` K, per data point,
//! correct with minibatches; `--dreg` for the doubly-reparameterised gradient). Evaluation
//! on the held-out 20%: the test ELBO (100 particles) and the IWAE estimate of
//! `log p(x)` with K = 1000 (`--test-k`), both per image.
//!
//! Outputs in `--out` (default `target/vae_digits`): `loss.svg` / `loss.png` (loss curve),
//! `reconstructions.png` (test digits above their reconstructions), `samples.png` (decoded
//! prior draws), `checkpoint.safetensors` (params, Adam state, RNG, step), `losses.csv`,
//! `posterior.npz` (latent draws of 8 test images). Ends with one JSON line.
//!
//! `--mnist-dir DIR` trains on MNIST IDX files you provide (`train-images-idx3-ubyte` and
//! `t10k-images-idx3-ubyte`), with the 784-400-20 shape.
//!
//! Run: `cargo run --release --example vae_digits` (about 20 s of training on one thread).

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use flate2::read::GzDecoder;
use ppl::engines::{Iwae, Objective, Svi, TraceElbo};
use ppl::nn::{Activation, Linear};
use ppl::observers::{CsvLog, LossPlot, Progress};
use ppl::plots::image_grid;
use ppl::prelude::*;
use ppl::{log_likelihood, save_checkpoint, save_npz, Adam, Engine, Predictive, Trainer};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

const DIGITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");

#[path = "common/threads.rs"]
mod threads;

#[derive(Parser, Debug)]
#[command(about = "VAE on the 8x8 digits (or MNIST) with SVI")]
struct Args {
    /// Passes over the training set.
    #[arg(long, default_value_t = 1000)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Hidden width (default 128; 400 with --mnist-dir).
    #[arg(long)]
    hidden: Option<usize>,
    /// Latent dimension (default 8; 20 with --mnist-dir).
    #[arg(long)]
    latent: Option<usize>,
    /// Train the IWAE bound instead of the ELBO.
    #[arg(long)]
    iwae: bool,
    /// Particles per data point for --iwae.
    #[arg(long, default_value_t = 8)]
    particles: usize,
    /// With --iwae: the doubly-reparameterised gradient.
    #[arg(long)]
    dreg: bool,
    /// Particles of the test log-likelihood estimate.
    #[arg(long, default_value_t = 1000)]
    test_k: usize,
    /// Seed of everything random.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output directory.
    #[arg(long, default_value = "target/vae_digits")]
    out: PathBuf,
    /// Directory with MNIST IDX files (train-images-idx3-ubyte, t10k-images-idx3-ubyte).
    #[arg(long)]
    mnist_dir: Option<PathBuf>,
    /// No progress bar (for logs).
    #[arg(long)]
    quiet: bool,
    /// CPU threads for candle (unless RAYON_NUM_THREADS / CANDLE_NUM_THREADS are set); one
    /// thread is fastest for the small digits networks.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

type Error = Box<dyn std::error::Error>;

/// Train and test images, `[n, d]` in `[0, 1]`, and the image side.
struct Data {
    train: Tensor,
    test: Tensor,
    side: usize,
}

fn load_digits() -> std::result::Result<Data, Error> {
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(DIGITS)?).read_to_string(&mut text)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let vals: Vec<f32> = line
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("{DIGITS}: line {}: {e}", i + 1))?;
        if vals.len() != 65 {
            return Err(format!("{DIGITS}: line {}: expected 65 fields", i + 1).into());
        }
        rows.push(vals[..64].iter().map(|v| v / 16.0).collect::<Vec<f32>>());
    }
    // A fixed 80/20 split any other program can reproduce: every fifth image (row index
    // i ≡ 4 mod 5, 359 of 1797) is held out for testing. The rows cycle through the ten
    // classes, so both parts are balanced. (The Pyro baseline in examples/python uses it.)
    let (test, train): (Vec<_>, Vec<_>) =
        rows.into_iter().enumerate().partition(|(i, _)| i % 5 == 4);
    let strip = |v: Vec<(usize, Vec<f32>)>| v.into_iter().map(|(_, r)| r).collect::<Vec<_>>();
    let (train, test) = (strip(train), strip(test));
    let to_tensor = |r: &[Vec<f32>]| {
        Tensor::from_vec(r.concat(), (r.len(), 64), &Device::Cpu).map_err(Error::from)
    };
    Ok(Data {
        train: to_tensor(&train)?,
        test: to_tensor(&test)?,
        side: 8,
    })
}

fn read_idx(path: &Path) -> std::result::Result<Tensor, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        format!(
            "cannot read MNIST file {}: {e} (--mnist-dir must contain the uncompressed \
             train-images-idx3-ubyte and t10k-images-idx3-ubyte)",
            path.display()
        )
    })?;
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    if bytes.len() < 16 || be(0) != 0x0803 {
        return Err(format!("{}: not an IDX image file (magic 0x803)", path.display()).into());
    }
    let (n, r, c) = (be(4) as usize, be(8) as usize, be(12) as usize);
    if bytes.len() != 16 + n * r * c {
        return Err(format!(
            "{}: truncated ({} bytes for {n}x{r}x{c})",
            path.display(),
            bytes.len()
        )
        .into());
    }
    let px: Vec<f32> = bytes[16..].iter().map(|&b| b as f32 / 255.0).collect();
    Ok(Tensor::from_vec(px, (n, r * c), &Device::Cpu)?)
}

fn load_mnist(dir: &Path) -> std::result::Result<Data, Error> {
    let train = read_idx(&dir.join("train-images-idx3-ubyte"))?;
    let test = read_idx(&dir.join("t10k-images-idx3-ubyte"))?;
    let side = (train.dim(1)? as f64).sqrt() as usize;
    Ok(Data { train, test, side })
}

/// The rows of `x` in this run of plate `data`: the minibatch `idx` drawn by the guide (and
/// replayed into the model), or all of them without subsampling.
fn rows(x: &Tensor, idx: &Tensor, batch: Option<usize>) -> Result<Tensor> {
    Ok(match batch {
        Some(_) => x.index_select(idx, 0)?,
        None => x.clone(),
    })
}

/// The networks; their weights live in the context's parameter store.
struct Vae {
    enc: Linear,
    enc_loc: Linear,
    enc_logvar: Linear,
    dec: Linear,
    dec_out: Linear,
    z: usize,
}

impl Vae {
    /// Dense layers are `ppl::nn::Linear` (candle-nn's parameters and initialisation, one
    /// fused op with the activation on the CPU).
    fn new(ctx: &mut Ctx, d: usize, h: usize, z: usize) -> Result<Self> {
        let lin = |ctx: &mut Ctx, name: &str, a, b, act| {
            ctx.try_module(name, |vb| Linear::build(a, b, act, vb))
        };
        let (relu, none) = (Activation::Relu, Activation::Identity);
        Ok(Vae {
            enc: lin(ctx, "encoder/fc1", d, h, relu)?,
            enc_loc: lin(ctx, "encoder/fc21", h, z, none)?,
            enc_logvar: lin(ctx, "encoder/fc22", h, z, none)?,
            dec: lin(ctx, "decoder/fc1", z, h, relu)?,
            dec_out: lin(ctx, "decoder/fc2", h, d, none)?,
            z,
        })
    }

    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.dec_out.forward(&self.dec.forward(z)?)
    }

    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.enc.forward(x)?;
        let scale = (self.enc_logvar.forward(&h)? * 0.5)?.exp()?;
        Ok((self.enc_loc.forward(&h)?, scale))
    }

    /// `p(x, z)` over the images `x`, `batch` of them per run when subsampling.
    #[model]
    fn model(&self, x: &Tensor, batch: Option<usize>) -> Result<()> {
        plate!("data", x.dim(0)?, subsample = batch, |idx| {
            let xb = rows(x, &idx, batch)?;
            let prior = Normal::standard(&[xb.dim(0)?, self.z], DType::F32, &Device::Cpu)?;
            let latent = sample!(prior.to_event(1)?);
            let logits = self.decode(&latent)?;
            observe!("obs", Bernoulli::from_logits(&logits)?.to_event(1)?, &xb);
        });
        Ok(())
    }

    /// `q(z | x)`, drawing the minibatch that the model then replays.
    #[model]
    fn guide(&self, x: &Tensor, batch: Option<usize>) -> Result<()> {
        plate!("data", x.dim(0)?, subsample = batch, |idx| {
            let (loc, scale) = self.encode(&rows(x, &idx, batch)?)?;
            sample!("latent", Normal::new(&loc, &scale)?.to_event(1)?);
        });
        Ok(())
    }
}

fn main() -> std::result::Result<(), Error> {
    let args = Args::parse();
    threads::default_threads(args.threads);
    let start = Instant::now();
    let _v = ppl::validation::disable(); // hot loop: no host reads for parameter checks
    let data = match &args.mnist_dir {
        Some(dir) => load_mnist(dir)?,
        None => load_digits()?,
    };
    let mnist = args.mnist_dir.is_some();
    let d = data.train.dim(1)?;
    let h = args.hidden.unwrap_or(if mnist { 400 } else { 128 });
    let zdim = args.latent.unwrap_or(if mnist { 20 } else { 8 });
    let (n_train, n_test) = (data.train.dim(0)?, data.test.dim(0)?);
    let batch = args.batch.min(n_train);
    let steps = (args.epochs * n_train).div_ceil(batch) as u64;
    std::fs::create_dir_all(&args.out)?;

    let mut ctx = Ctx::new(args.seed);
    let vae = Vae::new(&mut ctx, d, h, zdim)?;
    let model = |c: &mut Ctx| vae.model(c, &data.train, Some(batch));
    let guide = |c: &mut Ctx| vae.guide(c, &data.train, Some(batch));
    let mut engine: Box<dyn Engine> = if args.iwae {
        let mut obj = Iwae::new(args.particles)?.with_local_plate("data");
        if args.dreg {
            obj = obj.with_dreg()?;
        }
        Box::new(Svi::new(&model, &guide, obj))
    } else {
        Box::new(Svi::new(&model, &guide, TraceElbo::new()))
    };
    let mut trainer = Trainer::new(Adam::new(), args.lr)?
        .observe(LossPlot::new(args.out.join("loss.svg")))
        .observe(LossPlot::new(args.out.join("loss.png")))
        .observe(CsvLog::new(args.out.join("losses.csv")));
    if !args.quiet {
        trainer = trainer.observe(Progress::new(steps));
    }
    let train_start = Instant::now();
    let report = trainer.run(&mut ctx, engine.as_mut(), steps)?;
    let train_seconds = train_start.elapsed().as_secs_f64();
    save_checkpoint(
        args.out.join("checkpoint.safetensors"),
        &mut ctx,
        &trainer,
        engine.as_ref(),
    )?;
    drop(engine);

    // Held-out evaluation, per image.
    let test_model = |c: &mut Ctx| vae.model(c, &data.test, None);
    let test_guide = |c: &mut Ctx| vae.guide(c, &data.test, None);
    let mut elbo = TraceElbo::new().with_particles(100)?;
    elbo.init_with(&mut ctx, &test_model, &test_guide)?;
    let test_elbo = elbo.loss(&mut ctx, &test_model, &test_guide)?.bound / n_test as f64;
    let ll = log_likelihood(&mut ctx, &test_model, &test_guide, "data", args.test_k, 100)?;
    let test_ll = ll.mean_all()?.to_scalar::<f32>()? as f64;
    let final_loss = report.losses.iter().rev().take(100).sum::<f64>()
        / report.losses.len().clamp(1, 100) as f64
        / n_train as f64;

    // Pictures: 8 test digits over their reconstructions; 64 decoded prior draws.
    let side = data.side;
    let first = data.test.narrow(0, 0, 8)?;
    let recon = candle_nn::ops::sigmoid(&vae.decode(&vae.encode(&first)?.0)?)?;
    let pair = Tensor::cat(&[&first, &recon], 0)?.reshape((16, side, side))?;
    let zoom = if side > 8 { 3 } else { 8 };
    image_grid(args.out.join("reconstructions.png"), &pair, 8, zoom)?;
    let prior = Normal::standard(&[64, zdim], DType::F32, &Device::Cpu)?;
    let z = prior.sample(ctx.rng(), &[])?;
    let samples = candle_nn::ops::sigmoid(&vae.decode(&z)?)?.reshape((64, side, side))?;
    image_grid(args.out.join("samples.png"), &samples, 8, zoom)?;
    // Posterior draws of the latent codes of those 8 images, for numpy / ArviZ.
    let few_model = |c: &mut Ctx| vae.model(c, &first, None);
    let few_guide = |c: &mut Ctx| vae.guide(c, &first, None);
    let draws = Predictive::new(&few_model, &few_guide, 200)?.sample(&mut ctx)?;
    save_npz(&draws, args.out.join("posterior.npz"))?;

    let json = serde_json::json!({
        "example": "vae_digits",
        "data": if mnist { "mnist" } else { "digits" },
        "objective": report.engine,
        "shape": [d, h, zdim],
        "batch": batch,
        "epochs": args.epochs,
        "steps": report.losses.len(),
        "skipped_steps": report.skipped,
        "train_loss_per_image": final_loss,
        "test_elbo": test_elbo,
        "test_log_likelihood": test_ll,
        "test_k": args.test_k,
        "n_train": n_train,
        "n_test": n_test,
        "steps_per_sec": report.losses.len() as f64 / train_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "out": args.out.display().to_string(),
    });
    println!("{json}");
    Ok(())
}
