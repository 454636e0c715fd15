//! Composition of bijectors: [`Flow`] (a sequence) and [`Inverse`] (directions swapped).

use super::bijector::{Bijector, Fast};
use crate::error::{PplError, Result};
use candle_core::Tensor;
use std::sync::Arc;

impl<B: Bijector + ?Sized> Bijector for Arc<B> {
    fn dim(&self) -> usize {
        (**self).dim()
    }
    fn fast(&self) -> Fast {
        (**self).fast()
    }
    fn to_data(&self, z: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        (**self).to_data(z, context)
    }
    fn to_base(&self, x: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        (**self).to_base(x, context)
    }
    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        (**self).to_data_jvp(z, context, v)
    }
    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        (**self).to_base_jvp(x, context, v)
    }
}

/// `a + b` with broadcasting (ladjs of layers with and without a context may have different
/// batch shapes).
fn add_ladj(acc: Option<Tensor>, l: Tensor) -> Result<Tensor> {
    Ok(match acc {
        None => l,
        Some(a) => a.broadcast_add(&l)?,
    })
}

/// The summed `ladj`, or zeros of `input`'s batch shape when there was no layer.
fn finish(ladj: Option<Tensor>, input: &Tensor) -> Result<Tensor> {
    match ladj {
        Some(l) => Ok(l),
        None => super::shapes::zero_ladj(input),
    }
}

/// A sequence of layers `f = f_n ∘ … ∘ f_1`, itself a [`Bijector`].
///
/// [`Bijector::to_data`] applies the layers in order (`layers[0]` first, next to the base),
/// [`Bijector::to_base`] in reverse; the `ladj`s are summed and tangents are chained (the
/// chain rule). Every layer receives the same context.
///
/// [`Bijector::fast`]: [`Fast::Both`] when every layer is; [`Fast::ToData`] when every
/// layer is `Both` or `ToData`; [`Fast::ToBase`] when every layer is `Both` or `ToBase`.
/// A mix of `ToData` and `ToBase` layers (or a `Neither` layer) is slow both ways:
/// [`Fast::Neither`].
#[derive(Debug, Clone)]
pub struct Flow {
    layers: Vec<Arc<dyn Bijector>>,
    dim: usize,
}

impl Flow {
    /// The composition of `layers` (at least one, all of the same event size).
    pub fn new(layers: Vec<Arc<dyn Bijector>>) -> Result<Self> {
        let Some(first) = layers.first() else {
            return Err(PplError::invalid_argument(
                "Flow",
                "a flow needs at least one layer",
            ));
        };
        let dim = first.dim();
        if let Some((i, l)) = layers.iter().enumerate().find(|(_, l)| l.dim() != dim) {
            return Err(PplError::invalid_argument(
                "Flow",
                format!(
                    "layer {i} ({l:?}) acts on events of size {} but layer 0 on size {dim}",
                    l.dim()
                ),
            ));
        }
        Ok(Flow { layers, dim })
    }

    /// The layers, base side first.
    pub fn layers(&self) -> &[Arc<dyn Bijector>] {
        &self.layers
    }
}

impl Bijector for Flow {
    fn dim(&self) -> usize {
        self.dim
    }

    fn fast(&self) -> Fast {
        let any = |f: Fast| self.layers.iter().any(|l| l.fast() == f);
        if any(Fast::Neither) {
            return Fast::Neither;
        }
        match (any(Fast::ToData), any(Fast::ToBase)) {
            (false, false) => Fast::Both,
            (true, false) => Fast::ToData,
            (false, true) => Fast::ToBase,
            (true, true) => Fast::Neither,
        }
    }

    fn to_data(&self, z: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let mut x = z.clone();
        let mut ladj = None;
        for l in &self.layers {
            let (y, la) = l.to_data(&x, context)?;
            x = y;
            ladj = Some(add_ladj(ladj, la)?);
        }
        Ok((x, finish(ladj, z)?))
    }

    fn to_base(&self, x: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        let mut z = x.clone();
        let mut ladj = None;
        for l in self.layers.iter().rev() {
            let (y, la) = l.to_base(&z, context)?;
            z = y;
            ladj = Some(add_ladj(ladj, la)?);
        }
        Ok((z, finish(ladj, x)?))
    }

    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (mut x, mut t) = (z.clone(), v.clone());
        let mut ladj = None;
        for l in &self.layers {
            let (y, la, ty) = l.to_data_jvp(&x, context, &t)?;
            (x, t) = (y, ty);
            ladj = Some(add_ladj(ladj, la)?);
        }
        Ok((x, finish(ladj, z)?, t))
    }

    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        let (mut z, mut t) = (x.clone(), v.clone());
        let mut ladj = None;
        for l in self.layers.iter().rev() {
            let (y, la, ty) = l.to_base_jvp(&z, context, &t)?;
            (z, t) = (y, ty);
            ladj = Some(add_ladj(ladj, la)?);
        }
        Ok((z, finish(ladj, x)?, t))
    }
}

/// The inverse of a bijector: its [`Bijector::to_data`] is the inner layer's
/// [`Bijector::to_base`] and vice versa, and [`Fast::ToData`] and [`Fast::ToBase`] swap.
/// It turns a MAF (cheap density) into an IAF (cheap sampling) with the same parameters.
#[derive(Debug, Clone)]
pub struct Inverse<B> {
    inner: B,
}

impl<B: Bijector> Inverse<B> {
    /// The inverse of `inner`.
    pub fn new(inner: B) -> Self {
        Inverse { inner }
    }

    /// The wrapped layer.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Bijector> Bijector for Inverse<B> {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn fast(&self) -> Fast {
        match self.inner.fast() {
            Fast::Both => Fast::Both,
            Fast::ToData => Fast::ToBase,
            Fast::ToBase => Fast::ToData,
            Fast::Neither => Fast::Neither,
        }
    }
    fn to_data(&self, z: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.inner.to_base(z, context)
    }
    fn to_base(&self, x: &Tensor, context: Option<&Tensor>) -> Result<(Tensor, Tensor)> {
        self.inner.to_data(x, context)
    }
    fn to_data_jvp(
        &self,
        z: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.inner.to_base_jvp(z, context, v)
    }
    fn to_base_jvp(
        &self,
        x: &Tensor,
        context: Option<&Tensor>,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        self.inner.to_data_jvp(x, context, v)
    }
}
