//! Phase 1: parse the primitives' arguments into [`Primitive`]s.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Block, Expr, ExprLit, Ident, Lit, Macro, Token};

/// The primitives a `#[model]` body may use.
pub const PRIMITIVES: &[&str] = &[
    "sample",
    "observe",
    "param",
    "plate",
    "factor",
    "deterministic",
    "module",
    "input",
];

/// A site name as written.
#[derive(Clone)]
pub enum SiteNameSrc {
    /// A string literal, or the `let` binding the name was inferred from.
    Literal(String, proc_macro2::Span),
    /// Any other expression: a tuple `("x", i)`, a `String`, a `SiteName`.
    Dynamic(Box<Expr>),
}

/// One parsed primitive.
pub enum Primitive {
    Sample {
        name: SiteNameSrc,
        dist: Expr,
        /// `obs = expr` (an `Option<&Tensor>`): observed when `Some`, latent otherwise.
        obs: Option<Expr>,
    },
    Observe {
        name: SiteNameSrc,
        dist: Expr,
        value: Expr,
    },
    Param {
        name: SiteNameSrc,
        init: Expr,
        constraint: Option<Expr>,
    },
    Factor {
        name: SiteNameSrc,
        log_weight: Expr,
    },
    Deterministic {
        name: SiteNameSrc,
        value: Expr,
    },
    Module {
        path: Expr,
        build: Expr,
    },
    Input {
        name: SiteNameSrc,
        data: Expr,
    },
    Plate(Box<PlateArgs>),
}

/// `plate!(NAME, SIZE [, subsample = N] [, dim = D], [|idx|] { ... })`.
pub struct PlateArgs {
    pub name: SiteNameSrc,
    pub size: Expr,
    pub subsample: Option<Expr>,
    pub dim: Option<Expr>,
    pub indices: Option<Ident>,
    pub body: Block,
}

/// The primitive's name if `mac` invokes one (`sample!` or `ppl::sample!`).
pub fn primitive_name(mac: &Macro) -> Option<String> {
    let segs = &mac.path.segments;
    let last = segs.last()?.ident.to_string();
    let ok_prefix = segs.len() == 1 || (segs.len() == 2 && segs[0].ident == "ppl");
    (ok_prefix && PRIMITIVES.contains(&last.as_str())).then_some(last)
}

fn name_of(e: Expr) -> SiteNameSrc {
    match e {
        Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) => SiteNameSrc::Literal(s.value(), s.span()),
        other => SiteNameSrc::Dynamic(Box::new(other)),
    }
}

/// Whether `e` reads as an explicit site name (a string literal or a tuple).
fn looks_like_name(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Lit(ExprLit {
            lit: Lit::Str(_),
            ..
        }) | Expr::Tuple(_)
    )
}

fn args(mac: &Macro) -> syn::Result<Vec<Expr>> {
    let p = mac.parse_body_with(Punctuated::<Expr, Token![,]>::parse_terminated)?;
    Ok(p.into_iter().collect())
}

fn arity_error(mac: &Macro, what: &str, usage: &str) -> syn::Error {
    syn::Error::new_spanned(mac, format!("malformed `{what}!`: expected {usage}"))
}

/// Removes the trailing `key = value` arguments of `sample!` (its only option is `obs`).
fn sample_options(a: &mut Vec<Expr>) -> syn::Result<Option<Expr>> {
    let mut obs = None;
    while let Some(Expr::Assign(assign)) = a.last() {
        let key = match &*assign.left {
            Expr::Path(p) if p.qself.is_none() => p.path.get_ident().cloned(),
            _ => None,
        };
        match key {
            Some(k) if k == "obs" && obs.is_some() => {
                return Err(syn::Error::new(k.span(), "`obs` is given twice"));
            }
            Some(k) if k == "obs" => obs = Some((*assign.right).clone()),
            Some(k) => {
                return Err(syn::Error::new(
                    k.span(),
                    format!(
                        "unknown `sample!` option `{k}` (the only option is `obs = value`, an \
                         `Option<&Tensor>`)"
                    ),
                ))
            }
            None => {
                return Err(syn::Error::new_spanned(
                    &assign.left,
                    "expected `obs = value` (an `Option<&Tensor>`) after the distribution",
                ))
            }
        }
        a.pop();
    }
    Ok(obs)
}

/// The name to use when a primitive omits it: the enclosing `let` binding.
fn inferred(
    mac: &Macro,
    what: &str,
    binding: Option<&Ident>,
    usage: &str,
) -> syn::Result<SiteNameSrc> {
    binding
        .map(|b| SiteNameSrc::Literal(b.to_string(), b.span()))
        .ok_or_else(|| {
            syn::Error::new_spanned(
                mac,
                format!(
                    "cannot infer a site name for `{what}!` here: write {usage}, or bind the \
                     result with `let name = {what}!(...)`"
                ),
            )
        })
}

/// Parses the invocation `mac` of primitive `what`; `binding` is the `let` identifier the
/// result is bound to, if any.
pub fn parse_primitive(mac: &Macro, what: &str, binding: Option<&Ident>) -> syn::Result<Primitive> {
    if what == "plate" {
        return Ok(Primitive::Plate(Box::new(mac.parse_body::<PlateArgs>()?)));
    }
    let mut a = args(mac)?;
    match what {
        "sample" => {
            let obs = sample_options(&mut a)?;
            match a.len() {
                1 => Ok(Primitive::Sample {
                    name: inferred(mac, what, binding, "`sample!(\"name\", dist)`")?,
                    dist: a.remove(0),
                    obs,
                }),
                2 => Ok(Primitive::Sample {
                    name: name_of(a.remove(0)),
                    dist: a.remove(0),
                    obs,
                }),
                _ => Err(arity_error(
                    mac,
                    what,
                    "`sample!(dist)` or `sample!(name, dist)`, optionally followed by \
                     `obs = value`",
                )),
            }
        }
        "observe" => match a.len() {
            3 => Ok(Primitive::Observe {
                name: name_of(a.remove(0)),
                dist: a.remove(0),
                value: a.remove(0),
            }),
            _ => Err(arity_error(mac, what, "`observe!(name, dist, value)`")),
        },
        "param" => {
            let named = a.first().is_some_and(looks_like_name);
            match (a.len(), named) {
                (1, false) | (2, false) => Ok(Primitive::Param {
                    name: inferred(mac, what, binding, "`param!(\"name\", init)`")?,
                    init: a.remove(0),
                    constraint: a.pop(),
                }),
                (2, true) | (3, true) => Ok(Primitive::Param {
                    name: name_of(a.remove(0)),
                    init: a.remove(0),
                    constraint: a.pop(),
                }),
                _ => Err(arity_error(
                    mac,
                    what,
                    "`param!(init)`, `param!(init, constraint)`, `param!(\"name\", init)` or \
                     `param!(\"name\", init, constraint)`",
                )),
            }
        }
        "factor" => match a.len() {
            2 => Ok(Primitive::Factor {
                name: name_of(a.remove(0)),
                log_weight: a.remove(0),
            }),
            _ => Err(arity_error(mac, what, "`factor!(name, log_weight)`")),
        },
        "deterministic" => match a.len() {
            1 => Ok(Primitive::Deterministic {
                name: inferred(mac, what, binding, "`deterministic!(\"name\", value)`")?,
                value: a.remove(0),
            }),
            2 => Ok(Primitive::Deterministic {
                name: name_of(a.remove(0)),
                value: a.remove(0),
            }),
            _ => Err(arity_error(
                mac,
                what,
                "`deterministic!(value)` or `deterministic!(name, value)`",
            )),
        },
        "module" => match a.len() {
            2 => Ok(Primitive::Module {
                path: a.remove(0),
                build: a.remove(0),
            }),
            _ => Err(arity_error(
                mac,
                what,
                "`module!(\"path\", |vb| build(vb))`",
            )),
        },
        "input" => match a.len() {
            1 => Ok(Primitive::Input {
                name: inferred(mac, what, binding, "`input!(\"name\", data)`")?,
                data: a.remove(0),
            }),
            2 => Ok(Primitive::Input {
                name: name_of(a.remove(0)),
                data: a.remove(0),
            }),
            _ => Err(arity_error(
                mac,
                what,
                "`input!(data)` or `input!(name, data)`",
            )),
        },
        other => Err(syn::Error::new_spanned(
            mac,
            format!("`{other}!` is not a ppl primitive"),
        )),
    }
}

impl Parse for PlateArgs {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let usage = "expected `plate!(name, size [, subsample = n] [, dim = d], [|idx|] { ... })`";
        if input.is_empty() {
            return Err(input.error(format!("malformed `plate!`: {usage}")));
        }
        let name = name_of(input.parse()?);
        input
            .parse::<Token![,]>()
            .map_err(|e| syn::Error::new(e.span(), format!("malformed `plate!`: {usage}")))?;
        let size: Expr = input.parse()?;
        let (mut subsample, mut dim, mut indices) = (None, None, None);
        loop {
            input
                .parse::<Token![,]>()
                .map_err(|e| syn::Error::new(e.span(), format!("malformed `plate!`: {usage}")))?;
            if input.peek(Ident) && input.peek2(Token![=]) {
                let key: Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                let v: Expr = input.parse()?;
                match key.to_string().as_str() {
                    "subsample" => subsample = Some(v),
                    "dim" => dim = Some(v),
                    other => {
                        return Err(syn::Error::new(
                            key.span(),
                            format!("unknown `plate!` option `{other}` (use `subsample` or `dim`)"),
                        ))
                    }
                }
                continue;
            }
            if input.peek(Token![|]) {
                input.parse::<Token![|]>()?;
                indices = Some(input.parse::<Ident>()?);
                input.parse::<Token![|]>()?;
            }
            let body: Block = input
                .parse()
                .map_err(|e| syn::Error::new(e.span(), format!("malformed `plate!`: {usage}")))?;
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
            if !input.is_empty() {
                return Err(input.error("unexpected tokens after the `plate!` body"));
            }
            return Ok(PlateArgs {
                name,
                size,
                subsample,
                dim,
                indices,
                body,
            });
        }
    }
}
