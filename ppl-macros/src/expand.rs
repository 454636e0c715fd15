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
    /// The method (`map`, `for_each`, ...) or function (`from_fn`, ...) that calls the
    /// closure the site sits in once per element, if any.
    pub in_repeated_closure: Option<String>,
    /// The branches the site sits in, outermost first: `(branch point, arm)` for each
    /// enclosing `if`/`else` or `match`. Two sites are exclusive (at most one runs) when
    /// they sit in different arms of the same branch point.
    pub path: Vec<(usize, usize)>,
    /// A `sample!` site with `obs = ...`: latent only when the value is `None`.
    pub maybe_observed: bool,
}

impl SiteRecord {
    /// Whether at most one of `self` and `other` can run in one execution of the model.
    pub fn exclusive_with(&self, other: &SiteRecord) -> bool {
        self.path
            .iter()
            .zip(&other.path)
            .any(|((p, a), (q, b))| p == q && a != b)
    }
}

/// Walks a model body, replacing each primitive with its expansion.
pub struct Rewriter {
    ctx: Ident,
    pub sites: Vec<SiteRecord>,
    pub errors: Vec<syn::Error>,
    loop_depth: usize,
    plate_depth: usize,
    branch: Vec<(usize, usize)>,
    branch_points: usize,
    /// The innermost enclosing closure that runs once per element (`.map(|i| ...)`).
    repeated: Option<String>,
    /// The span of the primitive being expanded.
    prim_span: Span,
}

fn kind_str(p: &Primitive) -> &'static str {
    match p {
        Primitive::Sample { .. } => "sample",
        Primitive::Observe { .. } => "observe",
        Primitive::Param { .. } => "param",
        Primitive::Factor { .. } => "factor",
        Primitive::Deterministic { .. } => "deterministic",
        Primitive::Module { .. } => "module",
        Primitive::Input { .. } => "input",
        Primitive::Plate(_) => "plate",
    }
}

fn name_tokens(n: &SiteNameSrc) -> TokenStream {
    match n {
        SiteNameSrc::Literal(s, span) => {
            quote_spanned!(*span=> ::ppl::__private::SiteName::from_static(#s))
        }
        SiteNameSrc::Dynamic(e) => {
            let span = syn::spanned::Spanned::span(&**e);
            quote_spanned!(span=> ::ppl::__private::SiteName::from(#e))
        }
    }
}

/// `&(value)`, spanned on the user's `value` (a value of the wrong type is reported there).
fn by_ref(value: &Expr) -> TokenStream {
    let span = syn::spanned::Spanned::span(value);
    quote_spanned!(span=> &(#value))
}

impl Rewriter {
    /// A rewriter using `ctx` as the context.
    pub fn new(ctx: Ident) -> Self {
        Rewriter {
            ctx,
            sites: Vec::new(),
            errors: Vec::new(),
            loop_depth: 0,
            plate_depth: 0,
            branch: Vec::new(),
            branch_points: 0,
            repeated: None,
            prim_span: Span::call_site(),
        }
    }

    /// The `?` after a primitive's call, at the primitive: a function or closure that
    /// cannot take it (no `Result`, or an error type without `From<PplError>`) is reported
    /// on the primitive, with rustc's note on the signature.
    fn question(&self) -> TokenStream {
        quote_spanned!(self.prim_span=> ?)
    }

    /// The context's identifier, located at the primitive (same hygiene): the call
    /// expression `ctx.sample(..)?` then spans the primitive, so rustc reports errors of
    /// the whole call there instead of on the attribute.
    fn ctx_here(&self) -> Ident {
        let mut ctx = self.ctx.clone();
        ctx.set_span(self.ctx.span().located_at(self.prim_span));
        ctx
    }

    /// Walks the arms of a new branch point (`if`/`else`, `match`), one site path per arm.
    fn branch_point(&mut self) -> usize {
        self.branch_points += 1;
        self.branch_points - 1
    }

    fn in_arm(&mut self, point: usize, arm: usize, f: impl FnOnce(&mut Self)) {
        self.branch.push((point, arm));
        f(self);
        self.branch.pop();
    }

    /// Walks code that may or may not run (a match guard, which may also run for several
    /// arms; the right side of `&&`/`||`; a `let ... else` block): its own branch point with
    /// a single arm, so its sites are exclusive with nothing and are not certain to run.
    fn conditional(&mut self, f: impl FnOnce(&mut Self)) {
        let point = self.branch_point();
        self.in_arm(point, 0, f);
    }

    fn record(&mut self, kind: &'static str, name: &SiteNameSrc) {
        self.record_obs(kind, name, false);
    }

    fn record_obs(&mut self, kind: &'static str, name: &SiteNameSrc, maybe_observed: bool) {
        let name = match name {
            SiteNameSrc::Literal(s, span) => Some((s.clone(), *span)),
            SiteNameSrc::Dynamic(_) => None,
        };
        self.sites.push(SiteRecord {
            kind,
            name,
            in_loop: self.loop_depth > 0,
            in_repeated_closure: self.repeated.clone(),
            path: self.branch.clone(),
            maybe_observed,
        });
    }

    /// Parses and expands one primitive invocation (errors become a placeholder
    /// expression so the rest of the function still type-checks as far as possible).
    fn primitive(&mut self, mac: &Macro, what: &str, binding: Option<&Ident>) -> Expr {
        match parse_primitive(mac, what, binding) {
            Ok(p) => {
                let saved =
                    std::mem::replace(&mut self.prim_span, syn::spanned::Spanned::span(mac));
                let out = self.expand(p);
                self.prim_span = saved;
                out
            }
            Err(e) => {
                self.errors.push(e);
                syn::parse_quote!(::core::unimplemented!())
            }
        }
    }

    fn expand(&mut self, p: Primitive) -> Expr {
        let ctx = self.ctx_here();
        let kind = kind_str(&p);
        let q = self.question();
        match p {
            Primitive::Sample {
                name,
                dist,
                obs: None,
            } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.sample(#n, #dist)#q)
            }
            Primitive::Sample {
                name,
                dist,
                obs: Some(obs),
            } => {
                self.record_obs(kind, &name, true);
                let n = name_tokens(&name);
                syn::parse_quote!(#ctx.sample_with_obs(#n, #dist, #obs)#q)
            }
            Primitive::Observe { name, dist, value } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                let v = by_ref(&value);
                syn::parse_quote!(#ctx.observe(#n, #dist, #v)#q)
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
                    .unwrap_or_else(|| quote!(::ppl::__private::Constraint::Real));
                syn::parse_quote!(#ctx.param(
                    #n,
                    || -> ::ppl::__private::Result<::ppl::__private::Tensor> {
                        ::ppl::__private::ParamInit::into_init(#init)
                    },
                    #c,
                )#q)
            }
            Primitive::Factor { name, log_weight } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                let w = by_ref(&log_weight);
                syn::parse_quote!(#ctx.factor(#n, #w)#q)
            }
            Primitive::Deterministic { name, value } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                let v = by_ref(&value);
                syn::parse_quote!(#ctx.deterministic(#n, #v)#q)
            }
            Primitive::Module { path, build } => {
                syn::parse_quote!(#ctx.module(#path, #build)#q)
            }
            Primitive::Input { name, data } => {
                self.record(kind, &name);
                let n = name_tokens(&name);
                let d = by_ref(&data);
                syn::parse_quote!(#ctx.input(#n, #d)#q)
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
        let q = self.question();
        self.plate_depth += 1;
        self.visit_block_mut(&mut body);
        self.plate_depth -= 1;
        let ctx = &self.ctx_here();
        let n = name_tokens(&name);
        let guard = Ident::new("__ppl_plate", Span::mixed_site());
        let out = Ident::new("__ppl_out", Span::mixed_site());
        // `subsample = m` takes a `usize` or an `Option<usize>` (`None`: the whole plate).
        let sub = subsample
            .map(|s| quote!(::core::convert::Into::<::core::option::Option<usize>>::into(#s)))
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let dim = dim
            .map(|d| quote!(::core::option::Option::Some(#d)))
            .unwrap_or_else(|| quote!(::core::option::Option::None));
        let bind = indices.map(|i| quote!(let #i = #guard.indices()#q;));
        syn::parse_quote!({
            let #guard = #ctx.plate_enter(
                #n,
                #size,
                ::ppl::__private::PlateOpts {
                    subsample_size: #sub,
                    dim: #dim,
                    ..::core::default::Default::default()
                },
            )#q;
            #bind
            let #out = #body;
            #ctx.plate_exit(#guard)#q;
            #out
        })
    }
}

/// Methods that call a closure argument once per element, whatever the receiver
/// (iterator adaptors and consumers, slice and `Vec` methods).
const REPEATING_METHODS: &[&str] = &[
    "for_each",
    "try_for_each",
    "flat_map",
    "filter_map",
    "fold",
    "try_fold",
    "rfold",
    "try_rfold",
    "scan",
    "map_while",
    "take_while",
    "skip_while",
    "any",
    "all",
    "find",
    "find_map",
    "position",
    "rposition",
    "reduce",
    "max_by_key",
    "min_by_key",
    "max_by",
    "min_by",
    "partition",
    "sort_by",
    "sort_by_key",
    "sort_unstable_by",
    "sort_unstable_by_key",
    "retain",
    "retain_mut",
    "dedup_by",
    "dedup_by_key",
    "par_bridge",
];

/// Methods that call a closure once per element on an iterator or an array, but at most
/// once on an `Option` or a `Result`: repeating only when the receiver is seen to be an
/// iterator.
const ITERATOR_OR_ONCE_METHODS: &[&str] = &["map", "filter", "inspect"];

/// Methods whose result is an iterator (their receiver's type does not matter).
const ITERATOR_SOURCES: &[&str] = &[
    "iter",
    "iter_mut",
    "into_iter",
    "par_iter",
    "par_iter_mut",
    "into_par_iter",
    "enumerate",
    "zip",
    "chain",
    "rev",
    "skip",
    "take",
    "step_by",
    "chars",
    "char_indices",
    "bytes",
    "lines",
    "split_whitespace",
    "windows",
    "chunks",
    "chunks_exact",
    "keys",
    "values",
    "values_mut",
    "drain",
    "cycle",
    "peekable",
    "fuse",
    "copied",
    "cloned",
    "flatten",
    "flat_map",
    "filter_map",
    "scan",
    "map_while",
    "take_while",
    "skip_while",
];

/// Functions that call a closure argument repeatedly.
const REPEATING_FNS: &[&str] = &["from_fn", "repeat_with", "successors"];

/// Whether `receiver` is seen to be an iterator (or an array): a range, an array literal,
/// an iterator-making method, or `map`/`filter`/`inspect` on one.
fn is_iterator(receiver: &Expr) -> bool {
    match receiver {
        Expr::Paren(p) => is_iterator(&p.expr),
        Expr::Group(g) => is_iterator(&g.expr),
        Expr::Range(_) | Expr::Array(_) | Expr::Repeat(_) => true,
        Expr::MethodCall(mc) => {
            let m = mc.method.to_string();
            ITERATOR_SOURCES.contains(&m.as_str())
                || (ITERATOR_OR_ONCE_METHODS.contains(&m.as_str()) && is_iterator(&mc.receiver))
        }
        Expr::Call(c) => match &*c.func {
            Expr::Path(p) => p.path.segments.last().is_some_and(|s| {
                matches!(
                    s.ident.to_string().as_str(),
                    "repeat" | "repeat_with" | "from_fn" | "successors" | "zip"
                )
            }),
            _ => false,
        },
        _ => false,
    }
}

/// Whether method `method` on `receiver` calls its closure arguments once per element.
fn repeats_closure(method: &str, receiver: &Expr) -> bool {
    REPEATING_METHODS.contains(&method)
        || (ITERATOR_OR_ONCE_METHODS.contains(&method) && is_iterator(receiver))
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
            let primitive = match &*init.expr {
                Expr::Macro(m) => primitive_name(&m.mac).map(|what| (m.mac.clone(), what)),
                _ => None,
            };
            match primitive {
                Some((mac, what)) => *init.expr = self.primitive(&mac, &what, binding.as_ref()),
                None => self.visit_expr_mut(&mut init.expr),
            }
            // `let ... else { ... }`: the else block runs only when the pattern fails.
            if let Some((_, diverge)) = &mut init.diverge {
                self.conditional(|rw| rw.visit_expr_mut(diverge));
            }
        }
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
            Expr::If(i) => {
                // The condition always runs; then and else are exclusive arms.
                self.visit_expr_mut(&mut i.cond);
                let point = self.branch_point();
                self.in_arm(point, 0, |rw| rw.visit_block_mut(&mut i.then_branch));
                if let Some((_, e)) = &mut i.else_branch {
                    self.in_arm(point, 1, |rw| rw.visit_expr_mut(e));
                }
                return;
            }
            Expr::Match(m) => {
                self.visit_expr_mut(&mut m.expr);
                let point = self.branch_point();
                for (k, arm) in m.arms.iter_mut().enumerate() {
                    if let Some((_, guard)) = &mut arm.guard {
                        self.conditional(|rw| rw.visit_expr_mut(guard));
                    }
                    self.in_arm(point, k, |rw| rw.visit_expr_mut(&mut arm.body));
                }
                return;
            }
            Expr::Binary(b) if matches!(b.op, syn::BinOp::And(_) | syn::BinOp::Or(_)) => {
                self.visit_expr_mut(&mut b.left);
                self.conditional(|rw| rw.visit_expr_mut(&mut b.right));
                return;
            }
            Expr::Closure(_) => {
                // `return` inside a closure leaves the closure, not the plate.
                let saved = std::mem::replace(&mut self.plate_depth, 0);
                visit_mut::visit_expr_mut(self, expr);
                self.plate_depth = saved;
                return;
            }
            Expr::MethodCall(mc) => {
                let method = mc.method.to_string();
                let repeats = repeats_closure(&method, &mc.receiver);
                self.visit_expr_mut(&mut mc.receiver);
                for arg in mc.args.iter_mut() {
                    if repeats && matches!(arg, Expr::Closure(_)) {
                        let saved = self.repeated.replace(format!("`.{method}(...)`"));
                        self.visit_expr_mut(arg);
                        self.repeated = saved;
                    } else {
                        self.visit_expr_mut(arg);
                    }
                }
                return;
            }
            Expr::Call(c) => {
                let repeats = match &*c.func {
                    Expr::Path(p) => p
                        .path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .filter(|f| REPEATING_FNS.contains(&f.as_str())),
                    _ => None,
                };
                self.visit_expr_mut(&mut c.func);
                for arg in c.args.iter_mut() {
                    match (&repeats, &*arg) {
                        (Some(f), Expr::Closure(_)) => {
                            let saved = self.repeated.replace(format!("`{f}(...)`"));
                            self.visit_expr_mut(arg);
                            self.repeated = saved;
                        }
                        _ => self.visit_expr_mut(arg),
                    }
                }
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

/// The latents struct's name, by a rule that gives different functions different names:
///
/// * a snake-case name (lowercase letters and digits in non-empty words joined by single
///   underscores) becomes CamelCase, each word capitalised, except that a word starting
///   with a digit keeps its underscore: `my_model` → `MyModelLatents`, `model2d` →
///   `Model2dLatents`, `model_2d` → `Model_2dLatents`;
/// * any other name keeps its spelling and gets `__Latents`: `myModel` → `myModel__Latents`
///   (a CamelCase rule would give `my_model`'s name).
///
/// The two forms never meet (only the second has `__`), and each is reversible, so two functions of one module never get the same struct name.
pub fn latents_ident(fn_name: &Ident) -> Ident {
    let name = fn_name.to_string();
    let name = name.strip_prefix("r#").unwrap_or(&name);
    let words: Vec<&str> = name.split('_').collect();
    let snake = words.iter().all(|w| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    }) && words[0].starts_with(|c: char| c.is_ascii_lowercase());
    let base = if snake {
        words
            .iter()
            .map(|w| {
                let mut c = w.chars();
                match c.next() {
                    Some(f) if f.is_ascii_digit() => format!("_{w}"),
                    Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                    None => String::new(),
                }
            })
            .collect::<String>()
    } else {
        format!("{name}__")
    };
    format_ident!("{}Latents", base, span = fn_name.span())
}

/// One field of the latents struct.
struct LatentField {
    ident: Ident,
    name: String,
    /// Reached on every run as a latent: a `Tensor` field. Otherwise (only in branches,
    /// or `obs = ...`) an `Option<Tensor>`.
    certain: bool,
}

/// The typed struct of the model's latent sites: one field per `sample!` site name that is
/// literal, a Rust identifier, and not inside a loop. A site outside every `if`/`match`
/// (and without `obs = ...`) is a `Tensor` field; a name used only in branches, or a site
/// with `obs = ...`, is an `Option<Tensor>` field, `Some` when the traced run sampled it as
/// a latent.
pub fn latents_struct(func: &ItemFn, sites: &[SiteRecord]) -> TokenStream {
    let vis = &func.vis;
    let name = latents_ident(&func.sig.ident);
    let mut fields: Vec<LatentField> = Vec::new();
    for s in sites
        .iter()
        .filter(|s| s.kind == "sample" && !s.in_loop && s.in_repeated_closure.is_none())
    {
        if let Some((n, span)) = &s.name {
            if let Ok(mut ident) = syn::parse_str::<Ident>(n) {
                ident.set_span(*span);
                let certain = s.path.is_empty() && !s.maybe_observed;
                match fields.iter_mut().find(|f| f.ident == ident) {
                    Some(f) => f.certain = false,
                    None => fields.push(LatentField {
                        ident,
                        name: n.clone(),
                        certain,
                    }),
                }
            }
        }
    }
    let names: Vec<&String> = fields.iter().map(|f| &f.name).collect();
    let decls = fields.iter().map(|f| {
        let (id, n) = (&f.ident, &f.name);
        if f.certain {
            let doc = format!("Value of the latent site `{n}`.");
            quote!(#[doc = #doc] pub #id: ::ppl::__private::Tensor)
        } else {
            let doc = format!(
                "Value of the latent site `{n}` when the run sampled it as a latent; `None` \
                 when the run did not reach it or the site was observed."
            );
            quote!(#[doc = #doc] pub #id: ::core::option::Option<::ppl::__private::Tensor>)
        }
    });
    let reads = fields.iter().map(|f| {
        let (id, n) = (&f.ident, &f.name);
        if f.certain {
            quote!(#id: trace.value(#n)?)
        } else {
            quote!(#id: trace
                .get(#n)
                .filter(|site| site.is_latent())
                .map(|site| site.value.clone()))
        }
    });
    let inserts = fields.iter().map(|f| {
        let (id, n) = (&f.ident, &f.name);
        if f.certain {
            quote!(choices.insert(#n, self.#id.clone());)
        } else {
            quote! {
                if let ::core::option::Option::Some(value) = &self.#id {
                    choices.insert(#n, value.clone());
                }
            }
        }
    });
    let doc = format!(
        "The latent sites of the model `{}`, generated by `#[model]`.",
        func.sig.ident
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone)]
        #[allow(non_camel_case_types)]
        #vis struct #name {
            #( #decls, )*
        }

        impl #name {
            /// The names of the latent sites, in the order they appear in the model.
            pub const SITES: &'static [&'static str] = &[#(#names),*];

            /// Reads the latents from a trace of the model (an error names a missing site).
            pub fn from_trace(
                trace: &::ppl::__private::Trace,
            ) -> ::ppl::__private::Result<Self> {
                let _ = trace;
                ::core::result::Result::Ok(Self {
                    #( #reads, )*
                })
            }

            /// The latents as a choice map, for `Condition`, `Substitute`, `assess`, ...
            pub fn to_choices(&self) -> ::ppl::__private::ChoiceMap {
                #[allow(unused_mut)]
                let mut choices = ::ppl::__private::ChoiceMap::new();
                #( #inserts )*
                choices
            }
        }
    }
}
