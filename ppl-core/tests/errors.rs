//! The error type: causes kept as sources, `root_cause`, constructors.
mod common;

use candle_core::{DType, Device, Tensor};
use common::{s, t1};
use ppl_core::prelude::*;
use ppl_core::{atomic_write, read_safetensors};
use std::error::Error as _;

/// A support violation while scoring a site is an `AtSite` error naming the site and its
/// plate, whose root cause is the distribution's `OutsideSupport` error.
#[test]
fn a_support_violation_at_a_site_stays_matchable() {
    let mut ctx = Ctx::new(0);
    let (_, tr) = ctx
        .trace(|ctx| {
            ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
                ctx.observe(
                    "x",
                    Exponential::new(&s(1.0))?,
                    &t1(&[1.0, -2.0, 3.0], DType::F64),
                )
            })
        })
        .unwrap();
    let e = tr.log_joint().unwrap_err();
    assert!(
        matches!(&e, PplError::AtSite { site, plates, .. }
        if site == "x" && plates.contains("data")),
        "{e}"
    );
    assert!(
        matches!(
            e.root_cause(),
            PplError::OutsideSupport {
                family: "Exponential",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.site_name(), Some("x"));
    // the source chain reaches the same error
    let src = e.source().unwrap().downcast_ref::<PplError>().unwrap();
    assert!(matches!(src, PplError::OutsideSupport { .. }));
    let text = e.to_string();
    assert!(
        text.starts_with("site `x` in plate `data` (size 3): Exponential: value outside"),
        "{text}"
    );
    assert!(text.contains("-2"), "{text}");
    // an error that wraps nothing is its own root cause
    let plain = PplError::config("Scale", "bad");
    assert!(matches!(plain.root_cause(), PplError::InvalidConfig { .. }));
}

/// A distribution whose sampler and `expand` fail (as a user-defined one might).
#[derive(Debug)]
struct NoSampler;

impl Distribution for NoSampler {
    fn family(&self) -> &'static str {
        "NoSampler"
    }
    fn batch_shape(&self) -> &[usize] {
        &[]
    }
    fn event_shape(&self) -> &[usize] {
        &[]
    }
    fn has_rsample(&self) -> bool {
        false
    }
    fn sample(&self, _: &mut ppl_core::PplRng, _: &[usize]) -> Result<Tensor> {
        Err(PplError::NotAvailable {
            family: "NoSampler",
            quantity: "sample",
            why: "is not implemented",
        })
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        Ok(value.zeros_like()?)
    }
    fn support(&self) -> Constraint {
        Constraint::Real
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        Err(PplError::Shape {
            family: "NoSampler",
            message: format!("cannot expand to {batch_shape:?}"),
        })
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn dtype(&self) -> DType {
        DType::F64
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Errors raised while drawing a site, or while a plate broadcasts its distribution, name
/// the site and keep the distribution's error as the root cause.
#[test]
fn sampling_and_broadcasting_errors_are_wrapped_with_the_site() {
    let mut ctx = Ctx::new(1);
    let e = ctx
        .trace(|ctx| ctx.sample("z", NoSampler.into_dyn()))
        .unwrap_err();
    assert_eq!(e.site_name(), Some("z"), "{e}");
    assert!(
        matches!(
            e.root_cause(),
            PplError::NotAvailable {
                quantity: "sample",
                ..
            }
        ),
        "{e:?}"
    );
    let e = ctx
        .trace(|ctx| {
            ctx.plate("data", 3, PlateOpts::default(), |ctx, _| {
                ctx.sample("w", NoSampler.into_dyn())
            })
        })
        .unwrap_err();
    assert!(
        matches!(&e, PplError::AtSite { site, .. } if site == "w"),
        "{e:?}"
    );
    assert!(
        matches!(
            e.root_cause(),
            PplError::Shape {
                family: "NoSampler",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("plate `data`"), "{e}");
    // matching through the wrapper works without root_cause too
    let PplError::AtSite { source, .. } = e else {
        unreachable!()
    };
    assert!(matches!(*source, PplError::Shape { .. }));
    assert!(matches!(source.into_inner(), PplError::Shape { .. }));
}

#[test]
fn a_file_error_keeps_the_io_error_as_its_source() {
    let dir = std::env::temp_dir().join(format!("ppl-errors-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let missing = dir.join("absent.safetensors");
    let e = read_safetensors(&missing, &Device::Cpu).unwrap_err();
    assert!(e.is_file());
    let PplError::FileIo { path, reason, .. } = &e else {
        panic!("expected FileIo, got {e:?}")
    };
    assert_eq!(
        (path.as_str(), reason.as_str()),
        (missing.to_str().unwrap(), "cannot read")
    );
    let io = e
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    // writing into a directory that does not exist
    let e = atomic_write(&dir.join("no/such/dir/f.bin"), b"x").unwrap_err();
    let io = e
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .unwrap();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("cannot write"), "{e}");
    // a file that is no safetensors keeps the decoder's error
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk");
    std::fs::write(&junk, b"no").unwrap();
    let e = read_safetensors(&junk, &Device::Cpu).unwrap_err();
    assert!(e.source().is_some() && e.to_string().contains("not a valid safetensors file"));
    assert!(e
        .source()
        .unwrap()
        .downcast_ref::<std::io::Error>()
        .is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn settings_are_config_errors() {
    assert!(matches!(
        ppl_core::handlers::Scale::new(-1.0),
        Err(PplError::InvalidConfig {
            context: "Scale",
            ..
        })
    ));
    let mut ctx = Ctx::new(2);
    let opts = PlateOpts {
        dim: Some(1),
        ..Default::default()
    };
    let e = ctx.plate("p", 3, opts, |_, _| Ok(())).unwrap_err();
    assert!(
        matches!(
            e,
            PplError::InvalidConfig {
                context: "plate",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("dim must be negative, got 1"), "{e}");
}

/// KL between distributions whose batch shapes do not broadcast names both families, both
/// shapes and "KL" (it was a raw candle shape error).
#[test]
fn kl_with_batch_shapes_that_do_not_broadcast_names_families_and_shapes() {
    let p = Normal::new(&t1(&[0.0, 1.0, 2.0], DType::F64), &s(1.0)).unwrap();
    let q = Normal::new(&t1(&[0.0, 1.0], DType::F64), &s(1.0)).unwrap();
    let e = kl_divergence(&p, &q).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, PplError::Shape { .. }), "{msg}");
    assert!(
        msg.contains("KL(Normal ‖ Normal)") && msg.contains("[3]") && msg.contains("[2]"),
        "{msg}"
    );
    let e = kl_divergence(&p.clone().to_event(1).unwrap(), &q.to_event(1).unwrap()).unwrap_err();
    // Independent wrappers with equal (empty) batch shapes: the base pair is named
    let msg = e.to_string();
    assert!(
        msg.contains("KL(Normal ‖ Normal)") && msg.contains("[3] and [2]"),
        "{msg}"
    );
}

/// A guide value of another dtype than the model's distribution, replayed into the model:
/// a guide mismatch naming the site and both dtypes.
#[test]
fn a_guide_value_of_another_dtype_names_the_site_and_both_dtypes() {
    use ppl_core::handlers::Replay;
    let mut ctx = Ctx::new(0);
    let (_, guide) = ctx
        .trace(|ctx| {
            let loc = Tensor::new(0.0f32, &Device::Cpu)?;
            let sd = Tensor::new(1.0f32, &Device::Cpu)?;
            ctx.sample("w", Normal::new(&loc, &sd)?)
        })
        .unwrap();
    let e = ctx
        .trace(|ctx| {
            ctx.handle(Replay::new(&guide), |ctx| {
                let w = ctx.sample("w", Normal::new(&s(0.0), &s(1.0))?)?;
                ctx.observe("x", Normal::new(&w, &s(1.0))?, &s(0.5))
            })
        })
        .and_then(|(_, tr)| tr.log_joint())
        .unwrap_err();
    let msg = e.to_string();
    assert_eq!(e.site_name(), Some("w"), "{msg}");
    assert!(
        msg.contains("guide's (replayed) value has dtype F32")
            && msg.contains("model's Normal distribution has dtype F64"),
        "{msg}"
    );
}

/// Asking for CUDA in a build without the feature says which feature to enable.
#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_which_feature_to_enable() {
    for name in ["cuda", "cuda:1"] {
        let e = ppl_core::device_from_name(name).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PplError::InvalidConfig { .. }), "{msg}");
        assert!(
            msg.contains("`cuda` feature")
                && msg.contains("--features cuda")
                && msg.contains("`ppl`"),
            "{msg}"
        );
    }
    assert!(ppl_core::best_device().unwrap().is_cpu());
}
