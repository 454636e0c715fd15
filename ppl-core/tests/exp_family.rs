//! Exponential-family forms: `log p(x) = ⟨η, T(x)⟩ − A(η) + log h(x)` exactly, for every
//! family that has one, in f64 (tolerance 1e-9: the two sides are different compositions of
//! the same elementary functions, lgamma/Bessel composites included).

use candle_core::{DType, Device, Tensor, D};
use ppl_core::prelude::*;

fn t(v: &[f64]) -> Tensor {
    Tensor::new(v, &Device::Cpu).unwrap()
}

fn check(d: &dyn Distribution, x: &Tensor) {
    let ef = d
        .exponential_family()
        .unwrap_or_else(|| panic!("{} has an exponential-family form", d.family()));
    let eta = ef.natural_params().unwrap();
    let stat = ef.sufficient_stat(x).unwrap();
    let form = ((eta.broadcast_mul(&stat).unwrap().sum(D::Minus1).unwrap()
        - ef.log_normalizer().unwrap())
    .unwrap()
        + ef.log_base_measure(x).unwrap())
    .unwrap();
    let lp = d.log_prob(x).unwrap();
    assert_eq!(form.dims(), lp.dims(), "{}", d.family());
    let a: Vec<f64> = form.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f64> = lp.flatten_all().unwrap().to_vec1().unwrap();
    for (u, v) in a.iter().zip(&b) {
        assert!((u - v).abs() < 1e-9, "{}: {u} vs {v}", d.family());
    }
}

#[test]
fn every_exponential_family_matches_its_log_prob() {
    let x = t(&[-1.3, 0.2, 2.5]);
    check(
        &Normal::new(&t(&[0.5, -1.0, 2.0]), &t(&[0.7, 1.5, 0.3])).unwrap(),
        &x,
    );
    check(
        &Normal::standard(&[3], DType::F64, &Device::Cpu).unwrap(),
        &x,
    );
    let b = t(&[0.0, 1.0, 1.0]);
    check(&Bernoulli::from_logits(&t(&[0.3, -2.0, 4.0])).unwrap(), &b);
    check(
        &Poisson::new(&t(&[0.5, 3.0, 10.0])).unwrap(),
        &t(&[0.0, 4.0, 12.0]),
    );
    let logits = Tensor::new(&[[0.1f64, -0.5, 2.0], [1.0, 1.0, -3.0]], &Device::Cpu).unwrap();
    check(&Categorical::from_logits(&logits).unwrap(), &t(&[2.0, 0.0]));
    let pos = t(&[0.3, 1.7, 4.0]);
    check(
        &Gamma::new(&t(&[0.5, 2.0, 7.0]), &t(&[1.0, 0.3, 2.5])).unwrap(),
        &pos,
    );
    check(
        &Beta::new(&t(&[0.5, 2.0, 7.0]), &t(&[1.0, 0.3, 2.5])).unwrap(),
        &t(&[0.2, 0.5, 0.9]),
    );
    check(
        &VonMises::new(&t(&[0.1, -2.0, 3.0]), &t(&[0.5, 2.0, 30.0])).unwrap(),
        &x,
    );
    // Independent: event elements and statistics flattened into the last dim.
    let loc = Tensor::new(&[[0.5f64, -1.0], [2.0, 0.0]], &Device::Cpu).unwrap();
    let d = Normal::new(&loc, &t(&[0.7, 1.5]))
        .unwrap()
        .to_event(1)
        .unwrap();
    let xv = Tensor::new(&[[0.1f64, 0.2], [-0.3, 1.0]], &Device::Cpu).unwrap();
    check(&d, &xv);
    let ef = d.exponential_family().unwrap();
    assert_eq!(ef.natural_params().unwrap().dims(), &[2, 4]);
    // a sufficient statistic of data with another batch size
    let x5 = Tensor::zeros((5, 2), DType::F64, &Device::Cpu).unwrap();
    assert_eq!(ef.sufficient_stat(&x5).unwrap().dims(), &[5, 4]);
}

#[test]
fn families_without_the_form_say_so() {
    assert!(Cauchy::new(&t(&[0.0]), &t(&[1.0]))
        .unwrap()
        .exponential_family()
        .is_none());
    let d = Cauchy::new(&t(&[0.0]), &t(&[1.0]))
        .unwrap()
        .to_event(1)
        .unwrap();
    assert!(d.exponential_family().is_none());
}
