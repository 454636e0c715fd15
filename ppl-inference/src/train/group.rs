use super::optim::Optimizer;
use super::schedule::{Constant, Schedule};
use candle_core::Var;
use ppl_core::{PplError, Result};

/// Which variables a group updates.
#[derive(Debug, Clone)]
pub(crate) enum Select {
    /// Store parameters no prefix group claims.
    Rest,
    /// Store parameters whose names start with one of these.
    Prefixes(Vec<String>),
    /// Variables outside the store, by name.
    Free(Vec<(String, Var)>),
}

/// One parameter group.
///
/// Parameter groups: which variables an optimiser updates, at which learning rate.
///
/// A [`Trainer`](super::Trainer) holds one or more groups. Each has its own optimiser
/// (and state), learning-rate schedule and variables:
/// * the parameters of the store whose names start with given prefixes
///   ([`ParamGroup::with_prefixes`], e.g. `"decoder/"` for the generative θ and
///   `"encoder/"` for the recognition φ of wake-sleep);
/// * every store parameter that no prefix group claims ([`ParamGroup::new`], the default);
/// * free variables that are not in the store at all ([`ParamGroup::free`], e.g. the
///   per-data-point latents an energy-based engine minimises).
///
/// A store parameter matched by the prefixes of two groups is an error naming both.
pub struct ParamGroup {
    pub(crate) name: String,
    pub(crate) select: Select,
    pub(crate) optimizer: Box<dyn Optimizer>,
    pub(crate) schedule: Box<dyn Schedule>,
}

impl std::fmt::Debug for ParamGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParamGroup")
            .field("name", &self.name)
            .field("select", &self.select)
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains(['/', ':']) {
        return Err(PplError::config(
            "ParamGroup",
            format!("a group name must be non-empty without `/` or `:`, got {name:?}"),
        ));
    }
    Ok(())
}

impl ParamGroup {
    /// A group over every store parameter that no prefix group claims, optimised by
    /// `optimizer` at the constant learning rate `lr > 0`.
    pub fn new(
        name: impl Into<String>,
        optimizer: impl Optimizer + 'static,
        lr: f64,
    ) -> Result<Self> {
        let name = name.into();
        check_name(&name)?;
        Ok(ParamGroup {
            schedule: Box::new(Constant::new(lr)?),
            name,
            select: Select::Rest,
            optimizer: Box::new(optimizer),
        })
    }

    /// A group over variables outside the parameter store (named for checkpoints).
    pub fn free(
        name: impl Into<String>,
        vars: Vec<(String, Var)>,
        optimizer: impl Optimizer + 'static,
        lr: f64,
    ) -> Result<Self> {
        let mut g = Self::new(name, optimizer, lr)?;
        let mut seen = std::collections::HashSet::new();
        for (n, _) in &vars {
            if !seen.insert(n.as_str()) {
                return Err(PplError::config(
                    "ParamGroup::free",
                    format!("group `{}` names variable `{n}` twice", g.name),
                ));
            }
        }
        g.select = Select::Free(vars);
        Ok(g)
    }

    /// Restricts the group to store parameters whose names start with one of `prefixes`.
    pub fn with_prefixes<S: Into<String>>(
        mut self,
        prefixes: impl IntoIterator<Item = S>,
    ) -> Result<Self> {
        let p: Vec<String> = prefixes.into_iter().map(Into::into).collect();
        if p.is_empty() || p.iter().any(String::is_empty) {
            return Err(PplError::config(
                "ParamGroup::with_prefixes",
                format!("group `{}` needs non-empty prefixes, got {p:?}", self.name),
            ));
        }
        self.select = Select::Prefixes(p);
        Ok(self)
    }

    /// Replaces the constant learning rate with a schedule.
    pub fn with_schedule(mut self, schedule: impl Schedule + 'static) -> Self {
        self.schedule = Box::new(schedule);
        self
    }

    /// The group's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The group's optimiser.
    pub fn optimizer(&self) -> &dyn Optimizer {
        self.optimizer.as_ref()
    }

    /// The learning rate at `step`, checked: a schedule that yields a NaN, infinite, zero
    /// or negative rate is an error naming the group and step.
    pub(crate) fn lr(&self, step: u64) -> Result<f64> {
        let lr = self.schedule.lr(step);
        if !(lr.is_finite() && lr > 0.0) {
            return Err(PplError::config(
                "Trainer",
                format!(
                    "the schedule of parameter group `{}` gave learning rate {lr} at step \
                     {step}; it must be finite and positive",
                    self.name
                ),
            ));
        }
        Ok(lr)
    }
}

/// The group that owns store parameter `name`: the prefix group whose prefixes match it,
/// else the `Rest` group, else none; matching two prefix groups is an error.
pub(crate) fn owner(groups: &[ParamGroup], name: &str) -> Result<Option<usize>> {
    let mut owner: Option<usize> = None;
    for (i, g) in groups.iter().enumerate() {
        if let Select::Prefixes(p) = &g.select {
            if p.iter().any(|p| name.starts_with(p.as_str())) {
                if let Some(j) = owner {
                    return Err(PplError::config(
                        "Trainer",
                        format!(
                            "parameter `{name}` matches the prefixes of groups `{}` and `{}`; \
                             give each parameter one group",
                            groups[j].name, g.name
                        ),
                    ));
                }
                owner = Some(i);
            }
        }
    }
    Ok(owner.or_else(|| groups.iter().position(|g| matches!(g.select, Select::Rest))))
}

/// Splits the store's variables (sorted by name) among `groups`: one list per group.
pub(crate) fn assign(
    groups: &[ParamGroup],
    store: Vec<(String, Var)>,
) -> Result<Vec<Vec<(String, Var)>>> {
    let mut out: Vec<Vec<(String, Var)>> = groups
        .iter()
        .map(|g| match &g.select {
            Select::Free(v) => v.clone(),
            _ => Vec::new(),
        })
        .collect();
    for (name, var) in store {
        if let Some(i) = owner(groups, &name)? {
            out[i].push((name, var));
        }
    }
    Ok(out)
}
