use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{shape_err, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::tensor::{concat_shapes, sum_rightmost};
use candle_core::{DType, Device, Tensor};
use std::sync::Arc;

/// Reinterprets the rightmost `n` batch dims of a base distribution as event dims
/// (Pyro's `Independent`, written `d.to_event(n)`).
///
/// `log_prob` sums the base's over those dims; `entropy` sums likewise; `sample`, `mean`
/// and `variance` are the base's. A `Normal` with batch shape `[B, D]` becomes a
/// distribution over vectors with batch `[B]` and event `[D]`.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{DType, Device};
/// # fn main() -> ppl_core::Result<()> {
/// let d = Normal::standard(&[5, 3], DType::F64, &Device::Cpu)?.to_event(1)?;
/// assert_eq!((d.batch_shape(), d.event_shape()), (&[5][..], &[3][..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Independent {
    base: DynDistribution,
    reinterpreted: usize,
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
}

impl Independent {
    /// Reinterprets `n` batch dims of `base` as event dims.
    pub fn new(base: DynDistribution, n: usize) -> Result<Self> {
        let b = base.batch_shape();
        if n > b.len() {
            return Err(shape_err(
                "Independent",
                format!(
                    "cannot move {n} batch dims of {} to the event: its batch shape {} has only {}",
                    base.family(),
                    ShapeFmt(b),
                    b.len()
                ),
            ));
        }
        let split = b.len() - n;
        let batch_shape = b[..split].to_vec();
        let event_shape = concat_shapes(&[&b[split..], base.event_shape()]);
        Ok(Self {
            base,
            reinterpreted: n,
            batch_shape,
            event_shape,
        })
    }
    /// The base distribution.
    pub fn base(&self) -> &DynDistribution {
        &self.base
    }
    /// The number of reinterpreted dims.
    pub fn reinterpreted_dims(&self) -> usize {
        self.reinterpreted
    }
}

impl Distribution for Independent {
    fn exponential_family(&self) -> Option<&dyn super::ExponentialFamily> {
        self.base
            .exponential_family()
            .map(|_| self as &dyn super::ExponentialFamily)
    }
    fn family(&self) -> &'static str {
        self.base.family()
    }
    fn batch_shape(&self) -> &[usize] {
        &self.batch_shape
    }
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        self.base.has_rsample()
    }
    fn sample(&self, rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        self.base.sample(rng, sample_shape)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        crate::tensor::log_prob_shape(
            self.family(),
            value.dims(),
            &self.batch_shape,
            &self.event_shape,
        )?;
        sum_rightmost(&self.base.log_prob(value)?, self.reinterpreted)
    }
    fn mean(&self) -> Result<Tensor> {
        self.base.mean()
    }
    fn variance(&self) -> Result<Tensor> {
        self.base.variance()
    }
    fn entropy(&self) -> Result<Tensor> {
        sum_rightmost(&self.base.entropy()?, self.reinterpreted)
    }
    fn support(&self) -> Constraint {
        match self.reinterpreted {
            0 => self.base.support(),
            n => Constraint::Independent(Box::new(self.base.support()), n),
        }
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        let b = self.base.batch_shape();
        let reint = &b[b.len() - self.reinterpreted..];
        let base = self.base.expand(&concat_shapes(&[batch_shape, reint]))?;
        Ok(Arc::new(Self::new(base, self.reinterpreted)?))
    }
    fn device(&self) -> Device {
        self.base.device()
    }
    fn dtype(&self) -> DType {
        self.base.dtype()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(Self::new(
            self.base.detach()?,
            self.reinterpreted,
        )?))
    }
}

impl super::ExponentialFamily for Independent {
    fn natural_params(&self) -> Result<Tensor> {
        let ef = self.base_family()?;
        flatten_stats(&ef.natural_params()?, self.batch_shape.len())
    }
    fn sufficient_stat(&self, x: &Tensor) -> Result<Tensor> {
        let ef = self.base_family()?;
        let batch_rank = x.rank().saturating_sub(self.event_shape.len());
        flatten_stats(&ef.sufficient_stat(x)?, batch_rank)
    }
    fn log_normalizer(&self) -> Result<Tensor> {
        sum_rightmost(&self.base_family()?.log_normalizer()?, self.reinterpreted)
    }
    fn log_base_measure(&self, x: &Tensor) -> Result<Tensor> {
        sum_rightmost(
            &self.base_family()?.log_base_measure(x)?,
            self.reinterpreted,
        )
    }
}

impl Independent {
    fn base_family(&self) -> Result<&dyn super::ExponentialFamily> {
        self.base.exponential_family().ok_or_else(|| {
            crate::error::not_available(
                self.base.family(),
                "exponential_family",
                "is not an exponential family",
            )
        })
    }
}

/// `[batch…, event…, S]` → `[batch…, Π event · S]`.
fn flatten_stats(t: &Tensor, batch_rank: usize) -> Result<Tensor> {
    let mut shape = t.dims()[..batch_rank].to_vec();
    shape.push(t.dims()[batch_rank..].iter().product());
    Ok(t.contiguous()?.reshape(shape)?)
}
