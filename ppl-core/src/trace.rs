use crate::distributions::DynDistribution;
use crate::error::{PplError, Result};
use crate::message::{describe_plates, Message, PlateStack};
use crate::site::{SiteKind, SiteName};
use crate::tensor::where_broadcast;
use candle_core::Tensor;
use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;

/// Above this many sites, name lookups use a hash index instead of a linear scan.
const INDEX_THRESHOLD: usize = 16;

/// One recorded site.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site name.
    pub name: SiteName,
    /// What the site is.
    pub kind: SiteKind,
    /// The distribution (after plate broadcasting); `None` for param and deterministic.
    pub dist: Option<DynDistribution>,
    /// The value.
    pub value: Tensor,
    /// Whether the value is data (observed or conditioned).
    pub observed: bool,
    /// Log-density multiplier (plates' `N/n` times any `Scale`).
    pub scale: f64,
    /// Log-density mask (`None`: all elements count).
    pub mask: Option<Tensor>,
    /// Enclosing plates, outermost first.
    pub plates: PlateStack,
    /// Whether the value is a reparameterised sample (differentiable w.r.t. the
    /// distribution's parameters). `false` for observed sites and discrete latents.
    pub reparameterized: bool,
    /// An auxiliary guide latent with no model counterpart (see [`Ctx::sample_auxiliary`](crate::ctx::Ctx::sample_auxiliary)).
    pub auxiliary: bool,
    /// An observed site sampled instead by [`Uncondition`](crate::handlers::Uncondition)
    /// (now latent; `false` everywhere else).
    pub was_observed: bool,
    log_prob: OnceLock<Tensor>,
}

impl Site {
    /// Whether this is a latent sample site.
    pub fn is_latent(&self) -> bool {
        self.kind == SiteKind::Sample && !self.observed
    }

    /// Whether this site has a log density (sample and factor sites).
    pub fn has_density(&self) -> bool {
        matches!(self.kind, SiteKind::Sample | SiteKind::Factor)
    }

    /// `dist.log_prob(value)` without scale or mask, batch-shaped.
    pub fn unscaled_log_prob(&self) -> Result<Tensor> {
        let d = self
            .dist
            .as_ref()
            .ok_or_else(|| self.error("has no distribution"))?;
        d.log_prob(&self.value)
            .map_err(|e| PplError::at_site(&self.name, describe_plates(&self.plates), e))
    }

    /// `mask ⊙ dist.log_prob(value)` without the scale, batch-shaped (what score-function
    /// and per-data-point estimators need).
    pub fn masked_log_prob(&self) -> Result<Tensor> {
        let lp = self.unscaled_log_prob()?;
        match &self.mask {
            Some(m) => where_broadcast(m, &lp, &lp.zeros_like()?),
            None => Ok(lp),
        }
    }

    /// `scale · mask ⊙ dist.log_prob(value)`, batch-shaped (cached).
    pub fn log_prob(&self) -> Result<Tensor> {
        if let Some(lp) = self.log_prob.get() {
            return Ok(lp.clone());
        }
        let mut lp = self.masked_log_prob()?;
        if self.scale != 1.0 {
            lp = (lp * self.scale)?;
        }
        let _ = self.log_prob.set(lp.clone());
        Ok(lp)
    }

    /// The masked (unscaled) log density summed over every dim except that of plate
    /// `plate`: one value per element of the plate.
    pub fn log_prob_along(&self, plate: &str) -> Result<Option<Tensor>> {
        let Some(frame) = self.plates.iter().find(|f| f.name.matches(plate)) else {
            return Ok(None);
        };
        let lp = self.masked_log_prob()?;
        let rank = lp.rank() as isize;
        let axis = rank + frame.dim;
        if axis < 0 {
            return Err(self.error(format!(
                "log density of shape {:?} has no dim {} for plate `{plate}`",
                lp.dims(),
                frame.dim
            )));
        }
        let axis = axis as usize;
        let n = lp.dim(axis)?;
        let moved = lp.transpose(0, axis)?.contiguous()?.reshape((n, ()))?;
        Ok(Some(moved.sum(1)?))
    }

    fn error(&self, message: impl Into<String>) -> PplError {
        PplError::site(&self.name, describe_plates(&self.plates), message)
    }
}

/// The ordered sites of one model run.
///
/// [`Trace`]: the ordered record of a model run.
///
/// Each [`Site`] keeps its name, kind, distribution, value, scale, mask, plates and
/// whether its value is reparameterised (so an engine knows where score-function terms
/// are needed). Log densities are computed on demand and cached per site:
///
/// `log_prob(site) = scale · mask ⊙ dist.log_prob(value)` (batch-shaped), and
/// `log_joint = Σ_sites Σ_elements log_prob(site)` over sample and factor sites (param,
/// deterministic, subsample and input sites have no density).
#[derive(Debug, Clone, Default)]
pub struct Trace {
    sites: Vec<Site>,
    index: Option<HashMap<SiteName, usize>>,
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a processed message. Sample, factor, deterministic and input names must be
    /// unique; a param used twice is recorded once.
    pub fn add(&mut self, msg: &Message) -> Result<()> {
        let value = msg.value.clone().ok_or_else(|| msg.error("has no value"))?;
        if let Some(i) = self.position(&msg.name) {
            let same = msg.kind == self.sites[i].kind;
            if same && matches!(msg.kind, SiteKind::Param | SiteKind::Subsample) {
                return Ok(());
            }
            return Err(PplError::DuplicateSite {
                site: msg.name.to_string(),
            });
        }
        let reparameterized =
            msg.is_latent() && msg.dist.as_ref().is_some_and(|d| d.has_rsample()) && !msg.detach;
        let site = Site {
            name: msg.name.clone(),
            kind: msg.kind,
            dist: msg.dist.clone(),
            value,
            observed: msg.observed,
            scale: msg.scale,
            mask: msg.mask.clone(),
            plates: msg.plates.clone(),
            reparameterized,
            auxiliary: msg.auxiliary,
            was_observed: msg.was_observed,
            log_prob: OnceLock::new(),
        };
        let pos = self.sites.len();
        if let Some(ix) = &mut self.index {
            ix.insert(site.name.clone(), pos);
        }
        self.sites.push(site);
        if self.index.is_none() && self.sites.len() > INDEX_THRESHOLD {
            self.index = Some(
                self.sites
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (s.name.clone(), i))
                    .collect(),
            );
        }
        Ok(())
    }

    fn position(&self, name: &SiteName) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(name).copied(),
            None => self.sites.iter().position(|s| &s.name == name),
        }
    }

    /// All sites in execution order.
    pub fn sites(&self) -> &[Site] {
        &self.sites
    }

    /// Number of recorded sites.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether no site was recorded.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }

    /// The site called `name` (a [`SiteName`] or its text, e.g. `"enc/z[3]"`).
    pub fn get(&self, name: impl Into<SiteName>) -> Option<&Site> {
        self.position(&name.into()).map(|i| &self.sites[i])
    }

    /// The site called `name`, or an error naming it.
    pub fn site(&self, name: impl Into<SiteName>) -> Result<&Site> {
        let name = name.into();
        self.position(&name).map(|i| &self.sites[i]).ok_or_else(|| {
            let names: Vec<String> = self.sites.iter().map(|s| s.name.to_string()).collect();
            PplError::site(
                &name,
                "",
                format!("not in the trace (sites: {})", names.join(", ")),
            )
        })
    }

    /// The value of site `name`.
    pub fn value(&self, name: impl Into<SiteName>) -> Result<Tensor> {
        Ok(self.site(name)?.value.clone())
    }

    /// Latent sample sites.
    pub fn latent_sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(|s| s.is_latent())
    }

    /// Observed sample sites.
    pub fn observed_sites(&self) -> impl Iterator<Item = &Site> {
        self.sites
            .iter()
            .filter(|s| s.kind == SiteKind::Sample && s.observed)
    }

    /// Input sites (data read through [`Ctx::input`](crate::ctx::Ctx::input)), in
    /// execution order.
    pub fn inputs(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(|s| s.kind == SiteKind::Input)
    }

    /// Param sites.
    pub fn param_sites(&self) -> impl Iterator<Item = &Site> {
        self.sites.iter().filter(|s| s.kind == SiteKind::Param)
    }

    /// Sum of the (scaled, masked) log densities of the sites with a density for which
    /// `filter` is true; a scalar tensor.
    pub fn log_prob_sum(&self, filter: impl Fn(&Site) -> bool) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for s in self.sites.iter().filter(|s| s.has_density() && filter(s)) {
            let lp = s.log_prob()?.sum_all()?;
            total = Some(match total {
                None => lp,
                Some(t) => {
                    let lp = lp.to_dtype(t.dtype())?;
                    (t + lp)?
                }
            });
        }
        match total {
            Some(t) => Ok(t),
            None => Err(PplError::invalid_argument(
                "Trace::log_prob_sum",
                "no site with a density matches the filter",
            )),
        }
    }

    /// `log p(all sample and factor sites)`: latents, observations and factors.
    pub fn log_joint(&self) -> Result<Tensor> {
        self.log_prob_sum(|_| true)
    }

    /// One log density per element of plate `plate`: the sum of the masked, unscaled log
    /// densities of every sample and factor site inside it (sites outside the plate are
    /// not included). The negative is the per-data-point energy of an energy-based model.
    pub fn log_prob_per(&self, plate: &str) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for s in self.sites.iter().filter(|s| s.has_density()) {
            if let Some(lp) = s.log_prob_along(plate)? {
                total = Some(match total {
                    None => lp,
                    Some(t) => (t + lp)?,
                });
            }
        }
        total.ok_or_else(|| {
            PplError::invalid_argument(
                "Trace::log_prob_per",
                format!("no site with a density is inside plate `{plate}`"),
            )
        })
    }

    /// A table of every site's shapes, like Pyro's `format_shapes`: kind, plates,
    /// `batch | event` shape of the distribution, value shape and log-density shape.
    pub fn format_shapes(&self) -> Result<String> {
        let mut rows = vec![[
            "site".to_string(),
            "kind".into(),
            "plates".into(),
            "batch | event".into(),
            "value".into(),
            "log_prob".into(),
        ]];
        for s in &self.sites {
            let kind = match (s.kind, s.observed) {
                (SiteKind::Sample, true) => "observed",
                (SiteKind::Sample, false) => "latent",
                (k, _) => k.as_str(),
            };
            let plates = if s.plates.is_empty() {
                "-".to_string()
            } else {
                s.plates
                    .iter()
                    .map(|p| format!("{}[{}]={}", p.name, p.dim, p.subsample_size))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let (be, lp) = match &s.dist {
                Some(d) if s.has_density() => (
                    format!("{:?} | {:?}", d.batch_shape(), d.event_shape()),
                    format!("{:?}", s.log_prob()?.dims()),
                ),
                _ => ("-".into(), "-".into()),
            };
            rows.push([
                s.name.to_string(),
                kind.into(),
                plates,
                be,
                format!("{:?}", s.value.dims()),
                lp,
            ]);
        }
        let mut widths = [0usize; 6];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &rows {
            let mut line = String::new();
            for (k, (w, c)) in widths.iter().zip(r.iter()).enumerate() {
                if k > 0 {
                    line.push_str("  ");
                }
                let _ = write!(line, "{c:<w$}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        Ok(out)
    }
}
