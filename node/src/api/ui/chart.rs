//! Activity indicators drawn on the server as SVG: one horizontal bar chart, labelled on
//! the left and valued on the right, readable at tablet width and by a screen reader
//! (`role="img"` with a title and a description). No script, no chart library.

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

    #[test]
    fn labels_are_escaped() {
        let svg = bars("t", "Notes", "d", &[bar("<script>", 1.0)], "x").into_string();
        assert!(!svg.contains("<script>") && svg.contains("&lt;script&gt;"));
    }
}
