//! The fused in-place CPU Adam against the update written with candle tensor ops: the same
//! bits, step after step, for f32 and f64, with and without weight decay, across a
//! checkpoint round trip and when one path resumes the other's state.

use candle_core::{DType, Device, Tensor, Var};
use ppl_core::PplRng;
use ppl_inference::{Adam, Optimizer};
use std::collections::HashMap;

/// Two variables (a matrix and a vector) and a loss whose gradient changes every step
/// (a quadratic with fresh random coefficients, plus a cubic term so the gradient depends
/// on θ), so moments accumulate genuinely different values.
struct Problem {
    vars: Vec<(String, Var)>,
    dtype: DType,
    rng: PplRng,
}

impl Problem {
    fn new(dtype: DType) -> Problem {
        let mut rng = PplRng::seed_from_u64(7);
        let mut var = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f64> = rng.normals(n);
            let t = Tensor::from_vec(v, shape, &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            Var::from_tensor(&t).unwrap()
        };
        let vars = vec![
            ("w".to_string(), var(&[3, 4])),
            ("b".to_string(), var(&[5])),
        ];
        Problem {
            vars,
            dtype,
            rng: PplRng::seed_from_u64(11),
        }
    }

    fn grads(&mut self) -> candle_core::backprop::GradStore {
        let mut loss = Tensor::zeros((), self.dtype, &Device::Cpu).unwrap();
        for (_, v) in &self.vars {
            let n = v.elem_count();
            let c = Tensor::from_vec(self.rng.normals(n), v.dims(), &Device::Cpu)
                .unwrap()
                .to_dtype(self.dtype)
                .unwrap();
            let t = v.as_tensor();
            let term = ((t * &c).unwrap() + (t.powf(3.0).unwrap() * 0.1).unwrap()).unwrap();
            loss = (loss + term.sum_all().unwrap()).unwrap();
        }
        loss.backward().unwrap()
    }

    fn bits(&self) -> Vec<Vec<u64>> {
        self.vars.iter().map(|(_, v)| bits(v.as_tensor())).collect()
    }
}

fn bits(t: &Tensor) -> Vec<u64> {
    let flat = t.flatten_all().unwrap();
    match t.dtype() {
        DType::F32 => flat
            .to_vec1::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits() as u64)
            .collect(),
        _ => flat
            .to_dtype(DType::F64)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect(),
    }
}

fn state_bits(opt: &Adam) -> Vec<(String, Vec<usize>, Vec<u64>)> {
    let (state, _) = opt.state();
    let mut out: Vec<_> = state
        .iter()
        .map(|(k, t)| (k.clone(), t.dims().to_vec(), bits(t)))
        .collect();
    out.sort();
    out
}

fn adam(fused: bool, wd: f64) -> Adam {
    Adam::new()
        .with_betas(0.8, 0.99, 1e-6)
        .unwrap()
        .with_weight_decay(wd)
        .unwrap()
        .with_fused(fused)
}

#[test]
fn fused_adam_gives_the_bits_of_the_tensor_op_adam() {
    for dtype in [DType::F32, DType::F64] {
        for wd in [0.0, 0.01] {
            let (mut a, mut b) = (Problem::new(dtype), Problem::new(dtype));
            let (mut fa, mut ta) = (adam(true, wd), adam(false, wd));
            for step in 0..12 {
                let (ga, gb) = (a.grads(), b.grads());
                fa.step(&a.vars, &ga, 0.05).unwrap();
                ta.step(&b.vars, &gb, 0.05).unwrap();
                assert_eq!(
                    a.bits(),
                    b.bits(),
                    "{dtype:?} wd {wd}: θ differs at step {step}"
                );
            }
            assert_eq!(
                state_bits(&fa),
                state_bits(&ta),
                "{dtype:?} wd {wd}: moments"
            );
            // The state keeps the variables' shapes.
            let (state, t) = fa.state();
            assert_eq!(t, 12);
            let shapes: HashMap<_, _> = state
                .iter()
                .map(|(k, t)| (k.clone(), t.dims().to_vec()))
                .collect();
            assert_eq!(shapes["m/w"], vec![3, 4]);
            assert_eq!(shapes["v/b"], vec![5]);
            // And the update did move θ (the comparison is not between two no-ops).
            assert_ne!(a.bits(), Problem::new(dtype).bits());
        }
    }
}

#[test]
fn fused_adam_resumes_bit_identically_from_either_path() {
    for dtype in [DType::F32, DType::F64] {
        // Reference: 10 uninterrupted fused steps.
        let mut r = Problem::new(dtype);
        let mut ra = adam(true, 0.0);
        for _ in 0..10 {
            let g = r.grads();
            ra.step(&r.vars, &g, 0.05).unwrap();
        }
        // 5 fused steps, state exported and loaded into a fresh optimiser of either kind.
        for resume_fused in [true, false] {
            let mut p = Problem::new(dtype);
            let mut first = adam(true, 0.0);
            for _ in 0..5 {
                let g = p.grads();
                first.step(&p.vars, &g, 0.05).unwrap();
            }
            let (state, steps) = first.state();
            let mut second = adam(resume_fused, 0.0);
            second
                .load_state(state.into_iter().collect(), steps)
                .unwrap();
            for _ in 0..5 {
                let g = p.grads();
                second.step(&p.vars, &g, 0.05).unwrap();
            }
            assert_eq!(
                p.bits(),
                r.bits(),
                "{dtype:?}: resumed with fused = {resume_fused}"
            );
            assert_eq!(state_bits(&second), state_bits(&ra));
        }
    }
}

#[test]
fn adam_load_state_rejects_unpaired_or_mismatched_moments() {
    let t = Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap();
    let u = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    let mut a = Adam::new();
    let only_m: HashMap<_, _> = [("m/w".to_string(), t.clone())].into_iter().collect();
    let e = a.load_state(only_m, 1).unwrap_err().to_string();
    assert!(e.contains("m/w") && e.contains("v/w"), "{e}");
    let mismatched: HashMap<_, _> = [("m/w".to_string(), t), ("v/w".to_string(), u)]
        .into_iter()
        .collect();
    let e = a.load_state(mismatched, 1).unwrap_err().to_string();
    assert!(e.contains("shape"), "{e}");
}

#[test]
fn a_failed_step_leaves_the_optimiser_state_unchanged() {
    // A checkpoint state whose shape does not fit the variable: a typed error naming both
    // shapes, on either path, and the stored state is kept as it was (no silent restart).
    for fused in [true, false] {
        let p = Problem::new(DType::F32);
        let mut a = adam(fused, 0.0);
        let bad = Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap();
        let state: HashMap<_, _> = [("m/w".to_string(), bad.clone()), ("v/w".to_string(), bad)]
            .into_iter()
            .collect();
        a.load_state(state, 3).unwrap();
        let mut p = p;
        let g = p.grads();
        let e = a.step(&p.vars, &g, 0.05).unwrap_err().to_string();
        assert!(
            e.contains("[2, 2]") && e.contains("[3, 4]"),
            "fused {fused}: {e}"
        );
        let kept = state_bits(&a);
        assert!(
            kept.iter()
                .any(|(k, shape, _)| k == "m/w" && shape == &vec![2, 2]),
            "fused {fused}: {kept:?}"
        );
    }
}
