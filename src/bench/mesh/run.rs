//! The coordinator: for each scheduled pair, a control connection to the source agent, the
//! token proved over its nonce, a [`RunTest`](Message::RunTest) naming the target, then the
//! agent's frames until its result. Every pair ends as a [`Cell`], whatever happens: an agent
//! that cannot be reached, does not speak the protocol, refuses, or dies mid-test is a cell
//! marked with the reason, and the mesh goes on. All waits are bounded.

use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bench::TestOutcome;
use crate::bench::protocol::{self, Message, TestParams};

use super::schedule::{self, Pair};
use super::wire::{FailStage, RunTestReply};

/// Slack beyond a test's duration for the agent's handshake with the target, the drain of
/// late datagrams and the result (the session itself aborts a test 10 s past its end).
const RESULT_SLACK: Duration = Duration::from_secs(15);
/// How long a busy source agent is retried before its cell is marked refused.
const BUSY_RETRY: Duration = Duration::from_secs(5);

/// One test of a mesh: run over every ordered pair.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshTest {
    /// The test each source agent runs toward its target.
    pub params: TestParams,
    /// latency-under-load: the bulk stream the source runs toward the same target beside the
    /// probe test `params` ([`underload::with_load`](crate::bench::underload::with_load)).
    pub load: Option<TestParams>,
}

/// A mesh to run.
#[derive(Debug, Clone)]
pub struct MeshCfg {
    /// The agents' control addresses.
    pub agents: Vec<SocketAddr>,
    /// The shared token (agents take mesh requests only with one).
    pub token: String,
    /// Each test runs over every ordered pair before the next test starts.
    pub tests: Vec<MeshTest>,
    /// None: rounds of disjoint pairs; Some(n): n tests at a time, sharing agents.
    pub concurrency: Option<usize>,
    /// Connect and handshake timeout, coordinator → source and source → target.
    pub handshake_timeout: Duration,
}

impl MeshCfg {
    /// The schedule: pairs grouped into the rounds that run together.
    pub fn schedule(&self) -> Vec<Vec<Pair>> {
        match self.concurrency {
            None => schedule::rounds(self.agents.len()),
            Some(n) => schedule::batches(self.agents.len(), n),
        }
    }
}

/// How a pair's test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellStatus {
    /// Measured.
    Ok,
    /// The coordinator could not connect to the source agent.
    SourceUnreachable,
    /// The source did not complete the handshake: not an agent, another token, or refused.
    SourceHandshake,
    /// The source agent could not connect to the target.
    TargetUnreachable,
    /// The target did not complete the handshake with the source (no data was sent).
    TargetHandshake,
    /// The test started and did not finish: an agent died or vanished.
    Failed,
}

impl CellStatus {
    /// A short mark for tables and heatmaps.
    pub fn mark(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::SourceUnreachable => "src down",
            Self::SourceHandshake => "src no handshake",
            Self::TargetUnreachable => "dst down",
            Self::TargetHandshake => "dst no handshake",
            Self::Failed => "failed",
        }
    }
}

/// One ordered pair's result.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Source agent index.
    pub source: usize,
    /// Target agent index.
    pub target: usize,
    /// The round (or batch) it ran in, from 0.
    pub round: usize,
    /// How it ended.
    pub status: CellStatus,
    /// Why it did not end well (one line).
    pub error: Option<String>,
    /// The source agent's host name, as it reported it.
    pub agent_host: Option<String>,
    /// The figures (status Ok).
    pub outcome: Option<TestOutcome>,
    /// latency-under-load: the bulk stream's goodput beside the probes, bit/s at the target.
    pub load_bits_per_second: Option<f64>,
}

/// Every pair of one test.
#[derive(Debug, Clone)]
pub struct TestMatrix {
    /// The test.
    pub params: TestParams,
    /// latency-under-load: the bulk stream run beside it.
    pub load: Option<TestParams>,
    /// One cell per ordered pair, in schedule order.
    pub cells: Vec<Cell>,
}

/// What the coordinator reports while it runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A round starts: test index, round index, rounds in all, its pairs.
    Round(usize, usize, usize, &'a [Pair]),
    /// A pair finished.
    Cell(&'a TestParams, &'a Cell),
}

/// Runs every test over every scheduled pair. Pairs of a round run at once, each on its own
/// thread; the next round starts when the whole round is done.
pub fn run(cfg: &MeshCfg, on_progress: &(dyn Fn(Progress<'_>) + Sync)) -> Vec<TestMatrix> {
    let plan = cfg.schedule();
    cfg.tests
        .iter()
        .enumerate()
        .map(|(t, test)| {
            let params = &test.params;
            let cells = Mutex::new(Vec::new());
            for (r, round) in plan.iter().enumerate() {
                on_progress(Progress::Round(t, r, plan.len(), round));
                std::thread::scope(|scope| {
                    for &(s, d) in round {
                        let cells = &cells;
                        scope.spawn(move || {
                            let cell = request(cfg, test, s, d, r);
                            on_progress(Progress::Cell(params, &cell));
                            // A poisoned lock only means another pair's thread panicked;
                            // its cells are still valid.
                            cells.lock().unwrap_or_else(|e| e.into_inner()).push(cell);
                        });
                    }
                });
            }
            let mut cells = cells.into_inner().unwrap_or_else(|e| e.into_inner());
            cells.sort_by_key(|c| (c.round, c.source, c.target));
            TestMatrix {
                params: params.clone(),
                load: test.load.clone(),
                cells,
            }
        })
        .collect()
}

/// Asks agent `s` to run `params` toward agent `d`; never fails, the cell says how it went.
pub fn request(cfg: &MeshCfg, test: &MeshTest, s: usize, d: usize, round: usize) -> Cell {
    let mut cell = Cell {
        source: s,
        target: d,
        round,
        status: CellStatus::Ok,
        error: None,
        agent_host: None,
        outcome: None,
        load_bits_per_second: None,
    };
    let deadline = Instant::now() + BUSY_RETRY;
    let mut wait = Duration::from_millis(50);
    loop {
        match ask(cfg, test, cfg.agents[s], cfg.agents[d]) {
            Ok((outcome, host, load_bps)) => {
                cell.outcome = Some(outcome);
                cell.load_bits_per_second = load_bps;
                cell.agent_host = Some(host);
                return cell;
            }
            Err(Failure::Busy(_)) if Instant::now() + wait < deadline => {
                std::thread::sleep(wait);
                wait *= 2;
            }
            Err(f) => {
                let (status, why) = f.status();
                cell.status = status;
                cell.error = Some(why);
                return cell;
            }
        }
    }
}

/// Why a request gave no result.
enum Failure {
    Connect(String),
    Busy(String),
    SourceHandshake(String),
    Agent(FailStage, String),
    Lost(String),
}

impl Failure {
    fn status(self) -> (CellStatus, String) {
        match self {
            Self::Connect(m) => (CellStatus::SourceUnreachable, m),
            Self::Busy(m) | Self::SourceHandshake(m) => (CellStatus::SourceHandshake, m),
            Self::Agent(FailStage::Unreachable, m) => (CellStatus::TargetUnreachable, m),
            Self::Agent(FailStage::Handshake, m) => (CellStatus::TargetHandshake, m),
            Self::Agent(FailStage::Test, m) | Self::Lost(m) => (CellStatus::Failed, m),
        }
    }
}

/// A measured pair: the outcome, the source agent's host name, the load's bit/s.
type Answer = (TestOutcome, String, Option<f64>);

fn ask(
    cfg: &MeshCfg,
    test: &MeshTest,
    source: SocketAddr,
    target: SocketAddr,
) -> Result<Answer, Failure> {
    let params = &test.params;
    let hs = cfg.handshake_timeout;
    let mut conn = TcpStream::connect_timeout(&source, hs)
        .map_err(|e| Failure::Connect(format!("cannot reach agent {source}: {e}")))?;
    let shake = |e: protocol::FrameError| {
        Failure::SourceHandshake(format!("agent {source}: no bench handshake: {e}"))
    };
    conn.set_read_timeout(Some(hs))
        .map_err(|e| shake(e.into()))?;
    conn.set_write_timeout(Some(hs))
        .map_err(|e| shake(e.into()))?;
    let nonce = match protocol::read_message(&mut conn).map_err(shake)? {
        Message::Hello { nonce, .. } => nonce,
        other => {
            return Err(Failure::SourceHandshake(format!(
                "agent {source}: expected hello, got {}",
                kind(&other)
            )));
        }
    };
    let request = Message::RunTest {
        auth: Some(protocol::auth_tag(&cfg.token, &nonce)),
        target,
        params: params.clone(),
        handshake_timeout_ms: hs.as_millis() as u64,
        load: test.load.clone().map(Box::new),
    };
    protocol::write_message(&mut conn, &request).map_err(shake)?;
    match protocol::read_message(&mut conn).map_err(shake)? {
        Message::RunTestReply { reply } if matches!(*reply, RunTestReply::Started { .. }) => {}
        Message::Refused { reason, retry } => {
            let m = format!("agent {source} refused: {reason}");
            return Err(if retry {
                Failure::Busy(m)
            } else {
                Failure::SourceHandshake(m)
            });
        }
        other => {
            return Err(Failure::SourceHandshake(format!(
                "agent {source}: expected run_test_reply (started), got {}",
                kind(&other)
            )));
        }
    }
    // From here the agent is running the test: the result comes after the test's duration.
    let load_ms = if test.load.is_some() {
        crate::bench::underload::BULK_MARGIN_MS
    } else {
        0
    };
    let patience = hs * 2 + Duration::from_millis(params.duration_ms + load_ms) + RESULT_SLACK;
    let lost = |e: String| Failure::Lost(format!("agent {source} lost mid-test: {e}"));
    conn.set_read_timeout(Some(patience))
        .map_err(|e| lost(e.to_string()))?;
    let until = Instant::now() + patience;
    loop {
        if Instant::now() > until {
            return Err(lost("no result in time".into()));
        }
        match protocol::read_message(&mut conn).map_err(|e| lost(e.to_string()))? {
            Message::Interval { .. } => {}
            Message::RunTestReply { reply } => match *reply {
                RunTestReply::Done(report) => {
                    let host = report.agent.clone();
                    let load_bps = report.load_bits_per_second;
                    let o = report
                        .into_outcome(params)
                        .map_err(|e| Failure::Agent(FailStage::Test, e))?;
                    return Ok((o, host, load_bps));
                }
                RunTestReply::Failed { stage, message } => {
                    return Err(Failure::Agent(stage, message));
                }
                RunTestReply::Started { .. } => return Err(lost("started twice".into())),
            },
            Message::Error { message } => return Err(lost(message)),
            other => return Err(lost(format!("unexpected {}", kind(&other)))),
        }
    }
}

/// A message's type name, for errors (never its contents: they may be large).
fn kind(m: &Message) -> String {
    serde_json::to_value(m)
        .ok()
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
