//! # ppl-macros
//!
//! The `#[model]` attribute of the `ppl` library. Use it through the facade crate
//! (`use ppl::prelude::*`), which also provides the primitives' documentation.
//!
//! The macro works in three phases:
//!
//! 1. **parse** (`parse.rs`): the function and each primitive invocation (`sample!`,
//!    `observe!`, `param!`, `plate!`, `factor!`, `deterministic!`, `module!`) inside it;
//! 2. **validate** (`validate.rs`): the signature, duplicate literal site names, literal
//!    names inside loops, `return` inside `plate!`;
//! 3. **expand** (`expand.rs`): each primitive becomes a call on the model's context
//!    (`ctx.sample(name, dist)?`), a `&mut ppl::Ctx` parameter is added in front of the
//!    function's own (unless the function already takes `ctx: &mut Ctx` first), and a
//!    `<Name>Latents` struct is generated for the latent sites.
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

/// Turns a function into a generative model. See the `ppl` crate's documentation.
#[proc_macro_attribute]
pub fn model(attr: TokenStream, item: TokenStream) -> TokenStream {
    model_impl(attr.into(), item.into()).into()
}

/// The whole expansion, on `proc_macro2` tokens (so it can be unit-tested).
fn model_impl(attr: TokenStream2, item: TokenStream2) -> TokenStream2 {
    let mut func: syn::ItemFn = match syn::parse2(item.clone()) {
        Ok(f) => f,
        Err(_) => {
            let err = syn::Error::new_spanned(&item, "`#[model]` applies to a function")
                .to_compile_error();
            return quote!(#err #item);
        }
    };
    let mut errors = Vec::new();
    if !attr.is_empty() {
        errors.push(syn::Error::new_spanned(
            &attr,
            "`#[model]` takes no arguments",
        ));
    }
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
        func.sig
            .inputs
            .insert(0, syn::parse_quote!(#ctx: &mut ::ppl::Ctx));
    }
    let latents = expand::latents_struct(&func, &rw.sites);
    let errs = errors.iter().map(syn::Error::to_compile_error);
    let mut out = func.into_token_stream();
    out.extend(latents);
    out.extend(errs);
    out
}

#[cfg(test)]
mod tests;
