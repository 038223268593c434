//! Claim 3: in patterns (a) and (c) the side that sends first does not choose its source IP; the
//! system picks one, and it may not be the one you wanted.
//!
//! Observed with a receiver and three senders — unbound (sendto), connected, and bound to the
//! address "we wanted" — once on one host (loopback; with root a second address 127.0.0.2/8 is
//! added to `lo` in the namespace, without root 127.0.0.2 is local through the 127.0.0.0/8
//! route anyway; IPv6: 2001:db8:ffff::2/128 on `lo` besides ::1, with root only) and once
//! across two hosts (veth; host a gets 198.51.100.11/24 besides 198.51.100.1/24; IPv6: a
//! second prefix on the link, 2001:db8:1::b/64 besides 2001:db8::1/64, where RFC 6724's
//! source address selection decides).
//! Facts: getsockname before and after, the source the receiver saw, and `ip route get`
//! (which names the source the kernel will pick).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use serde::Serialize;

use super::article::{SOURCE_PICKED, SOURCE_UNWANTED};
use super::host::NEEDS_ROOT;
use super::observe::{Res, Trial, recv_text, res, show_addr, with_facts, with_facts_only};
use super::{Evidence, Experiment, Family, Host, Lab, Part};

/// The experiment of claim 3.
pub(crate) struct SourceAddressChoice;

const A: &str = "Pattern (a): the sender does not choose its source IP; getsockname says 0.0.0.0:0 ([::]:0 for IPv6) before the first sendto and the system picks the source";
const B: &str = "Pattern (c): connect() has the system pick the source IP (getsockname names it) without the sender choosing";
const C: &str = "On one host with two addresses, the source the system picks may not be the one you wanted (bind() chooses it)";
const D: &str = "Across two hosts, with two addresses on the sender's interface, the source the system picks may not be the one you wanted (bind() chooses it)";

/// The second loopback address, the one "we wanted" on one host, with its prefix length:
/// 127.0.0.2/8, or for IPv6 (whose loopback is ::1/128 alone) 2001:db8:ffff::2/128 on `lo`.
fn lo_wanted(family: Family) -> (IpAddr, &'static str) {
    match family {
        Family::Ipv4 => (Ipv4Addr::new(127, 0, 0, 2).into(), "127.0.0.2/8"),
        Family::Ipv6 => (
            Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 2).into(),
            "2001:db8:ffff::2/128",
        ),
    }
}
/// Host a's second address on the veth, the one "we wanted" across two hosts, with its prefix
/// length: 198.51.100.11/24 on the same subnet, or for IPv6 2001:db8:1::b/64, a second prefix
/// on the link (as a host with a ULA and a global prefix has), where RFC 6724 §5 rule 8
/// (longest matching prefix with the destination) has the last word.
fn pair_wanted(family: Family) -> (IpAddr, &'static str) {
    match family {
        Family::Ipv4 => (Ipv4Addr::new(198, 51, 100, 11).into(), "198.51.100.11/24"),
        Family::Ipv6 => (
            Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0xb).into(),
            "2001:db8:1::b/64",
        ),
    }
}

/// What three senders to one receiver showed about their source address.
#[derive(Debug, Clone, Serialize)]
struct SourceChoice {
    /// The receiver's address.
    dest: SocketAddr,
    /// The address the sender would have liked as its source.
    wanted: IpAddr,
    /// getsockname of the unbound sender before its first sendto.
    unbound_before: Option<SocketAddr>,
    /// getsockname of the unbound sender after it.
    unbound_after: Option<SocketAddr>,
    /// The source the receiver saw on the unbound sender's datagram.
    unbound_seen: Res<Option<SocketAddr>>,
    /// getsockname of a sender right after connect().
    connected_local: Option<SocketAddr>,
    /// The source the receiver saw on the connected sender's datagram.
    connected_seen: Res<Option<SocketAddr>>,
    /// The source the receiver saw from a sender bound to `wanted` (or bind's errno).
    bound_seen: Res<Option<SocketAddr>>,
    /// `ip route get DEST` in the sender's namespace: the kernel's choice, before any packet.
    route: Option<String>,
    #[serde(skip)]
    ev: Evidence,
}

impl SourceChoice {
    fn seen_ip(r: &Res<Option<SocketAddr>>) -> Option<IpAddr> {
        r.as_ref().ok().copied().flatten().map(|a| a.ip())
    }

    /// The system picked a source other than the wanted one, and bind() got the wanted one.
    fn not_the_wanted_one(&self) -> bool {
        Self::seen_ip(&self.unbound_seen).is_some_and(|ip| ip != self.wanted)
            && Self::seen_ip(&self.bound_seen) == Some(self.wanted)
    }

    fn line(&self) -> String {
        let src = self.route.as_deref().and_then(|r| {
            let mut words = r.split_whitespace();
            words.find(|w| *w == "src").and(words.next())
        });
        format!(
            "to {}, the source seen was {} from an unbound sender, {} from a connected one, {} from one bound to {}{}",
            self.dest.ip(),
            show_ip(&self.unbound_seen),
            show_ip(&self.connected_seen),
            show_ip(&self.bound_seen),
            self.wanted,
            src.map_or(String::new(), |s| format!(" (ip route get: src {s})")),
        )
    }
}

fn show_ip(r: &Res<Option<SocketAddr>>) -> String {
    match r {
        Ok(Some(a)) => a.ip().to_string(),
        Ok(None) => "-".into(),
        Err(e) => e.clone(),
    }
}

fn show_seen(r: &Res<Option<SocketAddr>>) -> String {
    match r {
        Ok(a) => show_addr(*a),
        Err(e) => e.clone(),
    }
}

#[derive(Debug, Clone)]
struct Observation {
    one_host: SourceChoice,
    /// None when not root (no namespaces for a second host).
    two_hosts: Option<SourceChoice>,
}

impl Experiment for SourceAddressChoice {
    fn claim(&self) -> u8 {
        3
    }
    fn title(&self) -> &'static str {
        "Who picks the source address"
    }
    fn article(&self) -> &'static str {
        "In patterns (a) and (c) the side that sends first does not choose its source IP; the system picks one, and it may not be the one you wanted"
    }
    fn explanation(&self) -> &'static str {
        "ip(7): an unbound socket is bound to INADDR_ANY and a free local port at its first sendto or at connect; with INADDR_ANY the source address of each packet comes from the routing table (the route's preferred source, `src` in `ip route get`, else the primary address of the outgoing interface — RFC 1122 §3.3.4.3, RFC 1812 §4.2.2.5 for the multihomed case); connect(2) on UDP does that route lookup once and getsockname then shows the chosen address. bind(2) to a local address is how a sender chooses."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let family = lab.family();
        let one_host = {
            let host = lab.loopback("c03")?;
            let (wanted, cidr) = lo_wanted(family);
            if let Some(ns) = host.netns() {
                ns.add_addr(cidr, "lo")?;
            }
            observe_choice(&host, &host, host.lo(0), wanted)?
        };
        let two_hosts = if lab.is_root() {
            let (a, b) = lab.pair("c03")?;
            let (wanted, cidr) = pair_wanted(family);
            if let Some(ns) = a.netns() {
                ns.add_addr(cidr, "veth-a")?;
            }
            let dest = b.addr().context("host b of the pair has an address")?;
            Some(observe_choice(&a, &b, SocketAddr::new(dest, 0), wanted)?)
        } else {
            None
        };
        Ok(judge(&Observation {
            one_host,
            two_hosts,
        }))
    }
}

/// A receiver in `rx_host` bound to `rx_addr`; from `tx_host` an unbound sender, a connected
/// sender and a sender bound to `wanted` each send it one datagram.
fn observe_choice(
    tx_host: &Host<'_>,
    rx_host: &Host<'_>,
    rx_addr: SocketAddr,
    wanted: IpAddr,
) -> anyhow::Result<SourceChoice> {
    let t = Trial::new();
    let rx = t.udp_bound(rx_host, rx_addr)?;
    let dest = rx.local_addr().unwrap_or(rx_addr);
    let seen = || recv_text(&rx, 0).map(|(_, from)| from);

    let u = t.udp(tx_host)?;
    let unbound_before = u.local_addr();
    u.send_to(b"unbound", dest)?;
    let unbound_after = u.local_addr();
    let unbound_seen = seen();

    let c = t.udp(tx_host)?;
    c.connect(dest)?;
    let connected_local = c.local_addr();
    c.send(b"connected")?;
    let connected_seen = seen();

    let b = t.udp(tx_host)?;
    let bound_seen = match res(b.bind(SocketAddr::new(wanted, 0))) {
        Ok(()) => {
            b.send_to(b"bound", dest)?;
            seen()
        }
        Err(e) => Err(format!("bind: {e}")),
    };
    let route = tx_host.netns().and_then(|ns| {
        ns.ip(&["route", "get", &dest.ip().to_string()])
            .ok()
            .and_then(|out| {
                out.lines()
                    .next()
                    .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            })
    });
    Ok(SourceChoice {
        dest,
        wanted,
        unbound_before,
        unbound_after,
        unbound_seen,
        connected_local,
        connected_seen,
        bound_seen,
        route,
        ev: t.evidence(rx_host),
    })
}

/// Judges "may not be the one you wanted"; if no datagram from the wanted address arrived
/// (bind failed, nothing received) there is nothing to compare with.
fn wanted_part(id: &str, statement: &str, s: &SourceChoice) -> Part {
    match &s.bound_seen {
        Ok(Some(_)) => Part::judged(
            id,
            statement,
            s.line(),
            s.not_the_wanted_one(),
            with_facts(&s.ev, s),
        ),
        Ok(None) | Err(_) => Part::not_run(
            id,
            statement,
            &format!(
                "inconclusive: no datagram from the wanted address {} ({})",
                s.wanted,
                show_ip(&s.bound_seen)
            ),
        ),
    }
}

fn judge(o: &Observation) -> Vec<Part> {
    let h = &o.one_host;
    let unspecified = |a: &Option<SocketAddr>| a.is_some_and(|a| a.ip().is_unspecified());
    let before_any =
        unspecified(&h.unbound_before) && h.unbound_before.is_some_and(|a| a.port() == 0);
    let picked = match (&h.unbound_seen, h.unbound_after) {
        (Ok(Some(seen)), Some(after)) => !seen.ip().is_unspecified() && seen.port() == after.port(),
        _ => false,
    };
    let a = Part::judged(
        "a",
        A,
        format!(
            "getsockname {} before sendto, {} after; the receiver saw the datagram come from {}",
            show_addr(h.unbound_before),
            show_addr(h.unbound_after),
            show_seen(&h.unbound_seen)
        ),
        before_any && picked,
        with_facts_only(
            &h.ev,
            h,
            &["dest", "unbound_before", "unbound_after", "unbound_seen"],
        ),
    );
    let connected_ok = h
        .connected_local
        .is_some_and(|l| !l.ip().is_unspecified() && l.port() != 0)
        && h.connected_seen == Ok(h.connected_local);
    let b = Part::judged(
        "b",
        B,
        format!(
            "never bound, after connect() getsockname says {}; the receiver saw {}",
            show_addr(h.connected_local),
            show_seen(&h.connected_seen)
        ),
        connected_ok,
        with_facts_only(&h.ev, h, &["dest", "connected_local", "connected_seen"]),
    );
    // One fact, one vote: the two-host case (the article's LAN) votes; the same question on
    // one host's loopback is an aside.
    let c = wanted_part("c", C, h);
    let d = match &o.two_hosts {
        Some(p) => wanted_part("d", D, p),
        None => Part::not_run("d", D, NEEDS_ROOT),
    }
    .votes_on(SOURCE_UNWANTED);
    vec![a.votes_on(SOURCE_PICKED), b.votes_on(SOURCE_PICKED), c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::{sa, verdicts};

    fn linux_like() -> Observation {
        let one = SourceChoice {
            dest: sa("127.0.0.1:5000"),
            wanted: lo_wanted(Family::Ipv4).0,
            unbound_before: Some(sa("0.0.0.0:0")),
            unbound_after: Some(sa("0.0.0.0:40000")),
            unbound_seen: Ok(Some(sa("127.0.0.1:40000"))),
            connected_local: Some(sa("127.0.0.1:40001")),
            connected_seen: Ok(Some(sa("127.0.0.1:40001"))),
            bound_seen: Ok(Some(sa("127.0.0.2:40002"))),
            route: None,
            ev: Evidence::default(),
        };
        let mut two = one.clone();
        two.wanted = pair_wanted(Family::Ipv4).0;
        two.unbound_seen = Ok(Some(sa("198.51.100.1:40000")));
        two.bound_seen = Ok(Some(sa("198.51.100.11:40002")));
        Observation {
            one_host: one,
            two_hosts: Some(two),
        }
    }

    #[test]
    fn linux_like_observation_confirms() {
        assert_eq!(verdicts(judge(&linux_like())), vec![Verdict::Confirmed; 4]);
    }

    #[test]
    fn rules_go_both_ways() {
        let mut o = linux_like();
        // A system that bound the sender to a concrete address at socket() time.
        o.one_host.unbound_before = Some(sa("127.0.0.1:40000"));
        // connect() that leaves the source unpicked.
        o.one_host.connected_local = Some(sa("0.0.0.0:40001"));
        // The system picked the wanted address by itself.
        o.one_host.unbound_seen = Ok(Some(sa("127.0.0.2:40000")));
        let two = o.two_hosts.as_mut().unwrap();
        // Bound to the wanted address, the datagram still came from the other one.
        two.bound_seen = Ok(Some(sa("198.51.100.1:40002")));
        assert_eq!(verdicts(judge(&o)), vec![Verdict::Refuted; 4]);
        // Without a datagram from the wanted address there is nothing to judge.
        o.two_hosts.as_mut().unwrap().bound_seen = Err("bind: EADDRNOTAVAIL".into());
        assert!(matches!(verdicts(judge(&o))[3], Verdict::NotRun(_)));
        o.two_hosts = None;
        assert!(matches!(verdicts(judge(&o))[3], Verdict::NotRun(_)));
    }
}
