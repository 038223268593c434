//! The IPv6 analogue of claims 7 and 8 (broadcast). IPv6 has no broadcast (RFC 4291 §2.7:
//! "There are no broadcast addresses in IPv6, their function being superseded by multicast
//! addresses"); the nearest thing is the link-local all-nodes group ff02::1, which every IPv6
//! interface joins. So over IPv6 those claims run this instead, between two hosts of
//! [`Lab::pair`]: host a sends UDP datagrams to `[ff02::1]:P`, without and with IPV6_MULTICAST_IF
//! (ipv6(7): the interface for outgoing multicast), and sockets on host b (bound to `[::]:P`
//! and to b's own address) and on host a itself (multicast loopback) show who receives them.
//! Absence is proven with a unicast marker ([`super::marker`]).
//!
//! Every part is an aside with a result of its own: the article speaks of broadcast, which
//! IPv6 has not, so nothing here votes on its sentences; the claims' verdict is
//! [`Verdict::Analogue`](super::Verdict::Analogue) with [`ANALOGUE`].

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use anyhow::Context;
use serde::Serialize;

use super::host::needs_root;
use super::marker::{pin_thread, read_until_marker, send as send_marker};
use super::observe::{Res, Trial, res, udp_bound, with_facts};
use super::{Family, Host, Lab, Part};
use crate::sock::{Sock, Step};
use crate::trace::Recorder;

/// What claims 7 and 8 report over IPv6 instead of a verdict.
pub(crate) const ANALOGUE: &str = "IPv6 has no broadcast; analogue: multicast to ff02::1 (all-nodes) with IPV6_MULTICAST_IF, between two namespaces; its parts are asides";

/// The all-nodes group (RFC 4291 §2.7.1).
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// The receivers' ports: [`Receiver`] `i` listens on `BASE_PORT + i`.
const BASE_PORT: u16 = 7100;

const STMT_SEND: &str = "IPv6 analogue of SO_BROADCAST (no broadcast in IPv6; not the article's claim): a UDP socket sends to ff02::1 without any permission option; which interface it leaves by is chosen with IPV6_MULTICAST_IF";
const STMT_RECEIVE: &str = "IPv6 analogue of broadcast reception (no broadcast in IPv6; not the article's claim): a datagram to ff02::1 reaches a socket bound to [::]:port on every host of the link, the sender's own included (IPV6_MULTICAST_LOOP), and not one bound to a unicast address";

/// A socket that may receive the datagrams to ff02::1.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Receiver {
    /// Where it lives: `b` (the other host) or `a` (the sender's own host).
    pub(crate) host: String,
    /// The address it is bound to.
    pub(crate) bound: SocketAddr,
    /// The payloads that reached it (the marker aside), with their source address.
    pub(crate) got: Vec<(String, Option<SocketAddr>)>,
}

/// What one send to ff02::1 did.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Send {
    /// Whether IPV6_MULTICAST_IF named the interface first (`veth-a`, by its index).
    pub(crate) multicast_if: Option<u32>,
    /// The destination, `[ff02::1]:port`.
    pub(crate) to: SocketAddr,
    /// sendto(2)'s result.
    pub(crate) sendto: Res<usize>,
}

/// The observation.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Observation {
    /// Each send, in order: to each receiver's port without, then with IPV6_MULTICAST_IF.
    pub(crate) sends: Vec<Send>,
    /// The receivers, with what they got.
    pub(crate) receivers: Vec<Receiver>,
}

/// Claim `claim`'s parts over IPv6 (7: sending, 8: receiving), from one observation; `not
/// run` without root.
pub(crate) fn parts(lab: &Lab, claim: u8) -> anyhow::Result<Vec<Part>> {
    let (id, stmt) = match claim {
        7 => ("v6", STMT_SEND),
        _ => ("v6", STMT_RECEIVE),
    };
    if !lab.is_root() {
        return Ok(needs_root(&[(id, stmt, None)]));
    }
    let (a, b) = lab.pair(&format!("c{claim:02}v6"))?;
    let t = Trial::new();
    let o = observe(&a, &b, t.rec())?;
    let mut ev = t.evidence(&b);
    ev.wire.extend(a.wire());
    let ev = with_facts(&ev, &o);
    Ok(vec![match claim {
        7 => judge_send(&o, ev),
        _ => judge_receive(&o, ev),
    }])
}

/// Host a sends "plain" (no IPV6_MULTICAST_IF) and "with-if" (IPV6_MULTICAST_IF = veth-a) to
/// ff02::1 on each receiver's port, then a unicast marker to each receiver; the receivers read
/// up to their marker.
pub(crate) fn observe(a: &Host<'_>, b: &Host<'_>, rec: &Recorder) -> anyhow::Result<Observation> {
    anyhow::ensure!(
        a.family() == Family::Ipv6,
        "the all-nodes analogue is IPv6's"
    );
    let (Some(ip_a), Some(ip_b)) = (a.addr(), b.addr()) else {
        anyhow::bail!("the all-nodes analogue needs the two hosts of Lab::pair");
    };
    let specs = [
        ("b", b, a.any(BASE_PORT), ip_b),
        ("b", b, SocketAddr::new(ip_b, BASE_PORT + 1), ip_b),
        ("a", a, a.any(BASE_PORT + 2), ip_a),
    ];
    let mut socks = Vec::new();
    for (name, host, bound, _) in &specs {
        let bound = *bound;
        socks.push((*name, host.run(|| udp_bound(rec, bound))??));
    }
    let ifindex = a
        .run(|| nix::net::if_::if_nametoindex("veth-a"))?
        .context("the index of veth-a")?;
    let sends = a.run(|| -> Step<Vec<Send>> {
        pin_thread();
        let s = Sock::open(&a.any(0), crate::sock::Proto::Udp, rec)?;
        let mut sends = Vec::new();
        for multicast_if in [None, Some(ifindex)] {
            if let Some(i) = multicast_if {
                set_multicast_if(&s, i)?;
            }
            let payload: &[u8] = if multicast_if.is_some() {
                b"with-if"
            } else {
                b"plain"
            };
            for (_, _, bound, _) in &specs {
                let to = SocketAddr::V6(SocketAddrV6::new(ALL_NODES, bound.port(), 0, 0));
                sends.push(Send {
                    multicast_if,
                    to,
                    sendto: res(s.send_to(payload, to)),
                });
            }
        }
        let markers: Vec<SocketAddr> = specs
            .iter()
            .map(|(_, _, bound, ip)| SocketAddr::new(*ip, bound.port()))
            .collect();
        send_marker(rec, &markers)?;
        Ok(sends)
    })??;
    let mut receivers = Vec::new();
    for ((name, sock), (_, _, bound, ip)) in socks.iter().zip(&specs) {
        let got = read_until_marker(sock, SocketAddr::new(*ip, bound.port()))?;
        receivers.push(Receiver {
            host: (*name).into(),
            bound: sock.local_addr().unwrap_or(*bound),
            got: got.iter().map(|g| (g.text(), g.datagram.from)).collect(),
        });
    }
    Ok(Observation { sends, receivers })
}

/// setsockopt(IPV6_MULTICAST_IF, ifindex), traced (ipv6(7)): the interface multicast leaves by.
fn set_multicast_if(s: &Sock, ifindex: u32) -> Step<()> {
    s.step(
        "setsockopt",
        || format!("IPPROTO_IPV6, IPV6_MULTICAST_IF, {ifindex}"),
        |_| 0,
        |sock| sock.set_multicast_if_v6(ifindex),
    )
}

impl Observation {
    /// Whether receiver `i` got the datagram with `payload`.
    fn got(&self, i: usize, payload: &str) -> bool {
        self.receivers
            .get(i)
            .is_some_and(|r| r.got.iter().any(|(p, _)| p == payload))
    }

    /// The sendto results of the sends without (`false`) or with IPV6_MULTICAST_IF.
    fn results(&self, with_if: bool) -> Vec<String> {
        self.sends
            .iter()
            .filter(|s| s.multicast_if.is_some() == with_if)
            .map(|s| super::observe::show_res(&s.sendto))
            .collect()
    }

    /// The source addresses receiver `i` saw.
    fn sources(&self, i: usize) -> Vec<String> {
        self.receivers.get(i).map_or_else(Vec::new, |r| {
            r.got
                .iter()
                .filter_map(|(_, from)| from.map(|f| f.ip().to_string()))
                .collect()
        })
    }
}

/// Claim 7's analogue: the send with IPV6_MULTICAST_IF worked (no permission asked) and
/// reached b's wildcard socket.
fn judge_send(o: &Observation, ev: super::Evidence) -> Part {
    let with_if_ok = o
        .sends
        .iter()
        .filter(|s| s.multicast_if.is_some())
        .all(|s| s.sendto.is_ok());
    let observed = format!(
        "sendto [ff02::1]:port without IPV6_MULTICAST_IF: {}; with IPV6_MULTICAST_IF (veth-a): {}; b's socket on [::]:{} got {}, source {}",
        o.results(false).join(", "),
        o.results(true).join(", "),
        BASE_PORT,
        describe_got(o, 0),
        o.sources(0).join(", "),
    );
    Part::judged(
        "v6",
        STMT_SEND,
        observed,
        with_if_ok && o.got(0, "with-if"),
        ev,
    )
}

/// Claim 8's analogue: b's and a's wildcard sockets got the datagram sent with
/// IPV6_MULTICAST_IF; b's socket bound to its unicast address did not.
fn judge_receive(o: &Observation, ev: super::Evidence) -> Part {
    let observed = o
        .receivers
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{} {} got {}", r.host, r.bound, describe_got(o, i)))
        .collect::<Vec<_>>()
        .join("; ");
    Part::judged(
        "v6",
        STMT_RECEIVE,
        format!("to ff02::1 with IPV6_MULTICAST_IF: {observed}"),
        o.got(0, "with-if") && o.got(2, "with-if") && !o.got(1, "with-if"),
        ev,
    )
}

/// What receiver `i` got, as `["plain", "with-if"]` or `nothing`.
fn describe_got(o: &Observation, i: usize) -> String {
    let got: Vec<&str> = o.receivers.get(i).map_or_else(Vec::new, |r| {
        r.got.iter().map(|(p, _)| p.as_str()).collect()
    });
    if got.is_empty() {
        "nothing".into()
    } else {
        format!("{got:?}")
    }
}
