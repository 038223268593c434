//! Claim 11: what happens when a receiver stops reading. UDP: a receiver that does not read is
//! sent more datagrams than its buffer holds; the ones that do not fit are dropped, and three
//! independent counts must agree (sent − received, the socket's SO_RXQ_OVFL count, the
//! namespace's Udp RcvbufErrors). TCP: the receiver (small SO_RCVBUF) stops reading while a
//! nonblocking sender writes until the kernel refuses (EAGAIN); the wire shows whether the
//! receiver advertised a zero window; then reading resumes and every byte is checked.

use std::collections::BTreeMap;
use std::net::Shutdown;

use serde::Serialize;

use super::article::{FULL_BUFFER_DROPS, NO_FLOW_CONTROL_ON_LO, TCP_FLOW_CONTROL};
use super::c10_buffer_bookkeeping::{FILL_RCVBUF, Fill, fill};
use super::observe::{SETTLE, Trial, poll_until, tcp_pair};
use super::{Evidence, Experiment, Family, Host, Lab, Part, host::NEEDS_ROOT};
use crate::os::counters::Snapshot;
use crate::sock::{Sock, Step};

/// The experiment of claim 11.
pub struct FullBuffer;

/// Payload of the UDP datagrams.
const UDP_PAYLOAD: usize = 512;
/// SO_RCVBUF of the TCP receiver, as asked.
const TCP_RCVBUF: usize = 16 * 1024;
/// SO_SNDBUF of the TCP sender, as asked: larger than the receiver's buffer, so that the
/// receiver fills up before the sender's own buffer does.
const TCP_SNDBUF: usize = 128 * 1024;
/// Bytes per send() call.
const CHUNK: usize = 16 * 1024;
/// The sender gives up after this many bytes if the kernel never says EAGAIN.
const MAX_STREAM: u64 = 64 << 20;

/// The TCP run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Stream {
    /// Bytes the kernel accepted from send() before it said EAGAIN (or the bound).
    pub(crate) sent: u64,
    /// Whether send() failed with EAGAIN while the receiver was not reading.
    pub(crate) stopped: bool,
    /// Bytes read once reading resumed, up to the sender's FIN.
    pub(crate) received: u64,
    /// Offset of the first byte that differed from what was sent, if any.
    pub(crate) first_bad: Option<u64>,
    /// Segments from the receiver with a zero window, if the wire was captured.
    pub(crate) zero_windows: Option<usize>,
}

impl Stream {
    fn intact(&self) -> bool {
        self.received == self.sent && self.first_bad.is_none()
    }
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// The UDP fill.
    pub(crate) udp: Fill,
    /// The family the sockets were of (IPv6 counts in Udp6.RcvbufErrors).
    family: Family,
    /// Udp.RcvbufErrors (Udp6.RcvbufErrors) moved by this much during the fill (private
    /// namespace only).
    pub(crate) rcvbuf_errors: Option<i64>,
    /// The TCP run.
    pub(crate) tcp: Stream,
    /// TCP counters that moved during the TCP run (private namespace only).
    pub(crate) tcp_counters: Option<BTreeMap<String, i64>>,
    /// Evidence of the UDP and TCP parts.
    pub(crate) ev: [Evidence; 2],
}

impl Experiment for FullBuffer {
    fn claim(&self) -> u8 {
        11
    }
    fn title(&self) -> &'static str {
        "full receive buffer: drop or flow control"
    }
    fn article(&self) -> &'static str {
        "Datagrams that arrive while the receive buffer is full are dropped. TCP has flow control and stops sending, \"but on lo I saw no flow control, only dropping\"."
    }
    fn explanation(&self) -> &'static str {
        "udp(7): a datagram that does not fit the receive buffer is dropped and counted (Udp RcvbufErrors, SO_RXQ_OVFL in socket(7)); UDP has no flow control (RFC 768). TCP's receiver advertises the free space of its buffer as the window and a sender may not send beyond it (RFC 9293 §3.8.6, RFC 793 §3.7 flow control): when it is full the window is zero (TcpExt TCPToZeroWindowAdv), the sender keeps data in its send buffer, send() blocks or fails with EAGAIN (tcp(7), send(2)), and zero-window probes wait for the window to reopen (RFC 1122 §4.2.2.17)."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c11")?;
        Ok(judge(&observe(&host)?))
    }
}

/// The byte at stream offset `i`: a pattern that shows lost, doubled or reordered bytes.
fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

/// Nonblocking sends of the pattern until EAGAIN (or [`MAX_STREAM`]); returns (sent, stopped).
fn write_until_stopped(client: &Sock) -> Step<(u64, bool)> {
    client.set_nonblocking(true)?;
    let mut sent = 0u64;
    while sent < MAX_STREAM {
        let chunk: Vec<u8> = (sent..sent + CHUNK as u64).map(pattern).collect();
        match client.send(&chunk) {
            Ok(n) => sent += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok((sent, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((sent, false))
}

/// Reads until the peer's FIN (each read bounded by the socket's timeout), checking the
/// pattern; returns (received, first bad offset).
fn read_and_check(server: &Sock, expect: u64) -> Step<(u64, Option<u64>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut got, mut bad) = (0u64, None);
    while got <= expect + buf.len() as u64 {
        let n = server.recv(&mut buf)?;
        if n == 0 {
            break;
        }
        for (i, b) in buf[..n].iter().enumerate() {
            let at = got + i as u64;
            if bad.is_none() && *b != pattern(at) {
                bad = Some(at);
            }
        }
        got += n as u64;
    }
    Ok((got, bad))
}

/// Waits (at most [`SETTLE`]) until the namespace counts a zero-window advertisement since
/// `before`. The receiver does not send an ACK that would shrink the window at once: its
/// delayed-ACK timer sends it, so the zero window appears some tens of milliseconds after the
/// sender was stopped.
fn await_zero_window(before: &Snapshot) -> std::io::Result<Snapshot> {
    const NAME: &str = "TcpExt.TCPToZeroWindowAdv";
    poll_until(SETTLE, Snapshot::read, |now| {
        now.get(NAME) > before.get(NAME)
    })
}

fn observe(host: &Host) -> anyhow::Result<Observation> {
    let isolated = host.is_isolated();
    let mut o = Observation::default();
    let [ev_udp, ev_tcp] = &mut o.ev;
    let counts = |on: bool| on.then(Snapshot::read).transpose();
    let family = host.family();
    let rcvbuf_errors_name = family.counter("Udp.RcvbufErrors");
    let (udp, rcvbuf_errors, mut tcp, tcp_counters, server) =
        host.run(|| -> anyhow::Result<_> {
            let t = Trial::new();
            let before = counts(isolated)?;
            let udp = fill(UDP_PAYLOAD, FILL_RCVBUF, family, t.rec())?;
            let after = counts(isolated)?;
            let rcvbuf_errors = before
                .as_ref()
                .zip(after.as_ref())
                .map(|(b, a)| a.get(&rcvbuf_errors_name) - b.get(&rcvbuf_errors_name));
            ev_udp.trace = t.take();

            let before = counts(isolated)?;
            let (_listener, client, server) = tcp_pair(
                t.rec(),
                family,
                |l| l.set_recv_buffer_size(TCP_RCVBUF).map(drop),
                |c| c.set_send_buffer_size(TCP_SNDBUF).map(drop),
            )?;
            let (sent, stopped) = write_until_stopped(&client)?;
            if let Some(b) = &before {
                await_zero_window(b)?;
            }
            client.shutdown(Shutdown::Write)?;
            let (received, first_bad) = read_and_check(&server, sent)?;
            let after = counts(isolated)?;
            let tcp_counters = before.zip(after).map(|(b, a)| b.delta(&a));
            ev_tcp.trace = t.take();
            let tcp = Stream {
                sent,
                stopped,
                received,
                first_bad,
                zero_windows: None,
            };
            Ok((udp, rcvbuf_errors, tcp, tcp_counters, server.local_addr()))
        })??;
    if let (true, Some(server)) = (isolated, server) {
        let from_receiver = format!("TCP {server} >");
        let zero: Vec<String> = host
            .wire()
            .into_iter()
            .filter(|l| l.starts_with(&from_receiver) && l.contains(" win 0 "))
            .collect();
        tcp.zero_windows = Some(zero.len());
        o.ev[1].wire = zero.into_iter().take(8).collect();
    }
    (o.udp, o.rcvbuf_errors, o.tcp, o.tcp_counters) = (udp, rcvbuf_errors, tcp, tcp_counters);
    o.family = family;
    Ok(o)
}

fn judge(o: &Observation) -> Vec<Part> {
    let [mut ev_udp, mut ev_tcp] = o.ev.clone();
    let u = &o.udp;
    let lost = u.sent.saturating_sub(u.received);
    ev_udp.fact("fill", u).fact("sent_minus_received", lost);
    let rcvbuf_errors = o.family.counter("Udp.RcvbufErrors");
    if let Some(d) = o.rcvbuf_errors {
        ev_udp.counters.insert(rcvbuf_errors.clone(), d);
    }
    let agree = lost == u64::from(u.drops)
        && u.rxq_ovfl == Some(u.drops)
        && o.rcvbuf_errors.is_none_or(|d| d == i64::from(u.drops));
    let udp_part = Part::judged(
        "a",
        "UDP: datagrams that arrive while the receive buffer is full are dropped",
        format!(
            "{} datagrams of {} B sent to a receiver that did not read: {} queued, {lost} dropped; SO_RXQ_OVFL says {}, {rcvbuf_errors} {}",
            u.sent,
            u.payload,
            u.received,
            u.rxq_ovfl.map_or("nothing".into(), |n| n.to_string()),
            o.rcvbuf_errors.map_or(
                "not compared (the host's counters are shared)".into(),
                |d| format!("+{d}")
            )
        ),
        lost > 0 && agree,
        ev_udp,
    )
    .votes_on(FULL_BUFFER_DROPS);

    let t = &o.tcp;
    ev_tcp.fact("stream", t);
    let counter = |name: &str| {
        o.tcp_counters
            .as_ref()
            .map(|c| c.get(name).copied().unwrap_or(0))
    };
    let zero_adv = counter("TcpExt.TCPToZeroWindowAdv");
    let reopened = counter("TcpExt.TCPFromZeroWindowAdv").unwrap_or(0);
    if let Some(c) = &o.tcp_counters {
        ev_tcp.counters = c.clone();
    }
    let stopped_line = if t.stopped {
        format!("send() said EAGAIN after {} bytes", t.sent)
    } else {
        format!("send() never said EAGAIN ({} bytes)", t.sent)
    };
    let arrival = if t.intact() {
        format!(
            "all {} bytes arrived intact after reading resumed",
            t.received
        )
    } else {
        format!(
            "{} of {} bytes arrived{}",
            t.received,
            t.sent,
            t.first_bad
                .map_or(String::new(), |b| format!(", first wrong byte at {b}"))
        )
    };
    let window = match (t.zero_windows, zero_adv) {
        (Some(n), Some(adv)) => Some((
            n > 0 || adv > 0,
            format!(
                "{n} segment(s) from the receiver with win 0 (sent by its delayed ACK); TcpExt.TCPToZeroWindowAdv +{adv}, TCPFromZeroWindowAdv +{reopened}"
            ),
        )),
        _ => None,
    };
    let mut parts = vec![
        udp_part,
        Part::judged(
            "b",
            "TCP: when the receiver stops reading, flow control stops the sender",
            stopped_line.clone(),
            t.stopped,
            ev_tcp.clone(),
        )
        .votes_on(TCP_FLOW_CONTROL),
    ];
    // 11c (aside): the zero window, how flow control shows on the wire.
    parts.push(match &window {
        Some((seen, line)) => Part::judged(
            "c",
            "TCP: a receiver whose buffer is full advertises a zero window",
            line.clone(),
            *seen,
            ev_tcp.clone(),
        ),
        None => Part::not_run(
            "c",
            "TCP: a receiver whose buffer is full advertises a zero window",
            NEEDS_ROOT,
        ),
    });
    // 11b counts "the sender stopped"; 11d rests on its own fact: was data dropped?
    parts.push(
        Part::judged(
            "d",
            "TCP on lo: a full receiver's data is only dropped (no flow control)",
            format!("{stopped_line}; {arrival}"),
            !t.intact(),
            ev_tcp,
        )
        .votes_on(NO_FLOW_CONTROL_ON_LO),
    );
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn linux_like() -> Observation {
        Observation {
            udp: Fill {
                payload: 512,
                rcvbuf: 65536,
                sent: 40,
                charged_bytes: 60000,
                received: 39,
                drops: 1,
                rxq_ovfl: Some(1),
            },
            family: Family::Ipv4,
            rcvbuf_errors: Some(1),
            tcp: Stream {
                sent: 100_000,
                stopped: true,
                received: 100_000,
                first_bad: None,
                zero_windows: Some(2),
            },
            tcp_counters: Some(BTreeMap::from([("TcpExt.TCPToZeroWindowAdv".into(), 1)])),
            ev: Default::default(),
        }
    }

    #[test]
    fn drops_and_flow_control() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Confirmed, Confirmed, Refuted]
        );
        let parts = judge(&linux_like());
        assert!(!parts[2].votes(), "the zero window is the lab's aside");
    }

    #[test]
    fn lossless_udp_and_lossy_tcp() {
        use Verdict::*;
        let mut o = linux_like();
        o.udp.received = o.udp.sent;
        o.udp.drops = 0;
        o.udp.rxq_ovfl = Some(0);
        o.rcvbuf_errors = Some(0);
        o.tcp.stopped = false;
        o.tcp.received = 50_000;
        o.tcp.zero_windows = Some(0);
        o.tcp_counters = Some(BTreeMap::new());
        assert_eq!(
            verdicts(judge(&o)),
            vec![Refuted, Refuted, Refuted, Confirmed]
        );
    }

    #[test]
    fn counts_that_disagree_refute_the_udp_part() {
        let mut o = linux_like();
        o.rcvbuf_errors = Some(5);
        assert_eq!(verdicts(judge(&o))[0], Verdict::Refuted);
    }

    #[test]
    fn corrupted_stream_confirms_dropping() {
        let mut o = linux_like();
        o.tcp.first_bad = Some(7);
        assert_eq!(verdicts(judge(&o))[3], Verdict::Confirmed);
    }

    #[test]
    fn without_capture_the_window_part_is_not_run() {
        let mut o = linux_like();
        o.tcp.zero_windows = None;
        o.tcp_counters = None;
        o.rcvbuf_errors = None;
        let v = verdicts(judge(&o));
        assert!(matches!(v[2], Verdict::NotRun(_)));
        assert_eq!(v[0], Verdict::Confirmed);
    }
}
