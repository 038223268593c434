//! Claim 9: TCP's receive buffer is a byte stream, UDP's a queue of datagrams. "01234" and
//! "56789" are sent as two messages and read with recv(3) until the socket has nothing more:
//! UDP (read timeout) and TCP over a connection that stays open (the reads start once a
//! recv(MSG_PEEK|MSG_WAITALL) of ten bytes says all are queued, so the cut cannot depend on
//! timing; the fifth recv blocks — poll(2) says not readable and the recv returns only at its
//! timeout — until the peer closes, when it returns 0). A third receiver reads each datagram
//! with recvmsg(MSG_TRUNC) into 3 bytes to see the real length and where the next read starts.
//! A fourth, with the smallest SO_RCVBUF (2304 B on Linux), is sent two 60 000 B datagrams
//! and then a marker: is a datagram larger than the receive buffer dropped?

use std::time::Duration;

use nix::poll::PollFlags;
use serde::Serialize;

use super::article::{BIGGER_THAN_BUFFER, ONE_DATAGRAM_PER_RECV, TCP_READS, UDP_READS};
use super::observe::{Read, TIMEOUT, Trial, poll_ready, recv_once, tcp_pair, udp_bound};
use super::ports::of_port;
use super::{Evidence, Experiment, Family, Host, Lab, Part};
use crate::sock::{Datagram, Proto, Sock, Step};

/// The experiment of claim 9.
pub struct StreamVsDatagram;

/// The two messages, in order.
const MESSAGES: [&[u8]; 2] = [b"01234", b"56789"];
/// The buffer size given to each recv.
const RECV: usize = 3;
/// How long a UDP recv waits before "it would block" (both datagrams were sent before).
const QUIET: Duration = Duration::from_millis(300);

/// What recvmsg(MSG_TRUNC) said about one datagram read into 3 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Cut {
    /// The bytes copied.
    pub(crate) bytes: String,
    /// The datagram's real length.
    pub(crate) real_len: usize,
    /// MSG_TRUNC was set.
    pub(crate) truncated: bool,
}

/// Two datagrams larger than the receive buffer, then a marker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Oversized {
    /// SO_RCVBUF as read back after asking for 1 byte.
    pub(crate) rcvbuf: usize,
    /// The size of each datagram sent.
    pub(crate) datagram: usize,
    /// The sends' results (bytes or errno).
    pub(crate) sends: Vec<Result<usize, String>>,
    /// The length of each datagram read, in order, until the marker (its length is
    /// [`MARKER`]'s) or an error.
    pub(crate) read: Vec<Result<usize, String>>,
}

/// The marker sent after the oversized datagrams.
const MARKER: &[u8] = b"marker";
/// The size of each oversized datagram (fits loopback's 65 536 B MTU: no fragments).
const OVERSIZED: usize = 60_000;

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// recv(3) results on UDP, in order, up to the first non-data result.
    pub(crate) udp: Vec<Read>,
    /// recv(3) results on TCP, in order, up to the first non-data result.
    pub(crate) tcp: Vec<Read>,
    /// Whether the TCP reads blocked after "9": poll(POLLIN) said nothing to read for
    /// [`QUIET`] while the connection was open.
    pub(crate) tcp_blocked: bool,
    /// The two datagrams read with recvmsg(MSG_TRUNC) into 3 bytes each.
    pub(crate) cuts: Vec<Cut>,
    /// Datagrams larger than the receive buffer.
    pub(crate) oversized: Oversized,
    /// Evidence of the UDP, TCP, truncation and oversized parts.
    pub(crate) ev: [Evidence; 4],
}

impl Experiment for StreamVsDatagram {
    fn claim(&self) -> u8 {
        9
    }
    fn title(&self) -> &'static str {
        "stream vs datagram receive buffer"
    }
    fn article(&self) -> &'static str {
        "After \"01234\" and \"56789\" are sent, recv(3) returns \"012\", \"567\" and then blocks on UDP, but \"012\", \"345\", \"678\", \"9\" on TCP; a datagram larger than the buffer is cut and the rest discarded."
    }
    fn explanation(&self) -> &'static str {
        "udp(7)/recv(2): each receive returns at most one datagram, and the part that does not fit the buffer is discarded (MSG_TRUNC in msg_flags; with MSG_TRUNC as a flag recv returns the real length). tcp(7) is a byte stream (RFC 9293 §3.8: no record boundaries): a receive returns whatever bytes are queued, up to the buffer size. UDP datagrams keep their boundaries (RFC 768)."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c09")?;
        Ok(judge(&observe(&host)?))
    }
}

/// recv(`RECV`) until the first result that is not data (at most 8 calls).
fn read_until_empty(s: &Sock) -> Vec<Read> {
    let mut out = Vec::new();
    for _ in 0..8 {
        let r = recv_once(s, RECV);
        let last = !matches!(r, Read::Data(_));
        out.push(r);
        if last {
            break;
        }
    }
    out
}

fn observe_udp(ev: &mut Evidence, family: Family) -> Step<(Vec<Read>, u16)> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), family.lo(0))?;
    rx.set_read_timeout(Some(QUIET))?;
    let to = rx.local_addr().unwrap_or(family.lo(0));
    let tx = Sock::open(&to, Proto::Udp, t.rec())?;
    for m in MESSAGES {
        tx.send_to(m, to)?;
    }
    let reads = read_until_empty(&rx);
    ev.fact("receiver", to);
    ev.trace = t.take();
    Ok((reads, to.port()))
}

/// TCP: both messages sent on a connection that stays open; the reads start once all ten
/// bytes are queued (recv with MSG_PEEK|MSG_WAITALL, bounded by SO_RCVTIMEO), read until a
/// recv blocks (observed: poll says not readable for [`QUIET`], and the recv, bounded by a
/// [`QUIET`] SO_RCVTIMEO, returns EAGAIN); then the client closes and the blocked read returns 0.
fn observe_tcp(ev: &mut Evidence, family: Family) -> Step<(Vec<Read>, bool, u16)> {
    let t = Trial::new();
    let (listener, client, server) =
        tcp_pair(t.rec(), family, |_| Ok(()), |c| c.set_nodelay(true))?;
    for m in MESSAGES {
        client.send(m)?;
    }
    let mut all = [0u8; 10];
    let peeked = server
        .recv_datagram(&mut all, libc::MSG_PEEK | libc::MSG_WAITALL)
        .map_or(0, |d| d.len);
    ev.fact("queued_before_reading", peeked);
    server.set_read_timeout(Some(QUIET))?;
    let mut reads = read_until_empty(&server);
    let blocked = matches!(reads.last(), Some(Read::WouldBlock))
        && poll_ready(&server, PollFlags::POLLIN, QUIET).is_none();
    ev.fact("blocked_while_open", blocked);
    client.close();
    if poll_ready(&server, PollFlags::POLLIN, TIMEOUT).is_some() {
        reads.push(recv_once(&server, RECV));
    }
    ev.trace = t.take();
    Ok((
        reads,
        blocked,
        listener.local_addr().map_or(0, |a| a.port()),
    ))
}

/// Two [`OVERSIZED`] datagrams to a receiver whose SO_RCVBUF is the smallest the kernel
/// allows, then [`MARKER`]: reading until the marker shows which datagrams were queued (UDP
/// keeps one sender's order on loopback). udp(7)/socket(7): the receive buffer limit is
/// checked against what is already queued, so an empty queue takes a datagram of any size.
fn observe_oversized(ev: &mut Evidence, family: Family) -> Step<(Oversized, u16)> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), family.lo(0))?;
    rx.set_recv_buffer_size(1)?;
    let rcvbuf = rx.recv_buffer_size()?;
    let to = rx.local_addr().unwrap_or(family.lo(0));
    let tx = Sock::open(&to, Proto::Udp, t.rec())?;
    tx.set_send_buffer_size(4 * OVERSIZED)?;
    let big = vec![b'x'; OVERSIZED];
    let sends = (0..2)
        .map(|_| {
            tx.send_to(&big, to)
                .map_err(|e| super::observe::errno_name(&e))
        })
        .collect();
    let mut read = Vec::new();
    let mut buf = vec![0u8; 65_536];
    let name = |e: crate::sock::StepError| super::observe::errno_name(&e);
    // What is queued now (nonblocking), then the marker — sent only once the queue is empty,
    // since a full queue would drop it too — read blocking (bounded by SO_RCVTIMEO).
    while let Ok(d) = rx.recv_datagram(&mut buf, libc::MSG_DONTWAIT) {
        read.push(Ok(d.len));
        if read.len() > 2 {
            break;
        }
    }
    tx.send_to(MARKER, to)?;
    read.push(rx.recv_datagram(&mut buf, 0).map(|d| d.len).map_err(name));
    let o = Oversized {
        rcvbuf,
        datagram: OVERSIZED,
        sends,
        read,
    };
    ev.fact("oversized", &o);
    ev.trace = t.take();
    Ok((o, to.port()))
}

fn observe_cut(ev: &mut Evidence, family: Family) -> Step<(Vec<Cut>, u16)> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), family.lo(0))?;
    let to = rx.local_addr().unwrap_or(family.lo(0));
    let tx = Sock::open(&to, Proto::Udp, t.rec())?;
    for m in MESSAGES {
        tx.send_to(m, to)?;
    }
    let mut cuts = Vec::new();
    for _ in MESSAGES {
        let mut buf = [0u8; RECV];
        let d: Datagram = rx.recv_datagram(&mut buf, 0)?;
        cuts.push(Cut {
            bytes: String::from_utf8_lossy(&buf[..d.len]).into_owned(),
            real_len: d.real_len,
            truncated: d.truncated,
        });
    }
    ev.fact("reads", &cuts);
    ev.trace = t.take();
    Ok((cuts, to.port()))
}

fn observe(host: &Host) -> anyhow::Result<Observation> {
    let mut o = Observation::default();
    let [ev_udp, ev_tcp, ev_cut, ev_big] = &mut o.ev;
    let family = host.family();
    let ((udp, p_udp), (tcp, blocked, p_tcp), (cuts, p_cut), (big, p_big)) =
        host.run(|| -> Step<_> {
            Ok((
                observe_udp(ev_udp, family)?,
                observe_tcp(ev_tcp, family)?,
                observe_cut(ev_cut, family)?,
                observe_oversized(ev_big, family)?,
            ))
        })??;
    let wire = host.wire();
    for (ev, port) in o.ev.iter_mut().zip([p_udp, p_tcp, p_cut, p_big]) {
        ev.wire = of_port(&wire, port);
    }
    (o.udp, o.tcp, o.tcp_blocked, o.cuts, o.oversized) = (udp, tcp, blocked, cuts, big);
    Ok(o)
}

fn data(reads: &[Read]) -> Vec<&str> {
    reads
        .iter()
        .filter_map(|r| match r {
            Read::Data(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

fn shown(reads: &[Read]) -> String {
    reads
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `; on the wire: 2 data segments of 5 bytes` when the wire was captured.
fn segments(wire: &[String]) -> String {
    let data: Vec<&str> = wire
        .iter()
        .filter(|l| !l.ends_with(" len 0"))
        .filter_map(|l| l.rsplit(' ').next())
        .collect();
    if data.is_empty() {
        String::new()
    } else {
        format!("; on the wire: data segments of {} bytes", data.join(", "))
    }
}

fn judge(o: &Observation) -> Vec<Part> {
    let mut ev = o.ev.clone();
    let [ev_udp, ev_tcp, ev_cut, ev_big] = &mut ev;
    ev_udp.fact("reads", &o.udp);
    ev_tcp.fact("reads", &o.tcp);
    let udp_held = data(&o.udp) == ["012", "567"] && o.udp.last() == Some(&Read::WouldBlock);
    // "then blocks": the fifth read blocked while the connection was open (and returned 0 only
    // once the peer closed).
    let tcp_held = data(&o.tcp) == ["012", "345", "678", "9"]
        && o.tcp.get(4) == Some(&Read::WouldBlock)
        && o.tcp_blocked;
    let big = &o.oversized;
    // The article: a datagram larger than the buffer is simply dropped. Held if no oversized
    // datagram was read before the marker.
    let oversized_read = big.read.iter().filter(|r| **r == Ok(big.datagram)).count();
    let marker_read = big.read.last() == Some(&Ok(MARKER.len()));
    let big_held = marker_read && oversized_read == 0;
    let cut_held = match o.cuts.as_slice() {
        [a, b] => a.truncated && a.real_len == 5 && a.bytes == "012" && b.bytes == "567",
        _ => false,
    };
    let cut_seen = o
        .cuts
        .iter()
        .map(|c| {
            format!(
                "\"{}\" of {} bytes{}",
                c.bytes,
                c.real_len,
                if c.truncated { " (MSG_TRUNC)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", then ");
    vec![
        Part::judged(
            "a",
            "UDP: recv(3) returns \"012\", \"567\", then blocks",
            format!(
                "UDP recv(3): {} (EAGAIN = nothing within {} ms)",
                shown(&o.udp),
                QUIET.as_millis()
            ),
            udp_held,
            std::mem::take(ev_udp),
        )
        .votes_on(UDP_READS),
        Part::judged(
            "b",
            "TCP: recv(3) returns \"012\", \"345\", \"678\", \"9\", then blocks (the connection stays open)",
            format!(
                "TCP recv(3): {} (EAGAIN = blocked {} ms with the connection open, poll not readable: {}; 0 = after the peer's close){}",
                shown(&o.tcp),
                QUIET.as_millis(),
                o.tcp_blocked,
                segments(&ev_tcp.wire)
            ),
            tcp_held,
            std::mem::take(ev_tcp),
        )
        .votes_on(TCP_READS),
        Part::judged(
            "c",
            "UDP: each recv consumes one datagram: read into 3 bytes, the rest of the datagram is discarded and the next read starts at the next datagram",
            format!("recvmsg into 3 bytes: {cut_seen}"),
            cut_held,
            std::mem::take(ev_cut),
        )
        .votes_on(ONE_DATAGRAM_PER_RECV),
        Part::judged(
            "d",
            "UDP: a datagram larger than the socket's receive buffer (SO_RCVBUF) is dropped",
            format!(
                "SO_RCVBUF {} B; two {} B datagrams sent ({}), then a marker: read {}",
                big.rcvbuf,
                big.datagram,
                big.sends
                    .iter()
                    .map(|r| r.as_ref().map_or_else(Clone::clone, ToString::to_string))
                    .collect::<Vec<_>>()
                    .join(", "),
                big.read
                    .iter()
                    .map(|r| match r {
                        Ok(n) if *n == MARKER.len() => "the marker".to_string(),
                        Ok(n) => format!("{n} B"),
                        Err(e) => e.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", then ")
            ),
            big_held,
            std::mem::take(ev_big),
        )
        .votes_on(BIGGER_THAN_BUFFER),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn d(s: &str) -> Read {
        Read::Data(s.into())
    }

    fn cut(bytes: &str, real_len: usize) -> Cut {
        Cut {
            bytes: bytes.into(),
            real_len,
            truncated: real_len > bytes.len(),
        }
    }

    fn linux_like() -> Observation {
        Observation {
            udp: vec![d("012"), d("567"), Read::WouldBlock],
            tcp: vec![
                d("012"),
                d("345"),
                d("678"),
                d("9"),
                Read::WouldBlock,
                Read::Eof,
            ],
            tcp_blocked: true,
            cuts: vec![cut("012", 5), cut("567", 5)],
            oversized: Oversized {
                rcvbuf: 2304,
                datagram: OVERSIZED,
                sends: vec![Ok(OVERSIZED), Ok(OVERSIZED)],
                read: vec![Ok(OVERSIZED), Ok(MARKER.len())],
            },
            ev: Default::default(),
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        // The first oversized datagram is queued (the queue was empty): 9d is refuted.
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Confirmed, Confirmed, Refuted]
        );
        let mut o = linux_like();
        o.oversized.read = vec![Ok(MARKER.len())];
        assert_eq!(verdicts(judge(&o))[3], Confirmed);
    }

    #[test]
    fn tcp_that_does_not_block_is_refuted() {
        // The reads end in 0 with nothing observed blocking (a half-close before reading).
        let mut o = linux_like();
        o.tcp = vec![d("012"), d("345"), d("678"), d("9"), Read::Eof];
        o.tcp_blocked = false;
        assert_eq!(verdicts(judge(&o))[1], Verdict::Refuted);
    }

    #[test]
    fn other_behaviour_is_refuted() {
        let o = Observation {
            // A kernel that streamed datagrams, and one that kept the rest for the next read.
            udp: vec![d("012"), d("345"), d("678"), d("9"), Read::WouldBlock],
            tcp: vec![d("012"), d("34"), d("567"), d("89"), Read::WouldBlock],
            tcp_blocked: true,
            cuts: vec![cut("012", 5), cut("34", 2)],
            oversized: Oversized::default(),
            ev: Default::default(),
        };
        assert_eq!(verdicts(judge(&o)), vec![Verdict::Refuted; 4]);
    }

    #[test]
    fn udp_that_does_not_block_is_refuted() {
        let mut o = linux_like();
        o.udp = vec![d("012"), d("567"), Read::Eof];
        assert_eq!(verdicts(judge(&o))[0], Verdict::Refuted);
    }
}
