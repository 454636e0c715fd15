//! Line charts and image grids: text rendered from the embedded font, sizes, the robust y
//! range, non-finite points, typed errors.

use ppl_core::PplError;
use ppl_inference::plots::{
    heat_map, image_grid_titled, line_chart, line_chart_sized, viridis, y_limits, ChartSize,
    HeatMap, Panel, Series, YRange, TITLE_BAND,
};
use std::path::PathBuf;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ppl-plots-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 1000·exp(−t/5) + 20 + uniform noise in [−2, 2] for t = 0..200 (a fixed LCG, so the
/// curve is the same on every run).
fn loss_curve() -> Vec<f64> {
    let mut state: u64 = 12345;
    (0..200)
        .map(|t| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64;
            1000.0 * (-(t as f64) / 5.0).exp() + 20.0 + 4.0 * (u - 0.5)
        })
        .collect()
}

fn panels(values: &[f64]) -> Vec<Panel> {
    let avg: Vec<f64> = values
        .iter()
        .scan((0.0, 0usize), |(s, n), v| {
            *s += v;
            *n += 1;
            Some(*s / *n as f64)
        })
        .collect();
    vec![
        Panel::new("loss", "step", "loss")
            .with_series(Series::from_values("loss", values).color([170, 190, 220]))
            .with_series(Series::from_values("running mean", &avg).width(3)),
        Panel::new("wake loss", "step", "nats")
            .with_series(Series::from_values("wake", &values[100..])),
    ]
}

/// Pixels darker than mid grey in rows `y0..y1`.
fn dark_pixels(img: &image::RgbImage, y0: u32, y1: u32) -> usize {
    (y0..y1)
        .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count()
}

#[test]
fn png_title_renders_as_text_and_the_png_has_the_chart_size() {
    let d = dir("png");
    let v = loss_curve();
    let (with, without) = (d.join("titled.png"), d.join("untitled.png"));
    line_chart(&with, "Training of the model", &panels(&v)).unwrap();
    line_chart(&without, "", &panels(&v)).unwrap();
    let a = image::open(&with).unwrap().to_rgb8();
    let b = image::open(&without).unwrap().to_rgb8();
    // default size: 900 wide, the title band plus two 300-pixel panels
    assert_eq!(a.dimensions(), (900, TITLE_BAND + 2 * 300));
    assert_eq!(b.dimensions(), a.dimensions());
    let (ta, tb) = (
        dark_pixels(&a, 0, TITLE_BAND),
        dark_pixels(&b, 0, TITLE_BAND),
    );
    // 21 glyphs at 22 px leave hundreds of dark pixels; the band is blank without a title
    assert!(ta > 300, "{ta} dark pixels in the title band");
    assert_eq!(tb, 0, "no text, no dark pixels in the title band");
    // the panels (axes, tick labels, captions) are identical
    assert_eq!(
        a.as_raw()[(TITLE_BAND * 900 * 3) as usize..],
        b.as_raw()[(TITLE_BAND * 900 * 3) as usize..]
    );
    // tick labels and the rotated axis description left of the plot area
    let left = (TITLE_BAND..TITLE_BAND + 300)
        .flat_map(|y| (0..70).map(move |x| (x, y)))
        .filter(|&(x, y)| a.get_pixel(x, y).0.iter().all(|&c| c < 100))
        .count();
    assert!(
        left > 60,
        "{left} dark pixels of tick labels and y description"
    );
    let size = ChartSize {
        width: 400,
        panel_height: 150,
    };
    line_chart_sized(&with, "small", &panels(&v), size).unwrap();
    let c = image::open(&with).unwrap().to_rgb8();
    assert_eq!(c.dimensions(), (400, TITLE_BAND + 2 * 150));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn svg_holds_title_captions_axis_descriptions_ticks_and_legend() {
    let d = dir("svg");
    let path = d.join("chart.svg");
    line_chart(&path, "Training of the model", &panels(&loss_curve())).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    // plotters writes each text on a line of its own: `<text ...>\nTEXT\n</text>`
    for text in [
        "Training of the model",
        "wake loss",
        "step",
        "loss",
        "nats",
        "wake",
        "running mean",
    ] {
        let element = format!(">\n{text}\n</text>");
        assert!(svg.contains(&element), "SVG lacks {element}");
    }
    assert!(svg.contains("font-family=\"sans-serif\""));
    // the first panel clips the early losses and says so in its caption
    assert!(
        svg.contains("above the y range, drawn at its edge"),
        "clip note"
    );
    // tick labels: many <text> elements beyond the 9 captions, descriptions and legend labels
    let texts = svg.matches("<text").count();
    assert!(texts > 20, "{texts} text elements");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn robust_range_shows_the_bulk_of_a_decaying_loss_curve() {
    let v = loss_curve();
    let tail = &v[20..]; // the last 90% of the run
    let (lo, hi) = y_limits(&[Series::from_values("loss", &v)], YRange::Robust).unwrap();
    let mut sorted = tail.to_vec();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[(p * (sorted.len() - 1) as f64).round() as usize];
    let (t_lo, t_hi) = (q(0.01), q(0.99));
    assert!(
        lo <= t_lo && t_hi <= hi,
        "tail [{t_lo}, {t_hi}] in [{lo}, {hi}]"
    );
    let share = (t_hi - t_lo) / (hi - lo);
    assert!(share >= 0.5, "the tail spans {share} of the panel height");
    let inside = tail.iter().filter(|&&y| lo <= y && y <= hi).count();
    assert!(
        inside as f64 >= 0.98 * tail.len() as f64,
        "{inside} of {}",
        tail.len()
    );
    assert!(
        hi < 100.0,
        "the first losses (~1020) are clipped, hi = {hi}"
    );
    // the full range would squash the tail into a few percent of the panel
    let (flo, fhi) = y_limits(&[Series::from_values("loss", &v)], YRange::Full).unwrap();
    assert!((t_hi - t_lo) / (fhi - flo) < 0.05);
    // mirrored curve, mirrored limits: nothing assumes positive values
    let neg: Vec<f64> = v.iter().map(|y| -y).collect();
    let (nlo, nhi) = y_limits(&[Series::from_values("loss", &neg)], YRange::Robust).unwrap();
    assert!((nlo + hi).abs() < 1e-9 && (nhi + lo).abs() < 1e-9);
    // a short series is shown whole: 10 points, padded by 5% of the spread 9
    let short: Vec<f64> = (0..10).map(|i| i as f64).collect();
    let (slo, shi) = y_limits(&[Series::from_values("s", &short)], YRange::Robust).unwrap();
    assert!((slo + 0.45).abs() < 1e-12 && (shi - 9.45).abs() < 1e-12);
    // a constant series gets a non-empty range around its value
    let (clo, chi) = y_limits(&[Series::from_values("c", &[5.0; 50])], YRange::Robust).unwrap();
    assert!(clo < 5.0 && 5.0 < chi);
}

#[test]
fn non_finite_points_are_skipped() {
    let pts = vec![
        (0.0, 1.0),
        (1.0, f64::NAN),
        (2.0, 3.0),
        (3.0, 4.0),
        (4.0, f64::INFINITY),
        (f64::NAN, 9.0),
        (5.0, 2.0),
        (6.0, 1.0),
    ];
    let finite: Vec<(f64, f64)> = pts
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    for mode in [YRange::Robust, YRange::Full] {
        assert_eq!(
            y_limits(&[Series::new("a", pts.clone())], mode).unwrap(),
            y_limits(&[Series::new("a", finite.clone())], mode).unwrap()
        );
    }
    let (lo, hi) = y_limits(&[Series::new("a", pts.clone())], YRange::Full).unwrap();
    assert!(
        (lo - 0.85).abs() < 1e-12 && (hi - 4.15).abs() < 1e-12,
        "({lo}, {hi})"
    );
    assert_eq!(
        y_limits(
            &[Series::from_values("nan", &[f64::NAN; 3])],
            YRange::Robust
        )
        .unwrap(),
        (0.0, 1.0)
    );
    let d = dir("nonfinite");
    let panel = Panel::new("gaps", "step", "value")
        .with_series(Series::new("gappy", pts))
        .with_series(Series::from_values(
            "never finite",
            &[f64::NAN, f64::INFINITY],
        ));
    let svg = d.join("gaps.svg");
    line_chart(&svg, "gaps", std::slice::from_ref(&panel)).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    // runs [0], [2, 3], [5, 6] of the first series (palette colour #1F77B4): one dot and
    // two lines, plus its legend sample; the second series has only a legend sample
    let lines = |c: &str| {
        text.lines()
            .filter(|l| l.starts_with("<polyline") && l.contains(c))
            .count()
    };
    assert_eq!(lines("#1F77B4"), 2 + 1, "2 runs + the legend sample");
    assert_eq!(lines("#FF7F0E"), 1, "the legend sample only");
    assert_eq!(text.matches("<circle").count(), 1, "the isolated point");
    assert!(!text.contains("NaN") && !text.contains("inf"));
    assert!(text.contains("never finite (no finite values)"));
    line_chart(d.join("gaps.png"), "gaps", &[panel]).unwrap();
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_inputs_are_typed_errors_and_write_nothing() {
    let d = dir("bad");
    let path = d.join("bad.png");
    let ok = panels(&loss_curve());
    let config = |r: ppl_core::Result<()>| matches!(r, Err(PplError::InvalidConfig { .. }));
    assert!(config(line_chart(&path, "t", &[])));
    assert!(config(line_chart(
        &path,
        "t",
        &[Panel::new("empty", "x", "y")]
    )));
    for (width, panel_height) in [(0, 300), (900, 0), (100, 300), (900, 5000)] {
        let size = ChartSize {
            width,
            panel_height,
        };
        assert!(config(line_chart_sized(&path, "t", &ok, size)), "{size:?}");
    }
    let fixed = |lo, hi| {
        Panel::new("p", "x", "y")
            .with_series(Series::from_values("a", &[1.0, 2.0]))
            .with_y_range(YRange::Fixed(lo, hi))
    };
    assert!(config(line_chart(&path, "t", &[fixed(1.0, 1.0)])));
    assert!(config(line_chart(&path, "t", &[fixed(0.0, f64::NAN)])));
    assert!(!path.exists(), "no file for rejected input");
    let missing = d.join("no-such-dir").join("c.png");
    assert!(matches!(
        line_chart(&missing, "t", &ok),
        Err(PplError::File { .. })
    ));
    // a fixed range clips: the values above 1.5 are drawn at the edge and reported
    let svg = d.join("fixed.svg");
    line_chart(&svg, "t", &[fixed(0.0, 1.5)]).unwrap();
    assert!(std::fs::read_to_string(&svg)
        .unwrap()
        .contains("(1 point above the y range, drawn at its edge)"));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn image_grid_title_is_text_above_the_grid() {
    let d = dir("grid");
    let imgs = candle_core::Tensor::ones(
        (5, 3, 4),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let (with, blank, none) = (d.join("t.png"), d.join("b.png"), d.join("n.png"));
    // grid 22 x 26 as in train.rs; a long title widens the picture, a blank one does not
    image_grid_titled(&with, &imgs, 2, 2, Some("samples from the model")).unwrap();
    image_grid_titled(&blank, &imgs, 2, 2, Some("")).unwrap();
    image_grid_titled(&none, &imgs, 2, 2, None).unwrap();
    let a = image::open(&with).unwrap().to_rgb8();
    let b = image::open(&blank).unwrap().to_rgb8();
    let n = image::open(&none).unwrap().to_rgb8();
    assert_eq!(n.dimensions(), (22, 26));
    assert_eq!(b.dimensions(), (22, 26 + TITLE_BAND));
    assert!(a.width() > 150, "widened to the title: {}", a.width());
    assert_eq!(a.height(), 26 + TITLE_BAND);
    assert!(dark_pixels(&a, 0, TITLE_BAND) > 100);
    assert_eq!(dark_pixels(&b, 0, TITLE_BAND), 0);
    // the grid itself (white images on grey) is centred under the title
    let x0 = (a.width() - 22) / 2;
    assert_eq!(a.get_pixel(x0, TITLE_BAND).0, [128, 128, 128]);
    assert_eq!(a.get_pixel(x0 + 2, TITLE_BAND + 2).0, [255, 255, 255]);
    assert_eq!(b.get_pixel(2, TITLE_BAND + 2).0, [255, 255, 255]);
    std::fs::remove_dir_all(&d).unwrap();
}

/// Columns `x < 690` (the heat map's main area) of row `y` whose pixel is exactly `rgb`.
fn columns_with(img: &image::RgbImage, y: u32, rgb: [u8; 3]) -> Vec<u32> {
    (0..690).filter(|&x| img.get_pixel(x, y).0 == rgb).collect()
}

#[test]
fn heat_map_colours_cells_by_value_with_low_at_the_origin_and_a_colour_bar() {
    let d = dir("heat");
    let (nx, ny) = (40, 30);
    // values = the row index j: constant along x, increasing upwards.
    let values: Vec<f64> = (0..ny)
        .flat_map(|j| (0..nx).map(move |_| j as f64))
        .collect();
    let map = HeatMap::new("rows", "x", "y", (-1.0, 1.0), (0.0, 3.0), nx, ny, values)
        .unwrap()
        .with_value_label("row");
    assert_eq!(map.value_range(), (0.0, 29.0));
    let png = d.join("heat.png");
    heat_map(&png, &map).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (820, TITLE_BAND + 700));
    let (low, high) = (viridis(0.0), viridis(1.0));
    assert_eq!((low, high), ([68, 1, 84], [254, 232, 37]));
    // Along a vertical line through the plot area the lowest colour lies below the highest.
    let col = 350;
    let rows = |rgb: [u8; 3]| -> Vec<u32> {
        (0..img.height())
            .filter(|&y| img.get_pixel(col, y).0 == rgb)
            .collect()
    };
    let (lo_rows, hi_rows) = (rows(low), rows(high));
    assert!(!lo_rows.is_empty() && !hi_rows.is_empty());
    assert!(
        hi_rows.iter().max() < lo_rows.iter().min(),
        "high values at rows {hi_rows:?}, low at {lo_rows:?}"
    );
    // Cells are constant along x: a row through the plot area is one colour over its width.
    let mid = (lo_rows[0] + hi_rows[0]) / 2;
    let c = img.get_pixel(col, mid).0;
    assert!(columns_with(&img, mid, c).len() > 500, "row {mid}");
    // The colour bar right of the main area runs through both ends of the scale.
    let bar =
        |rgb: [u8; 3]| (0..img.height()).any(|y| (690..820).any(|x| img.get_pixel(x, y).0 == rgb));
    assert!(bar(low) && bar(high));

    // Values along x, with a scatter on top: low on the left.
    let values: Vec<f64> = (0..ny).flat_map(|_| (0..nx).map(|i| i as f64)).collect();
    let map = HeatMap::new("cols", "x", "y", (-1.0, 1.0), (0.0, 3.0), nx, ny, values)
        .unwrap()
        .with_overlay(
            Series::new("pts", vec![(0.0, 1.5)])
                .markers(5)
                .color([255, 0, 0]),
        );
    heat_map(&png, &map).unwrap();
    let img = image::open(&png).unwrap().to_rgb8();
    let y = TITLE_BAND + 150;
    let (l, h) = (columns_with(&img, y, low), columns_with(&img, y, high));
    assert!(!l.is_empty() && !h.is_empty());
    assert!(l.iter().max() < h.iter().min());
    let red = (0..img.height())
        .flat_map(|y| (0..690).map(move |x| (x, y)))
        .filter(|&(x, y)| img.get_pixel(x, y).0 == [255, 0, 0])
        .count();
    // One marker of radius 5 (about π·25 ≈ 79 pixels) plus its legend entry (radius 5).
    assert!((60..=260).contains(&red), "{red} red pixels");

    // SVG: the title and axis descriptions are text.
    let svg = d.join("heat.svg");
    heat_map(&svg, &map.clone().with_value_label("free energy")).unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    for t in ["cols", "free energy", "pts"] {
        assert!(text.contains(&format!(">\n{t}\n</text>")), "SVG lacks {t}");
    }
    // Typed errors: wrong value count, empty grid, bad range.
    let bad = |r: ppl_core::Result<HeatMap>| matches!(r, Err(PplError::InvalidConfig { .. }));
    assert!(bad(HeatMap::new(
        "",
        "",
        "",
        (0.0, 1.0),
        (0.0, 1.0),
        2,
        2,
        vec![0.0; 3]
    )));
    assert!(bad(HeatMap::new(
        "",
        "",
        "",
        (0.0, 1.0),
        (0.0, 1.0),
        0,
        2,
        vec![]
    )));
    assert!(bad(HeatMap::new(
        "",
        "",
        "",
        (1.0, 1.0),
        (0.0, 1.0),
        1,
        1,
        vec![0.0]
    )));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_marker_series_draws_circles_and_no_line() {
    let d = dir("markers");
    let pts = vec![(0.0, 0.0), (5.0, 1.0), (10.0, 0.5)];
    let count_red = |markers: u32| {
        let p = d.join(format!("m{markers}.png"));
        let s = Series::new("", pts.clone())
            .color([255, 0, 0])
            .markers(markers);
        line_chart(&p, "", &[Panel::new("", "x", "y").with_series(s)]).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        img.pixels().filter(|p| p.0 == [255, 0, 0]).count()
    };
    // Three filled circles of radius 4: about 3·π·16 ≈ 150 pixels; a 2-pixel line across
    // the ~800-pixel plot area would colour well over 1500.
    let (dots, line) = (count_red(4), count_red(0));
    assert!((90..=300).contains(&dots), "{dots} red pixels");
    assert!(line > 1000, "{line} red pixels of the line");
    std::fs::remove_dir_all(&d).unwrap();
}
