//! The table page's chart, drawn on the server as inline SVG: rows exchanged per day as bars,
//! the lag at each day's end as a line on its own scale. No script, no fonts fetched.

use std::fmt::Write;

use super::views::Point;

const W: f64 = 720.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 56.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 36.0;

/// Escape text for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A round number at or above `v` (1, 2, 5 × 10ⁿ) for an axis's top.
fn nice(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * p)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * p)
}

/// Hours with one decimal, or minutes when under an hour.
fn lag_words(secs: f64) -> String {
    if secs >= 3600.0 {
        format!("{:.1}h", secs / 3600.0)
    } else {
        format!("{:.0}m", secs / 60.0)
    }
}

/// The chart of `points` (oldest first); `rows_label` and `lag_label` name the two scales.
pub fn svg(points: &[Point], rows_label: &str, lag_label: &str) -> String {
    let n = points.len().max(1) as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max_rows = nice(points.iter().map(|p| p.rows + p.deletes).max().unwrap_or(0) as f64);
    let max_lag = nice(
        points
            .iter()
            .filter_map(|p| p.lag_seconds)
            .max()
            .unwrap_or(0) as f64,
    );
    let slot = plot_w / n;
    let bar = (slot * 0.7).max(1.0);
    let y_rows = |v: f64| TOP + plot_h - v / max_rows * plot_h;
    let y_lag = |v: f64| TOP + plot_h - v / max_lag * plot_h;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" xmlns="http://www.w3.org/2000/svg" aria-label="{}">"#,
        esc(&format!("{rows_label} / {lag_label}"))
    );
    // Grid and scales: 0, half, top.
    for f in [0.0, 0.5, 1.0] {
        let y = TOP + plot_h - f * plot_h;
        let _ = write!(
            s,
            r#"<line class="grid" x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><text class="axis" x="{:.1}" y="{:.1}" text-anchor="end">{}</text><text class="axis lag" x="{:.1}" y="{:.1}">{}</text>"#,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            (max_rows * f).round() as i64,
            W - RIGHT + 6.0,
            y + 4.0,
            lag_words(max_lag * f)
        );
    }
    let label_every = ((n / 8.0).ceil() as usize).max(1);
    let mut line = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + slot * i as f64 + (slot - bar) / 2.0;
        let v = (p.rows + p.deletes) as f64;
        let y = y_rows(v);
        let _ = write!(
            s,
            r#"<rect class="bar" x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}"><title>{}: {} {}</title></rect>"#,
            TOP + plot_h - y,
            esc(&p.day),
            v as i64,
            esc(rows_label)
        );
        if let Some(l) = p.lag_seconds {
            line.push(format!("{:.1},{:.1}", x + bar / 2.0, y_lag(l as f64)));
        }
        if i % label_every == 0 {
            let _ = write!(
                s,
                r#"<text class="axis" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                x + bar / 2.0,
                H - BOTTOM + 16.0,
                esc(p.day.get(5..).unwrap_or(&p.day))
            );
        }
    }
    if !line.is_empty() {
        let _ = write!(
            s,
            r#"<polyline class="lag" fill="none" points="{}"/>"#,
            line.join(" ")
        );
        for pt in &line {
            if let Some((x, y)) = pt.split_once(',') {
                let _ = write!(s, r#"<circle class="lag" cx="{x}" cy="{y}" r="2.5"/>"#);
            }
        }
    }
    let _ = write!(
        s,
        r#"<text class="legend" x="{LEFT}" y="{:.1}">■ {}</text><text class="legend lag" x="{:.1}" y="{:.1}" text-anchor="end">● {}</text></svg>"#,
        H - 4.0,
        esc(rows_label),
        W - RIGHT,
        H - 4.0,
        esc(lag_label)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(day: &str, rows: i64, lag: Option<i64>) -> Point {
        Point {
            day: day.into(),
            batches: 1,
            rows,
            deletes: 0,
            lag_seconds: lag,
        }
    }

    #[test]
    fn bars_are_as_tall_as_their_rows() {
        let s = svg(
            &[p("2026-12-01", 50, Some(7200)), p("2026-12-02", 100, None)],
            "rows <x>",
            "lag",
        );
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"), "{s}");
        assert_eq!(s.matches("<rect class=\"bar\"").count(), 2);
        // The top of the scale is 100: the second bar fills the plot, the first half of it.
        let plot_h = H - TOP - BOTTOM;
        assert!(s.contains(&format!("height=\"{:.1}\"", plot_h)), "{s}");
        assert!(
            s.contains(&format!("height=\"{:.1}\"", plot_h / 2.0)),
            "{s}"
        );
        assert!(s.contains("rows &lt;x&gt;"), "text is escaped: {s}");
        // The lag's scale tops at 10,000 s (2.8h): 7,200 s stands at 72 % of the plot.
        assert!(s.contains(">2.8h<"), "{s}");
        let y = TOP + plot_h - 0.72 * plot_h;
        assert!(s.contains(&format!("points=\"208.0,{y:.1}\"")), "{s}");
    }

    #[test]
    fn scales_are_round() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(7.0), 10.0);
        assert_eq!(nice(120.0), 200.0);
        assert_eq!(nice(4500.0), 5000.0);
    }
}
