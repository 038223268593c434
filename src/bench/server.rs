//! `bench server`: accepts control connections and runs each client's test on its own threads,
//! up to `max_tests` at once; beyond that a client is told "busy, retry". Every read on the
//! control connection has a timeout (idle or slow peers are dropped), tests are limited in
//! duration and rate, a token (if set) is checked as an HMAC over a fresh nonce, and a client
//! that vanishes mid-test stops its test and frees its slot at once.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::protocol::{self, Dir, Message, TestParams, Transport};
use super::session::{self, Job};
use super::wire::{HEADER_LEN, Repr};
use super::{BenchError, data_socket, sender::MAX_UDP_PAYLOAD};
use crate::sock::{Proto, Sock};
use crate::trace::Recorder;

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
    /// How long a control peer may stay silent before the test phase.
    pub idle_timeout: Duration,
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

impl Server {
    /// bind(2) + listen(2) on the control address.
    pub fn bind(cfg: ServerCfg) -> io::Result<Self> {
        let listener = TcpListener::bind(cfg.bind)?;
        Ok(Self {
            listener,
            cfg: Arc::new(cfg),
            active: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
        })
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves clients, each on its own thread, until `max_clients` connections were accepted
    /// (None: forever); then waits for their tests to end.
    pub fn serve(&self, max_clients: Option<u64>, log: Log) -> io::Result<()> {
        let mut n = 0u64;
        let mut running = Vec::new();
        while max_clients.is_none_or(|m| n < m) {
            let (conn, peer) = match self.listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            n += 1;
            let slot = self.try_slot();
            let cfg = self.cfg.clone();
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let log = log.clone();
            let h = std::thread::Builder::new()
                .name("bench-test".into())
                .spawn(move || match handle(conn, &cfg, slot, id) {
                    Ok(()) => log(&format!("test {id} from {peer}: done")),
                    Err(e) => log(&format!("test {id} from {peer}: {e}")),
                })?;
            running.retain(|h: &std::thread::JoinHandle<()>| !h.is_finished());
            running.push(h);
        }
        for h in running {
            let _ = h.join();
        }
        Ok(())
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

/// Tells the peer why its request is refused and returns that as the error.
pub(super) fn refuse(conn: &mut TcpStream, reason: String, retry: bool) -> BenchError {
    let _ = protocol::write_message(
        conn,
        &Message::Refused {
            reason: reason.clone(),
            retry,
        },
    );
    BenchError::Refused { reason, retry }
}

/// Checks a client's test against the server's limits.
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
    if p.dirs.is_empty() || p.dirs.len() > 2 {
        return Err("directions must be up, down or both".into());
    }
    if p.interval_ms != 0 && p.interval_ms < 10 {
        return Err("interval must be at least 10 ms".into());
    }
    Ok(())
}

fn handle(
    mut conn: TcpStream,
    cfg: &ServerCfg,
    slot: Option<Slot>,
    id: u64,
) -> Result<(), BenchError> {
    conn.set_read_timeout(Some(cfg.idle_timeout))?;
    conn.set_write_timeout(Some(cfg.idle_timeout))?;
    conn.set_nodelay(true)?;
    let nonce = protocol::nonce()?;
    protocol::write_message(
        &mut conn,
        &Message::Hello {
            server_version: env!("CARGO_PKG_VERSION").into(),
            nonce: nonce.clone(),
            auth_required: cfg.token.is_some(),
            max_duration_ms: cfg.max_duration.as_millis() as u64,
            max_rate_bps: cfg.max_rate_bps,
        },
    )?;
    let Some(_slot) = slot else {
        return Err(refuse(
            &mut conn,
            format!("server busy: {} tests running, retry later", cfg.max_tests),
            true,
        ));
    };
    let (auth, params, client_ports) = match protocol::read_message(&mut conn)? {
        Message::Start {
            auth,
            params,
            client_udp_ports,
        } => (auth, params, client_udp_ports),
        request @ Message::RunTest { .. } => {
            return super::mesh::agent::serve(&mut conn, cfg, &nonce, id, request);
        }
        other => {
            return Err(BenchError::Protocol(format!(
                "expected start, got {other:?}"
            )));
        }
    };
    if let Some(token) = &cfg.token {
        if !auth.is_some_and(|t| protocol::auth_ok(token, &nonce, &t)) {
            return Err(refuse(
                &mut conn,
                "authentication failed: wrong or missing token".into(),
                false,
            ));
        }
    }
    if let Err(why) = validate(&params, cfg) {
        return Err(refuse(&mut conn, why, false));
    }
    let streams = session::streams(&params);
    let local_ip = conn.local_addr()?.ip();
    let peer_ip = conn.peer_addr()?.ip();
    let down = streams.iter().filter(|(_, d)| *d == Dir::Down).count();
    if params.transport == Transport::Udp && client_ports.len() != down {
        return Err(refuse(
            &mut conn,
            "client UDP ports do not match the streams".into(),
            false,
        ));
    }
    let (jobs, tcp_port, udp_ports) = match params.transport {
        Transport::Udp => udp_jobs(&params, &streams, local_ip, peer_ip, &client_ports)?,
        Transport::Tcp => {
            let l = Sock::open(&SocketAddr::new(local_ip, 0), Proto::Tcp, &Recorder::off())?;
            l.bind(SocketAddr::new(local_ip, 0))?;
            l.listen(128)?;
            let port = l.local_addr().map(|a| a.port());
            (vec![(u16::MAX, Job::Recv(l))], port, Vec::new())
        }
    };
    protocol::write_message(
        &mut conn,
        &Message::Accepted {
            test_id: id,
            tcp_port,
            udp_ports,
        },
    )?;
    let jobs = match params.transport {
        Transport::Udp => jobs,
        Transport::Tcp => {
            let Some((_, Job::Recv(l))) = jobs.into_iter().next() else {
                return Err(BenchError::Protocol("no listener".into()));
            };
            accept_streams(&l, &params, &streams, cfg.idle_timeout)?
        }
    };
    match protocol::read_message(&mut conn)? {
        Message::Go => {}
        other => return Err(BenchError::Protocol(format!("expected go, got {other:?}"))),
    }
    let result = session::run(&conn, &params, jobs, false, &cfg.cpus, &mut |_, _| {});
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
    protocol::write_message(&mut conn, &Message::Results { report: out.mine })?;
    // Wait (bounded) for the client to close, so the results are not cut by a reset.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = std::io::Read::read(&mut conn, &mut [0u8; 1]);
    session::close(&conn);
    Ok(())
}

/// Binds a receiving socket per Up stream, connects a sending socket per Down stream.
#[allow(clippy::type_complexity)]
fn udp_jobs(
    p: &TestParams,
    streams: &[(u16, Dir)],
    local_ip: IpAddr,
    peer_ip: IpAddr,
    client_ports: &[u16],
) -> Result<(Vec<(u16, Job)>, Option<u16>, Vec<u16>), BenchError> {
    let mut jobs = Vec::new();
    let mut ports = Vec::new();
    let mut down = client_ports.iter();
    for &(id, dir) in streams {
        let s = data_socket(SocketAddr::new(local_ip, 0), p)?;
        match dir {
            Dir::Up => {
                s.bind(SocketAddr::new(local_ip, 0))?;
                ports.push(s.local_addr().map_or(0, |a| a.port()));
                jobs.push((id, Job::Recv(s)));
            }
            Dir::Down => {
                let port = *down
                    .next()
                    .ok_or_else(|| BenchError::Protocol("missing port".into()))?;
                s.connect(SocketAddr::new(peer_ip, port))?;
                jobs.push((id, Job::Send(s)));
            }
        }
    }
    Ok((jobs, None, ports))
}

/// Accepts one TCP connection per stream; each starts with a data header naming its stream.
fn accept_streams(
    l: &Sock,
    p: &TestParams,
    streams: &[(u16, Dir)],
    timeout: Duration,
) -> Result<Vec<(u16, Job)>, BenchError> {
    l.set_read_timeout(Some(timeout))?;
    let mut jobs = Vec::new();
    for _ in streams {
        let (s, _) = l.accept()?;
        s.set_read_timeout(Some(timeout))?;
        let mut h = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
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
        super::tune(&s, p);
        let job = match (p.kind, dir) {
            (super::protocol::TestKind::Rr, _) | (_, Dir::Up) => Job::Recv(s),
            (_, Dir::Down) => Job::Send(s),
        };
        jobs.push((id, job));
    }
    Ok(jobs)
}
