//! Claim 1: TCP has one pattern (server: socket, setsockopt, bind, listen, accept; client:
//! socket, connect), and sendto() with an address on a connected TCP socket is accepted but the
//! address is ignored.
//!
//! Observed on a private loopback: the pattern's calls and an exchange; between two hosts, a
//! TCP simultaneous open (two bound sockets connect to each other, neither listens: the case
//! the article's "one end must connect first" misses); as asides, connect() to a port that is
//! bound but not listening and a socket connecting to itself; sendto() with
//! the address of another listener on a connected socket (where do the bytes go, does the other
//! listener see a connection?); sendto() with an address on a socket that is not connected.

use std::net::SocketAddr;

use serde::Serialize;

use super::article::{TCP_CONNECT_FIRST, TCP_PATTERN, TCP_SENDTO_IGNORED};
use super::host::NEEDS_ROOT;
use super::observe::{Res, TIMEOUT, Trial, errno, res, show_res, show_unit, with_facts};
use super::{Evidence, Experiment, Host, Lab, Part};
use crate::sock::{Proto, Sock};
use crate::trace::{Event, Outcome};

/// The experiment of claim 1.
pub(crate) struct TcpOnePattern;

const A: &str = "TCP has one pattern: the server calls socket, setsockopt, bind, listen, accept; the client socket, connect; then both send/recv";
const B: &str = "Both sides bound is still client/server: one end must connect first to a side that listens (two bound sockets connecting to each other at once, neither listening, get no connection)";
const B_ASIDE: &str = "connect() to a port that is bound but not listening fails (and a socket bound to A connecting to A)";
const C: &str = "On a connected TCP socket sendto() with an address is accepted and the address is ignored: the bytes go to the connected peer";
const D: &str = "sendto() with an address does not make an unconnected TCP socket connect: the call fails and nothing reaches that address";
/// The ports of the simultaneous open, one per host.
const SIM_PORTS: (u16, u16) = (40_001, 40_002);
const PAYLOAD: &[u8] = b"via-sendto";

#[derive(Debug, Clone, Serialize)]
struct Pattern {
    /// The server's calls and whether each succeeded, e.g. `listen=ok`.
    server_calls: Vec<String>,
    /// The client's calls.
    client_calls: Vec<String>,
    /// What the server read of the client's "hello".
    server_got: String,
    /// What the client read of the server's reply.
    client_got: String,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone, Serialize)]
struct NoListener {
    /// connect() to a port bound by a socket that did not call listen().
    connect_to_bound_not_listening: Res<()>,
    /// Aside: a socket bound to A connecting to A itself (TCP simultaneous open, RFC 793 §3.4).
    self_connect: Res<()>,
    #[serde(skip)]
    ev: Evidence,
}

/// Two bound sockets on two hosts connect to each other at once; neither calls listen().
#[derive(Debug, Clone, Serialize)]
struct SimultaneousOpen {
    /// Host a's socket, bound.
    a: SocketAddr,
    /// Host b's socket, bound.
    b: SocketAddr,
    /// a's connect() to b (made first; its SYN waits for ARP, which b ignores until b's own
    /// SYN is under way).
    a_connect: Res<()>,
    /// b's connect() to a, made while a is in SYN-SENT.
    b_connect: Res<()>,
    /// Every call both sockets made: no listen(), no accept().
    calls: Vec<String>,
    /// What a read of b's "from-b".
    a_got: String,
    /// What b read of a's "from-a".
    b_got: String,
    /// TCP segments with SYN and no ACK seen at b (a simultaneous open has two: one each way).
    bare_syns: usize,
    #[serde(skip)]
    ev: Evidence,
}

impl SimultaneousOpen {
    /// A connection came up from two connect() calls, no listener, and carried data both ways.
    fn connected(&self) -> bool {
        self.a_connect.is_ok()
            && self.b_connect.is_ok()
            && self.a_got == "from-b"
            && self.b_got == "from-a"
            && !self
                .calls
                .iter()
                .any(|c| c.starts_with("listen") || c.starts_with("accept"))
    }
}

#[derive(Debug, Clone, Serialize)]
struct SendtoConnected {
    /// The connected peer.
    peer: SocketAddr,
    /// The other listener whose address sendto() was given.
    other: SocketAddr,
    /// sendto()'s result.
    sendto: Res<usize>,
    /// What the connected peer read.
    peer_got: String,
    /// accept() on the other listener, nonblocking: EAGAIN = nobody connected to it.
    other_accept: Res<()>,
    /// SYNs seen on the wire towards the other listener (only with a private namespace).
    other_syns: Option<usize>,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone, Serialize)]
struct SendtoUnconnected {
    /// The listener whose address sendto() was given.
    target: SocketAddr,
    /// sendto()'s result on a fresh, unconnected TCP socket.
    sendto: Res<usize>,
    /// accept() on that listener, nonblocking: EAGAIN = nobody connected.
    target_accept: Res<()>,
    #[serde(skip)]
    ev: Evidence,
}

#[derive(Debug, Clone)]
struct Observation {
    pattern: Pattern,
    /// `None` without namespaces.
    simultaneous: Option<SimultaneousOpen>,
    no_listener: NoListener,
    connected: SendtoConnected,
    unconnected: SendtoUnconnected,
}

impl Experiment for TcpOnePattern {
    fn claim(&self) -> u8 {
        1
    }
    fn title(&self) -> &'static str {
        "TCP's one pattern; sendto() on TCP"
    }
    fn article(&self) -> &'static str {
        "TCP has one client/server pattern; sendto() with an address on a connected TCP socket is accepted on some platforms, but the address is ignored"
    }
    fn explanation(&self) -> &'static str {
        "tcp(7), listen(2), accept(2), connect(2): a connection is set up by the three-way handshake with a listening socket (RFC 793 §3.4; a simultaneous open needs no listener). send(2): \"If sendto() is used on a connection-mode (SOCK_STREAM, SOCK_SEQPACKET) socket, the arguments dest_addr and addrlen are ignored\" and \"the error ENOTCONN is returned when the socket was not actually connected\"; Linux's tcp_sendmsg returns EPIPE instead (sk_stream_wait_connect; MSG_NOSIGNAL spares the SIGPIPE), and only MSG_FASTOPEN makes sendto() connect."
    }
    fn run(&self, lab: &Lab) -> anyhow::Result<Vec<Part>> {
        let host = lab.loopback("c01")?;
        let simultaneous = if lab.is_root() {
            let (a, b) = lab.pair("c01")?;
            Some(simultaneous_open(&a, &b)?)
        } else {
            None
        };
        Ok(judge(&observe(&host, simultaneous)?))
    }
}

fn observe(host: &Host<'_>, simultaneous: Option<SimultaneousOpen>) -> anyhow::Result<Observation> {
    Ok(Observation {
        pattern: pattern(host)?,
        simultaneous,
        no_listener: no_listener(host)?,
        connected: sendto_connected(host)?,
        unconnected: sendto_unconnected(host)?,
    })
}

/// A listener bound to the loopback address (127.0.0.1 or ::1) on a port the kernel picks.
fn listener(t: &Trial, host: &Host<'_>) -> anyhow::Result<(Sock, SocketAddr)> {
    let l = t.sock(host, Proto::Tcp)?;
    l.set_reuse_address(true)?;
    l.bind(host.lo(0))?;
    l.listen(8)?;
    let addr = l
        .local_addr()
        .ok_or_else(|| anyhow::anyhow!("listener without an address"))?;
    Ok((l, addr))
}

/// Reads up to `n` bytes of a stream (each recv bounded by SO_RCVTIMEO).
fn read_upto(s: &Sock, n: usize) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while got.len() < n {
        match s.recv(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(k) => got.extend_from_slice(&buf[..k]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// accept() without blocking: `Err("EAGAIN")` when no connection is queued.
fn accept_now(l: &Sock) -> Res<()> {
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    res(l.accept()).map(drop)
}

/// The calls made on `fds` (socket(2) counts by the fd it returned), as `call` or, for a
/// failed call, `call=ERRNO`.
fn calls(trace: &[Event], fds: &[i32]) -> Vec<String> {
    let on = |e: &Event| match (e.call, &e.result) {
        ("socket", Outcome::Ok(fd)) => fds.iter().any(|f| i64::from(*f) == *fd),
        _ => fds.contains(&e.fd),
    };
    trace
        .iter()
        .filter(|e| on(e))
        .map(|e| match e.errno_name() {
            Some(errno) => format!("{}={errno}", e.call),
            None => e.call.to_string(),
        })
        .collect()
}

fn pattern(host: &Host<'_>) -> anyhow::Result<Pattern> {
    let t = Trial::new();
    let (l, addr) = listener(&t, host)?;
    let c = t.sock(host, Proto::Tcp)?;
    c.connect(addr)?;
    let (conn, _) = l.accept()?;
    c.send(b"hello")?;
    let server_got = read_upto(&conn, 5);
    conn.send(b"world")?;
    let client_got = read_upto(&c, 5);
    let ev = t.evidence(host);
    // SO_RCVTIMEO is the lab's own bound on receives, not part of the pattern.
    let trace: Vec<_> = ev
        .trace
        .iter()
        .filter(|e| !e.args.contains("SO_RCVTIMEO"))
        .cloned()
        .collect();
    Ok(Pattern {
        server_calls: calls(&trace, &[l.fd(), conn.fd()]),
        client_calls: calls(&trace, &[c.fd()]),
        server_got,
        client_got,
        ev,
    })
}

/// TCP simultaneous open (RFC 793 §3.4, figure 8): a and b bind, then each connects to the
/// other; neither listens. So that both SYNs are in flight at once, b ignores neighbour
/// requests ([`Host::ignore_neighbour_requests`]: ARP or IPv6 neighbour solicitations) until
/// its own connect() makes b ask for a's address: a's SYN waits in a's neighbour queue, is
/// released when b's request teaches a where b is, and crosses b's SYN.
fn simultaneous_open(ha: &Host<'_>, hb: &Host<'_>) -> anyhow::Result<SimultaneousOpen> {
    let t = Trial::new();
    hb.ignore_neighbour_requests("veth-b")?;
    let (Some(ip_a), Some(ip_b)) = (ha.addr(), hb.addr()) else {
        anyhow::bail!("the simultaneous open needs the two hosts of Lab::pair");
    };
    let addr_a = SocketAddr::new(ip_a, SIM_PORTS.0);
    let addr_b = SocketAddr::new(ip_b, SIM_PORTS.1);
    let sa = t.sock(ha, Proto::Tcp)?;
    sa.bind(addr_a)?;
    let sb = t.sock(hb, Proto::Tcp)?;
    sb.bind(addr_b)?;
    let _ = hb.wire();
    let (a_connect, b_connect) = std::thread::scope(|scope| {
        let a = scope.spawn(|| res(sa.connect_timeout(addr_b, TIMEOUT)));
        // b connects once a is in SYN-SENT (its SYN waiting for ARP).
        let filter = format!("sport = :{}", SIM_PORTS.0);
        super::observe::wait_until(|| {
            ha.ss(&["-tn", "state", "syn-sent", &filter])
                .is_ok_and(|l| !l.is_empty())
        });
        let b = res(sb.connect_timeout(addr_a, TIMEOUT));
        (a.join().unwrap_or_else(|_| Err("panicked".into())), b)
    });
    let mut a_got = String::new();
    let mut b_got = String::new();
    if a_connect.is_ok() && b_connect.is_ok() {
        sa.send(b"from-a")?;
        sb.send(b"from-b")?;
        a_got = read_upto(&sa, 6);
        b_got = read_upto(&sb, 6);
    }
    let ev = t.evidence(hb);
    let bare_syns = ev
        .wire
        .iter()
        .filter(|w| w.starts_with("TCP ") && w.contains("[SYN]"))
        .count();
    let calls = calls(&ev.trace, &[sa.fd(), sb.fd()]);
    Ok(SimultaneousOpen {
        a: addr_a,
        b: addr_b,
        a_connect,
        b_connect,
        calls,
        a_got,
        b_got,
        bare_syns,
        ev,
    })
}

fn no_listener(host: &Host<'_>) -> anyhow::Result<NoListener> {
    let t = Trial::new();
    let bound = t.sock(host, Proto::Tcp)?;
    bound.bind(host.lo(0))?;
    let addr = bound.local_addr().unwrap_or(host.lo(0));
    let c = t.sock(host, Proto::Tcp)?;
    let connect_to_bound_not_listening = res(c.connect(addr));
    let me = t.sock(host, Proto::Tcp)?;
    me.bind(host.lo(0))?;
    let self_connect = res(me.connect(me.local_addr().unwrap_or(host.lo(0))));
    Ok(NoListener {
        connect_to_bound_not_listening,
        self_connect,
        ev: t.evidence(host),
    })
}

fn sendto_connected(host: &Host<'_>) -> anyhow::Result<SendtoConnected> {
    let t = Trial::new();
    let (l, peer) = listener(&t, host)?;
    let (other_l, other) = listener(&t, host)?;
    let c = t.sock(host, Proto::Tcp)?;
    c.connect(peer)?;
    let (conn, _) = l.accept()?;
    let _ = host.wire();
    let sendto = res(c.send_to(PAYLOAD, other));
    let peer_got = read_upto(&conn, PAYLOAD.len());
    let other_accept = accept_now(&other_l);
    let ev = t.evidence(host);
    let syn_to = format!("> {other} [SYN]");
    let other_syns = host
        .is_isolated()
        .then(|| ev.wire.iter().filter(|w| w.contains(&syn_to)).count());
    Ok(SendtoConnected {
        peer,
        other,
        sendto,
        peer_got,
        other_accept,
        other_syns,
        ev,
    })
}

fn sendto_unconnected(host: &Host<'_>) -> anyhow::Result<SendtoUnconnected> {
    let t = Trial::new();
    let (l, target) = listener(&t, host)?;
    let s = t.sock(host, Proto::Tcp)?;
    let sendto = res(s.send_to(PAYLOAD, target));
    let target_accept = accept_now(&l);
    Ok(SendtoUnconnected {
        target,
        sendto,
        target_accept,
        ev: t.evidence(host),
    })
}

fn judge(o: &Observation) -> Vec<Part> {
    let p = &o.pattern;
    let expect_server = ["socket", "setsockopt", "bind", "listen", "accept"];
    let all_ok = |calls: &[String]| calls.iter().all(|c| !c.contains('='));
    let server_ok = all_ok(&p.server_calls)
        && expect_server
            .iter()
            .all(|name| p.server_calls.iter().any(|c| c == name));
    let client_ok = all_ok(&p.client_calls) && p.client_calls.iter().any(|c| c == "connect");
    let exchanged = p.server_got == "hello" && p.client_got == "world";
    let a = Part::judged(
        "a",
        A,
        format!(
            "server: {}; client: {}; read {:?} and {:?}",
            p.server_calls.join(" "),
            p.client_calls.join(" "),
            p.server_got,
            p.client_got
        ),
        server_ok && client_ok && exchanged,
        with_facts(&p.ev, p),
    )
    .votes_on(TCP_PATTERN);

    let b = match &o.simultaneous {
        Some(sim) => Part::judged(
            "b",
            B,
            format!(
                "two bound sockets, neither listening, connect to each other: connect() {} and {}; {} bare SYN(s) crossed; read {:?} and {:?}",
                show_unit(&sim.a_connect),
                show_unit(&sim.b_connect),
                sim.bare_syns,
                sim.a_got,
                sim.b_got,
            ),
            !sim.connected(),
            with_facts(&sim.ev, sim),
        ),
        None => Part::not_run("b", B, NEEDS_ROOT),
    }
    .votes_on(TCP_CONNECT_FIRST);

    let n = &o.no_listener;
    let b_aside = Part::judged(
        "e",
        B_ASIDE,
        format!(
            "connect() to a bound, non-listening port: {}; (aside: a socket connecting to its own address: {})",
            show_unit(&n.connect_to_bound_not_listening),
            show_unit(&n.self_connect),
        ),
        n.connect_to_bound_not_listening.is_err(),
        with_facts(&n.ev, n),
    );

    let c = &o.connected;
    let ignored = c.sendto == Ok(PAYLOAD.len())
        && c.peer_got.as_bytes() == PAYLOAD
        && errno(&c.other_accept) == Some("EAGAIN")
        && c.other_syns.unwrap_or(0) == 0;
    let c_part = Part::judged(
        "c",
        C,
        format!(
            "sendto(other listener) on a connected socket returned {}; the peer read {:?}; the other listener's accept: {}",
            show_res(&c.sendto),
            c.peer_got,
            show_unit(&c.other_accept),
        ),
        ignored,
        with_facts(&c.ev, c),
    )
    .votes_on(TCP_SENDTO_IGNORED);

    let u = &o.unconnected;
    let d = Part::judged(
        "d",
        D,
        format!(
            "sendto(listener) on an unconnected TCP socket: {}; the listener's accept: {}",
            show_res(&u.sendto),
            show_unit(&u.target_accept),
        ),
        u.sendto.is_err() && errno(&u.target_accept) == Some("EAGAIN"),
        with_facts(&u.ev, u),
    );
    vec![a, b, c_part, d, b_aside]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Verdict;
    use crate::lab::testing::{lo, verdicts};

    fn linux_like() -> Observation {
        let ok = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Observation {
            pattern: Pattern {
                server_calls: ok(&["socket", "setsockopt", "bind", "listen", "accept"]),
                client_calls: ok(&["socket", "connect"]),
                server_got: "hello".into(),
                client_got: "world".into(),
                ev: Evidence::default(),
            },
            simultaneous: Some(SimultaneousOpen {
                a: lo(40_001),
                b: lo(40_002),
                a_connect: Ok(()),
                b_connect: Ok(()),
                calls: ok(&["socket", "bind", "connect", "send", "recv"]),
                a_got: "from-b".into(),
                b_got: "from-a".into(),
                bare_syns: 2,
                ev: Evidence::default(),
            }),
            no_listener: NoListener {
                connect_to_bound_not_listening: Err("ECONNREFUSED".into()),
                self_connect: Ok(()),
                ev: Evidence::default(),
            },
            connected: SendtoConnected {
                peer: lo(1000),
                other: lo(2000),
                sendto: Ok(PAYLOAD.len()),
                peer_got: "via-sendto".into(),
                other_accept: Err("EAGAIN".into()),
                other_syns: Some(0),
                ev: Evidence::default(),
            },
            unconnected: SendtoUnconnected {
                target: lo(3000),
                sendto: Err("EPIPE".into()),
                target_accept: Err("EAGAIN".into()),
                ev: Evidence::default(),
            },
        }
    }

    #[test]
    fn linux_like_observation() {
        use Verdict::{Confirmed, Refuted};
        // A simultaneous open connects two sockets without a listener: 1b is refuted.
        assert_eq!(
            verdicts(judge(&linux_like())),
            vec![Confirmed, Refuted, Confirmed, Confirmed, Confirmed]
        );
        let parts = judge(&linux_like());
        assert!(parts[1].votes() && !parts[3].votes() && !parts[4].votes());
    }

    #[test]
    fn each_rule_can_refute() {
        let mut o = linux_like();
        o.pattern.server_calls[3] = "listen=EADDRINUSE".into();
        assert_eq!(verdicts(judge(&o))[0], Verdict::Refuted);

        // The two connects fail (one RST each): no connection without a listener.
        let mut o = linux_like();
        if let Some(sim) = o.simultaneous.as_mut() {
            sim.a_connect = Err("ECONNREFUSED".into());
        }
        assert_eq!(verdicts(judge(&o))[1], Verdict::Confirmed);

        let mut o = linux_like();
        o.no_listener.connect_to_bound_not_listening = Ok(());
        assert_eq!(verdicts(judge(&o))[4], Verdict::Refuted);

        // The address is honoured: the other listener gets the connection.
        let mut o = linux_like();
        o.connected.other_accept = Ok(());
        o.connected.peer_got.clear();
        assert_eq!(verdicts(judge(&o))[2], Verdict::Refuted);
        // sendto refused on a connected socket (EISCONN, as some systems do).
        let mut o = linux_like();
        o.connected.sendto = Err("EISCONN".into());
        assert_eq!(verdicts(judge(&o))[2], Verdict::Refuted);

        // sendto on an unconnected socket connects (TCP Fast Open style) and delivers.
        let mut o = linux_like();
        o.unconnected.sendto = Ok(PAYLOAD.len());
        o.unconnected.target_accept = Ok(());
        assert_eq!(verdicts(judge(&o))[3], Verdict::Refuted);
    }
}
