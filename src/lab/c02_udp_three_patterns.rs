//! Claim 2: UDP has three patterns — (a) only the receiver binds, the sender just calls sendto;
//! (b) both sides bind (peers); (c) one side connects, the other binds — and only a connected
//! UDP socket can use send() instead of sendto().
//!
//! Observed on a private loopback: each pattern carrying a datagram each way it is meant to;
//! send() on an unconnected socket; and what connect() changes about what the socket receives:
//! a third socket sends to a connected socket, then the connected peer does, and a nonblocking
//! receive after the peer's datagram tells whether the stranger's was queued (an aside: the
//! article says connect() does operations "such as" choosing the source and recording the
//! destination, not "only" those); and send() on pattern 3's bound side, which the article
//! lists among its calls.

use std::net::SocketAddr;

use serde::Serialize;

use super::article::{UDP_PATTERN_1, UDP_PATTERN_2, UDP_PATTERN_3, UDP_SEND_ONLY_CONNECTED};
use super::marker::read_through;
use super::observe::{Got, Res, Trial, recv_text, res, show_addr, show_res, with_facts};
use super::{Evidence, Experiment, Family, Host, Lab, Part};

/// The experiment of claim 2.
pub(crate) struct UdpThreePatterns;

const A: &str =
    "Pattern (a) works: only the receiver binds; the sender calls sendto() without bind";
const B: &str = "Pattern (b) works: both sides bind and each sends to the other with sendto()";
const C: &str = "Pattern (c) works: one side connects and uses send()/recv(), the other binds and answers with sendto()";
const D: &str = "Only a connected UDP socket can use send() without an address";
const E: &str = "connect() also filters what arrives: a connected UDP socket receives only from the address it connected to";
const F: &str = "Pattern 3's bound side can call send() (the article lists send among its calls)";

/// One datagram exchange: what was sent where, and what arrived from whom.
#[derive(Debug, Clone, Serialize)]
struct Exchange {
    /// Each datagram sent, as "payload -> address" with the call's result.
    sent: Vec<(String, Res<usize>)>,
    /// Each datagram received, as (payload, source) or the errno.
    received: Vec<Res<(String, Option<SocketAddr>)>>,
    /// The addresses of the sockets involved, by role.
    addresses: Vec<(String, Option<SocketAddr>)>,
    #[serde(skip)]
    ev: Evidence,
}

impl Exchange {
    /// Every send returned its length and every datagram arrived with the payload sent.
    fn worked(&self) -> bool {
        self.sent.len() == self.received.len()
            && self
                .sent
                .iter()
                .zip(&self.received)
                .all(|((p, s), r)| s == &Ok(p.len()) && r.as_ref().is_ok_and(|(got, _)| got == p))
    }

    fn line(&self) -> String {
        let recv: Vec<String> = self
            .received
            .iter()
            .map(|r| match r {
                Ok((p, from)) => format!("{p:?} from {}", show_addr(*from)),
                Err(e) => e.clone(),
            })
            .collect();
        format!("received {}", recv.join(", "))
    }
}

#[derive(Debug, Clone, Serialize)]
struct SendUnconnected {
    /// send() on an unconnected (unbound) UDP socket.
    unconnected_send: Res<usize>,
    /// send() on a UDP socket connected to a receiver.
    connected_send: Res<usize>,
    #[serde(skip)]
    ev: Evidence,
}

/// send() on pattern 3's bound side, after it has received the connected side's datagram.
#[derive(Debug, Clone, Serialize)]
struct BoundSideSend {
    /// The bound side's address.
    bound: Option<SocketAddr>,
    /// Whom it last received from (send() has no address: it would need a connected peer).
    last_from: Option<SocketAddr>,
    /// send() on the bound, unconnected socket (EDESTADDRREQ: no destination).
    send: Res<usize>,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone, Serialize)]
struct Filter {
    /// Whether the receiving socket was connected (to the peer) or only bound (the control).
    connected: bool,
    /// What the socket received, in order, until the queue was empty.
    received: Vec<String>,
    /// The errno that ended the nonblocking drain (EAGAIN: nothing more queued).
    drain_end: String,
    /// Trace, wire, and the kernel counters that moved (with a private namespace):
    /// Udp.NoPorts (Udp6.NoPorts) counts a datagram no socket would take.
    #[serde(skip)]
    ev: Evidence,
    /// The family it ran over, which names the counters.
    #[serde(skip)]
    family: Family,
}

impl Filter {
    fn got_stranger(&self) -> bool {
        self.received.iter().any(|r| r == "stranger")
    }
}

#[derive(Debug, Clone)]
struct Observation {
    a: Exchange,
    b: Exchange,
    c: Exchange,
    bound_send: BoundSideSend,
    d: SendUnconnected,
    connected: Filter,
    bound: Filter,
}

impl Experiment for UdpThreePatterns {
    fn claim(&self) -> u8 {
        2
    }
    fn title(&self) -> &'static str {
        "UDP's three patterns; send() needs connect()"
    }
    fn article(&self) -> &'static str {
        "UDP has three patterns: send/receive (only the receiver binds), peers (both bind), connected (one connects, one binds); only a connected UDP socket can use send() instead of sendto()"
    }
    fn explanation(&self) -> &'static str {
        "udp(7): \"When connect(2) is called on the socket, the default destination address is set and datagrams can now be sent using send(2) or write(2) without specifying a destination address … It is still possible to send to other destinations by passing an address to sendto(2)\"; send(2) on a socket with no destination fails with EDESTADDRREQ. connect(2): \"If the socket sockfd is of type SOCK_DGRAM … it is the only address from which datagrams are received\" — the kernel's socket lookup skips a connected socket for other sources (RFC 768 leaves demultiplexing to the host)."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c02")?;
        Ok(judge(&observe(&host)?))
    }
}

fn observe(host: &Host<'_>) -> anyhow::Result<Observation> {
    Ok(Observation {
        a: pattern_a(host)?,
        b: pattern_b(host)?,
        c: pattern_c(host)?,
        bound_send: bound_side_send(host)?,
        d: send_unconnected(host)?,
        connected: filter(host, true)?,
        bound: filter(host, false)?,
    })
}

fn pattern_a(host: &Host<'_>) -> anyhow::Result<Exchange> {
    let t = Trial::new();
    let rx = t.udp_bound(host, host.lo(0))?;
    let to = rx.local_addr().unwrap_or(host.lo(0));
    let tx = t.udp(host)?;
    let sent = vec![("a".to_string(), res(tx.send_to(b"a", to)))];
    let received = vec![recv_text(&rx, 0)];
    Ok(Exchange {
        sent,
        received,
        addresses: vec![
            ("receiver".into(), rx.local_addr()),
            ("sender".into(), tx.local_addr()),
        ],
        ev: t.evidence(host),
    })
}

fn pattern_b(host: &Host<'_>) -> anyhow::Result<Exchange> {
    let t = Trial::new();
    let p1 = t.udp_bound(host, host.lo(0))?;
    let p2 = t.udp_bound(host, host.lo(0))?;
    let (a1, a2) = (
        p1.local_addr().unwrap_or(host.lo(0)),
        p2.local_addr().unwrap_or(host.lo(0)),
    );
    let sent = vec![
        ("b1".to_string(), res(p1.send_to(b"b1", a2))),
        ("b2".to_string(), res(p2.send_to(b"b2", a1))),
    ];
    let received = vec![recv_text(&p2, 0), recv_text(&p1, 0)];
    Ok(Exchange {
        sent,
        received,
        addresses: vec![("peer 1".into(), Some(a1)), ("peer 2".into(), Some(a2))],
        ev: t.evidence(host),
    })
}

fn pattern_c(host: &Host<'_>) -> anyhow::Result<Exchange> {
    let t = Trial::new();
    let srv = t.udp_bound(host, host.lo(0))?;
    let to = srv.local_addr().unwrap_or(host.lo(0));
    let cli = t.udp(host)?;
    cli.connect(to)?;
    let mut sent = vec![("c1".to_string(), res(cli.send(b"c1")))];
    let first = recv_text(&srv, 0);
    let reply_to = first.as_ref().ok().and_then(|(_, from)| *from);
    let reply = match reply_to {
        Some(from) => res(srv.send_to(b"c2", from)),
        None => Err("no source to answer".into()),
    };
    sent.push(("c2".to_string(), reply));
    let received = vec![first, recv_text(&cli, 0)];
    Ok(Exchange {
        sent,
        received,
        addresses: vec![
            ("bound side".into(), Some(to)),
            ("connected side".into(), cli.local_addr()),
        ],
        ev: t.evidence(host),
    })
}

/// Pattern 3: the connected side sends, the bound side receives it and calls send(2).
fn bound_side_send(host: &Host<'_>) -> anyhow::Result<BoundSideSend> {
    let t = Trial::new();
    let srv = t.udp_bound(host, host.lo(0))?;
    let to = srv.local_addr().unwrap_or(host.lo(0));
    let cli = t.udp(host)?;
    cli.connect(to)?;
    cli.send(b"f1")?;
    let last_from = recv_text(&srv, 0).ok().and_then(|(_, from)| from);
    let send = res(srv.send(b"f2"));
    Ok(BoundSideSend {
        bound: Some(to),
        last_from,
        send,
        ev: t.evidence(host),
    })
}

fn send_unconnected(host: &Host<'_>) -> anyhow::Result<SendUnconnected> {
    let t = Trial::new();
    let rx = t.udp_bound(host, host.lo(0))?;
    let to = rx.local_addr().unwrap_or(host.lo(0));
    let u = t.udp(host)?;
    let unconnected_send = res(u.send(b"d"));
    let c = t.udp(host)?;
    c.connect(to)?;
    let connected_send = res(c.send(b"d"));
    Ok(SendUnconnected {
        unconnected_send,
        connected_send,
        ev: t.evidence(host),
    })
}

/// A socket bound to 127.0.0.1 (and connected to `peer` if `connected`); a third, unbound
/// socket sends it "stranger", then the peer sends "peer". Once "peer" is received, every
/// datagram sent before it has been queued or dropped, so a nonblocking drain tells which.
fn filter(host: &Host<'_>, connected: bool) -> anyhow::Result<Filter> {
    let t = Trial::new();
    let peer = t.udp_bound(host, host.lo(0))?;
    let me = t.udp_bound(host, host.lo(0))?;
    let my_addr = me.local_addr().unwrap_or(host.lo(0));
    if connected {
        me.connect(peer.local_addr().unwrap_or(host.lo(0)))?;
    }
    let stranger = t.udp(host)?;
    let before = host.counters()?;
    stranger.send_to(b"stranger", my_addr)?;
    peer.send_to(b"peer", my_addr)?;
    // The peer's datagram is the readiness signal: receive (bounded) until it shows up, then
    // drain what else is queued.
    let (got, drain_end) = read_through(&me, b"peer");
    let received = got.iter().map(Got::text).collect();
    Ok(Filter {
        connected,
        received,
        drain_end,
        ev: t.evidence_since(host, &before)?,
        family: host.family(),
    })
}

fn judge(o: &Observation) -> Vec<Part> {
    let pattern = |id: &str, statement: &str, x: &Exchange| {
        Part::judged(id, statement, x.line(), x.worked(), with_facts(&x.ev, x))
    };
    let bs = &o.bound_send;
    let f_part = Part::judged(
        "f",
        F,
        format!(
            "the bound side received from {}, then send() returned {}",
            show_addr(bs.last_from),
            show_res(&bs.send)
        ),
        bs.send.is_ok(),
        with_facts(&bs.ev, bs),
    )
    .votes_on(UDP_PATTERN_3);
    let d = &o.d;
    let d_part = Part::judged(
        "d",
        D,
        format!(
            "send() on an unconnected UDP socket: {}; on a connected one: {}",
            show_res(&d.unconnected_send),
            show_res(&d.connected_send)
        ),
        d.unconnected_send.is_err() && d.connected_send.is_ok(),
        with_facts(&d.ev, d),
    )
    .votes_on(UDP_SEND_ONLY_CONNECTED);
    let (c, b) = (&o.connected, &o.bound);
    let mut ev = with_facts(&c.ev, c);
    ev.fact("control_bound_socket", b);
    ev.trace.extend(b.ev.trace.iter().cloned());
    ev.wire.extend(b.ev.wire.iter().cloned());
    // Part e needs the control to have seen the stranger's datagram (else the setup, not
    // connect(), lost it), the connected socket its peer's, and both drains to have ended on an
    // empty queue.
    let conclusive = b.got_stranger()
        && c.received.iter().any(|r| r == "peer")
        && c.drain_end == "EAGAIN"
        && b.drain_end == "EAGAIN";
    let e_part = if conclusive {
        Part::judged(
            "e",
            E,
            format!(
                "a stranger, then the peer, sent to a connected socket: it received {:?}, then {}{}; an unconnected control received {:?}",
                c.received,
                c.drain_end,
                {
                    let (no_ports, unreachs) = (
                        c.family.counter("Udp.NoPorts"),
                        c.family.counter("Icmp.OutDestUnreachs"),
                    );
                    match (c.ev.counters.get(&no_ports), c.ev.counters.get(&unreachs)) {
                        (Some(n), Some(i)) => format!(
                            " ({no_ports} +{n}: no socket took the stranger's datagram; {unreachs} +{i}: the stranger was told the port is unreachable)"
                        ),
                        (Some(n), None) => {
                            format!(" ({no_ports} +{n}: no socket took the stranger's datagram)")
                        }
                        _ => String::new(),
                    }
                },
                b.received,
            ),
            !c.got_stranger(),
            ev,
        )
    } else {
        Part::not_run(
            "e",
            E,
            "inconclusive: the unconnected control socket did not receive the stranger's datagram, or a queue did not drain",
        )
    };
    vec![
        pattern("a", A, &o.a).votes_on(UDP_PATTERN_1),
        pattern("b", B, &o.b).votes_on(UDP_PATTERN_2),
        pattern("c", C, &o.c).votes_on(UDP_PATTERN_3),
        d_part,
        f_part,
        e_part,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::{lo, verdicts};

    fn exchange(pairs: &[&str]) -> Exchange {
        Exchange {
            sent: pairs.iter().map(|p| (p.to_string(), Ok(p.len()))).collect(),
            received: pairs
                .iter()
                .map(|p| Ok((p.to_string(), Some(lo(1)))))
                .collect(),
            addresses: vec![],
            ev: Evidence::default(),
        }
    }

    fn filter(connected: bool, received: &[&str]) -> Filter {
        Filter {
            connected,
            received: received.iter().map(|s| s.to_string()).collect(),
            drain_end: "EAGAIN".into(),
            ev: Evidence::default(),
            family: Family::Ipv4,
        }
    }

    fn linux_like() -> Observation {
        Observation {
            a: exchange(&["a"]),
            b: exchange(&["b1", "b2"]),
            c: exchange(&["c1", "c2"]),
            bound_send: BoundSideSend {
                bound: Some(lo(2)),
                last_from: Some(lo(1)),
                send: Err("EDESTADDRREQ".into()),
                ev: Evidence::default(),
            },
            d: SendUnconnected {
                unconnected_send: Err("EDESTADDRREQ".into()),
                connected_send: Ok(1),
                ev: Evidence::default(),
            },
            connected: filter(true, &["peer"]),
            bound: filter(false, &["stranger", "peer"]),
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![
                Confirmed, Confirmed, Confirmed, Confirmed, Refuted, Confirmed
            ]
        );
        let parts = judge(&linux_like());
        assert!(parts[..5].iter().all(Part::votes), "a-d and f vote");
        assert!(!parts[5].votes(), "e is an aside");
    }

    #[test]
    fn rules_go_both_ways() {
        let mut o = linux_like();
        o.a.received[0] = Err("EAGAIN".into());
        o.b.sent[1].1 = Err("ECONNREFUSED".into());
        o.c.received[1] = Ok(("other".into(), None));
        o.d.unconnected_send = Ok(1);
        o.bound_send.send = Ok(2);
        o.connected = filter(true, &["stranger", "peer"]);
        assert_eq!(
            verdicts(judge(&o)),
            vec![
                Verdict::Refuted,
                Verdict::Refuted,
                Verdict::Refuted,
                Verdict::Refuted,
                Verdict::Confirmed,
                Verdict::Refuted
            ]
        );
        // Without the control seeing the stranger, or the connected socket its peer, part e is
        // not judged at all.
        let mut o = linux_like();
        o.bound = filter(false, &["peer"]);
        assert!(matches!(verdicts(judge(&o))[5], Verdict::NotRun(_)));
        let mut o = linux_like();
        o.connected = filter(true, &[]);
        assert!(matches!(verdicts(judge(&o))[5], Verdict::NotRun(_)));
    }
}
