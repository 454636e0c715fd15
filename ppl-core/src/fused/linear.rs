//! A dense layer `act(x Wᵀ + b)` as one candle custom op with a hand-written backward.

use super::gemm::{matmul_into, View};
use crate::error::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

/// The element-wise function after a dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// None: `x Wᵀ + b`.
    #[default]
    Identity,
    /// `max(0, ·)`. The fused backward uses gradient 0 where the output is 0 (as PyTorch);
    /// candle's `relu` uses 1 at an input of exactly 0: the two differ only there.
    Relu,
}

/// `act(x Wᵀ + b)` for `x` of shape `(…, k)`, `W` of shape `(n, k)` and `b` of shape `(n)`;
/// the result has shape `(…, n)`.
///
/// On the CPU in f32/f64 (see [`super`] for when fused kernels run) it is one custom op:
/// the forward pass writes `b` into the output rows and accumulates `x Wᵀ` onto them with
/// one GEMM (the `gemm` crate's kernels, as candle's matmul, split by rows over the
/// threads: see `gemm.rs`), applying the activation in
/// place; the backward pass computes `G = ∂L/∂y ⊙ act'(y)` once, then only what leads to
/// a variable: `∂L/∂W = Gᵀx` (written as `(n, k)` directly, no transposed copy),
/// `∂L/∂b = Σ_rows G`, and `∂L/∂x = G W` only when `x` itself is tracked, never for data.
/// Elsewhere (other devices or dtypes, `CANDLE_GRAD_DO_NOT_DETACH`, non-contiguous
/// operands, no bias) it is the same maths in candle ops: `x.matmul(Wᵀ) + b`, then the
/// activation.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    if let Some(b) = b {
        let fusable = super::applies(&[x, w, b])
            && x.rank() >= 1
            && w.rank() == 2
            && b.rank() == 1
            && x.dims()[x.rank() - 1] == w.dims()[1]
            && b.dims()[0] == w.dims()[0]
            && x.elem_count() > 0
            && w.elem_count() > 0
            && x.is_contiguous()
            && w.is_contiguous()
            && b.is_contiguous();
        if fusable {
            return Ok(x.apply_op3(w, b, FusedLinear(act))?);
        }
    }
    plain(x, w, b, act)
}

/// The same maths with candle ops (any device, dtype and layout; differentiable to any
/// order). Leading dims of `x` are flattened for the matmul.
fn plain(x: &Tensor, w: &Tensor, b: Option<&Tensor>, act: Activation) -> Result<Tensor> {
    let k = *x.dims().last().unwrap_or(&0);
    let lead = &x.dims()[..x.rank().saturating_sub(1)];
    let m: usize = lead.iter().product();
    let y = x.reshape((m, k))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out_shape = lead.to_vec();
    out_shape.push(w.dims()[0]);
    let y = y.reshape(out_shape)?;
    Ok(match act {
        Activation::Identity => y,
        Activation::Relu => y.relu()?,
    })
}

/// An operand's elements (see [`super::contiguous_slice`]).
fn slice<'a, T>(s: &'a [T], l: &Layout, what: &str) -> candle_core::Result<&'a [T]> {
    super::contiguous_slice(s, l, "fused-linear", what)
}

/// The op: arguments (x, W, b).
struct FusedLinear(Activation);

macro_rules! linear_forward {
    ($t:ty, $variant:ident, $x:expr, $w:expr, $b:expr, $dims:expr, $act:expr) => {{
        let (m, n, k) = $dims;
        let mut out: Vec<$t> = Vec::with_capacity(m * n);
        for _ in 0..m {
            out.extend_from_slice($b);
        }
        let x = View::row_major($x, m, k)?;
        let w = View::row_major($w, n, k)?;
        matmul_into(&mut out, x, w.t(), true)?;
        if $act == Activation::Relu {
            for v in out.iter_mut() {
                *v = v.max(0.0);
            }
        }
        CpuStorage::$variant(out)
    }};
}

impl CustomOp3 for FusedLinear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (n, k) = l2.shape().dims2()?;
        let m = l1.shape().elem_count() / k.max(1);
        let mut out_dims = l1.dims().to_vec();
        if let Some(last) = out_dims.last_mut() {
            *last = n;
        }
        let storage = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                let (x, w, b) = (slice(x, l1, "x")?, slice(w, l2, "W")?, slice(b, l3, "b")?);
                linear_forward!(f32, F32, x, w, b, (m, n, k), self.0)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                let (x, w, b) = (slice(x, l1, "x")?, slice(w, l2, "W")?, slice(b, l3, "b")?);
                linear_forward!(f64, F64, x, w, b, (m, n, k), self.0)
            }
            _ => candle_core::bail!("fused-linear: needs x, W, b all f32 or all f64"),
        };
        Ok((storage, Shape::from(out_dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, k) = w.dims2()?;
        let m = x.elem_count() / k.max(1);
        let grad = grad.contiguous()?;
        // G = ∂L/∂y ⊙ act'(y) and its column sums ∂L/∂b, in one pass on the host.
        let (g, db) = pre_activation_grad(&grad, res, self.0, (m, n))?;
        let (gs, gl) = g.storage_and_layout();
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let cpu = candle_core::Device::Cpu;
        macro_rules! products {
            ($variant:ident) => {{
                let (
                    candle_core::Storage::Cpu(CpuStorage::$variant(gs)),
                    candle_core::Storage::Cpu(CpuStorage::$variant(xs)),
                    candle_core::Storage::Cpu(CpuStorage::$variant(ws)),
                ) = (&*gs, &*xs, &*ws)
                else {
                    candle_core::bail!("fused-linear: operands of mixed dtypes or devices");
                };
                let gv = View::row_major(slice(gs, gl, "G")?, m, n)?;
                // ∂L/∂W = Gᵀ x, (n, k), written directly in W's layout.
                let dw = if w.track_op() {
                    let xv = View::row_major(slice(xs, xl, "x")?, m, k)?;
                    let mut out = vec![Default::default(); n * k];
                    matmul_into(&mut out, gv.t(), xv, false)?;
                    Some(Tensor::from_vec(out, (n, k), &cpu)?)
                } else {
                    None
                };
                // ∂L/∂x = G W, only when x leads to a variable (never for data).
                let dx = if x.track_op() {
                    let wv = View::row_major(slice(ws, wl, "W")?, n, k)?;
                    let mut out = vec![Default::default(); m * k];
                    matmul_into(&mut out, gv, wv, false)?;
                    Some(Tensor::from_vec(out, x.shape(), &cpu)?)
                } else {
                    None
                };
                (dw, dx)
            }};
        }
        let (dw, dx) = match w.dtype() {
            candle_core::DType::F32 => products!(F32),
            candle_core::DType::F64 => products!(F64),
            d => candle_core::bail!("fused-linear: unsupported dtype {d:?}"),
        };
        let db = if b.track_op() { Some(db) } else { None };
        Ok((dx, dw, db))
    }
}

/// `(G, Σ_rows G)` with `G = grad ⊙ act'(y)` as an `(m, n)` tensor (for the identity, `G`
/// is `grad` itself, reshaped). The relu's derivative is taken from its output `y`.
fn pre_activation_grad(
    grad: &Tensor,
    y: &Tensor,
    act: Activation,
    (m, n): (usize, usize),
) -> candle_core::Result<(Tensor, Tensor)> {
    macro_rules! run {
        ($t:ty, $variant:ident) => {{
            let (gs, gl) = grad.storage_and_layout();
            let candle_core::Storage::Cpu(CpuStorage::$variant(gs)) = &*gs else {
                candle_core::bail!("fused-linear: gradient of another dtype or device");
            };
            let gs = slice(gs, gl, "the gradient")?;
            let mut db = vec![0 as $t; n];
            let g = match act {
                Activation::Identity => {
                    for row in gs.chunks_exact(n) {
                        for (acc, &v) in db.iter_mut().zip(row) {
                            *acc += v;
                        }
                    }
                    None
                }
                Activation::Relu => {
                    let y = y.contiguous()?;
                    let (ys, yl) = y.storage_and_layout();
                    let candle_core::Storage::Cpu(CpuStorage::$variant(ys)) = &*ys else {
                        candle_core::bail!("fused-linear: output of another dtype or device");
                    };
                    let ys = slice(ys, yl, "the output")?;
                    let mut out: Vec<$t> = Vec::with_capacity(m * n);
                    for (grow, yrow) in gs.chunks_exact(n).zip(ys.chunks_exact(n)) {
                        let start = out.len();
                        out.extend(
                            grow.iter()
                                .zip(yrow)
                                .map(|(&g, &y)| if y > 0.0 { g } else { 0.0 }),
                        );
                        for (acc, &v) in db.iter_mut().zip(&out[start..]) {
                            *acc += v;
                        }
                    }
                    Some(out)
                }
            };
            let g = match g {
                Some(v) => Tensor::from_vec(v, (m, n), &candle_core::Device::Cpu)?,
                None => grad.reshape((m, n))?,
            };
            (g, Tensor::from_vec(db, n, &candle_core::Device::Cpu)?)
        }};
    }
    Ok(match grad.dtype() {
        candle_core::DType::F32 => run!(f32, F32),
        candle_core::DType::F64 => run!(f64, F64),
        d => candle_core::bail!("fused-linear: unsupported dtype {d:?}"),
    })
}
