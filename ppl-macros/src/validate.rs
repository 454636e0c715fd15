//! Phase 2: checks on the whole model that no single primitive can make.

use crate::expand::SiteRecord;
use syn::{FnArg, ItemFn, Type};

/// Duplicate literal site names, and literal names inside loops (they would repeat at run
/// time). Params may repeat (the same parameter used twice).
pub fn check_sites(sites: &[SiteRecord]) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in sites.iter().filter(|s| s.kind != "param") {
        let Some((name, span)) = &s.name else {
            continue;
        };
        if seen.contains(&name.as_str()) {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "duplicate site name `{name}`: an earlier site in this model already uses \
                     it (names must be unique within a run)"
                ),
            ));
        } else {
            seen.push(name);
        }
        if s.in_loop {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "site `{name}` is inside a loop, so its name would repeat at run time; use a \
                     dynamic name such as `(\"{name}\", i)`"
                ),
            ));
        }
    }
    errors
}

/// The model's signature: not async, not const; returns the ctx parameter if the user
/// declared one (`ctx: &mut Ctx` first).
pub fn check_signature(func: &ItemFn) -> (Vec<syn::Error>, Option<syn::Ident>) {
    let mut errors = Vec::new();
    if let Some(a) = &func.sig.asyncness {
        errors.push(syn::Error::new_spanned(a, "a `#[model]` cannot be `async`"));
    }
    if let syn::ReturnType::Default = func.sig.output {
        errors.push(syn::Error::new_spanned(
            &func.sig,
            "a `#[model]` must return a `Result` (primitives use `?` to report site errors)",
        ));
    }
    let ctx = func.sig.inputs.first().and_then(|arg| match arg {
        FnArg::Typed(pt) => match (&*pt.pat, &*pt.ty) {
            (syn::Pat::Ident(id), Type::Reference(r)) if r.mutability.is_some() => match &*r.elem {
                Type::Path(p) if p.path.segments.last().is_some_and(|s| s.ident == "Ctx") => {
                    Some(id.ident.clone())
                }
                _ => None,
            },
            _ => None,
        },
        FnArg::Receiver(_) => None,
    });
    (errors, ctx)
}
