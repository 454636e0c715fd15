use super::common::{check_expand, common_methods, filled_like, out_shape, prepare_value};
use super::{Distribution, DynDistribution};
use crate::constraints::Constraint;
use crate::error::{not_available, shape_err, Result, ShapeFmt};
use crate::rng::PplRng;
use crate::tensor::{concat_shapes, sum_rightmost};
use crate::validation::check_param;
use candle_core::Tensor;
use std::sync::Arc;

/// A point mass at `v` (used for MAP estimation: `AutoDelta`).
///
/// Log density: `log_density` at `x == v`, `-∞` elsewhere (summed over event dims).
/// Parameters: `v` (finite), `log_density` (default 0, broadcast to the batch shape), and
/// `event_dim`, the number of rightmost dims of `v` that form the event. Support: the
/// reals. Reparameterised: the sample is `v` itself, so gradients flow to `v`. Mean `v`,
/// variance 0; entropy is not defined.
///
/// ```
/// use ppl_core::prelude::*;
/// use candle_core::{Device, Tensor};
/// # fn main() -> ppl_core::Result<()> {
/// let v = Tensor::new(&[1.0f64, 2.0], &Device::Cpu)?;
/// let d = Delta::new(&v, 1)?;
/// assert_eq!(d.log_prob(&v)?.to_scalar::<f64>()?, 0.0);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Delta {
    v: Tensor,
    log_density: Tensor,
    batch_shape: Vec<usize>,
    event_shape: Vec<usize>,
    support: Constraint,
}

impl Delta {
    /// A point mass at `v` whose rightmost `event_dim` dims form the event.
    pub fn new(v: &Tensor, event_dim: usize) -> Result<Self> {
        let zero = Tensor::zeros((), v.dtype(), v.device())?;
        Self::with_log_density(v, &zero, event_dim)
    }

    /// A point mass with the given log density (broadcastable to the batch shape).
    pub fn with_log_density(v: &Tensor, log_density: &Tensor, event_dim: usize) -> Result<Self> {
        if event_dim > v.rank() {
            return Err(shape_err(
                "Delta",
                format!(
                    "event_dim {event_dim} exceeds the rank of `v` (shape {})",
                    ShapeFmt(v.dims())
                ),
            ));
        }
        check_param("Delta", "v", v, &Constraint::Real)?;
        check_param("Delta", "log_density", log_density, &Constraint::Real)?;
        let split = v.rank() - event_dim;
        let batch_shape = v.dims()[..split].to_vec();
        let event_shape = v.dims()[split..].to_vec();
        let log_density = log_density
            .broadcast_as(batch_shape.as_slice())
            .map_err(|_| {
                shape_err(
                    "Delta",
                    format!(
                        "parameter `log_density` shape {} does not broadcast to batch shape {}",
                        ShapeFmt(log_density.dims()),
                        ShapeFmt(&batch_shape)
                    ),
                )
            })?;
        Ok(Self {
            v: v.clone(),
            log_density,
            batch_shape,
            event_shape,
            support: Constraint::Real,
        })
    }

    /// The same point mass declaring the (base) support `c` — e.g. `positive` for a MAP
    /// guide of a positive latent — so guide/model support checks see the right set.
    pub fn with_support(mut self, c: Constraint) -> Self {
        self.support = c;
        self
    }
}

impl Distribution for Delta {
    common_methods!("Delta", v);
    fn event_shape(&self) -> &[usize] {
        &self.event_shape
    }
    fn has_rsample(&self) -> bool {
        true
    }
    fn sample(&self, _rng: &mut PplRng, sample_shape: &[usize]) -> Result<Tensor> {
        let shape = out_shape(sample_shape, &self.batch_shape, &self.event_shape);
        Ok(self.v.broadcast_as(shape)?)
    }
    fn log_prob(&self, value: &Tensor) -> Result<Tensor> {
        let x = prepare_value(self, value)?;
        let eq = x.broadcast_eq(&self.v)?;
        let zeros = eq.to_dtype(self.dtype())?.zeros_like()?;
        let lp = eq.where_cond(&zeros, &filled_like(&zeros, f64::NEG_INFINITY)?)?;
        Ok(sum_rightmost(&lp, self.event_shape.len())?.broadcast_add(&self.log_density)?)
    }
    fn mean(&self) -> Result<Tensor> {
        Ok(self.v.clone())
    }
    fn variance(&self) -> Result<Tensor> {
        Ok(self.v.zeros_like()?)
    }
    fn entropy(&self) -> Result<Tensor> {
        Err(not_available(
            "Delta",
            "entropy",
            "is undefined for a point mass",
        ))
    }
    fn support(&self) -> Constraint {
        match self.event_shape.len() {
            0 => self.support.clone(),
            n => Constraint::Independent(Box::new(self.support.clone()), n),
        }
    }
    /// The same point mass, `v` and `log_density` kept on the autodiff graph.
    ///
    /// `detach` serves the doubly-reparameterised IWAE gradient (DReG), which evaluates
    /// `log q_φ(z)` at the drawn `z = z(ε, φ)` with the *parameters* `φ` cut from the graph
    /// and the path through the sample kept. In the joint-Gaussian autoguides
    /// (`AutoMultivariateNormal`, `AutoLowRankMultivariateNormal`) each latent is
    /// `Delta(T(x_s), −log |det J_T(x_s)|)` where `x ~ N(μ, Σ)` is the auxiliary site: `v`
    /// and `log_density` depend on `φ` only through the sample `x = μ + L ε`, which is that
    /// path. Then `log q_φ̄(z) = log N(x; μ̄, Σ̄) − log |det J_T(x)|`: the auxiliary site's
    /// Gaussian is detached by its own `detach`, and the Jacobian term must keep its
    /// gradient through `x`, so nothing is cut here. The point-mass part contributes
    /// nothing either way (the indicator `z == v` is piecewise constant and the value is `v`
    /// itself). Not suitable for a `Delta` whose `log_density` is a direct function of a
    /// parameter rather than of the sample (DReG would then keep that parameter's
    /// gradient); no guide in this library builds one.
    fn detach(&self) -> Result<DynDistribution> {
        Ok(Arc::new(self.clone()))
    }
    fn expand(&self, batch_shape: &[usize]) -> Result<DynDistribution> {
        check_expand(self.family(), &self.batch_shape, batch_shape)?;
        let full = concat_shapes(&[batch_shape, &self.event_shape]);
        Ok(Arc::new(Self {
            v: self.v.broadcast_as(full)?,
            log_density: self.log_density.broadcast_as(batch_shape)?,
            batch_shape: batch_shape.to_vec(),
            event_shape: self.event_shape.clone(),
            support: self.support.clone(),
        }))
    }
}
