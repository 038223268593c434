//! `rr`: request/response ping-pong latency. Each client stream sends a `-l`-byte request,
//! waits for the server's echo, and times the round trip; the result is the client's
//! histogram of round trips.

use std::sync::atomic::AtomicBool;

use super::Kind;
use crate::bench::mesh::matrix::Figure;
use crate::bench::protocol::{SentCount, StreamResult, TestParams};
use crate::bench::receiver::{self, RecvCfg, RecvCtl};
use crate::bench::report::{self, Row, Table, us};
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

    /// Small messages: the per-message cost is what is measured.
    fn default_size(&self) -> usize {
        64
    }

    fn table(&self) -> Table {
        TABLE
    }

    /// Per payload size with both transports: UDP's and TCP's p50 and p99.
    fn summary(&self, rows: &[&Row]) -> Vec<String> {
        report::tcp_udp_pairs(rows)
            .into_iter()
            .map(|(tcp, udp)| {
                let (t, u) = (
                    tcp.latency.clone().unwrap_or_default(),
                    udp.latency.clone().unwrap_or_default(),
                );
                format!(
                    "rr {} B: UDP p50 {} us vs TCP {} us ({}), p99 {} us vs {} us",
                    udp.size_bytes,
                    us(u.p50_ns),
                    us(t.p50_ns),
                    ratio_word(t.p50_ns as f64, u.p50_ns as f64, "faster"),
                    us(u.p99_ns),
                    us(t.p99_ns)
                )
            })
            .collect()
    }

    fn matrix_figure(&self) -> Figure {
        Figure::RttP50Us
    }
}

/// Round trips, lost requests and the latency percentiles, as the client timed them.
const TABLE: Table = Table {
    headers: &[
        "test",
        "proto",
        "size",
        "round trips",
        "lost",
        "p50 us",
        "p90 us",
        "p99 us",
        "p99.9 us",
        "max us",
    ],
    cells,
};

fn cells(r: &Row) -> Vec<String> {
    let l = r.latency.clone().unwrap_or_default();
    vec![
        "rr".into(),
        report::name(r.transport).into(),
        format!("{} B", r.size_bytes),
        l.count.to_string(),
        l.lost.to_string(),
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
    ]
}

/// "UDP 1.50x faster": how many times TCP's figure UDP's is ("no data" when either is 0).
fn ratio_word(tcp: f64, udp: f64, word: &str) -> String {
    if udp == 0.0 || tcp == 0.0 {
        return "no data".into();
    }
    format!("UDP {:.2}x {word}", tcp / udp)
}
