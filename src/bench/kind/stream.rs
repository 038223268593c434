//! `stream`: bulk throughput, a one-way flow per stream (TCP writes of `-l` bytes; UDP
//! datagrams at full rate, or paced with `-b`), counted where it arrives.

use std::sync::atomic::AtomicBool;

use super::Kind;
use crate::bench::mesh::matrix::Figure;
use crate::bench::protocol::{SentCount, StreamResult, TestParams, Transport};
use crate::bench::receiver::{RecvCfg, RecvCtl};
use crate::bench::report::{self, Row, Table, human_bps, human_rate};
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

    /// One UDP datagram in an Ethernet MTU (1500 − 20 IPv4 − 8 UDP).
    fn default_size(&self) -> usize {
        1472
    }

    /// TCP: the receiver copies what its sender just wrote while it is in that CPU's cache
    /// (one stream on 127.0.0.1, 2 CPUs: 25-26 Gbit/s paired, 19-21 not). UDP: not paired, its
    /// receiving thread is the bound and needs a CPU of its own (27-32 Gbit/s paired against
    /// 54-60 not, GSO/GRO; 4.7-5.8 against 7.5-8.1 without).
    fn pairs_threads(&self, transport: Transport) -> bool {
        transport == Transport::Tcp
    }

    /// UDP: the highest rate within the loss target (the UDP default).
    fn searches_rate(&self, transport: Transport) -> bool {
        transport == Transport::Udp
    }

    fn table(&self) -> Table {
        TABLE
    }

    fn notes(&self, row: &Row) -> Vec<String> {
        notes(row)
    }

    fn summary(&self, rows: &[&Row]) -> Vec<String> {
        sentences(rows, |tcp, udp| {
            format!(
                "{:.2}x TCP's goodput ({} vs {})",
                ratio(udp.bits_per_second, tcp.bits_per_second),
                human_bps(udp.bits_per_second),
                human_bps(tcp.bits_per_second),
            )
        })
    }

    fn matrix_figure(&self) -> Figure {
        Figure::BitsPerSecond
    }
}

/// The table of one-way flows (`stream`, `rate`): goodput, messages per second, UDP loss and
/// jitter, CPU time of each side.
pub(super) const TABLE: Table = Table {
    headers: &[
        "test",
        "proto",
        "size",
        "dir",
        "goodput",
        "msg/s",
        "lost",
        "jitter us",
        "cpu ms c/s",
    ],
    cells,
};

fn cells(r: &Row) -> Vec<String> {
    let udp = r.transport == Transport::Udp;
    vec![
        super::of(r.test).name().into(),
        report::name(r.transport).into(),
        format!("{} B", r.size_bytes),
        format!("{:?}", r.dir).to_lowercase(),
        human_bps(r.bits_per_second),
        human_rate(r.packets_per_second),
        if udp {
            format!("{} ({:.2} %)", r.lost, r.lost_percent)
        } else {
            "0".into()
        },
        match (udp, r.jitter_ms) {
            (false, _) => "-".into(),
            (true, Some(j)) => format!("{:.1}", j * 1000.0),
            (true, None) => "n/a".into(),
        },
        format!("{:.0}/{:.0}", r.client_cpu_ms, r.server_cpu_ms),
    ]
}

/// The notes of a flow row: per UDP row where its loss went, what its jitter is made of and
/// its duplicates/reordering; per TCP row the sender's TCP_INFO and the reads the receiver
/// made; the bytes copied per byte delivered; and every sender that stopped early.
pub(super) fn notes(r: &Row) -> Vec<String> {
    let mut lines = Vec::new();
    let who = format!(
        "{} {} B {}:",
        report::name(r.transport),
        r.size_bytes,
        format!("{:?}", r.dir).to_lowercase()
    );
    if let Some(l) = r.loss_by_place {
        if r.lost > 0 {
            lines.push(format!(
                "{who} lost datagrams by place: sender {}, receiving socket {}, receiving \
                 host {}, path {}{}",
                l.sender,
                l.socket,
                l.receiving_host,
                l.path,
                if l.estimated {
                    " (estimate: GRO skbs converted at the mean datagrams per received skb, the error lands in path)"
                } else {
                    ""
                }
            ));
        }
        if let Some(j) = &r.jitter_note {
            lines.push(format!("{who} jitter {j}"));
        }
        if r.duplicates > 0 || r.reordered > 0 {
            lines.push(format!(
                "{who} {} duplicates, {} reordered (RFC 4737)",
                r.duplicates, r.reordered
            ));
        }
    }
    if let (Some(n), Some(reads)) = (r.retransmits, r.reads) {
        lines.push(format!(
            "{who} msg/s counts complete {} B messages; the receiver made {reads} reads; \
             sender: {n} retransmits, rtt {} us, cwnd {} segments",
            r.size_bytes,
            report::opt(r.rtt_us),
            report::opt(r.cwnd_segments)
        ));
    }
    if let Some(c) = report::copies_note(
        r.bytes,
        r.sender_copied_bytes,
        r.receiver_copied_bytes,
        r.zerocopy.as_ref(),
    ) {
        lines.push(format!("{who} {c}"));
    }
    for e in &r.sender_errors {
        lines.push(format!("{who} sender stopped early: {e}"));
    }
    lines
}

/// One sentence per payload size with a TCP and a UDP flow row: `lead` says what UDP did
/// against TCP, then how UDP was paced, what it lost and where, and TCP's retransmits.
pub(super) fn sentences(rows: &[&Row], lead: fn(&Row, &Row) -> String) -> Vec<String> {
    report::tcp_udp_pairs(rows)
        .into_iter()
        .map(|(tcp, udp)| {
            format!(
                "UDP {} B{}: {}, {:.2} % lost ({} of {}{}); TCP: 0 lost, {} retransmits",
                udp.size_bytes,
                match (&udp.rate_search, udp.paced_bits_per_second) {
                    (Some(s), 0) => format!(
                        " unpaced (a search found unpaced within {} % loss)",
                        s.target_loss_percent
                    ),
                    (Some(s), b) => format!(
                        " paced at {} per stream (searched: highest rate with <= {} % lost)",
                        human_bps(b as f64),
                        s.target_loss_percent
                    ),
                    (None, 0) => String::from(" unpaced"),
                    (None, b) => format!(" paced at {} per stream", human_bps(b as f64)),
                },
                lead(tcp, udp),
                udp.lost_percent,
                udp.lost,
                udp.sent_packets,
                match udp.loss_by_place {
                    Some(l) if udp.lost > 0 => format!(
                        ": sender {}, socket {}, receiving host {}, path {}",
                        l.sender, l.socket, l.receiving_host, l.path
                    ),
                    _ => String::new(),
                },
                tcp.retransmits.unwrap_or(0)
            )
        })
        .collect()
}

/// `a / b`, 0 when `b` is 0 (never NaN or Infinity).
pub(super) fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}
