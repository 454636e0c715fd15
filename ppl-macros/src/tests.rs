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
