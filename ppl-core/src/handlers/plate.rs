use super::Handler;
use crate::error::Result;
use crate::message::{Message, PlateFrame};
use crate::site::SiteKind;

/// The handler behind [`Ctx::plate_enter`](crate::ctx::Ctx::plate_enter): records its
/// frame on every site, broadcasts sample and factor distributions to the plate's size at
/// its dim (a batch dim of 1 or a missing one is expanded; any other size is an error
/// naming the site, the plate and the shapes), and scales their log densities by `N / n`.
/// An [outermost](crate::PlateOpts::outermost) plate also rejects a batch shape that
/// reaches left of its dim.
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
            if self.frame.outermost && batch.len() > need {
                return Err(msg.error(format!(
                    "distribution batch shape {:?} has {} dims, but plate `{}` (size {}, dim \
                     {}) vectorises the model and must be its leftmost batch dim: the dims \
                     {:?} left of it mean that a tensor with the vectorised dim was combined \
                     with one without it at the wrong position (typically a global latent \
                     of shape [K, 1, D] used through `matvec`, or a tensor reshaped or \
                     indexed from the left). Index batch dims from the right, as plates do; \
                     see docs/models.md, \"Shapes, plates and vectorised particles\"",
                    batch,
                    batch.len(),
                    self.frame.name,
                    self.frame.subsample_size,
                    self.frame.dim,
                    &batch[..batch.len() - need],
                )));
            }
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
