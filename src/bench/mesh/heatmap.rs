//! The mesh matrices as an SVG heatmap, written by hand: one panel per test, sources as rows,
//! targets as columns, each measured cell coloured on a viridis-like scale relative to the
//! best pair of that panel (brighter is better, whatever the figure's direction) and
//! labelled with its value; cells that did not run are hatched grey and say why. Text uses
//! the generic `sans-serif` family: no font is embedded or needed, the viewer draws it.

use std::fmt::Write as _;

use super::matrix::{Figure, MeshDoc, TestDoc, title};
use super::run::CellStatus;

const CELL_W: f64 = 118.0;
const CELL_H: f64 = 40.0;
const LEFT: f64 = 140.0;
const MARGIN: f64 = 16.0;
const TITLE_H: f64 = 46.0;
const HEAD_H: f64 = 24.0;
const LEGEND_H: f64 = 52.0;

/// Viridis at 5 stops, dark (worst) to bright (best).
const STOPS: [(u8, u8, u8); 5] = [
    (68, 1, 84),
    (59, 82, 139),
    (33, 145, 140),
    (94, 201, 98),
    (253, 231, 37),
];

/// The colour at `t` in 0..=1 (clamped), linearly between the stops.
fn colour(t: f64) -> (u8, u8, u8) {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    (mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// XML-escapes text content.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn panel_height(n: usize) -> f64 {
    TITLE_H + HEAD_H + n as f64 * CELL_H + LEGEND_H
}

/// The whole heatmap document.
pub fn svg(doc: &MeshDoc) -> String {
    let n = doc.agents.len();
    let width = LEFT + n as f64 * CELL_W + 2.0 * MARGIN;
    let height = MARGIN + doc.tests.len() as f64 * panel_height(n) + MARGIN;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif">
<defs><pattern id="hatch" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="8" height="8" fill="#e6e6e6"/><line x1="0" y1="0" x2="0" y2="8" stroke="#b0b0b0" stroke-width="3"/></pattern>
<linearGradient id="scale">{}</linearGradient></defs>
<rect width="100%" height="100%" fill="#ffffff"/>"##,
        STOPS
            .iter()
            .enumerate()
            .map(|(i, &c)| format!(
                r#"<stop offset="{}" stop-color="{}"/>"#,
                i as f64 / (STOPS.len() - 1) as f64,
                hex(c)
            ))
            .collect::<String>()
    );
    for (i, t) in doc.tests.iter().enumerate() {
        panel(&mut out, doc, t, MARGIN + i as f64 * panel_height(n));
    }
    out.push_str("</svg>\n");
    out
}

fn panel(out: &mut String, doc: &MeshDoc, t: &TestDoc, y0: f64) {
    let n = doc.agents.len();
    let values: Vec<f64> = t
        .pairs
        .iter()
        .filter(|p| p.status == CellStatus::Ok)
        .filter_map(|p| p.value)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    // Brightness 0..1, the best pair brightest: throughput and rate as a fraction of the best
    // pair's, latency as the best pair's over this one's, loss against the worst loss (at
    // least 1 %). Equal values look equal, however narrow the spread.
    let (scale, goodness): (String, Box<dyn Fn(f64) -> f64>) = match t.figure {
        Figure::LostPercent => {
            let worst = hi.max(1.0);
            (
                format!("bright: no loss, dark: {}", t.figure.format(worst)),
                Box::new(move |v| 1.0 - v / worst),
            )
        }
        f if f.higher_is_better() => (
            format!("colour: share of the best pair ({}), dark: 0", f.format(hi)),
            Box::new(move |v| if hi > 0.0 { v / hi } else { 1.0 }),
        ),
        f => (
            format!(
                "colour: best pair ({}) / this pair, bright: as fast as the best",
                f.format(lo)
            ),
            Box::new(move |v| if v > 0.0 { lo / v } else { 1.0 }),
        ),
    };
    let x0 = MARGIN;
    let _ = writeln!(
        out,
        r#"<text x="{x0}" y="{}" font-size="15" font-weight="bold">{}</text>"#,
        y0 + 18.0,
        esc(&title(t))
    );
    let _ = writeln!(
        out,
        r##"<text x="{x0}" y="{}" font-size="11" fill="#444">{}; rows: source, columns: target</text>"##,
        y0 + 35.0,
        esc(t.counted)
    );
    let gy = y0 + TITLE_H + HEAD_H;
    for (j, a) in doc.agents.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="middle">{}</text>"#,
            x0 + LEFT + (j as f64 + 0.5) * CELL_W,
            gy - 7.0,
            esc(&a.label)
        );
    }
    for (s, a) in doc.agents.iter().enumerate() {
        let y = gy + s as f64 * CELL_H;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" font-size="12" text-anchor="end">{}</text>"#,
            x0 + LEFT - 8.0,
            y + CELL_H / 2.0 + 4.0,
            esc(&a.label)
        );
        for d in 0..n {
            let x = x0 + LEFT + d as f64 * CELL_W;
            let pair = t
                .pairs
                .iter()
                .find(|p| p.source == a.address && p.target == doc.agents[d].address);
            let (fill, text, ink) = match pair {
                _ if s == d => ("#f4f4f4".to_string(), "—".to_string(), "#999999"),
                Some(p) if p.status == CellStatus::Ok && p.value.is_some() => {
                    let v = p.value.unwrap_or_default();
                    let g = goodness(v);
                    let ink = if g < 0.55 { "#ffffff" } else { "#000000" };
                    (hex(colour(g)), t.figure.format(v), ink)
                }
                Some(p) => (
                    "url(#hatch)".to_string(),
                    format!("✗ {}", p.status.mark()),
                    "#a00000",
                ),
                None => ("url(#hatch)".to_string(), "not run".to_string(), "#a00000"),
            };
            let _ = writeln!(
                out,
                r##"<rect x="{x}" y="{y}" width="{CELL_W}" height="{CELL_H}" fill="{fill}" stroke="#ffffff" stroke-width="2"/><text x="{}" y="{}" font-size="12" text-anchor="middle" fill="{ink}">{}</text>"##,
                x + CELL_W / 2.0,
                y + CELL_H / 2.0 + 4.0,
                esc(&text)
            );
        }
    }
    // Legend: the colour scale from the worst to the best value of this panel.
    let ly = gy + n as f64 * CELL_H + 14.0;
    let lw = (n as f64 * CELL_W).min(320.0);
    let lx = x0 + LEFT;
    if values.is_empty() {
        let _ = writeln!(
            out,
            r##"<text x="{lx}" y="{}" font-size="11" fill="#a00000">no pair measured</text>"##,
            ly + 12.0
        );
        return;
    }
    let _ = writeln!(
        out,
        r##"<rect x="{lx}" y="{ly}" width="{lw}" height="12" fill="url(#scale)"/><text x="{lx}" y="{}" font-size="11">{}</text>"##,
        ly + 26.0,
        esc(&scale)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_ends_and_escaping() {
        assert_eq!(colour(0.0), STOPS[0]);
        assert_eq!(colour(1.0), STOPS[4]);
        assert_eq!(colour(f64::NAN), STOPS[0]);
        assert_eq!(colour(7.0), STOPS[4]);
        assert_eq!(esc("a<b & c>"), "a&lt;b &amp; c&gt;");
    }
}
