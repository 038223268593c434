//! What an agent sends back for a [`RunTest`](crate::bench::protocol::Message::RunTest): that it
//! started, then the finished test's figures as both sides counted them, or the stage at which
//! it failed.
//! The rr and probe latency histograms are shipped bucket by bucket so that the coordinator can merge
//! histograms of many pairs exactly (at the histogram's 3 significant digits).

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::bench::protocol::{SideReport, StreamResult, TestParams};
use crate::bench::sender::new_histogram;
use crate::bench::{RrSummary, TestOutcome};

/// Most histogram buckets accepted from an agent (a 3-digit histogram of 1 ns..60 s has
/// fewer non-empty buckets than this; the frame size limit bounds it anyway).
pub const MAX_BUCKETS: usize = 16_384;

/// A latency histogram as (value ns, count) pairs of its non-empty buckets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistogramWire {
    /// Each non-empty bucket: its highest equivalent value (ns) and its count.
    pub buckets: Vec<(u64, u64)>,
}

impl HistogramWire {
    /// The non-empty buckets of `h`.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        Self {
            buckets: h
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect(),
        }
    }

    /// Rebuilds the histogram (same bounds and precision as the bench's: 1 ns..60 s, 3 digits).
    pub fn to_histogram(&self) -> Result<Histogram<u64>, String> {
        if self.buckets.len() > MAX_BUCKETS {
            return Err(format!(
                "latency histogram of {} buckets exceeds {MAX_BUCKETS}",
                self.buckets.len()
            ));
        }
        let mut h = new_histogram();
        let high = h.high();
        for &(value, count) in &self.buckets {
            // A bucket's highest equivalent value may lie just above the bound; clamping keeps
            // it in the same bucket.
            h.record_n(value.clamp(1, high), count)
                .map_err(|e| format!("latency histogram: {e:?}"))?;
        }
        Ok(h)
    }
}

/// A finished test toward the target, as the source agent saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairReport {
    /// The source agent's host name (/proc/sys/kernel/hostname: a pod or node name).
    pub agent: String,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Every stream, as its receiver counted it (rr: as the requester counted it).
    pub streams: Vec<StreamResult>,
    /// The source agent's side (it ran the client).
    pub client: SideReport,
    /// The target agent's side (it ran the server).
    pub server: SideReport,
    /// rr and probe (latency-under-load): the round-trip histogram.
    pub rr_histogram: Option<HistogramWire>,
    /// rr: UDP requests whose reply never came.
    pub rr_lost: u64,
    /// latency-under-load: the bulk stream's goodput beside the probes, bit/s as the target
    /// counted it (absent from older agents and for tests without load).
    #[serde(default)]
    pub load_bits_per_second: Option<f64>,
}

impl PairReport {
    /// The parts of `o` that cross the wire.
    pub fn from_outcome(o: &TestOutcome, agent: String) -> Self {
        Self {
            agent,
            started_unix_ms: o.started_unix_ms,
            streams: o.streams.clone(),
            client: o.client.clone(),
            server: o.server.clone(),
            rr_histogram: o.rr_histogram.as_ref().map(HistogramWire::from_histogram),
            rr_lost: o.rr.as_ref().map_or(0, |r| r.lost),
            load_bits_per_second: None,
        }
    }

    /// The outcome again, for the test `params` the coordinator asked for (the latency
    /// summary is recomputed from the histogram).
    pub fn into_outcome(self, params: &TestParams) -> Result<TestOutcome, String> {
        let hist = self
            .rr_histogram
            .as_ref()
            .map(HistogramWire::to_histogram)
            .transpose()?;
        Ok(TestOutcome {
            params: params.clone(),
            started_unix_ms: self.started_unix_ms,
            streams: self.streams,
            client: self.client,
            server: self.server,
            rr: hist
                .as_ref()
                .map(|h| RrSummary::from_histogram(h, self.rr_lost)),
            samples: Vec::new(),
            rr_histogram: hist,
        })
    }
}

/// Where a test toward the target stopped, as the source agent saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailStage {
    /// The control connection to the target could not be made (connect(2) failed).
    Unreachable,
    /// The target did not complete the bench handshake: not an agent, another token, busy,
    /// or refused the test. No data socket was opened.
    Handshake,
    /// The data phase started and did not finish (a side died or vanished).
    Test,
}

/// An agent's answer to a `RunTest`: first `Started` (the request passed this agent's
/// checks and holds one of its test slots), then `Done` or `Failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunTestReply {
    /// Accepted: the agent is contacting the target.
    Started {
        /// The agent's id for this test (as in its log).
        test_id: u64,
    },
    /// The test ran.
    Done(Box<PairReport>),
    /// It did not.
    Failed {
        /// Where it stopped.
        stage: FailStage,
        /// One line.
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_cross_the_wire_and_merge_exactly() {
        let (mut a, mut b) = (new_histogram(), new_histogram());
        for v in [900u64, 1_000, 1_100, 50_000, 2_000_000] {
            a.record(v).unwrap();
        }
        for v in [1_000u64, 70_000_000_000 / 2, 123_456_789] {
            b.record(v).unwrap();
        }
        let wa = HistogramWire::from_histogram(&a);
        let json = serde_json::to_string(&wa).unwrap();
        let back: HistogramWire = serde_json::from_str(&json).unwrap();
        let ra = back.to_histogram().unwrap();
        assert_eq!(ra.len(), a.len());
        for q in [0.0, 0.5, 0.9, 1.0] {
            assert_eq!(ra.value_at_quantile(q), a.value_at_quantile(q));
        }
        // Merged from the wire == merged locally: percentiles of the union, not an average.
        let mut merged = ra;
        merged
            .add(HistogramWire::from_histogram(&b).to_histogram().unwrap())
            .unwrap();
        let mut local = a.clone();
        local.add(&b).unwrap();
        assert_eq!(merged.len(), 8);
        for q in [0.25, 0.5, 0.75, 0.99] {
            assert_eq!(merged.value_at_quantile(q), local.value_at_quantile(q));
        }
        // The top bucket of the range survives the trip (clamped into the same bucket).
        let mut top = new_histogram();
        top.record(top.high()).unwrap();
        let t = HistogramWire::from_histogram(&top).to_histogram().unwrap();
        assert_eq!(t.max(), top.max());
    }

    /// A coordinator or agent from before latency-under-load ran in the mesh omits the new
    /// fields: they parse as "no load".
    #[test]
    fn messages_without_load_fields_still_parse() {
        use crate::bench::protocol::Message;
        let params = TestParams {
            duration_ms: 100,
            ..TestParams::example(
                crate::bench::protocol::TestKind::Rr,
                crate::bench::protocol::Transport::Tcp,
                64,
            )
        };
        let mut old = serde_json::to_value(Message::RunTest {
            auth: None,
            target: "127.0.0.1:5301".parse().unwrap(),
            load: Some(Box::new(TestParams {
                kind: crate::bench::protocol::TestKind::Stream,
                ..params.clone()
            })),
            params,
            handshake_timeout_ms: 1000,
        })
        .unwrap();
        assert!(old.as_object_mut().unwrap().remove("load").is_some());
        match serde_json::from_value::<Message>(old) {
            Ok(Message::RunTest { load, .. }) => assert_eq!(load, None),
            other => panic!("{other:?}"),
        }
        let report = PairReport {
            agent: "a".into(),
            started_unix_ms: 1,
            streams: Vec::new(),
            client: Default::default(),
            server: Default::default(),
            rr_histogram: None,
            rr_lost: 0,
            load_bits_per_second: Some(1e9),
        };
        let mut v = serde_json::to_value(&report).unwrap();
        v.as_object_mut().unwrap().remove("load_bits_per_second");
        let back: PairReport = serde_json::from_value(v).unwrap();
        assert_eq!(back.load_bits_per_second, None);
        assert_eq!(back.agent, "a");
    }

    #[test]
    fn absurd_histograms_are_refused() {
        let big = HistogramWire {
            buckets: vec![(1, 1); MAX_BUCKETS + 1],
        };
        assert!(big.to_histogram().is_err());
    }
}
