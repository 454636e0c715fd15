use super::Handler;
use crate::error::{PplError, Result};
use crate::message::Message;
use crate::site::SiteKind;

/// Multiplies the log density of every sample and factor site by a positive constant
/// (e.g. KL annealing, or `N / n` for hand-made minibatches).
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    factor: f64,
}

impl Scale {
    /// Scales by `factor`, which must be finite and positive.
    pub fn new(factor: f64) -> Result<Self> {
        if !(factor.is_finite() && factor > 0.0) {
            return Err(PplError::config(
                "Scale",
                format!("scale must be finite and positive, got {factor}"),
            ));
        }
        Ok(Scale { factor })
    }
}

impl Handler for Scale {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.kind != SiteKind::Input {
            msg.scale *= self.factor;
        }
        Ok(())
    }
}
