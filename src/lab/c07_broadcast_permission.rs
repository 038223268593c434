//! Claim 7: "Broadcast: the sending socket must set SO_BROADCAST. In the peer pattern you cannot
//! bind a broadcast address, but in the connected pattern you can connect() to a broadcast
//! address."
//!
//! Two hosts joined by veth (`a` 198.51.100.1/24, `b` 198.51.100.2/24, a default route on
//! `veth-a` so that 255.255.255.255 has a way out). In `a`: sendto(2) the subnet broadcast and
//! 255.255.255.255 with and without SO_BROADCAST; bind(2) to each broadcast address and use
//! that socket as a peer (send to `b`, does `b`'s reply come back?); connect(2) to each
//! broadcast address with and without SO_BROADCAST, then send(2), and does a reply come back?
//! A receiver in `b` bound to 0.0.0.0 says what arrived; absence is proven by markers (the
//! lab's `marker` module). Broadcasts only ever leave inside these namespaces: without root every
//! part is `not run`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use super::article::{CONNECT_BROADCAST, NO_BIND_BROADCAST, SO_BROADCAST_NEEDED};
use super::host::anchor;
use super::host::{Host, needs_root};
use super::marker::{self, read_until_marker};
use super::observe::{Got, Trial, drain, ok_or_errno, res, show_addr, socket, udp_bound};
use super::{Evidence, Experiment, Family, Lab, Part, Quote};
use crate::sock::{Proto, Sock};
use crate::trace::{Event, Recorder};

/// The experiment of claim 7.
pub struct BroadcastPermission;

const A_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const B_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SUBNET_BCAST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 255);
const RX_PORT: u16 = 7000;
const PEER_PORT: u16 = 7001;
const WITNESS_PORT: u16 = 7002;
const BOUND_PORT: u16 = 7003;

const STMT_SO_BROADCAST: &str = "The sending socket must set SO_BROADCAST to send a broadcast";
const STMT_BIND: &str = "In the peer pattern you cannot bind a broadcast address";
const STMT_PEER: &str = "A socket bound to a broadcast address cannot work as a peer (the other side's replies do not reach it)";
const STMT_CONNECT: &str = "In the connected pattern you can connect() to a broadcast address";

/// sendto a broadcast address from a fresh unbound socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendCase {
    /// Destination.
    pub dst: SocketAddr,
    /// SO_BROADCAST was set.
    pub broadcast: bool,
    /// sendto's errno, `None` if it succeeded.
    pub errno: Option<String>,
    /// The receiver in `b` got it.
    pub delivered: bool,
}

/// bind to a broadcast address, then use the socket as a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindCase {
    /// What bind was asked for.
    pub addr: SocketAddr,
    /// bind's errno, `None` if it succeeded.
    pub errno: Option<String>,
    /// getsockname after bind.
    pub local: Option<SocketAddr>,
    /// Only if bound: sendto `b`'s peer socket, its errno (`None` = ok).
    pub send_errno: Option<Option<String>>,
    /// Only if the peer got it: the source address the peer saw.
    pub seen_from: Option<SocketAddr>,
    /// Only if the peer replied: the reply reached the bound socket.
    pub reply_delivered: Option<bool>,
}

/// connect to a broadcast address, then send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectCase {
    /// Destination.
    pub dst: SocketAddr,
    /// SO_BROADCAST was set.
    pub broadcast: bool,
    /// connect's errno, `None` if it succeeded.
    pub connect_errno: Option<String>,
    /// getsockname after connect (a failed connect may still have bound the socket).
    pub local: Option<SocketAddr>,
    /// send's errno, `None` if it succeeded.
    pub send_errno: Option<String>,
    /// The receiver in `b` got it.
    pub delivered: bool,
    /// Only if delivered: the receiver's reply (to the source it saw) reached the socket.
    pub reply_delivered: Option<bool>,
}

/// What claim 7's calls showed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// sendto cases.
    pub sends: Vec<SendCase>,
    /// bind cases.
    pub binds: Vec<BindCase>,
    /// connect cases.
    pub connects: Vec<ConnectCase>,
    /// The calls in `a` and `b`, in order.
    pub trace: Vec<Event>,
    /// Frames captured in `b`.
    pub wire: Vec<String>,
    /// Counters of `a` that moved (Udp.NoPorts counts the replies no socket took).
    pub counters: BTreeMap<String, i64>,
}

impl Experiment for BroadcastPermission {
    fn claim(&self) -> u8 {
        7
    }
    fn title(&self) -> &'static str {
        "broadcast permission"
    }
    fn article(&self) -> &'static str {
        "The sending socket must set SO_BROADCAST; in the peer pattern you cannot bind a broadcast address, but in the connected pattern you can connect() to one."
    }
    fn explanation(&self) -> &'static str {
        "socket(7) SO_BROADCAST: \"When enabled, datagram sockets are allowed to send packets \
         to a broadcast address\"; ip(7) EACCES: \"sending a packet to a broadcast address \
         without having the SO_BROADCAST flag set\"; connect(2) EACCES: \"The user tried to \
         connect to a broadcast address without having the socket broadcast flag enabled\" \
         (connect does the same route lookup as sendto, and a UDP connect binds the socket \
         first, so a failed connect can leave it autobound). bind(2)/ip(7) accept any address \
         the local routing table lists, broadcast addresses included (RTN_BROADCAST); the \
         kernel then sends from the interface's address (RFC 1122 §3.2.1.3: a broadcast \
         address is never a source), so the other side's replies go to an address the socket \
         is not bound to. A connected UDP socket only accepts datagrams from its peer (udp(7)), \
         and no reply comes from a broadcast address. RFC 919 (limited broadcast \
         255.255.255.255) and RFC 922 (directed/subnet broadcast); RFC 1122 §3.3.6."
    }
    fn analogue(&self, family: Family) -> Option<&'static str> {
        (family == Family::Ipv6).then_some(super::all_nodes::ANALOGUE)
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        if lab.family() == Family::Ipv6 {
            return super::all_nodes::parts(lab, 7);
        }
        if !lab.is_root() {
            return Ok(needs_root(&STATEMENTS));
        }
        let (a, b) = lab.pair("c07")?;
        let obs = observe(&a, &b)?;
        Ok(judge(&obs))
    }
}

/// The parts: id, statement, and the article's sentence a vote tests (7c is the lab's reading
/// of "cannot bind" as "cannot work as a peer": an aside).
const STATEMENTS: [(&str, &str, Option<Quote>); 4] = [
    ("a", STMT_SO_BROADCAST, Some(SO_BROADCAST_NEEDED)),
    ("b", STMT_BIND, Some(NO_BIND_BROADCAST)),
    ("c", STMT_PEER, None),
    ("d", STMT_CONNECT, Some(CONNECT_BROADCAST)),
];

/// Gives `a` a default route on `veth-a`, makes the calls in `a` (sender) and `b` (receiver)
/// and records what happened. Needs two hosts of [`Lab::pair`].
pub fn observe(a: &Host<'_>, b: &Host<'_>) -> anyhow::Result<Observation> {
    a.add_default_route("veth-a")?;
    let t = Trial::new();
    let rec = t.rec();
    let counters_before = a.counters()?;
    let rx = b.run(|| receiver(rec, Family::Ipv4.any(RX_PORT)))??;
    let peer = b.run(|| receiver(rec, SocketAddr::from((B_IP, PEER_PORT))))??;
    let witness = a.run(|| receiver(rec, Family::Ipv4.any(WITNESS_PORT)))??;
    let rx_at = SocketAddr::from((B_IP, RX_PORT));
    let dsts = [SUBNET_BCAST, Ipv4Addr::BROADCAST].map(|ip| SocketAddr::from((ip, RX_PORT)));

    // sendto with and without SO_BROADCAST; then connect with and without.
    let (mut sends, mut connects, connected) = a.run(|| {
        marker::pin_thread();
        let mut sends = Vec::new();
        let mut connects = Vec::new();
        let mut connected = Vec::new();
        for dst in dsts {
            for broadcast in [false, true] {
                let s = Sock::open(&Family::Ipv4.lo(0), Proto::Udp, rec)?;
                s.set_broadcast(broadcast)?;
                let tag = format!("sendto {dst} broadcast={broadcast}");
                sends.push(SendCase {
                    dst,
                    broadcast,
                    errno: res(s.send_to(tag.as_bytes(), dst)).err(),
                    delivered: false,
                });
            }
        }
        for dst in dsts {
            for broadcast in [false, true] {
                let s = socket(rec, Family::Ipv4, Proto::Udp)?;
                s.set_broadcast(broadcast)?;
                let connect_errno = res(s.connect(dst)).err();
                let local = s.local_addr();
                let tag = format!("connect {dst} broadcast={broadcast}");
                connects.push(ConnectCase {
                    dst,
                    broadcast,
                    connect_errno,
                    local,
                    send_errno: res(s.send(tag.as_bytes())).err(),
                    delivered: false,
                    reply_delivered: None,
                });
                connected.push(s);
            }
        }
        marker::send(rec, &[rx_at])?;
        anyhow::Ok((sends, connects, connected))
    })??;
    let got = read_until_marker(&rx, rx_at)?;
    for c in &mut sends {
        c.delivered = has(&got, &format!("sendto {} broadcast={}", c.dst, c.broadcast));
    }
    for c in &mut connects {
        let tag = format!("connect {} broadcast={}", c.dst, c.broadcast);
        c.delivered = has(&got, &tag);
    }
    // The receiver answers each connected datagram's source; does it reach the socket?
    for (c, s) in connects.iter_mut().zip(&connected) {
        let tag = format!("connect {} broadcast={}", c.dst, c.broadcast);
        if let Some(from) = source_of(&got, &tag) {
            c.reply_delivered = Some(reply_reaches(b, &rx, from, &witness, s, rec)?);
        }
    }

    // bind to each broadcast address and use the socket as a peer.
    let mut binds = Vec::new();
    for ip in [SUBNET_BCAST, Ipv4Addr::BROADCAST] {
        let addr = SocketAddr::from((ip, BOUND_PORT));
        let (mut case, sock) = a.run(|| {
            marker::pin_thread();
            let s = socket(rec, Family::Ipv4, Proto::Udp)?;
            let errno = res(s.bind(addr)).err();
            let mut case = BindCase {
                addr,
                errno,
                local: s.local_addr(),
                send_errno: None,
                seen_from: None,
                reply_delivered: None,
            };
            if case.errno.is_none() {
                let to = SocketAddr::from((B_IP, PEER_PORT));
                case.send_errno = Some(res(s.send_to(b"from a bound broadcast", to)).err());
                marker::send(rec, &[to])?;
            }
            anyhow::Ok((case, s))
        })??;
        if case.send_errno.is_some() {
            let got = read_until_marker(&peer, "the peer")?;
            case.seen_from = got.first().and_then(|g| g.datagram.from);
            if let Some(from) = case.seen_from {
                case.reply_delivered = Some(reply_reaches(b, &peer, from, &witness, &sock, rec)?);
            }
        }
        binds.push(case);
    }
    Ok(Observation {
        sends,
        binds,
        connects,
        trace: t.take(),
        wire: b.wire(),
        counters: counters_before.delta(&a.counters()?),
    })
}

/// A UDP socket bound to `addr` with IP_PKTINFO and a read timeout.
fn receiver(rec: &Recorder, addr: SocketAddr) -> anyhow::Result<Sock> {
    let s = udp_bound(rec, addr)?;
    s.set_recv_pktinfo(true)?;
    Ok(s)
}

fn has(got: &[Got], tag: &str) -> bool {
    source_of(got, tag).is_some()
}

fn source_of(got: &[Got], tag: &str) -> Option<SocketAddr> {
    got.iter()
        .find(|g| g.payload == tag.as_bytes())
        .and_then(|g| g.datagram.from)
}

/// `from_b` (in `b`) sends a reply to `to`, then a marker to the witness in `a`; once the
/// witness has the marker, drains `target` (in `a`): did the reply arrive?
fn reply_reaches(
    b: &Host<'_>,
    from_b: &Sock,
    to: SocketAddr,
    witness: &Sock,
    target: &Sock,
    rec: &Recorder,
) -> anyhow::Result<bool> {
    b.run(|| {
        marker::pin_thread();
        // The reply may fail (an ICMP error from an earlier reply); that is an observation.
        let _ = from_b.send_to(b"reply", to);
        marker::send(rec, &[SocketAddr::from((A_IP, WITNESS_PORT))])?;
        anyhow::Ok(())
    })??;
    read_until_marker(witness, "the witness")?;
    Ok(drain(target).0.iter().any(|g| g.payload == b"reply"))
}

/// Judges the article's statements from an observation.
pub fn judge(o: &Observation) -> Vec<Part> {
    let base = Evidence {
        trace: o.trace.clone(),
        wire: o.wire.clone(),
        counters: o.counters.clone(),
        ..Evidence::default()
    };

    let sends: Vec<String> = o
        .sends
        .iter()
        .map(|c| {
            format!(
                "sendto {} {} SO_BROADCAST → {}{}",
                c.dst.ip(),
                if c.broadcast { "with" } else { "without" },
                ok_or_errno(&c.errno),
                if c.delivered { ", received" } else { "" }
            )
        })
        .collect();
    let must = !o.sends.is_empty()
        && o.sends.iter().all(|c| {
            if c.broadcast {
                c.errno.is_none() && c.delivered
            } else {
                c.errno.is_some() && !c.delivered
            }
        });
    let mut ev = base.clone();
    ev.fact("sends", &sends);
    let a = Part::judged("a", STMT_SO_BROADCAST, sends.join("; "), must, ev);

    let binds: Vec<String> = o
        .binds
        .iter()
        .map(|c| format!("bind {} → {}", c.addr, ok_or_errno(&c.errno)))
        .collect();
    let mut ev = base.clone();
    ev.fact("binds", &binds);
    let b = Part::judged(
        "b",
        STMT_BIND,
        binds.join("; "),
        !o.binds.is_empty() && o.binds.iter().all(|c| c.errno.is_some()),
        ev,
    );

    let peers: Vec<String> = o
        .binds
        .iter()
        .map(|c| match (&c.send_errno, c.seen_from, c.reply_delivered) {
            (None, _, _) => format!("bound {}: bind failed, no peer", c.addr),
            (Some(Some(e)), _, _) => format!("bound {}: sendto → {e}", c.addr),
            (Some(None), None, _) => format!("bound {}: sent, the peer got nothing", c.addr),
            (Some(None), Some(f), r) => format!(
                "bound {}: the peer saw source {f}; its reply {}",
                c.addr,
                if r == Some(true) {
                    "arrived"
                } else {
                    "did not arrive"
                }
            ),
        })
        .collect();
    let mut ev = base.clone();
    ev.fact("peer_pattern", &peers);
    let c = Part::judged(
        "c",
        STMT_PEER,
        peers.join("; "),
        !o.binds.is_empty() && o.binds.iter().all(|c| c.reply_delivered != Some(true)),
        ev,
    );

    let connects: Vec<String> = o
        .connects
        .iter()
        .map(|c| {
            format!(
                "connect {} {} SO_BROADCAST → {} (local {}), send → {}{}{}",
                c.dst.ip(),
                if c.broadcast { "with" } else { "without" },
                ok_or_errno(&c.connect_errno),
                show_addr(c.local),
                ok_or_errno(&c.send_errno),
                if c.delivered { ", received" } else { "" },
                match c.reply_delivered {
                    Some(true) => ", reply arrived",
                    Some(false) => ", reply not delivered",
                    None => "",
                }
            )
        })
        .collect();
    let can = o
        .connects
        .iter()
        .any(|c| c.connect_errno.is_none() && c.send_errno.is_none() && c.delivered);
    let mut ev = base;
    ev.fact("connects", &connects);
    let d = Part::judged("d", STMT_CONNECT, connects.join("; "), can, ev);
    anchor(vec![a, b, c, d], &STATEMENTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::host::NEEDS_ROOT;
    use crate::lab::testing::{sa, verdicts};

    fn linux_like() -> Observation {
        let send = |broadcast, errno: Option<&str>| SendCase {
            dst: sa("198.51.100.255:7000"),
            broadcast,
            errno: errno.map(Into::into),
            delivered: errno.is_none(),
        };
        Observation {
            sends: vec![send(false, Some("EACCES")), send(true, None)],
            binds: vec![BindCase {
                addr: sa("198.51.100.255:7003"),
                errno: None,
                local: Some(sa("198.51.100.255:7003")),
                send_errno: Some(None),
                seen_from: Some(sa("198.51.100.1:7003")),
                reply_delivered: Some(false),
            }],
            connects: vec![ConnectCase {
                dst: sa("198.51.100.255:7000"),
                broadcast: true,
                connect_errno: None,
                local: Some(sa("198.51.100.1:40000")),
                send_errno: None,
                delivered: true,
                reply_delivered: Some(false),
            }],
            ..Observation::default()
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::*;
        assert_eq!(
            verdicts(judge(&linux_like())),
            [Confirmed, Refuted, Confirmed, Confirmed]
        );
    }

    #[test]
    fn each_rule_goes_the_other_way() {
        use Verdict::*;
        let mut o = linux_like();
        o.sends[0].errno = None; // a kernel that broadcasts without the flag
        o.sends[0].delivered = true;
        o.binds[0].errno = Some("EADDRNOTAVAIL".into());
        o.binds[0].reply_delivered = None;
        o.connects[0].connect_errno = Some("EACCES".into());
        o.connects[0].delivered = false;
        assert_eq!(
            verdicts(judge(&o)),
            [Refuted, Confirmed, Confirmed, Refuted]
        );
        let mut o = linux_like();
        o.binds[0].reply_delivered = Some(true);
        o.sends[1].delivered = false; // sent, but nothing arrived
        assert_eq!(verdicts(judge(&o))[..3], [Refuted, Refuted, Refuted]);
    }

    #[test]
    fn not_run_without_root() {
        let parts = BroadcastPermission.run(&Lab::with_root(false)).unwrap();
        assert_eq!(parts.len(), 4);
        assert!(
            parts
                .iter()
                .all(|p| p.verdict == Verdict::NotRun(NEEDS_ROOT.into()))
        );
    }
}
