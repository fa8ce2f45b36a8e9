//! The named scenarios' plots, as SVG files: how long notes took to reach every member
//! (the share of notes held everywhere after a given time), the traffic and the notes still
//! on their way second by second, and what each relay stores.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::territory::{Report, Series};

/// Why a plot could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot create the plot directory {0}: {1}")]
    Directory(String, std::io::Error),
    #[error("cannot draw {0}: {1}")]
    Draw(String, String),
}

/// Draws the plots of one run into `dir`; the files written.
pub fn draw(dir: &Path, report: &Report, series: &Series) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(dir).map_err(|e| PlotError::Directory(dir.display().to_string(), e))?;
    let name = format!("{}-seed{}", report.scenario, report.seed);
    let mut drawn = Vec::new();
    let path = dir.join(format!("{name}-staleness.svg"));
    staleness(&path, report, series).map_err(|e| failed(&path, e))?;
    drawn.push(path);
    let path = dir.join(format!("{name}-traffic.svg"));
    traffic(&path, report, series).map_err(|e| failed(&path, e))?;
    drawn.push(path);
    if !series.relay_bytes.is_empty() {
        let path = dir.join(format!("{name}-relays.svg"));
        relays(&path, report, series).map_err(|e| failed(&path, e))?;
        drawn.push(path);
    }
    Ok(drawn)
}

fn failed(path: &Path, e: Box<dyn std::error::Error>) -> PlotError {
    PlotError::Draw(path.display().to_string(), e.to_string())
}

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// The share of notes every member held after a given time (a cumulative distribution),
/// on a logarithmic time axis.
fn staleness(path: &Path, report: &Report, series: &Series) -> Drawn {
    let mut times: Vec<f64> = series
        .staleness_ms
        .iter()
        .map(|ms| (*ms as f64 / 1000.0).max(0.001))
        .collect();
    times.sort_by(f64::total_cmp);
    let max = times.last().copied().unwrap_or(1.0).max(1.0) * 1.2;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let caption = format!(
        "{} (seed {}): notes held by every member of their circle",
        report.scenario, report.seed
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0.001f64..max).log_scale(), 0f64..100f64)?;
    chart
        .configure_mesh()
        .x_desc("time since the note was written (s, log scale)")
        .y_desc("notes held everywhere (%)")
        .draw()?;
    let n = times.len().max(1) as f64;
    let points = times
        .iter()
        .enumerate()
        .map(|(k, t)| (*t, (k + 1) as f64 * 100.0 / n));
    chart
        .draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?
        .label(format!(
            "{} notes: p50 {} ms, p99 {} ms, max {} ms",
            report.notes_written,
            report.staleness_ms.p50,
            report.staleness_ms.p99,
            report.staleness_ms.max
        ))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// At most this many points per line: a week of seconds is drawn as the busiest second of
/// each stretch.
const MAX_POINTS: usize = 1_500;

/// Messages per second and notes not yet everywhere, second by second from the first note
/// (the most of each stretch when the run is long).
fn traffic(path: &Path, report: &Report, series: &Series) -> Drawn {
    let stretch = series.seconds.len().div_ceil(MAX_POINTS).max(1);
    let most_of = |f: fn(&crate::territory::Second) -> u64| -> Vec<(f64, f64)> {
        series
            .seconds
            .chunks(stretch)
            .enumerate()
            .map(|(k, part)| {
                let top = part.iter().map(f).max().unwrap_or(0);
                ((k * stretch) as f64, top as f64)
            })
            .collect()
    };
    let root = SVGBackend::new(path, (900, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(310);
    let seconds = series.seconds.len().max(1) as f64;
    let caption = format!(
        "{} (seed {}): messages per second ({} bytes per note)",
        report.scenario, report.seed, report.bytes_per_note
    );
    let messages = most_of(|s| s.messages);
    over_time(
        &upper,
        (&caption, 20),
        seconds,
        "messages / s",
        messages,
        RED,
    )?;
    let caption = "notes not yet held by every member";
    let waiting = most_of(|s| s.waiting as u64);
    over_time(
        &lower,
        (caption, 18),
        seconds,
        "notes on their way",
        waiting,
        BLUE,
    )?;
    root.present()?;
    Ok(())
}

/// One line over the seconds since the first note, its axis up to 10 % above its highest
/// point.
fn over_time(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    (caption, size): (&str, u32),
    seconds: f64,
    y_desc: &str,
    points: Vec<(f64, f64)>,
    color: RGBColor,
) -> Drawn {
    let most = points.iter().map(|(_, y)| *y).fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", size))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..seconds, 0f64..most * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the first note")
        .y_desc(y_desc)
        .draw()?;
    chart.draw_series(LineSeries::new(points, color))?;
    Ok(())
}

/// The envelope bytes each relay holds at the end, in KiB.
fn relays(path: &Path, report: &Report, series: &Series) -> Drawn {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let most = series.relay_bytes.iter().copied().max().unwrap_or(1).max(1) as f64 / 1024.0;
    let count = series.relay_bytes.len() as u32;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{} (seed {}): what each relay stores (sealed envelopes, KiB)",
                report.scenario, report.seed
            ),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d((0u32..count).into_segmented(), 0f64..most * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("relay")
        .y_desc("KiB")
        .disable_x_mesh()
        .draw()?;
    chart.draw_series(
        Histogram::vertical(&chart)
            .style(GREEN.mix(0.7).filled())
            .margin(4)
            .data(
                series
                    .relay_bytes
                    .iter()
                    .enumerate()
                    .map(|(k, b)| (k as u32, *b as f64 / 1024.0)),
            ),
    )?;
    root.present()?;
    Ok(())
}
