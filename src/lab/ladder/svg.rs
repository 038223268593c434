//! A ladder as an inline SVG for the HTML report: lifelines under each column's label, the
//! time in milliseconds on the left, calls as dots (red when the call failed), packets as
//! arrows with their flags (each a group with the id `PREFIX-fN`, N its frame number in the
//! pcap, so the evidence can link to it), `ss` states as green diamonds, and each row's note
//! on the right. No scripts, no external fonts: generic `monospace` and `sans-serif` only.

use std::fmt::Write as _;

use super::{Ladder, Rung, note};
use crate::lab::html::escape;

const LEFT: f64 = 78.0;
const TOP: f64 = 64.0;
const ROW: f64 = 18.0;
/// Approximate advance of a 12 px monospace character, to size the notes' area.
const CHAR: f64 = 7.3;
/// Approximate advance of an 11 px monospace character (column labels).
const LABEL_CHAR: f64 = 6.6;
/// Height of a legend line.
const LEGEND_ROW: f64 = 14.0;

/// The id of the arrow of frame `frame` in the ladder drawn with `prefix`.
pub fn frame_id(prefix: &str, frame: usize) -> String {
    format!("{prefix}-f{frame}")
}

/// The ladder as one `<svg>` element, its scenes ([`Ladder::scenes`]) one below the other;
/// `prefix` makes its ids unique in the page.
pub fn draw(l: &Ladder, prefix: &str) -> String {
    let scenes: Vec<(String, f64, f64)> = l.scenes().iter().map(|sc| scene(sc, prefix)).collect();
    let width = scenes.iter().map(|s| s.1).fold(0.0, f64::max);
    let height: f64 = scenes.iter().map(|s| s.2).sum();
    let mut s = format!(
        r#"<svg class="ladder" xmlns="http://www.w3.org/2000/svg" id="{p}" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" role="img" aria-label="packet ladder {p}">"#,
        p = escape(prefix)
    );
    let mut y = 0.0;
    for (k, (body, _, h)) in scenes.iter().enumerate() {
        if k > 0 {
            let _ = write!(
                s,
                r#"<line x1="0" y1="{y:.1}" x2="{width:.0}" y2="{y:.1}" class="scene"/>"#
            );
        }
        let _ = write!(s, r#"<g transform="translate(0,{y:.1})">{body}</g>"#);
        y += h;
    }
    s.push_str("</svg>");
    s
}

/// One scene's drawing, its width and its height.
fn scene(l: &Ladder, prefix: &str) -> (String, f64, f64) {
    let n = l.columns.len().max(1);
    let gap = if n == 1 {
        160.0
    } else {
        (700.0 / (n - 1) as f64).clamp(64.0, 170.0)
    };
    let x = |c: usize| LEFT + 40.0 + c as f64 * gap;
    let band_right = x(n - 1) + 40.0;
    let note_x = band_right + 16.0;
    let longest = l
        .rows
        .iter()
        .map(|r| note(&r.rung).chars().count())
        .max()
        .unwrap_or(0);
    let width = note_x + longest as f64 * CHAR + 16.0;
    let height = TOP + l.rows.len() as f64 * ROW + 16.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" class="lt" text-anchor="end">ms</text>"#,
        LEFT - 8.0,
        TOP - 10.0
    );
    // Labels: the letter, then the address; every other one lower when they would overlap;
    // when even that overlaps, letters only, with a legend above the drawing.
    let widest = (0..l.columns.len())
        .map(|i| l.columns[i].label.chars().count())
        .max()
        .unwrap_or(0) as f64
        * LABEL_CHAR;
    let legend = widest > 2.0 * gap - 8.0;
    for i in 0..l.columns.len() {
        let y = if widest > gap - 8.0 && i % 2 == 1 {
            40.0
        } else {
            26.0
        };
        let label = if legend {
            String::new()
        } else {
            format!(
                r#"<text x="{:.1}" y="{y:.1}" class="la" text-anchor="middle">{}</text>"#,
                x(i),
                escape(&l.columns[i].label)
            )
        };
        let _ = write!(
            s,
            r#"<g><title>{title}</title><text x="{cx:.1}" y="12" class="lc" text-anchor="middle">{letter}</text>{label}</g><line x1="{cx:.1}" y1="{top:.1}" x2="{cx:.1}" y2="{bottom:.1}" class="life"/>"#,
            title = escape(&l.legend(i)),
            cx = x(i),
            letter = Ladder::letter(i),
            top = TOP - 14.0,
            bottom = height - 8.0,
        );
    }
    for (k, r) in l.rows.iter().enumerate() {
        let y = TOP + k as f64 * ROW;
        let time = match r.rung {
            Rung::Folded { .. } => String::new(),
            _ => format!("{:.3}", r.at.as_secs_f64() * 1e3),
        };
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lt" text-anchor="end">{time}</text>"#,
            LEFT - 8.0,
            y + 4.0
        );
        let text_class = match &r.rung {
            Rung::Call { failed: true, .. } | Rung::Return { failed: true, .. } => "nf",
            Rung::State { .. } => "ns",
            Rung::Packet { .. } => "np",
            Rung::Folded { .. } => "nx",
            _ => "nc",
        };
        let body = match &r.rung {
            Rung::Call { col, failed, .. } | Rung::Return { col, failed, .. } => format!(
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4" class="{}"/>"#,
                x(*col),
                if *failed { "cf" } else { "cc" }
            ),
            Rung::State { col, .. } => {
                let cx = x(*col);
                format!(
                    r#"<polygon points="{:.1},{y:.1} {cx:.1},{:.1} {:.1},{y:.1} {cx:.1},{:.1}" class="st"/>"#,
                    cx - 5.0,
                    y - 5.0,
                    cx + 5.0,
                    y + 5.0
                )
            }
            Rung::Packet {
                from,
                to,
                label,
                line,
                frame,
            } => packet(x(*from), x(*to), y, label, line, &frame_id(prefix, *frame)),
            Rung::Folded { .. } => format!(
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{band_right:.1}" y2="{y:.1}" class="fold"/>"#,
                LEFT
            ),
        };
        s.push_str(&body);
        let _ = write!(
            s,
            r#"<text x="{note_x:.1}" y="{:.1}" class="{text_class}">{}</text>"#,
            y + 4.0,
            escape(&note(&r.rung))
        );
    }
    if legend {
        let lines: Vec<String> = (0..l.columns.len())
            .map(|i| format!("{} = {}", Ladder::letter(i), l.legend(i)))
            .collect();
        let above = lines.len() as f64 * LEGEND_ROW + 8.0;
        let mut head = String::new();
        for (k, line) in lines.iter().enumerate() {
            let _ = write!(
                head,
                r#"<text x="8" y="{:.1}" class="la">{}</text>"#,
                12.0 + k as f64 * LEGEND_ROW,
                escape(line)
            );
        }
        let longest = lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) as f64;
        let _ = write!(head, r#"<g transform="translate(0,{above:.1})">{s}"#);
        s = head;
        return (
            s + "</g>",
            width.max(16.0 + longest * LABEL_CHAR),
            height + above,
        );
    }
    (s, width, height)
}

/// One packet's arrow from `x1` to `x2` at height `y`, coloured by protocol, with its label
/// above and its wire line as a tooltip.
fn packet(x1: f64, x2: f64, y: f64, label: &str, line: &str, id: &str) -> String {
    let class = if line.starts_with("ICMP") {
        "pi"
    } else if label.contains("RST") {
        "pr"
    } else if line.starts_with("UDP") {
        "pu"
    } else {
        "pt"
    };
    let mut s = format!(
        r#"<g id="{}" class="{class}"><title>{}</title>"#,
        escape(id),
        escape(line)
    );
    if (x1 - x2).abs() < 1.0 {
        let _ = write!(
            s,
            r#"<path d="M{x1:.1},{:.1} h14 v8 h-10" fill="none"/><polygon points="{x1:.1},{:.1} {:.1},{:.1} {:.1},{:.1}"/>"#,
            y - 4.0,
            y + 4.0,
            x1 + 6.0,
            y + 1.0,
            x1 + 6.0,
            y + 7.0
        );
    } else {
        let dir = if x2 > x1 { 1.0 } else { -1.0 };
        let tip = x2 - dir * 2.0;
        let _ = write!(
            s,
            r#"<line x1="{x1:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}"/><polygon points="{tip:.1},{y:.1} {:.1},{:.1} {:.1},{:.1}"/>"#,
            tip - dir * 6.0,
            tip - dir * 8.0,
            y - 4.0,
            tip - dir * 8.0,
            y + 4.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{:.1}" y="{:.1}" class="pl" text-anchor="middle">{}</text></g>"#,
        (x1 + x2) / 2.0 + if (x1 - x2).abs() < 1.0 { 30.0 } else { 0.0 },
        y - 3.0,
        escape(label)
    );
    s
}

/// The CSS the SVG's classes need, for the page's `<style>`.
pub const STYLE: &str =
    "svg.ladder{background:#fff;font-family:ui-monospace,monospace;font-size:12px}
svg.ladder .lc{font-weight:bold;font-size:13px;fill:#111}
svg.ladder .la{font-size:11px;fill:#333}
svg.ladder .lt{font-size:11px;fill:#777}
svg.ladder .life{stroke:#bbb;stroke-width:1.5}
svg.ladder .cc{fill:#2563eb}
svg.ladder .cf{fill:#dc2626}
svg.ladder .st{fill:#16a34a}
svg.ladder .fold{stroke:#999;stroke-dasharray:4 4}
svg.ladder .scene{stroke:#d1d5db;stroke-width:1}
svg.ladder g.pt line,svg.ladder g.pt path{stroke:#111}
svg.ladder g.pt polygon,svg.ladder g.pt text{fill:#111}
svg.ladder g.pr line,svg.ladder g.pr path{stroke:#dc2626}
svg.ladder g.pr polygon,svg.ladder g.pr text{fill:#dc2626}
svg.ladder g.pu line,svg.ladder g.pu path{stroke:#7c3aed}
svg.ladder g.pu polygon,svg.ladder g.pu text{fill:#7c3aed}
svg.ladder g.pi line,svg.ladder g.pi path{stroke:#ea580c}
svg.ladder g.pi polygon,svg.ladder g.pi text{fill:#ea580c}
svg.ladder g line{stroke-width:1.5}
svg.ladder .pl{font-size:10px}
svg.ladder g:target line{stroke-width:4}
svg.ladder .nc{fill:#1e3a8a}
svg.ladder .nf{fill:#b91c1c}
svg.ladder .ns{fill:#15803d;font-weight:bold}
svg.ladder .np{fill:#374151}
svg.ladder .nx{fill:#6b7280;font-style:italic}
";
