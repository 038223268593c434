//! A small hand-written SVG writer (no font libraries: text is left to the viewer): throughput
//! over time per test (from the interval samples) and the rr latency CDF.

use std::fmt::Write as _;

use super::TestOutcome;
use super::protocol::{Dir, Transport};
use super::stats::bits_per_second;

const W: f64 = 900.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 40.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

struct Series {
    label: String,
    points: Vec<(f64, f64)>,
}

fn label(o: &TestOutcome, dir: Dir) -> String {
    let t = match o.params.transport {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    format!("{t} {} B {:?}", o.params.size, dir).to_string()
}

/// Throughput series (Mbit/s over seconds), summed over the streams of each direction.
fn throughput(outcomes: &[TestOutcome]) -> Vec<Series> {
    let mut out = Vec::new();
    // Round-trip tests have no interval samples (their answering side samples nothing), so
    // only flows make series.
    for o in outcomes {
        for dir in [Dir::Up, Dir::Down] {
            let mut by_end: Vec<(u64, u64, u64)> = Vec::new(); // (end, start, bytes)
            for (d, s) in &o.samples {
                if *d != dir {
                    continue;
                }
                match by_end
                    .iter_mut()
                    .find(|(e, _, _)| e.abs_diff(s.end_ns) < 5_000_000)
                {
                    Some(x) => x.2 += s.bytes,
                    None => by_end.push((s.end_ns, s.start_ns, s.bytes)),
                }
            }
            if by_end.is_empty() {
                continue;
            }
            by_end.sort();
            let points = by_end
                .iter()
                .map(|&(e, s, b)| (e as f64 / 1e9, bits_per_second(b, e - s.min(e)) / 1e6))
                .collect();
            out.push(Series {
                label: label(o, dir),
                points,
            });
        }
    }
    out
}

/// Latency CDF series (µs, percentile).
fn cdfs(outcomes: &[TestOutcome]) -> Vec<Series> {
    outcomes
        .iter()
        .filter_map(|o| {
            let rr = o.rr.as_ref()?;
            (rr.count > 0).then(|| Series {
                label: label(o, Dir::Up).replace(" Up", " rr"),
                points: rr
                    .cdf
                    .iter()
                    .map(|&(q, ns)| (ns as f64 / 1000.0, q))
                    .collect(),
            })
        })
        .collect()
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// Draws one panel. With `logx`, x values are plotted on a log10 axis with a tick per decade.
fn panel(
    svg: &mut String,
    y0: f64,
    title: &str,
    (xl, yl): (&str, &str),
    series: &[Series],
    logx: bool,
) {
    let (pw, ph) = (W - LEFT - RIGHT, PANEL_H - 90.0);
    let xs = || series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (xmin, xmax) = if logx {
        let lo = xs().filter(|x| *x > 0.0).fold(f64::MAX, f64::min);
        let hi = xs().fold(0.0, f64::max);
        if hi <= 0.0 {
            (0.0, 1.0)
        } else {
            (
                lo.log10().floor(),
                hi.log10().ceil().max(lo.log10().floor() + 1.0),
            )
        }
    } else {
        (0.0, nice_max(xs().fold(0.0, f64::max)))
    };
    let xpos = |x: f64| {
        let v = if logx { x.max(1e-9).log10() } else { x };
        LEFT + (v - xmin) / (xmax - xmin) * pw
    };
    let ymax = nice_max(
        series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let (x0, yb) = (LEFT, y0 + TOP + ph);
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="16" font-family="sans-serif" text-anchor="middle">{title}</text>"#,
        LEFT + pw / 2.0,
        y0 + 24.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{x0}" y="{}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##,
        y0 + TOP
    );
    for i in 0..=5 {
        let f = i as f64 / 5.0;
        let (gx, gy) = (x0 + f * pw, yb - f * ph);
        let _ = writeln!(
            svg,
            r##"<line x1="{x0}" y1="{gy}" x2="{}" y2="{gy}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" font-family="sans-serif" text-anchor="end">{}</text>"##,
            x0 + pw,
            x0 - 6.0,
            gy + 4.0,
            fmt(f * ymax)
        );
        if !logx {
            let _ = writeln!(
                svg,
                r##"<text x="{gx}" y="{}" font-size="11" font-family="sans-serif" text-anchor="middle">{}</text>"##,
                yb + 16.0,
                fmt(f * xmax)
            );
        }
    }
    if logx {
        let mut d = xmin;
        while d <= xmax {
            let gx = LEFT + (d - xmin) / (xmax - xmin) * pw;
            let _ = writeln!(
                svg,
                r##"<line x1="{gx}" y1="{}" x2="{gx}" y2="{yb}" stroke="#eee"/><text x="{gx}" y="{}" font-size="11" font-family="sans-serif" text-anchor="middle">{}</text>"##,
                y0 + TOP,
                yb + 16.0,
                fmt(10f64.powf(d))
            );
            d += 1.0;
        }
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" font-size="12" font-family="sans-serif" text-anchor="middle">{xl}</text>"#,
        x0 + pw / 2.0,
        yb + 36.0
    );
    let _ = writeln!(
        svg,
        r#"<text x="18" y="{}" font-size="12" font-family="sans-serif" text-anchor="middle" transform="rotate(-90 18 {})">{yl}</text>"#,
        y0 + TOP + ph / 2.0,
        y0 + TOP + ph / 2.0
    );
    if series.is_empty() {
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" font-family="sans-serif" text-anchor="middle" fill="#888">no data</text>"##,
            x0 + pw / 2.0,
            y0 + TOP + ph / 2.0
        );
    }
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        let pts: Vec<String> = s
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", xpos(x), yb - y / ymax * ph))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#,
            pts.join(" ")
        );
        let ly = y0 + TOP + 10.0 + i as f64 * 18.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{c}" stroke-width="3"/><text x="{}" y="{}" font-size="12" font-family="sans-serif">{}</text>"#,
            x0 + pw + 12.0,
            x0 + pw + 32.0,
            x0 + pw + 38.0,
            ly + 4.0,
            s.label
        );
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// The SVG document: throughput over time and the latency CDF (log scale), each panel only
/// when there is data for it (the throughput panel says "no data" when neither has any).
pub fn svg(outcomes: &[TestOutcome]) -> String {
    let (tp, cdf) = (throughput(outcomes), cdfs(outcomes));
    let show_tp = !tp.is_empty() || cdf.is_empty();
    let panels = usize::from(show_tp) + usize::from(!cdf.is_empty());
    let h = panels as f64 * PANEL_H;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}"><rect width="100%" height="100%" fill="white"/>"#
    );
    s.push('\n');
    let mut y = 0.0;
    if show_tp {
        let title = "Throughput over time (receiver side, per interval: use -i)";
        panel(&mut s, y, title, ("time (s)", "Mbit/s"), &tp, false);
        y += PANEL_H;
    }
    if !cdf.is_empty() {
        let title = "rr round-trip latency CDF";
        panel(
            &mut s,
            y,
            title,
            ("round trip (us, log scale)", "percentile"),
            &cdf,
            true,
        );
    }
    s.push_str("</svg>\n");
    s
}
