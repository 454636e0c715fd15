//! Phase 3 (and the walk that feeds phase 2): rewrite the primitives of a model body into
//! calls on the context, and generate the latents struct.

use crate::parse::{parse_primitive, primitive_name, PlateArgs, Primitive, SiteNameSrc};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Ident, ItemFn, Local, Macro, Pat, Stmt};

/// What the walk learned about one site, for validation and the latents struct.
pub struct SiteRecord {
    /// `sample`, `observe`, ...
    pub kind: &'static str,
    /// The literal (or inferred) name and where it was written; `None` when dynamic.
    pub name: Option<(String, Span)>,
    /// Whether the site sits inside a `for`/`while`/`loop` body.
    pub in_loop: bool,
}

/// Walks a model body, replacing each primitive with its expansion.
pub struct Rewriter {
    ctx: Ident,
    pub sites: Vec<SiteRecord>,
    pub errors: Vec<syn::Error>,
    loop_depth: usize,
    plate_depth: usize,
}

fn kind_str(p: &Primitive) -> &'static str {
    match p {
        Primitive::Sample { .. } => "sample",
        Primitive::Observe { .. } => "observe",
        Primitive::Param { .. } => "param",
        Primitive::Factor { .. } => "factor",
        Primitive::Deterministic { .. } => "deterministic",
        Primitive::Module { .. } => "module",
        Primitive::Plate(_) => "plate",
    }
}

fn name_tokens(n: &SiteNameSrc) -> TokenStream {
    match n {
        SiteNameSrc::Literal(s, span) => {
            quote_spanned!(*span=> ::ppl::SiteName::from_static(#s))
        }
        SiteNameSrc::Dynamic(e) => quote!(::ppl::SiteName::from(#e)),
    }
}

impl Rewriter {
    pub fn new(ctx: Ident) -> Self {
        Rewriter {
            ctx,
            sites: Vec::new(),
            errors: Vec::new(),
            loop_depth: 0,
            plate_depth: 0,
        }
    }

    fn record(&mut self, kind: &'static str, name: &SiteNameSrc) {
        let name = match name {
            SiteNameSrc::Literal(s, span) => Some((s.clone(), *span)),
            SiteNameSrc::Dynamic(_) => None,
        };
        self.sites.push(SiteRecord {
            kind,
            name,
            in_loop: self.loop_depth > 0,
        });
    }

    /// Parses and expands one primitive invocation (errors become a placeholder
    /// expression so the rest of the function still type-checks as far as possible).
    fn primitive(&mut self, mac: &Macro, what: &str, binding: Option<&Ident>) -> Expr {
        match parse_primitive(mac, what, binding) {
            Ok(p) => self.expand(p),
            Err(e) => {
                self.errors.push(e);
                syn::parse_quote!(::core::unimplemented!())
            }
        }
    }

    fn expand(&mut self, p: Primitive) -> Expr {
        let ctx = self.ctx.clone();
        let kind = kind_str(&p);
        match p {
            Primitive::Sample { name, dist } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.sample(#n, #dist)?)
            }
            Primitive::Observe { name, dist, value } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.observe(#n, #dist, &(#value))?)
            }
            Primitive::Param {
                name,
                init,
                constraint,
            } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                let c = constraint
                    .map(|c| quote!(#c))
                    .unwrap_or_else(|| quote!(::ppl::Constraint::Real));
                syn::parse_quote!(#ctx.param(
                    #n,
                    || -> ::ppl::Result<::ppl::__private::Tensor> {
                        ::ppl::__private::ParamInit::into_init(#init)
                    },
                    #c,
                )?)
            }
            Primitive::Factor { name, log_weight } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.factor(#n, &(#log_weight))?)
            }
            Primitive::Deterministic { name, value } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.deterministic(#n, &(#value))?)
            }
            Primitive::Module { path, build } => {
                syn::parse_quote!(#ctx.module(#path, #build)?)
            }
            Primitive::Plate(args) => self.plate(*args),
        }
    }

    fn plate(&mut self, args: PlateArgs) -> Expr {
        let PlateArgs {
            name,
            size,
            subsample,
            dim,
            indices,
            mut body,
        } = args;
        self.plate_depth += 1;
        self.visit_block_mut(&mut body);
        self.plate_depth -= 1;
        let ctx = &self.ctx;
        let n = name_tokens(&name);
        let guard = Ident::new("__ppl_plate", Span::mixed_site());
        let out = Ident::new("__ppl_out", Span::mixed_site());
        let sub = subsample
            .map(|s| quote!(::core::option::Option::Some(#s)))
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let dim = dim
            .map(|d| quote!(::core::option::Option::Some(#d)))
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let bind = indices.map(|i| quote!(let #i = #guard.indices()?;));
        syn::parse_quote!({
            let #guard = #ctx.plate_enter(
                #n,
                #size,
                ::ppl::PlateOpts {
                    subsample_size: #sub,
                    dim: #dim,
                    ..::core::default::Default::default()
                },
            )?;
            #bind
            let #out = #body;
            #ctx.plate_exit(#guard)?;
            #out
        })
    }
}

fn binding_ident(pat: &Pat) -> Option<&Ident> {
    match pat {
        Pat::Ident(p) => Some(&p.ident),
        Pat::Type(t) => binding_ident(&t.pat),
        _ => None,
    }
}

impl VisitMut for Rewriter {
    fn visit_local_mut(&mut self, local: &mut Local) {
        let binding = binding_ident(&local.pat).cloned();
        if let Some(init) = &mut local.init {
            if let Expr::Macro(m) = &*init.expr {
                if let Some(what) = primitive_name(&m.mac) {
                    let mac = m.mac.clone();
                    *init.expr = self.primitive(&mac, &what, binding.as_ref());
                    if let Some((_, diverge)) = &mut init.diverge {
                        self.visit_expr_mut(diverge);
                    }
                    return;
                }
            }
        }
        visit_mut::visit_local_mut(self, local);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        if let Stmt::Macro(m) = stmt {
            if let Some(what) = primitive_name(&m.mac) {
                let e = self.primitive(&m.mac.clone(), &what, None);
                *stmt = Stmt::Expr(e, m.semi_token);
                return;
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Macro(m) => {
                if let Some(what) = primitive_name(&m.mac) {
                    let mac = m.mac.clone();
                    *expr = self.primitive(&mac, &what, None);
                    return;
                }
            }
            Expr::ForLoop(_) | Expr::While(_) | Expr::Loop(_) => {
                self.loop_depth += 1;
                visit_mut::visit_expr_mut(self, expr);
                self.loop_depth -= 1;
                return;
            }
            Expr::Closure(_) => {
                // `return` inside a closure leaves the closure, not the plate.
                let saved = std::mem::replace(&mut self.plate_depth, 0);
                visit_mut::visit_expr_mut(self, expr);
                self.plate_depth = saved;
                return;
            }
            Expr::Return(r) if self.plate_depth > 0 => {
                self.errors.push(syn::Error::new_spanned(
                    r.return_token,
                    "`return` inside `plate!` would leave the plate active for the rest of \
                     the run; compute a value and return after the `plate!` instead",
                ));
            }
            _ => {}
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {
        // Nested items (fns, impls) are not part of the model: leave them alone.
    }
}

/// `my_model` → `MyModelLatents`.
pub fn latents_ident(fn_name: &Ident) -> Ident {
    let camel: String = fn_name
        .to_string()
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect();
    format_ident!("{}Latents", camel, span = fn_name.span())
}

/// The typed struct of the model's latent sites: one `Tensor` field per `sample!` site
/// with a literal name that is a Rust identifier and is not inside a loop.
pub fn latents_struct(func: &ItemFn, sites: &[SiteRecord]) -> TokenStream {
    let vis = &func.vis;
    let name = latents_ident(&func.sig.ident);
    let mut fields: Vec<(Ident, String)> = Vec::new();
    for s in sites.iter().filter(|s| s.kind == "sample" && !s.in_loop) {
        if let Some((n, span)) = &s.name {
            if let Ok(mut id) = syn::parse_str::<Ident>(n) {
                id.set_span(*span);
                if !fields.iter().any(|(f, _)| f == &id) {
                    fields.push((id, n.clone()));
                }
            }
        }
    }
    let idents: Vec<&Ident> = fields.iter().map(|(i, _)| i).collect();
    let names: Vec<&String> = fields.iter().map(|(_, n)| n).collect();
    let field_docs: Vec<String> = names
        .iter()
        .map(|n| format!("Value of the latent site `{n}`."))
        .collect();
    let doc = format!(
        "The latent sites of the model `{}`, generated by `#[model]`.",
        func.sig.ident
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #vis struct #name {
            #(
                #[doc = #field_docs]
                pub #idents: ::ppl::__private::Tensor,
            )*
        }

        impl #name {
            /// The names of the latent sites, in the order they appear in the model.
            pub const SITES: &'static [&'static str] = &[#(#names),*];

            /// Reads the latents from a trace of the model (an error names a missing site).
            pub fn from_trace(trace: &::ppl::Trace) -> ::ppl::Result<Self> {
                let _ = trace;
                ::core::result::Result::Ok(Self {
                    #( #idents: trace.value(#names)?, )*
                })
            }

            /// The latents as a choice map, for `Condition`, `Substitute`, `assess`, ...
            pub fn to_choices(&self) -> ::ppl::ChoiceMap {
                ::ppl::ChoiceMap::new()
                    #( .with(#names, self.#idents.clone()) )*
            }
        }
    }
}
