//! The shared training loop: observers, skipping non-finite losses, clipping, schedules.

use candle_core::{Device, Tensor};
use ppl_core::prelude::*;
use ppl_inference::engines::{Svi, TraceElbo};
use ppl_inference::observers::{CsvLog, EarlyStopping, LossPlot, Progress};
use ppl_inference::{Adam, Sgd};
use ppl_inference::{Cosine, ExponentialDecay, Schedule};
use ppl_inference::{Engine, ParamGroup, StepOutput, Trainer};

/// loss(θ) = (θ − 3)², θ a real param; `nan_every` makes every n-th step non-finite.
struct Quadratic {
    calls: u64,
    nan_every: u64,
}

impl Engine for Quadratic {
    fn name(&self) -> &str {
        "quadratic"
    }
    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        self.calls += 1;
        let th = ctx.param(
            "theta",
            || Ok(Tensor::new(0f64, &Device::Cpu)?),
            Constraint::Real,
        )?;
        let loss = (&th - 3.0)?.sqr()?;
        let mut value = loss.to_scalar::<f64>()?;
        if self.nan_every > 0 && self.calls % self.nan_every == 0 {
            value = f64::NAN;
        }
        let metrics = ppl_inference::Metrics::new().with("theta", th.to_scalar::<f64>()?);
        Ok(StepOutput {
            loss,
            value,
            metrics,
        })
    }
}

fn theta(ctx: &Ctx) -> f64 {
    ctx.params()
        .get("theta")
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn non_finite_steps_are_skipped_and_counted_then_an_error() {
    let mut ctx = Ctx::new(0);
    let mut t = Trainer::new(Sgd::new(0.0).unwrap(), 0.1).unwrap();
    let r = t
        .run(
            &mut ctx,
            &mut Quadratic {
                calls: 0,
                nan_every: 3,
            },
            30,
        )
        .unwrap();
    assert_eq!((r.skipped, r.losses.len()), (10, 20));
    // 20 applied SGD steps on (θ−3)²: θ_n = 3 − 3·0.8ⁿ exactly
    assert!((theta(&ctx) - (3.0 - 3.0 * 0.8f64.powi(20))).abs() < 1e-12);
    let mut ctx = Ctx::new(0);
    let mut t = Trainer::new(Sgd::new(0.0).unwrap(), 0.1)
        .unwrap()
        .with_max_non_finite(3);
    let e = t
        .run(
            &mut ctx,
            &mut Quadratic {
                calls: 0,
                nan_every: 1,
            },
            30,
        )
        .unwrap_err();
    assert!(
        matches!(e, PplError::NonFiniteLoss { step: 3, count: 4 }),
        "{e}"
    );
}

/// loss(θ) = (θ − 3)² + √(θ − c), where c = θ exactly on the marked calls: the loss is
/// then finite but d√u/du at u = 0 is infinite, so the gradient is not.
struct SqrtEdge {
    calls: u64,
    bad: fn(u64) -> bool,
}

impl Engine for SqrtEdge {
    fn name(&self) -> &str {
        "sqrt-edge"
    }
    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        self.calls += 1;
        let th = ctx.param(
            "theta",
            || Ok(Tensor::new(0f64, &Device::Cpu)?),
            Constraint::Real,
        )?;
        let c = if (self.bad)(self.calls) {
            th.to_scalar::<f64>()?
        } else {
            th.to_scalar::<f64>()? - 1.0
        };
        let edge = (&th - c)?.sqrt()?;
        let loss = ((&th - 3.0)?.sqr()? + edge)?;
        let value = loss.to_scalar::<f64>()?;
        Ok(StepOutput {
            loss,
            value,
            metrics: ppl_inference::Metrics::new(),
        })
    }
}

#[test]
fn non_finite_gradients_with_finite_losses_are_skipped_and_leave_everything_untouched() {
    // Every third step has a finite loss and an infinite gradient.
    let mut ctx = Ctx::new(0);
    let mut t = Trainer::new(Adam::new(), 0.1).unwrap();
    let mut e = SqrtEdge {
        calls: 0,
        bad: |n| n % 3 == 0,
    };
    let r = t.run(&mut ctx, &mut e, 30).unwrap();
    assert_eq!(
        (r.skipped, r.skipped_gradients, r.losses.len()),
        (10, 10, 20)
    );
    assert!(theta(&ctx).is_finite());
    // Adam saw 20 steps, not 30: its moment estimates only include finite gradients.
    assert_eq!(t.optimizer().steps(), 20);
    // The same trajectory as 20 clean steps: skipped steps changed neither θ nor Adam.
    let mut clean_ctx = Ctx::new(0);
    let mut clean = Trainer::new(Adam::new(), 0.1).unwrap();
    clean
        .run(
            &mut clean_ctx,
            &mut SqrtEdge {
                calls: 0,
                bad: |_| false,
            },
            20,
        )
        .unwrap();
    assert_eq!(theta(&ctx).to_bits(), theta(&clean_ctx).to_bits());
    let (ms, _) = t.optimizer().state();
    let (clean_ms, _) = clean.optimizer().state();
    for ((n, a), (m, b)) in ms.iter().zip(&clean_ms) {
        assert_eq!(n, m);
        let (a, b) = (a.to_scalar::<f64>().unwrap(), b.to_scalar::<f64>().unwrap());
        assert!(
            a.is_finite() && a.to_bits() == b.to_bits(),
            "{n}: {a} vs {b}"
        );
    }
    // `Trainer::step` reports a skipped step as `None` and changes nothing.
    let before = theta(&ctx);
    let mut always = SqrtEdge {
        calls: 0,
        bad: |_| true,
    };
    assert_eq!(t.step(&mut ctx, &mut always).unwrap(), None);
    assert_eq!(theta(&ctx).to_bits(), before.to_bits());
    assert_eq!(t.optimizer().steps(), 20);
    // Too many in a row: a typed error naming the parameter.
    let mut ctx = Ctx::new(0);
    let mut t = Trainer::new(Adam::new(), 0.1)
        .unwrap()
        .with_max_non_finite(3);
    let err = t.run(&mut ctx, &mut always, 30).unwrap_err();
    match &err {
        PplError::NonFiniteGradient {
            step: 3,
            count: 4,
            params,
        } => assert_eq!(params, &["theta".to_string()]),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("theta"), "{err}");
    assert_eq!(theta(&ctx), 0.0);
}

#[test]
fn clipping_bounds_the_gradient_norm() {
    // θ = 0: gradient −6; clipped to norm 0.5, so one SGD step with lr 1 moves θ by 0.5.
    let mut ctx = Ctx::new(0);
    let mut t = Trainer::new(Sgd::new(0.0).unwrap(), 1.0)
        .unwrap()
        .with_clip_norm(0.5)
        .unwrap();
    t.run(
        &mut ctx,
        &mut Quadratic {
            calls: 0,
            nan_every: 0,
        },
        1,
    )
    .unwrap();
    assert!((theta(&ctx) - 0.5).abs() < 1e-12);
    assert!(Trainer::new(Sgd::new(0.0).unwrap(), 1.0)
        .unwrap()
        .with_clip_norm(-1.0)
        .is_err());
    assert!(Trainer::new(Sgd::new(0.0).unwrap(), f64::NAN).is_err());
}

#[test]
fn schedules() {
    let e = ExponentialDecay {
        lr0: 0.1,
        gamma: 0.5,
    };
    assert_eq!((e.lr(0), e.lr(3)), (0.1, 0.0125));
    let c = Cosine {
        lr0: 1.0,
        min: 0.0,
        steps: 10,
    };
    assert!((c.lr(5) - 0.5).abs() < 1e-12 && c.lr(10).abs() < 1e-12 && c.lr(20).abs() < 1e-12);
}

#[test]
fn observers_log_plot_and_stop_on_a_plateau() {
    let dir = std::env::temp_dir().join(format!("ppl-train-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let x = Tensor::new(&[0.9f64, 1.1, 1.3, 0.7], &Device::Cpu).unwrap();
    let model = |ctx: &mut Ctx| -> Result<()> {
        let s = |v: f64| Tensor::new(v, &Device::Cpu);
        let z = ctx.sample("z", Normal::new(&s(0.0)?, &s(1.0)?)?)?;
        ctx.plate("data", 4, PlateOpts::default(), |ctx, _| {
            ctx.observe("x", Normal::new(&z, &s(0.5)?)?, &x)
        })?;
        Ok(())
    };
    let guide = |ctx: &mut Ctx| -> Result<()> {
        let s = |v: f64| Tensor::new(v, &Device::Cpu);
        let loc = ctx.param("loc", || s(0.0).map_err(Into::into), Constraint::Real)?;
        let sd = ctx.param("sd", || s(1.0).map_err(Into::into), Constraint::Positive)?;
        ctx.sample("z", Normal::new(&loc, &sd)?)?;
        Ok(())
    };
    let max = 5000;
    let mut t = Trainer::new(Adam::new(), 0.05)
        .unwrap()
        .observe(Progress::new(max))
        .observe(CsvLog::new(dir.join("log.csv")))
        .observe(LossPlot::new(dir.join("loss.svg")))
        .observe(LossPlot::new(dir.join("loss.png")))
        .observe(EarlyStopping::new(200, 1e-3));
    let mut ctx = Ctx::new(5);
    let report = t
        .run(
            &mut ctx,
            &mut Svi::new(&model, &guide, TraceElbo::new()),
            max,
        )
        .unwrap();
    assert!(
        report.stopped_early,
        "the ELBO plateaus long before 5000 steps"
    );
    assert!(report.losses.len() < max as usize);
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(csv.lines().count(), report.losses.len() + 1);
    assert!(csv.starts_with("step,loss,average,lr,skipped\n"));
    let png = std::fs::read(dir.join("loss.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("polyline"),
        "an SVG with line series"
    );
    // posterior: precision 1 + 4/0.25 = 17, mean = 16·1.0/17
    let loc = report
        .params
        .iter()
        .find(|(n, _)| n == "loc")
        .unwrap()
        .1
        .to_scalar::<f64>()
        .unwrap();
    assert!((loc - 16.0 / 17.0).abs() < 0.1, "loc = {loc}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn image_grid_writes_a_png_of_the_expected_size() {
    // 5 images of 3x4 pixels in 2 columns at zoom 2: width (2·(4+1)+1)·2 = 22,
    // height (3·(3+1)+1)·2 = 26 (rows = ceil(5/2) = 3).
    let dir = std::env::temp_dir().join(format!("ppl-grid-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let imgs = candle_core::Tensor::ones(
        (5, 3, 4),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let path = dir.join("g.png");
    ppl_inference::plots::image_grid(&path, &imgs, 2, 2).unwrap();
    let png = std::fs::read(&path).unwrap();
    let be = |i: usize| u32::from_be_bytes([png[i], png[i + 1], png[i + 2], png[i + 3]]);
    assert_eq!((be(16), be(20)), (22, 26));
    let flat =
        candle_core::Tensor::ones((5, 12), candle_core::DType::F32, &candle_core::Device::Cpu)
            .unwrap();
    assert!(ppl_inference::plots::image_grid(&path, &flat, 2, 2).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `loss = (a − 1)² + (b − 2)²` on two store parameters and `(f + 1)²` on a free variable.
struct ThreeQuadratics {
    free: candle_core::Var,
}

impl Engine for ThreeQuadratics {
    fn name(&self) -> &str {
        "three_quadratics"
    }
    fn init(&mut self, _ctx: &mut Ctx) -> Result<()> {
        Ok(())
    }
    fn step(&mut self, ctx: &mut Ctx) -> Result<StepOutput> {
        let zero = || Ok(Tensor::new(0f64, &Device::Cpu)?);
        let a = ctx.param("gen/a", zero, Constraint::Real)?;
        let b = ctx.param("rec/b", zero, Constraint::Real)?;
        let f = self.free.as_tensor();
        let da = (&a - 1.0)?;
        let db = (&b - 2.0)?;
        let df = (f + 1.0)?;
        let loss = ((da.sqr()? + db.sqr()?)? + df.sqr()?)?;
        let value = loss.to_scalar::<f64>()?;
        let metrics = ppl_inference::Metrics::new()
            .with("a_err", da.to_scalar::<f64>()?)
            .with("b_err", db.to_scalar::<f64>()?);
        Ok(StepOutput {
            loss,
            value,
            metrics,
        })
    }
}

#[test]
fn parameter_groups_have_their_own_rates_schedules_and_free_variables() {
    // SGD on (θ − c)² with rate r: θ_n − c = (θ_0 − c)(1 − 2r)ⁿ, exactly, per group.
    let free = candle_core::Var::from_tensor(&Tensor::new(0f64, &Device::Cpu).unwrap()).unwrap();
    let mut t = Trainer::with_groups(vec![
        ParamGroup::new("generative", Sgd::new(0.0).unwrap(), 0.1)
            .unwrap()
            .with_prefixes(["gen/"])
            .unwrap(),
        ParamGroup::new("recognition", Sgd::new(0.0).unwrap(), 0.25)
            .unwrap()
            .with_schedule(ExponentialDecay {
                lr0: 0.25,
                gamma: 0.5,
            }),
        ParamGroup::free(
            "latents",
            vec![("f".into(), free.clone())],
            Sgd::new(0.0).unwrap(),
            0.05,
        )
        .unwrap(),
    ])
    .unwrap();
    let mut ctx = Ctx::new(0);
    let mut engine = ThreeQuadratics { free: free.clone() };
    let r = t.run(&mut ctx, &mut engine, 6).unwrap();
    let get = |ctx: &Ctx, n: &str| ctx.params().get(n).unwrap().to_scalar::<f64>().unwrap();
    assert!((get(&ctx, "gen/a") - (1.0 - 0.8f64.powi(6))).abs() < 1e-12);
    // rec/b: rates 0.25·0.5^s, factors (1 − 0.5^{s+1}) for s = 0..5
    let fb: f64 = (0..6).map(|s| 1.0 - 0.5f64.powi(s + 1)).product();
    assert!((get(&ctx, "rec/b") - (2.0 - 2.0 * fb)).abs() < 1e-12);
    let f = free.as_tensor().to_scalar::<f64>().unwrap();
    assert!((f - (-1.0 + 0.9f64.powi(6))).abs() < 1e-12);
    // the engine's metrics reach the report, one value per applied step
    assert_eq!(r.metrics["a_err"].len(), 6);
    assert!((r.metrics["a_err"][0] + 1.0).abs() < 1e-12);
    assert_eq!(t.steps(), 6);
    // a parameter claimed by two prefix groups, duplicate group names, a schedule that
    // yields a non-positive rate: typed errors naming what is wrong
    let mut two = Trainer::with_groups(vec![
        ParamGroup::new("x", Sgd::new(0.0).unwrap(), 0.1)
            .unwrap()
            .with_prefixes(["gen/"])
            .unwrap(),
        ParamGroup::new("y", Sgd::new(0.0).unwrap(), 0.1)
            .unwrap()
            .with_prefixes(["gen"])
            .unwrap(),
    ])
    .unwrap();
    let e = two.run(&mut ctx, &mut engine, 1).unwrap_err();
    assert!(matches!(e, PplError::InvalidConfig { .. }), "{e}");
    assert!(
        e.to_string().contains("`gen/a`") && e.to_string().contains("`x`"),
        "{e}"
    );
    assert!(Trainer::with_groups(vec![
        ParamGroup::new("x", Sgd::new(0.0).unwrap(), 0.1).unwrap(),
        ParamGroup::new("x", Sgd::new(0.0).unwrap(), 0.1).unwrap(),
    ])
    .is_err());
    let mut bad = Trainer::new(Sgd::new(0.0).unwrap(), 0.1)
        .unwrap()
        .with_schedule(ExponentialDecay {
            lr0: 0.1,
            gamma: -1.0,
        });
    let before = get(&ctx, "gen/a");
    let e = bad.run(&mut ctx, &mut engine, 3).unwrap_err();
    assert!(
        e.to_string().contains("learning rate -0.1 at step 1"),
        "{e}"
    );
    assert_eq!(
        get(&ctx, "gen/a"),
        before - 0.2 * (before - 1.0),
        "only step 0 was applied"
    );
}

#[test]
fn metrics_become_csv_columns() {
    let dir = std::env::temp_dir().join(format!("ppl-metrics-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut t = Trainer::new(Sgd::new(0.0).unwrap(), 0.1)
        .unwrap()
        .observe(CsvLog::new(dir.join("log.csv")));
    let mut q = Quadratic {
        calls: 0,
        nan_every: 0,
    };
    t.run(&mut Ctx::new(0), &mut q, 3).unwrap();
    let csv = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,loss,average,lr,skipped,theta");
    // ... and panels of the loss plot, with their names as text
    let mut t = Trainer::new(Sgd::new(0.0).unwrap(), 0.1)
        .unwrap()
        .observe(LossPlot::new(dir.join("loss.svg")));
    t.run(
        &mut Ctx::new(0),
        &mut Quadratic {
            calls: 0,
            nan_every: 0,
        },
        30,
    )
    .unwrap();
    let svg = std::fs::read_to_string(dir.join("loss.svg")).unwrap();
    let texts: Vec<&str> = svg.lines().map(str::trim).collect();
    assert!(
        texts.contains(&"theta") && texts.contains(&"quadratic loss"),
        "a loss panel and a metric panel"
    );
    // θ before step 1 of SGD at rate 0.1 on (θ − 3)²: 0.6
    assert!(
        lines[2].ends_with(",0.6000000000000001") || lines[2].ends_with(",0.6"),
        "{}",
        lines[2]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn optimiser_state_does_not_keep_the_step_graphs_alive() {
    // candle leaves a variable's gradient attached to the graph of the step; Adam's
    // moments and Sgd's momentum must be detached, or each step's graph stays referenced
    // by the state forever (memory grows by one graph per step: gigabytes in a few
    // hundred steps of a flow). After steps on a loss with a long graph, no state tensor
    // may track an op.
    use ppl_inference::Optimizer;
    let store = ParamStore::new();
    let vb = store.var_builder(candle_core::DType::F64, &Device::Cpu, 0);
    let w = vb
        .get_with_hints(3, "w", candle_nn::Init::Const(0.5))
        .unwrap();
    let vars = store.vars();
    let x = Tensor::new(&[1.0f64, -2.0, 0.5], &Device::Cpu).unwrap();
    let mut adam = Adam::new();
    let mut sgd = Sgd::new(0.9).unwrap();
    for _ in 0..3 {
        let loss = w
            .sqr()
            .unwrap()
            .mul(&x)
            .unwrap()
            .tanh()
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        adam.step(&vars, &grads, 0.01).unwrap();
        sgd.step(&vars, &grads, 0.01).unwrap();
    }
    for (name, t) in adam.state().0.iter().chain(sgd.state().0.iter()) {
        assert!(!t.track_op(), "optimiser state `{name}` keeps a graph");
    }
}
