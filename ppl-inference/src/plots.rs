//! Pictures people would rather look at than numbers: line charts (loss curves and engine
//! metrics, stacked in panels; a [`Series`] may also be a scatter) as PNG or SVG, heat maps
//! ([`heat_map`]: values on a 2-D grid in the viridis colours, with a colour bar and curves
//! on top) as PNG or SVG, and image grids (samples, reconstructions) as PNG.
//!
//! # Text without system libraries
//!
//! plotters' bitmap backend draws no text unless it is given a font, and its usual way to
//! find one (`ttf` feature: font-kit) needs fontconfig and freetype at build and run time,
//! which CI machines and a fresh Debian with only gcc and rustup do not have. This module
//! uses plotters' `ab_glyph` feature instead (pure Rust rasteriser) and registers **Noto
//! Sans Regular**, embedded in the binary by the `ttf-noto-sans` crate (crate MIT/Apache-2.0,
//! font Apache-2.0, no dependencies, 203 KB of font data). It was chosen over the other
//! font crates because it embeds only the one style asked for (`dejavu` ships a 5.5 MB
//! crate; egui's default fonts need a newer Rust and carry emoji fonts too) and Noto Sans
//! covers Latin, Greek and Cyrillic, enough for labels such as `σ` or `α`.
//!
//! The font is registered under the family name `sans-serif`, and every chart names that
//! family, so PNG and SVG go through the same drawing code, and plotters measures the text
//! for its layout with the embedded font in both. In an SVG the text is written as
//! `<text font-family="sans-serif">` and the viewer renders it. In a PNG the glyphs are
//! rasterised from the embedded font by a thin wrapper around plotters' bitmap backend
//! that overrides only `draw_text` (ab_glyph, about 80 lines), because plotters 0.3.7's own
//! `ab_glyph` drawing ignores each glyph's side bearing and leaves gaps after narrow
//! letters ("movi ng"). Call
//! [`ensure_font`] before drawing text with plotters elsewhere in the process: with the
//! `ab_glyph` feature, text in a family that no one registered is an error.
//!
//! # The y range of a panel
//!
//! A loss curve starts orders of magnitude above where it ends, so a y axis spanning all
//! values shows a spike and a flat line. [`YRange::Robust`] (the default) instead fits the
//! bulk of the run: it takes the 1st and 99th percentiles of the points after the first
//! 10% of the x range, pads them by 10% of their spread, and extends a side to the extreme
//! value only when that costs at most another 25% of the spread. Values beyond the range
//! are drawn **at its edge** (a curve running along the top of the panel, not hidden), and
//! the panel title says how many were clipped. A log or symlog axis was rejected: losses
//! are often negative (a negative ELBO of continuous data), metrics such as solver
//! iterations are not losses at all, and a log axis compresses exactly the late, small
//! improvements the plot is for. Panels with fewer than 20 finite points use
//! [`YRange::Full`]. See [`y_limits`].

use ab_glyph::{point, Font as _, FontRef, PxScale, ScaleFont as _};
use candle_core::{DType, Tensor};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind,
};
use ppl_core::{PplError, Result};
use std::path::Path;
use std::sync::OnceLock;

/// The font family every chart uses; [`ensure_font`] registers the embedded font under it.
pub const FONT_FAMILY: &str = "sans-serif";

/// Height of the band above the panels (or the image grid) that holds the title, in pixels.
pub const TITLE_BAND: u32 = 40;

const TITLE_SIZE: f64 = 24.0;
const CAPTION_SIZE: f64 = 18.0;
const DESC_SIZE: f64 = 16.0;
const TICK_SIZE: f64 = 14.0;

/// Colours given to series without their own, in order (matplotlib's `tab10`).
const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// Registers the embedded Noto Sans font under [`FONT_FAMILY`] (once per process; later
/// calls are free). The chart functions call it themselves.
pub fn ensure_font() -> Result<()> {
    noto().map(|_| ())
}

/// The embedded font, parsed once, and registered with plotters on the way.
fn noto() -> Result<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| {
        let ours = FontRef::try_from_slice(ttf_noto_sans::REGULAR).ok()?;
        register_font(FONT_FAMILY, FontStyle::Normal, ttf_noto_sans::REGULAR).ok()?;
        Some(ours)
    })
    .as_ref()
    .ok_or_else(|| {
        PplError::config(
            "plots::ensure_font",
            "the embedded Noto Sans font could not be parsed",
        )
    })
}

/// One curve of a [`Panel`]: `points` are `(x, y)` pairs in drawing order; pairs with a
/// non-finite coordinate are skipped (the line breaks there).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend entry (empty: no legend entry).
    pub label: String,
    /// The `(x, y)` points.
    pub points: Vec<(f64, f64)>,
    /// Line colour as RGB; `None` takes the next colour of the palette.
    pub color: Option<[u8; 3]>,
    /// Line width in pixels (at least 1).
    pub width: u32,
    /// `0`: a line through the points; `r > 0`: a scatter, each point a filled circle of
    /// radius `r` pixels and no line.
    pub markers: u32,
}

impl Series {
    /// A series with the palette's colour and a 2-pixel line.
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            color: None,
            width: 2,
            markers: 0,
        }
    }

    /// A series of `values` at x = 0, 1, 2, ... (e.g. one value per training step).
    pub fn from_values(label: impl Into<String>, values: &[f64]) -> Self {
        let points = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64, *v))
            .collect();
        Series::new(label, points)
    }

    /// Sets the line colour.
    pub fn color(mut self, rgb: [u8; 3]) -> Self {
        self.color = Some(rgb);
        self
    }

    /// Sets the line width in pixels (0 is drawn as 1).
    pub fn width(mut self, width: u32) -> Self {
        self.width = width;
        self
    }

    /// Draws the points as filled circles of `radius` pixels instead of a line (a scatter);
    /// `0` draws a line again.
    pub fn markers(mut self, radius: u32) -> Self {
        self.markers = radius;
        self
    }
}

/// How a [`Panel`] chooses its y axis limits; see [`y_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum YRange {
    /// The bulk of the run (percentiles of the later points); values beyond it are drawn
    /// at the panel's edge. The default.
    #[default]
    Robust,
    /// All finite values, padded by 5%.
    Full,
    /// Fixed limits `(low, high)`, `low < high`; values beyond them are drawn at the edge.
    Fixed(f64, f64),
}

/// One panel of a [`line_chart`]: axes with ticks, tick labels and descriptions, the
/// series, and a legend of the labelled series.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Caption above the panel (may be empty).
    pub title: String,
    /// Description of the x axis, e.g. `step`.
    pub x_label: String,
    /// Description of the y axis, e.g. `loss`.
    pub y_label: String,
    /// The curves (at least one).
    pub series: Vec<Series>,
    /// How the y limits are chosen.
    pub y_range: YRange,
}

impl Panel {
    /// A panel without series yet, with [`YRange::Robust`].
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Panel {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            y_range: YRange::Robust,
        }
    }

    /// Adds a series.
    pub fn with_series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Sets how the y limits are chosen.
    pub fn with_y_range(mut self, y_range: YRange) -> Self {
        self.y_range = y_range;
        self
    }
}

/// Size of a [`line_chart`] in pixels: the picture is `width` wide and
/// [`TITLE_BAND`] `+ panels · panel_height` high.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChartSize {
    /// Width, 240 to 8192.
    pub width: u32,
    /// Height of each panel, 120 to 4096.
    pub panel_height: u32,
}

impl Default for ChartSize {
    /// 900 × 300 per panel.
    fn default() -> Self {
        ChartSize {
            width: 900,
            panel_height: 300,
        }
    }
}

/// Draws `panels` stacked vertically (one per row) under `title`, at the default
/// [`ChartSize`]: a PNG when `path` ends in `.png` (any case), an SVG otherwise. See
/// [`line_chart_sized`].
pub fn line_chart(path: impl AsRef<Path>, title: &str, panels: &[Panel]) -> Result<()> {
    line_chart_sized(path, title, panels, ChartSize::default())
}

/// Draws `panels` stacked vertically under `title` (a [`TITLE_BAND`]-high band, kept even
/// when `title` is empty): each panel with axes, ticks, tick labels, axis descriptions
/// and a legend of its labelled series, y limits as its [`YRange`] says. Points with a
/// non-finite coordinate are skipped. Errors: no panels, a panel without series, a size
/// outside the limits of [`ChartSize`], invalid [`YRange::Fixed`] limits
/// ([`PplError::InvalidConfig`]); a file that cannot be written ([`PplError::File`]).
pub fn line_chart_sized(
    path: impl AsRef<Path>,
    title: &str,
    panels: &[Panel],
    size: ChartSize,
) -> Result<()> {
    let path = path.as_ref();
    const CTX: &str = "plots::line_chart";
    if panels.is_empty() {
        return Err(PplError::config(CTX, "no panels to draw"));
    }
    if !(240..=8192).contains(&size.width) || !(120..=4096).contains(&size.panel_height) {
        return Err(PplError::config(
            CTX,
            format!(
                "size {}x{} per panel: width must be 240 to 8192 and panel height 120 to 4096",
                size.width, size.panel_height
            ),
        ));
    }
    let height = TITLE_BAND as u64 + panels.len() as u64 * size.panel_height as u64;
    if height > 32768 {
        return Err(PplError::config(
            CTX,
            format!(
                "{} panels of height {} make a picture {height} pixels high (at most 32768)",
                panels.len(),
                size.panel_height
            ),
        ));
    }
    let mut layouts = Vec::with_capacity(panels.len());
    for (i, p) in panels.iter().enumerate() {
        if p.series.is_empty() {
            return Err(PplError::config(
                CTX,
                format!("panel {i} (`{}`) has no series", p.title),
            ));
        }
        layouts.push(layout(p)?);
    }
    let glyphs = noto()?;
    let dims = (size.width, height as u32);
    let r = if is_png(path) {
        draw_chart(
            PngBackend::new(path, dims, glyphs).into_drawing_area(),
            title,
            panels,
            &layouts,
        )
    } else {
        draw_chart(
            SVGBackend::new(path, dims).into_drawing_area(),
            title,
            panels,
            &layouts,
        )
    };
    r.map_err(|e| PplError::file(path, e))
}

/// The y limits `(low, high)` that a panel with these `series` gets under `mode` (see the
/// module docs for [`YRange::Robust`]). Points with a non-finite coordinate are ignored;
/// with no finite point the limits are `(0, 1)`. Errors: [`YRange::Fixed`] limits that are
/// not finite with `low < high` ([`PplError::InvalidConfig`]).
pub fn y_limits(series: &[Series], mode: YRange) -> Result<(f64, f64)> {
    let pts: Vec<(f64, f64)> = finite_points(series).collect();
    match mode {
        YRange::Fixed(lo, hi) => {
            if lo.is_finite() && hi.is_finite() && lo < hi {
                Ok((lo, hi))
            } else {
                Err(PplError::config(
                    "plots::YRange::Fixed",
                    format!("limits ({lo}, {hi}) must be finite with low < high"),
                ))
            }
        }
        _ if pts.is_empty() => Ok((0.0, 1.0)),
        YRange::Robust if pts.len() >= 20 => Ok(robust_limits(&pts)),
        YRange::Full | YRange::Robust => {
            let (lo, hi) = min_max(pts.iter().map(|p| p.1));
            let s = spread(lo, hi);
            Ok((lo - 0.05 * s, hi + 0.05 * s))
        }
    }
}

/// Writes `images` (`[N, H, W]`, values in `[0, 1]`, clamped) as a PNG grid with `cols`
/// columns, each pixel drawn as a `zoom × zoom` grey square (0 black, 1 white), with a
/// one-pixel grey gap between images.
pub fn image_grid(path: impl AsRef<Path>, images: &Tensor, cols: usize, zoom: u32) -> Result<()> {
    image_grid_titled(path, images, cols, zoom, None)
}

/// [`image_grid`] with an optional `title` written above the grid, in a [`TITLE_BAND`]-high
/// white band (kept, blank, for `Some("")`); the picture is widened, the grid centred, when
/// the title is wider than the grid.
pub fn image_grid_titled(
    path: impl AsRef<Path>,
    images: &Tensor,
    cols: usize,
    zoom: u32,
    title: Option<&str>,
) -> Result<()> {
    let path = path.as_ref();
    let err = |e: String| PplError::file(path, e);
    let dims = images.dims();
    if dims.len() != 3 || cols == 0 || zoom == 0 || dims[0] == 0 {
        return Err(PplError::config(
            "image_grid",
            format!(
                "expected images [N, H, W] with N > 0, cols > 0 and zoom > 0, got shape {dims:?}, \
                 cols {cols}, zoom {zoom}"
            ),
        ));
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
    let glyphs = noto()?;
    let (band, text_w) = match title {
        None => (0, 0),
        Some(t) => {
            let (tw, _) = font(TITLE_SIZE)
                .box_size(t)
                .map_err(|e| err(format!("cannot lay out the title: {e}")))?;
            (TITLE_BAND, tw + 16)
        }
    };
    let width = gw.max(text_w);
    let root = PngBackend::new(path, (width, gh + band), glyphs).into_drawing_area();
    let de = |e: DrawingAreaErrorKind<_>| err(e.to_string());
    root.fill(&WHITE).map_err(de)?;
    let ox = ((width - gw) / 2) as i32;
    let oy = band as i32;
    root.draw(&Rectangle::new(
        [(ox, oy), (ox + gw as i32, oy + gh as i32)],
        RGBColor(128, 128, 128).filled(),
    ))
    .map_err(de)?;
    if let Some(t) = title.filter(|t| !t.is_empty()) {
        let style = font(TITLE_SIZE)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(
            t,
            ((width / 2) as i32, (band / 2) as i32),
            style,
        ))
        .map_err(de)?;
    }
    for i in 0..n {
        let (r, c) = (i / cols, i % cols);
        for y in 0..h {
            for x in 0..w {
                let v = (px[(i * h + y) * w + x] * 255.0).round() as u8;
                let x0 = ox + cell(c * (w + 1) + 1 + x) as i32;
                let y0 = oy + cell(r * (h + 1) + 1 + y) as i32;
                let z = zoom as i32;
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + z, y0 + z)],
                    RGBColor(v, v, v).filled(),
                ))
                .map_err(de)?;
            }
        }
    }
    root.present().map_err(de)
}

/// The viridis colour map (matplotlib's default), 8 stops interpolated linearly.
const VIRIDIS: [[u8; 3]; 8] = [
    [68, 1, 84],
    [70, 50, 127],
    [54, 92, 141],
    [39, 127, 143],
    [31, 162, 136],
    [74, 194, 110],
    [160, 219, 57],
    [254, 232, 37],
];

/// The viridis colour of `t ∈ [0, 1]` (clamped; NaN gives the lowest colour).
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let pos = t * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    let mix = |k: usize| (a[k] as f64 + f * (b[k] as f64 - a[k] as f64)).round() as u8;
    [mix(0), mix(1), mix(2)]
}

/// A heat map: values on a regular `nx × ny` grid of cells over `x × y`, coloured by
/// [`viridis`] from the smallest finite value (dark purple) to the largest (yellow), with
/// a colour bar, and optional [`Series`] drawn on top (curves or scatters).
#[derive(Debug, Clone, PartialEq)]
pub struct HeatMap {
    /// Title above the picture.
    pub title: String,
    /// Description of the x axis.
    pub x_label: String,
    /// Description of the y axis.
    pub y_label: String,
    /// Description of the values (the colour bar's axis).
    pub value_label: String,
    /// The x range `(low, high)` the cells cover.
    pub x: (f64, f64),
    /// The y range `(low, high)` the cells cover.
    pub y: (f64, f64),
    /// Cells along x.
    pub nx: usize,
    /// Cells along y.
    pub ny: usize,
    /// `ny · nx` values, row by row from the bottom: `values[j·nx + i]` is the cell
    /// `[x₀ + i·Δx, x₀ + (i+1)·Δx] × [y₀ + j·Δy, y₀ + (j+1)·Δy]`. Non-finite values are
    /// drawn light grey.
    pub values: Vec<f64>,
    /// Series drawn over the cells, in the panel's coordinates.
    pub overlay: Vec<Series>,
}

impl HeatMap {
    /// A heat map of `values` (`ny · nx` of them, see [`HeatMap::values`]) over `x × y`.
    /// Errors: an empty grid, a value count other than `nx · ny`, or ranges that are not
    /// finite with `low < high` ([`PplError::InvalidConfig`]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        x: (f64, f64),
        y: (f64, f64),
        nx: usize,
        ny: usize,
        values: Vec<f64>,
    ) -> Result<Self> {
        let h = HeatMap {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            value_label: String::new(),
            x,
            y,
            nx,
            ny,
            values,
            overlay: Vec::new(),
        };
        h.check()?;
        Ok(h)
    }

    /// Names the values (the colour bar's axis description).
    pub fn with_value_label(mut self, label: impl Into<String>) -> Self {
        self.value_label = label.into();
        self
    }

    /// Adds a series drawn over the cells.
    pub fn with_overlay(mut self, series: Series) -> Self {
        self.overlay.push(series);
        self
    }

    fn check(&self) -> Result<()> {
        const CTX: &str = "plots::HeatMap";
        if self.nx == 0 || self.ny == 0 || self.nx.saturating_mul(self.ny) != self.values.len() {
            return Err(PplError::config(
                CTX,
                format!(
                    "need nx · ny values with nx, ny > 0; got nx = {}, ny = {}, {} values",
                    self.nx,
                    self.ny,
                    self.values.len()
                ),
            ));
        }
        for (name, (lo, hi)) in [("x", self.x), ("y", self.y)] {
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(PplError::config(
                    CTX,
                    format!("the {name} range ({lo}, {hi}) must be finite with low < high"),
                ));
            }
        }
        Ok(())
    }

    /// The colour scale `(low, high)`: the smallest and largest finite value (`(0, 1)`
    /// without any; widened around a constant value).
    pub fn value_range(&self) -> (f64, f64) {
        let (lo, hi) = min_max(self.values.iter().copied().filter(|v| v.is_finite()));
        if !(lo.is_finite() && hi.is_finite()) {
            (0.0, 1.0)
        } else if hi > lo {
            (lo, hi)
        } else {
            let s = spread(lo, hi);
            (lo - 0.5 * s, hi + 0.5 * s)
        }
    }
}

/// Draws `map` as a PNG (`path` ending in `.png`, any case) or an SVG (otherwise),
/// 820 × 740 pixels: the cells with axes, ticks and descriptions, the overlay, and a
/// colour bar on the right. Errors: an invalid map (see [`HeatMap::new`];
/// [`PplError::InvalidConfig`]); a file that cannot be written ([`PplError::File`]).
pub fn heat_map(path: impl AsRef<Path>, map: &HeatMap) -> Result<()> {
    let path = path.as_ref();
    map.check()?;
    let glyphs = noto()?;
    let dims = (820, TITLE_BAND + 700);
    let r = if is_png(path) {
        draw_heat_map(PngBackend::new(path, dims, glyphs).into_drawing_area(), map)
    } else {
        draw_heat_map(SVGBackend::new(path, dims).into_drawing_area(), map)
    };
    r.map_err(|e| PplError::file(path, e))
}

fn draw_heat_map<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    map: &HeatMap,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (band, body) = root.split_vertically(TITLE_BAND);
    if !map.title.is_empty() {
        let (w, h) = band.dim_in_pixel();
        let style = font(TITLE_SIZE)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        band.draw(&Text::new(
            map.title.as_str(),
            ((w / 2) as i32, (h / 2) as i32),
            style,
        ))
        .map_err(e)?;
    }
    let (main, bar) = body.split_horizontally(690);
    let fmt = |v: &f64| tick(*v);
    let (vlo, vhi) = map.value_range();
    let colour = |v: f64| -> RGBColor {
        if v.is_finite() {
            let [r, g, b] = viridis((v - vlo) / (vhi - vlo));
            RGBColor(r, g, b)
        } else {
            RGBColor(220, 220, 220)
        }
    };
    let mut chart = ChartBuilder::on(&main)
        .margin_top(8)
        .margin_bottom(4)
        .margin_left(8)
        .margin_right(12)
        .x_label_area_size(44)
        .y_label_area_size(76)
        .build_cartesian_2d(map.x.0..map.x.1, map.y.0..map.y.1)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(map.x_label.as_str())
        .y_desc(map.y_label.as_str())
        .label_style(font(TICK_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(10)
        .y_labels(10)
        .draw()
        .map_err(e)?;
    let dx = (map.x.1 - map.x.0) / map.nx as f64;
    let dy = (map.y.1 - map.y.0) / map.ny as f64;
    chart
        .draw_series((0..map.ny).flat_map(|j| {
            (0..map.nx).map(move |i| {
                let (x0, y0) = (map.x.0 + i as f64 * dx, map.y.0 + j as f64 * dy);
                Rectangle::new(
                    [(x0, y0), (x0 + dx, y0 + dy)],
                    colour(map.values[j * map.nx + i]).filled(),
                )
            })
        }))
        .map_err(e)?;
    let mut labelled = false;
    for (k, s) in map.overlay.iter().enumerate() {
        let [r, g, b] = s.color.unwrap_or(PALETTE[k % PALETTE.len()]);
        let style = ShapeStyle {
            color: RGBColor(r, g, b).to_rgba(),
            filled: true,
            stroke_width: s.width.max(1),
        };
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let a = if s.markers > 0 {
            let rad = s.markers;
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, rad, style)))
                .map_err(e)?
        } else {
            chart.draw_series(LineSeries::new(pts, style)).map_err(e)?
        };
        if !s.label.is_empty() {
            labelled = true;
            let rad = s.markers;
            a.label(s.label.as_str()).legend(
                move |(x, y): (i32, i32)| -> DynElement<'static, DB, (i32, i32)> {
                    if rad > 0 {
                        Circle::new((x + 12, y), rad.min(6), style).into_dyn()
                    } else {
                        PathElement::new(vec![(x, y), (x + 24, y)], style).into_dyn()
                    }
                },
            );
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .label_font(font(TICK_SIZE))
            .draw()
            .map_err(e)?;
    }
    // The colour bar: 100 bands, the first in the lowest value's colour, the last in the
    // highest's.
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(8)
        .margin_bottom(48)
        .margin_right(8)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1.0, vlo..vhi)
        .map_err(e)?;
    cb.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(map.value_label.as_str())
        .label_style(font(TICK_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .y_label_formatter(&fmt)
        .y_labels(8)
        .draw()
        .map_err(e)?;
    let n = 100;
    let step = (vhi - vlo) / n as f64;
    cb.draw_series((0..n).map(|k| {
        let v0 = vlo + k as f64 * step;
        Rectangle::new(
            [(0.0, v0), (1.0, v0 + step)],
            colour(vlo + (vhi - vlo) * k as f64 / (n - 1) as f64).filled(),
        )
    }))
    .map_err(e)?;
    root.present().map_err(e)
}

/// What a panel's drawing needs beyond the panel itself.
struct Layout {
    x: (f64, f64),
    y: (f64, f64),
    above: usize,
    below: usize,
}

fn layout(p: &Panel) -> Result<Layout> {
    let y = y_limits(&p.series, p.y_range)?;
    let pts: Vec<(f64, f64)> = finite_points(&p.series).collect();
    let x = if pts.is_empty() {
        (0.0, 1.0)
    } else {
        let (lo, hi) = min_max(pts.iter().map(|p| p.0));
        if hi > lo {
            (lo, hi)
        } else {
            let s = spread(lo, hi);
            (lo - 0.5 * s, hi + 0.5 * s)
        }
    };
    let above = pts.iter().filter(|p| p.1 > y.1).count();
    let below = pts.iter().filter(|p| p.1 < y.0).count();
    Ok(Layout { x, y, above, below })
}

fn robust_limits(pts: &[(f64, f64)]) -> (f64, f64) {
    let (x0, x1) = min_max(pts.iter().map(|p| p.0));
    let cut = x0 + 0.1 * (x1 - x0);
    let mut tail: Vec<f64> = pts.iter().filter(|p| p.0 >= cut).map(|p| p.1).collect();
    tail.sort_by(f64::total_cmp);
    let (q_lo, q_hi) = (quantile(&tail, 0.01), quantile(&tail, 0.99));
    let s = spread(q_lo, q_hi);
    let (mut lo, mut hi) = (q_lo - 0.1 * s, q_hi + 0.1 * s);
    let (y0, y1) = min_max(pts.iter().map(|p| p.1));
    if y0 < lo && y0 >= lo - 0.25 * s {
        lo = y0 - 0.03 * s;
    }
    if y1 > hi && y1 <= hi + 0.25 * s {
        hi = y1 + 0.03 * s;
    }
    (lo, hi)
}

/// Linear-interpolation quantile of sorted, non-empty `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    match v.get(i + 1) {
        Some(next) => v[i] + f * (next - v[i]),
        None => v[i],
    }
}

/// `hi − lo`, or a sensible scale when that is zero.
fn spread(lo: f64, hi: f64) -> f64 {
    if hi > lo {
        hi - lo
    } else if lo != 0.0 {
        0.1 * lo.abs()
    } else {
        1.0
    }
}

fn min_max(it: impl Iterator<Item = f64>) -> (f64, f64) {
    it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    })
}

fn finite_points(series: &[Series]) -> impl Iterator<Item = (f64, f64)> + '_ {
    series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn is_png(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"))
}

fn font(size: f64) -> FontDesc<'static> {
    (FONT_FAMILY, size).into_font()
}

/// A tick label: at most 4 significant digits, no trailing zeros, exponent form for very
/// large or small magnitudes.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        return "0".into();
    }
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.1e}");
    }
    let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The finite runs of `points`, each y clamped into `[lo, hi]`.
fn segments(points: &[(f64, f64)], (lo, hi): (f64, f64)) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for &(x, y) in points {
        if x.is_finite() && y.is_finite() {
            if let Some(last) = out.last_mut() {
                last.push((x, y.clamp(lo, hi)));
            }
        } else if out.last().is_some_and(|s| !s.is_empty()) {
            out.push(Vec::new());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

fn draw_chart<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    panels: &[Panel],
    layouts: &[Layout],
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let (band, body) = root.split_vertically(TITLE_BAND);
    if !title.is_empty() {
        let (w, h) = band.dim_in_pixel();
        let style = font(TITLE_SIZE)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        band.draw(&Text::new(title, ((w / 2) as i32, (h / 2) as i32), style))
            .map_err(e)?;
    }
    for ((area, p), l) in body
        .split_evenly((panels.len(), 1))
        .iter()
        .zip(panels)
        .zip(layouts)
    {
        draw_panel(area, p, l)?;
    }
    root.present().map_err(e)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    p: &Panel,
    l: &Layout,
) -> std::result::Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let mut caption = p.title.clone();
    for (n, side) in [(l.above, "above"), (l.below, "below")] {
        if n > 0 {
            let s = if n == 1 { "" } else { "s" };
            caption.push_str(&format!(
                " ({n} point{s} {side} the y range, drawn at its edge)"
            ));
        }
    }
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_top(4)
        .margin_bottom(4)
        .margin_left(8)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(76);
    if !caption.is_empty() {
        builder.caption(caption, font(CAPTION_SIZE));
    }
    let mut chart = builder
        .build_cartesian_2d(l.x.0..l.x.1, l.y.0..l.y.1)
        .map_err(e)?;
    let fmt = |v: &f64| tick(*v);
    chart
        .configure_mesh()
        .x_desc(p.x_label.as_str())
        .y_desc(p.y_label.as_str())
        .label_style(font(TICK_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .x_label_formatter(&fmt)
        .y_label_formatter(&fmt)
        .x_labels(10)
        .y_labels(6)
        .max_light_lines(4)
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(e)?;
    let mut labelled = false;
    for (i, s) in p.series.iter().enumerate() {
        let [r, g, b] = s.color.unwrap_or(PALETTE[i % PALETTE.len()]);
        let style = ShapeStyle {
            color: RGBColor(r, g, b).to_rgba(),
            filled: false,
            stroke_width: s.width.max(1),
        };
        let legend_style = ShapeStyle {
            stroke_width: s.width.clamp(2, 4),
            ..style
        };
        let segs = segments(&s.points, l.y);
        if s.markers > 0 {
            let r = s.markers;
            let fill = style.filled();
            let pts: Vec<(f64, f64)> = segs.into_iter().flatten().collect();
            let empty = pts.is_empty();
            let a = chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, r, fill)))
                .map_err(e)?;
            if !s.label.is_empty() {
                labelled = true;
                let text = if empty {
                    format!("{} (no finite values)", s.label)
                } else {
                    s.label.clone()
                };
                a.label(text)
                    .legend(move |(x, y): (i32, i32)| Circle::new((x + 12, y), r.min(6), fill));
            }
            continue;
        }
        let legend =
            move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 24, y)], legend_style);
        if !s.label.is_empty() {
            labelled = true;
            if segs.is_empty() {
                chart
                    .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                    .map_err(e)?
                    .label(format!("{} (no finite values)", s.label))
                    .legend(legend);
            }
        }
        for (k, seg) in segs.into_iter().enumerate() {
            let a = if seg.len() == 1 {
                chart
                    .draw_series(seg.iter().map(|&p| Circle::new(p, 2, style.filled())))
                    .map_err(e)?
            } else {
                chart.draw_series(LineSeries::new(seg, style)).map_err(e)?
            };
            if k == 0 && !s.label.is_empty() {
                a.label(s.label.as_str()).legend(legend);
            }
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(190, 190, 190))
            .label_font(font(TICK_SIZE))
            .draw()
            .map_err(e)?;
    }
    Ok(())
}

/// plotters' bitmap backend, with text rasterised here from the embedded font: plotters
/// 0.3.7's own `ab_glyph` drawing places each glyph's bitmap at the pen position without
/// its left side bearing, so letters such as `i`, `l` or `t` stand apart from their
/// neighbours. Advances and kerning are the ones plotters measures text with, so the
/// layout plotters computes fits what is drawn.
struct PngBackend<'a> {
    inner: BitMapBackend<'a>,
    font: &'static FontRef<'static>,
}

impl<'a> PngBackend<'a> {
    fn new(path: &'a Path, dims: (u32, u32), font: &'static FontRef<'static>) -> Self {
        PngBackend {
            inner: BitMapBackend::new(path, dims),
            font,
        }
    }
}

type BackendResult<'a> =
    std::result::Result<(), DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>>;

impl<'a> DrawingBackend for PngBackend<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> BackendResult<'a> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> BackendResult<'a> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> BackendResult<'a> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> BackendResult<'a> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> BackendResult<'a> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> BackendResult<'a> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> BackendResult<'a> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> BackendResult<'a> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> BackendResult<'a> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> BackendResult<'a> {
        let color = style.color();
        if color.alpha <= 0.0 || text.is_empty() {
            return Ok(());
        }
        let sf = self.font.as_scaled(PxScale::from(style.size() as f32));
        let mut caret = 0f32;
        let mut prev = None;
        let mut placed = Vec::with_capacity(text.len());
        for c in text.chars() {
            let id = sf.glyph_id(c);
            if let Some(p) = prev {
                caret += sf.kern(p, id);
            }
            placed.push((id, caret));
            caret += sf.h_advance(id);
            prev = Some(id);
        }
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -caret / 2.0,
            HPos::Right => -caret,
        };
        // the anchor is the top, middle or bottom of the line box (ascent to descent)
        let (ascent, descent) = (sf.ascent(), sf.descent());
        let baseline = match anchor.v_pos {
            VPos::Top => ascent,
            VPos::Center => (ascent + descent) / 2.0,
            VPos::Bottom => descent,
        };
        let trans = style.transform();
        let mut pixels = Vec::new();
        for (id, x) in placed {
            let glyph = id.with_scale_and_position(sf.scale(), point(x + dx, baseline));
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let b = outline.px_bounds();
                let (x0, y0) = (b.min.x as i32, b.min.y as i32);
                outline.draw(|gx, gy, cov| {
                    if cov > 0.0 {
                        pixels.push((x0 + gx as i32, y0 + gy as i32, cov));
                    }
                });
            }
        }
        for (x, y, cov) in pixels {
            let (tx, ty) = trans.transform(x, y);
            let c = BackendColor {
                alpha: color.alpha * f64::from(cov.min(1.0)),
                rgb: color.rgb,
            };
            self.inner.draw_pixel((pos.0 + tx, pos.1 + ty), c)?;
        }
        Ok(())
    }
}
