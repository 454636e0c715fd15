//! Property tests (proptest): log_prob is finite on the support for random parameters,
//! batch shapes follow broadcasting rules, and expand/to_event keep log_prob consistent.

mod common;
use candle_core::{DType, Tensor};
use common::*;
use ppl_core::prelude::*;
use ppl_core::tensor::broadcast_shapes;
use proptest::prelude::*;

fn scalar_families(a: f64, b: f64, c: f64) -> Vec<Box<dyn Distribution>> {
    let (a, b, c) = (s(a), s(b), s(c));
    let unit = (b.affine(0.0, 0.0).unwrap() + &c)
        .unwrap()
        .recip()
        .unwrap()
        .affine(0.5, 0.0)
        .unwrap(); // 0.5/c in (0, 1)
    vec![
        Box::new(Normal::new(&a, &b).unwrap()),
        Box::new(LogNormal::new(&a, &b).unwrap()),
        Box::new(HalfNormal::new(&b).unwrap()),
        Box::new(Laplace::new(&a, &b).unwrap()),
        Box::new(Cauchy::new(&a, &b).unwrap()),
        Box::new(StudentT::new(&c, &a, &b).unwrap()),
        Box::new(Exponential::new(&b).unwrap()),
        Box::new(Gamma::new(&c, &b).unwrap()),
        Box::new(InverseGamma::new(&c, &b).unwrap()),
        Box::new(Beta::new(&c, &b).unwrap()),
        Box::new(VonMises::new(&a, &b).unwrap()),
        Box::new(Bernoulli::from_probs(&unit).unwrap()),
        Box::new(Geometric::from_probs(&unit).unwrap()),
        Box::new(Poisson::new(&b).unwrap()),
        Box::new(Binomial::from_probs(&c.round().unwrap(), &unit).unwrap()),
        Box::new(RelaxedBernoulli::from_logits(&b, &a).unwrap()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Every sample is in the support and scores to a finite log-probability.
    #[test]
    fn log_prob_is_finite_on_the_support(a in -5.0f64..5.0, b in 0.05f64..10.0, c in 1.0f64..20.0, seed in 0u64..1000) {
        for d in scalar_families(a, b, c) {
            let mut rng = PplRng::seed_from_u64(seed);
            let x = d.sample(&mut rng, &[16]).unwrap();
            let lp = host(&d.log_prob(&x).unwrap());
            prop_assert!(lp.iter().all(|v| v.is_finite()), "{}: {:?} at {:?}", d.family(), lp, host(&x));
        }
    }

    /// Batch shape is the broadcast of the parameter shapes; log_prob of a value with extra
    /// leading dims has shape broadcast(value, batch); sample has sample + batch shape.
    #[test]
    fn shapes_follow_broadcasting(
        s1 in proptest::collection::vec(1usize..4, 0..3),
        ones in proptest::collection::vec(any::<bool>(), 3),
        lead in proptest::collection::vec(1usize..3, 0..2),
    ) {
        // A second shape that broadcasts with s1: some dims replaced by 1, maybe shorter.
        let s2: Vec<usize> = s1.iter().zip(&ones).map(|(&d, &o)| if o { 1 } else { d }).collect();
        let s2 = if ones[0] && !s2.is_empty() { s2[1..].to_vec() } else { s2 };
        let n1: usize = s1.iter().product();
        let n2: usize = s2.iter().product();
        let loc = t(&vec![0.5; n1], &s1, DType::F64);
        let scale = t(&vec![2.0; n2], &s2, DType::F64);
        let d = Normal::new(&loc, &scale).unwrap();
        let batch = broadcast_shapes(&s1, &s2).unwrap();
        prop_assert_eq!(d.batch_shape(), batch.as_slice());
        let mut rng = PplRng::seed_from_u64(0);
        let x = d.sample(&mut rng, &lead).unwrap();
        let mut want: Vec<usize> = lead.clone();
        want.extend(&batch);
        prop_assert_eq!(x.dims(), want.as_slice());
        let lp = d.log_prob(&x).unwrap();
        prop_assert_eq!(lp.dims(), want.as_slice());
        // A scalar value broadcasts against the whole batch.
        let lp0 = d.log_prob(&s(0.1)).unwrap();
        prop_assert_eq!(lp0.dims(), batch.as_slice());
    }

    /// expand(B) then log_prob equals broadcasting the original's log_prob.
    #[test]
    fn expand_is_broadcasting(extra in 1usize..4, x in -3.0f64..3.0) {
        let d = Gamma::new(&t1(&[1.5, 3.0], DType::F64), &t1(&[2.0, 0.5], DType::F64)).unwrap();
        let e = d.expand(&[extra, 2]).unwrap();
        prop_assert_eq!(e.batch_shape(), &[extra, 2]);
        let v = s(x.abs() + 0.1);
        let lp = host(&e.log_prob(&v).unwrap());
        let base = host(&d.log_prob(&v).unwrap());
        for (i, l) in lp.iter().enumerate() {
            prop_assert!((l - base[i % 2]).abs() < 1e-14);
        }
    }
}

#[test]
fn expand_every_family() {
    let dev = candle_core::Device::Cpu;
    let v = |x: &[f64]| Tensor::new(x, &dev).unwrap();
    let families: Vec<Box<dyn Distribution>> = vec![
        Box::new(Normal::new(&v(&[0.0, 1.0]), &v(&[1.0, 2.0])).unwrap()),
        Box::new(Uniform::new(&v(&[0.0, 1.0]), &v(&[1.0, 2.0])).unwrap()),
        Box::new(Categorical::from_probs(&t(&[0.5, 0.5, 0.2, 0.8], &[2, 2], DType::F64)).unwrap()),
        Box::new(
            OneHotCategorical::from_probs(&t(&[0.5, 0.5, 0.2, 0.8], &[2, 2], DType::F64)).unwrap(),
        ),
        Box::new(Dirichlet::new(&t(&[1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F64)).unwrap()),
        Box::new(
            MultivariateNormal::diagonal(
                &t(&[0.0; 4], &[2, 2], DType::F64),
                &t(&[1.0; 4], &[2, 2], DType::F64),
            )
            .unwrap(),
        ),
        Box::new(
            MultivariateNormal::new(
                &t(&[0.0; 4], &[2, 2], DType::F64),
                &t(&[1.0, 0.0, 0.5, 1.0], &[1, 2, 2], DType::F64),
            )
            .unwrap(),
        ),
        Box::new(
            LowRankMultivariateNormal::new(
                &t(&[0.0; 4], &[2, 2], DType::F64),
                &t(&[1.0, 0.5], &[2, 1], DType::F64),
                &v(&[1.0, 1.0]),
            )
            .unwrap(),
        ),
        Box::new(Delta::new(&t(&[1.0, 2.0, 3.0, 4.0], &[2, 2], DType::F64), 1).unwrap()),
        Box::new(
            RelaxedOneHotCategorical::from_logits(
                &s(0.5),
                &t(&[0.0, 1.0, 2.0, 3.0], &[2, 2], DType::F64),
            )
            .unwrap(),
        ),
        Box::new(
            Beta::new(&v(&[1.0, 2.0]), &v(&[3.0, 4.0]))
                .unwrap()
                .to_event(1)
                .unwrap()
                .into_dyn()
                .expand(&[])
                .unwrap()
                .mask(&s(1.0))
                .unwrap(),
        ),
        Box::new(
            MixtureSameFamily::new(
                Categorical::from_probs(&t(&[0.5, 0.5, 0.2, 0.8], &[2, 2], DType::F64)).unwrap(),
                Normal::new(
                    &t(&[0.0; 4], &[2, 2], DType::F64),
                    &t(&[1.0; 4], &[2, 2], DType::F64),
                )
                .unwrap()
                .into_dyn(),
            )
            .unwrap(),
        ),
    ];
    for d in families {
        let b = d.batch_shape().to_vec();
        let mut nb = vec![3];
        nb.extend(&b);
        let e = d.expand(&nb).unwrap();
        assert_eq!(e.batch_shape(), nb.as_slice(), "{}", d.family());
        assert_eq!(e.event_shape(), d.event_shape(), "{}", d.family());
        let mut rng = PplRng::seed_from_u64(1);
        let x = d.sample(&mut rng, &[]).unwrap();
        let lp = host(&d.log_prob(&x).unwrap());
        let lpe = host(&e.log_prob(&x).unwrap());
        assert_eq!(lpe.len(), 3 * lp.len().max(1), "{}", d.family());
        for (i, l) in lpe.iter().enumerate() {
            assert!(
                (l - lp[i % lp.len()]).abs() < 1e-12,
                "{}: {l} vs {}",
                d.family(),
                lp[i % lp.len()]
            );
        }
        let xs = e.sample(&mut rng, &[2]).unwrap();
        let mut want = vec![2];
        want.extend(&nb);
        want.extend(d.event_shape());
        assert_eq!(xs.dims(), want.as_slice(), "{}", d.family());
    }
}
