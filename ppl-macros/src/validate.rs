//! Phase 2: checks on the whole model that no single primitive can make.

use crate::expand::SiteRecord;
use syn::{FnArg, ItemFn, Type};

/// Duplicate literal site names, and literal names inside loops or inside closures that
/// an iterator method calls once per element (they would repeat at run time). Params may repeat (the same parameter used twice). Two sites may share a name
/// when they sit in exclusive arms of one `if`/`else` or `match` (at most one runs).
pub fn check_sites(sites: &[SiteRecord]) -> Vec<syn::Error> {
    let mut errors = Vec::new();
    let named = |s: &SiteRecord| s.kind != "param" && s.name.is_some();
    for (i, s) in sites.iter().enumerate().filter(|(_, s)| named(s)) {
        let Some((name, span)) = &s.name else {
            continue;
        };
        let clash = sites[..i]
            .iter()
            .filter(|p| named(p))
            .any(|p| p.name.as_ref().is_some_and(|(n, _)| n == name) && !p.exclusive_with(s));
        if clash {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "duplicate site name `{name}`: an earlier site in this model already uses \
                     it and both can run in one execution (names must be unique within a run; \
                     only exclusive arms of an `if`/`else` or `match` may reuse a name)"
                ),
            ));
        }
        if let Some(caller) = &s.in_repeated_closure {
            errors.push(syn::Error::new(
                *span,
                format!(
                    "site `{name}` is inside a closure that {caller} calls once per element, \
                     so its name would repeat at run time; use a dynamic name built from the \
                     element or its index, such as `(\"{name}\", i)` or \
                     `format!(\"{name}_{{i}}\")` (e.g. with `.enumerate()`)"
                ),
            ));
        } else if s.in_loop {
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

/// The model's signature: not async, returns something; returns the ctx parameter if the
/// user declared one (`ctx: &mut Ctx` first after any `self` receiver).
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
    let first = func
        .sig
        .inputs
        .iter()
        .find(|arg| !matches!(arg, FnArg::Receiver(_)));
    let ctx = first.and_then(|arg| match arg {
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
