//! Small tools the experiments share to observe: a per-part trace ([`Trial`]), call results as
//! facts ([`res`]), sockets made inside a host ([`Trial::sock`]), bounded waits on readiness
//! signals instead of sleeps ([`wait_error`], [`wait_until`]), and the "send to a closed UDP
//! port" probe of claims 4 and 5 ([`closed_port_sends`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Evidence, Host};
use crate::sock::{Proto, Sock, Step};
use crate::trace::{Collector, Recorder};

/// How long any blocking receive or wait in an experiment may take at most.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// 127.0.0.1, the loopback address every loopback part uses.
pub(crate) const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `127.0.0.1:port` (0 lets the kernel choose).
pub(crate) fn lo(port: u16) -> SocketAddr {
    SocketAddr::new(LOCALHOST, port)
}

/// What a call returned, as a fact: `{"Ok": value}` or `{"Err": "ECONNREFUSED"}` (the errno's
/// name, or the error's text when it did not come from the OS).
pub(crate) type Res<T> = Result<T, String>;

/// Turns a step's result into a [`Res`] fact.
pub(crate) fn res<T>(r: Step<T>) -> Res<T> {
    r.map_err(|e| e.errno_name().unwrap_or_else(|| e.to_string()))
}

/// The errno name of a failed result, if it failed.
pub(crate) fn errno<T>(r: &Res<T>) -> Option<&str> {
    r.as_ref().err().map(String::as_str)
}

/// One part's observation in progress: the sockets it makes report to one trace.
pub(crate) struct Trial {
    col: Arc<Collector>,
    rec: Recorder,
}

impl Trial {
    /// A trial with an empty trace.
    pub(crate) fn new() -> Self {
        let col = Collector::new();
        let rec = Recorder::new(col.clone());
        Self { col, rec }
    }

    /// socket(2) inside `host`, traced, with SO_RCVTIMEO set to [`TIMEOUT`] so that no
    /// receive blocks for longer.
    pub(crate) fn sock(
        &self,
        host: &Host<'_>,
        like: SocketAddr,
        proto: Proto,
    ) -> anyhow::Result<Sock> {
        let rec = self.rec.clone();
        let s = host.run(move || Sock::open(&like, proto, &rec))??;
        s.set_read_timeout(Some(TIMEOUT))?;
        Ok(s)
    }

    /// An IPv4 UDP socket inside `host`.
    pub(crate) fn udp(&self, host: &Host<'_>) -> anyhow::Result<Sock> {
        self.sock(host, lo(0), Proto::Udp)
    }

    /// An IPv4 UDP socket inside `host`, bound to `addr`.
    pub(crate) fn udp_bound(&self, host: &Host<'_>, addr: SocketAddr) -> anyhow::Result<Sock> {
        let s = self.udp(host)?;
        s.bind(addr)?;
        Ok(s)
    }

    /// Evidence holding the trace so far and `host`'s wire since it was last read.
    pub(crate) fn evidence(&self, host: &Host<'_>) -> Evidence {
        Evidence {
            trace: self.col.take(),
            wire: host.wire(),
            ..Evidence::default()
        }
    }
}

/// Receives one datagram (bounded by SO_RCVTIMEO) and returns its payload and source.
pub(crate) fn recv_text(s: &Sock, flags: i32) -> Res<(String, Option<SocketAddr>)> {
    let mut buf = [0u8; 512];
    let d = res(s.recv_datagram(&mut buf, flags))?;
    Ok((String::from_utf8_lossy(&buf[..d.len]).into_owned(), d.from))
}

/// Every datagram queued on `s` now (MSG_DONTWAIT until it fails), then the errno that ended it
/// (`EAGAIN` when the queue is empty).
pub(crate) fn drain(s: &Sock) -> (Vec<String>, String) {
    let mut got = Vec::new();
    for _ in 0..64 {
        match recv_text(s, libc::MSG_DONTWAIT) {
            Ok((text, _)) => got.push(text),
            Err(e) => return (got, e),
        }
    }
    (got, "more than 64 datagrams".into())
}

/// poll(2) for POLLERR on `s` for at most [`TIMEOUT`]: whether a pending socket error (such as
/// an ICMP port unreachable turned into ECONNREFUSED) arrived. Does not consume the error.
pub(crate) fn wait_error(s: &Sock) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::empty())];
    let ms = PollTimeout::try_from(TIMEOUT).unwrap_or(PollTimeout::MAX);
    poll(&mut fds, ms).is_ok_and(|n| n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// Calls `cond` until it is true or [`TIMEOUT`] passes (a bounded poll of a readiness signal,
/// such as a counter that moves when an ICMP message arrived). Returns whether it became true.
pub(crate) fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > TIMEOUT {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A UDP port on 127.0.0.1 that nobody has open now: bind :0, note the port the kernel chose,
/// close the socket.
pub(crate) fn closed_port(host: &Host<'_>) -> anyhow::Result<u16> {
    let s = Trial::new().udp(host)?;
    s.bind(lo(0))?;
    let port = s.local_addr().map_or(0, |a| a.port());
    anyhow::ensure!(port != 0, "the kernel chose no port");
    Ok(port)
}

/// How a sender to a closed UDP port is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sender {
    /// Not connected: sendto(2) with the address each time.
    Unconnected,
    /// connect(2)ed to the closed port, then send(2).
    Connected,
    /// Not connected, but with IP_RECVERR set (ip(7)): ICMP errors are queued on the socket.
    UnconnectedRecvErr,
}

/// What a sender to a closed UDP port saw (claims 4 and 5).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct ClosedPortSends {
    /// How the sender was set up.
    pub(crate) sender: Sender,
    /// connect(2)'s result, for a connected sender.
    pub(crate) connect: Option<Res<()>>,
    /// The results of three sends, in order; the 2nd and 3rd come after the ICMP came back.
    pub(crate) sends: Vec<Res<usize>>,
    /// Whether an ICMP destination unreachable was counted (Icmp.InDestUnreachs moved) before
    /// the 2nd send.
    pub(crate) icmp_back: bool,
    /// Whether poll(2) then reported POLLERR (a pending socket error).
    pub(crate) pollerr: bool,
    /// A final recv with MSG_DONTWAIT: `EAGAIN` if nothing is pending.
    pub(crate) recv_after: Res<usize>,
    /// The evidence (trace, counters and wire when isolated).
    #[serde(skip)]
    pub(crate) ev: Evidence,
}

/// setsockopt(IP_RECVERR, 1), traced (ip(7)): extended errors, ICMP ones included, are queued
/// on the socket (read with MSG_ERRQUEUE) and reported by the next call even when unconnected.
fn set_recv_err(s: &Sock) -> crate::sock::Step<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    s.step(
        "setsockopt",
        || "IPPROTO_IP, IP_RECVERR, 1".into(),
        |_| 0,
        |sock| Ok(setsockopt(sock, sockopt::Ipv4RecvErr, &true)?),
    )
}

impl ClosedPortSends {
    /// One line: `sends returned 4, ECONNREFUSED, 4; then recv(MSG_DONTWAIT): EAGAIN; Udp.NoPorts +2`.
    pub(crate) fn line(&self) -> String {
        let sends: Vec<String> = self.sends.iter().map(show_res).collect();
        let mut line = format!(
            "sends returned {}; then recv(MSG_DONTWAIT): {}",
            sends.join(", "),
            show_res(&self.recv_after)
        );
        for key in ["Udp.OutDatagrams", "Udp.NoPorts", "Icmp.OutDestUnreachs"] {
            if let Some(n) = self.ev.counters.get(key) {
                line.push_str(&format!("; {key} +{n}"));
            }
        }
        line
    }
}

/// Sends three datagrams to a UDP port nobody has open on `host`'s 127.0.0.1, set up as
/// `sender` says, waiting after the first for the ICMP port unreachable (RFC 1122 §3.2.2.1) to
/// come back, and records what each call returned.
pub(crate) fn closed_port_sends(
    host: &Host<'_>,
    sender: Sender,
) -> anyhow::Result<ClosedPortSends> {
    let to = lo(closed_port(host)?);
    let t = Trial::new();
    let _ = host.wire();
    let before = host.counters()?;
    let s = t.udp(host)?;
    if sender == Sender::UnconnectedRecvErr {
        set_recv_err(&s)?;
    }
    let connected = sender == Sender::Connected;
    let connect = connected.then(|| res(s.connect(to)));
    let send = || {
        res(if connected {
            s.send(b"ping")
        } else {
            s.send_to(b"ping", to)
        })
    };
    let mut sends = vec![send()];
    let icmp_back = wait_until(|| {
        host.counters()
            .is_ok_and(|now| now.get("Icmp.InDestUnreachs") > before.get("Icmp.InDestUnreachs"))
    });
    let pollerr = sender != Sender::Unconnected && wait_error(&s);
    sends.push(send());
    sends.push(send());
    let mut buf = [0u8; 16];
    let recv_after = res(s.recv_datagram(&mut buf, libc::MSG_DONTWAIT)).map(|d| d.real_len);
    let mut ev = t.evidence(host);
    if host.is_isolated() {
        ev.counters = before.delta(&host.counters()?);
    }
    Ok(ClosedPortSends {
        sender,
        connect,
        sends,
        icmp_back,
        pollerr,
        recv_after,
        ev,
    })
}

/// Evidence `base` plus every field of `facts` (a struct serialising to an object) as a fact.
pub(crate) fn with_facts(base: &Evidence, facts: &impl Serialize) -> Evidence {
    with_facts_if(base, facts, |_| true)
}

/// Evidence `base` plus the fields of `facts` named in `keys`, for a part that rests on a few
/// of an observation's facts.
pub(crate) fn with_facts_only(base: &Evidence, facts: &impl Serialize, keys: &[&str]) -> Evidence {
    with_facts_if(base, facts, |k| keys.contains(&k))
}

fn with_facts_if(base: &Evidence, facts: &impl Serialize, keep: impl Fn(&str) -> bool) -> Evidence {
    let mut ev = base.clone();
    if let Ok(serde_json::Value::Object(map)) = serde_json::to_value(facts) {
        for (k, v) in map {
            if keep(&k) {
                ev.facts.insert(k, v);
            }
        }
    }
    ev
}

/// An address as shown in one-line observations (`-` when there is none).
pub(crate) fn show(a: &Option<SocketAddr>) -> String {
    a.map_or("-".into(), |a| a.to_string())
}

/// A call's result as shown in one-line observations: `4` or `ECONNREFUSED`.
pub(crate) fn show_res<T: std::fmt::Display>(r: &Res<T>) -> String {
    match r {
        Ok(v) => v.to_string(),
        Err(e) => e.clone(),
    }
}

/// A result without a value as shown in one-line observations: `0` or `ECONNREFUSED`.
pub(crate) fn show_unit(r: &Res<()>) -> String {
    show_res(&r.as_ref().map(|()| 0).map_err(Clone::clone))
}
