//! Expansion snapshots: the exact code `#[model]` generates for representative inputs.
//! Update with `UPDATE_EXPECT=1 cargo test -p ppl-macros` and review the diff.

use super::model_impl;
use expect_test::{expect_file, ExpectFile};
use quote::quote;

fn check(attr: proc_macro2::TokenStream, item: proc_macro2::TokenStream, want: ExpectFile) {
    let out = model_impl(attr, item);
    let file: syn::File = syn::parse2(out).expect("the expansion parses as a file");
    want.assert_eq(&prettyplease::unparse(&file));
}

#[test]
fn vae_with_plate_and_inferred_names() {
    check(
        quote!(),
        quote! {
            pub fn vae(x: &Tensor, decoder: &Decoder) -> Result<()> {
                let n = x.dim(0)?;
                plate!("data", n, {
                    let z = sample!(Normal::standard(&[n, 8], DType::F32, x.device())?.to_event(1)?);
                    observe!("x", Bernoulli::from_logits(&decoder.forward(&z)?)?.to_event(1)?, x);
                });
                Ok(())
            }
        },
        expect_file!["snapshots/vae.rs"],
    );
}

#[test]
fn params_factor_deterministic_dynamic_names_and_user_ctx() {
    check(
        quote!(),
        quote! {
            fn energy(ctx: &mut Ctx, x: &Tensor) -> Result<Tensor> {
                let w = param!(Tensor::zeros(3, DType::F32, x.device()), Constraint::Positive);
                plate!("data", x.dim(0)?, subsample = 16, |idx| {
                    factor!("e", x.index_select(&idx, 0)?.matmul(&w)?.neg()?);
                });
                for i in 0..3 {
                    sample!(("h", i), Normal::new(&w, &w)?);
                }
                let total = deterministic!(w.sum_all()?);
                Ok(total)
            }
        },
        expect_file!["snapshots/energy.rs"],
    );
}

#[test]
fn errors_still_emit_the_function() {
    check(
        quote!(),
        quote! {
            fn broken() -> Result<()> {
                sample!(d);
                sample!("a", d);
                sample!("a", d);
                Ok(())
            }
        },
        expect_file!["snapshots/errors.rs"],
    );
}

#[test]
fn method_with_receiver_gets_ctx_after_self_and_no_latents_struct() {
    check(
        quote!(),
        quote! {
            fn model(&self, x: &Tensor, batch: Option<usize>) -> Result<()> {
                plate!("data", x.dim(0)?, subsample = batch, |idx| {
                    let xb = x.index_select(&idx, 0)?;
                    let z = sample!(self.prior(xb.dim(0)?)?);
                    observe!("obs", self.likelihood(&z)?, &xb);
                });
                Ok(())
            }
        },
        expect_file!["snapshots/method.rs"],
    );
}

#[test]
fn mut_self_method_with_explicit_ctx() {
    check(
        quote!(),
        quote! {
            pub fn step(&mut self, ctx: &mut Ctx) -> Result<Tensor> {
                self.calls += 1;
                let z = sample!(self.prior()?);
                Ok(z)
            }
        },
        expect_file!["snapshots/method_mut_ctx.rs"],
    );
}

#[test]
fn exclusive_branches_obs_and_input() {
    check(
        quote!(),
        quote! {
            fn branchy(data: &Tensor, y: Option<&Tensor>, k: u8, flag: bool) -> Result<Tensor> {
                let Some(q) = flag.then_some(0) else {
                    sample!("q", d4);
                    return Ok(data.clone());
                };
                let x = input!(data);
                input!(("aux", 0), data);
                let z = if x.dim(0)? > 2 {
                    sample!("z", Normal::new(&x, &x)?)
                } else {
                    sample!("z", Laplace::new(&x, &x)?)
                };
                let w = match k {
                    0 => sample!("w", d0),
                    1 if sample!("g", d1).dims().is_empty() => observe!("w", d1, &z),
                    2 if flag && sample!("h", d3).dims().is_empty() => sample!("w", d2),
                    _ => sample!("w", d2),
                };
                let out = sample!("y", Normal::new(&w, &z)?, obs = y);
                Ok(out)
            }
        },
        expect_file!["snapshots/branchy.rs"],
    );
}

#[test]
fn latents_on_a_method_and_sequential_duplicates_are_errors() {
    check(
        quote!(latents),
        quote! {
            fn bad(&self, c: bool) -> Result<()> {
                if c {
                    sample!("a", d);
                }
                sample!("a", d);
                match c {
                    true => {
                        sample!("b", d);
                        sample!("b", d);
                    }
                    false => {}
                }
                Ok(())
            }
        },
        expect_file!["snapshots/method_errors.rs"],
    );
}

#[test]
fn no_latents_on_a_free_function() {
    check(
        quote!(no_latents),
        quote! {
            fn assoc(x: &Tensor) -> Result<Tensor> {
                let z = sample!(Normal::new(x, x)?);
                Ok(z)
            }
        },
        expect_file!["snapshots/no_latents.rs"],
    );
}

#[test]
fn latents_names_differ_for_names_that_differ_only_by_underscores() {
    let name = |f: &str| {
        crate::expand::latents_ident(&syn::Ident::new(f, proc_macro2::Span::call_site()))
            .to_string()
    };
    assert_eq!(name("my_model"), "MyModelLatents");
    assert_eq!(name("model2d"), "Model2dLatents");
    assert_eq!(name("model_2d"), "Model_2dLatents");
    assert_eq!(name("model_2_d"), "Model_2DLatents");
    assert_eq!(name("myModel"), "myModel__Latents");
    assert_eq!(name("my__model"), "my__model__Latents");
    assert_eq!(name("_model"), "_model__Latents");
    let all = [
        "my_model",
        "mymodel",
        "my_mo_del",
        "mymo_del",
        "model2d",
        "model_2d",
        "model_2_d",
        "model_2d_",
        "model__2d",
        "myModel",
        "MyModel",
        "my__model",
        "_my_model",
        "my_model_",
        "a_1_2",
        "a_12",
        "a1_2",
        "a12",
        "a_1b",
        "a1b",
        "a_1_b",
    ];
    let mut names: Vec<String> = all.iter().map(|f| name(f)).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all.len(), "{names:?}");
}
