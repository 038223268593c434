//! Test kinds: each kind of bench test is one module behind one trait, [`Kind`], and
//! [`of`] maps a [`TestKind`] to it. Everything the rest of the bench needs to know about a
//! kind is a hook of the trait: which streams it opens and which side sends them (setup), the
//! loop each stream's thread runs ([`StreamLoops`], delegating to
//! [`sender`](crate::bench::sender) and [`receiver`](crate::bench::receiver)), and how its
//! streams' results become figures. The client, the server and the session ask the kind; they
//! never ask which kind it is.
//!
//! - [`stream`]: bulk throughput (TCP stream, UDP at full or paced rate);
//! - [`rate`]: small-message packet rate, counted like a stream;
//! - [`rr`]: request/response ping-pong latency;
//! - [`probe`]: open-loop latency probes (latency under load).
//!
//! A new kind is one file here plus one [`TestKind`] variant (CONTRIBUTING.md has the recipe).

pub mod probe;
pub mod rate;
pub mod rr;
pub mod stream;

use crate::bench::TestOutcome;
use crate::bench::mesh::matrix::Figure;
use crate::bench::protocol::{Dir, SentCount, StreamResult, TestKind, TestParams, Transport};
use crate::bench::report::{self, Row, Table};
use crate::bench::session::{Job, StreamLoops};
use crate::sock::Sock;

/// One kind of bench test. The provided methods cover the two shapes the kinds so far take,
/// chosen by [`Kind::round_trips`]: a one-way flow counted where it arrives ([`stream`],
/// [`rate`]), or round trips timed by the client ([`rr`], [`probe`]). A kind overrides what
/// differs.
pub trait Kind: StreamLoops {
    /// The kind's name, as the JSON and the CLI spell its [`TestKind`] (`"stream"`).
    fn name(&self) -> &'static str;

    /// Whether the kind times round trips: the client sends requests on Up streams only, the
    /// server answers each, and the result is the client's latency histogram
    /// ([`TestOutcome::rr`](crate::bench::TestOutcome::rr)), not a flow counted at a receiver.
    fn round_trips(&self) -> bool;

    /// Plan: the payload size when `-l` is not given.
    fn default_size(&self) -> usize;

    /// Plan: the sending rate per stream (`rate_bps`) of a test with `size`-byte payloads,
    /// from what was asked: `-b`, or nothing (as fast as possible).
    fn rate_bps(&self, size: usize, pacing: &Pacing) -> u64 {
        let _ = size;
        pacing.bitrate_bps.unwrap_or(0)
    }

    /// Plan: the bulk stream a test of this kind runs beside, when the kind is measured both
    /// alone and under load ([`underload`](crate::bench::underload)); None: alone only.
    fn load(&self, test: &TestParams, pacing: &Pacing) -> Option<TestParams> {
        let _ = (test, pacing);
        None
    }

    /// Setup: whether, with the peer on this host and no `--cpu`, a stream's two threads (its
    /// sender and its receiver, one in each process) are pinned to one CPU
    /// ([`Placement`](crate::bench::session::Placement)); otherwise the scheduler places them.
    fn pairs_threads(&self, transport: Transport) -> bool {
        let _ = transport;
        false
    }

    /// Plan: whether a test of this kind over `transport` searches its pacing rate first
    /// when no `-b` is given ([`search`](crate::bench::search)).
    fn searches_rate(&self, transport: Transport) -> bool {
        let _ = transport;
        false
    }

    /// Setup: the directions that get streams, given those asked (`-R`, `--bidir`).
    fn directions(&self, asked: &[Dir]) -> Vec<Dir> {
        if self.round_trips() {
            vec![Dir::Up]
        } else {
            asked.to_vec()
        }
    }

    /// Setup: whether the client runs the sending loop of a stream flowing `dir` (else the
    /// server does, and the client runs the receiving loop).
    fn client_sends(&self, dir: Dir) -> bool {
        self.round_trips() || dir == Dir::Up
    }

    /// Setup: whether the server sends datagrams on a stream flowing `dir`, data or answers;
    /// a UDP stream's return address is proved before the server sends on it (see
    /// [`Probe`](crate::bench::protocol::Probe)).
    fn server_sends(&self, dir: Dir) -> bool {
        self.round_trips() || !self.client_sends(dir)
    }

    /// Summarise: the results the client reports per stream, from the receivers' results
    /// (`received`, both sides', each merged with its sender's count) and the client's own
    /// senders' counts (`sent`). A flow is counted where it arrived; round trips by the
    /// requester (the answering side counted requests, not answers), every stream Up.
    fn stream_results(&self, received: Vec<StreamResult>, sent: &[SentCount]) -> Vec<StreamResult> {
        if !self.round_trips() {
            return received;
        }
        sent.iter()
            .map(|s| StreamResult {
                stream: s.stream,
                dir: Some(Dir::Up),
                packets: s.packets,
                sent_packets: s.packets,
                sent_bytes: s.bytes,
                tcp: s.tcp,
                ..StreamResult::default()
            })
            .collect()
    }

    /// Summarise: the report row of direction `dir` from its streams' results. A flow:
    /// [`report::flow_row`], over the receivers' time; round trips: the requester's counts
    /// over the test's duration, with its latency.
    fn row(&self, o: &TestOutcome, dir: Dir, streams: &[&StreamResult]) -> Row {
        if self.round_trips() {
            report::row(o, dir, streams, o.params.duration_ms * 1_000_000)
        } else {
            report::flow_row(o, dir, streams)
        }
    }

    /// Render: the table the kind's rows go in (kinds with the same headers share one).
    fn table(&self) -> Table;

    /// Render: the note lines under the table about one of the kind's rows.
    fn notes(&self, row: &Row) -> Vec<String> {
        let _ = row;
        Vec::new()
    }

    /// Render: the sentences that say what differed between TCP and UDP (or alone and under
    /// load), from the kind's rows in report order.
    fn summary(&self, rows: &[&Row]) -> Vec<String>;

    /// Render: the figure a `bench mesh` matrix shows for the kind unless `--figure` says.
    fn matrix_figure(&self) -> Figure;
}

/// The pacing a command line asked for, which a kind turns into its streams' rate
/// ([`Kind::rate_bps`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Pacing {
    /// `-b`: bits per second per stream, if given.
    pub bitrate_bps: Option<u64>,
    /// `--probe-rate`: probes per second per stream.
    pub probes_per_second: u32,
}

/// Every [`TestKind`], in the order reports list their tables.
pub const ALL: [TestKind; 4] = [
    TestKind::Stream,
    TestKind::Rate,
    TestKind::Rr,
    TestKind::Probe,
];

/// The kind of a [`TestKind`]: the one place the enum becomes behaviour.
pub fn of(kind: TestKind) -> &'static dyn Kind {
    match kind {
        TestKind::Stream => &stream::Stream,
        TestKind::Rate => &rate::Rate,
        TestKind::Rr => &rr::Rr,
        TestKind::Probe => &probe::Probe,
    }
}

/// The streams of a test, in id order: `parallel` per direction, directions as its kind
/// takes them from `params.dirs` ([`Kind::directions`]).
pub fn streams(params: &TestParams) -> Vec<(u16, Dir)> {
    of(params.kind)
        .directions(&params.dirs)
        .into_iter()
        .flat_map(|d| std::iter::repeat_n(d, params.parallel as usize))
        .enumerate()
        .map(|(i, d)| (i as u16, d))
        .collect()
}

/// What this side (`client` or not) does with the data socket of a stream flowing `dir`
/// ([`Kind::client_sends`]).
pub fn job(params: &TestParams, dir: Dir, client: bool, sock: Sock) -> Job {
    if of(params.kind).client_sends(dir) == client {
        Job::Send(sock)
    } else {
        Job::Recv(sock)
    }
}

/// What a test's rows say about load ([`Row::under_load`]): for a kind measured under load
/// ([`Kind::load`]), whether its load ran beside it (`beside`); None for other kinds.
pub fn under_load(params: &TestParams, beside: bool) -> Option<bool> {
    of(params.kind)
        .load(params, &Pacing::default())
        .map(|_| beside)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kind: TestKind, dirs: Vec<Dir>) -> TestParams {
        TestParams {
            duration_ms: 100,
            parallel: 2,
            dirs,
            gso: false,
            gro: false,
            ..TestParams::example(kind, Transport::Udp, 64)
        }
    }

    /// Every variant has a kind whose name is the variant as the JSON and the CLI spell it,
    /// and parses back to the variant. The match fails to compile when a variant is added:
    /// add it to [`ALL`] and to [`of`] too.
    #[test]
    fn every_test_kind_maps_to_a_kind_whose_name_round_trips() {
        let index = |k: TestKind| match k {
            TestKind::Stream => 0,
            TestKind::Rate => 1,
            TestKind::Rr => 2,
            TestKind::Probe => 3,
        };
        let mut names = Vec::new();
        for (i, k) in ALL.into_iter().enumerate() {
            assert_eq!(index(k), i, "{k:?} listed once, in order");
            let name = of(k).name();
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::json!(name));
            assert_eq!(
                serde_json::from_value::<TestKind>(serde_json::json!(name)).unwrap(),
                k
            );
            names.push(name);
        }
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "distinct names: {names:?}");
    }

    /// The setup hooks as the client and server use them: a flow keeps the directions asked
    /// and its sender is the side the data leaves; a round-trip kind requests on Up streams
    /// only, from the client, and the server sends (answers) on every stream.
    #[test]
    fn setup_hooks_place_each_stream() {
        let both = vec![Dir::Up, Dir::Down];
        let flow = streams(&params(TestKind::Stream, both.clone()));
        assert_eq!(
            flow,
            [(0, Dir::Up), (1, Dir::Up), (2, Dir::Down), (3, Dir::Down)]
        );
        let rr = streams(&params(TestKind::Rr, both.clone()));
        assert_eq!(rr, [(0, Dir::Up), (1, Dir::Up)]);
        for k in ALL {
            let kind = of(k);
            for dir in [Dir::Up, Dir::Down] {
                if kind.round_trips() {
                    assert!(
                        kind.client_sends(dir) && kind.server_sends(dir),
                        "{k:?} {dir:?}"
                    );
                } else {
                    assert_eq!(kind.client_sends(dir), dir == Dir::Up, "{k:?} {dir:?}");
                    assert_eq!(kind.server_sends(dir), dir == Dir::Down, "{k:?} {dir:?}");
                }
            }
        }
        // Only the probes plan a load, and it is a stream of the probes' transport.
        for k in ALL {
            let p = params(k, vec![Dir::Up]);
            let load = of(k).load(&p, &Pacing::default());
            assert_eq!(load.is_some(), k == TestKind::Probe, "{k:?}");
            assert_eq!(under_load(&p, true), load.as_ref().map(|_| true));
            if let Some(l) = load {
                assert_eq!(
                    (l.kind, l.transport, l.size),
                    (TestKind::Stream, p.transport, 1472)
                );
            }
        }
    }
}
