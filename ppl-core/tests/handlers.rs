//! Handler semantics one by one and composed, traces, dynamic names, error messages.
mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{host, lnorm, s, scalar, t1};
use ppl_core::handlers::{
    Block, Condition, Mask, Replay, Scale, Scope, Seed, StopGradient, Substitute,
};
use ppl_core::prelude::*;

const CPU: Device = Device::Cpu;

/// z ~ N(0, 1); x ~ N(z, 0.5) observed at 1.0.
fn small(ctx: &mut Ctx) -> Result<Tensor> {
    let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
    ctx.observe("x", Normal::new(&z, &s(0.5))?, &s(1.0))?;
    Ok(z)
}

fn run<H: ppl_core::handlers::Handler, R>(
    ctx: &mut Ctx,
    h: H,
    f: impl FnOnce(&mut Ctx) -> Result<R>,
) -> R {
    ctx.handle(h, f).unwrap().0
}

#[test]
fn log_joint_of_a_small_model_is_exact() {
    let mut ctx = Ctx::new(0);
    let (z, tr) = ctx.trace(small).unwrap();
    let z = scalar(&z);
    let want = lnorm(z, 0.0, 1.0) + lnorm(1.0, z, 0.5);
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    assert_eq!(tr.latent_sites().count(), 1);
    assert_eq!(tr.observed_sites().count(), 1);
    let lik = scalar(&tr.log_prob_sum(|s| s.observed).unwrap());
    assert!((lik - lnorm(1.0, z, 0.5)).abs() < 1e-12);
    assert!(tr.site("z").unwrap().reparameterized);
    assert!(!tr.site("x").unwrap().reparameterized);
}

#[test]
fn condition_observes_and_reports_unused_names() {
    let mut ctx = Ctx::new(0);
    let data = ChoiceMap::new().with("z", s(0.3)).with("nope", s(1.0));
    let ((z, cond), tr) = ctx
        .trace(|ctx| ctx.handle(Condition::new(data), small))
        .unwrap();
    assert_eq!(scalar(&z), 0.3);
    assert!(tr.site("z").unwrap().observed);
    assert_eq!(tr.latent_sites().count(), 0);
    let want = lnorm(0.3, 0.0, 1.0) + lnorm(1.0, 0.3, 0.5);
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    assert_eq!(cond.unused(), vec![SiteName::from("nope")]);
}

#[test]
fn replay_reuses_latents_and_keeps_data() {
    let mut ctx = Ctx::new(1);
    let (_, first) = ctx.trace(small).unwrap();
    let (z2, second) = ctx
        .trace(|ctx| Ok(run(ctx, Replay::new(&first), small)))
        .unwrap();
    assert_eq!(host(&z2), host(&first.value("z").unwrap()));
    assert!(
        !second.site("z").unwrap().observed,
        "replayed latents stay latent"
    );
    assert_eq!(host(&second.value("x").unwrap()), vec![1.0]);
    // without replay a fresh run differs
    let (z3, _) = ctx.trace(small).unwrap();
    assert_ne!(host(&z3), host(&z2));
}

#[test]
fn block_hides_sites_from_outer_handlers_only() {
    let mut ctx = Ctx::new(2);
    let (z, tr) = ctx
        .trace(|ctx| Ok(run(ctx, Block::hide(["z"]), small)))
        .unwrap();
    assert!(tr.get("z").is_none());
    assert!(tr.get("x").is_some());
    // the model still used z: x's distribution is centred on it
    let loc = tr.site("x").unwrap().dist.as_ref().unwrap().mean().unwrap();
    assert_eq!(host(&loc), host(&z));
    let (_, tr) = ctx
        .trace(|ctx| Ok(run(ctx, Block::expose(["z"]), small)))
        .unwrap();
    assert_eq!(tr.len(), 1);
    let (_, tr) = ctx.trace(|ctx| Ok(run(ctx, Block::all(), small))).unwrap();
    assert!(tr.is_empty());
}

#[test]
fn scale_multiplies_and_nests() {
    let mut ctx = Ctx::new(3);
    let data = ChoiceMap::new().with("z", s(-0.4));
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Scale::new(2.0)?, |ctx| {
                Ok(run(ctx, Scale::new(1.5)?, |ctx| {
                    Ok(run(ctx, Condition::new(data), small))
                }))
            }))
        })
        .unwrap();
    let want = 3.0 * (lnorm(-0.4, 0.0, 1.0) + lnorm(1.0, -0.4, 0.5));
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let e = Scale::new(bad).unwrap_err().to_string();
        assert!(e.contains("finite and positive"), "{e}");
    }
}

#[test]
fn mask_zeroes_masked_elements_and_combines() {
    let mut ctx = Ctx::new(4);
    let x = t1(&[0.1, -0.2, 0.3], DType::F64);
    let model = |ctx: &mut Ctx| ctx.observe("x", Normal::new(&s(0.0), &s(1.0))?.expand(&[3])?, &x);
    let m1 = Mask::new(&t1(&[1.0, 0.0, 1.0], DType::F64)).unwrap();
    let m2 = Mask::new(&Tensor::new(&[1u8, 1, 0], &CPU).unwrap()).unwrap();
    let (_, tr) = ctx
        .trace(|ctx| Ok(run(ctx, m1, |ctx| Ok(run(ctx, m2, model)))))
        .unwrap();
    let lp = host(&tr.site("x").unwrap().log_prob().unwrap());
    assert_eq!(lp[1], 0.0);
    assert_eq!(lp[2], 0.0);
    assert!((lp[0] - lnorm(0.1, 0.0, 1.0)).abs() < 1e-12);
}

#[test]
fn substitute_with_a_trainable_tensor_gives_gradients() {
    let mut ctx = Ctx::new(5);
    let z = Var::new(0.7f64, &CPU).unwrap();
    let zt = z.as_tensor().clone();
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Substitute::new(ChoiceMap::new().with("z", zt)),
                small,
            ))
        })
        .unwrap();
    assert!(
        tr.site("z").unwrap().is_latent(),
        "substituted sites stay latent"
    );
    let lj = tr.log_joint().unwrap();
    let want = lnorm(0.7, 0.0, 1.0) + lnorm(1.0, 0.7, 0.5);
    assert!((scalar(&lj) - want).abs() < 1e-12);
    // d/dz [log N(z;0,1) + log N(1; z, 0.5)] = -z + (1 - z) / 0.25
    let g = lj.backward().unwrap();
    let dz = scalar(g.get(z.as_tensor()).unwrap());
    assert!((dz - (-0.7 + 0.3 / 0.25)).abs() < 1e-12);
    // a function source, on params too
    let (w, _) = ctx
        .trace(|ctx| {
            Ok(run(
                ctx,
                Substitute::with_fn(|m| {
                    m.name
                        .matches("w")
                        .then(|| Tensor::new(5.0f64, &CPU).unwrap())
                }),
                |ctx| ctx.param("w", || Ok(s(1.0)), Constraint::Real),
            ))
        })
        .unwrap();
    assert_eq!(scalar(&w), 5.0);
}

#[test]
fn scope_prefixes_names_and_nests() {
    let mut ctx = Ctx::new(6);
    let (_, tr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Scope::new("outer"), |ctx| {
                run(ctx, Scope::new("inner"), small);
                ctx.param("w", || Ok(s(1.0)), Constraint::Positive)
            }))
        })
        .unwrap();
    let names: Vec<String> = tr.sites().iter().map(|s| s.name.to_string()).collect();
    assert_eq!(names, ["outer/inner/z", "outer/inner/x", "outer/w"]);
    assert!(tr.get("outer/inner/z").is_some());
    assert_eq!(ctx.params().names(), ["outer/w"]);
}

#[test]
fn seed_makes_a_block_reproducible_whatever_the_context_seed() {
    let draw = |ctx_seed| {
        let mut ctx = Ctx::new(ctx_seed);
        host(&run(&mut ctx, Seed::new(42), small))
    };
    assert_eq!(draw(1), draw(2));
    let mut a = Ctx::new(1);
    let mut b = Ctx::new(2);
    assert_ne!(host(&small(&mut a).unwrap()), host(&small(&mut b).unwrap()));
}

#[test]
fn stop_gradient_detaches_samples() {
    let mut ctx = Ctx::new(7);
    let loc = Var::new(0.0f64, &CPU).unwrap();
    let model = |ctx: &mut Ctx| ctx.sample("z", Normal::new(loc.as_tensor(), &s(1.0))?);
    let (z, tr) = ctx
        .trace(|ctx| Ok(run(ctx, StopGradient::all(), model)))
        .unwrap();
    assert!(!tr.site("z").unwrap().reparameterized);
    let g = (z * 2.0).unwrap().backward().unwrap();
    assert!(g.get(loc.as_tensor()).is_none());
    let (z, tr) = ctx.trace(model).unwrap();
    assert!(tr.site("z").unwrap().reparameterized);
    let g = (z * 2.0).unwrap().backward().unwrap();
    assert_eq!(scalar(g.get(loc.as_tensor()).unwrap()), 2.0);
}

#[test]
fn plates_expand_allocate_dims_and_scale_subsamples() {
    let mut ctx = Ctx::new(8);
    let (idx, tr) = ctx
        .trace(|ctx| {
            ctx.plate("outer", 3, PlateOpts::default(), |ctx, _| {
                ctx.sample("a", Normal::new(&s(0.0), &s(1.0))?)?;
                ctx.plate(
                    "inner",
                    10,
                    PlateOpts {
                        subsample_size: Some(4),
                        ..Default::default()
                    },
                    |ctx, g| {
                        ctx.sample("b", Normal::new(&s(0.0), &s(1.0))?)?;
                        g.indices()
                    },
                )
            })
        })
        .unwrap();
    let a = tr.site("a").unwrap();
    assert_eq!(a.value.dims(), &[3]);
    assert_eq!(a.plates[0].dim, -1);
    let b = tr.site("b").unwrap();
    assert_eq!(
        b.value.dims(),
        &[4, 3],
        "inner plate takes the next free dim, -2"
    );
    assert_eq!(b.plates.len(), 2);
    assert_eq!((b.plates[1].dim, b.scale), (-2, 2.5));
    let lj = scalar(&tr.log_joint().unwrap());
    let la: f64 = host(&a.value).iter().map(|v| lnorm(*v, 0.0, 1.0)).sum();
    let lb: f64 = host(&b.value).iter().map(|v| lnorm(*v, 0.0, 1.0)).sum();
    assert!((lj - (la + 2.5 * lb)).abs() < 1e-10);
    let mut idx: Vec<u32> = idx.to_vec1().unwrap();
    idx.sort();
    idx.dedup();
    assert_eq!(idx.len(), 4);
    assert!(idx.iter().all(|&i| i < 10));
    // per-plate log densities: one value per element of "outer" (unscaled)
    let per = host(&tr.log_prob_per("outer").unwrap());
    let av = host(&a.value);
    let bv = host(&b.value); // [4, 3] row-major: column k belongs to outer element k
    for k in 0..3 {
        let want =
            lnorm(av[k], 0.0, 1.0) + (0..4).map(|r| lnorm(bv[r * 3 + k], 0.0, 1.0)).sum::<f64>();
        assert!((per[k] - want).abs() < 1e-10);
    }
    assert_eq!(ctx.depth(), 0, "plates are popped");
}

#[test]
fn plate_with_explicit_dim_and_particle_plate() {
    let mut ctx = Ctx::new(9);
    let (_, tr) = ctx
        .trace(|ctx| {
            ctx.plate(
                "particles",
                5,
                PlateOpts {
                    dim: Some(-2),
                    ..Default::default()
                },
                |ctx, _| {
                    ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
                        let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
                        // data broadcasts over the particle dim
                        ctx.observe(
                            "x",
                            Normal::new(&z, &s(1.0))?,
                            &t1(&[1.0, 2.0, 3.0], DType::F64),
                        )
                    })
                },
            )
        })
        .unwrap();
    assert_eq!(tr.value("z").unwrap().dims(), &[5, 3]);
    assert_eq!(tr.site("x").unwrap().log_prob().unwrap().dims(), &[5, 3]);
    assert_eq!(tr.log_prob_per("particles").unwrap().dims(), &[5]);
}

#[test]
fn shape_errors_name_the_site_the_plate_and_the_shapes() {
    let mut ctx = Ctx::new(10);
    let x = Tensor::zeros((64, 64), DType::F64, &CPU).unwrap();
    let err = ctx
        .plate("data", 128, PlateOpts::default(), |ctx, _| {
            let d = Normal::standard(&[64], DType::F64, &CPU)?.to_event(1)?;
            ctx.observe("x", d, &x)
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "site `x` in plate `data` (size 128): value shape [64, 64] does not match batch shape [128] + event shape [64]"
    );
    let err = ctx
        .plate("data", 128, PlateOpts::default(), |ctx, _| {
            ctx.sample("z", Normal::standard(&[64], DType::F64, &CPU)?)
        })
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "site `z` in plate `data` (size 128): distribution batch shape [64] has size 64 at dim -1, where plate `data` needs 128 (or 1 to broadcast)"
    );
    assert_eq!(ctx.depth(), 0, "the stack is restored after an error");
    // replayed values are checked too
    let bad = ChoiceMap::new().with("z", t1(&[1.0, 2.0], DType::F64));
    let err = ctx.handle(Substitute::new(bad), small).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "site `z`: value shape [2] does not match batch shape [] + event shape []"
        ),
        "{err}"
    );
}

#[test]
fn duplicate_names_are_errors_but_params_may_repeat() {
    let mut ctx = Ctx::new(11);
    let err = ctx
        .trace(|ctx| {
            small(ctx)?;
            small(ctx)
        })
        .unwrap_err();
    assert!(
        matches!(&err, PplError::DuplicateSite { site } if site == "z"),
        "{err}"
    );
    assert!(err.to_string().contains("(\"z\", i)"));
    let (_, tr) = ctx
        .trace(|ctx| {
            ctx.param("w", || Ok(s(1.0)), Constraint::Real)?;
            ctx.param("w", || Ok(s(1.0)), Constraint::Real)
        })
        .unwrap();
    assert_eq!(tr.param_sites().count(), 1);
}

#[test]
fn dynamic_names_in_loops() {
    let mut ctx = Ctx::new(12);
    let (_, tr) = ctx
        .trace(|ctx| {
            let mut prev = s(0.0);
            for i in 0..5 {
                prev = ctx.sample(("x", i), Normal::new(&prev, &s(1.0))?)?;
                ctx.deterministic(("sq", i, 0), &prev.sqr()?)?;
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(tr.len(), 10);
    assert_eq!(tr.site("x[3]").unwrap().name, SiteName::indexed("x", 3));
    assert!(tr.get("sq[4, 0]").is_some());
    let x: Vec<f64> = (0..5)
        .map(|i| scalar(&tr.value(("x", i)).unwrap()))
        .collect();
    let mut want = 0.0;
    let mut prev = 0.0;
    for v in &x {
        want += lnorm(*v, prev, 1.0);
        prev = *v;
    }
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    // a long loop switches the trace to its hash index and keeps finding names
    let (_, tr) = ctx
        .trace(|ctx| {
            for i in 0..40 {
                ctx.sample(("y", i), Normal::new(&s(0.0), &s(1.0))?)?;
            }
            Ok(())
        })
        .unwrap();
    assert!(tr.get(("y", 0)).is_some() && tr.get("y[39]").is_some() && tr.get("y[40]").is_none());
    let err = ctx
        .trace(|ctx| {
            for _ in 0..20 {
                ctx.sample("y", Normal::new(&s(0.0), &s(1.0))?)?;
            }
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(err, PplError::DuplicateSite { .. }));
}

#[test]
fn factor_and_deterministic_sites() {
    let mut ctx = Ctx::new(13);
    let (_, tr) = ctx
        .trace(|ctx| {
            ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
                let z = ctx.sample("z", Normal::new(&s(0.0), &s(1.0))?)?;
                ctx.factor("energy", &z.sqr()?.neg()?)?;
                ctx.deterministic("double", &(z * 2.0)?)
            })
        })
        .unwrap();
    let z = host(&tr.value("z").unwrap());
    let want: f64 = z.iter().map(|v| lnorm(*v, 0.0, 1.0) - v * v).sum();
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
    assert_eq!(
        host(&tr.value("double").unwrap()),
        z.iter().map(|v| 2.0 * v).collect::<Vec<_>>()
    );
    let shapes = tr.format_shapes().unwrap();
    assert!(
        shapes.contains("energy") && shapes.contains("factor") && shapes.contains("deterministic"),
        "{shapes}"
    );
    assert!(
        shapes
            .lines()
            .any(|l| l.starts_with("z ") && l.contains("data[-1]=3") && l.contains("[3] | []")),
        "{shapes}"
    );
}

#[test]
fn composed_handlers_replay_into_a_conditioned_scaled_model() {
    // guide q(z) = N(0.2, 0.1); model traced under replay(guide) and scale 0.5:
    // log_joint = 0.5 (log p(z_q) + log p(x | z_q))
    let mut ctx = Ctx::new(14);
    let guide = |ctx: &mut Ctx| ctx.sample("z", Normal::new(&s(0.2), &s(0.1))?);
    let (zq, gtr) = ctx.trace(guide).unwrap();
    let (_, mtr) = ctx
        .trace(|ctx| {
            Ok(run(ctx, Scale::new(0.5)?, |ctx| {
                Ok(run(ctx, Replay::new(&gtr), small))
            }))
        })
        .unwrap();
    let z = scalar(&zq);
    let want = 0.5 * (lnorm(z, 0.0, 1.0) + lnorm(1.0, z, 0.5));
    assert!((scalar(&mtr.log_joint().unwrap()) - want).abs() < 1e-12);
    check_guide(&mtr, &gtr).unwrap();
}

#[test]
fn contexts_are_send_and_threads_reproduce() {
    fn assert_send<T: Send>() {}
    assert_send::<Ctx>();
    let draw = |seed| {
        std::thread::spawn(move || {
            let mut ctx = Ctx::new(seed);
            host(&ctx.trace(small).unwrap().1.value("z").unwrap())
        })
    };
    let (a, b) = (draw(3), draw(3));
    assert_eq!(a.join().unwrap(), b.join().unwrap());
}

/// A user-defined handler: counts the sites it sees and doubles every observed site's scale.
#[derive(Default)]
struct CountAndWeight {
    seen: Vec<String>,
}

impl ppl_core::handlers::Handler for CountAndWeight {
    fn process(&mut self, msg: &mut ppl_core::Message) -> Result<()> {
        if msg.observed {
            msg.scale *= 2.0;
        }
        Ok(())
    }
    fn postprocess(&mut self, msg: &mut ppl_core::Message) -> Result<()> {
        self.seen.push(msg.name.to_string());
        Ok(())
    }
}

#[test]
fn user_defined_handlers_compose_with_built_in_ones() {
    let mut ctx = Ctx::new(15);
    let data = ChoiceMap::new().with("z", s(0.1));
    let ((_, counter), tr) = ctx
        .trace(|ctx| {
            ctx.handle(CountAndWeight::default(), |ctx| {
                Ok(run(ctx, Condition::new(data), small))
            })
        })
        .unwrap();
    assert_eq!(counter.seen, ["z", "x"]);
    // both sites are observed (z by conditioning): both log densities doubled
    let want = 2.0 * (lnorm(0.1, 0.0, 1.0) + lnorm(1.0, 0.1, 0.5));
    assert!((scalar(&tr.log_joint().unwrap()) - want).abs() < 1e-12);
}

#[test]
fn discrete_latents_are_marked_not_reparameterized() {
    let mut ctx = Ctx::new(16);
    let (_, tr) = ctx
        .trace(|ctx| {
            let k = ctx.sample("k", Bernoulli::from_probs(&s(0.3))?)?;
            ctx.sample("g", Gamma::new(&(k + 1.0)?, &s(1.0))?)
        })
        .unwrap();
    assert!(
        !tr.site("k").unwrap().reparameterized,
        "needs a score-function term"
    );
    assert!(
        tr.site("g").unwrap().reparameterized,
        "implicit reparameterisation"
    );
}

#[test]
fn subsample_indices_are_traced_replayed_and_reused_within_a_run() {
    let mut ctx = Ctx::new(17);
    let opts = || PlateOpts {
        subsample_size: Some(3),
        ..Default::default()
    };
    let batch = |ctx: &mut Ctx| ctx.plate("data", 100, opts(), |_, g| g.indices());
    // the guide's minibatch is recorded as a `subsample` site named after the plate
    let (gi, gtr) = ctx.trace(batch).unwrap();
    let site = gtr.site("data").unwrap();
    assert_eq!(site.kind, SiteKind::Subsample);
    assert!(!site.has_density() && !site.is_latent());
    // replaying the guide trace gives the model the same minibatch
    let (mi, _) = ctx
        .trace(|ctx| Ok(run(ctx, Replay::new(&gtr), batch)))
        .unwrap();
    assert_eq!(host(&mi), host(&gi));
    // without replay a new minibatch is drawn; within one traced run it is reused
    let ((a, b), tr) = ctx.trace(|ctx| Ok((batch(ctx)?, batch(ctx)?))).unwrap();
    assert_eq!(host(&a), host(&b));
    assert_ne!(host(&a), host(&gi));
    assert_eq!(tr.len(), 1);
}

#[test]
fn exiting_an_outer_plate_inside_a_handler_is_an_error_not_a_panic() {
    let mut ctx = Ctx::new(18);
    let g = ctx.plate_enter("outer", 2, PlateOpts::default()).unwrap();
    let err = ctx
        .handle(Scale::new(2.0).unwrap(), move |ctx| ctx.plate_exit(g))
        .unwrap_err();
    assert!(
        err.to_string().contains("unwound below this handler"),
        "{err}"
    );
    assert_eq!(ctx.depth(), 0);
}
