//! With `CANDLE_GRAD_DO_NOT_DETACH=1` (candle's switch for gradients of gradients) the
//! fused kernels step aside: their hand-written backward passes are not differentiable, so
//! the plain candle-op paths run and second derivatives come out right.
//!
//! Its own test binary with one test: the variable is set before any backward pass and
//! before any other thread could read the environment (candle and `ppl_core::fused` read
//! it once per thread).

use candle_core::{Device, Tensor, Var};
use ppl_core::fused::{self, Activation};
use ppl_core::prelude::*;

#[test]
fn higher_order_gradients_go_through_candle_ops() {
    std::env::set_var("CANDLE_GRAD_DO_NOT_DETACH", "1");
    std::thread::spawn(|| {
        assert!(
            !fused::is_enabled(),
            "fused kernels must be off for higher-order gradients"
        );

        // d²/dl² Σ log Bernoulli(x | l) = −σ(l)(1 − σ(l)), from the gradient's gradient.
        let l0 = [-3.0f64, -0.5, 0.0, 0.7, 4.0];
        let l = Var::from_tensor(&Tensor::new(&l0, &Device::Cpu).unwrap()).unwrap();
        let x = Tensor::new(&[1.0f64, 0.0, 1.0, 1.0, 0.0], &Device::Cpu).unwrap();
        let lp = Bernoulli::from_logits(l.as_tensor())
            .unwrap()
            .log_prob(&x)
            .unwrap();
        let g = lp.sum_all().unwrap().backward().unwrap();
        let dl = g.get(l.as_tensor()).unwrap().clone();
        let h = dl.sum_all().unwrap().backward().unwrap();
        let d2: Vec<f64> = h.get(l.as_tensor()).unwrap().to_vec1().unwrap();
        for (i, li) in l0.iter().enumerate() {
            let s = 1.0 / (1.0 + (-li).exp());
            assert!((d2[i] + s * (1.0 - s)).abs() < 1e-12, "l = {li}: {}", d2[i]);
        }

        // A dense layer: y = x Wᵀ + b, L = Σ y²; ∂L/∂x = 2 y W, and
        // ∂/∂W Σ ∂L/∂x = ∂/∂W Σ_i,j 2 (x Wᵀ + b)_i,: W_:,j, checked against the same
        // expression written by hand with candle ops.
        let xv =
            Var::from_tensor(&Tensor::new(&[[0.3f64, -1.2], [0.8, 0.5]], &Device::Cpu).unwrap())
                .unwrap();
        let w = Var::from_tensor(
            &Tensor::new(&[[0.4f64, -0.7], [1.1, 0.2], [-0.3, 0.9]], &Device::Cpu).unwrap(),
        )
        .unwrap();
        let b =
            Var::from_tensor(&Tensor::new(&[0.1f64, -0.2, 0.3], &Device::Cpu).unwrap()).unwrap();
        let second = |use_layer: bool| -> Vec<f64> {
            let y = if use_layer {
                fused::linear(
                    xv.as_tensor(),
                    w.as_tensor(),
                    Some(b.as_tensor()),
                    Activation::Identity,
                )
                .unwrap()
            } else {
                xv.as_tensor()
                    .matmul(&w.as_tensor().t().unwrap())
                    .unwrap()
                    .broadcast_add(b.as_tensor())
                    .unwrap()
            };
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let dx = g.get(xv.as_tensor()).unwrap().clone();
            let h = dx.sum_all().unwrap().backward().unwrap();
            h.get(w.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (got, want) = (second(true), second(false));
        assert!(want.iter().any(|v| v.abs() > 1e-3));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    })
    .join()
    .unwrap();
}
