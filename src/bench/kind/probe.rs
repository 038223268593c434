//! `probe`: open-loop latency probes. Requests leave on a fixed schedule (`rate_bps` /
//! (8 × size) per second) whatever the answers do, are echoed like [`rr`](super::rr)'s, and
//! are timed from their scheduled send time, so queueing shows instead of slowing the
//! schedule. `latency-under-load` runs them alone and beside a bulk stream
//! ([`underload`](crate::bench::underload)).

use std::sync::atomic::AtomicBool;

use super::Kind;
use crate::bench::protocol::{SentCount, StreamResult, TestParams};
use crate::bench::receiver::{self, RecvCfg, RecvCtl};
use crate::bench::sender::{self, SendCfg};
use crate::bench::session::{RoundTrips, Samples, StreamLoops};
use crate::sock::Sock;

/// Open-loop latency probes.
#[derive(Debug, Clone, Copy)]
pub struct Probe;

impl StreamLoops for Probe {
    /// [`sender::probe`]: requests on the schedule, answers timed as they come.
    fn send(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: SendCfg,
        abort: &AtomicBool,
    ) -> (SentCount, Option<RoundTrips>) {
        let (sent, hist, lost) = sender::probe(sock, params.transport, cfg, abort);
        (sent, Some((hist, lost)))
    }

    /// [`receiver::echo`]: every probe answered.
    fn receive(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: RecvCfg,
        ctl: &RecvCtl,
        _samples: &Samples<'_>,
    ) -> StreamResult {
        receiver::echo(sock, params.transport, cfg, ctl)
    }
}

impl Kind for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn round_trips(&self) -> bool {
        true
    }
}
