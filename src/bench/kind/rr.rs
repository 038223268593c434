//! `rr`: request/response ping-pong latency. Each client stream sends a `-l`-byte request,
//! waits for the server's echo, and times the round trip; the result is the client's
//! histogram of round trips.

use std::sync::atomic::AtomicBool;

use super::Kind;
use crate::bench::protocol::{SentCount, StreamResult, TestParams};
use crate::bench::receiver::{self, RecvCfg, RecvCtl};
use crate::bench::sender::{self, SendCfg};
use crate::bench::session::{RoundTrips, Samples, StreamLoops};
use crate::sock::Sock;

/// Request/response latency.
#[derive(Debug, Clone, Copy)]
pub struct Rr;

impl StreamLoops for Rr {
    /// [`sender::rr`]: one request in flight, timed until its answer.
    fn send(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: SendCfg,
        abort: &AtomicBool,
    ) -> (SentCount, Option<RoundTrips>) {
        let (sent, hist, lost) = sender::rr(sock, params.transport, cfg, params.busy_poll, abort);
        (sent, Some((hist, lost)))
    }

    /// [`receiver::echo`]: every request answered.
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

    /// The requests the echo loops received (each was answered).
    fn answered(&self, received: &[StreamResult]) -> u64 {
        received.iter().map(|s| s.packets).sum()
    }
}

impl Kind for Rr {
    fn name(&self) -> &'static str {
        "rr"
    }

    fn round_trips(&self) -> bool {
        true
    }
}
