//! What holds a port: the `ss` (and wire) lines that name it, the states of its TCP sockets once
//! close handshakes have settled, and whether a new socket can bind it again (claims 9–14).

use std::net::SocketAddr;

use super::Host;
use super::observe::{SETTLE, poll_until};
use crate::sock::{Proto, Sock, Step};
use crate::trace::Recorder;

/// Whether a `ss` or wire line names `port` as a local or remote port (`…:PORT`).
fn mentions_port(line: &str, port: u16) -> bool {
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

/// Whether a `ss` line is about a socket on `port` of this host: its local address has the
/// port, or its peer has it at the same IP as the local end (a connection to the port from
/// this host's address). A connection to another address that happens to use the same port
/// number (`127.0.0.1:E → 127.0.0.2:PORT`) is another program's, not the port's.
fn on_own_port(line: &str, port: u16) -> bool {
    let suffix = format!(":{port}");
    let f: Vec<&str> = line.split_whitespace().collect();
    let (Some(local), Some(peer)) = (f.get(3), f.get(4)) else {
        return mentions_port(line, port);
    };
    let ip = |a: &str| a.rsplit_once(':').map(|(ip, _)| ip.to_string());
    local.ends_with(&suffix) || (peer.ends_with(&suffix) && ip(local) == ip(peer))
}

/// `ss -tan` (TCP) or `ss -uan` (UDP) lines of `host` naming `port`. On the machine's own
/// stack (no namespace of the lab's) only the lines [`on_own_port`] keeps: other programs'
/// connections may use the same port number toward other addresses.
pub(crate) fn ss_of(host: &Host, proto: Proto, port: u16) -> anyhow::Result<Vec<String>> {
    let args = match proto {
        Proto::Tcp => "-tan",
        Proto::Udp => "-uan",
    };
    let lines = host.ss(&[args])?;
    Ok(match host.is_isolated() {
        true => of_port(&lines, port),
        false => lines.into_iter().filter(|l| on_own_port(l, port)).collect(),
    })
}

/// TCP states a closing connection passes through on its way to TIME-WAIT or CLOSED.
const TRANSIENT: [&str; 4] = ["FIN-WAIT-1", "LAST-ACK", "CLOSING", "SYN-SENT"];

/// `ss -tan` lines naming `port`, read once no socket on it is in a transient closing state
/// (the last ACK of a close handshake is processed by the kernel after close() returned;
/// polled at most [`SETTLE`], then the lines as they are).
pub(crate) fn settled_tcp(host: &Host, port: u16) -> anyhow::Result<Vec<String>> {
    poll_until(
        SETTLE,
        || ss_of(host, Proto::Tcp, port),
        |lines| {
            !lines
                .iter()
                .any(|l| TRANSIENT.iter().any(|s| l.starts_with(s)))
        },
    )
}

/// The state column of the `ss` line whose local address is `local` and peer `peer`.
pub(crate) fn state_of(lines: &[String], local: SocketAddr, peer: SocketAddr) -> Option<String> {
    let (l, p) = (local.to_string(), peer.to_string());
    lines.iter().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() >= 5 && f[3] == l && f[4] == p).then(|| f[0].to_string())
    })
}

/// A fresh socket binds `addr` again, with SO_REUSEADDR if `reuse`, and listens if `listen`
/// (a server restarting); it is closed again at once so the next attempt starts clean.
pub(crate) fn bind_again(
    rec: &Recorder,
    proto: Proto,
    addr: SocketAddr,
    reuse: bool,
    listen: bool,
) -> Step<()> {
    let s = Sock::open(&addr, proto, rec)?;
    if reuse {
        s.set_reuse_address(true)?;
    }
    s.bind(addr)?;
    if listen {
        s.listen(8)?;
    }
    Ok(())
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

    /// On the machine's own stack, a connection that only shares the port number (its peer is
    /// another address) is not the port's: seen in CI, another test's TIME-WAIT toward
    /// 127.0.0.2:P showed up as "the killed listener's port still held".
    #[test]
    fn own_port_lines_leave_other_addresses_alone() {
        let own = "TIME-WAIT 0 0 127.0.0.1:40000 127.0.0.1:5000";
        let listener = "LISTEN 0 8 127.0.0.1:5000 0.0.0.0:*";
        let foreign = "TIME-WAIT 0 0 127.0.0.1:32722 127.0.0.2:5000";
        assert!(on_own_port(own, 5000));
        assert!(on_own_port(listener, 5000));
        assert!(!on_own_port(foreign, 5000));
        assert!(mentions_port(foreign, 5000));
    }
}
