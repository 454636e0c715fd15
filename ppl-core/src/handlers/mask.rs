use super::Handler;
use crate::error::Result;
use crate::message::Message;
use crate::site::SiteKind;
use candle_core::{DType, Tensor};

/// Keeps the log density of sample and factor sites only where `mask` is nonzero (the
/// mask broadcasts against each site's batch shape); masked-out elements contribute 0.
/// Nested masks combine with logical and.
#[derive(Debug, Clone)]
pub struct Mask {
    mask: Tensor,
}

impl Mask {
    /// Masks with `mask` (any dtype; nonzero means keep).
    pub fn new(mask: &Tensor) -> Result<Self> {
        let mask = mask.ne(&mask.zeros_like()?)?.to_dtype(DType::U8)?;
        Ok(Mask { mask })
    }
}

impl Handler for Mask {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind == SiteKind::Input {
            return Ok(()); // no density to mask
        }
        msg.mask = Some(match &msg.mask {
            None => self.mask.clone(),
            Some(m) => m.broadcast_mul(&self.mask)?,
        });
        Ok(())
    }
}
