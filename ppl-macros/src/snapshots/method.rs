fn model(
    &self,
    __ppl_ctx: &mut ::ppl::__private::Ctx,
    x: &Tensor,
    batch: Option<usize>,
) -> Result<()> {
    {
        let __ppl_plate = __ppl_ctx
            .plate_enter(
                ::ppl::__private::SiteName::from_static("data"),
                x.dim(0)?,
                ::ppl::__private::PlateOpts {
                    subsample_size: ::core::convert::Into::<
                        ::core::option::Option<usize>,
                    >::into(batch),
                    dim: ::core::option::Option::None,
                    ..::core::default::Default::default()
                },
            )?;
        let idx = __ppl_plate.indices()?;
        let __ppl_out = {
            let xb = x.index_select(&idx, 0)?;
            let z = __ppl_ctx
                .sample(
                    ::ppl::__private::SiteName::from_static("z"),
                    self.prior(xb.dim(0)?)?,
                )?;
            __ppl_ctx
                .observe(
                    ::ppl::__private::SiteName::from_static("obs"),
                    self.likelihood(&z)?,
                    &(&xb),
                )?;
        };
        __ppl_ctx.plate_exit(__ppl_plate)?;
        __ppl_out
    };
    Ok(())
}
