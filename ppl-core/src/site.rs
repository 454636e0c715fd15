use smallvec::SmallVec;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// What a site is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SiteKind {
    /// A random choice: latent (`sample!`) or observed (`observe!`).
    Sample,
    /// A learnable tensor from the parameter store (`param!`).
    Param,
    /// An arbitrary log-weight term (`factor!`): energies, penalties.
    Factor,
    /// A recorded value with no density (`deterministic!`).
    Deterministic,
    /// The random subsample indices of a plate (named after the plate), recorded so that
    /// `Replay` gives a model the same minibatch its guide used.
    Subsample,
    /// Data a model or guide reads through [`Ctx::input`](crate::ctx::Ctx::input): no
    /// density, never latent; `Condition`, `Substitute` and `Replay` may replace it (new
    /// data, or simulated data in the sleep phase of wake-sleep).
    Input,
}

impl SiteKind {
    /// Lower-case name for tables and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Sample => "sample",
            SiteKind::Param => "param",
            SiteKind::Factor => "factor",
            SiteKind::Deterministic => "deterministic",
            SiteKind::Subsample => "subsample",
            SiteKind::Input => "input",
        }
    }
}

#[derive(Clone)]
enum Base {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Base {
    fn as_str(&self) -> &str {
        match self {
            Base::Static(s) => s,
            Base::Shared(s) => s,
        }
    }
}

/// The name of a site or plate: an optional scope prefix, a base name and optional
/// integer indices.
///
/// Site names and kinds.
///
/// A [`SiteName`] is built without allocating in the common cases: a string literal
/// (`"z"`) or a literal with loop indices (`("x", i)`, `("x", i, j)`). Only a name made
/// from a runtime `String`, or one prefixed by the [`Scope`](crate::handlers::Scope)
/// handler, holds a reference-counted string. Names print as `scope/base[i, j]`, and
/// parsing that text gives back an equal name, so a string key such as `"enc/z[3]"` finds
/// the site a scoped, indexed model created.
#[derive(Clone)]
pub struct SiteName {
    scope: Option<Arc<str>>,
    base: Base,
    index: SmallVec<[usize; 2]>,
}

impl SiteName {
    /// A name from a `'static` string, parsed (no allocation unless it contains a scope).
    pub fn from_static(s: &'static str) -> Self {
        let (scope, base, index) = split(s);
        SiteName {
            scope: scope.map(Arc::from),
            base: Base::Static(base),
            index,
        }
    }

    /// A name parsed from runtime text (`"scope/base[i, j]"`).
    pub fn parse(s: &str) -> Self {
        let (scope, base, index) = split(s);
        SiteName {
            scope: scope.map(Arc::from),
            base: Base::Shared(Arc::from(base)),
            index,
        }
    }

    /// `base[i]` without allocation.
    pub fn indexed(base: &'static str, i: usize) -> Self {
        SiteName {
            scope: None,
            base: Base::Static(base),
            index: SmallVec::from_slice(&[i]),
        }
    }

    /// The name with `prefix/` in front (nested scopes give `outer/inner/base`).
    pub fn with_scope(&self, prefix: &str) -> Self {
        let scope = match &self.scope {
            Some(s) => Arc::from(format!("{prefix}/{s}")),
            None => Arc::from(prefix),
        };
        SiteName {
            scope: Some(scope),
            base: self.base.clone(),
            index: self.index.clone(),
        }
    }

    /// The base name, without scope or indices.
    pub fn base(&self) -> &str {
        self.base.as_str()
    }

    /// The scope prefix, if any.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    /// The indices (empty for a plain name).
    pub fn indices(&self) -> &[usize] {
        &self.index
    }

    /// Whether this name equals the text `s` (`"scope/base[i]"`), without allocating.
    pub fn matches(&self, s: &str) -> bool {
        let (scope, base, index) = split(s);
        scope == self.scope() && base == self.base() && index == self.index
    }
}

/// Splits `scope/x[1, 2]` into `(Some("scope"), "x", [1, 2])`.
fn split(s: &str) -> (Option<&str>, &str, SmallVec<[usize; 2]>) {
    let (scope, rest) = match s.rfind('/') {
        Some(p) => (Some(&s[..p]), &s[p + 1..]),
        None => (None, s),
    };
    let (base, index) = split_index(rest);
    (scope, base, index)
}

/// Splits `x[1, 2]` into `("x", [1, 2])`; anything that is not a well-formed index suffix
/// stays part of the base name.
fn split_index(s: &str) -> (&str, SmallVec<[usize; 2]>) {
    if let (Some(open), true) = (s.find('['), s.ends_with(']')) {
        let inner = &s[open + 1..s.len() - 1];
        let parsed: Option<SmallVec<[usize; 2]>> =
            inner.split(',').map(|p| p.trim().parse().ok()).collect();
        if let Some(idx) = parsed {
            if !idx.is_empty() && open > 0 {
                return (&s[..open], idx);
            }
        }
    }
    (s, SmallVec::new())
}

impl PartialEq for SiteName {
    fn eq(&self, other: &Self) -> bool {
        self.base() == other.base() && self.index == other.index && self.scope() == other.scope()
    }
}

impl Eq for SiteName {}

impl Hash for SiteName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.scope().hash(state);
        self.base().hash(state);
        self.index.hash(state);
    }
}

impl fmt::Display for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(s) = &self.scope {
            write!(f, "{s}/")?;
        }
        f.write_str(self.base())?;
        if !self.index.is_empty() {
            f.write_str("[")?;
            for (k, i) in self.index.iter().enumerate() {
                if k > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{i}")?;
            }
            f.write_str("]")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SiteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

impl From<&'static str> for SiteName {
    fn from(s: &'static str) -> Self {
        SiteName::from_static(s)
    }
}

impl From<String> for SiteName {
    fn from(s: String) -> Self {
        SiteName::parse(&s)
    }
}

impl From<&SiteName> for SiteName {
    fn from(s: &SiteName) -> Self {
        s.clone()
    }
}

impl From<(&'static str, usize)> for SiteName {
    fn from((base, i): (&'static str, usize)) -> Self {
        SiteName::indexed(base, i)
    }
}

impl From<(&'static str, usize, usize)> for SiteName {
    fn from((base, i, j): (&'static str, usize, usize)) -> Self {
        SiteName {
            scope: None,
            base: Base::Static(base),
            index: SmallVec::from_slice(&[i, j]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_text() {
        let n = SiteName::indexed("x", 3)
            .with_scope("inner")
            .with_scope("outer");
        assert_eq!(n.to_string(), "outer/inner/x[3]");
        assert_eq!(SiteName::parse("outer/inner/x[3]"), n);
        assert!(n.matches("outer/inner/x[3]"));
        assert!(!n.matches("outer/x[3]"));
        let two: SiteName = ("y", 1, 2).into();
        assert_eq!(two.to_string(), "y[1, 2]");
        assert_eq!(SiteName::from("y[1, 2]"), two);
        assert_eq!(SiteName::from("[odd"), SiteName::parse("[odd"));
        assert_eq!(SiteName::from("w").to_string(), "w");
    }
}
