//! `bench client`: connects to a server's control port, negotiates one test, opens the data
//! connections, runs its side and merges both sides' figures into a [`TestOutcome`].

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::protocol::{
    self, Dir, Message, SentCount, StreamResult, TestKind, TestParams, Transport,
};
use super::session::{self, Job};
use super::wire::{HEADER_LEN, Repr};
use super::{BenchError, RrSummary, TestOutcome, data_socket, tune};
use crate::sock::Proto;

/// Client configuration.
#[derive(Debug, Clone)]
pub struct ClientCfg {
    /// The server's control address.
    pub server: SocketAddr,
    /// Shared token, if the server wants one.
    pub token: Option<String>,
    /// CPUs to pin worker threads to, round-robin.
    pub cpus: Vec<usize>,
    /// Connect and control-read timeout before the test.
    pub timeout: Duration,
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
    let mut conn = TcpStream::connect_timeout(&cfg.server, cfg.timeout)
        .map_err(|e| BenchError::Connect(cfg.server, e))?;
    conn.set_read_timeout(Some(cfg.timeout))?;
    conn.set_write_timeout(Some(cfg.timeout))?;
    conn.set_nodelay(true)?;
    let (nonce, auth_required) = match protocol::read_message(&mut conn)? {
        Message::Hello {
            nonce,
            auth_required,
            ..
        } => (nonce, auth_required),
        other => {
            return Err(BenchError::Protocol(format!(
                "expected hello, got {other:?}"
            )));
        }
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
    let streams = session::streams(params);
    let local_ip = conn.local_addr()?.ip();
    let server_ip = cfg.server.ip();
    // UDP streams the client receives: bind now, tell the server the ports.
    let mut down_socks = Vec::new();
    if params.transport == Transport::Udp {
        for &(id, dir) in &streams {
            if dir == Dir::Down {
                let s = data_socket(SocketAddr::new(local_ip, 0), params)?;
                s.bind(SocketAddr::new(local_ip, 0))?;
                down_socks.push((id, s));
            }
        }
    }
    let client_udp_ports = down_socks
        .iter()
        .map(|(_, s)| s.local_addr().map_or(0, |a| a.port()))
        .collect();
    protocol::write_message(
        &mut conn,
        &Message::Start {
            auth,
            params: params.clone(),
            client_udp_ports,
        },
    )?;
    let (tcp_port, udp_ports) = match protocol::read_message(&mut conn) {
        Ok(Message::Accepted {
            tcp_port,
            udp_ports,
            ..
        }) => (tcp_port, udp_ports),
        Ok(Message::Refused { reason, retry }) => {
            return Err(BenchError::Refused { reason, retry });
        }
        Ok(other) => {
            return Err(BenchError::Protocol(format!(
                "expected accepted, got {other:?}"
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let mut jobs = Vec::new();
    match params.transport {
        Transport::Tcp => {
            let port = tcp_port.ok_or_else(|| BenchError::Protocol("no TCP data port".into()))?;
            let to = SocketAddr::new(server_ip, port);
            for &(id, dir) in &streams {
                let s = data_socket(to, params)?;
                s.connect_timeout(to, cfg.timeout)?;
                let mut h = [0u8; HEADER_LEN];
                // Cannot fail: h is exactly HEADER_LEN long.
                let _ = Repr {
                    stream: id,
                    seq: 0,
                    timestamp_ns: 0,
                }
                .emit(&mut h);
                if !super::sender::send_all(&s, &h) {
                    return Err(BenchError::Protocol(
                        "data connection refused the header".into(),
                    ));
                }
                tune(&s, params);
                let job = match (params.kind, dir) {
                    (TestKind::Rr, _) | (_, Dir::Up) => Job::Send(s),
                    (_, Dir::Down) => Job::Recv(s),
                };
                jobs.push((id, job));
            }
        }
        Transport::Udp => {
            let mut up_ports = udp_ports.iter();
            for &(id, dir) in &streams {
                if dir == Dir::Up {
                    let port = *up_ports
                        .next()
                        .ok_or_else(|| BenchError::Protocol("too few UDP ports".into()))?;
                    let to = SocketAddr::new(server_ip, port);
                    let s = data_socket(to, params)?;
                    s.connect(to)?;
                    jobs.push((id, Job::Send(s)));
                }
            }
            for (id, s) in down_socks {
                jobs.push((id, Job::Recv(s)));
            }
        }
    }
    protocol::write_message(&mut conn, &Message::Go)?;
    let mut relay = |here: bool, s: &protocol::IntervalSample| {
        let dir = if here { Dir::Down } else { Dir::Up };
        on_sample(dir, s);
    };
    let out = session::run(&conn, params, jobs, true, &cfg.cpus, &mut relay)
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
        }
        r
    };
    let mut all: Vec<StreamResult> = server
        .streams
        .iter()
        .map(|r| merge(r, &out.sent))
        .chain(out.mine.streams.iter().map(|r| merge(r, &out.peer_sent)))
        .collect();
    if params.kind.measures_latency() {
        // The echo side counted requests; the requester's counts are the truth here.
        all = out
            .sent
            .iter()
            .map(|s| StreamResult {
                stream: s.stream,
                dir: Some(Dir::Up),
                packets: s.packets,
                sent_packets: s.packets,
                sent_bytes: s.bytes,
                tcp: s.tcp,
                ..StreamResult::default()
            })
            .collect();
    }
    all.sort_by_key(|s| s.stream);
    let rr = out.rr.map(|(h, lost)| RrSummary::from_histogram(&h, lost));
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
    })
}

/// The protocol a data socket of this test uses.
pub fn proto_of(t: Transport) -> Proto {
    match t {
        Transport::Tcp => Proto::Tcp,
        Transport::Udp => Proto::Udp,
    }
}
