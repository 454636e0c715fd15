//! Input sites (`Ctx::input`), the `Uncondition` handler and `Ctx::sample_with_obs`.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{host, lnorm, s, scalar, t1};
use ppl_core::compat::check_guide;
use ppl_core::handlers::{Block, Condition, Mask, Replay, Scale, Scope, Substitute, Uncondition};
use ppl_core::prelude::*;

const CPU: Device = Device::Cpu;

fn run<H: ppl_core::handlers::Handler, R>(
    ctx: &mut Ctx,
    h: H,
    f: impl FnOnce(&mut Ctx) -> Result<R>,
) -> R {
    ctx.handle(h, f).unwrap().0
}

/// Reads `x` (shape [n]) as input; z ~ N(0, 1); y_i ~ N(z, 1) observed at x_i in plate `data`.
fn regress(ctx: &mut Ctx, data: &Tensor) -> Result<Tensor> {
    let x = ctx.input("x", data)?;
    let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
    let n = x.dim(0)?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        ctx.observe("y", Normal::new(&z, &s(1.0))?, &x)
    })?;
    Ok(x)
}

#[test]
fn an_input_is_recorded_without_density() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let mut ctx = Ctx::new(0);
    let (x, tr) = ctx.trace(|ctx| regress(ctx, &data)).unwrap();
    assert_eq!(host(&x), host(&data));
    let inputs: Vec<_> = tr.inputs().collect();
    assert_eq!(inputs.len(), 1);
    let site = inputs[0];
    assert_eq!(site.name, SiteName::from("x"));
    assert_eq!(site.kind, SiteKind::Input);
    assert!(!site.is_latent() && !site.observed && !site.has_density());
    assert_eq!(tr.latent_sites().count(), 1);
    assert_eq!(tr.observed_sites().count(), 1);
    assert_eq!(tr.param_sites().count(), 0);
    // log_joint counts z and y only
    let z = scalar(&tr.value("z").unwrap());
    let want = lnorm(z, 0.0, 1.0)
        + [0.5, -1.0, 2.0]
            .iter()
            .map(|v| lnorm(*v, z, 1.0))
            .sum::<f64>();
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    let table = tr.format_shapes().unwrap();
    let row = table.lines().find(|l| l.starts_with("x ")).unwrap();
    assert!(row.contains("input") && row.contains("[3]"), "{table}");
    // the same name twice in one run is a duplicate
    let err = ctx
        .trace(|ctx| {
            ctx.input("x", &data)?;
            ctx.input("x", &data)
        })
        .unwrap_err();
    assert!(matches!(err, PplError::DuplicateSite { ref site } if site == "x"));
}

#[test]
fn condition_and_substitute_replace_inputs_with_new_data() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let new = t1(&[1.0, 2.0, 3.0, 4.0, 5.0], DType::F64);
    let mut ctx = Ctx::new(1);
    let ((x, cond), tr) = ctx
        .trace(|ctx| {
            ctx.handle(
                Condition::new(ChoiceMap::new().with("x", new.clone())),
                |ctx| regress(ctx, &data),
            )
        })
        .unwrap();
    assert_eq!(host(&x), host(&new), "the model reads the new data");
    assert!(cond.unused().is_empty());
    let site = tr.site("x").unwrap();
    assert!(!site.observed, "a conditioned input is still an input");
    assert_eq!(host(&site.value), host(&new));
    assert_eq!(
        tr.site("y").unwrap().value.dims(),
        &[5],
        "the plate follows the data"
    );

    let (x, tr) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Substitute::new(ChoiceMap::new().with("x", new.clone())),
                |ctx| regress(ctx, &data),
            ))
        })
        .unwrap();
    assert_eq!(host(&x), host(&new));
    assert_eq!(tr.site("y").unwrap().value.dims(), &[5]);
    // a substitute function is asked about latents and params only
    let (x, _) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Substitute::with_fn(|_| Some(Tensor::new(9.0f64, &Device::Cpu).unwrap())),
                |ctx| regress(ctx, &data),
            ))
        })
        .unwrap();
    assert_eq!(host(&x), host(&data));
}

#[test]
fn replay_hands_the_guides_inputs_to_the_model() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let new = t1(&[3.0, 4.0], DType::F64);
    // guide: reads x, z ~ N(mean(x), 1); also reads an input "w" the model samples
    let guide = |ctx: &mut Ctx| -> Result<Tensor> {
        let x = ctx.input("x", &data)?;
        ctx.input("w", &s(7.0))?;
        let m = x.mean_all()?;
        ctx.sample("z", Normal::new(&m, &s(1.0))?)
    };
    let mut ctx = Ctx::new(2);
    let (_, g) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Condition::new(ChoiceMap::new().with("x", new.clone())),
                guide,
            ))
        })
        .unwrap();
    assert_eq!(host(&g.value("x").unwrap()), vec![3.0, 4.0]);
    let ((x, w), m) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Replay::new(&g), |ctx| {
                let x = regress(ctx, &data)?;
                let w = ctx.sample("w", Normal::new(&s(0.0), &s(1.0))?)?;
                Ok((x, w))
            }))
        })
        .unwrap();
    assert_eq!(host(&x), vec![3.0, 4.0], "the model sees the guide's input");
    assert_eq!(host(&m.value("z").unwrap()), host(&g.value("z").unwrap()));
    assert_ne!(
        scalar(&w),
        7.0,
        "an input never feeds a latent of the same name"
    );
    // and a latent never feeds an input: replaying a trace with latent "x"
    let (_, lat) = ctx
        .trace(|ctx| ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?))
        .unwrap();
    let (x, _) = ctx
        .trace(|ctx| Ok(run(ctx, Replay::new(&lat), |ctx| regress(ctx, &data))))
        .unwrap();
    assert_eq!(host(&x), host(&data));
}

#[test]
fn a_replacement_of_another_dtype_is_an_error_naming_the_site() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let bad = t1(&[1.0, 2.0], DType::F32);
    let mut ctx = Ctx::new(3);
    let err = ctx
        .trace(|ctx| {
            ctx.handle(
                Condition::new(ChoiceMap::new().with("enc/x", bad.clone())),
                |ctx| ctx.handle(Scope::new("enc"), |ctx| regress(ctx, &data)),
            )
        })
        .unwrap_err();
    let PplError::Site { site, message, .. } = &err else {
        panic!("expected a site error, got {err}")
    };
    assert_eq!(site, "enc/x");
    for part in ["F32", "F64", "[2]", "[3]", "Cpu"] {
        assert!(message.contains(part), "`{part}` missing from: {err}");
    }
    assert_eq!(ctx.depth(), 0);
}

#[test]
fn block_scope_scale_mask_and_plates_treat_inputs_sensibly() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let mut ctx = Ctx::new(4);
    // Block hides the input from the trace and from an outer Condition
    let (x, tr) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Condition::new(ChoiceMap::new().with("x", t1(&[9.0], DType::F64))),
                |ctx| Ok(run(ctx, Block::hide(["x"]), |ctx| regress(ctx, &data))),
            ))
        })
        .unwrap();
    assert_eq!(host(&x), host(&data));
    assert_eq!(tr.inputs().count(), 0);
    // Scope renames: an outer Condition addresses the scoped name
    let (x, tr) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Condition::new(ChoiceMap::new().with("enc/x", t1(&[9.0], DType::F64))),
                |ctx| Ok(run(ctx, Scope::new("enc"), |ctx| regress(ctx, &data))),
            ))
        })
        .unwrap();
    assert_eq!(host(&x), vec![9.0]);
    assert_eq!(tr.inputs().next().unwrap().name.to_string(), "enc/x");
    // Scale, Mask and a subsampled plate leave an input without scale or mask
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Scale::new(3.0).unwrap(), |ctx| {
                Ok(run(ctx, Mask::new(&s(0.0)).unwrap(), |ctx| {
                    ctx.plate(
                        "data",
                        10,
                        PlateOpts {
                            subsample_size: Some(5),
                            ..Default::default()
                        },
                        |ctx, _| ctx.input("xi", &data),
                    )
                }))
            }))
        })
        .unwrap();
    let site = tr.site("xi").unwrap();
    assert_eq!((site.scale, site.mask.is_none()), (1.0, true));
    assert_eq!(site.plates.len(), 1, "the input records its plate");
}

#[test]
fn check_guide_ignores_inputs() {
    let data = t1(&[0.5, -1.0, 2.0], DType::F64);
    let mut ctx = Ctx::new(5);
    let (_, model) = ctx.trace(|ctx| regress(ctx, &data)).unwrap();
    // the guide reads x with another batch size, and an input the model lacks
    let (_, guide) = ctx
        .trace(|ctx| {
            ctx.input("x", &t1(&[1.0], DType::F64))?;
            ctx.input("h", &s(0.0))?;
            ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)
        })
        .unwrap();
    check_guide(&model, &guide).unwrap();
    // but a guide may not sample what the model reads as data
    let (_, bad) = ctx
        .trace(|ctx| {
            ctx.sample("x", Normal::new(&s(0.0), &s(1.0))?)?;
            ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)
        })
        .unwrap();
    let err = check_guide(&model, &bad).unwrap_err();
    assert!(
        matches!(&err, PplError::GuideMismatch { site, reason } if site == "x" && reason.contains("input")),
        "{err}"
    );
}

/// x_i ~ N(2, 3) observed (at zeros) in a plate of n; f a factor.
fn obs_model(ctx: &mut Ctx, n: usize) -> Result<Tensor> {
    let zeros = Tensor::zeros(n, DType::F64, &CPU)?;
    ctx.factor("f", &s(-1.5))?;
    ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
        ctx.observe("x", Normal::new(&s(2.0), &s(3.0))?, &zeros)
    })
}

#[test]
fn uncondition_draws_observed_sites_from_their_distribution() {
    let n = 20_000;
    let mut ctx = Ctx::new(6);
    let ((x, _), tr) = ctx
        .trace(|ctx| ctx.handle(Uncondition::new(), |ctx| obs_model(ctx, n)))
        .unwrap();
    let site = tr.site("x").unwrap();
    assert!(site.is_latent() && !site.observed && site.was_observed);
    assert!(site.reparameterized);
    assert_eq!(site.value.dims(), &[n]);
    assert_eq!(host(&x), host(&site.value));
    assert!(tr.site("f").unwrap().observed, "factors are left alone");
    let v = host(&x);
    let mean = v.iter().sum::<f64>() / n as f64;
    let var = v.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // 4 standard errors: sd(mean) = 3/sqrt(n) = 0.021, sd(var) = 9 sqrt(2/(n-1)) = 0.090
    assert!(
        (mean - 2.0).abs() < 4.0 * 3.0 / (n as f64).sqrt(),
        "mean {mean}"
    );
    assert!(
        (var - 9.0).abs() < 4.0 * 9.0 * (2.0 / (n - 1) as f64).sqrt(),
        "var {var}"
    );
    let mut sorted = v.clone();
    sorted.sort_by(f64::total_cmp);
    sorted.dedup();
    assert_eq!(sorted.len(), n, "every plate element gets its own draw");
    // log joint: the factor plus the density of the draws
    let want = -1.5 + v.iter().map(|a| lnorm(*a, 2.0, 3.0)).sum::<f64>();
    let lj = scalar(&tr.log_joint().unwrap());
    assert!((lj - want).abs() < 1e-9 * want.abs(), "{lj} vs {want}");
}

#[test]
fn unconditioned_draws_are_reparameterised_and_discrete_ones_are_not() {
    let loc = Var::new(0.5f64, &CPU).unwrap();
    let n = 4000;
    let mut ctx = Ctx::new(7);
    let ((x, _), tr) = ctx
        .trace(|ctx| {
            ctx.handle(Uncondition::new(), |ctx| {
                ctx.plate("data", n, PlateOpts::default(), |ctx, _| {
                    let zeros = Tensor::zeros(n, DType::F64, ctx.device())?;
                    ctx.observe("b", Bernoulli::from_probs(&s(0.3))?, &zeros)?;
                    ctx.observe("x", Normal::new(loc.as_tensor(), &s(1.0))?, &zeros)
                })
            })
        })
        .unwrap();
    // d(sum x)/d loc = n for x = loc + eps
    let grads = x.sum_all().unwrap().backward().unwrap();
    assert_eq!(scalar(grads.get(loc.as_tensor()).unwrap()), n as f64);
    let b = tr.site("b").unwrap();
    assert!(b.is_latent() && !b.reparameterized);
    let p = host(&b.value).iter().sum::<f64>() / n as f64;
    // 4 standard errors: sqrt(0.21 / 4000) = 0.0072
    assert!((p - 0.3).abs() < 4.0 * (0.21f64 / n as f64).sqrt(), "p {p}");
}

#[test]
fn uncondition_under_a_particle_plate_draws_each_element() {
    let data = t1(&[1.0, 2.0, 3.0], DType::F64);
    let mut ctx = Ctx::new(8);
    let ((x, _), _) = ctx
        .trace(|ctx| {
            ctx.handle(Uncondition::new(), |ctx| {
                let opts = PlateOpts {
                    dim: Some(-2),
                    ..Default::default()
                };
                ctx.plate("particles", 5, opts, |ctx, _| {
                    ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
                        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
                        // the data [3] is shared across particles; the draw is [5, 3]
                        ctx.observe("x", Normal::new(&z, &s(1.0))?, &data)
                    })
                })
            })
        })
        .unwrap();
    assert_eq!(x.dims(), &[5, 3]);
    let mut v = host(&x);
    v.sort_by(f64::total_cmp);
    v.dedup();
    assert_eq!(v.len(), 15);
    assert!(host(&x).iter().all(|a| ![1.0, 2.0, 3.0].contains(a)));
}

#[test]
fn replaying_an_unconditioned_trace_reproduces_its_log_joint() {
    let model = |ctx: &mut Ctx| -> Result<Tensor> {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.plate("data", 50, PlateOpts::default(), |ctx, _| {
            ctx.observe(
                "x",
                Normal::new(&z, &s(0.5))?,
                &Tensor::zeros(50, DType::F64, ctx.device())?,
            )
        })
    };
    let mut ctx = Ctx::new(9);
    let (_, first) = ctx
        .trace(|ctx| Ok(run(ctx, Uncondition::new(), model)))
        .unwrap();
    let (_, again) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Replay::new(&first), |ctx| {
                Ok(run(ctx, Uncondition::new(), model))
            }))
        })
        .unwrap();
    assert_eq!(
        host(&again.value("x").unwrap()),
        host(&first.value("x").unwrap())
    );
    assert_eq!(
        scalar(&again.log_joint().unwrap()),
        scalar(&first.log_joint().unwrap()),
        "bit-identical log joint"
    );
    // a fresh unconditioned run differs
    let (_, fresh) = ctx
        .trace(|ctx| Ok(run(ctx, Uncondition::new(), model)))
        .unwrap();
    assert_ne!(
        host(&fresh.value("x").unwrap()),
        host(&first.value("x").unwrap())
    );
}

#[test]
fn uncondition_filters_and_composes_with_condition() {
    let two = |ctx: &mut Ctx| -> Result<Tensor> {
        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
        ctx.observe("x1", Normal::new(&z, &s(1.0))?, &s(10.0))?;
        ctx.observe("x2", Normal::new(&z, &s(1.0))?, &s(20.0))
    };
    let mut ctx = Ctx::new(10);
    let (_, tr) = ctx
        .trace(|ctx| Ok(run(ctx, Uncondition::sites(["x1"]), two)))
        .unwrap();
    assert!(tr.site("x1").unwrap().is_latent());
    assert_ne!(scalar(&tr.value("x1").unwrap()), 10.0);
    assert!(tr.site("x2").unwrap().observed);
    assert_eq!(scalar(&tr.value("x2").unwrap()), 20.0);
    // a site made observed by an inner Condition is sampled again
    let cond = ChoiceMap::new().with("z", s(0.25));
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Uncondition::new(), |ctx| {
                Ok(run(ctx, Condition::new(cond.clone()), two))
            }))
        })
        .unwrap();
    assert!(tr.site("z").unwrap().is_latent());
    assert_ne!(scalar(&tr.value("z").unwrap()), 0.25);
    assert_eq!(tr.observed_sites().count(), 0);
    // an outer Condition observes an unconditioned site again
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Condition::new(cond.clone()), |ctx| {
                Ok(run(ctx, Uncondition::new(), two))
            }))
        })
        .unwrap();
    assert!(tr.site("z").unwrap().observed);
    assert_eq!(scalar(&tr.value("z").unwrap()), 0.25);
    assert!(tr.site("x1").unwrap().is_latent());
}

#[test]
fn sample_with_obs_is_observe_or_sample() {
    let model = |obs: Option<&Tensor>| {
        let obs = obs.cloned();
        move |ctx: &mut Ctx| -> Result<Tensor> {
            let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
            ctx.sample_with_obs("y", Normal::new(&z, &s(0.5))?, obs.as_ref())
        }
    };
    let by_hand = |observed: bool| {
        move |ctx: &mut Ctx| -> Result<Tensor> {
            let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
            if observed {
                ctx.observe("y", Normal::new(&z, &s(0.5))?, &s(1.5))
            } else {
                ctx.sample("y", Normal::new(&z, &s(0.5))?)
            }
        }
    };
    let y = s(1.5);
    let (a, ta) = Ctx::new(11).trace(model(Some(&y))).unwrap();
    let (b, tb) = Ctx::new(11).trace(by_hand(true)).unwrap();
    assert_eq!(scalar(&a), 1.5);
    assert!(ta.site("y").unwrap().observed);
    assert_eq!(
        scalar(&ta.log_joint().unwrap()),
        scalar(&tb.log_joint().unwrap())
    );
    assert_eq!(scalar(&a), scalar(&b));
    let (a, ta) = Ctx::new(12).trace(model(None)).unwrap();
    let (b, tb) = Ctx::new(12).trace(by_hand(false)).unwrap();
    assert!(ta.site("y").unwrap().is_latent());
    assert_eq!(scalar(&a), scalar(&b));
    assert_ne!(scalar(&a), 1.5);
    assert_eq!(
        scalar(&ta.log_joint().unwrap()),
        scalar(&tb.log_joint().unwrap())
    );
}
