use ppl::prelude::*;

#[model(verbose)]
async fn no_result() {}

#[model]
struct NotAFunction;

fn main() {}
