use crate::error::{PplError, Result};
use crate::fused::{self, Activation};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// A dense layer `y = act(x Wᵀ + b)`, `W` of shape `(out, in)`, `b` of shape `(out)`.
///
/// The drop-in fast path for `candle_nn::linear` followed by an activation: the same
/// parameters (`weight`, `bias`) and initialisation, but on the CPU in f32/f64 the layer is
/// one fused op whose backward computes only the gradients that lead to variables (see
/// [`fused::linear`]); elsewhere it is the same maths in candle ops.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use ppl_core::nn::{Activation, Linear};
/// use ppl_core::ParamStore;
///
/// let store = ParamStore::new();
/// let vb = store.var_builder(DType::F32, &Device::Cpu, 0);
/// let layer = Linear::build(4, 3, Activation::Relu, vb.pp("fc"))?;
/// let y = layer.forward(&Tensor::ones((2, 4), DType::F32, &Device::Cpu)?)?;
/// assert_eq!(y.dims(), &[2, 3]);
/// assert!(y.flatten_all()?.to_vec1::<f32>()?.iter().all(|v| *v >= 0.0));
/// # Ok::<(), ppl_core::PplError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    act: Activation,
}

impl Linear {
    /// A layer from a weight `(out, in)`, an optional bias `(out)` and an activation.
    pub fn new(weight: Tensor, bias: Option<Tensor>, act: Activation) -> Result<Self> {
        let (out, _) = weight.dims2().map_err(|_| {
            PplError::invalid_argument(
                "Linear::new",
                format!("weight must be (out, in), got shape {:?}", weight.dims()),
            )
        })?;
        if let Some(b) = &bias {
            if b.dims() != [out] {
                return Err(PplError::invalid_argument(
                    "Linear::new",
                    format!(
                        "bias must have shape [{out}] for weight {:?}, got {:?}",
                        weight.dims(),
                        b.dims()
                    ),
                ));
            }
            if b.dtype() != weight.dtype() || !b.device().same_device(weight.device()) {
                return Err(PplError::invalid_argument(
                    "Linear::new",
                    "bias and weight must share dtype and device",
                ));
            }
        }
        Ok(Linear { weight, bias, act })
    }

    /// A layer with parameters `weight` and `bias` under `vb`, initialised as
    /// `candle_nn::linear` does (Kaiming-normal weight, bias uniform in ±1/√in).
    pub fn build(in_dim: usize, out_dim: usize, act: Activation, vb: VarBuilder) -> Result<Self> {
        let l = candle_nn::linear(in_dim, out_dim, vb)?;
        Linear::new(l.weight().clone(), l.bias().cloned(), act)
    }

    /// `act(x Wᵀ + b)` for `x` of shape `(…, in)`; an error naming the shapes otherwise.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (out, inp) = self.weight.dims2()?;
        if x.rank() == 0 || x.dims()[x.rank() - 1] != inp {
            return Err(PplError::invalid_argument(
                "Linear::forward",
                format!(
                    "input of shape {:?} does not end in the layer's input size {inp} \
                     (weight ({out}, {inp}))",
                    x.dims()
                ),
            ));
        }
        if x.dtype() != self.weight.dtype() {
            return Err(PplError::invalid_argument(
                "Linear::forward",
                format!(
                    "input is {:?} but the layer's weight is {:?}",
                    x.dtype(),
                    self.weight.dtype()
                ),
            ));
        }
        fused::linear(x, &self.weight, self.bias.as_ref(), self.act)
    }

    /// The weight, shape `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias, shape `(out)`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// The activation.
    pub fn activation(&self) -> Activation {
        self.act
    }
}

impl candle_core::Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        Linear::forward(self, x).map_err(candle_core::Error::wrap)
    }
}
