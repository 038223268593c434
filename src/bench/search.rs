//! The UDP rate a user wants: the highest paced rate whose loss stays at or below a target
//! (1 % by default), found by a short search of probe tests before the measured run.
//!
//! Each probe is a whole test against the server ([`client::run_test`]), so the loss it
//! sees is the receiver's count, carried over the control connection: the search works the
//! same across hosts as on loopback, in either direction. The first probe is unpaced; its
//! delivered rate is the first paced candidate (what the receiver could take) and its offered
//! rate the first upper bound; the search settles on a paced rate even when the unpaced probe
//! met the target. Then a geometric bisection between the best rate that met the
//! target and the lowest that did not (halving while none has met it), until the two are
//! within [`RESOLUTION`] of each other or [`MAX_PROBES`] probes ran. A probe meets the target
//! when it lost at most [`PROBE_SHARE_OF_TARGET`] of it, so that the longer measured run stays
//! within the target itself.

use serde::Serialize;

use super::client::{self, ClientCfg};
use super::protocol::TestParams;
use super::report;
use super::{BenchError, TestOutcome};

/// Most probes one search runs.
pub const MAX_PROBES: usize = 7;
/// The search stops when the failing rate is within this factor of the passing one.
pub const RESOLUTION: f64 = 1.10;
/// A probe passes when its loss is at most this share of the target. Probes are short
/// (100–300 ms) and the measured run at the rate they settle on is longer, with more chances
/// of a stall: on loopback, 3 of 5 three-second runs at rates whose probes had lost at most 1 %
/// lost 1.4 % (`scripts/bench-compare.sh`, 2026-12-01). Half the target keeps the run within it.
pub const PROBE_SHARE_OF_TARGET: f64 = 0.5;

/// Whether a probe passes a search for `target_loss_percent`.
fn passes(p: &Probe, target_loss_percent: f64) -> bool {
    p.lost_percent <= target_loss_percent * PROBE_SHARE_OF_TARGET
}

/// Lowest rate probed, bits/s per stream.
const FLOOR_BPS: u64 = 100_000;

/// One probe of a search.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Probe {
    /// Pacing rate per stream, bits/s (0: unpaced).
    pub paced_bits_per_second: u64,
    /// Goodput the receivers counted, bits/s, all streams.
    pub received_bits_per_second: f64,
    /// Payload the senders sent, bits/s over the probe's duration, all streams.
    pub sent_bits_per_second: f64,
    /// Datagrams lost, % of sent (the receivers' count).
    pub lost_percent: f64,
}

/// What a search found.
#[derive(Debug, Clone, Serialize)]
pub struct RateSearch {
    /// The loss target, % of datagrams sent.
    pub target_loss_percent: f64,
    /// The rate it settled on, bits/s per stream (always paced).
    pub settled_bits_per_second: u64,
    /// The probes, in the order run.
    pub probes: Vec<Probe>,
}

/// Searches the pacing rate for `params` (a UDP test) with probes of `probe_ms` each;
/// `on_probe` sees every probe as it finishes (for progress on stderr).
pub fn search(
    cfg: &ClientCfg,
    params: &TestParams,
    target_loss_percent: f64,
    probe_ms: u64,
    on_probe: &mut dyn FnMut(&Probe),
) -> Result<RateSearch, BenchError> {
    let streams = u64::from(params.parallel.max(1)) * params.dirs.len().max(1) as u64;
    let mut probes = Vec::new();
    let mut run = |rate: u64| -> Result<Probe, BenchError> {
        let p = TestParams {
            rate_bps: rate,
            duration_ms: probe_ms,
            interval_ms: 0,
            ..params.clone()
        };
        let o = client::run_test(cfg, &p, &mut |_, _| {})?;
        let probe = measure(&o, rate, p.duration_ms * 1_000_000);
        on_probe(&probe);
        probes.push(probe);
        Ok(probe)
    };
    let first = run(0)?;
    let ok = |p: &Probe| passes(p, target_loss_percent);
    // Per stream: what the receivers took, shared out.
    let took = (first.received_bits_per_second / streams as f64) as u64;
    // What the unpaced probe offered bounds the search from above. It never settles unpaced,
    // even when the unpaced probe passed: an unpaced sender's loss is the receiver's luck
    // (five 100-300 ms loopback probes lost 0, 2.0, 3.5, 0 and 1.3 %, and a 3 s unpaced run
    // after one that lost 0 lost 3.0 %), while runs paced at what the receivers took lost
    // 0.13-0.74 % (`scripts/bench-compare.sh`, 2026-12-02). When it passed, the paced probe at
    // `took` (about `offered`) passes and ends the search.
    let offered = (first.sent_bits_per_second / streams as f64) as u64;
    let (mut good, mut bad) = (None::<u64>, offered.max(took).max(FLOOR_BPS));
    let mut next = took.max(FLOOR_BPS);
    for _ in 1..MAX_PROBES {
        let p = run(next)?;
        if ok(&p) {
            good = Some(next);
        } else {
            bad = next;
        }
        next = match good {
            // Nothing passed yet: halve.
            None => (next / 2).max(FLOOR_BPS),
            Some(g) => ((g as f64 * bad as f64).sqrt()) as u64,
        };
        if good.is_some_and(|g| (bad as f64) <= g as f64 * RESOLUTION) {
            break;
        }
        if good.is_none() && next == FLOOR_BPS && bad == FLOOR_BPS {
            break;
        }
    }
    Ok(RateSearch {
        target_loss_percent,
        settled_bits_per_second: good.unwrap_or(FLOOR_BPS),
        probes,
    })
}

/// A probe's figures from its outcome: all rows of the test summed.
fn measure(o: &TestOutcome, rate: u64, duration_ns: u64) -> Probe {
    let rows = report::rows(o);
    let sent_bytes: u64 = rows.iter().map(|r| r.sent_bytes).sum();
    let (lost, sent) = rows
        .iter()
        .fold((0, 0), |(l, s), r| (l + r.lost, s + r.sent_packets));
    Probe {
        paced_bits_per_second: rate,
        received_bits_per_second: rows.iter().map(|r| r.bits_per_second).sum(),
        sent_bits_per_second: super::stats::bits_per_second(sent_bytes, duration_ns),
        lost_percent: super::stats::percent(lost, sent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(lost_percent: f64) -> Probe {
        Probe {
            paced_bits_per_second: 1,
            received_bits_per_second: 1.0,
            sent_bits_per_second: 1.0,
            lost_percent,
        }
    }

    /// A probe must keep well inside the target: at 1 %, 0.5 % passes and 0.6 % does not.
    #[test]
    fn a_probe_passes_at_half_the_target() {
        assert!(passes(&probe(0.5), 1.0));
        assert!(!passes(&probe(0.6), 1.0));
        assert!(passes(&probe(0.0), 0.0));
        assert!(!passes(&probe(0.01), 0.0));
    }
}
