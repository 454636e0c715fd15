//! SVI steps per second for a VAE: the library (`Svi` + `TraceElbo`, model and guide as
//! traced programs) against the same networks, loss and optimiser written in plain candle.
//!
//! `cargo run --release --example bench_vae -- [--shape digits|mnist] [--steps N] [--repeats R]`
//!
//! Every side runs the same maths per step: encoder `D-H-(Z, Z)` with `σ = exp(½·logvar)`,
//! one reparameterised draw `z = μ + σ ε`, decoder `Z-H-D` Bernoulli logits, the Monte-Carlo
//! ELBO `log p(x|z) + log p(z) − log q(z|x)` (as Pyro's `Trace_ELBO`), backward, Adam
//! (lr 1e-3). Batches are consecutive slices of the data (digits scaled to [0, 1] for
//! `digits`; seeded random binary images for `mnist`). The plain sides are a hand-written
//! candle loss (the Bernoulli term in the one-`exp` form of the library's plain-candle
//! `Bernoulli::log_prob`; the Gaussian terms simplified by hand to `−ε²/2 − ln σ`), run once
//! as a candle user writes it (`candle_nn::linear` layers, `relu` op, `candle_nn::AdamW`
//! with weight decay 0) and once with the library's fused layers (`ppl::nn::Linear`) and
//! `Adam`, so that the library's own overhead (tracing, handlers, guide plumbing, general
//! log-densities) is the time ratio of the library to the second. The library side uses
//! `ppl::nn::Linear` layers, as the flagship example does.
//!
//! The three sides run interleaved step by step: after 20 warm-up steps each, `R` rounds of
//! `N` steps, each step running all three sides in a rotating order and timing each;
//! medians of the per-round rates and of the per-round time ratios are reported.
//! `--only SIDE` runs one side alone (e.g. under a profiler). Thread counts follow
//! `ppl::threads::configure`: `RAYON_NUM_THREADS` matrix-product threads (default: all
//! cores) and `CANDLE_NUM_THREADS` element-wise threads (default: 1). Prints one JSON line
//! per side and one with the ratios.

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module, Optimizer as _, VarBuilder, VarMap};
use clap::Parser;
use flate2::read::GzDecoder;
use ppl::engines::{Svi, TraceElbo};
use ppl::nn::Activation;
use ppl::prelude::*;
use ppl::{Adam, Engine, Optimizer, Trainer};
use std::cell::Cell;
use std::io::Read;
use std::time::Instant;

#[derive(Parser, Debug)]
struct Args {
    /// `digits` (64-128-8 on the real digits) or `mnist` (784-400-20 on random binary images).
    #[arg(long, default_value = "digits")]
    shape: String,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    #[arg(long, default_value_t = 300)]
    steps: usize,
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Run only one side (`plain`, `plain-adam` or `lib`) for `steps` steps, e.g. under a
    /// profiler; prints its rate.
    #[arg(long)]
    only: Option<String>,
}

type Error = Box<dyn std::error::Error>;

fn digits() -> std::result::Result<Vec<f32>, Error> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/digits.csv.gz");
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(path)?).read_to_string(&mut text)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Vec<f32> = line
            .split(',')
            .map(|s| s.trim().parse())
            .collect::<std::result::Result<_, _>>()?;
        out.extend(v[..64].iter().map(|x| x / 16.0));
    }
    Ok(out)
}

/// A dense layer: candle-nn's (what a plain candle user writes; the activation as a
/// separate op) or the library's fused `ppl::nn::Linear` (same parameters and init).
enum Layer {
    Candle(Linear, bool),
    Ppl(ppl::nn::Linear),
}

impl Layer {
    fn new(vb: VarBuilder, i: usize, o: usize, relu: bool, fused: bool) -> Result<Self> {
        Ok(if fused {
            let act = if relu {
                Activation::Relu
            } else {
                Activation::Identity
            };
            Layer::Ppl(ppl::nn::Linear::build(i, o, act, vb)?)
        } else {
            Layer::Candle(candle_nn::linear(i, o, vb)?, relu)
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Layer::Candle(l, false) => l.forward(x)?,
            Layer::Candle(l, true) => l.forward(x)?.relu()?,
            Layer::Ppl(l) => l.forward(x)?,
        })
    }
}

struct Nets {
    enc: Layer,
    loc: Layer,
    logvar: Layer,
    dec: Layer,
    out: Layer,
}

impl Nets {
    fn new(vb: VarBuilder, d: usize, h: usize, z: usize, fused: bool) -> Result<Self> {
        Ok(Nets {
            enc: Layer::new(vb.pp("encoder/fc1"), d, h, true, fused)?,
            loc: Layer::new(vb.pp("encoder/fc21"), h, z, false, fused)?,
            logvar: Layer::new(vb.pp("encoder/fc22"), h, z, false, fused)?,
            dec: Layer::new(vb.pp("decoder/fc1"), z, h, true, fused)?,
            out: Layer::new(vb.pp("decoder/fc2"), h, d, false, fused)?,
        })
    }
    fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let h = self.enc.forward(x)?;
        Ok((
            self.loc.forward(&h)?,
            (self.logvar.forward(&h)? * 0.5)?.exp()?,
        ))
    }
    fn decode(&self, z: &Tensor) -> Result<Tensor> {
        self.out.forward(&self.dec.forward(z)?)
    }
}

fn main() -> std::result::Result<(), Error> {
    let a = Args::parse();
    // The library's thread policy: matmul threads from RAYON_NUM_THREADS (default: all
    // cores), candle's spinning element-wise pool at one thread unless CANDLE_NUM_THREADS
    // says otherwise.
    let policy = ppl::threads::configure(None);
    let _v = ppl::validation::disable();
    let (d, h, z, data) = match a.shape.as_str() {
        "digits" => (64, 128, 8, digits()?),
        "mnist" => {
            let mut rng = PplRng::seed_from_u64(0);
            let v: Vec<f32> = (0..8192 * 784)
                .map(|_| if rng.uniform_open() < 0.5 { 0.0 } else { 1.0 })
                .collect();
            (784, 400, 20, v)
        }
        s => return Err(format!("unknown shape {s} (digits or mnist)").into()),
    };
    let n = data.len() / d;
    let xs = Tensor::from_vec(data, (n, d), &Device::Cpu)?;
    let nb = n / a.batch;
    let batches: Vec<Tensor> = (0..nb)
        .map(|i| xs.narrow(0, i * a.batch, a.batch))
        .collect::<candle_core::Result<_>>()?;
    let threads = format!(
        "{} matmul / {} elementwise",
        policy.matmul_threads, policy.elementwise_threads
    );

    // Plain candle, twice: with candle-nn's AdamW (what a candle user writes) and with the
    // library's Adam (same optimiser as the library side, so the difference to the library
    // is only tracing, handlers and guide plumbing).
    let plain_loss =
        |nets: &Nets, x: &Tensor, rng: &mut PplRng| -> std::result::Result<Tensor, Error> {
            let (loc, scale) = nets.encode(x)?;
            let eps: Vec<f32> = rng
                .normals(a.batch * z)
                .into_iter()
                .map(|v| v as f32)
                .collect();
            let eps = Tensor::from_vec(eps, (a.batch, z), &Device::Cpu)?;
            let zs = (&loc + (&eps * &scale)?)?;
            let logits = nets.decode(&zs)?;
            // Bernoulli log-likelihood x·l − softplus(l), softplus(l) = max(l,0) + ln(1 + e^{−|l|}),
            // written with the detached sign s as (x − (1+s)/2)·l − ln(1 + e^{−s·l}): the
            // same maths as the library's `Bernoulli::log_prob`, so the comparison isolates
            // the library's plumbing (the relu/abs form costs 3x more in candle's backward).
            let s = logits.sign()?.detach();
            let tail = ((&logits * s.neg()?)?.exp()? + 1.0)?.log()?;
            let ll = ((x - s.affine(0.5, 0.5)?)? * &logits)?;
            let ll = (ll - tail)?.sum_all()?;
            let lp = (zs.sqr()? * -0.5)?.sum_all()?;
            let lq = ((eps.sqr()? * -0.5)? - scale.log()?)?.sum_all()?;
            let elbo = ((ll + lp)? - lq)?;
            Ok((elbo.neg()? / a.batch as f64)?)
        };
    let varmap = VarMap::new();
    let nets = Nets::new(
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
        d,
        h,
        z,
        false,
    )?;
    let mut opt = candle_nn::AdamW::new(
        varmap.all_vars(),
        candle_nn::ParamsAdamW {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
    )?;
    let mut rng = PplRng::seed_from_u64(1);
    let mut i = 0;
    // The plain loss with candle-nn layers and AdamW: what a candle user writes.
    let mut plain_step = || -> std::result::Result<(), Error> {
        let loss = plain_loss(&nets, &batches[i % nb], &mut rng)?;
        i += 1;
        opt.backward_step(&loss)?;
        Ok(())
    };
    let store2 = ppl::ParamStore::new();
    let nets2 = Nets::new(
        store2.var_builder(DType::F32, &Device::Cpu, 2),
        d,
        h,
        z,
        true,
    )?;
    let mut adam2 = Adam::new();
    let mut rng2 = PplRng::seed_from_u64(1);
    let mut i2 = 0;
    let vars2 = store2.vars();
    let mut plain_adam_step = || -> std::result::Result<(), Error> {
        let loss = plain_loss(&nets2, &batches[i2 % nb], &mut rng2)?;
        i2 += 1;
        adam2.step(&vars2, &loss.backward()?, 1e-3)?;
        Ok(())
    };

    // The library: the same networks in the context's store, model and guide as programs.
    let mut ctx = Ctx::new(1);
    let lib = Nets::new(
        ctx.params().var_builder(DType::F32, &Device::Cpu, 2),
        d,
        h,
        z,
        true,
    )?;
    let cur = Cell::new(0usize);
    let model = |c: &mut Ctx| -> Result<()> {
        let x = &batches[cur.get() % nb];
        c.plate("data", a.batch, PlateOpts::default(), |c, _| {
            let prior = Normal::standard(&[a.batch, z], DType::F32, &Device::Cpu)?.to_event(1)?;
            let zs = c.sample("latent", prior)?;
            let logits = lib.decode(&zs)?;
            c.observe("obs", Bernoulli::from_logits(&logits)?.to_event(1)?, x)?;
            Ok(())
        })
    };
    let guide = |c: &mut Ctx| -> Result<()> {
        let x = &batches[cur.get() % nb];
        c.plate("data", a.batch, PlateOpts::default(), |c, _| {
            let (loc, scale) = lib.encode(x)?;
            c.sample("latent", Normal::new(&loc, &scale)?.to_event(1)?)?;
            Ok(())
        })
    };
    let mut svi = Svi::new(&model, &guide, TraceElbo::new());
    let mut trainer = Trainer::new(Adam::new(), 1e-3)?;
    svi.init(&mut ctx)?;
    let mut lib_step = || -> std::result::Result<(), Error> {
        trainer.step(&mut ctx, &mut svi)?;
        cur.set(cur.get() + 1);
        Ok(())
    };

    if let Some(side) = a.only.as_deref() {
        let f: &mut dyn FnMut() -> std::result::Result<(), Error> = match side {
            "plain" => &mut plain_step,
            "plain-adam" => &mut plain_adam_step,
            "lib" => &mut lib_step,
            s => return Err(format!("unknown side {s} (plain, plain-adam or lib)").into()),
        };
        let t = Instant::now();
        for _ in 0..a.steps {
            f()?;
        }
        let rate = a.steps as f64 / t.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"bench": "vae", "side": side, "steps_per_s": rate})
        );
        return Ok(());
    }

    // Interleaved at the finest grain: every step runs all three sides, in an order that
    // rotates from step to step (so no side always follows the same one), each timed on
    // its own. Drift of the shared machine then hits the sides alike even within a round.
    for _ in 0..20 {
        plain_step()?;
        plain_adam_step()?;
        lib_step()?;
    }
    let (mut r_plain, mut r_plain_adam, mut r_lib) = (Vec::new(), Vec::new(), Vec::new());
    let mut ratios = Vec::new();
    for _ in 0..a.repeats {
        let mut secs = [0.0f64; 3];
        for step in 0..a.steps {
            for j in 0..3 {
                let side = (step + j) % 3;
                let t = Instant::now();
                match side {
                    0 => plain_step()?,
                    1 => plain_adam_step()?,
                    _ => lib_step()?,
                }
                secs[side] += t.elapsed().as_secs_f64();
            }
        }
        r_plain.push(a.steps as f64 / secs[0]);
        r_plain_adam.push(a.steps as f64 / secs[1]);
        r_lib.push(a.steps as f64 / secs[2]);
        ratios.push(secs[2] / secs[1]);
    }
    let median = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        s[s.len() / 2]
    };
    let (plain, plain_adam, library) = (median(&r_plain), median(&r_plain_adam), median(&r_lib));
    let shape = [d, h, z];
    let line = |lib: &str, med: f64, rates: &[f64]| serde_json::json!({"bench": "vae", "lib": lib, "shape": shape, "batch": a.batch, "threads": threads, "steps_per_s_median": med, "rates": rates});
    println!(
        "{}",
        line("candle-plain (candle-nn Linear + AdamW)", plain, &r_plain)
    );
    println!(
        "{}",
        line(
            "candle-plain (ppl::nn::Linear + ppl Adam)",
            plain_adam,
            &r_plain_adam
        )
    );
    println!("{}", line("ppl (Svi + TraceElbo)", library, &r_lib));
    let overhead = 100.0 * (median(&ratios) - 1.0);
    println!(
        "{}",
        serde_json::json!({"bench": "vae", "shape": shape, "batch": a.batch, "threads": threads, "library_overhead_percent": overhead, "per_repeat_time_ratios": ratios, "library_vs_candle_adamw_time_ratio": plain / library})
    );
    Ok(())
}
