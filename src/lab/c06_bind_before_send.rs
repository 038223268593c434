//! Claim 6: "A UDP socket that both sends and receives must bind before sending; sending first
//! binds it implicitly and a later bind() fails."
//!
//! Observed on a private loopback (or the host's `lo` without root; only unicast to
//! 127.0.0.1): getsockname(2) before and after a first sendto(2) on an unbound socket; bind(2)
//! afterwards to a new address, to the very address it got, and to 127.0.0.1 with that port;
//! whether a reply to the implicitly chosen port reaches it; and bind-then-send in both
//! directions.

use std::net::SocketAddr;

use super::article::{BIND_FIRST, SEND_BINDS, SEND_THEN_BIND_FAILS};
use super::observe::{Trial, ok_or_errno, res, show_addr, socket, udp_bound};
use super::{Evidence, Experiment, Family, Lab, Part};
use crate::sock::{Proto, Sock};
use crate::trace::Event;

/// The experiment of claim 6.
pub struct BindBeforeSend;

const STMT_IMPLICIT: &str = "Sending first binds the UDP socket implicitly";
const STMT_REBIND: &str = "After that implicit bind, a bind() fails";
const STMT_BIND_FIRST: &str = "Bind, then send: works, and data flows both ways";
const STMT_MUST: &str = "Sending first, the socket can still receive: the peer's reply to the port the send bound implicitly arrives (the lab's own question; the article's reason is the failing bind of 6b)";

/// One bind(2) attempt after the implicit bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebind {
    /// What bind was asked for.
    pub addr: SocketAddr,
    /// Its errno name, `None` if it succeeded.
    pub errno: Option<String>,
}

/// What claim 6's socket calls showed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// getsockname of the unbound socket before its first sendto.
    pub before: Option<SocketAddr>,
    /// getsockname right after that sendto.
    pub after: Option<SocketAddr>,
    /// bind attempts made after the implicit bind.
    pub rebinds: Vec<Rebind>,
    /// A reply sent to the implicitly bound port arrived on the socket.
    pub reply_reached_implicit: bool,
    /// Bind-first socket: getsockname after bind and after its sendto.
    pub bound_local: (Option<SocketAddr>, Option<SocketAddr>),
    /// Bind-first socket: its datagram reached the peer.
    pub forward: bool,
    /// Bind-first socket: the peer's reply reached it.
    pub back: bool,
    /// The calls, in order.
    pub trace: Vec<Event>,
}

impl Experiment for BindBeforeSend {
    fn claim(&self) -> u8 {
        6
    }
    fn title(&self) -> &'static str {
        "bind before send"
    }
    fn article(&self) -> &'static str {
        "A UDP socket that both sends and receives must bind before sending; sending first binds it implicitly and a later bind() fails."
    }
    fn explanation(&self) -> &'static str {
        "udp(7): \"In order to receive packets, the socket can be bound to a local address first \
         by using bind(2). Otherwise, the socket layer will automatically assign a free local \
         port out of the range defined by /proc/sys/net/ipv4/ip_local_port_range and bind the \
         socket to INADDR_ANY\" (the autobind at the first sendto). bind(2): EINVAL \"The socket \
         is already bound to an address\" (Linux's inet_bind refuses any socket whose local \
         port is set, even for the address it already has). The autobound port is a real \
         binding, so replies to it are delivered (RFC 768; RFC 1122 §4.1.3.3: UDP passes the \
         source port up so the application can reply); binding first only chooses the address \
         and port."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c06")?;
        let family = lab.family();
        let obs = host.run(|| observe(family))??;
        Ok(judge(&obs))
    }
}

/// Makes the calls over `family`'s loopback and records what happened.
pub fn observe(family: Family) -> anyhow::Result<Observation> {
    let t = Trial::new();
    let rec = t.rec();
    let mut o = Observation::default();

    let peer = udp_bound(rec, family.lo(0))?;
    let peer_addr = peer
        .local_addr()
        .ok_or_else(|| anyhow::anyhow!("peer has no address"))?;

    // Send first: the implicit bind.
    let first = socket(rec, family, Proto::Udp)?;
    o.before = first.local_addr();
    first.send_to(b"send-first", peer_addr)?;
    o.after = first.local_addr();
    for addr in [
        family.lo(0),
        o.after.unwrap_or(family.lo(0)),
        family.lo(port(o.after)),
    ] {
        o.rebinds.push(Rebind {
            addr,
            errno: res(first.bind(addr)).err(),
        });
    }
    // The peer answers the source it saw; does the reply reach the autobound port?
    o.reply_reached_implicit = reply_arrives(&peer, &first, b"send-first");

    // Bind first, then send both ways.
    let bound = udp_bound(rec, family.lo(0))?;
    let l0 = bound.local_addr();
    bound.send_to(b"bind-first", peer_addr)?;
    o.bound_local = (l0, bound.local_addr());
    (o.forward, o.back) = both_ways(&peer, &bound, b"bind-first");
    o.trace = t.take();
    Ok(o)
}

/// The peer reads one datagram with `payload`, replies to its source, and `me` reads the reply.
/// Returns (the peer got it, the reply came back).
fn both_ways(peer: &Sock, me: &Sock, payload: &[u8]) -> (bool, bool) {
    let mut buf = [0u8; 64];
    let Ok(d) = peer.recv_datagram(&mut buf, 0) else {
        return (false, false);
    };
    let (Some(src), true) = (d.from, &buf[..d.len] == payload) else {
        return (false, false);
    };
    let back = peer.send_to(b"reply", src).is_ok()
        && me
            .recv_datagram(&mut buf, 0)
            .is_ok_and(|r| r.from == peer.local_addr());
    (true, back)
}

fn reply_arrives(peer: &Sock, me: &Sock, payload: &[u8]) -> bool {
    both_ways(peer, me, payload).1
}

fn port(a: Option<SocketAddr>) -> u16 {
    a.map_or(0, |a| a.port())
}

/// Judges the article's statements from an observation.
pub fn judge(o: &Observation) -> Vec<Part> {
    let mut ev = Evidence {
        trace: o.trace.clone(),
        ..Evidence::default()
    };
    ev.fact("getsockname_before_sendto", show_addr(o.before))
        .fact("getsockname_after_sendto", show_addr(o.after));
    let implicit = port(o.before) == 0 && port(o.after) != 0;
    let a = Part::judged(
        "a",
        STMT_IMPLICIT,
        format!(
            "getsockname {} before sendto, {} after",
            show_addr(o.before),
            show_addr(o.after)
        ),
        implicit,
        ev.clone(),
    );

    let mut ev_b = ev.clone();
    let rebinds: Vec<String> = o
        .rebinds
        .iter()
        .map(|r| format!("bind {} → {}", r.addr, ok_or_errno(&r.errno)))
        .collect();
    ev_b.fact("rebinds", &rebinds);
    let b = Part::judged(
        "b",
        STMT_REBIND,
        rebinds.join(", "),
        !o.rebinds.is_empty() && o.rebinds.iter().all(|r| r.errno.is_some()),
        ev_b,
    );

    let mut ev_c = ev.clone();
    ev_c.fact("bound_after_bind", show_addr(o.bound_local.0))
        .fact("bound_after_sendto", show_addr(o.bound_local.1))
        .fact("forward_delivered", o.forward)
        .fact("reply_delivered", o.back);
    let unchanged = o.bound_local.0.is_some() && o.bound_local.0 == o.bound_local.1;
    let c = Part::judged(
        "c",
        STMT_BIND_FIRST,
        format!(
            "bound {}, still {} after sendto; to peer: {}, reply back: {}",
            show_addr(o.bound_local.0),
            show_addr(o.bound_local.1),
            yes_no(o.forward),
            yes_no(o.back)
        ),
        unchanged && o.forward && o.back,
        ev_c,
    );

    let mut ev_d = ev;
    ev_d.fact(
        "reply_to_autobound_port_delivered",
        o.reply_reached_implicit,
    );
    let d = Part::judged(
        "d",
        STMT_MUST,
        format!(
            "the peer's reply to the autobound {} {}",
            show_addr(o.after),
            if o.reply_reached_implicit {
                "arrived: the socket receives without an explicit bind; binding first only chooses the port"
            } else {
                "did not arrive"
            }
        ),
        o.reply_reached_implicit,
        ev_d,
    );
    vec![
        a.votes_on(SEND_BINDS),
        b.votes_on(SEND_THEN_BIND_FAILS),
        c.votes_on(BIND_FIRST),
        d,
    ]
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn linux_like() -> Observation {
        let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        Observation {
            before: a("0.0.0.0:0"),
            after: a("0.0.0.0:40000"),
            rebinds: vec![Rebind {
                addr: "127.0.0.1:0".parse().unwrap(),
                errno: Some("EINVAL".into()),
            }],
            reply_reached_implicit: true,
            bound_local: (a("127.0.0.1:5000"), a("127.0.0.1:5000")),
            forward: true,
            back: true,
            trace: vec![],
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            [Confirmed, Confirmed, Confirmed, Confirmed]
        );
        let parts = judge(&linux_like());
        assert!(
            parts[..3].iter().all(Part::votes) && !parts[3].votes(),
            "6d is an aside"
        );
    }

    #[test]
    fn each_rule_goes_the_other_way() {
        use Verdict::*;
        let mut o = linux_like();
        o.after = o.before; // no implicit bind
        o.rebinds[0].errno = None; // bind succeeded
        o.bound_local.1 = "127.0.0.1:5001".parse().ok(); // sendto moved the address
        o.reply_reached_implicit = false;
        assert_eq!(verdicts(judge(&o)), [Refuted, Refuted, Refuted, Refuted]);
        let mut o = linux_like();
        o.back = false;
        assert_eq!(verdicts(judge(&o))[2], Refuted);
        o.rebinds.clear();
        assert_eq!(verdicts(judge(&o))[1], Refuted, "no attempt is no evidence");
    }
}
