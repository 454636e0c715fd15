//! Gen-style vocabulary, guide compatibility, the parameter store and transforms.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{host, lnorm, s, scalar, t, t1};
use ppl_core::prelude::*;
use ppl_core::transforms::biject_to;

const CPU: Device = Device::Cpu;

/// z ~ N(0, 1); y ~ N(z, 0.5) (latent unless conditioned).
fn model(ctx: &mut Ctx) -> Result<Tensor> {
    let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
    ctx.sample("y", Normal::new(&z, &s(0.5))?)
}

#[test]
fn simulate_generate_assess_agree_with_closed_forms() {
    let mut ctx = Ctx::new(0);
    let (_, tr) = simulate(&mut ctx, &model).unwrap();
    let (z, y) = (
        scalar(&tr.value("z").unwrap()),
        scalar(&tr.value("y").unwrap()),
    );
    let lj = scalar(&tr.log_joint().unwrap());
    assert!((lj - (lnorm(z, 0.0, 1.0) + lnorm(y, z, 0.5))).abs() < 1e-12);
    // assess of the simulated assignment is its log joint
    let a = assess(&mut ctx, &model, &ChoiceMap::latents_of(&tr)).unwrap();
    assert!((scalar(&a) - lj).abs() < 1e-12);
    // generate with y constrained: weight = log p(y | z) for the z drawn
    let (_, gtr, w) = generate(&mut ctx, &model, &ChoiceMap::new().with("y", s(0.8))).unwrap();
    let zg = scalar(&gtr.value("z").unwrap());
    assert!((scalar(&w) - lnorm(0.8, zg, 0.5)).abs() < 1e-12);
    // generate with nothing constrained has weight 0
    let (_, _, w0) = generate(&mut ctx, &model, &ChoiceMap::new()).unwrap();
    assert_eq!(scalar(&w0), 0.0);
}

#[test]
fn generate_weights_estimate_the_exact_marginal_likelihood() {
    // p(y) = N(y; 0, sqrt(1 + 0.25)). Importance sampling with the prior, K particles in one
    // vectorised run (a particle plate). The weights w = N(y; z, 0.5) have relative variance
    // E[w²]/E[w]² − 1 ≈ 0.9 at y = 0.8, so the relative error of the mean with K = 20000 has
    // sd ≈ sqrt(0.9 / 20000) ≈ 0.007; a tolerance of 0.03 on the log is > 4 sd.
    let k = 20000;
    let mut ctx = Ctx::new(1);
    let particles =
        |ctx: &mut Ctx| ctx.plate("particles", k, PlateOpts::default(), |ctx, _| model(ctx));
    let (_, tr, _) = generate(&mut ctx, &particles, &ChoiceMap::new().with("y", s(0.8))).unwrap();
    let per = tr.site("y").unwrap().unscaled_log_prob().unwrap();
    let lw = host(&per);
    let m = lw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let est = m + (lw.iter().map(|v| (v - m).exp()).sum::<f64>() / k as f64).ln();
    let exact = lnorm(0.8, 0.0, 1.25f64.sqrt());
    assert!(
        (est - exact).abs() < 0.03,
        "IS estimate {est} vs exact {exact}"
    );
}

#[test]
fn assess_and_generate_error_paths_name_the_site() {
    let mut ctx = Ctx::new(2);
    let err = assess(&mut ctx, &model, &ChoiceMap::new().with("y", s(0.1))).unwrap_err();
    assert!(
        matches!(&err, PplError::GuideMismatch { site, .. } if site == "z"),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("assess needs a value for every latent"));
    let err = generate(&mut ctx, &model, &ChoiceMap::new().with("w", s(0.1))).unwrap_err();
    assert!(
        matches!(&err, PplError::GuideMismatch { site, .. } if site == "w"),
        "{err}"
    );
}

#[test]
fn check_guide_catches_every_mismatch() {
    let mut ctx = Ctx::new(3);
    let model = |ctx: &mut Ctx| {
        ctx.sample("rate", Gamma::new(&s(2.0), &s(1.0))?)?;
        ctx.sample("w", Normal::standard(&[3], DType::F64, &CPU)?.to_event(1)?)?;
        ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?, &s(0.5))
    };
    let (_, mtr) = ctx.trace(model).unwrap();
    let good = |ctx: &mut Ctx| {
        ctx.sample("rate", LogNormal::new(&s(0.0), &s(1.0))?)?;
        ctx.sample(
            "w",
            Normal::new(&Tensor::zeros(3, DType::F64, &CPU)?, &s(1.0))?.to_event(1)?,
        )
    };
    let (_, g) = ctx.trace(good).unwrap();
    check_guide(&mtr, &g).unwrap();
    // A multivariate Normal covers a `Normal(..).to_event(1)` latent (both are ℝ³).
    let mvn = |ctx: &mut Ctx| {
        ctx.sample("rate", LogNormal::new(&s(0.0), &s(1.0))?)?;
        let eye = Tensor::eye(3, DType::F64, &CPU)?;
        ctx.sample(
            "w",
            MultivariateNormal::new(&Tensor::zeros(3, DType::F64, &CPU)?, &eye)?,
        )
    };
    let (_, g) = ctx.trace(mvn).unwrap();
    check_guide(&mtr, &g).unwrap();
    type Guide = Box<dyn Fn(&mut Ctx) -> Result<Tensor>>;
    let cases: Vec<(&str, Guide, &str)> = vec![
        (
            "rate",
            Box::new(|ctx: &mut Ctx| {
                ctx.sample("w", Normal::standard(&[3], DType::F64, &CPU)?.to_event(1)?)
            }),
            "the guide does not",
        ),
        (
            "w",
            Box::new(|ctx: &mut Ctx| {
                ctx.sample("rate", LogNormal::new(&s(0.0), &s(1.0))?)?;
                ctx.sample("w", Normal::standard(&[2], DType::F64, &CPU)?.to_event(1)?)
            }),
            "shape [3] but the guide's has shape [2]",
        ),
        (
            "rate",
            Box::new(|ctx: &mut Ctx| {
                ctx.sample("rate", Normal::new(&s(0.0), &s(1.0))?)?;
                ctx.sample("w", Normal::standard(&[3], DType::F64, &CPU)?.to_event(1)?)
            }),
            "support is positive but the guide's is real",
        ),
        (
            "extra",
            Box::new(|ctx: &mut Ctx| {
                ctx.sample("rate", LogNormal::new(&s(0.0), &s(1.0))?)?;
                ctx.sample("w", Normal::standard(&[3], DType::F64, &CPU)?.to_event(1)?)?;
                ctx.sample("extra", Normal::new(&s(0.0), &s(1.0))?)
            }),
            "model has no site",
        ),
        (
            "x",
            Box::new(|ctx: &mut Ctx| {
                ctx.sample("rate", LogNormal::new(&s(0.0), &s(1.0))?)?;
                ctx.sample("w", Normal::standard(&[3], DType::F64, &CPU)?.to_event(1)?)?;
                ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)
            }),
            "observed in the model",
        ),
    ];
    for (site, guide, msg) in cases {
        let (_, g) = ctx.trace(|ctx| guide(ctx)).unwrap();
        let err = check_guide(&mtr, &g).unwrap_err();
        assert!(
            matches!(&err, PplError::GuideMismatch { site: s, .. } if s == site),
            "{err}"
        );
        assert!(err.to_string().contains(msg), "{err}");
    }
}

#[test]
fn params_are_constrained_created_once_and_trainable() {
    let mut ctx = Ctx::new(4);
    let sigma = ctx
        .param("sigma", || Ok(s(2.0)), Constraint::Positive)
        .unwrap();
    assert!((scalar(&sigma) - 2.0).abs() < 1e-12);
    // the stored var is log(2); a big negative step keeps the value positive
    let var = ctx.params().unconstrained("sigma").unwrap();
    assert!((scalar(var.as_tensor()) - 2f64.ln()).abs() < 1e-12);
    var.set(&s(-30.0)).unwrap();
    let again = ctx
        .param("sigma", || panic!("not called twice"), Constraint::Positive)
        .unwrap();
    assert!(scalar(&again) > 0.0);
    // gradients reach the unconstrained var: d exp(u)/du = exp(u)
    let g = again.backward().unwrap();
    assert!((scalar(g.get(var.as_tensor()).unwrap()) - (-30f64).exp()).abs() < 1e-20);
    // simplex and lower-Cholesky params round-trip their initial values
    let p = t1(&[0.2, 0.3, 0.5], DType::F64);
    let got = ctx
        .param("p", || Ok(p.clone()), Constraint::Simplex)
        .unwrap();
    common::assert_close("simplex", &host(&got), &host(&p), 1e-12);
    assert_eq!(ctx.params().unconstrained("p").unwrap().dims(), &[2]);
    let l = t(&[1.5, 0.0, -0.3, 0.7], &[2, 2], DType::F64);
    let got = ctx
        .param("L", || Ok(l.clone()), Constraint::LowerCholesky)
        .unwrap();
    common::assert_close("cholesky", &host(&got), &host(&l), 1e-12);
    let u = ctx
        .param("u", || Ok(s(0.25)), Constraint::UnitInterval)
        .unwrap();
    assert!((scalar(&u) - 0.25).abs() < 1e-12);
}

#[test]
fn param_error_paths() {
    let mut ctx = Ctx::new(5);
    let e = ctx
        .param("neg", || Ok(s(-1.0)), Constraint::Positive)
        .unwrap_err();
    assert!(
        matches!(&e, PplError::Param { name, .. } if name == "neg"),
        "{e}"
    );
    assert!(e.to_string().contains("initial value"), "{e}");
    let e = ctx
        .param("b", || Ok(s(1.0)), Constraint::Boolean)
        .unwrap_err();
    assert!(
        e.to_string().contains("not supported for parameters"),
        "{e}"
    );
    ctx.param("w", || Ok(s(1.0)), Constraint::Real).unwrap();
    let e = ctx
        .param("w", || Ok(s(1.0)), Constraint::Positive)
        .unwrap_err();
    assert!(
        e.to_string().contains("stored with `real (not NaN)`"),
        "{e}"
    );
    let e = ctx.params().get("missing").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("parameter `missing`: not in the parameter store"),
        "{e}"
    );
}

#[test]
fn save_load_round_trip_is_exact_and_atomic() {
    let dir = std::env::temp_dir().join(format!("ppl-params-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("params.safetensors");
    let mut ctx = Ctx::new(6);
    ctx.param("loc", || Ok(t1(&[0.1, -0.2], DType::F64)), Constraint::Real)
        .unwrap();
    ctx.param("scale", || Ok(s(0.3)), Constraint::Positive)
        .unwrap();
    let lin = ctx
        .module("enc", |vb| candle_nn::linear(3, 2, vb.pp("fc")))
        .unwrap();
    assert!(ctx.params().names().contains(&"enc.fc.weight".to_string()));
    ctx.params().save(&path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary file left behind");

    // into a fresh store: same values, same constraints
    let fresh = ParamStore::new();
    fresh.load(&path, &CPU).unwrap();
    for name in ctx.params().names() {
        assert_eq!(
            host(&fresh.get(&name).unwrap()),
            host(&ctx.params().get(&name).unwrap()),
            "{name}"
        );
    }
    // into the original store after changing it: modules see the restored weights
    let before = host(lin.weight());
    ctx.params()
        .unconstrained("enc.fc.weight")
        .unwrap()
        .set(&Tensor::zeros((2, 3), DType::F32, &CPU).unwrap())
        .unwrap();
    assert_ne!(host(lin.weight()), before);
    ctx.params().load(&path, &CPU).unwrap();
    assert_eq!(host(lin.weight()), before);

    // corrupt and mismatched files are typed errors and leave the store alone
    std::fs::write(dir.join("junk"), b"not a safetensors file").unwrap();
    // (`FileIo` keeps the safetensors or I/O error as its source)
    let e = fresh.load(dir.join("junk"), &CPU).unwrap_err();
    assert!(matches!(e, PplError::FileIo { .. }) && e.is_file(), "{e}");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(dir.join("cut"), &bytes[..bytes.len() - 7]).unwrap();
    let e = fresh.load(dir.join("cut"), &CPU).unwrap_err();
    assert!(matches!(e, PplError::FileIo { .. }) && e.is_file(), "{e}");
    let e = fresh.load(dir.join("absent"), &CPU).unwrap_err();
    assert!(matches!(e, PplError::FileIo { .. }) && e.is_file(), "{e}");
    let other = ParamStore::new();
    other
        .insert("loc", &t1(&[1.0, 2.0, 3.0], DType::F64), &Constraint::Real)
        .unwrap();
    let e = other.load(&path, &CPU).unwrap_err();
    assert!(
        e.to_string()
            .contains("holds shape [2] but the store has shape [3]"),
        "{e}"
    );
    assert_eq!(host(&other.get("loc").unwrap()), vec![1.0, 2.0, 3.0]);
    assert_eq!(other.len(), 1, "nothing loaded on error");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn transforms_invert_and_their_log_det_matches_autodiff() {
    let x = t1(&[-1.3, -0.2, 0.0, 0.4, 2.1], DType::F64);
    for c in [
        Constraint::Real,
        Constraint::Positive,
        Constraint::GreaterThan(-2.0),
        Constraint::UnitInterval,
        Constraint::Interval(-1.0, 3.0),
    ] {
        let tr = biject_to(&c).unwrap();
        let xv = Var::from_tensor(&x).unwrap();
        let y = tr.forward(xv.as_tensor()).unwrap();
        common::assert_close("inverse", &host(&tr.inverse(&y).unwrap()), &host(&x), 1e-12);
        // elementwise: log |dy/dx| from autodiff of sum(y)
        let g = y.sum_all().unwrap().backward().unwrap();
        let dy: Vec<f64> = host(g.get(xv.as_tensor()).unwrap())
            .iter()
            .map(|v| v.abs().ln())
            .collect();
        common::assert_close(
            "ladj",
            &host(&tr.log_abs_det_jacobian(&x, &y).unwrap()),
            &dy,
            1e-10,
        );
    }
}

#[test]
fn stick_breaking_log_det_matches_finite_difference_jacobian() {
    let tr = biject_to(&Constraint::Simplex).unwrap();
    let x0 = [0.3, -0.7, 1.1];
    let f = |x: &[f64]| host(&tr.forward(&t1(x, DType::F64)).unwrap());
    let y = f(&x0);
    assert!((y.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(
        f(&[0.0, 0.0, 0.0])
            .iter()
            .map(|v| (v - 0.25).abs() < 1e-12)
            .filter(|b| *b)
            .count(),
        4
    );
    // J[i][j] = d y_i / d x_j for i, j < 3, central differences (error O(h²) ≈ 1e-10)
    let h = 1e-5;
    let mut j = [[0.0; 3]; 3];
    for c in 0..3 {
        let (mut p, mut m) = (x0, x0);
        p[c] += h;
        m[c] -= h;
        let (fp, fm) = (f(&p), f(&m));
        for r in 0..3 {
            j[r][c] = (fp[r] - fm[r]) / (2.0 * h);
        }
    }
    let det = j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
        - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
        + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]);
    let xt = t1(&x0, DType::F64);
    let ladj = scalar(
        &tr.log_abs_det_jacobian(&xt, &tr.forward(&xt).unwrap())
            .unwrap(),
    );
    assert!(
        (ladj - det.abs().ln()).abs() < 1e-6,
        "{ladj} vs {}",
        det.abs().ln()
    );
    common::assert_close(
        "inverse",
        &host(&tr.inverse(&t1(&y, DType::F64)).unwrap()),
        &x0,
        1e-10,
    );
    // lower Cholesky: log det = trace of x
    let lc = biject_to(&Constraint::LowerCholesky).unwrap();
    let m = t(&[0.5, 9.0, -1.0, -0.25], &[2, 2], DType::F64);
    let l = lc.forward(&m).unwrap();
    assert_eq!(host(&l)[1], 0.0, "upper part ignored");
    assert!((scalar(&lc.log_abs_det_jacobian(&m, &l).unwrap()) - 0.25).abs() < 1e-12);
    let back = lc.inverse(&l).unwrap();
    assert_eq!(host(&back)[1], 0.0);
    assert!((host(&back)[0] - 0.5).abs() < 1e-12);
    // scaled unit lower Cholesky: y = diag(softplus(x_ii)) (I + tril(x, -1)); 3x3 by hand.
    // softplus(0.5) = 0.974077, softplus(-1) = 0.313262, softplus(2) = 2.126928.
    let su = biject_to(&Constraint::ScaledUnitLowerCholesky).unwrap();
    let sp = |v: f64| (1.0 + v.exp()).ln();
    let x = [0.5, 7.0, 7.0, 0.3, -1.0, 7.0, -2.0, 0.4, 2.0];
    let m = t(&x, &[3, 3], DType::F64);
    let y = host(&su.forward(&m).unwrap());
    let want = [
        sp(0.5),
        0.0,
        0.0,
        0.3 * sp(-1.0),
        sp(-1.0),
        0.0,
        -2.0 * sp(2.0),
        0.4 * sp(2.0),
        sp(2.0),
    ];
    common::assert_close("scaled unit forward", &y, &want, 1e-12);
    // log |det J| over the 6 free coordinates: Σ_i log σ(x_ii) + i log softplus(x_ii).
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let ladj = sig(0.5).ln() + sig(-1.0).ln() + sp(-1.0).ln() + sig(2.0).ln() + 2.0 * sp(2.0).ln();
    let yt = su.forward(&m).unwrap();
    assert!((scalar(&su.log_abs_det_jacobian(&m, &yt).unwrap()) - ladj).abs() < 1e-12);
    let back = host(&su.inverse(&yt).unwrap());
    let x_lower = [0.5, 0.0, 0.0, 0.3, -1.0, 0.0, -2.0, 0.4, 2.0];
    common::assert_close("scaled unit inverse", &back, &x_lower, 1e-12);
    // softplus⁻¹ stays finite for large and small diagonals (no expm1 overflow).
    let big = t(&[800.0, 0.0, 1.0, 1e-6], &[2, 2], DType::F64);
    let raw = host(&su.inverse(&big).unwrap());
    assert!((raw[0] - 800.0).abs() < 1e-9 && (raw[3] - (1e-6f64).exp_m1().ln()).abs() < 1e-6);
    assert!(biject_to(&Constraint::Boolean).is_err());
}

#[test]
fn module_weights_are_initialised_from_the_seed() {
    // candle-nn's own initialisation cannot be seeded on the CPU; `Ctx::module` draws new
    // weights from the library's generator: the same seed gives the same weights bit for
    // bit, another seed or path other weights, and the context's stream does not advance.
    let build = |seed: u64, path: &str| {
        let mut ctx = Ctx::new(seed);
        let before = ctx.base_rng().state();
        let l = ctx
            .module(path, |vb| candle_nn::linear(64, 128, vb))
            .unwrap();
        assert_eq!(
            ctx.base_rng().state(),
            before,
            "no draw from the context's stream"
        );
        let w: Vec<f32> = l.weight().flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = l.bias().unwrap().to_vec1().unwrap();
        // a second call reuses the stored weights
        let again = ctx
            .module(path, |vb| candle_nn::linear(64, 128, vb))
            .unwrap();
        assert_eq!(
            again
                .weight()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            w
        );
        (w, b)
    };
    let (w1, b1) = build(7, "enc");
    let (w2, b2) = build(7, "enc");
    assert_eq!((&w1, &b1), (&w2, &b2));
    assert_ne!(build(8, "enc").0, w1);
    assert_ne!(build(7, "dec").0, w1);
    // candle-nn's `linear`: weights Kaiming normal (sd = √2/√64), biases U(−1/8, 1/8).
    // 8192 weights: the sample sd's relative standard error is 1/√(2·8192) = 0.8%; 4%.
    let sd = (w1.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w1.len() as f64).sqrt();
    assert!((sd / (2f64.sqrt() / 8.0) - 1.0).abs() < 0.04, "sd {sd}");
    assert!(b1.iter().all(|v| v.abs() <= 0.125));
    let spread = b1.iter().cloned().fold(0f32, |m, v| m.max(v.abs()));
    assert!(spread > 0.1, "biases fill their interval");
}
