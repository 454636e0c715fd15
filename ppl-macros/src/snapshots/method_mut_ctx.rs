pub fn step(&mut self, ctx: &mut Ctx) -> Result<Tensor> {
    self.calls += 1;
    let z = ctx.sample(::ppl::__private::SiteName::from_static("z"), self.prior()?)?;
    Ok(z)
}
