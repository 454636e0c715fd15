//! The `#[model]` macro's output behaves exactly like the same model written by hand.

use candle_core::{DType, Device, Tensor};
use ppl::handlers::Condition;
use ppl::prelude::*;

fn s(v: f64) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

#[model]
fn hierarchical(x: &Tensor, steps: usize) -> Result<Tensor> {
    let n = x.dim(0)?;
    let dev = x.device();
    let mu = sample!(Normal::new(
        &Tensor::new(0f64, dev)?,
        &Tensor::new(1f64, dev)?
    )?);
    let tau = sample!(
        "tau",
        Gamma::new(&Tensor::new(2f64, dev)?, &Tensor::new(2f64, dev)?)?
    );
    let noise = param!("noise", Tensor::new(0.5f64, dev), Constraint::Positive);
    let theta = plate!("groups", n, {
        let theta = sample!(Normal::new(&mu, &tau)?);
        observe!("x", Normal::new(&theta, &noise)?, x);
        theta
    });
    let mut walk = mu.clone();
    for i in 0..steps {
        walk = sample!(("walk", i), Normal::new(&walk, &Tensor::new(1f64, dev)?)?);
    }
    factor!("penalty", (&walk * &walk)?.neg()?);
    let total = deterministic!(theta.sum_all()?);
    Ok(total)
}

fn hierarchical_by_hand(ctx: &mut Ctx, x: &Tensor, steps: usize) -> Result<Tensor> {
    let n = x.dim(0)?;
    let dev = x.device();
    let mu = ctx.sample(
        "mu",
        Normal::new(&Tensor::new(0f64, dev)?, &Tensor::new(1f64, dev)?)?,
    )?;
    let tau = ctx.sample(
        "tau",
        Gamma::new(&Tensor::new(2f64, dev)?, &Tensor::new(2f64, dev)?)?,
    )?;
    let noise = ctx.param(
        "noise",
        || Ok(Tensor::new(0.5f64, dev)?),
        Constraint::Positive,
    )?;
    let theta = ctx.plate("groups", n, PlateOpts::default(), |ctx, _| {
        let theta = ctx.sample("theta", Normal::new(&mu, &tau)?)?;
        ctx.observe("x", Normal::new(&theta, &noise)?, x)?;
        Ok(theta)
    })?;
    let mut walk = mu.clone();
    for i in 0..steps {
        walk = ctx.sample(("walk", i), Normal::new(&walk, &Tensor::new(1f64, dev)?)?)?;
    }
    ctx.factor("penalty", &(&walk * &walk)?.neg()?)?;
    ctx.deterministic("total", &theta.sum_all()?)
}

fn values(tr: &Trace) -> Vec<(String, Vec<f64>)> {
    tr.sites()
        .iter()
        .map(|s| {
            let v = s.value.flatten_all().unwrap().to_dtype(DType::F64).unwrap();
            (s.name.to_string(), v.to_vec1::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn macro_and_hand_written_models_give_identical_traces() {
    let x = Tensor::new(&[0.3f64, -1.2, 2.0], &Device::Cpu).unwrap();
    let mut a = Ctx::new(7);
    let mut b = Ctx::new(7);
    let (ra, ta) = a.trace(|ctx| hierarchical(ctx, &x, 3)).unwrap();
    let (rb, tb) = b.trace(|ctx| hierarchical_by_hand(ctx, &x, 3)).unwrap();
    assert_eq!(
        values(&ta),
        values(&tb),
        "same sites, same order, bit-identical values"
    );
    assert_eq!(
        ta.log_joint().unwrap().to_scalar::<f64>().unwrap(),
        tb.log_joint().unwrap().to_scalar::<f64>().unwrap()
    );
    assert_eq!(
        ra.to_scalar::<f64>().unwrap(),
        rb.to_scalar::<f64>().unwrap()
    );
    assert_eq!(ta.format_shapes().unwrap(), tb.format_shapes().unwrap());
    let kinds: Vec<_> = ta.sites().iter().map(|s| (s.kind, s.observed)).collect();
    let kinds_b: Vec<_> = tb.sites().iter().map(|s| (s.kind, s.observed)).collect();
    assert_eq!(kinds, kinds_b);
    assert_eq!(
        ta.site("theta").unwrap().plates[0].name.to_string(),
        "groups"
    );
}

#[test]
fn the_latents_struct_reads_traces_and_builds_conditions() {
    assert_eq!(HierarchicalLatents::SITES, ["mu", "tau", "theta"]);
    let x = Tensor::new(&[0.3f64, -1.2, 2.0], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(1);
    let (_, tr) = ctx.trace(|ctx| hierarchical(ctx, &x, 0)).unwrap();
    let lat = HierarchicalLatents::from_trace(&tr).unwrap();
    assert_eq!(lat.theta.dims(), &[3]);
    // conditioning on the latents struct reproduces the log joint exactly
    let lj = assess(
        &mut ctx,
        &|ctx: &mut Ctx| hierarchical(ctx, &x, 0),
        &lat.to_choices(),
    )
    .unwrap();
    assert_eq!(
        lj.to_scalar::<f64>().unwrap(),
        tr.log_joint().unwrap().to_scalar::<f64>().unwrap()
    );
    // a typed condition: fix mu, everything else from the prior
    let cond = ChoiceMap::new().with("mu", s(0.25));
    let ((_, _), tr2) = ctx
        .trace(|ctx| ctx.handle(Condition::new(cond), |ctx| hierarchical(ctx, &x, 0)))
        .unwrap();
    assert_eq!(
        HierarchicalLatents::from_trace(&tr2)
            .unwrap()
            .mu
            .to_scalar::<f64>()
            .unwrap(),
        0.25
    );
    let err = HierarchicalLatents::from_trace(&Trace::new()).unwrap_err();
    assert!(
        err.to_string().contains("site `mu`: not in the trace"),
        "{err}"
    );
}

#[model]
fn subsampled(ctx: &mut Ctx, x: &Tensor) -> Result<Tensor> {
    let n = x.dim(0)?;
    let depth = ctx.depth();
    let loc = sample!(Normal::new(&s(0.0), &s(1.0))?);
    plate!("data", n, subsample = 2, |idx| {
        let xs = x.index_select(&idx, 0)?;
        observe!("x", Normal::new(&loc, &s(1.0))?, &xs);
    });
    // the context is the user's own parameter: after the plate the caller's handlers are
    // active again, and nothing else
    if ctx.depth() != depth {
        return Err(PplError::InvalidArgument {
            context: "test",
            message: "plate left open".into(),
        });
    }
    Ok(loc)
}

#[test]
fn subsampled_plates_scale_by_n_over_m_and_bind_indices() {
    let x = Tensor::new(&[0.1f64, 0.2, 0.3, 0.4, 0.5, 0.6], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(3);
    let (loc, tr) = ctx.trace(|ctx| subsampled(ctx, &x)).unwrap();
    let site = tr.site("x").unwrap();
    assert_eq!(site.scale, 3.0);
    assert_eq!(site.value.dims(), &[2]);
    let loc = loc.to_scalar::<f64>().unwrap();
    let xs: Vec<f64> = site.value.to_vec1().unwrap();
    let lnorm = |v: f64, m: f64| -0.5 * (v - m) * (v - m) - 0.5 * (2.0 * std::f64::consts::PI).ln();
    let want = lnorm(loc, 0.0) + 3.0 * xs.iter().map(|v| lnorm(*v, loc)).sum::<f64>();
    assert!((tr.log_joint().unwrap().to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
    let all: Vec<f64> = x.to_vec1().unwrap();
    assert!(xs.iter().all(|v| all.contains(v)) && xs[0] != xs[1]);
}

/// A guide is a model too: an amortised-style guide for `subsampled`'s latent `loc`.
#[model]
fn loc_guide(x: &Tensor) -> Result<()> {
    let m = param!("m", x.mean_all());
    let sd = param!("sd", Tensor::new(0.5f64, x.device()), Constraint::Positive);
    let loc = sample!(Normal::new(&m, &sd)?);
    let _ = loc;
    Ok(())
}

#[test]
fn a_macro_guide_fits_its_macro_model() {
    let x = Tensor::new(&[0.1f64, 0.2, 0.3, 0.4], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(4);
    let (_, g) = ctx.trace(|ctx| loc_guide(ctx, &x)).unwrap();
    let (_, m) = ctx
        .trace(|ctx| ctx.handle(ppl::handlers::Replay::new(&g), |ctx| subsampled(ctx, &x)))
        .unwrap();
    check_guide(&m, &g).unwrap();
    assert_eq!(
        m.value("loc").unwrap().to_scalar::<f64>().unwrap(),
        g.value("loc").unwrap().to_scalar::<f64>().unwrap()
    );
    assert_eq!(g.param_sites().count(), 2);
    assert!((ctx.params().get("m").unwrap().to_scalar::<f64>().unwrap() - 0.25).abs() < 1e-12);
    // the guide fails the check against a model with another latent
    let (_, h) = ctx.trace(|ctx| hierarchical(ctx, &x, 0)).unwrap();
    let err = check_guide(&h, &g).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("guide/model mismatch at site `mu`"),
        "{err}"
    );
}

/// Sites, order, values (bit for bit), kinds and log joints of two traces agree.
fn assert_same_traces(ta: &Trace, tb: &Trace) {
    assert_eq!(
        values(ta),
        values(tb),
        "same sites, same order, same values"
    );
    let kinds = |t: &Trace| -> Vec<_> { t.sites().iter().map(|s| (s.kind, s.observed)).collect() };
    assert_eq!(kinds(ta), kinds(tb));
    assert_eq!(ta.format_shapes().unwrap(), tb.format_shapes().unwrap());
    assert_eq!(
        ta.log_joint().unwrap().to_scalar::<f64>().unwrap(),
        tb.log_joint().unwrap().to_scalar::<f64>().unwrap()
    );
}

/// A model that owns its settings: `#[model]` on a method.
struct Regression {
    prior_scale: f64,
    calls: usize,
}

impl Regression {
    #[model]
    fn model(&self, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let w = sample!(Normal::new(
            &Tensor::new(0f64, dev)?,
            &Tensor::new(self.prior_scale, dev)?
        )?);
        let sigma = param!("sigma", Tensor::new(0.5f64, dev), Constraint::Positive);
        plate!("data", x.dim(0)?, subsample = Some(2), |idx| {
            let mean = x.index_select(&idx, 0)?.broadcast_mul(&w)?;
            observe!("y", Normal::new(&mean, &sigma)?, y.index_select(&idx, 0)?);
        });
        Ok(w)
    }

    fn model_by_hand(&self, ctx: &mut Ctx, x: &Tensor, y: &Tensor) -> Result<Tensor> {
        let dev = x.device();
        let w = ctx.sample(
            "w",
            Normal::new(
                &Tensor::new(0f64, dev)?,
                &Tensor::new(self.prior_scale, dev)?,
            )?,
        )?;
        let sigma = ctx.param(
            "sigma",
            || Ok(Tensor::new(0.5f64, dev)?),
            Constraint::Positive,
        )?;
        let opts = PlateOpts {
            subsample_size: Some(2),
            ..Default::default()
        };
        ctx.plate("data", x.dim(0)?, opts, |ctx, guard| {
            let idx = guard.indices()?;
            let mean = x.index_select(&idx, 0)?.broadcast_mul(&w)?;
            ctx.observe("y", Normal::new(&mean, &sigma)?, &y.index_select(&idx, 0)?)?;
            Ok(())
        })?;
        Ok(w)
    }

    /// `&mut self`: the receiver stays first, the context comes second.
    #[model]
    fn counted(&mut self) -> Result<Tensor> {
        self.calls += 1;
        let z = sample!(Normal::new(&s(self.calls as f64), &s(1.0))?);
        Ok(z)
    }
}

#[test]
fn a_method_model_equals_the_hand_written_method() {
    let x = Tensor::new(&[0.5f64, -1.0, 2.0, 0.25], &Device::Cpu).unwrap();
    let y = Tensor::new(&[1.0f64, -2.1, 3.9, 0.4], &Device::Cpu).unwrap();
    let mut reg = Regression {
        prior_scale: 2.0,
        calls: 0,
    };
    let (mut a, mut b) = (Ctx::new(11), Ctx::new(11));
    let (ra, ta) = a.trace(|ctx| reg.model(ctx, &x, &y)).unwrap();
    let (rb, tb) = b.trace(|ctx| reg.model_by_hand(ctx, &x, &y)).unwrap();
    assert_same_traces(&ta, &tb);
    assert_eq!(
        ra.to_scalar::<f64>().unwrap(),
        rb.to_scalar::<f64>().unwrap()
    );
    assert_eq!(ta.site("y").unwrap().scale, 2.0);
    let (z, tz) = a.trace(|ctx| reg.counted(ctx)).unwrap();
    assert_eq!(reg.calls, 1);
    let want = b
        .sample("z", Normal::new(&s(1.0), &s(1.0)).unwrap())
        .unwrap();
    assert_eq!(
        z.to_scalar::<f64>().unwrap(),
        want.to_scalar::<f64>().unwrap()
    );
    assert!(tz.site("z").unwrap().is_latent());
}

/// The same names in exclusive branches: `z` in both arms of an `if`, `extra` a latent in
/// one arm of a `match` and a deterministic value in another.
#[model]
fn branchy(x: &Tensor, k: usize) -> Result<Tensor> {
    let z = if k % 2 == 0 {
        sample!("z", Normal::new(&s(0.0), &s(1.0))?)
    } else {
        sample!("z", Gamma::new(&s(2.0), &s(2.0))?)
    };
    let out = match k {
        0 => {
            observe!("obs", Normal::new(&z, &s(1.0))?, x);
            z.clone()
        }
        1 => sample!("extra", Normal::new(&z, &s(1.0))?),
        _ => deterministic!("extra", (&z * 2.0)?),
    };
    Ok(out)
}

fn branchy_by_hand(ctx: &mut Ctx, x: &Tensor, k: usize) -> Result<Tensor> {
    let z = if k % 2 == 0 {
        ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?
    } else {
        ctx.sample("z", Gamma::new(&s(2.0), &s(2.0))?)?
    };
    match k {
        0 => {
            ctx.observe("obs", Normal::new(&z, &s(1.0))?, x)?;
            Ok(z)
        }
        1 => ctx.sample("extra", Normal::new(&z, &s(1.0))?),
        _ => ctx.deterministic("extra", &(&z * 2.0)?),
    }
}

#[test]
fn exclusive_branches_share_a_name_and_give_optional_latents() {
    assert_eq!(BranchyLatents::SITES, ["z", "extra"]);
    let x = s(0.7);
    for k in 0..3 {
        let (mut a, mut b) = (Ctx::new(5), Ctx::new(5));
        let (ra, ta) = a.trace(|ctx| branchy(ctx, &x, k)).unwrap();
        let (rb, tb) = b.trace(|ctx| branchy_by_hand(ctx, &x, k)).unwrap();
        assert_same_traces(&ta, &tb);
        assert_eq!(
            ra.to_scalar::<f64>().unwrap(),
            rb.to_scalar::<f64>().unwrap()
        );
        let lat = BranchyLatents::from_trace(&ta).unwrap();
        let z = lat.z.as_ref().expect("z is latent on every path");
        assert_eq!(
            z.to_scalar::<f64>().unwrap(),
            ta.value("z").unwrap().to_scalar::<f64>().unwrap()
        );
        // `extra` is a latent only for k = 1 (a deterministic site for k = 2)
        assert_eq!(lat.extra.is_some(), k == 1, "k = {k}");
        assert_eq!(lat.to_choices().len(), if k == 1 { 2 } else { 1 });
    }
    // the Gamma branch's z is positive; conditioning on the latents reproduces the joint
    let mut ctx = Ctx::new(9);
    let (_, tr) = ctx.trace(|ctx| branchy(ctx, &x, 1)).unwrap();
    let lat = BranchyLatents::from_trace(&tr).unwrap();
    let lj = assess(
        &mut ctx,
        &|ctx: &mut Ctx| branchy(ctx, &x, 1),
        &lat.to_choices(),
    )
    .unwrap();
    assert_eq!(
        lj.to_scalar::<f64>().unwrap(),
        tr.log_joint().unwrap().to_scalar::<f64>().unwrap()
    );
}

/// `input!` and `sample!(.., obs = ..)`.
#[model]
fn semi(data: &Tensor, label: Option<&Tensor>) -> Result<Tensor> {
    let x = input!(data);
    input!("scale", &s(0.5));
    let loc = sample!(Normal::new(&x.mean_all()?, &s(1.0))?);
    let y = sample!("y", Normal::new(&loc, &s(0.5))?, obs = label);
    Ok(y)
}

fn semi_by_hand(ctx: &mut Ctx, data: &Tensor, label: Option<&Tensor>) -> Result<Tensor> {
    let x = ctx.input("x", data)?;
    ctx.input("scale", &s(0.5))?;
    let loc = ctx.sample("loc", Normal::new(&x.mean_all()?, &s(1.0))?)?;
    ctx.sample_with_obs("y", Normal::new(&loc, &s(0.5))?, label)
}

#[test]
fn obs_and_input_equal_the_hand_written_model() {
    assert_eq!(SemiLatents::SITES, ["loc", "y"]);
    let data = Tensor::new(&[0.2f64, 0.4, 0.9], &Device::Cpu).unwrap();
    let label = s(1.25);
    for obs in [None, Some(&label)] {
        let (mut a, mut b) = (Ctx::new(21), Ctx::new(21));
        let (ra, ta) = a.trace(|ctx| semi(ctx, &data, obs)).unwrap();
        let (rb, tb) = b.trace(|ctx| semi_by_hand(ctx, &data, obs)).unwrap();
        assert_same_traces(&ta, &tb);
        assert_eq!(
            ra.to_scalar::<f64>().unwrap(),
            rb.to_scalar::<f64>().unwrap()
        );
        assert_eq!(ta.inputs().count(), 2);
        assert_eq!(ta.site("x").unwrap().kind, SiteKind::Input);
        let lat = SemiLatents::from_trace(&ta).unwrap();
        let loc = lat.loc.to_scalar::<f64>().unwrap();
        let lnorm = |v: f64, m: f64, sd: f64| {
            -0.5 * ((v - m) / sd).powi(2) - sd.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
        };
        let y = ra.to_scalar::<f64>().unwrap();
        // log N(loc; mean(data) = 0.5, 1) + log N(y; loc, 0.5); the inputs add nothing
        let want = lnorm(loc, 0.5, 1.0) + lnorm(y, loc, 0.5);
        let got = ta.log_joint().unwrap().to_scalar::<f64>().unwrap();
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        match obs {
            // observed: `y` is the label, and not a latent of the struct (no error either)
            Some(l) => {
                assert_eq!(y, l.to_scalar::<f64>().unwrap());
                assert!(ta.site("y").unwrap().observed);
                assert!(lat.y.is_none());
                assert_eq!(lat.to_choices().len(), 1);
            }
            None => {
                assert_eq!(lat.y.as_ref().unwrap().to_scalar::<f64>().unwrap(), y);
                assert_eq!(lat.to_choices().len(), 2);
            }
        }
    }
    // a handler replaces the input: the model runs on other data
    let other = Tensor::new(&[3.0f64, 5.0], &Device::Cpu).unwrap();
    let mut ctx = Ctx::new(2);
    let (_, tr) = ctx
        .trace(|ctx| {
            ctx.handle(
                Condition::new(ChoiceMap::new().with("x", other.clone())),
                |ctx| semi(ctx, &data, None),
            )
        })
        .unwrap();
    assert_eq!(tr.value("x").unwrap().to_vec1::<f64>().unwrap(), [3.0, 5.0]);
    let loc_dist_mean = tr
        .site("loc")
        .unwrap()
        .dist
        .as_ref()
        .unwrap()
        .mean()
        .unwrap();
    assert_eq!(loc_dist_mean.to_scalar::<f64>().unwrap(), 4.0);
}

/// Fails with `?` inside its plate while `fail` is set.
#[model]
fn fails_in_plate(fail: bool) -> Result<Tensor> {
    plate!("data", 3, {
        let local = sample!(Normal::new(&s(0.0), &s(1.0))?);
        if fail {
            Err(PplError::config("fails_in_plate", "asked to fail"))?;
        }
        local
    });
    let global = sample!(Normal::new(&s(0.0), &s(1.0))?);
    Ok(global)
}

#[test]
fn an_error_inside_plate_does_not_leave_the_plate_active_for_the_next_run() {
    let mut ctx = Ctx::new(3);
    // run directly on the context (no handler to unwind the stack), failing inside the plate
    let err = fails_in_plate(&mut ctx, true).unwrap_err();
    assert!(err.to_string().contains("asked to fail"), "{err}");
    assert_eq!(ctx.depth(), 0);
    // the next run on the same context: `global` is a scalar, outside every plate
    let (_, tr) = ctx.trace(|ctx| fails_in_plate(ctx, false)).unwrap();
    assert_eq!(tr.value("local").unwrap().dims(), &[3]);
    assert_eq!(tr.value("global").unwrap().dims(), &[] as &[usize]);
    assert!(tr.get("global").unwrap().plates.is_empty());
    // the same inside a traced run whose failure is caught by the caller
    assert!(ctx.trace(|ctx| fails_in_plate(ctx, true)).is_err());
    let (_, tr) = ctx.trace(|ctx| fails_in_plate(ctx, false)).unwrap();
    assert_eq!(tr.value("global").unwrap().dims(), &[] as &[usize]);
}

/// A plate whose `?` error the model itself catches (`.ok()` on a closure), then samples
/// a global site in the same run.
#[model]
fn catches_plate_error() -> Result<Tensor> {
    let caught = (|| -> Result<Tensor> {
        Ok(plate!("data", 4, {
            let inner = sample!(Normal::new(&s(0.0), &s(1.0))?);
            Err(PplError::config("catches_plate_error", "inner failure"))?;
            inner
        }))
    })()
    .ok();
    assert!(caught.is_none());
    let after = sample!(Normal::new(&s(0.0), &s(1.0))?);
    Ok(after)
}

#[test]
fn an_error_caught_inside_the_model_leaves_the_plate_before_the_next_site() {
    let mut ctx = Ctx::new(4);
    let (after, tr) = ctx.trace(catches_plate_error).unwrap();
    assert_eq!(after.dims(), &[] as &[usize]);
    assert!(tr.get("after").unwrap().plates.is_empty());
    assert_eq!(tr.value("inner").unwrap().dims(), &[4]);
    // a plate of the same name can be entered again in the same run
    let (_, tr) = ctx
        .trace(|ctx| {
            catches_plate_error(ctx)?;
            ctx.plate("data", 2, PlateOpts::default(), |ctx, _| {
                ctx.sample("again", Normal::new(&s(0.0), &s(1.0))?)
            })
        })
        .unwrap();
    assert_eq!(tr.value("again").unwrap().dims(), &[2]);
}

/// A literal name in a closure the macro cannot see being repeated (it is called from a
/// loop through a variable): caught at run time, naming the site.
#[model]
fn closure_called_in_a_loop() -> Result<()> {
    let mut draw = || -> Result<Tensor> { Ok(sample!("x", Normal::new(&s(0.0), &s(1.0))?)) };
    for _ in 0..2 {
        draw()?;
    }
    Ok(())
}

#[test]
fn a_literal_name_repeated_by_a_closure_is_a_runtime_error_naming_the_site() {
    let mut ctx = Ctx::new(5);
    let err = ctx.trace(closure_called_in_a_loop).unwrap_err().to_string();
    assert!(err.contains("duplicate site name `x`"), "{err}");
    assert!(err.contains("a closure called more than once"), "{err}");
    assert!(err.contains("(\"x\", i)"), "{err}");
}
