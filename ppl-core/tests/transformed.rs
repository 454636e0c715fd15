//! TransformedDistribution against closed forms.

use candle_core::{DType, Device, Tensor};
use ppl_core::distributions::TransformedDistribution;
use ppl_core::prelude::*;
use ppl_core::transforms::{biject_to, ExpTransform};
use std::sync::Arc;

#[test]
fn exp_of_a_normal_is_the_log_normal() {
    let dev = Device::Cpu;
    let (loc, scale) = (
        Tensor::new(&[0.3f64, -1.0, 2.0], &dev).unwrap(),
        Tensor::new(&[0.5f64, 1.5, 0.2], &dev).unwrap(),
    );
    let t = TransformedDistribution::new(
        Normal::new(&loc, &scale).unwrap().into_dyn(),
        Arc::new(ExpTransform::new(0.0)),
    )
    .unwrap();
    let ln = LogNormal::new(&loc, &scale).unwrap();
    let y = Tensor::new(&[0.7f64, 0.2, 9.0], &dev).unwrap();
    let a: Vec<f64> = t.log_prob(&y).unwrap().to_vec1().unwrap();
    let b: Vec<f64> = ln.log_prob(&y).unwrap().to_vec1().unwrap();
    for (a, b) in a.iter().zip(&b) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
    assert!(t.has_rsample());
    assert_eq!(t.support().describe(), ln.support().describe());
    let mut rng = PplRng::seed_from_u64(0);
    let s = t.sample(&mut rng, &[1000]).unwrap();
    assert_eq!(s.dims(), &[1000, 3]);
    assert!(s.min_all().unwrap().to_scalar::<f64>().unwrap() > 0.0);
}

#[test]
fn stick_breaking_of_a_normal_is_a_density_on_the_simplex() {
    // log q(y) = log N(x) − log|det J|; integrate q over the 2-simplex numerically on a
    // grid (midpoint rule, 400² cells over y₁, y₂ with y₃ = 1 − y₁ − y₂): it must be 1 to
    // within the rule's error (measured 2e-4; tolerance 5e-3).
    let dev = Device::Cpu;
    let base = Normal::new(
        &Tensor::new(&[0.2f64, -0.3], &dev).unwrap(),
        &Tensor::new(&[0.8f64, 0.6], &dev).unwrap(),
    )
    .unwrap()
    .to_event(1)
    .unwrap();
    let t = TransformedDistribution::new(base.into_dyn(), biject_to(&Constraint::Simplex).unwrap())
        .unwrap();
    assert_eq!(t.event_shape(), &[3]);
    let n = 400;
    let h = 1.0 / n as f64;
    let mut pts = Vec::new();
    for i in 0..n {
        for j in 0..n {
            let (a, b) = ((i as f64 + 0.5) * h, (j as f64 + 0.5) * h);
            if a + b < 1.0 {
                pts.extend_from_slice(&[a, b, 1.0 - a - b]);
            }
        }
    }
    let m = pts.len() / 3;
    let y = Tensor::from_vec(pts, (m, 3), &dev).unwrap();
    let lp = t.log_prob(&y).unwrap();
    let total = lp
        .exp()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        * h
        * h;
    assert!((total - 1.0).abs() < 5e-3, "integral {total}");
    // A base whose event rank is below the transform's is a typed error.
    let scalar = Normal::standard(&[2], DType::F64, &dev).unwrap().into_dyn();
    assert!(
        TransformedDistribution::new(scalar, biject_to(&Constraint::Simplex).unwrap()).is_err()
    );
}
