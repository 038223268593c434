//! Claim 9: TCP's receive buffer is a byte stream, UDP's a queue of datagrams. "01234" and
//! "56789" are sent as two messages and read with recv(3) until the socket has nothing more:
//! UDP (read timeout) and TCP (the sender half-closes once both are sent, and the reads start
//! only when its FIN has arrived, so all ten bytes are queued and the cut cannot depend on
//! timing). A third receiver reads each datagram with recvmsg(MSG_TRUNC) into 3 bytes to see
//! the real length and where the next read starts.

use std::net::Shutdown;
use std::time::Duration;

use nix::poll::PollFlags;
use serde::Serialize;

use super::observe::{Read, TIMEOUT, Trial, lo, poll_ready, recv_once, tcp_pair, udp_bound};
use super::ports::of_port;
use super::{Evidence, Experiment, Host, Lab, Part};
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

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// recv(3) results on UDP, in order, up to the first non-data result.
    pub(crate) udp: Vec<Read>,
    /// recv(3) results on TCP, in order, up to the first non-data result.
    pub(crate) tcp: Vec<Read>,
    /// The two datagrams read with recvmsg(MSG_TRUNC) into 3 bytes each.
    pub(crate) cuts: Vec<Cut>,
    /// Evidence of the UDP, TCP and truncation parts.
    pub(crate) ev: [Evidence; 3],
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

fn observe_udp(ev: &mut Evidence) -> Step<(Vec<Read>, u16)> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), lo(0))?;
    rx.set_read_timeout(Some(QUIET))?;
    let to = rx.local_addr().unwrap_or(lo(0));
    let tx = Sock::open(&to, Proto::Udp, t.rec())?;
    for m in MESSAGES {
        tx.send_to(m, to)?;
    }
    let reads = read_until_empty(&rx);
    ev.fact("receiver", to);
    ev.trace = t.take();
    Ok((reads, to.port()))
}

fn observe_tcp(ev: &mut Evidence) -> Step<(Vec<Read>, u16)> {
    let t = Trial::new();
    let (listener, client, server) = tcp_pair(t.rec(), |_| Ok(()), |c| c.set_nodelay(true))?;
    for m in MESSAGES {
        client.send(m)?;
    }
    client.shutdown(Shutdown::Write)?;
    // Readiness, not a sleep: POLLRDHUP says the FIN has arrived, and TCP delivers in order,
    // so both messages are queued before the first read.
    let rdhup = PollFlags::from_bits_retain(libc::POLLRDHUP);
    let ready = poll_ready(&server, rdhup, TIMEOUT).is_some();
    ev.fact("fin_arrived_before_reading", ready);
    let reads = read_until_empty(&server);
    ev.trace = t.take();
    Ok((reads, listener.local_addr().map_or(0, |a| a.port())))
}

fn observe_cut(ev: &mut Evidence) -> Step<(Vec<Cut>, u16)> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), lo(0))?;
    let to = rx.local_addr().unwrap_or(lo(0));
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
    let [ev_udp, ev_tcp, ev_cut] = &mut o.ev;
    let ((udp, p_udp), (tcp, p_tcp), (cuts, p_cut)) = host.run(|| -> Step<_> {
        Ok((
            observe_udp(ev_udp)?,
            observe_tcp(ev_tcp)?,
            observe_cut(ev_cut)?,
        ))
    })??;
    let wire = host.wire();
    for (ev, port) in o.ev.iter_mut().zip([p_udp, p_tcp, p_cut]) {
        ev.wire = of_port(&wire, port);
    }
    (o.udp, o.tcp, o.cuts) = (udp, tcp, cuts);
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
    let [ev_udp, ev_tcp, ev_cut] = &mut ev;
    ev_udp.fact("reads", &o.udp);
    ev_tcp.fact("reads", &o.tcp);
    let udp_held = data(&o.udp) == ["012", "567"] && o.udp.last() == Some(&Read::WouldBlock);
    let tcp_held = data(&o.tcp) == ["012", "345", "678", "9"];
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
        ),
        Part::judged(
            "b",
            "TCP: recv(3) returns \"012\", \"345\", \"678\", \"9\"",
            format!(
                "TCP recv(3): {} (0 = the sender's FIN after the ten bytes){}",
                shown(&o.tcp),
                segments(&ev_tcp.wire)
            ),
            tcp_held,
            std::mem::take(ev_tcp),
        ),
        Part::judged(
            "c",
            "UDP: when the buffer is smaller than the datagram, the rest of the datagram is discarded",
            format!("recvmsg into 3 bytes: {cut_seen}"),
            cut_held,
            std::mem::take(ev_cut),
        ),
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
            tcp: vec![d("012"), d("345"), d("678"), d("9"), Read::Eof],
            cuts: vec![cut("012", 5), cut("567", 5)],
            ev: Default::default(),
        }
    }

    #[test]
    fn article_behaviour_is_confirmed() {
        assert_eq!(verdicts(judge(&linux_like())), vec![Verdict::Confirmed; 3]);
    }

    #[test]
    fn other_behaviour_is_refuted() {
        let o = Observation {
            // A kernel that streamed datagrams, and one that kept the rest for the next read.
            udp: vec![d("012"), d("345"), d("678"), d("9"), Read::WouldBlock],
            tcp: vec![d("012"), d("34"), d("567"), d("89"), Read::Eof],
            cuts: vec![cut("012", 5), cut("34", 2)],
            ev: Default::default(),
        };
        assert_eq!(verdicts(judge(&o)), vec![Verdict::Refuted; 3]);
    }

    #[test]
    fn udp_that_does_not_block_is_refuted() {
        let mut o = linux_like();
        o.udp = vec![d("012"), d("567"), Read::Eof];
        assert_eq!(verdicts(judge(&o))[0], Verdict::Refuted);
    }
}
