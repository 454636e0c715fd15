//! Helpers shared by the distribution families (crate-private).

use super::Distribution;
use crate::constraints::Constraint;
use crate::error::{shape_err, PplError, Result, ShapeFmt};
use crate::rng::{upload, PplRng};
use crate::tensor::{broadcast_shapes, concat_shapes, host_f64, log_prob_shape};
use crate::validation;
use candle_core::{DType, Device, Tensor};

/// Checks `value`'s shape against the distribution, casts it to the distribution's dtype
/// and, with validation on, checks that it lies in the support.
pub(crate) fn prepare_value(d: &dyn Distribution, value: &Tensor) -> Result<Tensor> {
    let lp_shape = log_prob_shape(d.family(), value.dims(), d.batch_shape(), d.event_shape())?;
    let v = if value.dtype() != d.dtype() {
        value.to_dtype(d.dtype())?
    } else {
        value.clone()
    };
    if validation::is_enabled() {
        let full = concat_shapes(&[&lp_shape, d.event_shape()]);
        let support = d.support();
        let checked = match support {
            Constraint::TensorInterval { .. } | Constraint::TensorIntegerInterval { .. } => {
                v.broadcast_as(full.as_slice())?
            }
            _ => v.clone(),
        };
        validation::check_value(d.family(), &checked, &support)?;
    }
    Ok(v)
}

/// `sample_shape + batch + event`.
pub(crate) fn out_shape(sample_shape: &[usize], batch: &[usize], event: &[usize]) -> Vec<usize> {
    concat_shapes(&[sample_shape, batch, event])
}

/// Checks that `old` batch shape expands (broadcasts) to `new`.
pub(crate) fn check_expand(family: &'static str, old: &[usize], new: &[usize]) -> Result<()> {
    match broadcast_shapes(old, new) {
        Some(s) if s == new => Ok(()),
        _ => Err(shape_err(
            family,
            format!(
                "cannot expand batch shape {} to {}",
                ShapeFmt(old),
                ShapeFmt(new)
            ),
        )),
    }
}

/// Draws one host value per element of `sample_shape + batch` from scalar parameters
/// (each a tensor of the batch shape), and uploads the result detached.
pub(crate) fn host_sample<const N: usize>(
    rng: &mut PplRng,
    params: [&Tensor; N],
    batch: &[usize],
    sample_shape: &[usize],
    mut draw: impl FnMut(&mut PplRng, [f64; N]) -> f64,
) -> Result<Tensor> {
    let dtype = params[0].dtype();
    let device = params[0].device().clone();
    let host: Vec<Vec<f64>> = params
        .iter()
        .map(|p| host_f64(&p.broadcast_as(batch)?))
        .collect::<Result<_>>()?;
    let nb: usize = batch.iter().product();
    let ns: usize = sample_shape.iter().product();
    let mut out = Vec::with_capacity(nb * ns);
    for _ in 0..ns {
        for b in 0..nb {
            let mut p = [0.0; N];
            for (k, h) in host.iter().enumerate() {
                p[k] = h[b];
            }
            out.push(draw(rng, p));
        }
    }
    upload(out, &out_shape(sample_shape, batch, &[]), dtype, &device)
}

/// The largest finite value of a floating dtype (f64's for the others, which are
/// converted through f64 anyway).
pub(crate) fn dtype_max(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => f32::MAX as f64,
        DType::F16 => 65504.0,
        DType::BF16 => 3.3895313892515355e38,
        _ => f64::MAX,
    }
}

/// [`host_sample`] for the discrete families, whose draws must be finite counts: a draw
/// that is NaN, infinite or beyond the largest value of the parameters' dtype is a
/// [`PplError::InvalidParameter`] of `family`'s `param` naming the batch index and the
/// parameter values, never a NaN in the sample.
pub(crate) fn host_sample_finite<const N: usize>(
    family: &'static str,
    param: &'static str,
    rng: &mut PplRng,
    params: [&Tensor; N],
    batch: &[usize],
    sample_shape: &[usize],
    mut draw: impl FnMut(&mut PplRng, [f64; N]) -> f64,
) -> Result<Tensor> {
    let max = dtype_max(params[0].dtype());
    let mut bad: Option<(usize, [f64; N], f64)> = None;
    let mut b = 0usize;
    let nb: usize = batch.iter().product::<usize>().max(1);
    let t = host_sample(rng, params, batch, sample_shape, |r, p| {
        let x = draw(r, p);
        if bad.is_none() && !(x.is_finite() && x.abs() <= max) {
            bad = Some((b % nb, p, x));
        }
        b += 1;
        x
    })?;
    match bad {
        None => Ok(t),
        Some((i, p, x)) => Err(PplError::invalid_parameter(
            family,
            param,
            format!(
                "a draw at batch index {:?} is {x}, not a count representable in {:?} \
                 (parameters there: {p:?})",
                crate::tensor::unravel(i, batch),
                params[0].dtype()
            ),
        )),
    }
}

/// Smallest probability margin used when turning probabilities into logits.
pub(crate) fn prob_eps(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::EPSILON,
        _ => f32::EPSILON as f64,
    }
}

/// Clamps probabilities into `[eps, 1 - eps]` (like Pyro's `clamp_probs`).
pub(crate) fn clamp_probs(p: &Tensor) -> Result<Tensor> {
    let eps = prob_eps(p.dtype());
    Ok(p.clamp(eps, 1.0 - eps)?)
}

/// Smallest positive normal number of `dtype` (samples of positive families are clamped
/// to it so their logs stay finite).
pub(crate) fn tiny(dtype: DType) -> f64 {
    match dtype {
        DType::F64 => f64::MIN_POSITIVE,
        _ => f32::MIN_POSITIVE as f64,
    }
}

/// `x * 0 + v`: a tensor like `x` filled with `v` (keeps dtype, device and shape).
pub(crate) fn filled_like(x: &Tensor, v: f64) -> Result<Tensor> {
    Ok(x.zeros_like()?.affine(1.0, v)?)
}

/// The accessors every family implements the same way: family name, batch shape, and
/// device/dtype/`as_any` read off the first parameter tensor.
macro_rules! common_methods {
    ($family:literal, $params:ident . $first:ident) => {
        fn family(&self) -> &'static str {
            $family
        }
        fn batch_shape(&self) -> &[usize] {
            &self.$params.batch_shape
        }
        fn device(&self) -> candle_core::Device {
            self.$params.$first.device().clone()
        }
        fn dtype(&self) -> candle_core::DType {
            self.$params.$first.dtype()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
    ($family:literal, $first:ident) => {
        fn family(&self) -> &'static str {
            $family
        }
        fn batch_shape(&self) -> &[usize] {
            &self.batch_shape
        }
        fn device(&self) -> candle_core::Device {
            self.$first.device().clone()
        }
        fn dtype(&self) -> candle_core::DType {
            self.$first.dtype()
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
    };
}
pub(crate) use common_methods;

/// A binary-event probability given either as `probs` or `logits`; returns
/// `(probs, logits)` after validating whichever was given.
pub(crate) fn binary_probs_logits(
    family: &'static str,
    probs: Option<&Tensor>,
    logits: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    match (probs, logits) {
        (Some(p), None) => {
            validation::check_param(family, "probs", p, &Constraint::UnitInterval)?;
            Ok((p.clone(), crate::special::logit(&clamp_probs(p)?)?))
        }
        (None, Some(l)) => Ok((candle_nn::ops::sigmoid(l)?, binary_logits(family, l)?)),
        _ => Err(shape_err(
            family,
            "give exactly one of `probs` and `logits`",
        )),
    }
}

/// Binary-event logits, validated (finite), without computing `σ(logits)`: for families
/// that need only the logits on their hot path.
pub(crate) fn binary_logits(family: &'static str, logits: &Tensor) -> Result<Tensor> {
    validation::check_param(family, "logits", logits, &Constraint::Real)?;
    Ok(logits.clone())
}

/// Normalised `(probs, logits)` over the last dim from either `probs` (a simplex) or
/// `logits` (any reals).
pub(crate) fn categorical_probs_logits(
    family: &'static str,
    probs: Option<&Tensor>,
    logits: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let t = probs
        .or(logits)
        .ok_or_else(|| shape_err(family, "give `probs` or `logits`"))?;
    let dims = t.dims();
    if dims.is_empty() || dims[dims.len() - 1] == 0 {
        let name = if probs.is_some() { "probs" } else { "logits" };
        return Err(shape_err(
            family,
            format!(
                "parameter `{name}` must have shape [..., K] with K >= 1, got {}",
                ShapeFmt(dims)
            ),
        ));
    }
    match (probs, logits) {
        (Some(p), None) => {
            validation::check_param(family, "probs", p, &Constraint::Simplex)?;
            let p = p.broadcast_div(&p.sum_keepdim(candle_core::D::Minus1)?)?;
            let logits = clamp_probs(&p)?.log()?;
            Ok((p, logits))
        }
        (None, Some(l)) => {
            validation::check_param(family, "logits", l, &Constraint::Real)?;
            let logits = candle_nn::ops::log_softmax(l, candle_core::D::Minus1)?;
            Ok((logits.exp()?, logits))
        }
        _ => Err(shape_err(
            family,
            "give exactly one of `probs` and `logits`",
        )),
    }
}

/// Uploads category indices as a `u32` tensor (for `gather`).
pub(crate) fn upload_indices(idx: &[usize], shape: &[usize], device: &Device) -> Result<Tensor> {
    let v: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// The parameters of a location–scale family (`x = loc + scale · ε`): validated (`loc`
/// finite, `scale` positive and finite), broadcast together, expandable.
#[derive(Debug, Clone)]
pub(crate) struct LocScale {
    pub(crate) loc: Tensor,
    pub(crate) scale: Tensor,
    pub(crate) batch_shape: Vec<usize>,
}

impl LocScale {
    pub(crate) fn new(family: &'static str, loc: &Tensor, scale: &Tensor) -> Result<Self> {
        validation::check_param(family, "loc", loc, &Constraint::Real)?;
        validation::check_param(family, "scale", scale, &Constraint::Positive)?;
        let ([loc, scale], batch_shape) =
            crate::tensor::broadcast_params(family, [("loc", loc), ("scale", scale)])?;
        Ok(Self {
            loc,
            scale,
            batch_shape,
        })
    }

    pub(crate) fn expand(&self, family: &'static str, batch_shape: &[usize]) -> Result<Self> {
        check_expand(family, &self.batch_shape, batch_shape)?;
        Ok(Self {
            loc: self.loc.broadcast_as(batch_shape)?,
            scale: self.scale.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
        })
    }

    /// `loc + scale · eps`.
    pub(crate) fn shift_scale(&self, eps: &Tensor) -> Result<Tensor> {
        Ok(eps.broadcast_mul(&self.scale)?.broadcast_add(&self.loc)?)
    }

    /// `(x - loc) / scale`.
    pub(crate) fn standardize(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.broadcast_sub(&self.loc)?.broadcast_div(&self.scale)?)
    }

    /// Standard noise ε of shape `sample_shape + batch`, drawn on the host by `draw`.
    pub(crate) fn noise(
        &self,
        rng: &mut PplRng,
        sample_shape: &[usize],
        mut draw: impl FnMut(&mut PplRng) -> f64,
    ) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &[]);
        let n = shape.iter().product();
        let e: Vec<f64> = (0..n).map(|_| draw(rng)).collect();
        upload(e, &shape, self.loc.dtype(), self.loc.device())
    }

    /// `loc + scale · ε` with standard noise ε drawn on the host by `draw`.
    pub(crate) fn sample_with(
        &self,
        rng: &mut PplRng,
        sample_shape: &[usize],
        draw: impl FnMut(&mut PplRng) -> f64,
    ) -> Result<Tensor> {
        self.shift_scale(&self.noise(rng, sample_shape, draw)?)
    }
}
