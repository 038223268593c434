//! Latency under load: open-loop probes ([`kind::probe`](super::kind::probe)) timed alone, then again while a
//! bulk stream of the same transport runs to the same server. The two are separate tests on
//! separate connections (the probes never queue behind the bulk data inside one TCP
//! connection's byte stream); what they share is everything below: the sockets' host, the
//! qdisc, the path and the server's CPUs. Comparing p50/p99/p99.9 of the two runs, TCP beside
//! UDP, shows the queueing a bulk transfer adds to everything else on the way.

use super::client::{self, ClientCfg};
use super::protocol::{Dir, TestParams};
use super::{BenchError, TestOutcome, report};

/// The bulk stream runs this much longer than the probes so they are under load throughout.
pub const BULK_MARGIN_MS: u64 = 500;

/// Runs `probe` (a [`kind::probe`](super::kind::probe) test) while `bulk` (the load its kind plans,
/// [`Kind::load`](super::kind::Kind::load)) runs beside it; returns (probe outcome, bulk outcome).
/// The bulk test starts first and lasts [`BULK_MARGIN_MS`] longer.
pub fn with_load(
    cfg: &ClientCfg,
    probe: &TestParams,
    bulk: &TestParams,
) -> Result<(TestOutcome, TestOutcome), BenchError> {
    let bulk = TestParams {
        duration_ms: probe.duration_ms + BULK_MARGIN_MS,
        dirs: vec![Dir::Up],
        interval_ms: 0,
        ..bulk.clone()
    };
    std::thread::scope(|s| {
        let load = s.spawn(|| client::run_test(cfg, &bulk, &mut |_, _| {}));
        let probed = client::run_test(cfg, probe, &mut |_, _| {});
        let loaded = load
            .join()
            .unwrap_or_else(|_| Err(BenchError::Test("the bulk stream's thread panicked".into())));
        Ok((probed?, loaded?))
    })
}

/// The bulk stream's goodput beside the probes: every stream's bits per second as its
/// receiver counted it, summed.
pub fn load_bits_per_second(bulk: &TestOutcome) -> f64 {
    report::rows(bulk).iter().map(|r| r.bits_per_second).sum()
}
