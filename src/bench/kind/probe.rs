//! `probe`: open-loop latency probes. Requests leave on a fixed schedule (`rate_bps` /
//! (8 × size) per second) whatever the answers do, are echoed like [`rr`](super::rr)'s, and
//! are timed from their scheduled send time, so queueing shows instead of slowing the
//! schedule. `latency-under-load` runs them alone and beside a bulk stream
//! ([`underload`](crate::bench::underload)).

use std::sync::atomic::AtomicBool;

use super::rr::Rr;
use super::{Kind, Pacing};
use crate::bench::mesh::matrix::Figure;
use crate::bench::protocol::{SentCount, StreamResult, TestKind, TestParams, Transport};
use crate::bench::receiver::{RecvCfg, RecvCtl};
use crate::bench::report::{self, Row, Table, human_bps, us};
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

    /// [`Rr`]'s echo: every probe answered.
    fn receive(
        &self,
        sock: &Sock,
        params: &TestParams,
        cfg: RecvCfg,
        ctl: &RecvCtl,
        samples: &Samples<'_>,
    ) -> StreamResult {
        Rr.receive(sock, params, cfg, ctl, samples)
    }

    /// [`Rr`]'s count of the requests its echo loops answered.
    fn answered(&self, received: &[StreamResult]) -> u64 {
        Rr.answered(received)
    }
}

impl Kind for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }

    fn round_trips(&self) -> bool {
        true
    }

    /// Small probes: their latency, not their serialisation, is measured.
    fn default_size(&self) -> usize {
        64
    }

    /// The schedule, as the bit rate of `size`-byte requests at `--probe-rate` per second.
    fn rate_bps(&self, size: usize, pacing: &Pacing) -> u64 {
        u64::from(pacing.probes_per_second) * size as u64 * 8
    }

    /// A bulk stream of the same transport and streams, of the size that transport moves
    /// best (a full UDP datagram, 128 KiB TCP writes), at `-b` or as fast as it goes.
    fn load(&self, test: &TestParams, pacing: &Pacing) -> Option<TestParams> {
        Some(TestParams {
            kind: TestKind::Stream,
            size: match test.transport {
                Transport::Udp => 1472,
                Transport::Tcp => 128 << 10,
            },
            rate_bps: pacing.bitrate_bps.unwrap_or(0),
            ..test.clone()
        })
    }

    fn table(&self) -> Table {
        TABLE
    }

    /// Per transport with probes alone and under load: how much the bulk stream added.
    fn summary(&self, rows: &[&Row]) -> Vec<String> {
        let mut out = Vec::new();
        for t in [Transport::Tcp, Transport::Udp] {
            let find = |load: bool| {
                rows.iter()
                    .find(|r| r.transport == t && r.under_load == Some(load))
            };
            let (Some(idle), Some(busy)) = (find(false), find(true)) else {
                continue;
            };
            let (i, b) = (
                idle.latency.clone().unwrap_or_default(),
                busy.latency.clone().unwrap_or_default(),
            );
            out.push(format!(
                "{p} probes (open loop, {} B): p50 {} -> {} us, p99 {} -> {} us, p99.9 {} -> {} us \
                 beside a {p} bulk stream of {}; {} of {} probes lost",
                idle.size_bytes,
                us(i.p50_ns),
                us(b.p50_ns),
                us(i.p99_ns),
                us(b.p99_ns),
                us(i.p999_ns),
                us(b.p999_ns),
                busy.load_bits_per_second.map_or("-".into(), human_bps),
                b.lost,
                busy.sent_packets,
                p = report::name(t),
            ));
        }
        out
    }

    /// The tail: what a bulk transfer beside the probes hurts.
    fn matrix_figure(&self) -> Figure {
        Figure::RttP99Us
    }
}

/// Probes per transport, alone or beside a bulk stream: sent, lost, latency percentiles, and
/// the bulk stream's goodput.
const TABLE: Table = Table {
    headers: &[
        "probes",
        "size",
        "beside",
        "sent",
        "lost",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "max us",
        "bulk goodput",
    ],
    cells,
};

fn cells(r: &Row) -> Vec<String> {
    let l = r.latency.clone().unwrap_or_default();
    let proto = report::name(r.transport);
    vec![
        proto.into(),
        format!("{} B", r.size_bytes),
        if r.under_load == Some(true) {
            format!("{proto} bulk")
        } else {
            "nothing".into()
        },
        r.sent_packets.to_string(),
        l.lost.to_string(),
        us(l.p50_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
        r.load_bits_per_second.map_or("-".into(), human_bps),
    ]
}
