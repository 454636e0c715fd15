//! Checkpoints: resuming is bit-identical to an uninterrupted run; bad files are typed errors.

use candle_core::{Device, Tensor};
use ppl_core::prelude::*;
use ppl_inference::checkpoint::{load_checkpoint, save_checkpoint};
use ppl_inference::optim::{Adam, Optimizer, Sgd};
use ppl_inference::{Svi, TraceElbo, Trainer};

fn s(v: f64) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn model(ctx: &mut Ctx, x: &Tensor) -> Result<()> {
    let n = x.dim(0)?;
    let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        ctx.observe("x", Normal::new(&z, &s(0.5))?, x)
    })?;
    Ok(())
}

fn guide(ctx: &mut Ctx) -> Result<()> {
    let loc = ctx.param("loc", || Ok(s(0.0)), Constraint::Real)?;
    let sd = ctx.param("sd", || Ok(s(1.0)), Constraint::Positive)?;
    ctx.sample("z", Normal::new(&loc, &sd)?)?;
    Ok(())
}

/// Data for each step come from the context's own RNG, so the RNG state matters.
fn train<O: Optimizer>(ctx: &mut Ctx, trainer: &mut Trainer<O>, steps: usize) -> Vec<f64> {
    let mut elbos = Vec::new();
    for _ in 0..steps {
        let x = Tensor::from_vec(ctx.base_rng().normals(8), 8, &Device::Cpu).unwrap();
        let x = (x + 1.0).unwrap();
        let m = |c: &mut Ctx| model(c, &x);
        let mut svi = Svi::new(&m, &guide, TraceElbo::new());
        let step = trainer.optimizer.steps();
        elbos.push(trainer.step(ctx, &mut svi, step).unwrap().unwrap());
    }
    elbos
}

fn params(ctx: &Ctx) -> Vec<f64> {
    ["loc", "sd"]
        .iter()
        .map(|n| ctx.params().get(n).unwrap().to_scalar::<f64>().unwrap())
        .collect()
}

fn resume_is_bit_identical<O: Optimizer>(make: impl Fn() -> O, tag: &str) {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");

    let mut a = Ctx::new(11);
    let mut trainer_a = Trainer::new(make(), 0.05).unwrap();
    let straight = train(&mut a, &mut trainer_a, 30);

    let mut b = Ctx::new(11);
    let mut trainer_b = Trainer::new(make(), 0.05).unwrap();
    let mut resumed = train(&mut b, &mut trainer_b, 12);
    save_checkpoint(&path, &mut b, &trainer_b.optimizer).unwrap();
    drop((b, trainer_b));

    let mut c = Ctx::new(999); // a different seed: the checkpoint's RNG state must win
    let mut trainer_c = Trainer::new(make(), 0.05).unwrap();
    assert_eq!(
        load_checkpoint(&path, &mut c, &mut trainer_c.optimizer).unwrap(),
        12
    );
    resumed.extend(train(&mut c, &mut trainer_c, 18));

    assert_eq!(straight, resumed, "{tag}: ELBO sequence");
    assert_eq!(params(&a), params(&c), "{tag}: final parameters");
    assert_eq!(trainer_c.optimizer.steps(), 30);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resuming_adam_and_sgd_is_bit_identical() {
    resume_is_bit_identical(Adam::new, "adam");
    resume_is_bit_identical(|| Sgd::new(0.9).unwrap(), "sgd");
}

#[test]
fn corrupt_or_mismatched_checkpoints_are_typed_errors_and_change_nothing() {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ok.ckpt");
    let mut ctx = Ctx::new(1);
    let mut trainer = Trainer::new(Adam::new(), 0.05).unwrap();
    train(&mut ctx, &mut trainer, 3);
    save_checkpoint(&path, &mut ctx, &trainer.optimizer).unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"definitely not safetensors".to_vec()),
    ];
    for (name, content) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let mut fresh = Ctx::new(2);
        let mut opt = Adam::new();
        let e = load_checkpoint(&p, &mut fresh, &mut opt).unwrap_err();
        assert!(matches!(e, PplError::File { .. }), "{name}: {e}");
        assert!(
            fresh.params().is_empty() && opt.steps() == 0,
            "{name}: nothing changed"
        );
    }
    // a parameter file is not a checkpoint
    ctx.params().save(dir.join("params")).unwrap();
    let e = load_checkpoint(dir.join("params"), &mut Ctx::new(3), &mut Adam::new()).unwrap_err();
    assert!(e.to_string().contains("not a ppl checkpoint"), "{e}");
    // a store whose parameter has another shape: error, and the optimiser keeps its state
    let mut other = Ctx::new(4);
    other
        .params()
        .insert(
            "loc",
            &Tensor::zeros(3, candle_core::DType::F64, &Device::Cpu).unwrap(),
            &Constraint::Real,
        )
        .unwrap();
    let mut opt = Adam::new();
    let e = load_checkpoint(&path, &mut other, &mut opt).unwrap_err();
    assert!(
        e.to_string()
            .contains("holds shape [] but the store has shape [3]"),
        "{e}"
    );
    assert_eq!(opt.steps(), 0);
    assert_eq!(other.params().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}
