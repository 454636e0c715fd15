use candle_core::Tensor;
use ppl_core::{ChoiceMap, PplError, Result};

/// The training loss of an energy-based model, from free energies per point.
///
/// With `F = F(x, y)` on the data and `F̄ = F(x, ȳ)` on contrastive observations `ȳ`
/// (same points, observed sites replaced), averaged over the `B` points of the batch:
/// - `Energy`: `mean F` (push the energy of the data down; no contrastive term, so it
///   relies on the architecture — a low-dimensional or regularised `z` — against collapse);
/// - `Hinge { margin }`: `mean [F − F̄ + m]₊`;
/// - `Log`: `mean softplus(F − F̄)` = `mean log(1 + exp(F − F̄))` (the soft hinge).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// `mean F(x, y)`.
    Energy,
    /// `mean [F(x, y) − F(x, ȳ) + margin]₊`.
    Hinge {
        /// The margin `m ≥ 0`.
        margin: f64,
    },
    /// `mean softplus(F(x, y) − F(x, ȳ))`.
    Log,
}

impl Loss {
    /// Whether the loss needs contrastive free energies.
    pub fn is_contrastive(&self) -> bool {
        !matches!(self, Loss::Energy)
    }

    /// The loss (a scalar tensor) from the data's free energies `f` `[B]` and, for the
    /// contrastive losses, the contrastive ones `f_bar` `[B]`.
    pub fn value(&self, f: &Tensor, f_bar: Option<&Tensor>) -> Result<Tensor> {
        let diff = || -> Result<Tensor> {
            let fb = f_bar.ok_or_else(|| {
                PplError::config("Loss", format!("{self:?} needs contrastive free energies"))
            })?;
            if fb.dims() != f.dims() {
                return Err(PplError::invalid_argument(
                    "Loss::value",
                    format!(
                        "free energies on data {:?} and contrastive {:?} differ in shape",
                        f.dims(),
                        fb.dims()
                    ),
                ));
            }
            Ok((f - fb.to_dtype(f.dtype())?)?)
        };
        Ok(match *self {
            Loss::Energy => f.mean_all()?,
            Loss::Hinge { margin } => {
                if !(margin.is_finite() && margin >= 0.0) {
                    return Err(PplError::config(
                        "Loss::Hinge",
                        format!("the margin must be finite and non-negative, got {margin}"),
                    ));
                }
                diff()?.affine(1.0, margin)?.relu()?.mean_all()?
            }
            Loss::Log => ppl_core::special::softplus(&diff()?)?.mean_all()?,
        })
    }
}

/// The regression loss of an amortised encoder: `Σ_sites mean (pred − target)²`, with
/// `target` (typically the refined `ž`) detached.
pub fn encoder_loss(pred: &ChoiceMap, target: &ChoiceMap) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (n, t) in target.iter() {
        let p = pred.get(n).ok_or_else(|| {
            PplError::config("encoder_loss", format!("the encoder predicts no `{n}`"))
        })?;
        let t = t.detach().to_dtype(p.dtype())?;
        let l = p.broadcast_sub(&t)?.sqr()?.mean_all()?;
        total = Some(match total {
            None => l,
            Some(a) => (a + l)?,
        });
    }
    total.ok_or_else(|| PplError::config("encoder_loss", "no target latents"))
}
