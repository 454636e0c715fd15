use super::{Handler, SiteFilter};
use crate::error::Result;
use crate::message::Message;
use crate::site::SiteName;

/// Hides sites from the handlers outside it (they are still sampled and returned to the
/// model): `block(model, hide = ["z"])`. Used to keep a guide's sites out of a model trace,
/// or to train one part of a model while another stays fixed.
pub struct Block {
    hide: SiteFilter,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Block")
    }
}

impl Block {
    /// Hides every site.
    pub fn all() -> Self {
        Self::when(|_| true)
    }

    /// Hides the named sites.
    pub fn hide<N: Into<SiteName>>(names: impl IntoIterator<Item = N>) -> Self {
        let names: Vec<SiteName> = names.into_iter().map(Into::into).collect();
        Self::when(move |m| names.contains(&m.name))
    }

    /// Hides every site except the named ones.
    pub fn expose<N: Into<SiteName>>(names: impl IntoIterator<Item = N>) -> Self {
        let names: Vec<SiteName> = names.into_iter().map(Into::into).collect();
        Self::when(move |m| !names.contains(&m.name))
    }

    /// Hides the sites for which `pred` is true.
    pub fn when(pred: impl Fn(&Message) -> bool + Send + 'static) -> Self {
        Block {
            hide: Box::new(pred),
        }
    }
}

impl Handler for Block {
    fn process(&mut self, msg: &mut Message) -> Result<()> {
        if (self.hide)(msg) {
            msg.stop = true;
        }
        Ok(())
    }
}
