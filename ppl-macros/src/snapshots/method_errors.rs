fn bad(&self, __ppl_ctx: &mut ::ppl::__private::Ctx, c: bool) -> Result<()> {
    if c {
        __ppl_ctx.sample(::ppl::__private::SiteName::from_static("a"), d)?;
    }
    __ppl_ctx.sample(::ppl::__private::SiteName::from_static("a"), d)?;
    match c {
        true => {
            __ppl_ctx.sample(::ppl::__private::SiteName::from_static("b"), d)?;
            __ppl_ctx.sample(::ppl::__private::SiteName::from_static("b"), d)?;
        }
        false => {}
    }
    Ok(())
}
::core::compile_error! {
    "duplicate site name `a`: an earlier site in this model already uses it and both can run in one execution (names must be unique within a run; only exclusive arms of an `if`/`else` or `match` may reuse a name)"
}
::core::compile_error! {
    "duplicate site name `b`: an earlier site in this model already uses it and both can run in one execution (names must be unique within a run; only exclusive arms of an `if`/`else` or `match` may reuse a name)"
}
::core::compile_error! {
    "`#[model(latents)]` cannot be used on a method: `BadLatents` cannot be declared inside an `impl` block. Read the sites from the trace (`trace.value(\"name\")`), or write the model as a free function that takes its owner as a parameter to get the struct"
}
