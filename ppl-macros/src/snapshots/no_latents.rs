fn assoc(__ppl_ctx: &mut ::ppl::__private::Ctx, x: &Tensor) -> Result<Tensor> {
    let z = __ppl_ctx
        .sample(::ppl::__private::SiteName::from_static("z"), Normal::new(x, x)?)?;
    Ok(z)
}
