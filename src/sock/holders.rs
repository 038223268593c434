//! Who holds a port, for an exact EADDRINUSE hint: a live socket (a listener, a connection,
//! a bound UDP socket: its state and, where visible, its process) or only TCP connections in
//! TIME_WAIT, which SO_REUSEADDR binds over (socket(7), tcp(7)).
//!
//! The sockets are read with `ss -Hanp sport = :PORT` (iproute2, which asks the kernel over
//! sock_diag netlink, NETLINK_INET_DIAG, and maps socket inodes to processes through
//! /proc/PID/fd). Running ss keeps raw netlink and /proc walking out of this crate; it costs a
//! process start, paid only when a bind has already failed. Without ss the hint stays generic.

use std::net::SocketAddr;
use std::process::Command;

use super::{Proto, StepError};

/// One socket on the port, as ss shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The kernel's state name: `LISTEN`, `ESTABLISHED`, `TIME_WAIT`, `UNCONN` (an unconnected
    /// UDP socket) …
    pub state: String,
    /// Its local address as ss prints it (`0.0.0.0:9000`, `[::1]:9000`, `*:9000`).
    pub local: String,
    /// Its peer address as ss prints it (`0.0.0.0:*` when none).
    pub peer: String,
    /// The owning process, `name (pid N)`, when ss could see it.
    pub process: Option<String>,
}

impl Holder {
    /// A socket that lives on: anything but a TCP connection in TIME_WAIT.
    pub fn is_live(&self) -> bool {
        self.state != "TIME_WAIT"
    }
}

/// The sockets of `proto` whose local port is `port`, from ss; `None` when ss could not run.
pub fn port_holders(proto: Proto, port: u16) -> Option<Vec<Holder>> {
    let which = match proto {
        Proto::Tcp => "-t",
        Proto::Udp => "-u",
    };
    let out = Command::new("ss")
        .args(["-H", "-a", "-n", "-p", which])
        .arg(format!("sport = :{port}"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| parse_ss(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `ss -H -a -n -p -t|-u` lines: `STATE RECV-Q SEND-Q LOCAL PEER [users:((…))]`.
pub fn parse_ss(text: &str) -> Vec<Holder> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let state = f.next()?;
            let (_, _, local, peer) = (f.next()?, f.next()?, f.next()?, f.next()?);
            let rest = f.collect::<Vec<_>>().join(" ");
            Some(Holder {
                state: kernel_state(state),
                local: local.to_string(),
                peer: peer.to_string(),
                process: process(&rest),
            })
        })
        .collect()
}

/// ss's short state names as the kernel spells them (include/net/tcp_states.h).
fn kernel_state(ss: &str) -> String {
    match ss {
        "ESTAB" => "ESTABLISHED".into(),
        "FIN-WAIT-1" => "FIN_WAIT1".into(),
        "FIN-WAIT-2" => "FIN_WAIT2".into(),
        "SYN-RECV" => "SYN_RECV".into(),
        other => other.replace('-', "_"),
    }
}

/// `users:(("nc",pid=123,fd=3))` → `nc (pid 123)`; the first process when several share it.
fn process(users: &str) -> Option<String> {
    let start = users.find("((\"")? + 3;
    let name = &users[start..start + users[start..].find('"')?];
    let pid = users[start..]
        .split(',')
        .find_map(|f| f.strip_prefix("pid="))
        .map(|p| p.trim_end_matches(')'));
    Some(match pid {
        Some(pid) => format!("{name} (pid {pid})"),
        None => name.to_string(),
    })
}

/// What to tell a user whose bind on a `proto` port failed with EADDRINUSE, given the
/// sockets on it (`None`: unknown) and whether the failed socket had SO_REUSEADDR.
pub fn in_use_hint(proto: Proto, holders: Option<&[Holder]>, reuseaddr: bool) -> String {
    let Some(holders) = holders else {
        return match proto {
            Proto::Tcp => "another socket holds this port, or a closed connection left it in TIME_WAIT (SO_REUSEADDR binds over TIME_WAIT)".into(),
            Proto::Udp => "another UDP socket is bound to this port; two UDP sockets share a port only if both set SO_REUSEADDR or SO_REUSEPORT".into(),
        };
    };
    let live: Vec<&Holder> = holders.iter().filter(|h| h.is_live()).collect();
    let waiting = holders.len() - live.len();
    if let Some(first) = live.first() {
        let mut s = match (proto, first.state.as_str()) {
            (Proto::Udp, _) => format!("a UDP socket is bound to it: {}", first.local),
            (Proto::Tcp, "LISTEN") => {
                format!("a live socket listens on it: LISTEN {}", first.local)
            }
            (Proto::Tcp, state) => format!(
                "a live connection uses it: {state} {} -> {}",
                first.local, first.peer
            ),
        };
        if let Some(p) = &first.process {
            s.push_str(&format!(", process {p}"));
        }
        if live.len() > 1 {
            s.push_str(&format!(" (and {} more live sockets)", live.len() - 1));
        }
        s.push_str(match proto {
            Proto::Tcp => "; stop it or choose another port",
            Proto::Udp => "; stop it or choose another port (two UDP sockets share a port only if both set SO_REUSEADDR or SO_REUSEPORT)",
        });
        return s;
    }
    if waiting > 0 {
        let conns = match waiting {
            1 => "1 closed connection on this port is".to_string(),
            n => format!("{n} closed connections on this port are"),
        };
        return match reuseaddr {
            false => format!(
                "{conns} in TIME_WAIT (up to 60 s after the close); SO_REUSEADDR binds over it: drop --no-reuseaddr on a listener, add --reuseaddr elsewhere"
            ),
            true => format!(
                "{conns} in TIME_WAIT (up to 60 s after the close), and its socket did not set SO_REUSEADDR, so the kernel refuses even with it: wait, or choose another port"
            ),
        };
    }
    // Nothing holds it any more: the holder went away between our bind and ss.
    "the socket that held this port has just gone; try again".into()
}

/// A bind that failed with EADDRINUSE, told exactly: the failed step and who holds the port.
#[derive(Debug, thiserror::Error)]
#[error("{call} {target}: address already in use (EADDRINUSE); {hint}", call = .step.call, target = .step.target)]
pub struct AddrInUse {
    /// The bind that failed.
    pub step: StepError,
    /// The sockets holding the port, when ss could list them.
    pub holders: Option<Vec<Holder>>,
    /// The hint built from them ([`in_use_hint`]).
    pub hint: String,
}

impl AddrInUse {
    /// `e` told exactly if it is a bind(2) that failed with EADDRINUSE (asking ss who holds the
    /// port); any other error is given back unchanged.
    pub fn explain(e: StepError, proto: Proto, reuseaddr: bool) -> Result<Self, StepError> {
        let port = match e.target.parse::<SocketAddr>() {
            Ok(a) if e.call == "bind" && e.errno() == Some(libc::EADDRINUSE) => a.port(),
            _ => return Err(e),
        };
        let holders = port_holders(proto, port);
        let hint = in_use_hint(proto, holders.as_deref(), reuseaddr);
        Ok(Self {
            step: e,
            holders,
            hint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SS_TCP: &str = "\
LISTEN    0      128        0.0.0.0:9000      0.0.0.0:*     users:((\"nc\",pid=4242,fd=3))
TIME-WAIT 0      0        127.0.0.1:9000    127.0.0.1:51234
ESTAB     0      0        127.0.0.1:9000    127.0.0.1:51236 users:((\"socklab\",pid=77,fd=4),(\"socklab\",pid=78,fd=4))
";

    #[test]
    fn parses_states_addresses_and_processes() {
        let h = parse_ss(SS_TCP);
        assert_eq!(h.len(), 3);
        assert_eq!(h[0].state, "LISTEN");
        assert_eq!(h[0].process.as_deref(), Some("nc (pid 4242)"));
        assert_eq!(h[1].state, "TIME_WAIT");
        assert!(!h[1].is_live() && h[1].process.is_none());
        assert_eq!(h[2].state, "ESTABLISHED");
        assert_eq!(h[2].peer, "127.0.0.1:51236");
        assert_eq!(h[2].process.as_deref(), Some("socklab (pid 77)"));
    }

    #[test]
    fn hints_tell_live_from_time_wait_and_udp() {
        let all = parse_ss(SS_TCP);
        let live = in_use_hint(Proto::Tcp, Some(&all), true);
        assert!(
            live.contains("LISTEN 0.0.0.0:9000, process nc (pid 4242)"),
            "{live}"
        );
        assert!(!live.contains("TIME_WAIT"), "{live}");
        let tw = in_use_hint(Proto::Tcp, Some(&all[1..2]), false);
        assert!(
            tw.contains("TIME_WAIT") && tw.contains("SO_REUSEADDR"),
            "{tw}"
        );
        let udp = parse_ss("UNCONN 0 0 127.0.0.1:53 0.0.0.0:*\n");
        let u = in_use_hint(Proto::Udp, Some(&udp), false);
        assert!(
            u.contains("UDP socket is bound") && !u.contains("TIME_WAIT"),
            "{u}"
        );
        assert!(!in_use_hint(Proto::Udp, None, false).contains("TIME_WAIT"));
    }
}
