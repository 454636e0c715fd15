use super::Handler;
use crate::error::Result;
use crate::message::{Message, PlateFrame};
use crate::site::SiteKind;

/// The handler behind [`Ctx::plate_enter`](crate::ctx::Ctx::plate_enter): records its
/// frame on every site, broadcasts sample and factor distributions to the plate's size at
/// its dim (a batch dim of 1 or a missing one is expanded; any other size is an error
/// naming the site, the plate and the shapes), and scales their log densities by `N / n`.
#[derive(Debug, Clone)]
pub struct Plate {
    frame: PlateFrame,
}

impl Plate {
    /// A plate handler for `frame`.
    pub fn new(frame: PlateFrame) -> Self {
        Plate { frame }
    }
}

impl Handler for Plate {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if matches!(msg.kind, SiteKind::Param | SiteKind::Subsample) {
            return Ok(());
        }
        msg.plates.insert(0, self.frame.clone());
        if let Some(d) = &msg.dist {
            let batch = d.batch_shape();
            let need = (-self.frame.dim) as usize;
            let mut target: Vec<usize> = if batch.len() >= need {
                batch.to_vec()
            } else {
                let mut t = vec![1; need - batch.len()];
                t.extend_from_slice(batch);
                t
            };
            let pos = target.len() - need;
            let n = self.frame.subsample_size;
            if target[pos] == 1 {
                target[pos] = n;
            } else if target[pos] != n {
                return Err(msg.error(format!(
                    "distribution batch shape {:?} has size {} at dim {}, where plate `{}` \
                     needs {n} (or 1 to broadcast)",
                    batch, target[pos], self.frame.dim, self.frame.name
                )));
            }
            if target != batch {
                msg.dist = Some(d.expand(&target).map_err(|e| msg.error_from(e))?);
            }
        }
        if !matches!(msg.kind, SiteKind::Deterministic | SiteKind::Input) {
            msg.scale *= self.frame.scale();
        }
        Ok(())
    }

    fn plate_frame(&self) -> Option<&PlateFrame> {
        Some(&self.frame)
    }
}
