//! What every experiment uses to observe: traced sockets whose receives are bounded
//! ([`Trial`], [`socket`], [`udp_bound`], [`tcp_pair`]), call results kept as facts ([`Res`],
//! [`outcome`], [`Read`]), datagrams as read ([`Got`], [`drain`]), and bounded waits on
//! readiness signals instead of sleeps ([`poll_until`], [`wait_until`], [`poll_ready`]).

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;

use super::{Evidence, Family, Host};
use crate::os::counters::Snapshot;
use crate::sock::{Datagram, Proto, Sock, Step, StepError};
use crate::trace::{Collector, Event, Recorder};

/// How long any blocking receive or wait for something that must come may take at most
/// (SO_RCVTIMEO of the lab's sockets).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait for the kernel to finish what is already under way (the last ACK of a
/// close handshake, a delayed ACK) before taking things as they are.
pub(crate) const SETTLE: Duration = Duration::from_secs(1);
/// Datagrams read from one socket at most, so every reading loop is bounded.
pub(crate) const MAX_READS: usize = 64;

/// The name of a step's errno (`EADDRINUSE`), or the error's text when it did not come from
/// the OS.
pub(crate) fn errno_name(e: &StepError) -> String {
    e.errno_name().unwrap_or_else(|| e.to_string())
}

/// What a call returned, as a fact: `{"Ok": value}` or `{"Err": "ECONNREFUSED"}` (see
/// [`errno_name`]).
pub(crate) type Res<T> = Result<T, String>;

/// Turns a step's result into a [`Res`] fact.
pub(crate) fn res<T>(r: Step<T>) -> Res<T> {
    r.map_err(|e| errno_name(&e))
}

/// The errno name of a failed result, if it failed.
pub(crate) fn errno<T>(r: &Res<T>) -> Option<&str> {
    r.as_ref().err().map(String::as_str)
}

/// The outcome of a step as a word: `ok`, or the errno name (`EADDRINUSE`).
pub(crate) fn outcome<T>(r: &Step<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => errno_name(e),
    }
}

/// An errno kept as `Option` (`None`: the call succeeded) as shown: `ok` or the name.
pub(crate) fn ok_or_errno(e: &Option<String>) -> &str {
    e.as_deref().unwrap_or("ok")
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

/// An address as shown in one-line observations (`none` when there is none).
pub(crate) fn show_addr(a: Option<SocketAddr>) -> String {
    a.map_or_else(|| "none".into(), |a| a.to_string())
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

    /// The recorder the trial's sockets report to.
    pub(crate) fn rec(&self) -> &Recorder {
        &self.rec
    }

    /// The calls recorded since the last take.
    pub(crate) fn take(&self) -> Vec<Event> {
        self.col.take()
    }

    /// Evidence holding the trace so far and `host`'s wire since it was last read.
    pub(crate) fn evidence(&self, host: &Host<'_>) -> Evidence {
        Evidence {
            trace: self.take(),
            wire: host.wire(),
            ..Evidence::default()
        }
    }

    /// [`evidence`](Self::evidence) plus the counters that moved since `before`, when `host` is
    /// a namespace of its own (the machine's counters move for everyone).
    pub(crate) fn evidence_since(
        &self,
        host: &Host<'_>,
        before: &Snapshot,
    ) -> anyhow::Result<Evidence> {
        let mut ev = self.evidence(host);
        if host.is_isolated() {
            ev.counters = before.delta(&host.counters()?);
        }
        Ok(ev)
    }

    /// A [`socket`] of the host's family made inside `host`.
    pub(crate) fn sock(&self, host: &Host<'_>, proto: Proto) -> anyhow::Result<Sock> {
        let rec = self.rec.clone();
        let family = host.family();
        Ok(host.run(move || socket(&rec, family, proto))??)
    }

    /// A UDP [`socket`] of the host's family inside `host`.
    pub(crate) fn udp(&self, host: &Host<'_>) -> anyhow::Result<Sock> {
        self.sock(host, Proto::Udp)
    }

    /// A UDP socket inside `host` (of the host's family), bound to `addr`.
    pub(crate) fn udp_bound(&self, host: &Host<'_>, addr: SocketAddr) -> anyhow::Result<Sock> {
        let s = self.udp(host)?;
        s.bind(addr)?;
        Ok(s)
    }
}

/// socket(2): a socket of `family` (AF_INET or AF_INET6) reporting to `rec`, with
/// SO_RCVTIMEO set to [`TIMEOUT`] so that no receive blocks for longer. Call inside the host
/// it belongs to.
pub(crate) fn socket(rec: &Recorder, family: Family, proto: Proto) -> Step<Sock> {
    let s = Sock::open(&family.lo(0), proto, rec)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// A UDP [`socket`] of `addr`'s family bound to `addr`.
pub(crate) fn udp_bound(rec: &Recorder, addr: SocketAddr) -> Step<Sock> {
    let s = socket(rec, Family::of(&addr), Proto::Udp)?;
    s.bind(addr)?;
    Ok(s)
}

/// A TCP connection on the loopback of `family`: (listener, client, accepted server side).
/// `prepare_listener` and `prepare_client` run before bind/connect (for options); receives
/// bounded by [`TIMEOUT`].
pub(crate) fn tcp_pair(
    rec: &Recorder,
    family: Family,
    prepare_listener: impl FnOnce(&Sock) -> Step<()>,
    prepare_client: impl FnOnce(&Sock) -> Step<()>,
) -> Step<(Sock, Sock, Sock)> {
    let lo = |port| family.lo(port);
    let listener = Sock::open(&lo(0), Proto::Tcp, rec)?;
    prepare_listener(&listener)?;
    listener.bind(lo(0))?;
    listener.listen(8)?;
    let to = listener.local_addr().unwrap_or(lo(0));
    let client = Sock::open(&to, Proto::Tcp, rec)?;
    prepare_client(&client)?;
    client.connect_timeout(to, TIMEOUT)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(TIMEOUT))?;
    }
    Ok((listener, client, server))
}

/// One datagram as read: what recvmsg(2) said and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Got {
    /// The recvmsg result (source, destination from IP_PKTINFO, lengths).
    pub(crate) datagram: Datagram,
    /// The payload.
    pub(crate) payload: Vec<u8>,
}

impl Got {
    /// The payload as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

/// Receives one datagram of up to 512 bytes with recvmsg(2) and `flags` (blocking ones are
/// bounded by the socket's SO_RCVTIMEO).
pub(crate) fn recv(s: &Sock, flags: i32) -> Res<Got> {
    let mut buf = [0u8; 512];
    let d = res(s.recv_datagram(&mut buf, flags))?;
    Ok(Got {
        payload: buf[..d.len].to_vec(),
        datagram: d,
    })
}

/// Receives one datagram and returns its payload and source.
pub(crate) fn recv_text(s: &Sock, flags: i32) -> Res<(String, Option<SocketAddr>)> {
    recv(s, flags).map(|g| (g.text(), g.datagram.from))
}

/// Every datagram queued on `s` now (MSG_DONTWAIT until it fails, at most [`MAX_READS`]), then
/// the errno that ended it (`EAGAIN` when the queue is empty).
pub(crate) fn drain(s: &Sock) -> (Vec<Got>, String) {
    let mut got = Vec::new();
    for _ in 0..MAX_READS {
        match recv(s, libc::MSG_DONTWAIT) {
            Ok(g) => got.push(g),
            Err(e) => return (got, e),
        }
    }
    (got, format!("more than {MAX_READS} datagrams"))
}

/// One recv(2) call's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Read {
    /// Bytes read.
    Data(String),
    /// recv returned 0.
    Eof,
    /// EAGAIN: nothing arrived before the timeout (the call would block).
    WouldBlock,
    /// Another error, by errno name.
    Error(String),
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Data(s) => write!(f, "\"{s}\""),
            Self::Eof => write!(f, "0"),
            Self::WouldBlock => write!(f, "EAGAIN"),
            Self::Error(e) => write!(f, "{e}"),
        }
    }
}

/// One recv(2) of at most `cap` bytes, as a [`Read`].
pub(crate) fn recv_once(s: &Sock, cap: usize) -> Read {
    let mut buf = vec![0u8; cap];
    match s.recv(&mut buf) {
        Ok(0) => Read::Eof,
        Ok(n) => Read::Data(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Read::WouldBlock,
        Err(e) => Read::Error(errno_name(&e)),
    }
}

/// poll(2) on `s` for `events` for at most `timeout`: the polled fd (its `revents`) if poll
/// reported it ready; POLLERR and POLLHUP are reported even when not asked for.
pub(crate) fn poll_ready(s: &Sock, events: PollFlags, timeout: Duration) -> Option<PollFd<'_>> {
    let mut fd = PollFd::new(s.as_fd(), events);
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    match poll(std::slice::from_mut(&mut fd), ms) {
        Ok(n) if n > 0 => Some(fd),
        _ => None,
    }
}

/// Whether a pending socket error (such as an ICMP port unreachable turned into
/// ECONNREFUSED) arrives on `s` within [`TIMEOUT`] (POLLERR). Does not consume the error.
pub(crate) fn wait_error(s: &Sock) -> bool {
    poll_ready(s, PollFlags::empty(), TIMEOUT)
        .and_then(|fd| fd.revents())
        .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// Reads with `read` until `done` says the value shows what was awaited or `limit` passed,
/// and returns the last value read (a bounded poll of a readiness signal: a counter, a
/// socket state).
pub(crate) fn poll_until<T, E>(
    limit: Duration,
    mut read: impl FnMut() -> Result<T, E>,
    done: impl Fn(&T) -> bool,
) -> Result<T, E> {
    let start = Instant::now();
    loop {
        let v = read()?;
        if done(&v) || start.elapsed() > limit {
            return Ok(v);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Calls `cond` until it is true or [`TIMEOUT`] passes. Returns whether it became true.
pub(crate) fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    poll_until(TIMEOUT, || Ok::<_, ()>(cond()), |&held| held).unwrap_or(false)
}
