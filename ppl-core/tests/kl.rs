//! Analytic KL divergences against Monte-Carlo estimates E_p[ln p(x) - ln q(x)] (fixed
//! seeds, 100k draws, 5 standard errors: a correct closed form fails with probability
//! < 1e-6), and exact identities (KL(p, p) = 0; diagonal MVN = sum of univariate KLs).

mod common;
use candle_core::{DType, Device, Tensor};
use common::*;
use ppl_core::prelude::*;

const N: usize = 100_000;

fn mc_check(name: &str, p: &dyn Distribution, q: &dyn Distribution) {
    let kl = host(&kl_divergence(p, q).unwrap());
    let mut rng = PplRng::seed_from_u64(17);
    let x = p.sample(&mut rng, &[N]).unwrap().detach();
    let diff = (p.log_prob(&x).unwrap() - q.log_prob(&x).unwrap()).unwrap();
    let d = host(&diff);
    let nb = kl.len();
    for (b, &analytic) in kl.iter().enumerate() {
        let col: Vec<f64> = d.iter().skip(b).step_by(nb).cloned().collect();
        let m = col.iter().sum::<f64>() / N as f64;
        let sd = (col.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (N - 1) as f64).sqrt();
        let se = sd / (N as f64).sqrt();
        assert!(
            (analytic - m).abs() < 5.0 * se + 1e-12,
            "{name}[{b}]: analytic {analytic} vs Monte Carlo {m} ± {se}"
        );
    }
    let self_kl = host(&kl_divergence(p, p).unwrap());
    assert!(
        self_kl.iter().all(|v| v.abs() < 1e-12),
        "{name}: KL(p, p) = {self_kl:?}"
    );
}

fn v(x: &[f64]) -> Tensor {
    t1(x, DType::F64)
}

#[test]
fn kl_pairs_match_monte_carlo() {
    mc_check(
        "Normal",
        &Normal::new(&v(&[0.0, 1.0]), &v(&[1.0, 0.5])).unwrap(),
        &Normal::new(&v(&[0.5, -1.0]), &v(&[2.0, 0.8])).unwrap(),
    );
    let l1 = t(&[1.0, 0.0, 0.4, 0.7], &[2, 2], DType::F64);
    let l2 = t(&[1.5, 0.0, -0.3, 1.1], &[2, 2], DType::F64);
    mc_check(
        "MVN",
        &MultivariateNormal::new(&v(&[0.0, 1.0]), &l1).unwrap(),
        &MultivariateNormal::new(&v(&[0.5, 0.0]), &l2).unwrap(),
    );
    mc_check(
        "Bernoulli",
        &Bernoulli::from_probs(&v(&[0.2, 0.7])).unwrap(),
        &Bernoulli::from_logits(&v(&[0.5, -1.0])).unwrap(),
    );
    mc_check(
        "Categorical",
        &Categorical::from_probs(&v(&[0.2, 0.5, 0.3])).unwrap(),
        &Categorical::from_logits(&v(&[0.0, 1.0, -1.0])).unwrap(),
    );
    mc_check(
        "OneHotCategorical",
        &OneHotCategorical::from_probs(&v(&[0.2, 0.5, 0.3])).unwrap(),
        &OneHotCategorical::from_logits(&v(&[0.0, 1.0, -1.0])).unwrap(),
    );
    mc_check(
        "Gamma",
        &Gamma::new(&v(&[2.0, 0.7]), &v(&[1.0, 3.0])).unwrap(),
        &Gamma::new(&v(&[3.0, 1.5]), &v(&[0.5, 2.0])).unwrap(),
    );
    mc_check(
        "Beta",
        &Beta::new(&v(&[2.0, 0.7]), &v(&[1.0, 3.0])).unwrap(),
        &Beta::new(&v(&[3.0, 1.5]), &v(&[0.5, 2.0])).unwrap(),
    );
    mc_check(
        "Dirichlet",
        &Dirichlet::new(&v(&[2.0, 0.7, 1.5])).unwrap(),
        &Dirichlet::new(&v(&[1.0, 1.0, 3.0])).unwrap(),
    );
    let p = Normal::new(
        &t(&[0.0; 6], &[2, 3], DType::F64),
        &t(&[1.0, 2.0, 0.5, 1.0, 1.0, 3.0], &[2, 3], DType::F64),
    )
    .unwrap();
    let q = Normal::new(
        &t(&[1.0; 6], &[2, 3], DType::F64),
        &t(&[1.5; 6], &[2, 3], DType::F64),
    )
    .unwrap();
    mc_check(
        "Independent(Normal)",
        &p.to_event(1).unwrap(),
        &q.to_event(1).unwrap(),
    );
}

#[test]
fn kl_identities() {
    // Normal-Normal in closed form: KL(N(0,1) ‖ N(1,2²)) = ln 2 + (1 + 1)/8 - ½.
    let p = Normal::new(&s(0.0), &s(1.0)).unwrap();
    let q = Normal::new(&s(1.0), &s(2.0)).unwrap();
    let want = 2f64.ln() + 2.0 / 8.0 - 0.5;
    assert_close(
        "Normal closed form",
        &host(&kl_divergence(&p, &q).unwrap()),
        &[want],
        1e-14,
    );
    // A diagonal MVN's KL is the sum of univariate KLs, and so is Independent(Normal).
    let (m1, s1, m2, s2) = (
        v(&[0.1, -0.5, 2.0]),
        v(&[0.5, 1.0, 2.0]),
        v(&[0.0, 0.5, 1.0]),
        v(&[1.0, 0.3, 1.5]),
    );
    let uni = host(
        &kl_divergence(
            &Normal::new(&m1, &s1).unwrap(),
            &Normal::new(&m2, &s2).unwrap(),
        )
        .unwrap(),
    );
    let total: f64 = uni.iter().sum();
    let diag = kl_divergence(
        &MultivariateNormal::diagonal(&m1, &s1).unwrap(),
        &MultivariateNormal::diagonal(&m2, &s2).unwrap(),
    )
    .unwrap();
    assert_close("diag MVN", &host(&diag), &[total], 1e-12);
    let ind = kl_divergence(
        &Normal::new(&m1, &s1).unwrap().to_event(1).unwrap(),
        &Normal::new(&m2, &s2).unwrap().to_event(1).unwrap(),
    )
    .unwrap();
    assert_close("Independent", &host(&ind), &[total], 1e-12);
    // Batch shapes broadcast: one prior against a batch of posteriors.
    let post = Normal::new(
        &t(&[0.0, 1.0, 2.0, 3.0], &[2, 2], DType::F64),
        &t(&[1.0; 4], &[2, 2], DType::F64),
    )
    .unwrap();
    let prior = Normal::new(
        &Tensor::zeros(2, DType::F64, &Device::Cpu).unwrap(),
        &Tensor::ones(2, DType::F64, &Device::Cpu).unwrap(),
    )
    .unwrap();
    assert_close(
        "broadcast",
        &host(&kl_divergence(&post, &prior).unwrap()),
        &[0.0, 0.5, 2.0, 4.5],
        1e-14,
    );
}
