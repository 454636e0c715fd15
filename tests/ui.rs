//! Compile-time behaviour of `#[model]`: programs that must compile (and run), and programs
//! that must fail with the exact diagnostics in `tests/ui/fail/*.stderr`.
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite cargo test --test ui` and review
//! the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
