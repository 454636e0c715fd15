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
