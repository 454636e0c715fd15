//! Pictures people would rather look at than numbers: image grids (samples,
//! reconstructions) as PNG, with plotters' bitmap backend (no font or system library
//! needed).

use candle_core::{DType, Tensor};
use plotters::prelude::*;
use ppl_core::{PplError, Result};
use std::path::Path;

/// Writes `images` (`[N, H, W]`, values in `[0, 1]`, clamped) as a PNG grid with `cols`
/// columns, each pixel drawn as a `zoom × zoom` grey square (0 black, 1 white), with a
/// one-pixel grey gap between images.
pub fn image_grid(path: impl AsRef<Path>, images: &Tensor, cols: usize, zoom: u32) -> Result<()> {
    let path = path.as_ref();
    let err = |e: String| PplError::File {
        path: path.display().to_string(),
        reason: e,
    };
    let dims = images.dims();
    if dims.len() != 3 || cols == 0 || zoom == 0 || dims[0] == 0 {
        return Err(PplError::InvalidArgument {
            context: "image_grid",
            message: format!(
                "expected images [N, H, W] with N > 0, cols > 0 and zoom > 0, got shape {dims:?}, \
                 cols {cols}, zoom {zoom}"
            ),
        });
    }
    let (n, h, w) = (dims[0], dims[1], dims[2]);
    let rows = n.div_ceil(cols);
    let px: Vec<f64> = images
        .to_dtype(DType::F64)?
        .clamp(0.0, 1.0)?
        .flatten_all()?
        .to_vec1()?;
    let cell = |k: usize| (k as u32) * zoom;
    let (gw, gh) = (cell(cols * (w + 1) + 1), cell(rows * (h + 1) + 1));
    let root = BitMapBackend::new(path, (gw, gh)).into_drawing_area();
    root.fill(&RGBColor(128, 128, 128))
        .map_err(|e| err(e.to_string()))?;
    for i in 0..n {
        let (r, c) = (i / cols, i % cols);
        for y in 0..h {
            for x in 0..w {
                let v = (px[(i * h + y) * w + x] * 255.0).round() as u8;
                let x0 = cell(c * (w + 1) + 1 + x) as i32;
                let y0 = cell(r * (h + 1) + 1 + y) as i32;
                let z = zoom as i32;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + z, y0 + z)],
                    RGBColor(v, v, v).filled(),
                ))
                .map_err(|e| err(e.to_string()))?;
            }
        }
    }
    root.present().map_err(|e| err(e.to_string()))
}
