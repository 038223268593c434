//! Socket options: each setter is one traced setsockopt(2), and the ones whose value the kernel
//! may change (SO_RCVBUF, SO_SNDBUF: Linux doubles the value for bookkeeping, socket(7)) read the
//! value back with a traced getsockopt(2) and return what was really applied.
//!
//! [`SockOpts`] is the plain configuration the CLI and the bench fill in; [`SockOpts::apply`]
//! sets everything it names, in a fixed order, before bind/connect.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use socket2::{InterfaceIndexOrAddress, Socket};

use super::{Sock, Step, StepError};
use crate::trace::Args;

/// The options a user can ask for on an endpoint; `None`/`false` leaves the kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SockOpts {
    /// SO_REUSEADDR: `Some(false)` sets it off explicitly (the kernel default, but the trace
    /// then shows the choice, as for a listener run with `--no-reuseaddr`).
    pub reuse_address: Option<bool>,
    /// SO_REUSEPORT.
    pub reuse_port: bool,
    /// SO_RCVBUF, in bytes as asked (the kernel doubles it).
    pub recv_buffer: Option<usize>,
    /// SO_SNDBUF, in bytes as asked (the kernel doubles it).
    pub send_buffer: Option<usize>,
    /// SO_BROADCAST.
    pub broadcast: bool,
    /// SO_BINDTODEVICE interface name.
    pub device: Option<String>,
    /// IP_TTL / IPV6_UNICAST_HOPS.
    pub ttl: Option<u32>,
    /// IP_TOS / IPV6_TCLASS.
    pub tos: Option<u32>,
    /// TCP_NODELAY.
    pub nodelay: bool,
    /// SO_LINGER with this timeout.
    pub linger: Option<Duration>,
    /// IPV6_V6ONLY.
    pub only_v6: Option<bool>,
    /// Multicast groups to join, each with an optional interface name.
    pub join: Vec<(IpAddr, Option<String>)>,
    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS.
    pub multicast_ttl: Option<u32>,
    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP.
    pub multicast_loop: Option<bool>,
}

/// A buffer size as asked and as the kernel applied it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The option's name, e.g. `SO_RCVBUF`.
    pub option: &'static str,
    /// The value given to setsockopt.
    pub asked: usize,
    /// The value getsockopt returned afterwards.
    pub applied: usize,
}

impl SockOpts {
    /// Sets every option named, in a fixed order; returns the buffer sizes as applied.
    pub fn apply(&self, sock: &Sock) -> Step<Vec<Applied>> {
        let mut applied = Vec::new();
        if let Some(on) = self.reuse_address {
            sock.set_reuse_address(on)?;
        }
        if self.reuse_port {
            sock.set_reuse_port(true)?;
        }
        if let Some(v6only) = self.only_v6 {
            sock.set_only_v6(v6only)?;
        }
        if let Some(n) = self.recv_buffer {
            applied.push(sock.set_recv_buffer_size(n)?);
        }
        if let Some(n) = self.send_buffer {
            applied.push(sock.set_send_buffer_size(n)?);
        }
        if self.broadcast {
            sock.set_broadcast(true)?;
        }
        if let Some(dev) = &self.device {
            sock.bind_device(dev)?;
        }
        if let Some(ttl) = self.ttl {
            sock.set_ttl(ttl)?;
        }
        if let Some(tos) = self.tos {
            sock.set_tos(tos)?;
        }
        if self.nodelay {
            sock.set_nodelay(true)?;
        }
        if let Some(l) = self.linger {
            sock.set_linger(Some(l))?;
        }
        if let Some(t) = self.multicast_ttl {
            sock.set_multicast_ttl(t)?;
        }
        if let Some(l) = self.multicast_loop {
            sock.set_multicast_loop(l)?;
        }
        for (group, iface) in &self.join {
            sock.join_multicast(*group, iface.as_deref())?;
        }
        Ok(applied)
    }
}

/// The trace arguments of a socket option call: `text`, and `level` and `option` as fields
/// from `level_name` (`SOL_SOCKET, SO_RCVBUF`).
fn option_args(text: String, level_name: &str) -> Args {
    let (level, option) = level_name.split_once(", ").unwrap_or(("", level_name));
    Args::new(text)
        .field("level", level)
        .field("option", option)
}

impl Sock {
    fn setopt(
        &self,
        level_name: &str,
        value: String,
        set: impl FnOnce(&Socket) -> std::io::Result<()>,
    ) -> Step<()> {
        self.step(
            "setsockopt",
            || {
                // A number stays a number in JSON; `50ms` or `"eth0"` stay text.
                let v = value
                    .parse::<i64>()
                    .map_or_else(|_| serde_json::Value::from(value.as_str()), Into::into);
                option_args(format!("{level_name}, {value}"), level_name).field("value", v)
            },
            |_| 0,
            set,
        )
    }

    fn getopt_size(
        &self,
        level_name: &str,
        get: impl FnOnce(&Socket) -> std::io::Result<usize>,
    ) -> Step<usize> {
        self.step(
            "getsockopt",
            || option_args(level_name.to_string(), level_name),
            |n| *n as i64,
            get,
        )
    }

    /// SO_REUSEADDR (socket(7)): for TCP, bind over connections in TIME_WAIT; for UDP, share
    /// the port with other sockets that set it too.
    pub fn set_reuse_address(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_REUSEADDR", bit(on), |s| {
            s.set_reuse_address(on)
        })
    }

    /// SO_REUSEPORT (socket(7)): several sockets of the same user bind the same address and the
    /// kernel spreads incoming connections or datagrams among them.
    pub fn set_reuse_port(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_REUSEPORT", bit(on), |s| {
            s.set_reuse_port(on)
        })
    }

    /// SO_RCVBUF, then a getsockopt of what the kernel applied (Linux doubles the value to
    /// leave room for bookkeeping, and caps it at net.core.rmem_max).
    pub fn set_recv_buffer_size(&self, size: usize) -> Step<Applied> {
        self.setopt("SOL_SOCKET, SO_RCVBUF", size.to_string(), |s| {
            s.set_recv_buffer_size(size)
        })?;
        let applied = self.recv_buffer_size()?;
        Ok(Applied {
            option: "SO_RCVBUF",
            asked: size,
            applied,
        })
    }

    /// getsockopt(SO_RCVBUF).
    pub fn recv_buffer_size(&self) -> Step<usize> {
        self.getopt_size("SOL_SOCKET, SO_RCVBUF", |s| s.recv_buffer_size())
    }

    /// SO_SNDBUF, then a getsockopt of what the kernel applied (doubled, capped at wmem_max).
    pub fn set_send_buffer_size(&self, size: usize) -> Step<Applied> {
        self.setopt("SOL_SOCKET, SO_SNDBUF", size.to_string(), |s| {
            s.set_send_buffer_size(size)
        })?;
        let applied = self.send_buffer_size()?;
        Ok(Applied {
            option: "SO_SNDBUF",
            asked: size,
            applied,
        })
    }

    /// getsockopt(SO_SNDBUF).
    pub fn send_buffer_size(&self) -> Step<usize> {
        self.getopt_size("SOL_SOCKET, SO_SNDBUF", |s| s.send_buffer_size())
    }

    /// SO_BROADCAST (socket(7)): without it, sendto a broadcast address fails with EACCES.
    pub fn set_broadcast(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_BROADCAST", bit(on), |s| s.set_broadcast(on))
    }

    /// SO_BINDTODEVICE (socket(7)): only packets of this interface are received, and sent
    /// packets leave by it. Needs CAP_NET_RAW on older kernels.
    pub fn bind_device(&self, iface: &str) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_BINDTODEVICE", format!("\"{iface}\""), |s| {
            s.bind_device(Some(iface.as_bytes()))
        })
    }

    /// IP_TTL (ip(7)) or IPV6_UNICAST_HOPS (ipv6(7)).
    pub fn set_ttl(&self, ttl: u32) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_UNICAST_HOPS", ttl.to_string(), |s| {
                s.set_unicast_hops_v6(ttl)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_TTL", ttl.to_string(), |s| s.set_ttl_v4(ttl))
        }
    }

    /// IP_TOS (ip(7)) or IPV6_TCLASS (ipv6(7)).
    pub fn set_tos(&self, tos: u32) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_TCLASS", tos.to_string(), |s| {
                s.set_tclass_v6(tos)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_TOS", tos.to_string(), |s| s.set_tos_v4(tos))
        }
    }

    /// TCP_NODELAY (tcp(7)): send small segments at once instead of waiting (Nagle, RFC 896).
    pub fn set_nodelay(&self, on: bool) -> Step<()> {
        self.setopt("IPPROTO_TCP, TCP_NODELAY", bit(on), |s| {
            s.set_tcp_nodelay(on)
        })
    }

    /// TCP_NOTSENT_LOWAT (tcp(7)): a write blocks (and poll reports the socket not writable)
    /// while more than `bytes` of the stream are queued but not yet sent. Unlike SO_SNDBUF it
    /// does not limit the data in flight, so the congestion window can still grow; it keeps the
    /// queue of unsent data, and so the memory a sender writes into, short.
    pub fn set_tcp_notsent_lowat(&self, bytes: u32) -> Step<()> {
        self.setopt("IPPROTO_TCP, TCP_NOTSENT_LOWAT", bytes.to_string(), |s| {
            s.set_tcp_notsent_lowat(bytes)
        })
    }

    /// SO_LINGER (socket(7)): close() waits up to this long for unsent data; zero makes close
    /// send a RST instead of a FIN.
    pub fn set_linger(&self, linger: Option<Duration>) -> Step<()> {
        let v = match linger {
            Some(d) => format!("{{on, {}s}}", d.as_secs()),
            None => "{off}".to_string(),
        };
        self.setopt("SOL_SOCKET, SO_LINGER", v, |s| s.set_linger(linger))
    }

    /// IPV6_V6ONLY (ipv6(7)): an AF_INET6 socket bound to `::` takes IPv6 only.
    pub fn set_only_v6(&self, on: bool) -> Step<()> {
        self.setopt("IPPROTO_IPV6, IPV6_V6ONLY", bit(on), |s| s.set_only_v6(on))
    }

    /// IP_MULTICAST_TTL / IPV6_MULTICAST_HOPS.
    pub fn set_multicast_ttl(&self, ttl: u32) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_MULTICAST_HOPS", ttl.to_string(), |s| {
                s.set_multicast_hops_v6(ttl)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_MULTICAST_TTL", ttl.to_string(), |s| {
                s.set_multicast_ttl_v4(ttl)
            })
        }
    }

    /// IP_MULTICAST_LOOP / IPV6_MULTICAST_LOOP: whether our own multicast comes back to us.
    pub fn set_multicast_loop(&self, on: bool) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_MULTICAST_LOOP", bit(on), |s| {
                s.set_multicast_loop_v6(on)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_MULTICAST_LOOP", bit(on), |s| {
                s.set_multicast_loop_v4(on)
            })
        }
    }

    /// IP_ADD_MEMBERSHIP / IPV6_ADD_MEMBERSHIP on `iface` (or the kernel's choice).
    pub fn join_multicast(&self, group: IpAddr, iface: Option<&str>) -> Step<()> {
        let index = match iface {
            None => 0,
            Some(name) => nix::net::if_::if_nametoindex(name).map_err(|e| StepError {
                call: "if_nametoindex",
                target: name.to_string(),
                source: e.into(),
            })?,
        };
        let shown = format!("{group}, ifindex {index}");
        match group {
            IpAddr::V4(g) => {
                let itf = match NonZeroU32::new(index) {
                    Some(_) => InterfaceIndexOrAddress::Index(index),
                    None => InterfaceIndexOrAddress::Address(std::net::Ipv4Addr::UNSPECIFIED),
                };
                self.setopt("IPPROTO_IP, IP_ADD_MEMBERSHIP", shown, |s| {
                    s.join_multicast_v4_n(&g, &itf)
                })
            }
            IpAddr::V6(g) => self.setopt("IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP", shown, |s| {
                s.join_multicast_v6(&g, index)
            }),
        }
    }

    /// IP_PKTINFO / IPV6_RECVPKTINFO: received datagrams carry their destination address
    /// ([`Datagram::to`](super::Datagram::to)).
    pub fn set_recv_pktinfo(&self, on: bool) -> Step<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_RECVPKTINFO", bit(on), |s| {
                Ok(setsockopt(s, sockopt::Ipv6RecvPacketInfo, &on)?)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_PKTINFO", bit(on), |s| {
                Ok(setsockopt(s, sockopt::Ipv4PacketInfo, &on)?)
            })
        }
    }

    /// SO_RXQ_OVFL (socket(7)): received datagrams carry the count of datagrams dropped so far
    /// for lack of receive buffer ([`Datagram::dropped`](super::Datagram::dropped)).
    pub fn set_rxq_ovfl(&self, on: bool) -> Step<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        self.setopt("SOL_SOCKET, SO_RXQ_OVFL", bit(on), |s| {
            Ok(setsockopt(s, sockopt::RxqOvfl, &i32::from(on))?)
        })
    }

    /// SO_RCVTIMEO: a blocking receive gives up with EAGAIN after this long.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Step<()> {
        let v = timeout.map_or("{0}".to_string(), |d| format!("{}ms", d.as_millis()));
        self.setopt("SOL_SOCKET, SO_RCVTIMEO", v, |s| {
            s.set_read_timeout(timeout)
        })
    }

    /// O_NONBLOCK via fcntl(2): calls that would block fail with EAGAIN instead.
    pub fn set_nonblocking(&self, on: bool) -> Step<()> {
        self.step(
            "fcntl",
            || format!("O_NONBLOCK={}", bit(on)),
            |_| 0,
            |s| s.set_nonblocking(on),
        )
    }
}

fn bit(on: bool) -> String {
    u8::from(on).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sock::Proto;
    use crate::trace::Recorder;

    fn udp() -> Sock {
        Sock::open(
            &"127.0.0.1:0".parse().unwrap(),
            Proto::Udp,
            &Recorder::off(),
        )
        .unwrap()
    }

    #[test]
    fn rcvbuf_is_doubled_and_differs_from_default() {
        let s = udp();
        let default = s.recv_buffer_size().unwrap();
        let asked = 48 * 1024;
        assert_ne!(
            default,
            asked * 2,
            "pick a size whose doubling is not the default"
        );
        let a = s.set_recv_buffer_size(asked).unwrap();
        // socket(7): "the kernel doubles this value (to allow space for bookkeeping overhead)".
        assert_eq!(a.applied, asked * 2);
    }

    #[test]
    fn sndbuf_is_doubled() {
        let s = udp();
        let a = s.set_send_buffer_size(40 * 1024).unwrap();
        assert_eq!(a.applied, 80 * 1024);
    }

    #[test]
    fn flags_read_back() {
        let s = udp();
        assert!(!s.socket().broadcast().unwrap());
        s.set_broadcast(true).unwrap();
        assert!(s.socket().broadcast().unwrap());
        assert!(!s.socket().reuse_address().unwrap());
        s.set_reuse_address(true).unwrap();
        assert!(s.socket().reuse_address().unwrap());
        let before = s.socket().ttl_v4().unwrap();
        assert_ne!(before, 7);
        s.set_ttl(7).unwrap();
        assert_eq!(s.socket().ttl_v4().unwrap(), 7);
    }

    #[test]
    fn nodelay_on_tcp() {
        let s = Sock::open(
            &"127.0.0.1:0".parse().unwrap(),
            Proto::Tcp,
            &Recorder::off(),
        )
        .unwrap();
        assert!(!s.socket().tcp_nodelay().unwrap());
        s.set_nodelay(true).unwrap();
        assert!(s.socket().tcp_nodelay().unwrap());
    }

    #[test]
    fn bind_device_to_unknown_interface_is_an_error() {
        let err = udp().bind_device("nosuchif0").unwrap_err();
        assert_eq!(err.call, "setsockopt");
        assert_eq!(err.errno_name().as_deref(), Some("ENODEV"));
    }
}
