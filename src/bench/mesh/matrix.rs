//! The mesh's results as documents: one JSON document (a `meta` block, the agents, every
//! pair's full rows, the fleet's merged latency), the matrix table (sources × targets) of one
//! figure with its unit, Markdown, CSV, and the comparison with a baseline document (a
//! previous run's JSON). Every float is finite; a pair that did not run has no value, and its
//! status says why.

use std::fmt::Write as _;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::run::{CellStatus, TestMatrix};
use super::wire::HistogramWire;
use crate::bench::kind;
use crate::bench::protocol::{TestKind, Transport};
use crate::bench::report::{self, Meta, Row};
use crate::bench::sender::new_histogram;
use crate::bench::{RrSummary, TestOutcome};

/// The figure a matrix shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Figure {
    /// Goodput, bits per second, counted by the receiving agent.
    BitsPerSecond,
    /// Datagrams (UDP) or complete `-l`-byte messages (TCP) per second, at the receiving agent.
    PacketsPerSecond,
    /// UDP datagrams lost, percent of those sent (sender's count − receiver's unique count).
    LostPercent,
    /// Median round trip of `rr` (or of the latency-under-load probes), µs, measured by the requesting (source) agent.
    RttP50Us,
    /// 99th percentile round trip of `rr` (or of the latency-under-load probes), µs, measured by the source agent.
    RttP99Us,
}

impl Figure {
    /// The natural figure of a test kind ([`Kind::matrix_figure`](crate::bench::kind::Kind::matrix_figure)).
    pub fn default_for(kind: TestKind) -> Self {
        kind::of(kind).matrix_figure()
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Self::BitsPerSecond => "bit/s",
            Self::PacketsPerSecond => "packets/s",
            Self::LostPercent => "%",
            Self::RttP50Us | Self::RttP99Us => "µs",
        }
    }

    /// What the values count and where they were counted.
    pub fn describe(self) -> &'static str {
        match self {
            Self::BitsPerSecond => "goodput in bit/s, counted by the receiving (target) agent",
            Self::PacketsPerSecond => "packets/s, counted by the receiving (target) agent",
            Self::LostPercent => {
                "UDP datagrams lost in %, sent (source's count) minus received (target's count)"
            }
            Self::RttP50Us => "median round trip in µs, timed by the requesting (source) agent",
            Self::RttP99Us => "99th percentile round trip in µs, timed by the source agent",
        }
    }

    /// Whether a higher value is better (for the baseline comparison and the heatmap's colours).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::BitsPerSecond | Self::PacketsPerSecond)
    }

    /// The figure of one finished test (None: the test has no such figure).
    pub fn value(self, o: &TestOutcome) -> Option<f64> {
        let row = report::rows(o).into_iter().next();
        match self {
            Self::BitsPerSecond => row.map(|r| r.bits_per_second),
            Self::PacketsPerSecond => row.map(|r| r.packets_per_second),
            // Only a UDP flow's row accounts for lost datagrams (round-trip kinds count
            // their lost requests in the latency).
            Self::LostPercent => row
                .filter(|r| r.loss_by_place.is_some())
                .map(|r| r.lost_percent),
            Self::RttP50Us => o.rr.as_ref().map(|r| r.p50_ns as f64 / 1e3),
            Self::RttP99Us => o.rr.as_ref().map(|r| r.p99_ns as f64 / 1e3),
        }
    }

    /// A value for a table cell, with its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Self::BitsPerSecond => report::human_bps(v),
            Self::PacketsPerSecond => format!("{:.0} pkt/s", v),
            Self::LostPercent => format!("{v:.2} %"),
            Self::RttP50Us | Self::RttP99Us => format!("{v:.1} µs"),
        }
    }
}

/// An agent as the documents name it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentDoc {
    /// Control address.
    pub address: SocketAddr,
    /// Short label for tables (the IP alone when every agent uses the same port).
    pub label: String,
    /// Host name the agent reported (pod or node name), once it ran a test as a source.
    pub host: Option<String>,
}

/// One pair in the JSON document.
#[derive(Debug, Clone, Serialize)]
pub struct PairDoc {
    /// Source agent's address.
    pub source: SocketAddr,
    /// Target agent's address.
    pub target: SocketAddr,
    /// Round (or batch) it ran in, from 0.
    pub round: usize,
    /// How it ended.
    pub status: CellStatus,
    /// Why it did not end well.
    pub error: Option<String>,
    /// The matrix figure (None when the pair did not run or has no such figure).
    pub value: Option<f64>,
    /// The full rows, as `bench client --json` reports them.
    pub rows: Vec<Row>,
    /// rr and probe: latency summarised from the pair's histogram.
    pub latency: Option<RrSummary>,
    /// rr and probe: the pair's histogram itself, as the source agent shipped it, for merging
    /// with other pairs or runs (merge buckets, never average percentiles).
    pub histogram: Option<HistogramWire>,
}

/// One test over the whole fleet.
#[derive(Debug, Clone, Serialize)]
pub struct TestDoc {
    /// Test kind.
    pub test: TestKind,
    /// Transport.
    pub transport: Transport,
    /// Payload size.
    pub size_bytes: usize,
    /// Duration of each pair's test.
    pub duration_ms: u64,
    /// Probe tests (latency-under-load): whether a bulk stream ran beside the probes; None
    /// for other tests.
    pub under_load: Option<bool>,
    /// The matrix figure.
    pub figure: Figure,
    /// Its unit.
    pub unit: &'static str,
    /// What it counts and where.
    pub counted: &'static str,
    /// rr and probe: every pair's histogram merged (never an average of percentiles).
    pub fleet_latency: Option<RrSummary>,
    /// Every ordered pair.
    pub pairs: Vec<PairDoc>,
}

/// Pairs measured and not.
#[derive(Debug, Clone, Serialize)]
pub struct SummaryDoc {
    /// Ordered pairs × tests scheduled.
    pub pairs: usize,
    /// Measured.
    pub ok: usize,
    /// Not measured (see each pair's status).
    pub not_ok: usize,
}

/// The whole mesh run.
#[derive(Debug, Clone, Serialize)]
pub struct MeshDoc {
    /// socklab, kernel, CPUs, start, parameters.
    pub meta: Meta,
    /// The agents, in the order of the matrices' rows and columns.
    pub agents: Vec<AgentDoc>,
    /// One entry per test.
    pub tests: Vec<TestDoc>,
    /// Counts.
    pub summary: SummaryDoc,
}

/// Labels for agents: the IP alone when all share a port, else the whole address.
fn labels(agents: &[SocketAddr]) -> Vec<String> {
    let same_port = agents.windows(2).all(|w| w[0].port() == w[1].port());
    agents
        .iter()
        .map(|a| {
            if same_port {
                a.ip().to_string()
            } else {
                a.to_string()
            }
        })
        .collect()
}

/// Builds the document. `figure` None: each test's natural figure.
pub fn document(
    meta: Meta,
    agents: &[SocketAddr],
    figure: Option<Figure>,
    matrices: &[TestMatrix],
) -> MeshDoc {
    let mut docs_agents: Vec<AgentDoc> = agents
        .iter()
        .zip(labels(agents))
        .map(|(&address, label)| AgentDoc {
            address,
            label,
            host: None,
        })
        .collect();
    let mut tests = Vec::new();
    let (mut total, mut ok) = (0, 0);
    for m in matrices {
        let fig = figure.unwrap_or(Figure::default_for(m.params.kind));
        let under_load = kind::under_load(&m.params, m.load.is_some());
        let mut fleet = kind::of(m.params.kind).round_trips().then(new_histogram);
        let mut lost = 0;
        let pairs = m
            .cells
            .iter()
            .map(|c| {
                total += 1;
                if c.status == CellStatus::Ok {
                    ok += 1;
                }
                if let (Some(h), Some(a)) = (&c.agent_host, docs_agents.get_mut(c.source)) {
                    a.host = Some(h.clone());
                }
                if let (Some(all), Some(h)) = (
                    fleet.as_mut(),
                    c.outcome.as_ref().and_then(|o| o.rr_histogram.as_ref()),
                ) {
                    // Same bounds and precision on both sides: add cannot fail.
                    let _ = all.add(h);
                }
                lost += c
                    .outcome
                    .as_ref()
                    .and_then(|o| o.rr.as_ref())
                    .map_or(0, |r| r.lost);
                PairDoc {
                    source: agents[c.source],
                    target: agents[c.target],
                    round: c.round,
                    status: c.status,
                    error: c.error.clone(),
                    value: c.outcome.as_ref().and_then(|o| fig.value(o)),
                    rows: c.outcome.as_ref().map_or_else(Vec::new, |o| {
                        // Marked as `bench client` marks latency-under-load rows.
                        let mut rows = report::rows(o);
                        if under_load.is_some() {
                            for r in &mut rows {
                                r.under_load = under_load;
                                r.load_bits_per_second = c.load_bits_per_second;
                            }
                        }
                        rows
                    }),
                    latency: c.outcome.as_ref().and_then(|o| o.rr.clone()),
                    histogram: c
                        .outcome
                        .as_ref()
                        .and_then(|o| o.rr_histogram.as_ref())
                        .map(HistogramWire::from_histogram),
                }
            })
            .collect();
        tests.push(TestDoc {
            test: m.params.kind,
            transport: m.params.transport,
            size_bytes: m.params.size,
            duration_ms: m.params.duration_ms,
            under_load,
            figure: fig,
            unit: fig.unit(),
            counted: fig.describe(),
            fleet_latency: fleet.map(|h| RrSummary::from_histogram(&h, lost)),
            pairs,
        });
    }
    MeshDoc {
        meta,
        agents: docs_agents,
        tests,
        summary: SummaryDoc {
            pairs: total,
            ok,
            not_ok: total - ok,
        },
    }
}

fn title_transport(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

/// "TCP stream 1472 B", "UDP probe 64 B under load".
pub fn title(t: &TestDoc) -> String {
    let tr = title_transport(t.transport);
    let kind = serde_json::to_value(t.test)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let load = match t.under_load {
        None => "",
        Some(true) => " under load",
        Some(false) => " alone",
    };
    format!("{tr} {kind} {} B{load}", t.size_bytes)
}

/// The text of one cell: the value, "—" on the diagonal, or the status mark.
fn cell_text(t: &TestDoc, s: usize, d: usize, agents: &[AgentDoc]) -> String {
    if s == d {
        return "—".into();
    }
    let (sa, da) = (agents[s].address, agents[d].address);
    match t.pairs.iter().find(|p| p.source == sa && p.target == da) {
        None => "not run".into(),
        Some(p) => match (p.status, p.value) {
            (CellStatus::Ok, Some(v)) => t.figure.format(v),
            (CellStatus::Ok, None) => "n/a".into(),
            (st, _) => format!("✗ {}", st.mark()),
        },
    }
}

fn caption(t: &TestDoc) -> String {
    format!(
        "{}: {}; rows: source agent, columns: target agent",
        title(t),
        t.counted
    )
}

/// Lines under a matrix: the fleet latency and why each failed pair failed.
fn footnotes(t: &TestDoc) -> String {
    let mut out = String::new();
    if let Some(l) = t.fleet_latency.as_ref().filter(|l| l.count > 0) {
        let _ = writeln!(
            out,
            "all pairs, one merged histogram of {} round trips: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
            l.count,
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            l.max_ns as f64 / 1e3
        );
    }
    if t.under_load == Some(true) {
        let _ = writeln!(
            out,
            "under load: each source ran a bulk {} stream toward its target beside the probes (its goodput at the target: rows' load_bits_per_second in --json)",
            title_transport(t.transport)
        );
    }
    for p in t.pairs.iter().filter(|p| p.status != CellStatus::Ok) {
        let _ = writeln!(
            out,
            "✗ {} → {}: {}: {}",
            p.source,
            p.target,
            p.status.mark(),
            p.error.as_deref().unwrap_or("")
        );
    }
    out
}

/// The matrix tables, one per test, with their captions and footnotes.
pub fn table(doc: &MeshDoc) -> String {
    let mut out = String::new();
    let n = doc.agents.len();
    for t in &doc.tests {
        let mut tb = comfy_table::Table::new();
        tb.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        let mut header = vec!["source \\ target".to_string()];
        header.extend(doc.agents.iter().map(|a| a.label.clone()));
        tb.set_header(header);
        for s in 0..n {
            let mut row = vec![doc.agents[s].label.clone()];
            row.extend((0..n).map(|d| cell_text(t, s, d, &doc.agents)));
            tb.add_row(row);
        }
        for c in 1..=n {
            if let Some(col) = tb.column_mut(c) {
                col.set_cell_alignment(comfy_table::CellAlignment::Right);
            }
        }
        let _ = writeln!(out, "{}\n{tb}", caption(t));
        out.push_str(&footnotes(t));
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "{} of {} pairs measured",
        doc.summary.ok, doc.summary.pairs
    );
    out
}

/// The matrices as GitHub Markdown tables.
pub fn markdown(doc: &MeshDoc) -> String {
    let mut out = String::new();
    let n = doc.agents.len();
    for t in &doc.tests {
        let _ = writeln!(out, "**{}**\n", caption(t));
        let labels: Vec<&str> = doc.agents.iter().map(|a| a.label.as_str()).collect();
        let _ = writeln!(out, "| source \\\\ target | {} |", labels.join(" | "));
        let _ = writeln!(out, "|---|{}", "---:|".repeat(n));
        for (s, label) in labels.iter().enumerate() {
            let cells: Vec<String> = (0..n).map(|d| cell_text(t, s, d, &doc.agents)).collect();
            let _ = writeln!(out, "| {label} | {} |", cells.join(" | "));
        }
        out.push('\n');
        out.push_str(&footnotes(t));
        out.push('\n');
    }
    out
}

/// CSV: one line per test and ordered pair; empty fields where a figure does not apply.
pub fn csv(doc: &MeshDoc) -> String {
    let mut out = String::from(
        "test,transport,size_bytes,source,target,round,status,figure,value,unit,bytes,sent_bytes,bits_per_second,packets_per_second,lost,lost_percent,rtt_p50_ns,rtt_p99_ns,error\n",
    );
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    for t in &doc.tests {
        for p in &t.pairs {
            let r = p.rows.first();
            let o = |f: fn(&Row) -> String| r.map_or(String::new(), f);
            let l = |f: fn(&RrSummary) -> u64| {
                p.latency
                    .as_ref()
                    .map_or(String::new(), |l| f(l).to_string())
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                name(serde_json::json!(t.test)),
                name(serde_json::json!(t.transport)),
                t.size_bytes,
                p.source,
                p.target,
                p.round,
                name(serde_json::json!(p.status)),
                name(serde_json::json!(t.figure)),
                p.value.map_or(String::new(), |v| format!("{v:.3}")),
                t.unit,
                o(|r| r.bytes.to_string()),
                o(|r| r.sent_bytes.to_string()),
                o(|r| format!("{:.0}", r.bits_per_second)),
                o(|r| format!("{:.1}", r.packets_per_second)),
                o(|r| r.lost.to_string()),
                o(|r| format!("{:.4}", r.lost_percent)),
                l(|l| l.p50_ns),
                l(|l| l.p99_ns),
                quote(p.error.as_deref().unwrap_or(""))
            );
        }
    }
    out
}

/// A CSV field, quoted (RFC 4180) when it holds a comma, quote or newline.
fn quote(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A pair whose figure got worse than the baseline's beyond the tolerance.
#[derive(Debug, Clone, Serialize)]
pub struct Regression {
    /// "TCP stream 1472 B".
    pub test: String,
    /// Source agent.
    pub source: String,
    /// Target agent.
    pub target: String,
    /// The compared figure.
    pub figure: Figure,
    /// Baseline value.
    pub baseline: f64,
    /// This run's value (None: the pair did not run now).
    pub current: Option<f64>,
}

impl std::fmt::Display for Regression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.current {
            Some(c) => write!(
                f,
                "{} {} → {}: {} now, {} in the baseline",
                self.test,
                self.source,
                self.target,
                self.figure.format(c),
                self.figure.format(self.baseline)
            ),
            None => write!(
                f,
                "{} {} → {}: not measured now, {} in the baseline",
                self.test,
                self.source,
                self.target,
                self.figure.format(self.baseline)
            ),
        }
    }
}

/// Whether `current` is worse than `base` beyond `tolerance`: for throughput and rate a drop
/// of more than `tolerance` percent of the baseline, for latency a rise of more than that, for
/// loss a rise of more than `tolerance` percentage points (a relative change of 0 % loss is
/// meaningless).
pub fn regressed(figure: Figure, base: f64, current: f64, tolerance: f64) -> bool {
    match figure {
        Figure::LostPercent => current > base + tolerance,
        f if f.higher_is_better() => current < base * (1.0 - tolerance / 100.0),
        _ => current > base * (1.0 + tolerance / 100.0),
    }
}

/// Compares this run with a baseline document (a previous run's `--json`). Pairs are matched
/// by test (kind, transport, size, under load or not), figure, source and target address; a pair measured in the
/// baseline and not now counts as regressed; pairs only in one document are otherwise ignored.
pub fn compare(
    doc: &MeshDoc,
    baseline: &serde_json::Value,
    tolerance: f64,
) -> Result<Vec<Regression>, String> {
    let tests = baseline["tests"]
        .as_array()
        .ok_or("the baseline is not a `bench mesh --json` document (no `tests` list)")?;
    let mut out = Vec::new();
    for t in &doc.tests {
        let want = serde_json::json!({
            "test": t.test, "transport": t.transport, "size_bytes": t.size_bytes,
            "under_load": t.under_load, "figure": t.figure
        });
        let Some(bt) = tests.iter().find(|b| {
            ["test", "transport", "size_bytes", "under_load", "figure"]
                .iter()
                .all(|k| b[*k] == want[*k])
        }) else {
            continue;
        };
        for bp in bt["pairs"].as_array().map_or(&[][..], Vec::as_slice) {
            let (Some(src), Some(dst), Some(base)) = (
                bp["source"].as_str(),
                bp["target"].as_str(),
                bp["value"].as_f64(),
            ) else {
                continue;
            };
            let Some(p) = t
                .pairs
                .iter()
                .find(|p| p.source.to_string() == src && p.target.to_string() == dst)
            else {
                continue;
            };
            let worse = match p.value {
                Some(v) => regressed(t.figure, base, v, tolerance),
                None => true,
            };
            if worse {
                out.push(Regression {
                    test: title(t),
                    source: src.into(),
                    target: dst.into(),
                    figure: t.figure,
                    baseline: base,
                    current: p.value,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regressions_by_figure() {
        // Throughput: a 20 % drop is beyond 10 %, a 5 % drop is not; a rise never regresses.
        assert!(regressed(Figure::BitsPerSecond, 100.0, 80.0, 10.0));
        assert!(!regressed(Figure::BitsPerSecond, 100.0, 95.0, 10.0));
        assert!(!regressed(Figure::BitsPerSecond, 100.0, 300.0, 10.0));
        // Latency: higher is worse.
        assert!(regressed(Figure::RttP99Us, 100.0, 120.0, 10.0));
        assert!(!regressed(Figure::RttP50Us, 100.0, 50.0, 10.0));
        // Loss: percentage points, so 0 % → 0.5 % is within 1 point, 0 → 2 % is not.
        assert!(!regressed(Figure::LostPercent, 0.0, 0.5, 1.0));
        assert!(regressed(Figure::LostPercent, 0.0, 2.0, 1.0));
    }

    #[test]
    fn csv_quotes_errors() {
        assert_eq!(quote("a, b"), "\"a, b\"");
        assert_eq!(quote("q\"x,"), "\"q\"\"x,\"");
    }
}
