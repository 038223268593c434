//! Fixtures the experiments of claims 9–14 share: a traced recorder, loopback sockets with
//! bounded receives, a call's outcome as an errno name, and the `ss`/wire lines of one port,
//! read once the TCP close handshakes have settled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::Host;
use crate::sock::{Proto, Sock, Step};
use crate::trace::{Collector, Recorder};

/// The longest any single receive of these experiments blocks (SO_RCVTIMEO).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(2);

/// A collector and a recorder that feeds it.
pub(crate) fn traced() -> (Arc<Collector>, Recorder) {
    let col = Collector::new();
    let rec = Recorder::new(col.clone());
    (col, rec)
}

/// 127.0.0.1 port 0: "loopback, any free port".
pub(crate) fn lo() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// The outcome of a step as a word: `ok`, or the errno name (`EADDRINUSE`).
pub(crate) fn outcome<T>(r: &Step<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => e.errno_name().unwrap_or_else(|| e.to_string()),
    }
}

/// A UDP socket bound to 127.0.0.1 on a free port, receives bounded by [`TIMEOUT`].
pub(crate) fn udp_bound(rec: &Recorder) -> Step<Sock> {
    let s = Sock::open(&lo(), Proto::Udp, rec)?;
    s.bind(lo())?;
    s.set_read_timeout(Some(TIMEOUT))?;
    Ok(s)
}

/// A TCP connection on loopback: (listener, client, accepted server side). `prepare_listener`
/// and `prepare_client` run before bind/connect (for options); receives bounded by [`TIMEOUT`].
pub(crate) fn tcp_pair(
    rec: &Recorder,
    prepare_listener: impl FnOnce(&Sock) -> Step<()>,
    prepare_client: impl FnOnce(&Sock) -> Step<()>,
) -> Step<(Sock, Sock, Sock)> {
    let listener = Sock::open(&lo(), Proto::Tcp, rec)?;
    prepare_listener(&listener)?;
    listener.bind(lo())?;
    listener.listen(8)?;
    let to = listener.local_addr().unwrap_or_else(lo);
    let client = Sock::open(&to, Proto::Tcp, rec)?;
    prepare_client(&client)?;
    client.connect_timeout(to, TIMEOUT)?;
    let (server, _) = listener.accept()?;
    for s in [&client, &server] {
        s.set_read_timeout(Some(TIMEOUT))?;
    }
    Ok((listener, client, server))
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
        Err(e) => Read::Error(e.errno_name().unwrap_or_else(|| e.to_string())),
    }
}

/// Whether a `ss` or wire line names `port` as a local or remote port (`…:PORT`).
pub(crate) fn mentions_port(line: &str, port: u16) -> bool {
    let suffix = format!(":{port}");
    line.split_whitespace().any(|t| t.ends_with(&suffix))
}

/// The lines of `lines` that name `port`.
pub(crate) fn of_port(lines: &[String], port: u16) -> Vec<String> {
    lines
        .iter()
        .filter(|l| mentions_port(l, port))
        .cloned()
        .collect()
}

/// TCP states a closing connection passes through on its way to TIME-WAIT or CLOSED.
const TRANSIENT: [&str; 4] = ["FIN-WAIT-1", "LAST-ACK", "CLOSING", "SYN-SENT"];

/// `ss -tan` lines naming `port`, read once no socket on it is in a transient closing state
/// (the last ACK of a close handshake is processed by the kernel after close() returned;
/// polled at most 1 s, then the lines as they are).
pub(crate) fn settled_tcp(host: &Host, port: u16) -> anyhow::Result<Vec<String>> {
    let start = Instant::now();
    loop {
        let lines = of_port(&host.ss(&["-tan"])?, port);
        let busy = lines
            .iter()
            .any(|l| TRANSIENT.iter().any(|s| l.starts_with(s)));
        if !busy || start.elapsed() > Duration::from_secs(1) {
            return Ok(lines);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The state column of the `ss` line whose local address is `local` and peer `peer`.
pub(crate) fn state_of(lines: &[String], local: SocketAddr, peer: SocketAddr) -> Option<String> {
    let (l, p) = (local.to_string(), peer.to_string());
    lines.iter().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 5 && f[3] == l && f[4] == p).then(|| f[0].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_states_from_ss_lines() {
        let lines = vec![
            "TIME-WAIT 0 0 127.0.0.1:40000 127.0.0.1:5000".to_string(),
            "LISTEN 0 8 127.0.0.1:6000 0.0.0.0:*".to_string(),
        ];
        assert_eq!(of_port(&lines, 5000).len(), 1);
        assert_eq!(of_port(&lines, 500).len(), 0);
        let (a, b) = (
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.1:5000".parse().unwrap(),
        );
        assert_eq!(state_of(&lines, a, b).as_deref(), Some("TIME-WAIT"));
        assert_eq!(state_of(&lines, b, a), None);
    }
}
