//! Charts drawn on the server as SVG, readable at tablet width and by a screen reader
//! (`role="img"` with a title and a description): a horizontal bar chart for the activity
//! indicators, and a line chart of one sign over time for the patient's vital signs. No
//! script, no chart library.

use maud::{Markup, html};

/// One bar: its label, its length and the value written after it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub(crate) label: String,
    pub(crate) value: f64,
    pub(crate) shown: String,
}

const WIDTH: f64 = 640.0;
const LABEL: f64 = 190.0;
const VALUE: f64 = 80.0;
const ROW: f64 = 30.0;
const BAR: f64 = 20.0;

/// A horizontal bar chart; `id` names its title for `aria-labelledby`.
pub(crate) fn bars(id: &str, title: &str, description: &str, bars: &[Bar], empty: &str) -> Markup {
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    let height = ROW * bars.len().max(1) as f64 + 10.0;
    let room = WIDTH - LABEL - VALUE;
    html! {
        figure class="chart" {
            figcaption id=(id) { (title) }
            p class="muted" { (description) }
            @if bars.is_empty() {
                p { (empty) }
            } @else {
                svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby=(id)
                    viewBox=(format!("0 0 {WIDTH} {height}")) width="100%" {
                    title { (title) }
                    desc { (description) }
                    @for (i, b) in bars.iter().enumerate() {
                        @let y = 5.0 + ROW * i as f64;
                        @let length = if max > 0.0 { (b.value / max * room).max(2.0) } else { 2.0 };
                        text x=(LABEL - 8.0) y=(y + BAR * 0.75) text-anchor="end" class="chart-label" {
                            (b.label)
                        }
                        rect x=(LABEL) y=(y) width=(format!("{length:.1}")) height=(BAR) rx="3" class="chart-bar" {}
                        text x=(LABEL + length + 6.0) y=(y + BAR * 0.75) class="chart-value" { (b.shown) }
                    }
                }
            }
        }
    }
}

/// One measurement on a trend: when, its values (blood pressure: two lines), and the
/// words a pointer or a screen reader gets for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub(crate) at: i64,
    pub(crate) values: Vec<f64>,
    pub(crate) label: String,
}

/// What a trend chart shows besides its points, already in the page's language.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Trend<'a> {
    pub(crate) id: &'a str,
    pub(crate) title: &'a str,
    /// The latest value, written out under the title.
    pub(crate) summary: &'a str,
    /// How the lowest and highest value, first and last date, are written.
    pub(crate) low_high: (&'a str, &'a str),
    pub(crate) first_last: (&'a str, &'a str),
}

const TREND_WIDTH: f64 = 340.0;
const TREND_HEIGHT: f64 = 130.0;
const TREND_LEFT: f64 = 44.0;
const TREND_BOTTOM: f64 = 20.0;

/// A line chart of one sign over time, the oldest point on the left; each line is one of
/// the point's values (systolic, diastolic).
pub(crate) fn trend(t: &Trend<'_>, points: &[Point]) -> Markup {
    let (first, last) = match (points.first(), points.last()) {
        (Some(f), Some(l)) => (f.at as f64, l.at as f64),
        _ => return html! {},
    };
    let all = points.iter().flat_map(|p| p.values.iter().copied());
    let (low, high) = all.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let pad = ((high - low) * 0.1).max(0.5);
    let (low, high) = (low - pad, high + pad);
    let room_x = TREND_WIDTH - TREND_LEFT - 16.0;
    let room_y = TREND_HEIGHT - TREND_BOTTOM - 10.0;
    let x = |at: i64| {
        if last > first {
            TREND_LEFT + (at as f64 - first) / (last - first) * room_x
        } else {
            TREND_LEFT + room_x / 2.0
        }
    };
    let y = |v: f64| 10.0 + (high - v) / (high - low) * room_y;
    let lines = points.iter().map(|p| p.values.len()).max().unwrap_or(0);
    let caption = format!("{}-title", t.id);
    html! {
        figure class="chart trend" id=(t.id) {
            figcaption id=(caption) { (t.title) }
            p class="trend-last" { (t.summary) }
            svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby=(caption)
                viewBox=(format!("0 0 {TREND_WIDTH} {TREND_HEIGHT}")) width="100%" {
                title { (t.title) " — " (t.summary) }
                text x=(TREND_LEFT - 6.0) y="18" text-anchor="end" class="chart-label" { (t.low_high.1) }
                @if t.low_high.0 != t.low_high.1 {
                    text x=(TREND_LEFT - 6.0) y=(TREND_HEIGHT - TREND_BOTTOM) text-anchor="end" class="chart-label" { (t.low_high.0) }
                }
                line x1=(TREND_LEFT) y1="10" x2=(TREND_LEFT) y2=(TREND_HEIGHT - TREND_BOTTOM) class="chart-axis" {}
                text x=(TREND_LEFT) y=(TREND_HEIGHT - 4.0) class="chart-label" { (t.first_last.0) }
                @if t.first_last.0 != t.first_last.1 {
                    text x=(TREND_WIDTH - 16.0) y=(TREND_HEIGHT - 4.0) text-anchor="end" class="chart-label" { (t.first_last.1) }
                }
                @for line in 0..lines {
                    @let path: Vec<String> = points.iter()
                        .filter_map(|p| p.values.get(line).map(|v| format!("{:.1},{:.1}", x(p.at), y(*v))))
                        .collect();
                    polyline points=(path.join(" ")) class=(format!("trend-line trend-line-{line}")) {}
                }
                @for p in points {
                    @for (line, v) in p.values.iter().enumerate() {
                        circle cx=(format!("{:.1}", x(p.at))) cy=(format!("{:.1}", y(*v))) r="4"
                            class=(format!("trend-point trend-line-{line}")) {
                            title { (p.label) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(label: &str, value: f64) -> Bar {
        Bar {
            label: label.into(),
            value,
            shown: value.to_string(),
        }
    }

    #[test]
    fn the_longest_bar_fills_the_room_and_the_others_scale_to_it() {
        let svg = bars("t", "Notes", "d", &[bar("a", 10.0), bar("b", 5.0)], "none").into_string();
        assert!(svg.contains(r#"width="370.0""#), "{svg}");
        assert!(svg.contains(r#"width="185.0""#), "{svg}");
        assert!(svg.contains("role=\"img\""));
    }

    #[test]
    fn no_bars_says_so_and_zero_values_stay_visible() {
        let svg = bars("t", "Notes", "d", &[], "Pas encore de données.").into_string();
        assert!(svg.contains("Pas encore de données.") && !svg.contains("<svg"));
        let svg = bars("t", "Notes", "d", &[bar("a", 0.0)], "x").into_string();
        assert!(svg.contains(r#"width="2.0""#), "{svg}");
    }

    fn point(at: i64, values: &[f64]) -> Point {
        Point {
            at,
            values: values.to_vec(),
            label: format!("{values:?}"),
        }
    }

    fn words() -> Trend<'static> {
        Trend {
            id: "trend-hr",
            title: "Fréquence cardiaque (/min)",
            summary: "84",
            low_high: ("60", "90"),
            first_last: ("01/12", "02/12"),
        }
    }

    #[test]
    fn a_trend_runs_from_the_oldest_point_on_the_left_to_the_newest_on_the_right() {
        let svg = trend(&words(), &[point(0, &[60.0]), point(10, &[90.0])]).into_string();
        // Left edge at the lowest value (padded by a tenth of the range), right edge at
        // the highest.
        assert!(svg.contains(r#"points="44.0,101.7 324.0,18.3""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("role=\"img\""));
    }

    #[test]
    fn blood_pressure_draws_two_lines_and_one_point_is_centred() {
        let svg = trend(&words(), &[point(5, &[132.0, 78.0])]).into_string();
        assert!(
            svg.contains("trend-line-0") && svg.contains("trend-line-1"),
            "{svg}"
        );
        assert!(svg.contains(r#"cx="184.0""#), "{svg}");
        assert_eq!(trend(&words(), &[]).into_string(), "");
    }

    #[test]
    fn labels_are_escaped() {
        let svg = bars("t", "Notes", "d", &[bar("<script>", 1.0)], "x").into_string();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
