//! Inference engines of the `ppl` library (SVI and the engines that follow; built from issue 4 on; empty for now).
