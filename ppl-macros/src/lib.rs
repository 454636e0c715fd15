//! The `#[model]` attribute macro of the `ppl` library (built in issue 3; empty for now).
