//! Claim 12: what recv() == 0 means. TCP: the peer half-closes (shutdown SHUT_WR) on one
//! connection and closes on another; the reader gets 0 on each. UDP: an empty datagram is
//! read with recv (0) and with recvmsg (real length 0, a source address), and the socket goes
//! on receiving. Then a UDP socket, unconnected and connected, is shut down for reading with
//! shutdown(SHUT_RD) to see whether 0 can also mean something other than an empty datagram.

use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use nix::poll::PollFlags;
use serde::Serialize;

use super::article::{TCP_RECV_ZERO, UDP_RECV_ZERO};
use super::observe::{Read, Trial, outcome, poll_ready, recv_once, tcp_pair, udp_bound};
use super::ports::of_port;
use super::{Evidence, Experiment, Family, Host, Lab, Part};
use crate::sock::{Proto, Sock, Step};

/// The experiment of claim 12.
pub struct RecvZero;

/// How long a recv waits before "it would block".
const QUIET: Duration = Duration::from_millis(300);

/// An empty datagram as recvmsg(MSG_TRUNC) reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Empty {
    /// Its real length.
    pub(crate) real_len: usize,
    /// Its source address (msg_name).
    pub(crate) from: Option<SocketAddr>,
}

/// A UDP socket shut down for reading.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ShutRd {
    /// Whether the socket was connected first.
    pub(crate) connected: bool,
    /// shutdown(SHUT_RD)'s outcome (`ok` or an errno name).
    pub(crate) shutdown: String,
    /// recv of the datagram queued before the shutdown, then recv with the queue empty.
    pub(crate) reads: Vec<Read>,
    /// Whether poll(POLLIN) said readable with the queue empty after the shutdown.
    pub(crate) poll_readable: bool,
    /// recv after another datagram was sent.
    pub(crate) later: Option<Read>,
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// TCP recv after the peer's shutdown(SHUT_WR), and after the peer's close().
    pub(crate) tcp: Vec<Read>,
    /// UDP recv of an empty datagram.
    pub(crate) udp_recv: Option<Read>,
    /// UDP recvmsg of an empty datagram.
    pub(crate) udp_msg: Option<Empty>,
    /// UDP recv of the next, non-empty datagram.
    pub(crate) udp_next: Option<Read>,
    /// UDP sockets after shutdown(SHUT_RD): unconnected, connected.
    pub(crate) shut: Vec<ShutRd>,
    /// Evidence of the TCP, UDP and shutdown parts.
    pub(crate) ev: [Evidence; 3],
}

impl Experiment for RecvZero {
    fn claim(&self) -> u8 {
        12
    }
    fn title(&self) -> &'static str {
        "recv() == 0"
    }
    fn article(&self) -> &'static str {
        "recv() returning 0 means the connection is closed on TCP, but on UDP it means a datagram with an empty payload arrived."
    }
    fn explanation(&self) -> &'static str {
        "recv(2): \"When a stream socket peer has performed an orderly shutdown, the return value will be 0\"; \"Datagram sockets in various domains permit zero-length datagrams. When such a datagram is received, the return value is 0.\" An empty UDP datagram is legal (RFC 768: length 8 = header only) and carries a source address. A FIN is TCP's end of stream (RFC 9293 §3.6). shutdown(2) on an unconnected UDP socket fails with ENOTCONN, yet Linux's inet_shutdown (net/ipv4/af_inet.c) records the shutdown anyway (\"hack to wake up other listeners\"): from then on recv returns 0 at once whenever the queue is empty, without any datagram, and poll reports the socket readable."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c12")?;
        Ok(judge(&observe(&host)?))
    }
}

fn observe_tcp(ev: &mut Evidence, family: Family) -> Step<Vec<Read>> {
    let t = Trial::new();
    let mut reads = Vec::new();
    for half in [true, false] {
        let (_l, client, server) = tcp_pair(t.rec(), family, |_| Ok(()), |_| Ok(()))?;
        if half {
            client.shutdown(Shutdown::Write)?;
        } else {
            client.close();
        }
        reads.push(recv_once(&server, 16));
    }
    ev.trace = t.take();
    Ok(reads)
}

type UdpSeen = (Read, Empty, Read, u16);

fn observe_udp(ev: &mut Evidence, family: Family) -> Step<UdpSeen> {
    let t = Trial::new();
    let rx = udp_bound(t.rec(), family.lo(0))?;
    let to = rx.local_addr().unwrap_or(family.lo(0));
    let tx = Sock::open(&to, Proto::Udp, t.rec())?;
    tx.send_to(b"", to)?;
    let first = recv_once(&rx, 16);
    tx.send_to(b"", to)?;
    let mut buf = [0u8; 16];
    let d = rx.recv_datagram(&mut buf, 0)?;
    let empty = Empty {
        real_len: d.real_len,
        from: d.from,
    };
    tx.send_to(b"after", to)?;
    let next = recv_once(&rx, 16);
    ev.fact("sender", tx.local_addr());
    ev.trace = t.take();
    Ok((first, empty, next, to.port()))
}

fn observe_shut(ev: &mut Evidence, family: Family) -> Step<Vec<ShutRd>> {
    let t = Trial::new();
    let mut out = Vec::new();
    for connected in [false, true] {
        let rx = udp_bound(t.rec(), family.lo(0))?;
        rx.set_read_timeout(Some(QUIET))?;
        let to = rx.local_addr().unwrap_or(family.lo(0));
        let tx = Sock::open(&to, Proto::Udp, t.rec())?;
        tx.bind(family.lo(0))?;
        if connected {
            rx.connect(tx.local_addr().unwrap_or(family.lo(0)))?;
        }
        tx.send_to(b"queued", to)?;
        let shutdown = outcome(&rx.shutdown(Shutdown::Read));
        let mut reads = vec![recv_once(&rx, 16)];
        let poll_readable = readable_now(&rx);
        reads.push(recv_once(&rx, 16));
        tx.send_to(b"later", to)?;
        let later = Some(recv_once(&rx, 16));
        out.push(ShutRd {
            connected,
            shutdown,
            reads,
            poll_readable,
            later,
        });
    }
    ev.trace = t.take();
    Ok(out)
}

/// poll(2) for POLLIN with a zero timeout: what select/poll-based programs would see.
fn readable_now(s: &Sock) -> bool {
    poll_ready(s, PollFlags::POLLIN, Duration::ZERO).is_some()
}

fn observe(host: &Host) -> anyhow::Result<Observation> {
    let mut o = Observation::default();
    let [ev_tcp, ev_udp, ev_shut] = &mut o.ev;
    let family = host.family();
    let (tcp, udp, shut) = host.run(|| -> Step<_> {
        Ok((
            observe_tcp(ev_tcp, family)?,
            observe_udp(ev_udp, family)?,
            observe_shut(ev_shut, family)?,
        ))
    })??;
    let (first, empty, next, port) = udp;
    o.ev[1].wire = of_port(&host.wire(), port);
    o.tcp = tcp;
    (o.udp_recv, o.udp_msg, o.udp_next) = (Some(first), Some(empty), Some(next));
    o.shut = shut;
    Ok(o)
}

fn show(r: Option<&Read>) -> String {
    r.map_or("nothing".into(), ToString::to_string)
}

fn judge(o: &Observation) -> Vec<Part> {
    let [mut ev_tcp, mut ev_udp, mut ev_shut] = o.ev.clone();
    ev_tcp.fact("reads_after_shutdown_wr_and_close", &o.tcp);
    ev_udp
        .fact("recv_empty", &o.udp_recv)
        .fact("recvmsg_empty", &o.udp_msg)
        .fact("recv_next", &o.udp_next);
    ev_shut.fact("shut_rd", &o.shut);

    let tcp_held = o.tcp.len() == 2 && o.tcp.iter().all(|r| *r == Read::Eof);
    let udp_held = o.udp_recv == Some(Read::Eof)
        && o.udp_msg
            .as_ref()
            .is_some_and(|m| m.real_len == 0 && m.from.is_some())
        && o.udp_next == Some(Read::Data("after".into()));
    // No empty datagram is ever sent to the shut-down sockets: a 0 there has another cause.
    let zero_without_datagram = o
        .shut
        .iter()
        .any(|s| s.reads.iter().chain(&s.later).any(|r| *r == Read::Eof));
    let shut_line = o
        .shut
        .iter()
        .map(|s| {
            format!(
                "{}: shutdown(SHUT_RD) {}, recv {} (poll said {}), then after another datagram {}",
                if s.connected {
                    "connected"
                } else {
                    "unconnected"
                },
                s.shutdown,
                s.reads
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                if s.poll_readable {
                    "readable"
                } else {
                    "not readable"
                },
                show(s.later.as_ref())
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    vec![
        Part::judged(
            "a",
            "TCP: recv() returns 0 when the peer has closed the connection",
            format!(
                "recv after the peer's shutdown(SHUT_WR): {}; after its close(): {}",
                show(o.tcp.first()),
                show(o.tcp.get(1))
            ),
            tcp_held,
            ev_tcp,
        )
        .votes_on(TCP_RECV_ZERO),
        Part::judged(
            "b",
            "UDP: recv() returns 0 for a datagram with an empty payload, and the socket keeps working",
            format!(
                "empty datagram: recv {}, recvmsg real length {} from {}; next datagram: {}",
                show(o.udp_recv.as_ref()),
                o.udp_msg
                    .as_ref()
                    .map_or("?".into(), |m| m.real_len.to_string()),
                o.udp_msg
                    .as_ref()
                    .and_then(|m| m.from)
                    .map_or("no address".into(), |a| a.to_string()),
                show(o.udp_next.as_ref())
            ),
            udp_held,
            ev_udp,
        )
        .votes_on(UDP_RECV_ZERO),
        Part::judged(
            "c",
            "The program's own shutdown(SHUT_RD) also makes recv() on a UDP socket return 0 with no datagram (as TCP's SHUT_RD does on a live connection: a case the article's sentence on neither protocol is about)",
            shut_line,
            zero_without_datagram,
            ev_shut,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn shut(connected: bool, shutdown: &str, reads: Vec<Read>) -> ShutRd {
        ShutRd {
            connected,
            shutdown: shutdown.into(),
            reads,
            poll_readable: false,
            later: Some(Read::Data("later".into())),
        }
    }

    fn article_like() -> Observation {
        Observation {
            tcp: vec![Read::Eof, Read::Eof],
            udp_recv: Some(Read::Eof),
            udp_msg: Some(Empty {
                real_len: 0,
                from: Some("127.0.0.1:4000".parse().unwrap()),
            }),
            udp_next: Some(Read::Data("after".into())),
            shut: vec![
                shut(
                    false,
                    "ENOTCONN",
                    vec![Read::Data("queued".into()), Read::WouldBlock],
                ),
                shut(
                    true,
                    "ok",
                    vec![Read::Data("queued".into()), Read::WouldBlock],
                ),
            ],
            ev: Default::default(),
        }
    }

    #[test]
    fn article_behaviour_confirms() {
        assert_eq!(
            verdicts(judge(&article_like())),
            vec![Verdict::Confirmed, Verdict::Confirmed, Verdict::Refuted]
        );
    }

    #[test]
    fn zero_after_shut_rd_is_an_aside() {
        let mut o = article_like();
        o.shut[1].reads[1] = Read::Eof;
        let parts = judge(&o);
        assert_eq!(parts[2].verdict, Verdict::Confirmed);
        assert!(!parts[2].votes(), "12c never votes");
        assert!(parts[0].votes() && parts[1].votes());
    }

    #[test]
    fn other_tcp_and_udp_behaviour_refutes() {
        let mut o = article_like();
        o.tcp = vec![Read::Eof, Read::Error("ECONNRESET".into())];
        o.udp_msg = Some(Empty {
            real_len: 0,
            from: None,
        });
        let v = verdicts(judge(&o));
        assert_eq!(v[0], Verdict::Refuted);
        assert_eq!(v[1], Verdict::Refuted);
        let mut o = article_like();
        o.udp_next = Some(Read::WouldBlock);
        assert_eq!(verdicts(judge(&o))[1], Verdict::Refuted);
    }
}
