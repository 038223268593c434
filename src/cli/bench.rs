//! `socklab bench server|client|local`: flags → plain test parameters → runs → one report.

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use socklab::bench::client::{self, ClientCfg};
use socklab::bench::kind::{self, Pacing};
use socklab::bench::protocol::{Dir, TestKind, TestParams, Transport};
use socklab::bench::report::{self, IntervalLine, Meta};
use socklab::bench::server::{Server, ServerCfg};
use socklab::bench::{TestOutcome, plot, search, underload};
use socklab::{jsonl, units};

use super::common::{BenchSockArgs, FamilyArgs};
use super::output;

mod mesh;

/// Benchmark TCP and UDP side by side: throughput, packet rate, loss, latency.
#[derive(Subcommand, Debug)]
pub(crate) enum BenchCommand {
    /// Serve bench clients (several at once, one thread per stream).
    Server(ServerArgs),
    /// Run tests against a `bench server`.
    Client(ClientArgs),
    /// Run both sides on loopback in this process.
    Local(LocalArgs),
    /// Measure every ordered pair of a fleet of `bench server --token` agents: a matrix.
    Mesh(mesh::MeshArgs),
}

/// `bench server` flags.
#[derive(Args, Debug)]
pub(crate) struct ServerArgs {
    /// Control address to listen on (default 0.0.0.0:5301, or [::]:5301 with -6).
    #[arg(long, value_name = "ADDR")]
    bind: Option<String>,
    /// Tests run at once; further clients are told "busy, retry".
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..=1024))]
    max_tests: u32,
    /// Require clients to prove this shared token (HMAC-SHA-256 over a nonce; never sent).
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Longest test accepted.
    #[arg(long, value_name = "DUR", default_value = "60s", value_parser = parse_dur)]
    max_duration: Duration,
    /// Highest per-stream rate accepted (bits/s, 100M, 1G); clients must then pace with -b.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    max_rate: Option<u64>,
    /// Give up on an admitted client silent this long during setup, or unanswering mid-test.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_dur)]
    idle_timeout: Duration,
    /// Close a connection that has not sent a complete, authenticated start within DUR.
    #[arg(long, value_name = "DUR", default_value = "2s", value_parser = parse_dur)]
    handshake_timeout: Duration,
    /// Connections held in the handshake at once; beyond, the oldest is closed.
    #[arg(long, value_name = "N", default_value = "4096", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_pending: u32,
    /// Connections held in the handshake per source address; beyond, its oldest is closed.
    #[arg(long, value_name = "N", default_value = "1024", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_pending_per_source: u32,
    /// Exit after serving N clients (default: serve until killed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Pin stream threads to these CPUs (0,1 or 0-3): stream N of test T runs on entry
    /// (T + N) mod len on both sides, so one LIST on both pairs a stream's two threads on a
    /// CPU. Default: TCP streams to a peer on this host are paired over every CPU; others
    /// are left to the scheduler.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    cpu: Option<CpuList>,
    #[command(flatten)]
    family: FamilyArgs,
}

/// `bench client` flags.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// The server: HOST:PORT (default port 5301 when only HOST is given).
    addr: String,
    /// Shared token the server requires.
    #[arg(long, value_name = "T")]
    token: Option<String>,
    /// Give up connecting to the server after DUR, and on a handshake silent that long.
    #[arg(short = 'w', long, value_name = "DUR", default_value = "5s", value_parser = parse_dur)]
    connect_timeout: Duration,
    #[command(flatten)]
    test: TestArgs,
}

/// `bench local` flags.
#[derive(Args, Debug)]
pub(crate) struct LocalArgs {
    #[command(flatten)]
    test: TestArgs,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum TestArg {
    /// Throughput: TCP stream, UDP at full rate or -b.
    Stream,
    /// Small-message packet rate.
    Rate,
    /// Request/response latency.
    Rr,
    /// The same sizes over TCP and UDP, side by side.
    Compare,
    /// Open-loop probes over TCP and UDP, alone and beside a bulk stream of the same
    /// transport: p50/p99/p99.9 side by side.
    LatencyUnderLoad,
}

/// What to run and how to report it.
#[derive(Args, Debug)]
pub(crate) struct TestArgs {
    /// Test kind.
    #[arg(long, value_enum, default_value = "compare")]
    test: TestArg,
    /// TCP only.
    #[arg(long, conflicts_with = "udp")]
    tcp: bool,
    /// UDP only.
    #[arg(short = 'u', long)]
    udp: bool,
    /// Payload/write size, or a list: 64,1472,8972 (default 1472; 64 for rate, rr and the
    /// probes of latency-under-load).
    #[arg(short = 'l', long = "len", value_name = "SIZE[,SIZE…]", value_parser = parse_size, value_delimiter = ',')]
    len: Vec<usize>,
    /// Duration of each test.
    #[arg(short = 't', long = "time", value_name = "DUR", default_value = "2s", value_parser = parse_dur)]
    time: Duration,
    /// Parallel streams per direction (one thread each).
    #[arg(short = 'P', long, value_name = "N", default_value = "1", value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
    /// Reverse: the server sends, the client receives.
    #[arg(short = 'R', long, conflicts_with = "bidir")]
    reverse: bool,
    /// Both directions at once.
    #[arg(long)]
    bidir: bool,
    /// Pace each stream at RATE bits/s (100M, 1G); 0 = unpaced. Default: TCP unpaced; UDP
    /// stream tests first search for the highest rate within --target-loss (shown on stderr).
    #[arg(short = 'b', long, value_name = "RATE", value_parser = parse_rate_or_zero)]
    bitrate: Option<u64>,
    /// latency-under-load: probes sent per second (open loop, whatever the replies do).
    #[arg(long, value_name = "N", default_value = "1000", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    probe_rate: u32,
    /// The loss the UDP rate search may accept, percent of datagrams sent.
    #[arg(long, value_name = "PCT", default_value = "1", value_parser = parse_percent)]
    target_loss: f64,
    /// Report every DUR per stream (receiver side).
    #[arg(short = 'i', long, value_name = "DUR", value_parser = parse_dur)]
    interval: Option<Duration>,
    /// Pin stream threads to these CPUs (0,1 or 0-3): stream N of test T runs on entry
    /// (T + N) mod len on both sides, so one LIST on both pairs a stream's two threads on a
    /// CPU. Default: TCP streams to a peer on this host are paired over every CPU; others
    /// are left to the scheduler.
    #[arg(long, value_name = "LIST", value_parser = parse_cpus)]
    cpu: Option<CpuList>,
    /// SO_BUSY_POLL and spinning receive, for latency.
    #[arg(long)]
    busy_poll: bool,
    /// Do not use UDP GSO (UDP_SEGMENT) on the sender.
    #[arg(long)]
    no_gso: bool,
    /// Do not use UDP GRO on the receiver.
    #[arg(long)]
    no_gro: bool,
    /// UDP and TCP senders (either side: -R, --bidir) send with MSG_ZEROCOPY after
    /// SO_ZEROCOPY; the report counts the bytes the kernel copied anyway.
    #[arg(long)]
    zerocopy: bool,
    #[command(flatten)]
    sock: BenchSockArgs,
    #[command(flatten)]
    family: FamilyArgs,
    /// Output format; --json, --json-stream, --csv and --markdown are its short forms.
    #[arg(long = "format", value_name = "FORMAT", value_enum, group = "format")]
    output_format: Option<Format>,
    /// One JSON document: meta, results (units in field names), summary.
    #[arg(long, group = "format")]
    json: bool,
    /// JSON lines: start, interval, end events.
    #[arg(long, group = "format")]
    json_stream: bool,
    /// CSV, one line per test and direction.
    #[arg(long, group = "format")]
    csv: bool,
    /// A Markdown table.
    #[arg(long, group = "format")]
    markdown: bool,
    /// Also write an SVG plot (throughput over time, latency CDF) to FILE.
    #[arg(long, value_name = "FILE")]
    svg: Option<std::path::PathBuf>,
}

/// Runs a bench subcommand.
pub(crate) fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Server(a) => serve(a),
        BenchCommand::Mesh(a) => mesh::run(a),
        BenchCommand::Client(a) => {
            let plan = Plan::from_args(&a.test)?;
            let server = resolve_server(&a.addr, &a.test.family)?;
            let cfg = ClientCfg {
                server,
                token: a.token.clone(),
                cpus: a.test.cpu.clone().map(|c| c.0).unwrap_or_default(),
                timeout: a.connect_timeout,
            };
            execute(&plan, &a.test, &cfg, server.to_string())
        }
        BenchCommand::Local(a) => {
            let plan = Plan::from_args(&a.test)?;
            let ip = if matches!(a.test.family.family(), socklab::addr::Family::V6) {
                "[::1]:0"
            } else {
                "127.0.0.1:0"
            };
            let cpus = a.test.cpu.clone().map(|c| c.0).unwrap_or_default();
            let server = Server::bind(ServerCfg {
                bind: ip.parse().context("loopback address")?,
                max_tests: 1024,
                max_duration: Duration::from_secs(24 * 3600),
                cpus: cpus.clone(),
                ..ServerCfg::default()
            })
            .context("bench local: cannot bind the loopback server")?;
            let addr = server.local_addr()?;
            std::thread::Builder::new()
                .name("bench-server".into())
                .spawn(move || server.serve(None, Arc::new(|_| {})))?;
            let cfg = ClientCfg {
                server: addr,
                token: None,
                cpus,
                timeout: Duration::from_secs(5),
            };
            execute(&plan, &a.test, &cfg, "local".into())
        }
    }
}

fn resolve_server(text: &str, family: &FamilyArgs) -> anyhow::Result<SocketAddr> {
    match family.resolve(text) {
        Ok(a) => Ok(a),
        Err(_) if !text.contains(':') || (text.starts_with('[') && text.ends_with(']')) => {
            family.resolve(&format!("{text}:5301"))
        }
        Err(e) => Err(e),
    }
}

fn serve(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let default = match a.family.family() {
        socklab::addr::Family::V6 => "[::]:5301",
        _ => "0.0.0.0:5301",
    };
    let bind = a.family.resolve(a.bind.as_deref().unwrap_or(default))?;
    let server = Server::bind(ServerCfg {
        bind,
        max_tests: a.max_tests as usize,
        token: a.token,
        max_duration: a.max_duration,
        max_rate_bps: a.max_rate.unwrap_or(0),
        idle_timeout: a.idle_timeout,
        handshake_timeout: a.handshake_timeout,
        max_pending: a.max_pending as usize,
        max_pending_per_source: a.max_pending_per_source as usize,
        cpus: a.cpu.map(|c| c.0).unwrap_or_default(),
    })
    .with_context(|| format!("bench server: bind {bind}"))?;
    output::diag!(
        "socklab: bench server listening on {}",
        server.local_addr()?
    );
    server.serve(a.count, Arc::new(|line| output::diag!("socklab: {line}")))?;
    Ok(ExitCode::SUCCESS)
}

/// One test of a plan, and the bulk stream to run beside it (latency-under-load).
struct Planned {
    params: TestParams,
    load: Option<TestParams>,
}

/// The tests a command line asks for, validated before any socket is opened.
struct Plan {
    tests: Vec<Planned>,
    /// UDP stream tests search their pacing rate first (no -b given): the loss target.
    search_loss: Option<f64>,
    params_json: serde_json::Value,
}

impl Plan {
    fn from_args(a: &TestArgs) -> anyhow::Result<Self> {
        let o = a.sock.opts();
        let kind = match a.test {
            TestArg::Stream | TestArg::Compare => TestKind::Stream,
            TestArg::Rate => TestKind::Rate,
            TestArg::Rr => TestKind::Rr,
            TestArg::LatencyUnderLoad => TestKind::Probe,
        };
        let kind_of = kind::of(kind);
        let sizes = if a.len.is_empty() {
            vec![kind_of.default_size()]
        } else {
            a.len.clone()
        };
        let transports = match (a.tcp, a.udp) {
            (true, _) => vec![Transport::Tcp],
            (_, true) => vec![Transport::Udp],
            _ => vec![Transport::Tcp, Transport::Udp],
        };
        let dirs = kind_of.directions(&if a.bidir {
            vec![Dir::Up, Dir::Down]
        } else if a.reverse {
            vec![Dir::Down]
        } else {
            vec![Dir::Up]
        });
        let pacing = Pacing {
            bitrate_bps: a.bitrate,
            probes_per_second: a.probe_rate,
        };
        let mut tests = Vec::new();
        for &size in &sizes {
            for &t in &transports {
                if t == Transport::Udp
                    && !(socklab::bench::wire::HEADER_LEN..=socklab::bench::sender::MAX_UDP_PAYLOAD)
                        .contains(&size)
                {
                    bail!(
                        "UDP size {size} outside {}..={} bytes (the data header needs {} bytes)",
                        socklab::bench::wire::HEADER_LEN,
                        socklab::bench::sender::MAX_UDP_PAYLOAD,
                        socklab::bench::wire::HEADER_LEN
                    );
                }
                let params = TestParams {
                    kind,
                    transport: t,
                    size,
                    duration_ms: a.time.as_millis().max(1) as u64,
                    parallel: a.parallel,
                    dirs: dirs.clone(),
                    rate_bps: kind_of.rate_bps(size, &pacing),
                    interval_ms: interval_ms(a),
                    gso: !a.no_gso,
                    gro: !a.no_gro,
                    busy_poll: a.busy_poll,
                    rcvbuf: o.recv_buffer,
                    sndbuf: o.send_buffer,
                    nodelay: o.nodelay,
                    notsent_lowat: a.sock.notsent_lowat(),
                    zerocopy: a.zerocopy,
                };
                // A kind measured under load runs alone, then beside its load.
                let load = kind_of.load(&params, &pacing);
                if load.is_some() {
                    tests.push(Planned {
                        params: params.clone(),
                        load: None,
                    });
                }
                tests.push(Planned { params, load });
            }
        }
        let params_json = serde_json::json!({
            "test": a.test, "sizes_bytes": sizes, "duration_ms": a.time.as_millis() as u64,
            "parallel": a.parallel, "reverse": a.reverse, "bidir": a.bidir,
            "rate_bits_per_second": a.bitrate, "interval_ms": a.interval.map(|d| d.as_millis() as u64),
            "cpus": a.cpu.as_ref().map(|c| &c.0), "busy_poll": a.busy_poll, "gso": !a.no_gso, "gro": !a.no_gro,
            "rcvbuf_bytes": o.recv_buffer, "sndbuf_bytes": o.send_buffer, "nodelay": o.nodelay,
            "notsent_lowat_bytes": a.sock.notsent_lowat(), "zerocopy": a.zerocopy,
            "transports": transports,
            "target_loss_percent": a.target_loss,
        });
        Ok(Self {
            tests,
            search_loss: a.bitrate.is_none().then_some(a.target_loss),
            params_json,
        })
    }
}

/// The interval the receivers sample at: `-i`, else one the run picks itself so that live
/// progress, an interrupted run and `--svg` have samples: a second, or a fiftieth of the test
/// (at least 20 ms) when an SVG is asked for; never longer than the test (the server refuses
/// an interval outside 10 ms..=duration).
fn interval_ms(a: &TestArgs) -> u64 {
    let duration = a.time.as_millis() as u64;
    match a.interval {
        Some(d) => d.as_millis() as u64,
        None if a.svg.is_some() => (duration / 50).clamp(20, 1000).min(duration).max(10),
        None => duration.clamp(10, 1000),
    }
}

/// What an interrupted run can still print: the tests finished and the intervals seen.
#[derive(Default)]
struct Partial {
    rows: Vec<report::Row>,
    intervals: Vec<IntervalLine>,
}

/// Registers with the process's SIGINT/SIGTERM handler ([`super::exit::on_signal_summary`],
/// which then exits 130/143) the printing of what `partial` holds, in the run's format, on
/// stdout; the handler prints the returned line on stderr.
fn print_partial_on_signal(
    partial: Arc<Mutex<Partial>>,
    bar: indicatif::ProgressBar,
    format: Format,
    meta: Meta,
) {
    super::exit::on_signal_summary(move || {
        bar.finish_and_clear();
        // A poisoned lock still holds the data.
        let p = partial.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = output::Buffer::new();
        let summary = report::summary(&p.rows);
        let _ = match format {
            Format::Json => writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "meta": meta, "interrupted": true, "results": p.rows,
                    "intervals": p.intervals, "summary": summary,
                }))
                .unwrap_or_default()
            ),
            Format::JsonStream => writeln!(
                out,
                "{}",
                serde_json::json!({"type": "end", "data": {
                    "interrupted": true, "results": p.rows, "intervals": p.intervals,
                    "summary": summary,
                }})
            ),
            Format::Csv => write!(out, "{}", report::csv(&p.rows)),
            Format::Table | Format::Markdown => {
                let _ = writeln!(
                    out,
                    "interrupted: {} intervals and {} tests finished so far",
                    p.intervals.len(),
                    p.rows.len()
                );
                for l in &p.intervals {
                    let _ = writeln!(out, "{}", l.text());
                }
                if !p.rows.is_empty() {
                    let _ = write!(out, "{}", report::table(&p.rows));
                }
                Ok(())
            }
        };
        // Exiting anyway: a failed write (closed or full stdout) has nothing left to stop.
        let _ = out.finish();
        format!(
            "bench interrupted after {} intervals and {} finished tests",
            p.intervals.len(),
            p.rows.len()
        )
    });
}

/// The output format a run asked for.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Tables of at most 100 columns with notes and a summary.
    Table,
    /// One JSON document (`--json`).
    Json,
    /// JSON lines: start, interval, end (`--json-stream`).
    JsonStream,
    /// CSV, one line per test and direction (`--csv`).
    Csv,
    /// Markdown tables (`--markdown`).
    Markdown,
}

impl Format {
    fn of(a: &TestArgs) -> Self {
        if let Some(f) = a.output_format {
            f
        } else if a.json {
            Self::Json
        } else if a.json_stream {
            Self::JsonStream
        } else if a.csv {
            Self::Csv
        } else if a.markdown {
            Self::Markdown
        } else {
            Self::Table
        }
    }
}

/// One line to stdout while the test runs; a failed write ends the run (see `output`).
fn emit(line: impl std::fmt::Display) {
    if let Err(e) = output::line(line) {
        super::exit::exit_now(Err(e.into()));
    }
}

fn execute(plan: &Plan, a: &TestArgs, cfg: &ClientCfg, target: String) -> anyhow::Result<ExitCode> {
    let meta = Meta::new(target, plan.params_json.clone());
    let format = Format::of(a);
    if format == Format::JsonStream {
        emit(jsonl::line("start", &meta));
    }
    // Live progress on a terminal only (indicatif draws nothing when stderr is not one),
    // one line cut to the terminal's width.
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(plan.tests.len() as u64),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template("[{pos}/{len}] {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let partial = Arc::new(Mutex::new(Partial::default()));
    print_partial_on_signal(partial.clone(), bar.clone(), format, meta.clone());
    let user_intervals = a.interval.is_some();
    let text_intervals = user_intervals && format == Format::Table;
    let mut outcomes: Vec<(TestOutcome, Option<search::RateSearch>)> = Vec::new();
    for Planned { params: p, load } in &plan.tests {
        let what = format!(
            "{} {} {} B",
            kind::of(p.kind).name(),
            format!("{:?}", p.transport).to_uppercase(),
            p.size
        );
        bar.set_message(what.clone());
        let mut on_sample = |dir: Dir, s: &socklab::bench::protocol::IntervalSample| {
            let line = IntervalLine::new(p, dir, s);
            bar.set_message(format!(
                "{what} {} #{}: {:.1} s  {}  {}",
                format!("{dir:?}").to_lowercase(),
                line.stream,
                line.end_s,
                report::human_bps(line.bits_per_second),
                report::human_rate(line.packets_per_second)
            ));
            // Kept before it is printed: an interrupt after the print finds it.
            partial
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .intervals
                .push(line.clone());
            if format == Format::JsonStream && user_intervals {
                emit(jsonl::line("interval", &line));
            } else if text_intervals {
                bar.suspend(|| emit(line.text()));
            }
        };
        let searched = match plan.search_loss {
            Some(target) if kind::of(p.kind).searches_rate(p.transport) => {
                let probe_ms = p.duration_ms.clamp(100, 300);
                let mut show = |pr: &search::Probe| {
                    bar.suspend(|| {
                        output::diag!(
                            "rate search: {} -> {:.2} % lost, {} received",
                            match pr.paced_bits_per_second {
                                0 => "unpaced".to_string(),
                                b => format!("{} per stream", report::human_bps(b as f64)),
                            },
                            pr.lost_percent,
                            report::human_bps(pr.received_bits_per_second)
                        )
                    })
                };
                match search::search(cfg, p, target, probe_ms, &mut show) {
                    Ok(s) => Some(s),
                    Err(e) => return Err(anyhow::Error::new(e)),
                }
            }
            _ => None,
        };
        let p = &TestParams {
            rate_bps: searched
                .as_ref()
                .map_or(p.rate_bps, |s| s.settled_bits_per_second),
            ..p.clone()
        };
        if let Some(s) = &searched {
            bar.suspend(|| {
                output::diag!(
                    "rate search: settled on {} per stream (highest paced rate probed with <= \
                     {} % lost, half the {} % target: the longer run loses more than a probe)",
                    report::human_bps(s.settled_bits_per_second as f64),
                    s.target_loss_percent * socklab::bench::search::PROBE_SHARE_OF_TARGET,
                    s.target_loss_percent
                )
            });
        }
        let result = match load {
            None => client::run_test(cfg, p, &mut on_sample).map(|o| (o, None)),
            Some(bulk) => underload::with_load(cfg, p, bulk).map(|(o, b)| {
                let bps = report::rows(&b).iter().map(|r| r.bits_per_second).sum();
                (o, Some(bps))
            }),
        };
        match result {
            Ok((o, load_bps)) => {
                let under_load = kind::under_load(p, load_bps.is_some());
                let rows = report::rows(&o).into_iter().map(|mut r| {
                    r.rate_search = searched.clone();
                    r.under_load = under_load;
                    r.load_bits_per_second = load_bps;
                    r
                });
                partial
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .rows
                    .extend(rows);
                outcomes.push((o, searched))
            }
            Err(e) => {
                bar.finish_and_clear();
                // A refused test, an unreachable or silent server, a peer gone: all runtime
                // failures (exit 1), whatever test of the plan it was.
                return Err(super::failure(anyhow::Error::new(e)));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let rows = partial
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .rows
        .clone();
    let outcomes: Vec<TestOutcome> = outcomes.into_iter().map(|(o, _)| o).collect();
    let summary = report::summary(&rows);
    let mut out = output::Buffer::new();
    match format {
        Format::Json => {
            let doc = serde_json::json!({"meta": meta, "results": rows, "summary": summary});
            writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        }
        Format::JsonStream => writeln!(
            out,
            "{}",
            jsonl::line(
                "end",
                serde_json::json!({"results": rows, "summary": summary})
            )
        )?,
        Format::Csv => write!(out, "{}", report::csv(&rows))?,
        Format::Markdown => {
            write!(out, "{}", report::markdown(&rows))?;
            if !summary.is_empty() {
                writeln!(out, "{summary}")?;
            }
        }
        Format::Table => {
            write!(out, "{}", report::table(&rows))?;
            if !summary.is_empty() {
                writeln!(out, "{}", report::summary_text(&rows))?;
            }
        }
    }
    out.finish()?;
    if let Some(path) = &a.svg {
        std::fs::write(path, plot::svg(&outcomes))
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    let d = units::parse_duration(s).map_err(|e| e.to_string())?;
    if d.is_zero() || d > Duration::from_secs(24 * 3600) {
        return Err("duration must be above zero and at most 24h".into());
    }
    Ok(d)
}

fn parse_size(s: &str) -> Result<usize, String> {
    let n = units::parse_size(s).map_err(|e| e.to_string())?;
    if n == 0 || n > 16 << 20 {
        return Err(format!("size {n} out of range (1 to 16M)"));
    }
    Ok(n as usize)
}

/// A rate for `-b`: 0 (unpaced) or as [`parse_rate`].
fn parse_rate_or_zero(s: &str) -> Result<u64, String> {
    if s.trim() == "0" {
        return Ok(0);
    }
    parse_rate(s)
}

/// A loss target in percent: above 0, at most 100.
fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 100.0 => Ok(v),
        _ => Err(format!(
            "invalid loss target '{s}' (a percentage above 0, at most 100)"
        )),
    }
}

/// Bits per second with decimal suffixes k, M, G (as iperf3's -b).
fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, suf) = t.split_at(split);
    let v: f64 = num
        .parse()
        .map_err(|_| format!("invalid rate '{s}' (examples: 100M, 1G, 500k)"))?;
    let mul = match suf {
        "" => 1e0,
        "k" | "K" => 1e3,
        "m" | "M" => 1e6,
        "g" | "G" => 1e9,
        _ => return Err(format!("invalid rate '{s}' (examples: 100M, 1G, 500k)")),
    };
    let r = v * mul;
    if !(1.0..=1e12).contains(&r) {
        return Err(format!("rate '{s}' out of range (1 bit/s to 1T)"));
    }
    // Rounded, not truncated: 2.01k is 2010.0000000000002 or 2009.9999999999998 as f64.
    Ok(r.round() as u64)
}

/// A CPU list for `--cpu` (a newtype, so clap takes it as one value).
#[derive(Debug, Clone)]
struct CpuList(Vec<usize>);

/// `0,1` or `0-3` or `0,2-3`, each below the machine's CPU count.
fn parse_cpus(s: &str) -> Result<CpuList, String> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut v = Vec::new();
    for part in s.split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim()
                .parse()
                .map_err(|_| format!("invalid CPU list '{s}' (examples: 0,1 or 0-3)"))?,
            b.trim()
                .parse()
                .map_err(|_| format!("invalid CPU list '{s}' (examples: 0,1 or 0-3)"))?,
        );
        if a > b || b >= n {
            return Err(format!(
                "CPU range {part} invalid on this machine with {n} CPUs"
            ));
        }
        v.extend(a..=b);
    }
    Ok(CpuList(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100M"), Ok(100_000_000));
        assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        // Found by fuzzing a copy of this parser: decimals were truncated one bit/s low.
        assert_eq!(parse_rate("2.01k"), Ok(2010));
        assert_eq!(parse_rate("1.001k"), Ok(1001));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("10X").is_err());
        assert!(parse_rate("9999T").is_err());
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpus("0").map(|c| c.0), Ok(vec![0]));
        assert!(parse_cpus("1-0").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("100000").is_err());
        assert!(parse_cpus("0,").is_err());
    }
}
