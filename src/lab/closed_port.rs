//! The probe of claims 4 and 5: a UDP sender to a port nobody has open, unconnected,
//! connected or with IP_RECVERR, sending three times while the ICMP port unreachable comes
//! back, and what each call returned ([`closed_port_sends`]).

use serde::Serialize;

use super::observe::{Res, Trial, res, show_res, wait_error, wait_until};
use super::{Evidence, Family, Host};
use crate::sock::{Sock, Step};

/// A UDP port on the loopback address (127.0.0.1 or ::1) that nobody has open now: bind :0, note the port the kernel chose,
/// close the socket.
pub(crate) fn closed_port(host: &Host<'_>) -> anyhow::Result<u16> {
    let s = Trial::new().udp_bound(host, host.lo(0))?;
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
    /// The address family it sent over (whose counters [`line`](Self::line) names).
    #[serde(skip)]
    pub(crate) family: Family,
    /// connect(2)'s result, for a connected sender.
    pub(crate) connect: Option<Res<()>>,
    /// The results of three sends, in order; the 2nd and 3rd come after the ICMP came back.
    pub(crate) sends: Vec<Res<usize>>,
    /// Whether an ICMP destination unreachable was counted (Icmp.InDestUnreachs, for IPv6
    /// Icmp6.InDestUnreachs, moved) before the 2nd send.
    pub(crate) icmp_back: bool,
    /// Whether poll(2) then reported POLLERR (a pending socket error).
    pub(crate) pollerr: bool,
    /// A final recv with MSG_DONTWAIT: `EAGAIN` if nothing is pending.
    pub(crate) recv_after: Res<usize>,
    /// The evidence (trace, counters and wire when isolated).
    #[serde(skip)]
    pub(crate) ev: Evidence,
}

/// setsockopt(IP_RECVERR, 1) on IPv4, IPV6_RECVERR on IPv6, traced (ip(7), ipv6(7)):
/// extended errors, ICMP and ICMPv6 ones included, are queued on the socket (read with
/// MSG_ERRQUEUE) and reported by the next call even when unconnected.
fn set_recv_err(s: &Sock, family: Family) -> Step<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    match family {
        Family::Ipv4 => s.step(
            "setsockopt",
            || String::from("IPPROTO_IP, IP_RECVERR, 1"),
            |_| 0,
            |sock| Ok(setsockopt(sock, sockopt::Ipv4RecvErr, &true)?),
        ),
        Family::Ipv6 => s.step(
            "setsockopt",
            || String::from("IPPROTO_IPV6, IPV6_RECVERR, 1"),
            |_| 0,
            |sock| Ok(setsockopt(sock, sockopt::Ipv6RecvErr, &true)?),
        ),
    }
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
            let key = self.family.counter(key);
            if let Some(n) = self.ev.counters.get(&key) {
                line.push_str(&format!("; {key} +{n}"));
            }
        }
        line
    }
}

/// Sends three datagrams to a UDP port nobody has open on `host`'s loopback address, set up as
/// `sender` says, waiting after the first for the ICMP port unreachable (RFC 1122 §3.2.2.1) to
/// come back, and records what each call returned.
pub(crate) fn closed_port_sends(
    host: &Host<'_>,
    sender: Sender,
) -> anyhow::Result<ClosedPortSends> {
    let to = host.lo(closed_port(host)?);
    let t = Trial::new();
    let _ = host.wire();
    let before = host.counters()?;
    let s = t.udp(host)?;
    if sender == Sender::UnconnectedRecvErr {
        set_recv_err(&s, host.family())?;
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
    let unreachs = host.counter("Icmp.InDestUnreachs");
    let icmp_back = wait_until(|| {
        host.counters()
            .is_ok_and(|now| now.get(&unreachs) > before.get(&unreachs))
    });
    let pollerr = sender != Sender::Unconnected && wait_error(&s);
    sends.push(send());
    sends.push(send());
    let mut buf = [0u8; 16];
    let recv_after = res(s.recv_datagram(&mut buf, libc::MSG_DONTWAIT)).map(|d| d.real_len);
    let ev = t.evidence_since(host, &before)?;
    Ok(ClosedPortSends {
        sender,
        family: host.family(),
        connect,
        sends,
        icmp_back,
        pollerr,
        recv_after,
        ev,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A recorded run: connected or not, the sends' results and the final recv's errno.
    pub(crate) fn recorded(
        connected: bool,
        sends: &[Res<usize>],
        recv_after: &str,
    ) -> ClosedPortSends {
        ClosedPortSends {
            sender: if connected {
                Sender::Connected
            } else {
                Sender::Unconnected
            },
            family: Family::Ipv4,
            connect: connected.then_some(Ok(())),
            sends: sends.to_vec(),
            icmp_back: true,
            pollerr: connected,
            recv_after: Err(recv_after.into()),
            ev: Evidence::default(),
        }
    }
}
