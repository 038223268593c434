//! `socklab bench mesh`: the agents from `--peers`, `--peers-file` or `--peers-dns`, every
//! ordered pair measured through the agents themselves, and the matrices printed as a table,
//! JSON, CSV or Markdown, with an optional SVG heatmap and a baseline comparison.
//!
//! Exit codes: 0 every pair measured (and none regressed); 1 a pair could not be measured or
//! regressed beyond `--tolerance` (the output is complete either way, and the closing line on
//! stderr names them); 2 usage or setup error.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, ValueEnum};
use socklab::bench::kind;
use socklab::bench::mesh::matrix::{self, Figure};
use socklab::bench::mesh::run::{self, MeshCfg, MeshTest, Progress};
use socklab::bench::mesh::{heatmap, peers, schedule};
use socklab::bench::report::Meta;

use super::{Plan, Planned, TestArgs, output, parse_dur};

/// `bench mesh` flags.
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("agents").required(true).multiple(true).args(["peers", "peers_file", "peers_dns"])))]
pub(crate) struct MeshArgs {
    /// The agents (`bench server --token T` each): HOST[:PORT],… (port default --port).
    #[arg(long, value_name = "A,B,…", value_delimiter = ',')]
    peers: Vec<String>,
    /// Read agents from FILE: separated by commas, blanks or lines; `#` starts a comment.
    #[arg(long, value_name = "FILE")]
    peers_file: Option<PathBuf>,
    /// Every A/AAAA record of NAME is an agent (a Kubernetes headless Service).
    #[arg(long, value_name = "NAME[:PORT]")]
    peers_dns: Option<String>,
    /// Agents' control port when a peer names none.
    #[arg(long, value_name = "PORT", default_value = "5301", value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// The agents' shared token (agents take mesh requests only with one).
    #[arg(long, value_name = "T")]
    token: String,
    /// Run N tests at a time, agents shared (contention on purpose); default: rounds of
    /// disjoint pairs, so no agent is ever in two tests at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: Option<u32>,
    /// The figure in the matrix (default: throughput for stream, packet rate for rate, median
    /// round trip for rr, 99th percentile probe round trip for latency-under-load).
    #[arg(long, value_enum)]
    figure: Option<FigureArg>,
    /// Compare with a previous run's --json; exit 1 naming the pairs that got worse.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Allowed change before a pair counts as regressed: percent of the baseline value
    /// (percentage points for loss).
    #[arg(long, value_name = "PCT", default_value = "10", requires = "baseline", value_parser = parse_pct)]
    tolerance: f64,
    /// Connect and handshake timeout, coordinator → agent and agent → agent.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_dur)]
    handshake_timeout: Duration,
    /// Print the plan (agents, tests, schedule) and exit: nothing is resolved or sent.
    #[arg(long)]
    dry_run: bool,
    /// Nothing on stderr but usage and setup errors: no progress, no closing verdict (the
    /// exit code still gives it), so that stdout alone makes the log (`kubectl logs`).
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    test: TestArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
enum FigureArg {
    /// Goodput (bit/s) at the receiving agent.
    Throughput,
    /// Packets per second at the receiving agent.
    Pps,
    /// UDP loss, percent.
    Loss,
    /// rr (or latency-under-load probe) median round trip, µs.
    P50,
    /// rr (or latency-under-load probe) 99th percentile round trip, µs.
    P99,
}

impl From<FigureArg> for Figure {
    fn from(f: FigureArg) -> Self {
        match f {
            FigureArg::Throughput => Self::BitsPerSecond,
            FigureArg::Pps => Self::PacketsPerSecond,
            FigureArg::Loss => Self::LostPercent,
            FigureArg::P50 => Self::RttP50Us,
            FigureArg::P99 => Self::RttP99Us,
        }
    }
}

fn parse_pct(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1000.0).contains(&v) => Ok(v),
        _ => Err(format!("invalid tolerance '{s}' (a percentage, 0 to 1000)")),
    }
}

/// Runs `bench mesh`.
pub(crate) fn run(a: MeshArgs) -> anyhow::Result<ExitCode> {
    let t = &a.test;
    if t.reverse || t.bidir || t.json_stream || t.interval.is_some() || t.cpu.is_some() {
        bail!(
            "bench mesh runs each ordered pair forward (its reverse is another pair); -R, --bidir, --json-stream, -i and --cpu do not apply (pin agents with their own --cpu)"
        );
    }
    let plan = Plan::from_args(t)?;
    let family = t.family.family();
    let mut entries = a.peers.clone();
    if let Some(f) = &a.peers_file {
        let text = std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
        entries.extend(peers::parse_file(&text));
    }
    let figure = a.figure.map(Figure::from);
    if a.dry_run {
        return dry_run(&a, &entries, &plan);
    }
    let baseline = match &a.baseline {
        None => None,
        Some(f) => {
            let text =
                std::fs::read_to_string(f).with_context(|| format!("read {}", f.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", f.display()))?;
            Some(v)
        }
    };
    let mut agents = peers::resolve_list(&entries, a.port, family)?;
    if let Some(name) = &a.peers_dns {
        for ad in peers::resolve_dns(name, a.port, family)? {
            if !agents.contains(&ad) {
                agents.push(ad);
            }
        }
    }
    if agents.len() < 2 {
        bail!(
            "a mesh needs at least 2 agents, found {}: {:?}",
            agents.len(),
            agents
        );
    }
    let cfg = MeshCfg {
        agents: agents.clone(),
        token: a.token.clone(),
        tests: plan
            .tests
            .iter()
            .map(|p| MeshTest {
                params: p.params.clone(),
                load: p.load.clone(),
            })
            .collect(),
        concurrency: a.concurrency.map(|n| n as usize),
        handshake_timeout: a.handshake_timeout,
    };
    let mut params = plan.params_json.clone();
    let udp_stream = plan
        .tests
        .iter()
        .any(|p| kind::of(p.params.kind).searches_rate(p.params.transport));
    if plan.search_loss.is_some() && udp_stream {
        // A single `bench client` searches the highest paced rate within --target-loss; a
        // mesh would multiply that search by every pair, so its UDP streams run unpaced.
        params["udp_pacing"] =
            serde_json::json!("unpaced (no -b: bench mesh does not search a rate)");
        if !a.quiet {
            output::diag!(
                "socklab: bench mesh: UDP streams run unpaced (no -b given; the mesh does not search a rate)"
            );
        }
    }
    params["agents"] = serde_json::json!(agents);
    params["peers"] = serde_json::json!({"list": entries, "dns": a.peers_dns, "port": a.port});
    params["schedule"] = serde_json::json!(match a.concurrency {
        None => "rounds of disjoint pairs".to_string(),
        Some(n) => format!("{n} tests at a time, agents shared"),
    });
    params["handshake_timeout_ms"] = serde_json::json!(a.handshake_timeout.as_millis() as u64);
    let meta = Meta::new("mesh".into(), params);
    let progress = |p: Progress<'_>| match p {
        _ if a.quiet => {}
        Progress::Round(ti, r, of, pairs) => {
            let list: Vec<String> = pairs
                .iter()
                .map(|&(s, d)| format!("{} → {}", agents[s], agents[d]))
                .collect();
            output::diag!(
                "socklab: mesh: test {}/{} round {}/{of}: {}",
                ti + 1,
                cfg.tests.len(),
                r + 1,
                list.join(", ")
            );
        }
        Progress::Cell(params, c) => {
            let what = match (&c.outcome, &c.error) {
                (Some(o), _) => {
                    let f = figure.unwrap_or(Figure::default_for(params.kind));
                    f.value(o).map_or("n/a".into(), |v| f.format(v))
                }
                (None, e) => format!("{}: {}", c.status.mark(), e.as_deref().unwrap_or("")),
            };
            output::diag!(
                "socklab: mesh: {} → {}: {what}",
                agents[c.source],
                agents[c.target]
            );
        }
    };
    let matrices = run::run(&cfg, &progress);
    let doc = matrix::document(meta, &agents, figure, &matrices);
    let regressions = match &baseline {
        None => Vec::new(),
        Some(b) => matrix::compare(&doc, b, a.tolerance).map_err(anyhow::Error::msg)?,
    };
    let mut out = output::Buffer::new();
    if t.json {
        let mut v = serde_json::to_value(&doc)?;
        if let Some(f) = &a.baseline {
            v["baseline"] = serde_json::json!({
                "file": f, "tolerance_percent": a.tolerance, "regressions": regressions
            });
        }
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else if t.csv {
        write!(out, "{}", matrix::csv(&doc))?;
    } else if t.markdown {
        write!(out, "{}", matrix::markdown(&doc))?;
    } else {
        write!(out, "{}", matrix::table(&doc))?;
    }
    out.finish()?;
    if let Some(path) = &t.svg {
        std::fs::write(path, heatmap::svg(&doc))
            .with_context(|| format!("write {}", path.display()))?;
    }
    let failed = !regressions.is_empty() || doc.summary.not_ok > 0;
    if a.quiet && failed {
        return Ok(ExitCode::from(1));
    }
    if !regressions.is_empty() {
        let list: Vec<String> = regressions.iter().map(ToString::to_string).collect();
        return Err(super::super::failure(anyhow::anyhow!(
            "{} pair(s) regressed beyond {} % of the baseline: {}",
            regressions.len(),
            a.tolerance,
            list.join("; ")
        )));
    }
    if doc.summary.not_ok > 0 {
        return Err(super::super::failure(anyhow::anyhow!(
            "mesh: {} of {} pairs not measured (marked ✗ in the matrix)",
            doc.summary.not_ok,
            doc.summary.pairs
        )));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints what would run, resolving and sending nothing.
fn dry_run(a: &MeshArgs, entries: &[String], plan: &Plan) -> anyhow::Result<ExitCode> {
    let mut out = output::Buffer::new();
    writeln!(
        out,
        "bench mesh plan (dry run: nothing resolved, nothing sent)"
    )?;
    for e in entries {
        writeln!(out, "agent: {}", peers::with_port(e, a.port))?;
    }
    if let Some(name) = &a.peers_dns {
        writeln!(
            out,
            "agents: every A/AAAA record of {} (resolved at run time)",
            peers::with_port(name, a.port)
        )?;
    }
    for Planned { params: p, load } in &plan.tests {
        writeln!(
            out,
            "test: {:?} {:?} {} B for {} ms, {} stream(s){}{}",
            p.kind,
            p.transport,
            p.size,
            p.duration_ms,
            p.parallel,
            if p.rate_bps > 0 {
                format!(" at {} bit/s each", p.rate_bps)
            } else {
                String::new()
            },
            match load {
                None => String::new(),
                Some(b) => format!(
                    ", beside a {:?} stream of {} B (the target runs both tests)",
                    b.transport, b.size
                ),
            }
        )?;
    }
    match a.concurrency {
        None => writeln!(
            out,
            "schedule: rounds of disjoint pairs (no agent in two tests at once): 2(n-1) rounds for n agents, 2n if n is odd"
        )?,
        Some(c) => writeln!(out, "schedule: {c} tests at a time, agents shared")?,
    }
    if a.peers_dns.is_none() {
        let n = entries.len();
        let rounds = match a.concurrency {
            None => schedule::rounds(n),
            Some(c) => schedule::batches(n, c as usize),
        };
        for (i, r) in rounds.iter().enumerate() {
            let list: Vec<String> = r
                .iter()
                .map(|&(s, d)| format!("{} → {}", entries[s], entries[d]))
                .collect();
            writeln!(out, "round {}: {}", i + 1, list.join(", "))?;
        }
    }
    out.finish()?;
    Ok(ExitCode::SUCCESS)
}
