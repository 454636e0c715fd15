use super::{Handler, SiteFilter};
use crate::error::Result;
use crate::message::Message;
use crate::site::SiteName;

/// Detaches the values of the selected latent sites from the autodiff graph (for
/// estimators that must not differentiate through a sample, e.g. the score-function term
/// or the wake phase of wake-sleep).
pub struct StopGradient {
    select: SiteFilter,
}

impl std::fmt::Debug for StopGradient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopGradient")
    }
}

impl StopGradient {
    /// Detaches every latent site.
    pub fn all() -> Self {
        StopGradient {
            select: Box::new(|_| true),
        }
    }

    /// Detaches the named latent sites.
    pub fn sites<N: Into<SiteName>>(names: impl IntoIterator<Item = N>) -> Self {
        let names: Vec<SiteName> = names.into_iter().map(Into::into).collect();
        StopGradient {
            select: Box::new(move |m| names.contains(&m.name)),
        }
    }
}

impl Handler for StopGradient {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if msg.is_latent() && (self.select)(msg) {
            msg.detach = true;
        }
        Ok(())
    }
}
