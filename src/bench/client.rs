//! `bench client`: connects to a server's control port, negotiates one test, opens the data
//! connections, runs its side and merges both sides' figures into a [`TestOutcome`].

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::{Duration, Instant};

use super::kind;
use super::protocol::{
    self, Dir, FrameError, Message, PROBE_LEN, Probe, SentCount, StreamResult, TestParams,
    Transport,
};
use super::session::{self, Job, Placement};
use super::wire::{HEADER_LEN, Repr};
use super::{BenchError, RrSummary, TestOutcome, data_socket};
use crate::sock::Sock;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// The server's control address.
    pub server: SocketAddr,
    /// Shared token, if the server wants one.
    pub token: Option<String>,
    /// CPUs to pin worker threads to, round-robin.
    pub cpus: Vec<usize>,
    /// The connect timeout of the control connection (`--connect-timeout`), and the deadline
    /// for the whole handshake after it (Hello to Accepted, and the UDP return-address check):
    /// a silent server is an error after this long, never a hang.
    pub timeout: Duration,
}

/// `5s`, `1.5s`, `200ms`: a timeout as the user wrote it.
fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// connect(2) of the control connection, bounded by `cfg.timeout`, with the failure in words.
fn connect(cfg: &ClientCfg) -> Result<TcpStream, BenchError> {
    TcpStream::connect_timeout(&cfg.server, cfg.timeout).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
                "no answer within {} (--connect-timeout); is the host up and the port open?",
                human(cfg.timeout)
            ),
            io::ErrorKind::ConnectionRefused => {
                "connection refused: nothing listens on that port".to_string()
            }
            _ => e
                .raw_os_error()
                .map_or_else(|| e.to_string(), crate::os::errno::describe),
        };
        BenchError::Connect(cfg.server, io::Error::new(e.kind(), why))
    })
}

/// Reads one handshake message before `deadline`; a failure is said in the user's terms.
fn read_handshake(
    conn: &mut TcpStream,
    cfg: &ClientCfg,
    deadline: Instant,
) -> Result<Message, BenchError> {
    let left = deadline.saturating_duration_since(Instant::now());
    conn.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
    protocol::read_message(conn).map_err(|e| handshake_error(&e, cfg))
}

fn handshake_error(e: &FrameError, cfg: &ClientCfg) -> BenchError {
    let server = cfg.server;
    BenchError::Control(match e {
        FrameError::Short(0) | FrameError::Truncated { .. } | FrameError::Short(_) => {
            "the server closed the control connection during the handshake (wrong token? server busy or flooded? see the server's log)".to_string()
        }
        FrameError::Io(io) if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => format!(
            "the server at {server} said nothing for {} during the handshake (is it a socklab bench server? --connect-timeout sets this wait)",
            human(cfg.timeout)
        ),
        FrameError::BadMagic => format!(
            "{server} is not a socklab bench server (it answered in another protocol)"
        ),
        other => format!("{} during the handshake", other.in_words("the server")),
    })
}

/// Runs one test against a server. `on_sample(received_here, sample)` sees interval samples
/// as they come (the server's are relayed over the control connection).
pub fn run_test(
    cfg: &ClientCfg,
    params: &TestParams,
    on_sample: &mut dyn FnMut(Dir, &protocol::IntervalSample),
) -> Result<TestOutcome, BenchError> {
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut conn = connect(cfg)?;
    let deadline = Instant::now() + cfg.timeout;
    conn.set_write_timeout(Some(cfg.timeout))?;
    conn.set_nodelay(true)?;
    let Message::Hello {
        nonce,
        auth_required,
        ..
    } = read_handshake(&mut conn, cfg, deadline)?
    else {
        return Err(BenchError::Control(format!(
            "{} is not a socklab bench server (no greeting)",
            cfg.server
        )));
    };
    let auth = match (&cfg.token, auth_required) {
        (Some(t), _) => Some(protocol::auth_tag(t, &nonce)),
        (None, true) => {
            return Err(BenchError::Refused {
                reason: "the server requires a token (--token)".into(),
                retry: false,
            });
        }
        (None, false) => None,
    };
    let streams = kind::streams(params);
    let local_ip = conn.local_addr()?.ip();
    let server_ip = cfg.server.ip();
    protocol::write_message(
        &mut conn,
        &Message::Start {
            auth,
            params: params.clone(),
        },
    )
    .map_err(|e| handshake_error(&e, cfg))?;
    let (test_id, tcp_port, udp_ports, down_udp_ports, cookie) =
        match read_handshake(&mut conn, cfg, deadline)? {
            Message::Accepted {
                test_id,
                tcp_port,
                udp_ports,
                down_udp_ports,
                cookie,
            } => (test_id, tcp_port, udp_ports, down_udp_ports, cookie),
            Message::Refused { reason, retry } => {
                return Err(BenchError::Refused { reason, retry });
            }
            other => {
                return Err(BenchError::Protocol(format!(
                    "expected accepted, got {other:?}"
                )));
            }
        };
    let mut jobs = Vec::new();
    match params.transport {
        Transport::Tcp => {
            let port = tcp_port.ok_or_else(|| BenchError::Protocol("no TCP data port".into()))?;
            let to = SocketAddr::new(server_ip, port);
            for &(id, dir) in &streams {
                let s = data_socket(to, params, Some(server_ip))?;
                s.connect_timeout(to, cfg.timeout)?;
                let mut h = [0u8; HEADER_LEN];
                // Cannot fail: h is exactly HEADER_LEN long.
                let _ = Repr {
                    stream: id,
                    seq: 0,
                    timestamp_ns: 0,
                }
                .emit(&mut h);
                if !super::wire::send_all(&s, &h) {
                    return Err(BenchError::Protocol(
                        "data connection refused the header".into(),
                    ));
                }
                jobs.push((id, kind::job(params, dir, true, s)));
            }
        }
        Transport::Udp => {
            let (mut up_ports, mut down_ports) = (udp_ports.iter(), down_udp_ports.iter());
            let too_few = || BenchError::Protocol("the server named too few UDP ports".into());
            // Streams the server will send UDP on: each proves its address with a probe.
            let mut proofs = Vec::new();
            for &(id, dir) in &streams {
                let port = match dir {
                    Dir::Up => up_ports.next(),
                    Dir::Down => down_ports.next(),
                };
                let to = SocketAddr::new(server_ip, *port.ok_or_else(too_few)?);
                let s = data_socket(to, params, Some(server_ip))?;
                if dir == Dir::Up {
                    s.connect(to)?;
                } else {
                    s.bind(SocketAddr::new(local_ip, 0))?;
                }
                if kind::of(params.kind).server_sends(dir) {
                    proofs.push((id, jobs.len(), to));
                }
                jobs.push((id, kind::job(params, dir, true, s)));
            }
            if !proofs.is_empty() {
                let cookie = cookie
                    .as_deref()
                    .and_then(protocol::parse_cookie)
                    .ok_or_else(|| {
                        BenchError::Protocol("the server sent no UDP return-address cookie".into())
                    })?;
                let socks: Vec<(u16, &Sock, SocketAddr)> = proofs
                    .iter()
                    .map(|&(id, i, to)| {
                        let (Job::Send(s) | Job::Recv(s)) = &jobs[i].1;
                        (id, s, to)
                    })
                    .collect();
                prove_return_addresses(&mut conn, cfg, &socks, cookie, deadline)?;
                session::drain_probes(&jobs);
            }
        }
    }
    protocol::write_message(&mut conn, &Message::Go).map_err(|e| handshake_error(&e, cfg))?;
    session::watch_peer(&conn, cfg.timeout)?;
    let mut relay = |here: bool, s: &protocol::IntervalSample| {
        let dir = if here { Dir::Down } else { Dir::Up };
        on_sample(dir, s);
    };
    let kind = kind::of(params.kind);
    let pair = kind.pairs_threads(params.transport) && super::on_this_host(server_ip);
    let placement = Placement::new(&cfg.cpus, pair, test_id);
    let out = session::run(&conn, params, kind, jobs, true, &placement, &mut relay)
        .map_err(|e| BenchError::Test(e.to_string()))?;
    session::close(&conn);
    let server = out.peer.unwrap_or_default();
    let dir_of = |id: u16| streams.iter().find(|(s, _)| *s == id).map(|(_, d)| *d);
    let merge = |r: &StreamResult, sent: &[SentCount]| {
        let mut r = r.clone();
        r.dir = dir_of(r.stream);
        if let Some(s) = sent.iter().find(|s| s.stream == r.stream) {
            r.sent_bytes = s.bytes;
            r.sent_packets = s.packets;
            r.tcp = s.tcp;
            r.gso = s.gso;
            r.sender_error = s.error.clone();
            r.send_refused = s.refused;
            r.datagrams_per_send_skb = s.datagrams_per_skb;
            r.sender_copied_bytes = s.copied_bytes;
            r.zerocopy = s.zerocopy.clone();
        }
        r
    };
    let received: Vec<StreamResult> = server
        .streams
        .iter()
        .map(|r| merge(r, &out.sent))
        .chain(out.mine.streams.iter().map(|r| merge(r, &out.peer_sent)))
        .collect();
    let mut all = kind.stream_results(received, &out.sent);
    all.sort_by_key(|s| s.stream);
    let rr = out
        .rr
        .as_ref()
        .map(|(h, lost)| RrSummary::from_histogram(h, *lost));
    let rr_histogram = out.rr.map(|(h, _)| h);
    let mut samples: Vec<(Dir, protocol::IntervalSample)> = out
        .samples
        .into_iter()
        .map(|(here, s)| (if here { Dir::Down } else { Dir::Up }, s))
        .collect();
    samples.sort_by_key(|(_, s)| (s.end_ns, s.stream));
    Ok(TestOutcome {
        params: params.clone(),
        started_unix_ms,
        streams: all,
        client: out.mine,
        server,
        rr,
        samples,
        rr_histogram,
    })
}

/// Sends a [`Probe`] from each socket the server will send to, every 100 ms until the
/// server acknowledges it (UDP may lose either), or until `deadline`. The server sends a
/// stream's data only to the address its probe came from (see [`Probe`]).
fn prove_return_addresses(
    conn: &mut TcpStream,
    cfg: &ClientCfg,
    socks: &[(u16, &Sock, SocketAddr)],
    cookie: [u8; 16],
    deadline: Instant,
) -> Result<(), BenchError> {
    let mut acked = vec![false; socks.len()];
    let mut resend = Instant::now();
    let mut buf = [0u8; PROBE_LEN + 1];
    while acked.iter().any(|a| !a) {
        let now = Instant::now();
        if now >= deadline {
            return Err(BenchError::Control(format!(
                "the server did not acknowledge the UDP return-address check within {} (does a firewall drop UDP between here and {}?)",
                human(cfg.timeout),
                cfg.server.ip()
            )));
        }
        if now >= resend {
            for ((stream, s, to), done) in socks.iter().zip(&acked) {
                if !done {
                    let probe = Probe {
                        ack: false,
                        stream: *stream,
                        cookie,
                    };
                    let _ = s.send_to(&probe.emit(), *to);
                }
            }
            resend = now + Duration::from_millis(100);
        }
        let fds: Vec<BorrowedFd<'_>> = socks.iter().map(|(_, s, _)| s.as_fd()).collect();
        let ready = session::wait(&fds, conn, true, resend.min(deadline))?;
        if ready.ctrl {
            // The server refuses (its deadline passed) or went away.
            return Err(match read_handshake(conn, cfg, deadline)? {
                Message::Refused { reason, retry } => BenchError::Refused { reason, retry },
                other => BenchError::Protocol(format!("expected accepted, got {other:?}")),
            });
        }
        for (i, (stream, s, _)) in socks.iter().enumerate() {
            if !ready.fds[i] {
                continue;
            }
            if let Ok(d) = s.recv_datagram(&mut buf, libc::MSG_DONTWAIT) {
                if Probe::parse(&buf[..d.len])
                    .is_some_and(|p| p.ack && p.stream == *stream && p.cookie == cookie)
                {
                    acked[i] = true;
                }
            }
        }
    }
    Ok(())
}
