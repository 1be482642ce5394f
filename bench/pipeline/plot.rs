//! The picture: throughput against answer size for orderwatch, the durable
//! floor and the Python reference, and peak memory against answer size.
//! SVG, drawn by plotters without fonts or C libraries.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Point;

const WIDTH: u32 = 960;
const HEIGHT: u32 = 400;

type Failure = Box<dyn std::error::Error>;

/// One line of a panel.
struct Series {
    name: &'static str,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

impl Series {
    fn new(
        name: &'static str,
        color: RGBColor,
        data: &[Point],
        y: impl Fn(&Point) -> f64,
    ) -> Series {
        Series {
            name,
            color,
            points: data.iter().map(|p| (p.orders as f64, y(p))).collect(),
        }
    }
}

pub fn draw(points: &[Point], path: &Path) -> Result<(), Failure> {
    if points.is_empty() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(WIDTH * 11 / 20);
    let rate = |s: f64, n: usize| if s > 0.0 { n as f64 / s / 1e6 } else { 0.0 };
    panel(
        &left,
        points,
        "new transitions recorded per second",
        "million per second",
        vec![
            Series::new("orderwatch run --once", BLUE, points, |p| {
                rate(p.orderwatch_s, p.orders)
            }),
            Series::new("durable floor", GREEN, points, |p| {
                rate(p.floor_s, p.orders)
            }),
            Series::new("Python reference", RED, points, |p| {
                rate(p.python_s, p.orders)
            }),
        ],
        SeriesLabelPosition::UpperRight,
    )?;
    panel(
        &right,
        points,
        "peak resident memory",
        "MiB",
        vec![
            Series::new("orderwatch", BLUE, points, |p| p.orderwatch_rss_mib),
            Series::new("Python reference", RED, points, |p| p.python_rss_mib),
        ],
        SeriesLabelPosition::UpperLeft,
    )?;
    root.present()?;
    Ok(())
}

/// One chart: `series` against the answer size (log scale).
fn panel(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    points: &[Point],
    caption: &str,
    y_desc: &str,
    series: Vec<Series>,
    legend: SeriesLabelPosition,
) -> Result<(), Failure> {
    let first = points.iter().map(|p| p.orders).min().unwrap_or(1) as f64;
    let last = points.iter().map(|p| p.orders).max().unwrap_or(1) as f64;
    let top = series
        .iter()
        .flat_map(|s| s.points.iter().map(|(_, y)| *y))
        .filter(|y| y.is_finite())
        .fold(0.0f64, f64::max)
        * 1.2;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d((first * 0.8..last * 1.25).log_scale(), 0.0..top.max(0.1))?;
    chart
        .configure_mesh()
        .x_desc("orders in the answer")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{:.0}k", x / 1000.0))
        .draw()?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(s.points.clone(), color.stroke_width(2)))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
        chart.draw_series(
            s.points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(legend)
        .draw()?;
    Ok(())
}
