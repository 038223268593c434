//! `bench server`: admits clients through a bounded handshake, then runs each admitted
//! client's test on its own threads, up to `max_tests` at once.
//!
//! Admission (the answer to iperf3's ESNET-SECADV-2023-0002, idle connections locking the
//! server out): a connection takes a test slot only after it sent a complete Start that
//! authenticates (HMAC of a fresh nonce, when a token is set) and fits the server's limits.
//! Until then it sits in a pending pool that one thread serves with poll(2): no thread and
//! at most [`HANDSHAKE_MAX_BODY`] bytes per pending peer, one deadline for the whole
//! handshake (not per read, so one byte a second does not keep a connection), at most
//! `max_pending` connections and `max_pending_per_source` per source address. When the pool
//! or a source's share is full, the *oldest* pending connection is closed to make room: a
//! real client, which completes its handshake in one round trip, always gets in, however many
//! silent or slow connections are held. A closed control connection frees what it holds at
//! once, in every phase.
//!
//! Limits (duration, rate, size, streams, interval) are checked on the Start message, before
//! any data socket exists, and no UDP datagram leaves toward an address that has not proved
//! it is the client's (see [`Probe`]).

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::kind;
use super::protocol::{
    self, Dir, FrameError, HANDSHAKE_MAX_BODY, Message, PROBE_LEN, Probe, TestParams, Transport,
};
use super::session::{self, Job};
use super::wire::{HEADER_LEN, Repr};
use super::{BenchError, data_socket, sender::MAX_UDP_PAYLOAD};
use crate::sock::Sock;

/// Server configuration.
#[derive(Debug, Clone)]
pub struct ServerCfg {
    /// Control address to listen on.
    pub bind: SocketAddr,
    /// Tests run at once; more get "busy, retry".
    pub max_tests: usize,
    /// Shared token; when set, clients must prove they know it.
    pub token: Option<String>,
    /// Longest test accepted.
    pub max_duration: Duration,
    /// Highest per-stream rate accepted in bits/s (0 = no limit).
    pub max_rate_bps: u64,
    /// How long an admitted client may stay silent while its test is set up, and how soon a
    /// peer that stopped answering mid-test is given up (TCP keepalive + TCP_USER_TIMEOUT).
    pub idle_timeout: Duration,
    /// The whole handshake, from accept to a complete Start (and, for tests where the server
    /// sends UDP, from Accepted to the client's return-address probes).
    pub handshake_timeout: Duration,
    /// Connections held in the handshake at once; beyond, the oldest is closed.
    pub max_pending: usize,
    /// Connections held in the handshake from one source address; beyond, that source's
    /// oldest is closed.
    pub max_pending_per_source: usize,
    /// CPUs to pin worker threads to, round-robin.
    pub cpus: Vec<usize>,
}

impl Default for ServerCfg {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([0, 0, 0, 0], 5301)),
            max_tests: 4,
            token: None,
            max_duration: Duration::from_secs(60),
            max_rate_bps: 0,
            idle_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(2),
            max_pending: 4096,
            max_pending_per_source: 1024,
            cpus: Vec::new(),
        }
    }
}

/// A log line callback (the library never prints).
pub type Log = Arc<dyn Fn(&str) + Send + Sync>;

/// A listening bench server.
pub struct Server {
    listener: TcpListener,
    cfg: Arc<ServerCfg>,
    active: Arc<AtomicUsize>,
    next_id: AtomicU64,
}

/// Frees a test slot when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (getrlimit(2)/setrlimit(2)):
/// a server holding `max_pending` handshakes plus its tests' sockets needs more than the
/// usual 1024. Returns the soft limit now in force.
pub fn raise_fd_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

impl Server {
    /// bind(2) + listen(2) on the control address (backlog 4096, capped by
    /// net.core.somaxconn), after raising the open-file limit ([`raise_fd_limit`]; a limit
    /// that cannot be raised is not an error: the pool then evicts sooner).
    pub fn bind(cfg: ServerCfg) -> io::Result<Self> {
        let _ = raise_fd_limit();
        let s = socket2::Socket::new(
            socket2::Domain::for_address(cfg.bind),
            socket2::Type::STREAM,
            None,
        )?;
        s.set_reuse_address(true)?;
        s.bind(&cfg.bind.into())?;
        s.listen(4096)?;
        Ok(Self {
            listener: s.into(),
            cfg: Arc::new(cfg),
            active: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `max_clients` clients were answered (their test admitted, or refused with
    /// a reason; None: forever), then waits for the admitted tests to end. Connections that
    /// close, time out or are evicted during the handshake are not counted.
    pub fn serve(&self, max_clients: Option<u64>, log: Log) -> io::Result<()> {
        self.listener.set_nonblocking(true)?;
        let mut pool = Pool::new(self.cfg.max_pending, self.cfg.max_pending_per_source);
        let mut tests: Vec<std::thread::JoinHandle<()>> = Vec::new();
        let mut answered = 0u64;
        let mut quiet = Tally::default();
        // After EMFILE with nothing to evict, the listener is left alone this long.
        let mut accept_paused_until: Option<Instant> = None;
        while max_clients.is_none_or(|m| answered < m) {
            let now = Instant::now();
            quiet.timed_out += pool.expire(now);
            quiet.flush(now, &log);
            let paused = accept_paused_until.is_some_and(|t| now < t);
            let (keys, ready, listener_ready) = {
                let mut fds = Vec::with_capacity(pool.len() + 1);
                if !paused {
                    fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
                }
                let keys: Vec<u64> = pool.conns.keys().copied().collect();
                fds.extend(
                    pool.conns
                        .values()
                        .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLIN)),
                );
                let mut wake = pool.next_deadline();
                if paused {
                    wake = wake.min(accept_paused_until).or(accept_paused_until);
                }
                let timeout = wake.map_or(PollTimeout::NONE, |t| {
                    let ms = t.saturating_duration_since(now).as_millis() + 1;
                    PollTimeout::try_from(ms.min(60_000) as u32).unwrap_or(PollTimeout::MAX)
                });
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                let hit = |p: &PollFd<'_>| p.revents().is_none_or(|r| !r.is_empty());
                let (listener_ready, conns) = if paused {
                    (false, &fds[..])
                } else {
                    (hit(&fds[0]), &fds[1..])
                };
                let ready: Vec<bool> = conns.iter().map(hit).collect();
                (keys, ready, listener_ready)
            };
            for (key, _) in keys.iter().zip(ready).filter(|(_, r)| *r) {
                let Some(conn) = pool.conns.get_mut(key) else {
                    continue;
                };
                match conn.read_step() {
                    Progress::More => {}
                    Progress::Closed => {
                        pool.remove(*key);
                        quiet.closed += 1;
                    }
                    Progress::Frame(frame) => {
                        let Some(conn) = pool.remove(*key) else {
                            continue;
                        };
                        answered += 1;
                        if let Some(h) = self.decide(conn, frame, &log) {
                            tests.retain(|h| !h.is_finished());
                            tests.push(h);
                        }
                    }
                }
            }
            if listener_ready {
                accept_paused_until = None;
                match self.accept_burst(&mut pool, &mut quiet) {
                    Ok(()) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        // Out of descriptors: free one by closing the oldest handshake, or,
                        // with none held, stop accepting for a moment.
                        match pool.conns.keys().next().copied() {
                            Some(oldest) => {
                                pool.remove(oldest);
                                quiet.evicted += 1;
                            }
                            None => {
                                accept_paused_until = Some(now + Duration::from_millis(100));
                            }
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        quiet.flush(Instant::now() + Duration::from_secs(3600), &log);
        drop(pool);
        for h in tests {
            let _ = h.join();
        }
        Ok(())
    }

    /// Accepts what the backlog holds (at most 256 at a time, so pending peers are served
    /// too), greets each with Hello and puts it in the pool.
    fn accept_burst(&self, pool: &mut Pool, quiet: &mut Tally) -> io::Result<()> {
        for _ in 0..256 {
            let (stream, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ECONNABORTED | libc::EPROTO | libc::EPERM)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            let nonce = protocol::nonce()?;
            let hello = Message::Hello {
                server_version: env!("CARGO_PKG_VERSION").into(),
                nonce: nonce.clone(),
                auth_required: self.cfg.token.is_some(),
                max_duration_ms: self.cfg.max_duration.as_millis() as u64,
                max_rate_bps: self.cfg.max_rate_bps,
            };
            if stream.set_nonblocking(true).is_err()
                || stream.set_nodelay(true).is_err()
                || !send_now(&stream, &hello)
            {
                quiet.closed += 1;
                continue;
            }
            quiet.evicted += pool.insert(Pending {
                stream,
                peer,
                nonce,
                deadline: Instant::now() + self.cfg.handshake_timeout,
                buf: Vec::new(),
            });
        }
        Ok(())
    }

    /// A complete first frame arrived: admit the test (a thread runs it) or refuse it.
    fn decide(
        &self,
        conn: Pending,
        frame: Result<Message, FrameError>,
        log: &Log,
    ) -> Option<std::thread::JoinHandle<()>> {
        let peer = conn.peer;
        let busy = || {
            (
                format!(
                    "server busy: {} tests running, retry later",
                    self.cfg.max_tests
                ),
                true,
            )
        };
        let verdict = match frame {
            Ok(request @ Message::RunTest { .. }) => {
                super::mesh::agent::check(request, &self.cfg, &conn.nonce).and_then(|req| {
                    self.try_slot()
                        .map(|slot| (slot, Admitted::Mesh(req)))
                        .ok_or_else(busy)
                })
            }
            Ok(Message::Start { auth, params }) => {
                let authed = match &self.cfg.token {
                    Some(token) => auth.is_some_and(|t| protocol::auth_ok(token, &conn.nonce, &t)),
                    None => true,
                };
                if !authed {
                    Err((
                        "authentication failed: wrong or missing token".into(),
                        false,
                    ))
                } else if let Err(why) = validate(&params, &self.cfg) {
                    Err((why, false))
                } else {
                    match self.try_slot() {
                        Some(slot) => Ok((slot, Admitted::Test(params))),
                        None => Err(busy()),
                    }
                }
            }
            Ok(other) => Err((
                format!("expected a start message, got {}", kind_of(&other)),
                false,
            )),
            Err(e) => Err((e.to_string(), false)),
        };
        let (slot, params) = match verdict {
            Ok(v) => v,
            Err((reason, retry)) => {
                let _ = send_now(
                    &conn.stream,
                    &Message::Refused {
                        reason: reason.clone(),
                        retry,
                    },
                );
                close_gently(&conn.stream);
                log(&format!("connection from {peer}: refused: {reason}"));
                return None;
            }
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let cfg = self.cfg.clone();
        let test_log = log.clone();
        let stream = conn.stream;
        let spawned = std::thread::Builder::new()
            .name("bench-test".into())
            .spawn(move || match admitted(stream, &cfg, slot, id, &params) {
                Ok(()) => test_log(&format!("test {id} from {peer}: done")),
                Err(BenchError::Frame(e)) => {
                    test_log(&format!(
                        "test {id} from {peer}: {}",
                        e.in_words("the client")
                    ));
                }
                Err(e) => test_log(&format!("test {id} from {peer}: {e}")),
            });
        match spawned {
            Ok(h) => Some(h),
            Err(e) => {
                log(&format!(
                    "test {id} from {peer}: cannot start a thread: {e}"
                ));
                None
            }
        }
    }

    fn try_slot(&self) -> Option<Slot> {
        let max = self.cfg.max_tests;
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(self.active.clone()))
    }
}

/// Connections closed during the handshake without an answer, logged at most once a second
/// as one line (a flood must not become a flood of log lines).
#[derive(Default)]
struct Tally {
    timed_out: u64,
    evicted: u64,
    closed: u64,
    last: Option<Instant>,
}

impl Tally {
    fn flush(&mut self, now: Instant, log: &Log) {
        if self.timed_out + self.evicted + self.closed == 0
            || self.last.is_some_and(|t| now < t + Duration::from_secs(1))
        {
            return;
        }
        log(&format!(
            "handshakes dropped: {} timed out, {} evicted (pending pool full), {} closed by the peer",
            self.timed_out, self.evicted, self.closed
        ));
        *self = Self {
            last: Some(now),
            ..Self::default()
        };
    }
}

/// One connection in the handshake: greeted, its Start not complete yet.
struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    nonce: String,
    deadline: Instant,
    /// The frame so far: never more than its header plus [`HANDSHAKE_MAX_BODY`].
    buf: Vec<u8>,
}

enum Progress {
    More,
    Closed,
    Frame(Result<Message, FrameError>),
}

impl Pending {
    /// Reads what is there without blocking, never past the end of the first frame.
    fn read_step(&mut self) -> Progress {
        let mut chunk = [0u8; 2048];
        loop {
            let need = if self.buf.len() < protocol::HEADER_LEN {
                protocol::HEADER_LEN - self.buf.len()
            } else {
                match protocol::parse_header_within(&self.buf, HANDSHAKE_MAX_BODY) {
                    Ok(body) => protocol::HEADER_LEN + body - self.buf.len(),
                    Err(e) => return Progress::Frame(Err(e)),
                }
            };
            if need == 0 {
                return Progress::Frame(protocol::decode(&self.buf));
            }
            let want = need.min(chunk.len());
            match (&self.stream).read(&mut chunk[..want]) {
                Ok(0) => return Progress::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Progress::More,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Progress::Closed,
            }
        }
    }
}

/// The pending pool, oldest first (keys are accept order; every entry has the same handshake
/// timeout, so the oldest also has the nearest deadline).
struct Pool {
    conns: BTreeMap<u64, Pending>,
    per_source: HashMap<IpAddr, usize>,
    next: u64,
    max: usize,
    max_per_source: usize,
}

impl Pool {
    fn new(max: usize, max_per_source: usize) -> Self {
        Self {
            conns: BTreeMap::new(),
            per_source: HashMap::new(),
            next: 0,
            max: max.max(1),
            max_per_source: max_per_source.max(1),
        }
    }

    fn len(&self) -> usize {
        self.conns.len()
    }

    /// Adds `p`, first closing the oldest connection of its source if that source is at its
    /// limit, then the oldest of all if the pool is full. Returns how many were closed.
    fn insert(&mut self, p: Pending) -> u64 {
        let ip = p.peer.ip().to_canonical();
        let mut evicted = 0;
        if self.per_source.get(&ip).copied().unwrap_or(0) >= self.max_per_source {
            let oldest = self
                .conns
                .iter()
                .find(|(_, c)| c.peer.ip().to_canonical() == ip)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.remove(k);
                evicted += 1;
            }
        }
        if self.conns.len() >= self.max {
            if let Some(k) = self.conns.keys().next().copied() {
                self.remove(k);
                evicted += 1;
            }
        }
        *self.per_source.entry(ip).or_insert(0) += 1;
        self.conns.insert(self.next, p);
        self.next += 1;
        evicted
    }

    fn remove(&mut self, key: u64) -> Option<Pending> {
        let p = self.conns.remove(&key)?;
        let ip = p.peer.ip().to_canonical();
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
        Some(p)
    }

    /// Closes every connection whose handshake deadline passed; returns how many.
    fn expire(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some((&k, c)) = self.conns.iter().next() {
            if c.deadline > now {
                break;
            }
            self.remove(k);
            n += 1;
        }
        n
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.conns.values().next().map(|c| c.deadline)
    }
}

/// Writes one small frame on a nonblocking socket in one go; false if it did not all fit
/// (a fresh connection's send buffer always holds a Hello or a Refused).
fn send_now(stream: &TcpStream, msg: &Message) -> bool {
    let Ok(bytes) = protocol::encode(msg) else {
        return false;
    };
    matches!((&*stream).write(&bytes), Ok(n) if n == bytes.len())
}

/// A message's type as the protocol names it, for a refusal reason.
fn kind_of(m: &Message) -> &'static str {
    match m {
        Message::Hello { .. } => "hello",
        Message::Start { .. } => "start",
        Message::Accepted { .. } => "accepted",
        Message::Refused { .. } => "refused",
        Message::Go => "go",
        Message::Interval { .. } => "interval",
        Message::SenderDone { .. } => "sender_done",
        Message::Results { .. } => "results",
        Message::Error { .. } => "error",
        Message::RunTest { .. } => "run_test",
        Message::RunTestReply { .. } => "run_test_reply",
    }
}

pub(super) fn refuse(conn: &mut TcpStream, reason: String, retry: bool) -> BenchError {
    let _ = protocol::write_message(
        conn,
        &Message::Refused {
            reason: reason.clone(),
            retry,
        },
    );
    close_gently(conn);
    BenchError::Refused { reason, retry }
}

/// Ends our side after a refusal: shutdown(2) SHUT_WR (a FIN after the Refused), then
/// discards what the peer already sent (up to 64 KiB, without waiting), so that the close
/// does not turn into a reset that could destroy the Refused before the peer reads it
/// (tcp(7): closing with unread data sends RST).
fn close_gently(stream: &TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_nonblocking(true);
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match (&*stream).read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
}

/// Checks a client's test against the server's limits, before any data socket is opened.
pub(super) fn validate(p: &TestParams, cfg: &ServerCfg) -> Result<(), String> {
    if p.duration_ms == 0 || p.duration_ms > cfg.max_duration.as_millis() as u64 {
        return Err(format!(
            "duration {} ms outside 1..={} ms",
            p.duration_ms,
            cfg.max_duration.as_millis()
        ));
    }
    if cfg.max_rate_bps > 0 && (p.rate_bps == 0 || p.rate_bps > cfg.max_rate_bps) {
        return Err(format!(
            "rate must be set and at most {} bit/s on this server",
            cfg.max_rate_bps
        ));
    }
    let max_size = match p.transport {
        Transport::Udp => MAX_UDP_PAYLOAD,
        Transport::Tcp => 16 << 20,
    };
    if p.size == 0 || p.size > max_size {
        return Err(format!("size {} outside 1..={max_size} bytes", p.size));
    }
    if p.transport == Transport::Udp && p.size < HEADER_LEN {
        return Err(format!(
            "UDP size must be at least {HEADER_LEN} bytes (the header)"
        ));
    }
    if p.parallel == 0 || p.parallel > 64 {
        return Err(format!("parallel {} outside 1..=64", p.parallel));
    }
    if p.dirs.is_empty() || p.dirs.len() > 2 || (p.dirs.len() == 2 && p.dirs[0] == p.dirs[1]) {
        return Err("directions must be up, down or both".into());
    }
    if p.interval_ms != 0 && (p.interval_ms < 10 || p.interval_ms > p.duration_ms) {
        return Err("interval must be at least 10 ms and at most the duration".into());
    }
    for (what, asked) in [("rcvbuf", p.rcvbuf), ("sndbuf", p.sndbuf)] {
        if asked.is_some_and(|n| n == 0 || n > 1 << 30) {
            return Err(format!("{what} outside 1..=1 GiB"));
        }
    }
    Ok(())
}

/// Whether the server sends UDP on this stream (so its return address must be proved first):
/// what the test's kind says ([`kind::Kind::server_sends`]: the Down streams, and every
/// stream whose requests it answers).
fn server_sends_udp(p: &TestParams, dir: Dir) -> bool {
    p.transport == Transport::Udp && kind::of(p.kind).server_sends(dir)
}

/// An admitted test: data sockets, Accepted, data connections or UDP address proofs, Go, the
/// data phase, Results. `slot` is held until the data phase is over and freed before the
/// Results go out, so a client that starts its next test as soon as it has them (the tests
/// of one `bench client` run, one after the other) never finds its own last test running.
fn run_test(
    mut conn: TcpStream,
    cfg: &ServerCfg,
    slot: Slot,
    id: u64,
    params: &TestParams,
) -> Result<(), BenchError> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(cfg.idle_timeout))?;
    conn.set_write_timeout(Some(cfg.idle_timeout))?;
    session::watch_peer(&conn, cfg.idle_timeout)?;
    let streams = kind::streams(params);
    let local_ip = conn.local_addr()?.ip();
    let peer_ip = conn.peer_addr()?.ip();
    let jobs = match params.transport {
        Transport::Tcp => {
            let l = data_socket(SocketAddr::new(local_ip, 0), params, Some(peer_ip))?;
            l.bind(SocketAddr::new(local_ip, 0))?;
            l.listen(128)?;
            protocol::write_message(
                &mut conn,
                &Message::Accepted {
                    test_id: id,
                    tcp_port: l.local_addr().map(|a| a.port()),
                    udp_ports: Vec::new(),
                    down_udp_ports: Vec::new(),
                    cookie: None,
                },
            )?;
            accept_streams(&l, &conn, params, &streams, cfg.idle_timeout)?
        }
        Transport::Udp => {
            let cookie = protocol::cookie()?;
            let mut socks = Vec::new();
            let (mut up_ports, mut down_ports) = (Vec::new(), Vec::new());
            for &(stream, dir) in &streams {
                let s = data_socket(SocketAddr::new(local_ip, 0), params, Some(peer_ip))?;
                s.bind(SocketAddr::new(local_ip, 0))?;
                let port = s.local_addr().map_or(0, |a| a.port());
                match dir {
                    Dir::Up => up_ports.push(port),
                    Dir::Down => down_ports.push(port),
                }
                socks.push((stream, dir, s));
            }
            let check = streams.iter().any(|&(_, d)| server_sends_udp(params, d));
            protocol::write_message(
                &mut conn,
                &Message::Accepted {
                    test_id: id,
                    tcp_port: None,
                    udp_ports: up_ports,
                    down_udp_ports: down_ports,
                    cookie: check.then(|| protocol::hex(&cookie)),
                },
            )?;
            if check {
                let proof = prove_return_addresses(
                    &conn,
                    params,
                    &socks,
                    cookie,
                    peer_ip,
                    cfg.handshake_timeout,
                )?;
                if let Err(why) = proof {
                    return Err(refuse(&mut conn, why, false));
                }
            }
            socks
                .into_iter()
                .map(|(stream, dir, s)| (stream, kind::job(params, dir, false, s)))
                .collect()
        }
    };
    match protocol::read_message(&mut conn) {
        Ok(Message::Go) => {}
        Ok(other) => {
            return Err(BenchError::Protocol(format!(
                "expected go, got {}",
                kind_of(&other)
            )));
        }
        Err(e) => return Err(BenchError::Control(e.in_words("the client"))),
    }
    session::drain_probes(&jobs);
    let loops = kind::of(params.kind);
    let pair = loops.pairs_threads(params.transport) && super::on_this_host(peer_ip);
    let placement = session::Placement::new(&cfg.cpus, pair, id);
    let result = session::run(
        &conn,
        params,
        loops,
        jobs,
        false,
        &placement,
        &mut |_, _| {},
    );
    let out = match result {
        Ok(o) => o,
        Err(e) => {
            let _ = protocol::write_message(
                &mut conn,
                &Message::Error {
                    message: e.to_string(),
                },
            );
            session::close(&conn);
            return Err(e.into());
        }
    };
    drop(slot);
    protocol::write_message(&mut conn, &Message::Results { report: out.mine })?;
    // Wait (bounded) for the client to close, reading what it still sends (its SenderDone
    // may come after our Results): closing with unread data would send a reset, which can
    // destroy the Results in the client's receive queue before it reads them (tcp(7)).
    let until = Instant::now() + Duration::from_secs(2);
    let mut sink = [0u8; 4096];
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let _ = conn.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match conn.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    session::close(&conn);
    Ok(())
}

/// Waits until every stream the server sends UDP on has received a [`Probe`] with the
/// test's cookie from the client's address, then connects that socket to the probe's source
/// (so data, and echoes, go there and nowhere else) and acknowledges with a datagram of the
/// probe's size. Probes from another IP than the control connection's, or with a wrong
/// cookie or stream, are ignored and never answered. Ok(Err(reason)) refuses the test.
fn prove_return_addresses(
    conn: &TcpStream,
    params: &TestParams,
    socks: &[(u16, Dir, Sock)],
    cookie: [u8; 16],
    peer_ip: IpAddr,
    timeout: Duration,
) -> Result<Result<(), String>, BenchError> {
    let deadline = Instant::now() + timeout;
    let checked: Vec<&(u16, Dir, Sock)> = socks
        .iter()
        .filter(|(_, d, _)| server_sends_udp(params, *d))
        .collect();
    let mut proved = vec![false; checked.len()];
    let mut buf = [0u8; PROBE_LEN + 1];
    while proved.iter().any(|p| !p) {
        let fds: Vec<BorrowedFd<'_>> = checked.iter().map(|(_, _, s)| s.as_fd()).collect();
        let ready = session::wait(&fds, conn, false, deadline)?;
        if ready.ctrl {
            return Err(BenchError::Control(
                "the client closed the control connection before proving its UDP address".into(),
            ));
        }
        if ready.timed_out {
            return Ok(Err(format!(
                "no UDP return-address probe from the client within {} ms (does a firewall drop UDP toward this server?)",
                timeout.as_millis()
            )));
        }
        for (i, (stream, _, s)) in checked.iter().enumerate() {
            if !ready.fds[i] || proved[i] {
                continue;
            }
            let Ok(d) = s.recv_datagram(&mut buf, libc::MSG_DONTWAIT) else {
                continue;
            };
            let Some(from) = d.from else { continue };
            let good = Probe::parse(&buf[..d.len])
                .is_some_and(|p| !p.ack && p.stream == *stream && eq_ct(&p.cookie, &cookie))
                && from.ip().to_canonical() == peer_ip.to_canonical();
            if !good {
                continue;
            }
            s.connect(from)?;
            let ack = Probe {
                ack: true,
                stream: *stream,
                cookie,
            };
            let _ = s.send(&ack.emit());
            proved[i] = true;
        }
    }
    Ok(Ok(()))
}

/// Constant-time equality of two cookies.
fn eq_ct(a: &[u8; 16], b: &[u8; 16]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Accepts one TCP connection per stream; each starts with a data header naming its stream.
/// Every wait also watches the control connection: a client that closes it during setup
/// ends the setup at once.
fn accept_streams(
    l: &Sock,
    ctrl: &TcpStream,
    p: &TestParams,
    streams: &[(u16, Dir)],
    timeout: Duration,
) -> Result<Vec<(u16, Job)>, BenchError> {
    let gone = || {
        BenchError::Control(
            "the client closed the control connection while its data connections were set up"
                .into(),
        )
    };
    let slow = |what: &str| {
        BenchError::Control(format!(
            "the client did not {what} within {} ms",
            timeout.as_millis()
        ))
    };
    let mut jobs = Vec::new();
    for _ in streams {
        let ready = session::wait(&[l.as_fd()], ctrl, false, Instant::now() + timeout)?;
        if ready.ctrl {
            return Err(gone());
        }
        if ready.timed_out {
            return Err(slow("open its data connections"));
        }
        let (s, _) = l.accept()?;
        let deadline = Instant::now() + timeout;
        let mut h = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            let ready = session::wait(&[s.as_fd()], ctrl, false, deadline)?;
            if ready.ctrl {
                return Err(gone());
            }
            if ready.timed_out {
                return Err(slow("send a data connection's header"));
            }
            match s.recv(&mut h[got..])? {
                0 => return Err(BenchError::Protocol("data connection closed early".into())),
                n => got += n,
            }
        }
        let r = Repr::parse(&h).map_err(|e| BenchError::Protocol(e.to_string()))?;
        let Some(&(id, dir)) = streams.iter().find(|(id, _)| *id == r.stream) else {
            return Err(BenchError::Protocol(format!("unknown stream {}", r.stream)));
        };
        if jobs.iter().any(|(j, _)| *j == id) {
            return Err(BenchError::Protocol(format!("stream {id} connected twice")));
        }
        // An accepted socket knows its peer (unless it was reset already: then no local rule).
        super::configure(&s, p, s.peer_addr().map(|a| a.ip()));
        jobs.push((id, kind::job(p, dir, false, s)));
    }
    Ok(jobs)
}

/// What an admitted connection asked for.
enum Admitted {
    /// A client's test (`Start`).
    Test(TestParams),
    /// A mesh coordinator's request to test toward another agent (`RunTest`).
    Mesh(super::mesh::agent::Request),
}

/// Runs an admitted connection's test with its slot held.
fn admitted(
    mut conn: TcpStream,
    cfg: &ServerCfg,
    slot: Slot,
    id: u64,
    what: &Admitted,
) -> Result<(), BenchError> {
    match what {
        Admitted::Test(params) => run_test(conn, cfg, slot, id, params),
        Admitted::Mesh(req) => {
            let _slot = slot;
            super::mesh::agent::run(&mut conn, cfg, id, req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::protocol::TestKind;

    fn pending(ip: [u8; 4], l: &TcpListener) -> (Pending, TcpStream) {
        let addr = l.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (stream, _) = l.accept().unwrap();
        let peer = SocketAddr::from((ip, client.local_addr().unwrap().port()));
        let p = Pending {
            stream,
            peer,
            nonce: String::new(),
            deadline: Instant::now() + Duration::from_secs(60),
            buf: Vec::new(),
        };
        (p, client)
    }

    /// The eviction rule that keeps a real client in: a full pool or a full source share
    /// closes the oldest connection, never the newcomer.
    #[test]
    fn pool_evicts_the_oldest_never_the_newest() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut pool = Pool::new(3, 2);
        let mut clients = Vec::new();
        let mut evicted = 0;
        for ip in [[10, 0, 0, 1], [10, 0, 0, 1], [10, 0, 0, 1]] {
            let (p, c) = pending(ip, &l);
            clients.push(c);
            evicted += pool.insert(p);
        }
        assert_eq!(
            evicted, 1,
            "the third from one source evicts that source's oldest"
        );
        assert_eq!(pool.conns.keys().copied().collect::<Vec<_>>(), [1, 2]);
        let (p, c) = pending([10, 0, 0, 2], &l);
        clients.push(c);
        assert_eq!(pool.insert(p), 0);
        let (p, c) = pending([10, 0, 0, 3], &l);
        clients.push(c);
        assert_eq!(pool.insert(p), 1, "a full pool evicts its oldest");
        assert_eq!(pool.conns.keys().copied().collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(pool.per_source.values().sum::<usize>(), 3);
        assert_eq!(pool.per_source.get(&IpAddr::from([10, 0, 0, 1])), Some(&1));
        assert_eq!(pool.expire(Instant::now() + Duration::from_secs(61)), 3);
        assert!(pool.per_source.is_empty());
    }

    #[test]
    fn limits_are_checked_on_the_start_message() {
        let cfg = ServerCfg::default();
        let ok = TestParams::example(TestKind::Stream, Transport::Udp, 1472);
        assert_eq!(validate(&ok, &cfg), Ok(()));
        let bad = [
            TestParams {
                size: 0,
                ..ok.clone()
            },
            TestParams {
                size: 10,
                ..ok.clone()
            },
            TestParams {
                duration_ms: 0,
                ..ok.clone()
            },
            TestParams {
                duration_ms: u64::MAX,
                ..ok.clone()
            },
            TestParams {
                parallel: 65,
                ..ok.clone()
            },
            TestParams {
                dirs: vec![],
                ..ok.clone()
            },
            TestParams {
                dirs: vec![Dir::Up, Dir::Up],
                ..ok.clone()
            },
            TestParams {
                interval_ms: 5,
                ..ok.clone()
            },
            TestParams {
                rcvbuf: Some(usize::MAX),
                ..ok.clone()
            },
        ];
        for p in bad {
            assert!(validate(&p, &cfg).is_err(), "{p:?}");
        }
    }
}
