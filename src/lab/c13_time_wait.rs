//! Claim 13: TIME_WAIT after a normal close. Eight connections on loopback: the client or the
//! server closes first (the active closer), the socket that will hold TIME_WAIT has
//! SO_REUSEADDR or not, and so has the new socket that then binds the active closer's exact
//! local address (a client rebinding its port; a server restarting its listener). The states
//! come from `ss -tan` once the close handshakes have settled; nothing waits out the 60 s: the
//! TIME-WAIT timer `ss -o` shows says how long it lasts. The side that closed second binds its
//! own address again too: the server's port after its client closed first. Over IPv6, an
//! aside on dual stack: `[::]:p` and `0.0.0.0:p` bound one after the other, in both orders,
//! with IPV6_V6ONLY off and on (`DualStack`).

use std::net::SocketAddr;

use serde::Serialize;

use super::article::TIME_WAIT_BIND;
use super::observe::{self, outcome, show_addr, tcp_pair};
use super::ports::{bind_again, settled_tcp, state_of};
use super::{Evidence, Experiment, Family, Host, Lab, Part};
use crate::sock::{Proto, Sock, Step};
use crate::trace::Recorder;

/// The experiment of claim 13.
pub struct TimeWait;

/// One connection closed and its address bound again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Trial {
    /// Whether the server closed first (else the client did).
    pub(crate) server_closed_first: bool,
    /// SO_REUSEADDR on the active closer's socket (for a server: on its listener).
    pub(crate) old_reuse: bool,
    /// SO_REUSEADDR on the new socket.
    pub(crate) new_reuse: bool,
    /// The active closer's local address, which the new socket binds.
    pub(crate) addr: Option<SocketAddr>,
    /// `ss` state of the active closer's side of the connection, if it is still listed.
    pub(crate) closer_state: Option<String>,
    /// `ss` state of the passive side, if it is still listed.
    pub(crate) passive_state: Option<String>,
    /// bind (then listen, for a server) of the new socket: `ok` or the errno.
    pub(crate) rebind: String,
    /// The side that closed second: its local address (the server's listening port when the
    /// client closed first).
    pub(crate) passive_addr: Option<SocketAddr>,
    /// bind (then listen, for a server) of the passive side's address, without SO_REUSEADDR,
    /// once its socket has closed: `ok` or the errno.
    pub(crate) passive_rebind: String,
}

impl Trial {
    fn who(&self) -> &'static str {
        if self.server_closed_first {
            "server"
        } else {
            "client"
        }
    }
}

/// What was observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Observation {
    /// The eight trials.
    pub(crate) trials: Vec<Trial>,
    /// `ss -tan` lines of the trials, after the closes.
    pub(crate) states: Vec<String>,
    /// The TIME-WAIT timers `ss -tano state time-wait` showed right after the closes
    /// (`timewait,59sec,0`): how long the state lasts.
    pub(crate) timers: Vec<String>,
    /// Counters that moved (private namespace only).
    pub(crate) counters: Option<std::collections::BTreeMap<String, i64>>,
    /// The dual-stack binds (IPv6 runs only).
    pub(crate) dual_stack: Option<Vec<DualStack>>,
    /// The trace of all trials.
    pub(crate) ev: Evidence,
}

/// Two TCP sockets bind the same port, one to `[::]` and one to `0.0.0.0`, neither with
/// SO_REUSEADDR (ipv6(7) IPV6_V6ONLY: with it off, an AF_INET6 socket bound to `::` also
/// takes IPv4 through v4-mapped addresses, RFC 4291 §2.5.5.2, so the two conflict).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct DualStack {
    /// IPV6_V6ONLY on the `[::]` socket.
    pub(crate) v6only: bool,
    /// The first bind's address (the port the kernel chose).
    pub(crate) first: Option<SocketAddr>,
    /// The second bind's address: the other family's wildcard with the same port.
    pub(crate) second: Option<SocketAddr>,
    /// The second bind: `ok` or the errno.
    pub(crate) second_bind: String,
}

impl Experiment for TimeWait {
    fn claim(&self) -> u8 {
        13
    }
    fn title(&self) -> &'static str {
        "TIME_WAIT and EADDRINUSE"
    }
    fn article(&self) -> &'static str {
        "After a normal TCP close the address stays in TIME_WAIT for a while, and binding it again gives \"Address already in use\"."
    }
    fn explanation(&self) -> &'static str {
        "RFC 793 / RFC 9293 §3.6: the side that sends the first FIN (active close) passes through FIN-WAIT and stays in TIME-WAIT for 2×MSL (Linux: 60 s, TCP_TIMEWAIT_LEN) so that late segments of the old connection die out; the passive side goes CLOSE-WAIT → LAST-ACK → CLOSED. While the TIME-WAIT socket exists its local port stays bound: bind(2) gives EADDRINUSE. socket(7) SO_REUSEADDR allows the bind \"unless there is an active listening socket bound to the address\"; on Linux the TIME-WAIT socket keeps the SO_REUSEADDR setting of the socket it came from, and the bind conflict check (inet_bind_conflict) lets the new socket through only if both have it."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c13")?;
        Ok(judge(&observe(&host)?))
    }
}

/// Opens a connection, closes it actively from the chosen side, and returns the trial with
/// the addresses filled in (states and rebind come later).
fn close_one(
    rec: &Recorder,
    family: Family,
    server_closed_first: bool,
    old_reuse: bool,
) -> Step<(Trial, SocketAddr)> {
    let reuse = |on: bool| {
        move |s: &Sock| {
            if on {
                s.set_reuse_address(true)
            } else {
                Ok(())
            }
        }
    };
    let (listener, client, server) = tcp_pair(
        rec,
        family,
        reuse(server_closed_first && old_reuse),
        reuse(!server_closed_first && old_reuse),
    )?;
    listener.close();
    let (closer, passive) = if server_closed_first {
        (server, client)
    } else {
        (client, server)
    };
    let (addr, peer) = (closer.local_addr(), passive.local_addr());
    closer.close();
    // Readiness: the passive side reads the FIN (recv == 0), then closes too.
    let mut buf = [0u8; 1];
    passive.recv(&mut buf)?;
    passive.close();
    let trial = Trial {
        server_closed_first,
        old_reuse,
        addr,
        passive_addr: peer,
        ..Trial::default()
    };
    Ok((trial, peer.unwrap_or(family.lo(0))))
}

fn observe(host: &Host) -> anyhow::Result<Observation> {
    let traced = observe::Trial::new();
    let rec = traced.rec();
    let before = host.is_isolated().then(|| host.counters()).transpose()?;
    let mut o = Observation::default();
    for server_closed_first in [false, true] {
        for old_reuse in [false, true] {
            for new_reuse in [false, true] {
                let (mut t, passive) =
                    host.run(|| close_one(rec, host.family(), server_closed_first, old_reuse))??;
                t.new_reuse = new_reuse;
                let addr = t.addr.unwrap_or(host.lo(0));
                let lines = settled_tcp(host, addr.port())?;
                t.closer_state = state_of(&lines, addr, passive);
                t.passive_state = state_of(&lines, passive, addr);
                // A new socket binds the active closer's address (and listens, for a server).
                let (reuse, listen) = (t.new_reuse, t.server_closed_first);
                t.rebind = outcome(&host.run(|| bind_again(rec, Proto::Tcp, addr, reuse, listen))?);
                // The side that closed second binds its own address again (the server restarts
                // its listener when the client closed first).
                let server = !t.server_closed_first;
                t.passive_rebind =
                    outcome(&host.run(|| bind_again(rec, Proto::Tcp, passive, false, server))?);
                if o.timers.is_empty() {
                    o.timers = timewait_timers(host)?;
                }
                o.states.extend(lines);
                o.trials.push(t);
            }
        }
    }
    if host.family() == Family::Ipv6 {
        let mut cases = Vec::new();
        for v6only in [false, true] {
            for v6_first in [true, false] {
                cases.push(host.run(|| dual_stack(rec, v6only, v6_first))??);
            }
        }
        o.dual_stack = Some(cases);
    }
    if let Some(b) = before {
        o.counters = Some(b.delta(&host.counters()?));
    }
    o.ev.trace = traced.take();
    Ok(o)
}

/// The `[::]` socket (IPV6_V6ONLY = `v6only`) and the `0.0.0.0` one bind the same port, the
/// IPv6 one first if `v6_first`; the first binds port 0 and the second takes the port the
/// kernel chose.
fn dual_stack(rec: &Recorder, v6only: bool, v6_first: bool) -> Step<DualStack> {
    let (v6, v4) = (Family::Ipv6.any(0), Family::Ipv4.any(0));
    let open = |at: SocketAddr| -> Step<Sock> {
        let s = Sock::open(&at, Proto::Tcp, rec)?;
        if at.is_ipv6() {
            s.set_only_v6(v6only)?;
        }
        Ok(s)
    };
    let (a, b) = if v6_first { (v6, v4) } else { (v4, v6) };
    let first = open(a)?;
    first.bind(a)?;
    let port = first.local_addr().map_or(0, |l| l.port());
    let second_addr = SocketAddr::new(b.ip(), port);
    let second = open(second_addr)?;
    let second_bind = outcome(&second.bind(second_addr));
    Ok(DualStack {
        v6only,
        first: first.local_addr(),
        second: Some(second_addr),
        second_bind,
    })
}

/// The timers of the TIME-WAIT sockets (`ss -tano state time-wait`): `timewait,59sec,0`.
fn timewait_timers(host: &Host) -> anyhow::Result<Vec<String>> {
    Ok(host
        .ss(&["-tano", "state", "time-wait"])?
        .iter()
        .filter_map(|l| {
            let start = l.find("timer:(")? + "timer:(".len();
            let end = l[start..].find(')')? + start;
            Some(l[start..end].to_string())
        })
        .collect())
}

fn judge(o: &Observation) -> Vec<Part> {
    let mut ev = o.ev.clone();
    ev.states = o.states.clone();
    ev.fact("trials", &o.trials);
    if let Some(c) = &o.counters {
        ev.counters = c.clone();
    }
    let ts = &o.trials;
    let any = !ts.is_empty();
    let tw = |t: &Trial| t.closer_state.as_deref() == Some("TIME-WAIT");
    let closer_tw = any && ts.iter().all(tw);
    let passive_clear = any && ts.iter().all(|t| t.passive_state.is_none());
    let plain: Vec<&Trial> = ts.iter().filter(|t| !t.new_reuse).collect();
    let in_use = !plain.is_empty() && plain.iter().all(|t| t.rebind == "EADDRINUSE");
    let both: Vec<&Trial> = ts.iter().filter(|t| t.new_reuse && t.old_reuse).collect();
    let new_only: Vec<&Trial> = ts.iter().filter(|t| t.new_reuse && !t.old_reuse).collect();
    let reuse_both_only = !both.is_empty()
        && both.iter().all(|t| t.rebind == "ok")
        && new_only.iter().all(|t| t.rebind == "EADDRINUSE");
    // The server's port after its client closed first.
    let servers: Vec<&Trial> = ts.iter().filter(|t| !t.server_closed_first).collect();
    let server_in_use =
        !servers.is_empty() && servers.iter().all(|t| t.passive_rebind == "EADDRINUSE");
    let mut server_rebinds: Vec<String> = servers
        .iter()
        .map(|t| {
            format!(
                "{} → {}",
                t.passive_addr.map_or_else(|| "?".into(), |a| a.to_string()),
                t.passive_rebind
            )
        })
        .collect();
    server_rebinds.sort();
    server_rebinds.dedup();
    let timers = {
        let mut v: Vec<String> = o
            .timers
            .iter()
            .map(|t| t.split(',').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        v.dedup();
        v
    };
    let joined = |mut v: Vec<String>| {
        v.dedup();
        v.join(", ")
    };
    let summary = |pick: &dyn Fn(&Trial) -> bool| {
        joined(
            ts.iter()
                .filter(|t| pick(t))
                .map(|t| format!("{} {}", t.who(), t.rebind))
                .collect(),
        )
    };
    let states = |f: &dyn Fn(&Trial) -> Option<String>| {
        joined(
            ts.iter()
                .map(|t| {
                    let s = f(t).unwrap_or_else(|| "no socket left".into());
                    format!("{} closed first: {s}", t.who())
                })
                .collect(),
        )
    };
    let mut ev_a = ev.clone();
    ev_a.fact("time_wait_timers", &o.timers);
    vec![
        Part::judged(
            "a",
            "after a normal close the address stays in TIME_WAIT for a while",
            format!(
                "the side that closed first, once both closed: {}; ss timer: {}",
                states(&|t| t.closer_state.clone()),
                if timers.is_empty() {
                    "none shown".into()
                } else {
                    timers.join(", ")
                }
            ),
            closer_tw,
            ev_a,
        )
        .votes_on(TIME_WAIT_BIND),
        Part::judged(
            "b",
            "TIME_WAIT is held by the side that closed first; the side that closed second has none",
            format!(
                "the side that closed second: {}",
                states(&|t| t.passive_state.clone())
            ),
            closer_tw && passive_clear,
            ev.clone(),
        ),
        Part::judged(
            "c",
            "binding the address of the side that closed first again gives \"Address already in use\"",
            format!(
                "bind without SO_REUSEADDR on the new socket: {}",
                summary(&|t| !t.new_reuse)
            ),
            in_use,
            ev.clone(),
        )
        .votes_on(TIME_WAIT_BIND),
        Part::judged(
            "d",
            "Over TIME_WAIT, SO_REUSEADDR lets a new socket bind only when the old socket had it too (on the new socket alone: EADDRINUSE)",
            format!(
                "SO_REUSEADDR on the old and the new socket: {}; on the new one only: {}",
                summary(&|t| t.new_reuse && t.old_reuse),
                summary(&|t| t.new_reuse && !t.old_reuse)
            ),
            reuse_both_only,
            ev.clone(),
        ),
        Part::judged(
            "e",
            "binding again gives \"Address already in use\" on the server too: its listening port, after its client closed first",
            format!(
                "the server's port once its client closed first, bind + listen without SO_REUSEADDR: {}",
                server_rebinds.join(", ")
            ),
            server_in_use,
            ev.clone(),
        )
        .votes_on(TIME_WAIT_BIND),
    ]
    .into_iter()
    .chain(o.dual_stack.as_ref().map(|d| dual_stack_part(d, &ev)))
    .collect()
}

/// The dual-stack aside: with IPV6_V6ONLY off the second bind fails with EADDRINUSE in both
/// orders, with it on both bind.
fn dual_stack_part(cases: &[DualStack], ev: &Evidence) -> Part {
    let mut ev = ev.clone();
    ev.fact("dual_stack", cases);
    let show = |v6only: bool| {
        cases
            .iter()
            .filter(|c| c.v6only == v6only)
            .map(|c| {
                format!(
                    "{} then {} → {}",
                    show_addr(c.first),
                    show_addr(c.second),
                    c.second_bind
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all = |v6only: bool, want: &str| {
        let of: Vec<&DualStack> = cases.iter().filter(|c| c.v6only == v6only).collect();
        !of.is_empty() && of.iter().all(|c| c.second_bind == want)
    };
    Part::judged(
        "f",
        "Dual stack (an IPv6 aside; the article speaks of TIME_WAIT): with IPV6_V6ONLY=0 a socket on [::]:p also holds 0.0.0.0:p, so binding the other gives \"Address already in use\" in either order; with IPV6_V6ONLY=1 both bind",
        format!(
            "IPV6_V6ONLY=0: {}; IPV6_V6ONLY=1: {}",
            show(false),
            show(true)
        ),
        all(false, "EADDRINUSE") && all(true, "ok"),
        ev,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::verdicts;

    fn trial(server: bool, old: bool, new: bool, rebind: &str) -> Trial {
        Trial {
            server_closed_first: server,
            old_reuse: old,
            new_reuse: new,
            addr: Some("127.0.0.1:5000".parse().unwrap()),
            closer_state: Some("TIME-WAIT".into()),
            passive_state: None,
            rebind: rebind.into(),
            passive_addr: Some("127.0.0.1:6000".parse().unwrap()),
            passive_rebind: "ok".into(),
        }
    }

    fn linux_like() -> Observation {
        let mut trials = Vec::new();
        for server in [false, true] {
            for old in [false, true] {
                for new in [false, true] {
                    let ok = old && new;
                    trials.push(trial(
                        server,
                        old,
                        new,
                        if ok { "ok" } else { "EADDRINUSE" },
                    ));
                }
            }
        }
        Observation {
            trials,
            ..Observation::default()
        }
    }

    #[test]
    fn time_wait_on_the_closer_but_the_server_rebinds() {
        use Verdict::*;
        let parts = judge(&linux_like());
        assert_eq!(
            verdicts(parts.clone()),
            vec![Confirmed, Confirmed, Confirmed, Confirmed, Refuted]
        );
        let votes: Vec<&str> = parts
            .iter()
            .filter(|p| p.votes())
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(votes, ["a", "c", "e"], "13b and 13d are asides");
        assert_eq!(crate::lab::verdict_of(&parts), Partly);
        // A server whose port stayed taken would confirm 13e.
        let mut o = linux_like();
        for t in &mut o.trials {
            t.passive_rebind = "EADDRINUSE".into();
        }
        assert_eq!(verdicts(judge(&o))[4], Confirmed);
    }

    #[test]
    fn no_time_wait_refutes_everything() {
        let mut o = linux_like();
        for t in &mut o.trials {
            t.closer_state = None;
            t.rebind = "ok".into();
        }
        o.trials[0].passive_state = Some("TIME-WAIT".into());
        let v = verdicts(judge(&o));
        assert_eq!(v[..3].to_vec(), vec![Verdict::Refuted; 3]);
        // SO_REUSEADDR on the new socket alone got through: not "only when both have it".
        assert_eq!(v[3], Verdict::Refuted);
    }

    #[test]
    fn reuse_that_does_not_help_refutes_d() {
        let mut o = linux_like();
        for t in &mut o.trials {
            t.rebind = "EADDRINUSE".into();
        }
        assert_eq!(verdicts(judge(&o))[3], Verdict::Refuted);
        // Nor does SO_REUSEADDR on the new socket alone letting it through hold 13d.
        let mut o = linux_like();
        for t in &mut o.trials {
            if t.new_reuse {
                t.rebind = "ok".into();
            }
        }
        assert_eq!(verdicts(judge(&o))[3], Verdict::Refuted);
    }

    #[test]
    fn time_wait_on_the_passive_side_refutes_b() {
        let mut o = linux_like();
        o.trials[3].passive_state = Some("TIME-WAIT".into());
        assert_eq!(verdicts(judge(&o))[1], Verdict::Refuted);
    }
}
