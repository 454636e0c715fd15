//! # ppl-macros
//!
//! The `#[model]` attribute of the `ppl` library. Use it through the facade crate
//! (`use ppl::prelude::*`), which also provides the primitives' documentation.
//!
//! The macro works in three phases:
//!
//! 1. **parse** (`parse.rs`): the function and each primitive invocation (`sample!`,
//!    `observe!`, `param!`, `plate!`, `factor!`, `deterministic!`, `module!`, `input!`)
//!    inside it;
//! 2. **validate** (`validate.rs`): the signature, duplicate literal site names (allowed
//!    only in exclusive arms of an `if`/`else` or `match`), literal names inside loops or
//!    inside closures that an iterator method calls once per element (`.map(|i| ...)` on
//!    an iterator, `for_each`, `repeat_with`, ...), `return` inside `plate!`;
//! 3. **expand** (`expand.rs`): each primitive becomes a call on the model's context
//!    (`ctx.sample(name, dist)?`), a `&mut Ctx` parameter is added in front of the
//!    function's own, after any `self` receiver (unless the function already takes
//!    `ctx: &mut Ctx` there), and, for free functions, a `<Name>Latents` struct is
//!    generated for the latent sites.
//!
//! Every path the expansion emits goes through `::ppl::__private` (or `::core`), so the
//! facade's public layout can change without touching the macro.
//!
//! Errors carry the span of the offending tokens; the function is still emitted, so IDEs
//! keep working while the errors are fixed.

mod expand;
mod parse;
mod validate;

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, ToTokens};
use syn::visit_mut::VisitMut;

/// Turns a function or a method into a generative model. See the `ppl` crate's
/// documentation for the primitives.
///
/// * **Functions**: `#[model] fn f(args) -> Result<T>` becomes
///   `fn f(ctx: &mut ppl::Ctx, args) -> Result<T>`, and a `<F>Latents` struct is
///   generated next to it: `f` in CamelCase for a snake-case name (`my_model` →
///   `MyModelLatents`), where a word starting with a digit keeps its underscore so that
///   names differing only by underscores stay apart (`model_2d` → `Model_2dLatents`,
///   `model2d` → `Model2dLatents`); any other name keeps its spelling and gets
///   `__Latents` (`myModel` → `myModel__Latents`).
/// * **Methods**: `#[model] fn f(&self, args)` (any `self` receiver, `&mut self` included)
///   in an `impl` block becomes `fn f(&self, ctx: &mut ppl::Ctx, args)`. No latents struct
///   is generated for a method, because an `impl` block cannot contain a struct;
///   `#[model(latents)]` on a method is a compile error saying so. Read the sites from the
///   trace (`trace.value("z")`), or write the model as a free function taking its owner
///   (`fn model(vae: &Vae, ...)`) to get the struct.
/// * **Associated functions without `self`** inside an `impl` need `#[model(no_latents)]`
///   (the macro cannot see that it is inside an `impl`; without it rustc reports that a
///   struct is not supported in `impl`s).
/// * An explicit `ctx: &mut Ctx` first parameter (after `self`) is used as the context
///   instead of adding one.
///
/// Arguments: `#[model]`, `#[model(latents)]` (the default for functions; an error on
/// methods), `#[model(no_latents)]` (no struct).
///
/// A literal site name inside a loop, or inside a closure that an iterator method calls
/// once per element (`(0..n).map(|i| ...)`, `.for_each(..)`, `iter::repeat_with(..)`, ...),
/// is a compile error suggesting a dynamic name (`("x", i)`, `format!("x_{i}")`).
/// Closures the macro cannot see being repeated fail at run time with a duplicate-site
/// error naming the site.
///
/// The latents struct has one field per literal `sample!` name outside loops: a `Tensor`
/// for a site that runs on every execution, an `Option<Tensor>` for a name used only in
/// branches of an `if`/`match` or a site with `obs = ...` (`Some` when the traced run
/// sampled it as a latent, so `from_trace` never fails on it); `from_trace`,
/// `to_choices` and `SITES` (the names) come with it.
#[proc_macro_attribute]
pub fn model(attr: TokenStream, item: TokenStream) -> TokenStream {
    model_impl(attr.into(), item.into()).into()
}

/// What `#[model(...)]` asked for.
#[derive(Default)]
struct Options {
    /// `latents` (`true`) or `no_latents` (`false`), and where it was written.
    latents: Option<(bool, Span)>,
}

fn parse_options(attr: TokenStream2, errors: &mut Vec<syn::Error>) -> Options {
    use syn::parse::Parser;
    let mut opts = Options::default();
    if attr.is_empty() {
        return opts;
    }
    let parser = syn::punctuated::Punctuated::<syn::Ident, syn::Token![,]>::parse_terminated;
    let idents = match parser.parse2(attr.clone()) {
        Ok(p) => p,
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                &attr,
                "`#[model]` takes no arguments other than `latents` or `no_latents`",
            ));
            return opts;
        }
    };
    for id in idents {
        let wanted = match id.to_string().as_str() {
            "latents" => true,
            "no_latents" => false,
            other => {
                errors.push(syn::Error::new(
                    id.span(),
                    format!(
                        "unknown `#[model]` argument `{other}` (expected `latents` or \
                         `no_latents`)"
                    ),
                ));
                continue;
            }
        };
        if opts.latents.is_some() {
            errors.push(syn::Error::new(
                id.span(),
                "`latents` / `no_latents` given more than once",
            ));
            continue;
        }
        opts.latents = Some((wanted, id.span()));
    }
    opts
}

/// The whole expansion, on `proc_macro2` tokens (so it can be unit-tested).
fn model_impl(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err =
                syn::Error::new_spanned(&item, "`#[model]` applies to a function or a method")
                    .to_compile_error();
            return quote!(#err #item);
        }
    };
    let mut errors = Vec::new();
    let opts = parse_options(attr, &mut errors);
    let is_method = func.sig.receiver().is_some();
    let (sig_errors, user_ctx) = validate::check_signature(&func);
    errors.extend(sig_errors);
    let ctx = user_ctx
        .clone()
        .unwrap_or_else(|| syn::Ident::new("__ppl_ctx", Span::mixed_site()));
    let mut rw = expand::Rewriter::new(ctx.clone());
    rw.visit_block_mut(&mut func.block);
    errors.append(&mut rw.errors);
    errors.extend(validate::check_sites(&rw.sites));
    if user_ctx.is_none() {
        let at = usize::from(is_method);
        func.sig
            .inputs
            .insert(at, syn::parse_quote!(#ctx: &mut ::ppl::__private::Ctx));
    }
    let latents = match (is_method, opts.latents) {
        (true, Some((true, span))) => {
            errors.push(syn::Error::new(
                span,
                format!(
                    "`#[model(latents)]` cannot be used on a method: `{}` cannot be declared \
                     inside an `impl` block. Read the sites from the trace \
                     (`trace.value(\"name\")`), or write the model as a free function that \
                     takes its owner as a parameter to get the struct",
                    expand::latents_ident(&func.sig.ident)
                ),
            ));
            None
        }
        (true, _) | (false, Some((false, _))) => None,
        (false, _) => Some(expand::latents_struct(&func, &rw.sites)),
    };
    let errs = errors.iter().map(syn::Error::to_compile_error);
    let mut out = func.into_token_stream();
    out.extend(latents);
    out.extend(errs);
    out
}

#[cfg(test)]
mod tests;
