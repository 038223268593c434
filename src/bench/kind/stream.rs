//! `stream`: bulk throughput, a one-way flow per stream (TCP writes of `-l` bytes; UDP
//! datagrams at full rate, or paced with `-b`), counted where it arrives.

use std::sync::atomic::AtomicBool;

use super::Kind;
use crate::bench::protocol::{SentCount, StreamResult, TestParams, Transport};
use crate::bench::receiver::{RecvCfg, RecvCtl};
use crate::bench::sender::{self, SendCfg};
use crate::bench::session::{RoundTrips, Samples, StreamLoops};
use crate::sock::Sock;

/// Bulk throughput.
#[derive(Debug, Clone, Copy)]
pub struct Stream;

impl StreamLoops for Stream {
    /// [`sender::udp`] or [`sender::tcp`].
    fn send(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: SendCfg,
        abort: &AtomicBool,
    ) -> (SentCount, Option<RoundTrips>) {
        let sent = match params.transport {
            Transport::Udp => sender::udp(sock, cfg, abort),
            Transport::Tcp => sender::tcp(sock, cfg, abort),
        };
        (sent, None)
    }

    /// [`receiver::udp`](crate::bench::receiver::udp) or
    /// [`receiver::tcp`](crate::bench::receiver::tcp), sampling intervals.
    fn receive(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: RecvCfg,
        ctl: &RecvCtl,
        samples: &Samples<'_>,
    ) -> StreamResult {
        match params.transport {
            Transport::Udp => samples.udp(sock, cfg, ctl),
            Transport::Tcp => samples.tcp(sock, cfg, ctl),
        }
    }
}

impl Kind for Stream {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn round_trips(&self) -> bool {
        false
    }
}
