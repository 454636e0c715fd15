use super::energy::{select_per_point, Data, EnergyModel};
use super::free_energy::{relaxed_min, FreeEnergy, Temperature};
use candle_core::{DType, Device, Tensor};
use ppl_core::{ChoiceMap, Ctx, Model, PplError, Result, SiteName};

/// A finite set of candidate values of one or more latent sites.
///
/// A grid of `G` candidates. Each axis holds values of one latent site; a product grid
/// ([`Grid::product`]) enumerates every combination (the first grid's index varies
/// slowest). A candidate value is a scalar shared by every element of the site (the usual
/// case: one angle per point) or, with [`Grid::from_tensor`], a vector/array matching the
/// site's event shape.
#[derive(Debug, Clone)]
pub struct Grid {
    axes: Vec<Axis>,
    len: usize,
}

#[derive(Debug, Clone)]
struct Axis {
    site: SiteName,
    /// `[G, event…]` values, flattened, on the host.
    values: Vec<f64>,
    /// The shape of one candidate (empty for scalars).
    event: Vec<usize>,
    /// Candidates on this axis.
    n: usize,
}

impl Grid {
    fn single(site: SiteName, values: Vec<f64>, event: Vec<usize>, n: usize) -> Result<Self> {
        if n == 0 {
            return Err(PplError::config(
                "Grid",
                format!("site `{site}`: a grid needs at least one point"),
            ));
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(PplError::config(
                "Grid",
                format!("site `{site}`: grid value {v} is not finite"),
            ));
        }
        Ok(Grid {
            axes: vec![Axis {
                site,
                values,
                event,
                n,
            }],
            len: n,
        })
    }

    /// `n` evenly spaced values from `lo` to `hi`, both included (`n = 1`: `lo`).
    pub fn linspace(site: impl Into<SiteName>, lo: f64, hi: f64, n: usize) -> Result<Self> {
        let step = if n > 1 {
            (hi - lo) / (n - 1) as f64
        } else {
            0.0
        };
        let values = (0..n).map(|i| lo + step * i as f64).collect();
        Self::single(site.into(), values, Vec::new(), n)
    }

    /// `n` evenly spaced values on the circle `[lo, lo + period)`: `lo + k·period/n`,
    /// `k = 0..n` (the end point is the start again and is left out). The horn's grid is
    /// `Grid::periodic("z", 0.0, 2π, 48)`: step π/24.
    pub fn periodic(site: impl Into<SiteName>, lo: f64, period: f64, n: usize) -> Result<Self> {
        if !(period > 0.0 && period.is_finite()) {
            return Err(PplError::config(
                "Grid::periodic",
                format!("the period must be positive and finite, got {period}"),
            ));
        }
        let values = (0..n).map(|k| lo + period * k as f64 / n as f64).collect();
        Self::single(site.into(), values, Vec::new(), n)
    }

    /// The candidates in `values`: `[G]` (scalars) or `[G, event…]` (one array per
    /// candidate, matching the site's event shape).
    pub fn from_tensor(site: impl Into<SiteName>, values: &Tensor) -> Result<Self> {
        let site = site.into();
        let dims = values.dims();
        let Some(&n) = dims.first() else {
            return Err(PplError::config(
                "Grid::from_tensor",
                format!("site `{site}`: values must have a leading candidate dim, got a scalar"),
            ));
        };
        let host = ppl_core::tensor::host_f64(values)?;
        Self::single(site, host, dims[1..].to_vec(), n)
    }

    /// The product grid: every candidate of `self` with every candidate of `other`
    /// (`self`'s index varies slowest); the two must search different sites.
    pub fn product(self, other: Grid) -> Result<Self> {
        for a in &other.axes {
            if self.axes.iter().any(|b| b.site == a.site) {
                return Err(PplError::config(
                    "Grid::product",
                    format!("site `{}` is on both grids", a.site),
                ));
            }
        }
        let (outer, inner) = (self.len, other.len);
        let mut axes = Vec::new();
        for mut a in self.axes {
            let size: usize = a.event.iter().product();
            let mut v = Vec::with_capacity(a.values.len() * inner);
            for row in a.values.chunks(size.max(1)) {
                for _ in 0..inner {
                    v.extend_from_slice(row);
                }
            }
            a.values = v;
            a.n = outer * inner;
            axes.push(a);
        }
        for mut a in other.axes {
            let mut v = Vec::with_capacity(a.values.len() * outer);
            for _ in 0..outer {
                v.extend_from_slice(&a.values);
            }
            a.values = v;
            a.n = outer * inner;
            axes.push(a);
        }
        Ok(Grid {
            axes,
            len: outer * inner,
        })
    }

    /// The number of candidates `G`.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the grid is empty (never: a grid has at least one point).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sites the grid searches.
    pub fn sites(&self) -> Vec<SiteName> {
        self.axes.iter().map(|a| a.site.clone()).collect()
    }

    /// The candidates as a choice map: per site `[G, event…]`, in `dtype` on `device`.
    pub fn choices(&self, dtype: DType, device: &Device) -> Result<ChoiceMap> {
        let mut out = ChoiceMap::new();
        for a in &self.axes {
            let mut shape = vec![self.len];
            shape.extend_from_slice(&a.event);
            let t = Tensor::from_vec(a.values.clone(), shape, device)?.to_dtype(dtype)?;
            out.insert(a.site.clone(), t);
        }
        Ok(out)
    }
}

impl<M: Model + ?Sized> EnergyModel<'_, M> {
    /// Exhaustive search over `grid` for every data point, in one model run: the energies
    /// `E_g` `[G, B]`, the minimiser `ž = argmin_g E_g` per point, and the free energy at
    /// `temperature`: `F∞ = min_g E_g`, or `F_β = −(1/β)(logsumexp_g(−βE_g) − log G)` with
    /// the soft-argmin weights `softmax_g(−βE_g)`. The free energy stays differentiable in
    /// the model's parameters (`F∞` through the selected energy only: the envelope
    /// theorem). Every latent must be on the grid.
    pub fn grid_search(
        &mut self,
        ctx: &mut Ctx,
        grid: &Grid,
        temperature: Temperature,
        data: &Data,
    ) -> Result<FreeEnergy> {
        self.ensure_init(ctx)?;
        temperature.check()?;
        let z = grid.choices(DType::F64, ctx.device())?;
        let g = grid.len();
        let ev = self.evaluate(ctx, g, Some(&z), data)?;
        let idx = ev.energy.argmin(0)?;
        let e_min = ev.energy.gather(&idx.unsqueeze(0)?, 0)?.squeeze(0)?;
        let mut zhat = ChoiceMap::new();
        for l in &self.latents {
            let v = ev.trace.value(l.name.clone())?;
            let axis = v.rank() - l.rank + l.data_axis;
            let mut s = select_per_point(&v.detach(), &idx, axis)?;
            while s.rank() > l.rank {
                s = s.squeeze(0)?;
            }
            zhat.insert(l.name.clone(), s);
        }
        let (f, weights) = match temperature {
            Temperature::Zero => (e_min.clone(), None),
            Temperature::Beta(beta) => {
                let (f, w) = relaxed_min(&ev.energy, beta, None)?;
                (f, Some(w))
            }
        };
        Ok(FreeEnergy {
            f,
            energy: e_min,
            z: zhat,
            energies: Some(ev.energy),
            weights,
            subsamples: super::energy::subsamples_of(&ev.trace),
        })
    }
}
