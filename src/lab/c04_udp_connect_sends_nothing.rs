//! Claim 4: UDP connect() establishes nothing; it only selects the source address and records
//! the destination.
//!
//! Observed on a private loopback, towards a UDP port nobody has open: the frames captured on
//! the wire and the counters between connect() and the first send (and, as the control that the
//! capture works, after that send); what connect() returned and what getsockname/getpeername
//! say after it; whether the first send succeeds; and whether later calls behave as they would
//! on an unconnected socket, or the ICMP port unreachable comes back as ECONNREFUSED.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;

use super::article::UDP_CONNECT_NOT_REAL;
use super::closed_port::{ClosedPortSends, Sender, closed_port, closed_port_sends};
use super::host::NEEDS_ROOT;
use super::observe::{
    Res, Trial, res, show_addr, show_res, show_unit, with_facts, with_facts_only,
};
use super::{Evidence, Experiment, Host, Lab, Part};

/// The experiment of claim 4.
pub(crate) struct UdpConnectSendsNothing;

const A: &str = "UDP connect() sends no packet";
const B: &str = "connect() to a UDP port nobody listens on succeeds: it only selects the source address and records the destination";
const C: &str = "connect() establishes nothing: the first send() after it succeeds although nobody has the port open";
const D: &str = "connect() does more than the article's \"such as\" names: a connected socket reports the ICMP port unreachable (ECONNREFUSED) that an unconnected one does not (claim 5c counts this fact)";
const PING: usize = 4;

/// What a connect() to a closed UDP port did.
#[derive(Debug, Clone, Serialize)]
struct Connect {
    /// The destination: 127.0.0.1 and a port nobody has open.
    dest: SocketAddr,
    /// connect(2)'s result.
    connect: Res<()>,
    /// getsockname after connect.
    local: Option<SocketAddr>,
    /// getpeername after connect.
    peer: Option<SocketAddr>,
    /// The first send() after connect.
    first_send: Res<usize>,
    /// Frames captured between connect() and the first send (None: no capture without root).
    wire_during_connect: Option<Vec<String>>,
    /// Counters that moved during connect() (with a private namespace only).
    counters_during_connect: BTreeMap<String, i64>,
    /// Frames captured after the first send: the control that the capture sees packets.
    wire_after_send: Option<Vec<String>>,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone)]
struct Observation {
    connect: Connect,
    connected: ClosedPortSends,
    unconnected: ClosedPortSends,
}

impl Experiment for UdpConnectSendsNothing {
    fn claim(&self) -> u8 {
        4
    }
    fn title(&self) -> &'static str {
        "UDP connect() sends nothing"
    }
    fn article(&self) -> &'static str {
        "UDP connect() does not really set up a connection; it only selects the source IP and records the destination"
    }
    fn explanation(&self) -> &'static str {
        "udp(7), connect(2): on a SOCK_DGRAM socket connect sets the default destination and the only source datagrams are received from; no packet is exchanged (RFC 768 has no handshake). RFC 1122 §4.1.3.3 says UDP must pass ICMP errors to the application; udp(7) \"Error handling\" says Linux does so \"even when the socket is not connected\", but the kernel's ICMP handler (__udp4_lib_err) sets the socket error only for a connected socket (or one with IP_RECVERR, ip(7)): ECONNREFUSED on the next send or recv, consumed once — so connect() changes which errors the socket hears. The kernel counts the refused datagram in Udp.NoPorts and the answer in Icmp.OutDestUnreachs (RFC 1122 §3.2.2.1, port unreachable)."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c04")?;
        Ok(judge(&Observation {
            connect: observe_connect(&host)?,
            connected: closed_port_sends(&host, Sender::Connected)?,
            unconnected: closed_port_sends(&host, Sender::Unconnected)?,
        }))
    }
}

fn observe_connect(host: &Host<'_>) -> anyhow::Result<Connect> {
    let dest = host.lo(closed_port(host)?);
    let t = Trial::new();
    let s = t.udp(host)?;
    let isolated = host.is_isolated();
    let _ = host.wire();
    let before = host.counters()?;
    let connect = res(s.connect(dest));
    let wire_during_connect = isolated.then(|| host.wire());
    let counters_during_connect = if isolated {
        before.delta(&host.counters()?)
    } else {
        BTreeMap::new()
    };
    let (local, peer) = (s.local_addr(), s.peer_addr());
    let first_send = res(s.send(b"ping"));
    let wire_after_send = isolated.then(|| host.wire());
    let mut ev = t.evidence(host);
    for w in [&wire_during_connect, &wire_after_send]
        .into_iter()
        .flatten()
    {
        ev.wire.extend(w.iter().cloned());
    }
    ev.counters = counters_during_connect.clone();
    Ok(Connect {
        dest,
        connect,
        local,
        peer,
        first_send,
        wire_during_connect,
        counters_during_connect,
        wire_after_send,
        ev,
    })
}

fn judge(o: &Observation) -> Vec<Part> {
    let c = &o.connect;
    let a = match (&c.wire_during_connect, &c.wire_after_send) {
        (Some(during), Some(after)) if !after.is_empty() => Part::judged(
            "a",
            A,
            format!(
                "{} frame(s) between connect() and the first send, {} after the send{}",
                during.len(),
                after.len(),
                if c.counters_during_connect.is_empty() {
                    "; no counter moved during connect()".to_string()
                } else {
                    format!("; counters moved: {:?}", c.counters_during_connect)
                }
            ),
            during.is_empty() && !c.counters_during_connect.keys().any(|k| k.contains("Out")),
            with_facts(&c.ev, c),
        ),
        (Some(_), _) => Part::not_run(
            "a",
            A,
            "inconclusive: the capture saw no packet even after the send",
        ),
        (None, _) => Part::not_run("a", A, NEEDS_ROOT),
    };
    let b = Part::judged(
        "b",
        B,
        format!(
            "connect({}) returned {}; getsockname {}, getpeername {}",
            c.dest,
            show_unit(&c.connect),
            show_addr(c.local),
            show_addr(c.peer)
        ),
        c.connect.is_ok()
            && c.peer == Some(c.dest)
            && c.local
                .is_some_and(|l| !l.ip().is_unspecified() && l.port() != 0),
        with_facts_only(&c.ev, c, &["dest", "connect", "local", "peer"]),
    );
    let c_part = Part::judged(
        "c",
        C,
        format!(
            "the first send() after connect() returned {}",
            show_res(&c.first_send)
        ),
        c.first_send == Ok(PING),
        with_facts_only(&c.ev, c, &["dest", "first_send"]),
    );
    let (k, u) = (&o.connected, &o.unconnected);
    let mut ev = with_facts(&k.ev, k);
    ev.fact("unconnected_control", u);
    let d = Part::judged(
        "d",
        D,
        format!(
            "to a closed port, connected: {}; unconnected: {}",
            k.line(),
            u.line()
        ),
        k.sends != u.sends || k.recv_after != u.recv_after,
        ev,
    );
    // 4c's fact (the first send succeeds) is claim 5's ground, and 4d's is 5c's: asides here.
    vec![
        a.votes_on(UDP_CONNECT_NOT_REAL),
        b.votes_on(UDP_CONNECT_NOT_REAL),
        c_part,
        d,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::closed_port::tests::recorded;
    use crate::lab::testing::{lo, verdicts};

    fn linux_like() -> Observation {
        Observation {
            connect: Connect {
                dest: lo(9999),
                connect: Ok(()),
                local: Some(lo(40000)),
                peer: Some(lo(9999)),
                first_send: Ok(PING),
                wire_during_connect: Some(vec![]),
                counters_during_connect: BTreeMap::new(),
                wire_after_send: Some(vec!["UDP 127.0.0.1:40000 > 127.0.0.1:9999 len 4".into()]),
                ev: Evidence::default(),
            },
            connected: recorded(
                true,
                &[Ok(PING), Err("ECONNREFUSED".into()), Ok(PING)],
                "ECONNREFUSED",
            ),
            unconnected: recorded(false, &[Ok(PING), Ok(PING), Ok(PING)], "EAGAIN"),
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Confirmed, Confirmed, Confirmed]
        );
        let parts = judge(&linux_like());
        assert!(parts[0].votes() && parts[1].votes());
        assert!(
            !parts[2].votes() && !parts[3].votes(),
            "4c and 4d are asides"
        );
    }

    #[test]
    fn rules_go_both_ways() {
        let mut o = linux_like();
        o.connect.wire_during_connect =
            Some(vec!["UDP 127.0.0.1:40000 > 127.0.0.1:9999 len 0".into()]);
        o.connect.connect = Err("ECONNREFUSED".into());
        o.connect.first_send = Err("ECONNREFUSED".into());
        o.connected = recorded(true, &[Ok(PING), Ok(PING), Ok(PING)], "EAGAIN");
        assert_eq!(
            verdicts(judge(&o)),
            vec![
                Verdict::Refuted,
                Verdict::Refuted,
                Verdict::Refuted,
                Verdict::Refuted
            ]
        );
        // A capture that saw nothing at all cannot say "no packet".
        o.connect.wire_after_send = Some(vec![]);
        assert!(matches!(verdicts(judge(&o))[0], Verdict::NotRun(_)));
        o.connect.wire_during_connect = None;
        assert!(matches!(verdicts(judge(&o))[0], Verdict::NotRun(_)));
    }
}
