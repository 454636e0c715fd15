//! Checkpoints: resuming is bit-identical to an uninterrupted run; bad files are typed errors.

use candle_core::{Device, Tensor};
use ppl_core::prelude::*;
use ppl_inference::engines::{Baseline, Svi, TraceElbo};
use ppl_inference::{load_checkpoint, save_checkpoint};
use ppl_inference::{Adam, Engine, ExponentialDecay, Optimizer, ParamGroup, Sgd, Trainer};

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
fn train(ctx: &mut Ctx, trainer: &mut Trainer, steps: usize) -> Vec<f64> {
    let mut elbos = Vec::new();
    for _ in 0..steps {
        let x = Tensor::from_vec(ctx.base_rng().normals(8), 8, &Device::Cpu).unwrap();
        let x = (x + 1.0).unwrap();
        let m = |c: &mut Ctx| model(c, &x);
        let mut svi = Svi::new(&m, &guide, TraceElbo::new());
        elbos.push(trainer.step(ctx, &mut svi).unwrap().unwrap());
    }
    elbos
}

/// The engine whose name and state the checkpoints of `train` carry.
fn engine_for(x: &Tensor, f: impl FnOnce(&mut dyn Engine)) {
    let m = |c: &mut Ctx| model(c, x);
    f(&mut Svi::new(&m, &guide, TraceElbo::new()))
}

fn params(ctx: &Ctx) -> Vec<f64> {
    ["loc", "sd"]
        .iter()
        .map(|n| ctx.params().get(n).unwrap().to_scalar::<f64>().unwrap())
        .collect()
}

fn resume_is_bit_identical<O: Optimizer + 'static>(make: impl Fn() -> O, tag: &str) {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");

    let mut a = Ctx::new(11);
    let mut trainer_a = Trainer::new(make(), 0.05).unwrap();
    let straight = train(&mut a, &mut trainer_a, 30);

    let mut b = Ctx::new(11);
    let mut trainer_b = Trainer::new(make(), 0.05).unwrap();
    let mut resumed = train(&mut b, &mut trainer_b, 12);
    let x = s(0.0);
    engine_for(&x, |e| {
        save_checkpoint(&path, &mut b, &trainer_b, e).unwrap()
    });
    drop((b, trainer_b));

    let mut c = Ctx::new(999); // a different seed: the checkpoint's RNG state must win
    let mut trainer_c = Trainer::new(make(), 0.05).unwrap();
    engine_for(&x, |e| {
        assert_eq!(
            load_checkpoint(&path, &mut c, &mut trainer_c, e).unwrap(),
            12
        )
    });
    resumed.extend(train(&mut c, &mut trainer_c, 18));

    assert_eq!(straight, resumed, "{tag}: ELBO sequence");
    assert_eq!(params(&a), params(&c), "{tag}: final parameters");
    assert_eq!(trainer_c.optimizer().steps(), 30);
    assert_eq!(trainer_c.steps(), 30);
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
    let x = s(0.0);
    engine_for(&x, |e| {
        save_checkpoint(&path, &mut ctx, &trainer, e).unwrap()
    });
    let bytes = std::fs::read(&path).unwrap();
    let load = |p: &std::path::Path, ctx: &mut Ctx, t: &mut Trainer| {
        let mut out = None;
        engine_for(&x, |e| out = Some(load_checkpoint(p, ctx, t, e)));
        out.unwrap()
    };

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("garbage", b"definitely not safetensors".to_vec()),
    ];
    for (name, content) in cases {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        let mut fresh = Ctx::new(2);
        let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
        let e = load(&p, &mut fresh, &mut t).unwrap_err();
        assert!(e.is_file(), "{name}: {e}");
        assert!(
            fresh.params().is_empty() && t.optimizer().steps() == 0 && t.steps() == 0,
            "{name}: nothing changed"
        );
    }
    // a parameter file is not a checkpoint
    ctx.params().save(dir.join("params")).unwrap();
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    let e = load(&dir.join("params"), &mut Ctx::new(3), &mut t).unwrap_err();
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
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    let e = load(&path, &mut other, &mut t).unwrap_err();
    assert!(
        e.to_string()
            .contains("holds shape [] but the store has shape [3]"),
        "{e}"
    );
    assert_eq!(t.optimizer().steps(), 0);
    assert_eq!(t.steps(), 0);
    // another engine, or other parameter groups: typed errors naming what differs
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    let m = |c: &mut Ctx| model(c, &x);
    let mut iwae = Svi::new(&m, &guide, ppl_inference::engines::Iwae::new(2).unwrap());
    let e = load_checkpoint(&path, &mut Ctx::new(5), &mut t, &mut iwae).unwrap_err();
    assert!(e.to_string().contains("engine `svi/trace_elbo`"), "{e}");
    let mut t = Trainer::with_groups(vec![
        ParamGroup::new("a", Adam::new(), 0.1)
            .unwrap()
            .with_prefixes(["loc"])
            .unwrap(),
        ParamGroup::new("b", Adam::new(), 0.1).unwrap(),
    ])
    .unwrap();
    let e = load(&path, &mut Ctx::new(6), &mut t).unwrap_err();
    assert!(e.to_string().contains("parameter groups [params]"), "{e}");
    assert_eq!(other.params().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A model with a discrete latent (score-function terms with moving-average baselines), two
/// parameter groups with their own rates, one on a decaying schedule, and a free variable
/// outside the store: `Trainer::run` resumed from a checkpoint equals the straight run bit
/// for bit (baselines, every group's optimiser state, the schedule's clock, the free
/// variable and the RNG are all restored).
#[test]
fn resume_through_run_with_groups_baselines_schedules_and_free_variables_is_bit_identical() {
    let x = Tensor::new(&[0.3f64, 1.1, -0.4, 2.0], &Device::Cpu).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let mu = ctx.sample("mu", Normal::new(&s(0.0), &s(1.0))?)?;
        let b = ctx.sample("b", Bernoulli::from_probs(&s(0.5))?)?;
        let shift = ctx.param("model/shift", || Ok(s(0.0)), Constraint::Real)?;
        let loc = ((mu + b)? + shift)?;
        ctx.plate("data", 4, PlateOpts::default(), |ctx, _| {
            ctx.observe("x", Normal::new(&loc, &s(1.0))?, &x)
        })?;
        Ok(())
    };
    let run = |ctx: &mut Ctx,
               free: &candle_core::Var,
               steps: u64,
               state: Option<&std::path::Path>,
               save: Option<&std::path::Path>|
     -> (Vec<f64>, Vec<f64>) {
        let guide = |ctx: &mut Ctx| -> Result<()> {
            let loc = ctx.param("guide/loc", || Ok(s(0.0)), Constraint::Real)?;
            let p = ctx.param("guide/p", || Ok(s(0.5)), Constraint::UnitInterval)?;
            let loc = loc.broadcast_add(free.as_tensor())?;
            ctx.sample("mu", Normal::new(&loc, &s(0.7))?)?;
            ctx.sample("b", Bernoulli::from_probs(&p)?)?;
            Ok(())
        };
        let elbo = TraceElbo::new()
            .with_baseline(Baseline::MovingAverage(0.8))
            .unwrap();
        let mut svi = Svi::new(&model, &guide, elbo);
        let mut trainer = Trainer::with_groups(vec![
            ParamGroup::new("model", Adam::new(), 0.05)
                .unwrap()
                .with_prefixes(["model/"])
                .unwrap()
                .with_schedule(ExponentialDecay {
                    lr0: 0.05,
                    gamma: 0.9,
                }),
            ParamGroup::new("guide", Sgd::new(0.5).unwrap(), 0.02).unwrap(),
            ParamGroup::free(
                "free",
                vec![("offset".into(), free.clone())],
                Adam::new(),
                0.01,
            )
            .unwrap(),
        ])
        .unwrap();
        if let Some(p) = state {
            load_checkpoint(p, ctx, &mut trainer, &mut svi).unwrap();
        }
        let report = trainer.run(ctx, &mut svi, steps).unwrap();
        if let Some(p) = save {
            save_checkpoint(p, ctx, &trainer, &svi).unwrap();
            assert!(
                !svi.state().unwrap().is_empty(),
                "the baselines are engine state"
            );
        }
        let mut p: Vec<f64> = report
            .params
            .iter()
            .map(|(_, t)| t.to_scalar::<f64>().unwrap())
            .collect();
        p.push(free.as_tensor().to_scalar::<f64>().unwrap());
        (report.losses, p)
    };
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-groups-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");
    let zero = || candle_core::Var::from_tensor(&s(0.0)).unwrap();
    let (straight, p_straight) = run(&mut Ctx::new(3), &zero(), 40, None, None);
    let (mut resumed, _) = run(&mut Ctx::new(3), &zero(), 15, None, Some(&path));
    let (rest, p_resumed) = run(&mut Ctx::new(77), &zero(), 25, Some(&path), None);
    resumed.extend(rest);
    assert_eq!(straight, resumed, "loss sequence");
    assert_eq!(p_straight, p_resumed, "parameters and the free variable");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A checkpoint of `train`'s model after 3 Adam (or SGD) steps, in `dir`.
fn saved(
    dir: &std::path::Path,
    make: impl Fn() -> Box<dyn FnOnce() -> Trainer>,
) -> std::path::PathBuf {
    let path = dir.join("ok.ckpt");
    let mut ctx = Ctx::new(1);
    let mut trainer = make()();
    train(&mut ctx, &mut trainer, 3);
    let x = s(0.0);
    engine_for(&x, |e| {
        save_checkpoint(&path, &mut ctx, &trainer, e).unwrap()
    });
    path
}

fn try_load(p: &std::path::Path, ctx: &mut Ctx, t: &mut Trainer) -> Result<u64> {
    let x = s(0.0);
    let mut out = None;
    engine_for(&x, |e| out = Some(load_checkpoint(p, ctx, t, e)));
    out.unwrap()
}

fn adam_trainer() -> Box<dyn FnOnce() -> Trainer> {
    Box::new(|| Trainer::new(Adam::new(), 0.05).unwrap())
}

/// A checkpoint of another model (other names, shapes or constraints) into a store that
/// already has parameters: a file error naming every difference, and nothing changes. An
/// empty store still takes the file's parameters.
#[test]
fn a_checkpoint_of_another_model_is_refused_naming_what_differs() {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-other-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = saved(&dir, adam_trainer);
    let mut ctx = Ctx::new(5);
    let two = Tensor::new(&[1.0f64, 2.0], &Device::Cpu).unwrap();
    ctx.params().insert("a", &two, &Constraint::Real).unwrap();
    ctx.params()
        .insert("loc", &s(0.7), &Constraint::Positive)
        .unwrap();
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    let e = try_load(&path, &mut ctx, &mut t).unwrap_err();
    let msg = e.to_string();
    assert!(e.is_file(), "{msg}");
    assert!(msg.contains("do not match the parameter store"), "{msg}");
    assert!(msg.contains("missing `a`"), "{msg}");
    assert!(msg.contains("extra `sd`"), "{msg}");
    assert!(
        msg.contains("`loc`: constraint `real` in the file but `positive` in the store"),
        "{msg}"
    );
    assert_eq!(ctx.params().names(), vec!["a", "loc"], "nothing added");
    assert!((ctx.params().get("loc").unwrap().to_scalar::<f64>().unwrap() - 0.7).abs() < 1e-12);
    assert_eq!((t.steps(), t.optimizer().steps()), (0, 0));
    // the same model's store (same names, shapes, constraints) loads
    let mut same = Ctx::new(6);
    same.params()
        .insert("loc", &s(0.1), &Constraint::Real)
        .unwrap();
    same.params()
        .insert("sd", &s(2.0), &Constraint::Positive)
        .unwrap();
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    assert_eq!(try_load(&path, &mut same, &mut t).unwrap(), 3);
    // a fresh store takes everything
    let mut fresh = Ctx::new(7);
    let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
    assert_eq!(try_load(&path, &mut fresh, &mut t).unwrap(), 3);
    assert_eq!(params(&fresh), params(&same));
    let _ = std::fs::remove_dir_all(&dir);
}

/// An optimiser state whose shape does not fit its variable (Adam's m, SGD's u): a file
/// error naming the group, the variable and both shapes; nothing changes.
#[test]
fn an_optimiser_state_of_the_wrong_shape_is_refused() {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-optshape-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sgd = || -> Box<dyn FnOnce() -> Trainer> {
        Box::new(|| Trainer::new(Sgd::new(0.9).unwrap(), 0.05).unwrap())
    };
    for (tag, make, key) in [
        (
            "adam",
            adam_trainer as fn() -> Box<dyn FnOnce() -> Trainer>,
            "optim/params/m/loc",
        ),
        ("sgd", sgd, "optim/params/u/sd"),
    ] {
        let sub = dir.join(tag);
        std::fs::create_dir_all(&sub).unwrap();
        let path = saved(&sub, make);
        let (mut tensors, meta) = ppl_core::read_safetensors(&path, &Device::Cpu).unwrap();
        assert!(tensors.contains_key(key), "{tag}: {:?}", tensors.keys());
        tensors.insert(
            key.into(),
            Tensor::zeros(2, candle_core::DType::F64, &Device::Cpu).unwrap(),
        );
        let bad = sub.join("bad.ckpt");
        ppl_core::write_safetensors(&bad, tensors.into_iter().collect(), meta).unwrap();
        let mut ctx = Ctx::new(2);
        let mut t = make()();
        let e = try_load(&bad, &mut ctx, &mut t).unwrap_err();
        let msg = e.to_string();
        let var = key.rsplit('/').next().unwrap();
        assert!(e.is_file(), "{tag}: {msg}");
        assert!(
            msg.contains("of group `params`")
                && msg.contains(&format!("variable `{var}` is F64 []"))
                && msg.contains("F64 [2] in the file"),
            "{tag}: {msg}"
        );
        assert!(ctx.params().is_empty() && t.steps() == 0 && t.optimizer().steps() == 0);
        // the next step would have failed with a raw candle shape error; it is never reached
        let mut t = make()();
        assert_eq!(
            try_load(&path, &mut ctx, &mut t).unwrap(),
            3,
            "{tag}: the good file"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flipped bytes in a tensor's data: the checksum catches them (a file error naming the
/// tensor), instead of loading NaN or wrong parameters.
#[test]
fn corrupted_tensor_bytes_fail_the_checksum() {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-crc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = saved(&dir, adam_trainer);
    let good = std::fs::read(&path).unwrap();
    // the data section ends the file: flip bytes of the last tensor's data (the header
    // stays valid JSON, the shapes and lengths stay consistent)
    for at in [good.len() - 1, good.len() - 8] {
        let mut bytes = good.clone();
        bytes[at] ^= 0x7f;
        let bad = dir.join("bad.ckpt");
        std::fs::write(&bad, &bytes).unwrap();
        let mut ctx = Ctx::new(2);
        let mut t = Trainer::new(Adam::new(), 0.05).unwrap();
        let e = try_load(&bad, &mut ctx, &mut t).unwrap_err();
        assert!(e.is_file(), "{e}");
        assert!(e.to_string().contains("is corrupted"), "{e}");
        assert!(ctx.params().is_empty() && t.steps() == 0);
    }
    // a parameter file too
    let ctx = Ctx::new(1);
    ctx.params()
        .insert("w", &s(1.5), &Constraint::Real)
        .unwrap();
    let pfile = dir.join("params.safetensors");
    ctx.params().save(&pfile).unwrap();
    let mut bytes = std::fs::read(&pfile).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x01;
    std::fs::write(&pfile, &bytes).unwrap();
    let store = ParamStore::new();
    let e = store.load(&pfile, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("tensor `w` is corrupted"), "{e}");
    assert!(store.is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Trains `model`/`guide` (fixed data) with the objective `make` builds through
/// `Trainer::run` for `steps` steps, optionally loading a checkpoint first and saving one
/// after; returns the losses and the final parameters.
fn run_objective<O: ppl_inference::engines::Objective>(
    make: &dyn Fn() -> O,
    seed: u64,
    steps: u64,
    load: Option<&std::path::Path>,
    save: Option<&std::path::Path>,
) -> (Vec<f64>, Vec<f64>) {
    let x = Tensor::new(&[0.3f64, 1.1, -0.4, 2.0, 0.8], &Device::Cpu).unwrap();
    let m = |c: &mut Ctx| model(c, &x);
    let mut ctx = Ctx::new(seed);
    let mut svi = Svi::new(&m, &guide, make());
    let mut trainer = Trainer::new(Adam::new(), 0.05)
        .unwrap()
        .with_schedule(ExponentialDecay {
            lr0: 0.05,
            gamma: 0.97,
        });
    if let Some(p) = load {
        load_checkpoint(p, &mut ctx, &mut trainer, &mut svi).unwrap();
    }
    let report = trainer.run(&mut ctx, &mut svi, steps).unwrap();
    if let Some(p) = save {
        save_checkpoint(p, &mut ctx, &trainer, &svi).unwrap();
    }
    (report.losses, params(&ctx))
}

fn resume_objective<O: ppl_inference::engines::Objective>(make: &dyn Fn() -> O, tag: &str) {
    let dir = std::env::temp_dir().join(format!("ppl-ckpt-obj-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.ckpt");
    let (straight, p_straight) = run_objective(make, 5, 30, None, None);
    let (mut resumed, _) = run_objective(make, 5, 11, None, Some(&path));
    // Another seed: the checkpoint's RNG state, schedule clock and optimiser state must win.
    let (rest, p_resumed) = run_objective(make, 1234, 19, Some(&path), None);
    resumed.extend(rest);
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&straight), bits(&resumed), "{tag}: loss sequence");
    assert_eq!(
        bits(&p_straight),
        bits(&p_resumed),
        "{tag}: final parameters"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_is_bit_identical_for_every_objective() {
    use ppl_inference::engines::Iwae;
    resume_objective(&|| TraceElbo::new().with_particles(4).unwrap(), "elbo-k4");
    resume_objective(
        &|| {
            TraceElbo::new()
                .with_baseline(Baseline::MovingAverage(0.9))
                .unwrap()
        },
        "elbo-baseline",
    );
    resume_objective(&|| Iwae::new(4).unwrap(), "iwae");
    resume_objective(&|| Iwae::renyi(0.5, 4).unwrap(), "renyi");
    resume_objective(&|| Iwae::new(4).unwrap().with_dreg().unwrap(), "dreg");
}
