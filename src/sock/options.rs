//! Socket options, grouped by level as the man pages group them: SOL_SOCKET (socket(7)),
//! IPPROTO_IP and IPPROTO_IPV6 (ip(7), ipv6(7)), IPPROTO_TCP (tcp(7)), IPPROTO_UDP (udp(7)).
//! Each setter is one traced setsockopt(2); the ones whose value the kernel may change
//! (SO_RCVBUF and SO_SNDBUF: doubled for bookkeeping and capped, socket(7); SO_RCVLOWAT on
//! TCP: capped at half the receive buffer) read the value back with a traced getsockopt(2).
//!
//! Every outcome is also data: the socket's [`OptionLog`] keeps, per option, an
//! [`OptOutcome`] (asked, read back, applied / adjusted / unsupported / refused, errno name),
//! whether the setter succeeded or not. Callers that need an option fail with the setter's
//! [`StepError`]; callers that run on without it (the bench) say so with [`Tolerated`], and
//! report the log.
//!
//! [`SockOpts`] is the plain configuration the CLI and the bench fill in; [`SockOpts::apply`]
//! sets everything it names, in a fixed order, before bind/connect.

use std::io;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use socket2::{InterfaceIndexOrAddress, Socket};

use super::{Sock, Step, StepError, sys};
use crate::os::errno;
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// What became of one socket option, as plain data: kept in the socket's [`OptionLog`] and
/// reported by the bench per side, so an option the kernel refused or changed is shown rather
/// than silently dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptOutcome {
    /// The level, e.g. `SOL_SOCKET`.
    pub level: String,
    /// The option, e.g. `SO_RCVBUF`.
    pub option: String,
    /// The value given to setsockopt(2), as the trace shows it: a number (flags 0 or 1, sizes
    /// in bytes, SO_BUSY_POLL in µs), or text such as `20ms` or `{off}`.
    pub asked: serde_json::Value,
    /// What getsockopt(2) read back right after the set, for the options whose value the
    /// kernel may change (SO_RCVBUF, SO_SNDBUF, SO_RCVLOWAT); null for the others and when
    /// the set failed.
    pub read_back: Option<i64>,
    /// What the kernel did with it.
    pub status: OptStatus,
    /// The errno's name when the kernel refused the option (`ENOPROTOOPT`, `EPERM`…).
    pub errno: Option<String>,
    /// Why `read_back` differs from `asked` (the kernel doubles buffer sizes, caps them…).
    pub note: Option<String>,
}

/// What the kernel did with an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptStatus {
    /// Set; where read back, the kernel kept the value (or doubled a buffer size, as socket(7)
    /// says it always does).
    Applied,
    /// Set, but the kernel applied another value than the one asked (a buffer capped at
    /// net.core.rmem_max, SO_RCVLOWAT capped by the receive buffer): see `read_back`.
    Adjusted,
    /// The kernel does not know the option for this socket (ENOPROTOOPT, EOPNOTSUPP…).
    Unsupported,
    /// The kernel refused the value (EPERM, EINVAL, ENODEV…).
    Refused,
}

impl OptOutcome {
    /// Whether the option is in force (applied, possibly with another value).
    pub fn in_force(&self) -> bool {
        matches!(self.status, OptStatus::Applied | OptStatus::Adjusted)
    }

    /// One line for people: `SO_RCVBUF asked 4194304, kernel applied 8388608`,
    /// `UDP_GRO unsupported (ENOPROTOOPT)`.
    pub fn describe(&self) -> String {
        let asked = match &self.asked {
            serde_json::Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        match (self.status, self.read_back) {
            (OptStatus::Applied | OptStatus::Adjusted, Some(got)) => {
                let why = self
                    .note
                    .as_deref()
                    .map_or(String::new(), |n| format!(": {n}"));
                format!("{} asked {asked}, kernel applied {got}{why}", self.option)
            }
            (OptStatus::Applied | OptStatus::Adjusted, None) => {
                format!("{} {asked} applied", self.option)
            }
            (OptStatus::Unsupported, _) => format!(
                "{} unsupported ({})",
                self.option,
                self.errno.as_deref().unwrap_or("?")
            ),
            (OptStatus::Refused, _) => format!(
                "{} {asked} refused ({})",
                self.option,
                self.errno.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// The outcomes of the options set on one socket, the last one per option, in the order the
/// options were first set. A handle: clones share the log, so it can outlive the socket (the
/// bench reads it after its worker threads ended).
#[derive(Debug, Clone, Default)]
pub struct OptionLog(Arc<Mutex<Vec<OptOutcome>>>);

impl OptionLog {
    /// The outcomes so far.
    pub fn outcomes(&self) -> Vec<OptOutcome> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OptOutcome>> {
        // A panic elsewhere while holding the lock leaves a valid Vec: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `o`, replacing an earlier outcome of the same option (so the log stays as short
    /// as the list of options, however often one is set).
    fn record(&self, o: OptOutcome) {
        let mut log = self.lock();
        match log
            .iter_mut()
            .find(|e| e.level == o.level && e.option == o.option)
        {
            Some(e) => *e = o,
            None => log.push(o),
        }
    }

    /// Adds the read-back value to the last outcome of `option`: `adjusted` unless it is
    /// `expected`, with `note` when it is not simply the value asked.
    fn read_back(&self, option: &str, got: i64, expected: i64, note: &str) {
        let mut log = self.lock();
        if let Some(e) = log.iter_mut().rev().find(|e| e.option == option) {
            e.read_back = Some(got);
            if got != expected {
                e.status = OptStatus::Adjusted;
            }
            if got != expected || e.asked.as_i64() != Some(got) {
                e.note = Some(note.to_string());
            }
        }
    }
}

/// For callers that run on without an option: the bench, where an option the kernel lacks
/// must not stop a benchmark. The failure is not an error there, and it is not lost either:
/// the socket's [`OptionLog`] keeps the outcome, and the bench report shows it.
pub trait Tolerated {
    /// Whether the option was set.
    fn tolerated(self) -> bool;
}

impl<T> Tolerated for Step<T> {
    fn tolerated(self) -> bool {
        self.is_ok()
    }
}

/// The trace arguments of a socket option call: `text`, and `level` and `option` as fields
/// from `level_name` (`SOL_SOCKET, SO_RCVBUF`).
fn option_args(text: String, level_name: &str) -> Args {
    let (level, option) = split_level(level_name);
    Args::new(text)
        .field("level", level)
        .field("option", option)
}

fn split_level(level_name: &str) -> (&str, &str) {
    level_name.split_once(", ").unwrap_or(("", level_name))
}

/// A value as the trace and the log show it: a number stays a number in JSON; `50ms` or
/// `"eth0"` stay text.
fn value_of(text: &str) -> serde_json::Value {
    text.parse::<i64>()
        .map_or_else(|_| serde_json::Value::from(text), Into::into)
}

/// The machinery every setter uses.
impl Sock {
    /// The outcomes of the options set on this socket so far (a shared handle).
    pub fn option_log(&self) -> OptionLog {
        self.opts.clone()
    }

    /// One traced setsockopt(2); its outcome goes to the [`OptionLog`] either way.
    fn setopt(
        &self,
        level_name: &str,
        value: String,
        set: impl FnOnce(&Socket) -> io::Result<()>,
    ) -> Step<()> {
        let r = self.step(
            "setsockopt",
            || {
                option_args(format!("{level_name}, {value}"), level_name)
                    .field("value", value_of(&value))
            },
            |_| 0,
            set,
        );
        let (level, option) = split_level(level_name);
        let errno = r.as_ref().err().and_then(StepError::errno);
        self.opts.record(OptOutcome {
            level: level.into(),
            option: option.into(),
            asked: value_of(&value),
            read_back: None,
            status: match errno {
                None => OptStatus::Applied,
                Some(e) if errno::is_unsupported(e) => OptStatus::Unsupported,
                Some(_) => OptStatus::Refused,
            },
            errno: errno.map(errno::name),
            note: None,
        });
        r
    }

    /// One traced getsockopt(2) of an integer option.
    fn getopt(&self, level_name: &str, get: impl FnOnce(&Socket) -> io::Result<i64>) -> Step<i64> {
        self.step(
            "getsockopt",
            || option_args(level_name.to_string(), level_name),
            |n| *n,
            get,
        )
    }

    /// A traced getsockopt(2) right after a set: the log's outcome gets the value, `adjusted`
    /// unless it is `expected` (`note` says why the kernel's value may differ from the one
    /// asked).
    fn read_back(
        &self,
        level_name: &str,
        expected: i64,
        note: &str,
        get: impl FnOnce(&Socket) -> io::Result<i64>,
    ) -> Step<i64> {
        let got = self.getopt(level_name, get)?;
        self.opts
            .read_back(split_level(level_name).1, got, expected, note);
        Ok(got)
    }
}

/// SOL_SOCKET options, socket(7).
impl Sock {
    /// SO_REUSEADDR: for TCP, bind over connections in TIME_WAIT; for UDP, share the port
    /// with other sockets that set it too.
    pub fn set_reuse_address(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_REUSEADDR", bit(on), |s| {
            s.set_reuse_address(on)
        })
    }

    /// SO_REUSEPORT: several sockets of the same user bind the same address and the kernel
    /// spreads incoming connections or datagrams among them.
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
        let applied = self.read_back(
            "SOL_SOCKET, SO_RCVBUF",
            size as i64 * 2,
            "the kernel doubles buffer sizes for its bookkeeping, then caps them at twice \
             net.core.rmem_max (socket(7))",
            |s| s.recv_buffer_size().map(|n| n as i64),
        )? as usize;
        Ok(Applied {
            option: "SO_RCVBUF",
            asked: size,
            applied,
        })
    }

    /// SO_RCVBUFFORCE: SO_RCVBUF beyond net.core.rmem_max, for a process with CAP_NET_ADMIN
    /// (EPERM otherwise, socket(7)); then a getsockopt(SO_RCVBUF) of what the kernel applied
    /// (doubled).
    pub fn set_recv_buffer_force(&self, size: usize) -> Step<Applied> {
        self.setopt("SOL_SOCKET, SO_RCVBUFFORCE", size.to_string(), |s| {
            nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::RcvBufForce, &size)
                .map_err(io::Error::from)
        })?;
        let applied = self.recv_buffer_size()?;
        self.opts.read_back(
            "SO_RCVBUFFORCE",
            applied as i64,
            size as i64 * 2,
            "the kernel doubles buffer sizes for its bookkeeping (socket(7))",
        );
        Ok(Applied {
            option: "SO_RCVBUFFORCE",
            asked: size,
            applied,
        })
    }

    /// getsockopt(SO_RCVBUF).
    pub fn recv_buffer_size(&self) -> Step<usize> {
        self.getopt("SOL_SOCKET, SO_RCVBUF", |s| {
            s.recv_buffer_size().map(|n| n as i64)
        })
        .map(|n| n as usize)
    }

    /// SO_SNDBUF, then a getsockopt of what the kernel applied (doubled, capped at wmem_max).
    pub fn set_send_buffer_size(&self, size: usize) -> Step<Applied> {
        self.setopt("SOL_SOCKET, SO_SNDBUF", size.to_string(), |s| {
            s.set_send_buffer_size(size)
        })?;
        let applied = self.read_back(
            "SOL_SOCKET, SO_SNDBUF",
            size as i64 * 2,
            "the kernel doubles buffer sizes for its bookkeeping, then caps them at twice \
             net.core.wmem_max (socket(7))",
            |s| s.send_buffer_size().map(|n| n as i64),
        )? as usize;
        Ok(Applied {
            option: "SO_SNDBUF",
            asked: size,
            applied,
        })
    }

    /// getsockopt(SO_SNDBUF).
    pub fn send_buffer_size(&self) -> Step<usize> {
        self.getopt("SOL_SOCKET, SO_SNDBUF", |s| {
            s.send_buffer_size().map(|n| n as i64)
        })
        .map(|n| n as usize)
    }

    /// SO_BROADCAST: without it, sendto a broadcast address fails with EACCES.
    pub fn set_broadcast(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_BROADCAST", bit(on), |s| s.set_broadcast(on))
    }

    /// SO_BINDTODEVICE: only packets of this interface are received, and sent packets leave
    /// by it. Needs CAP_NET_RAW on older kernels.
    pub fn bind_device(&self, iface: &str) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_BINDTODEVICE", format!("\"{iface}\""), |s| {
            s.bind_device(Some(iface.as_bytes()))
        })
    }

    /// SO_LINGER: close() waits up to this long for unsent data; zero makes close send a RST
    /// instead of a FIN.
    pub fn set_linger(&self, linger: Option<Duration>) -> Step<()> {
        let v = match linger {
            Some(d) => format!("{{on, {}s}}", d.as_secs()),
            None => "{off}".to_string(),
        };
        self.setopt("SOL_SOCKET, SO_LINGER", v, |s| s.set_linger(linger))
    }

    /// SO_RXQ_OVFL: received datagrams carry the count of datagrams dropped so far for lack
    /// of receive buffer ([`Datagram::dropped`](super::Datagram::dropped)).
    pub fn set_rxq_ovfl(&self, on: bool) -> Step<()> {
        use nix::sys::socket::{setsockopt, sockopt};
        self.setopt("SOL_SOCKET, SO_RXQ_OVFL", bit(on), |s| {
            Ok(setsockopt(s, sockopt::RxqOvfl, &i32::from(on))?)
        })
    }

    /// SO_RCVTIMEO: a blocking receive gives up with EAGAIN after this long.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_RCVTIMEO", timeout_text(timeout), |s| {
            s.set_read_timeout(timeout)
        })
    }

    /// SO_SNDTIMEO: a blocking send gives up after this long, with EAGAIN or with the count
    /// of bytes it did send.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_SNDTIMEO", timeout_text(timeout), |s| {
            s.set_write_timeout(timeout)
        })
    }

    /// SO_TIMESTAMPNS: every received message carries the kernel's receive time
    /// (CLOCK_REALTIME, ns) in an SCM_TIMESTAMPNS control message, which
    /// [`sys::recv_batch`] decodes.
    pub fn set_timestamp_ns(&self, on: bool) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_TIMESTAMPNS", bit(on), |s| {
            sys::set_timestamp_ns(s.as_fd(), on)
        })
    }

    /// SO_BUSY_POLL: a blocking receive busy-polls the device queue for up to `usecs` µs
    /// before it sleeps. Raising it above net.core.busy_read needs CAP_NET_ADMIN (EPERM).
    pub fn set_busy_poll(&self, usecs: u32) -> Step<()> {
        self.setopt("SOL_SOCKET, SO_BUSY_POLL", usecs.to_string(), |s| {
            sys::set_busy_poll(s.as_fd(), usecs)
        })
    }

    /// SO_RCVLOWAT: a blocking receive waits until `bytes` are queued (or the stream ends, or
    /// SO_RCVTIMEO passes) before it returns; then a getsockopt of what was applied (TCP caps
    /// it at half the receive buffer, net/ipv4/tcp.c `tcp_set_rcvlowat`).
    pub fn set_recv_lowat(&self, bytes: u32) -> Step<u32> {
        let bytes = bytes.min(i32::MAX as u32);
        self.setopt("SOL_SOCKET, SO_RCVLOWAT", bytes.to_string(), |s| {
            sys::set_recv_lowat(s.as_fd(), bytes)
        })?;
        let got = self.read_back(
            "SOL_SOCKET, SO_RCVLOWAT",
            bytes.into(),
            "TCP caps SO_RCVLOWAT at half the receive buffer",
            |s| sys::get_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_RCVLOWAT).map(i64::from),
        )?;
        Ok(got.max(0) as u32)
    }

    /// O_NONBLOCK via fcntl(2) (not a socket option, but set alongside them): calls that would
    /// block fail with EAGAIN instead.
    pub fn set_nonblocking(&self, on: bool) -> Step<()> {
        self.step(
            "fcntl",
            || format!("O_NONBLOCK={}", bit(on)),
            |_| 0,
            |s| s.set_nonblocking(on),
        )
    }
}

/// IPPROTO_IP options (ip(7)) and their IPPROTO_IPV6 twins (ipv6(7)): each setter picks the
/// one of the socket's family.
impl Sock {
    /// IP_TTL or IPV6_UNICAST_HOPS.
    pub fn set_ttl(&self, ttl: u32) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_UNICAST_HOPS", ttl.to_string(), |s| {
                s.set_unicast_hops_v6(ttl)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_TTL", ttl.to_string(), |s| s.set_ttl_v4(ttl))
        }
    }

    /// IP_TOS or IPV6_TCLASS.
    pub fn set_tos(&self, tos: u32) -> Step<()> {
        if self.is_ipv6() {
            self.setopt("IPPROTO_IPV6, IPV6_TCLASS", tos.to_string(), |s| {
                s.set_tclass_v6(tos)
            })
        } else {
            self.setopt("IPPROTO_IP, IP_TOS", tos.to_string(), |s| s.set_tos_v4(tos))
        }
    }

    /// IP_MULTICAST_TTL or IPV6_MULTICAST_HOPS.
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

    /// IP_MULTICAST_LOOP or IPV6_MULTICAST_LOOP: whether our own multicast comes back to us.
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

    /// IP_ADD_MEMBERSHIP or IPV6_ADD_MEMBERSHIP on `iface` (or the kernel's choice).
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

    /// IP_PKTINFO or IPV6_RECVPKTINFO: received datagrams carry their destination address
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
}

/// IPPROTO_IPV6 options without an IPv4 twin, ipv6(7).
impl Sock {
    /// IPV6_V6ONLY: an AF_INET6 socket bound to `::` takes IPv6 only.
    pub fn set_only_v6(&self, on: bool) -> Step<()> {
        self.setopt("IPPROTO_IPV6, IPV6_V6ONLY", bit(on), |s| s.set_only_v6(on))
    }
}

/// IPPROTO_TCP options, tcp(7).
impl Sock {
    /// TCP_NODELAY: send small segments at once instead of waiting (Nagle, RFC 896).
    pub fn set_nodelay(&self, on: bool) -> Step<()> {
        self.setopt("IPPROTO_TCP, TCP_NODELAY", bit(on), |s| {
            s.set_tcp_nodelay(on)
        })
    }

    /// TCP_NOTSENT_LOWAT: a write blocks (and poll reports the socket not writable) while
    /// more than `bytes` of the stream are queued but not yet sent. Unlike SO_SNDBUF it does
    /// not limit the data in flight, so the congestion window can still grow; it keeps the
    /// queue of unsent data, and so the memory a sender writes into, short.
    pub fn set_tcp_notsent_lowat(&self, bytes: u32) -> Step<()> {
        self.setopt("IPPROTO_TCP, TCP_NOTSENT_LOWAT", bytes.to_string(), |s| {
            s.set_tcp_notsent_lowat(bytes)
        })
    }
}

/// IPPROTO_UDP options, udp(7).
impl Sock {
    /// UDP_SEGMENT (UDP GSO, Linux 4.18): every send of more than `size` bytes is split by
    /// the kernel into datagrams of `size` bytes; 0 turns it off. ENOPROTOOPT: no GSO here.
    pub fn set_udp_segment(&self, size: u16) -> Step<()> {
        self.setopt("IPPROTO_UDP, UDP_SEGMENT", size.to_string(), |s| {
            sys::set_udp_segment(s.as_fd(), size)
        })
    }

    /// UDP_GRO (Linux 5.0): the kernel may hand over several coalesced datagrams at once,
    /// with their segment size in a control message ([`sys::recv_batch`] splits them).
    pub fn set_udp_gro(&self, on: bool) -> Step<()> {
        self.setopt("IPPROTO_UDP, UDP_GRO", bit(on), |s| {
            sys::set_udp_gro(s.as_fd(), on)
        })
    }
}

fn bit(on: bool) -> String {
    u8::from(on).to_string()
}

fn timeout_text(timeout: Option<Duration>) -> String {
    timeout.map_or("{0}".to_string(), |d| format!("{}ms", d.as_millis()))
}

#[cfg(test)]
mod tests {
    //! One round trip per option: the value differs from the default before the set, and
    //! getsockopt(2) reads the kernel's value after it (or, where there is nothing to read,
    //! the error or the effect is asserted).

    use super::*;
    use crate::sock::Proto;
    use crate::trace::{Collector, Recorder};

    fn open(at: &str, proto: Proto) -> Sock {
        Sock::open(&at.parse().unwrap(), proto, &Recorder::off()).unwrap()
    }

    fn udp() -> Sock {
        open("127.0.0.1:0", Proto::Udp)
    }

    fn udp6() -> Sock {
        open("[::1]:0", Proto::Udp)
    }

    fn tcp() -> Sock {
        open("127.0.0.1:0", Proto::Tcp)
    }

    /// getsockopt of an int option, untraced.
    fn int(s: &Sock, level: libc::c_int, name: libc::c_int) -> i32 {
        sys::get_int(s.as_fd(), level, name).unwrap()
    }

    /// The log's outcome of `option`.
    fn logged(s: &Sock, option: &str) -> OptOutcome {
        s.option_log()
            .outcomes()
            .into_iter()
            .find(|o| o.option == option)
            .unwrap_or_else(|| panic!("{option} not in the log"))
    }

    #[test]
    fn so_reuseaddr() {
        let s = udp();
        assert!(!s.socket().reuse_address().unwrap());
        s.set_reuse_address(true).unwrap();
        assert!(s.socket().reuse_address().unwrap());
    }

    #[test]
    fn so_reuseport() {
        let s = udp();
        assert!(!s.socket().reuse_port().unwrap());
        s.set_reuse_port(true).unwrap();
        assert!(s.socket().reuse_port().unwrap());
    }

    #[test]
    fn so_rcvbuf_is_doubled_and_differs_from_default() {
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
        assert_eq!(s.recv_buffer_size().unwrap(), asked * 2);
        let o = logged(&s, "SO_RCVBUF");
        assert_eq!(
            (o.status, o.read_back, o.asked.as_i64()),
            (
                OptStatus::Applied,
                Some(asked as i64 * 2),
                Some(asked as i64)
            )
        );
        assert!(o.note.is_some_and(|n| n.contains("doubles")));
    }

    /// net.core.rmem_max, the cap on SO_RCVBUF (socket(7)).
    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn so_rcvbuf_above_rmem_max_is_adjusted() {
        let max = rmem_max();
        let s = udp();
        let a = s.set_recv_buffer_size(max * 2).unwrap();
        // Capped at rmem_max, then doubled: twice rmem_max, not four times.
        assert_eq!(a.applied, max * 2);
        let o = logged(&s, "SO_RCVBUF");
        assert_eq!(o.status, OptStatus::Adjusted, "{o:?}");
        assert!(o.describe().contains("rmem_max"), "{}", o.describe());
    }

    #[test]
    fn so_rcvbufforce_passes_rmem_max_with_cap_net_admin_and_is_refused_without() {
        let max = rmem_max();
        let s = udp();
        let r = s.set_recv_buffer_force(max * 2);
        let o = logged(&s, "SO_RCVBUFFORCE");
        if nix::unistd::geteuid().is_root() {
            // Beyond rmem_max, then doubled: four times rmem_max.
            assert_eq!(r.unwrap().applied, max * 4);
            assert_eq!(s.recv_buffer_size().unwrap(), max * 4);
            assert_eq!(o.status, OptStatus::Applied, "{o:?}");
        } else {
            eprintln!("not root: checking the refusal (EPERM) instead of the buffer");
            assert!(r.is_err());
            assert_eq!(
                (o.status, o.errno.as_deref()),
                (OptStatus::Refused, Some("EPERM"))
            );
        }
    }

    #[test]
    fn so_sndbuf_is_doubled() {
        let s = udp();
        assert_ne!(s.send_buffer_size().unwrap(), 80 * 1024);
        let a = s.set_send_buffer_size(40 * 1024).unwrap();
        assert_eq!(a.applied, 80 * 1024);
        assert_eq!(s.send_buffer_size().unwrap(), 80 * 1024);
    }

    #[test]
    fn so_broadcast() {
        let s = udp();
        assert!(!s.socket().broadcast().unwrap());
        s.set_broadcast(true).unwrap();
        assert!(s.socket().broadcast().unwrap());
    }

    #[test]
    fn so_bindtodevice() {
        let err = udp().bind_device("nosuchif0").unwrap_err();
        assert_eq!(err.call, "setsockopt");
        assert_eq!(err.errno_name().as_deref(), Some("ENODEV"));
        let s = udp();
        match s.bind_device("lo") {
            Ok(()) => assert_eq!(s.socket().device().unwrap().as_deref(), Some(&b"lo"[..])),
            // Before Linux 5.7 binding needs CAP_NET_RAW: then the refusal is the round trip.
            Err(e) => assert_eq!(e.errno_name().as_deref(), Some("EPERM")),
        }
        let o = logged(&s, "SO_BINDTODEVICE");
        assert_eq!(o.asked, serde_json::json!("\"lo\""));
    }

    #[test]
    fn so_linger() {
        let s = tcp();
        assert_eq!(s.socket().linger().unwrap(), None);
        s.set_linger(Some(Duration::from_secs(3))).unwrap();
        assert_eq!(s.socket().linger().unwrap(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn so_rxq_ovfl() {
        let s = udp();
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL), 0);
        s.set_rxq_ovfl(true).unwrap();
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL), 1);
    }

    #[test]
    fn so_rcvtimeo() {
        let s = udp();
        assert_eq!(s.socket().read_timeout().unwrap(), None);
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(
            s.socket().read_timeout().unwrap(),
            Some(Duration::from_millis(20))
        );
        assert_eq!(logged(&s, "SO_RCVTIMEO").asked, serde_json::json!("20ms"));
    }

    #[test]
    fn so_sndtimeo() {
        let s = tcp();
        assert_eq!(s.socket().write_timeout().unwrap(), None);
        s.set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert_eq!(
            s.socket().write_timeout().unwrap(),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn so_timestampns() {
        let s = udp();
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS), 0);
        s.set_timestamp_ns(true).unwrap();
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS), 1);
    }

    #[test]
    fn so_busy_poll() {
        let s = udp();
        let before = int(&s, libc::SOL_SOCKET, libc::SO_BUSY_POLL);
        assert_ne!(before, 50);
        match s.set_busy_poll(50) {
            Ok(()) => assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_BUSY_POLL), 50),
            // Kernels that want CAP_NET_ADMIN to raise it: refused, and the value unchanged.
            Err(e) => {
                assert_eq!(e.errno_name().as_deref(), Some("EPERM"));
                assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_BUSY_POLL), before);
                assert_eq!(logged(&s, "SO_BUSY_POLL").status, OptStatus::Refused);
            }
        }
    }

    #[test]
    fn so_rcvlowat_reads_back_and_tcp_caps_it() {
        let s = udp();
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_RCVLOWAT), 1);
        assert_eq!(s.set_recv_lowat(4096).unwrap(), 4096);
        assert_eq!(int(&s, libc::SOL_SOCKET, libc::SO_RCVLOWAT), 4096);
        assert_eq!(logged(&s, "SO_RCVLOWAT").status, OptStatus::Applied);
        // TCP with a fixed receive buffer: at most half of it (tcp_set_rcvlowat).
        let t = tcp();
        let rcvbuf = t.set_recv_buffer_size(64 * 1024).unwrap().applied as u32;
        let got = t.set_recv_lowat(rcvbuf * 4).unwrap();
        assert_eq!(got, rcvbuf / 2);
        let o = logged(&t, "SO_RCVLOWAT");
        assert_eq!(o.status, OptStatus::Adjusted, "{o:?}");
        assert_eq!(o.read_back, Some(i64::from(rcvbuf / 2)));
    }

    #[test]
    fn ip_ttl_and_ipv6_unicast_hops() {
        let s = udp();
        assert_ne!(s.socket().ttl_v4().unwrap(), 7);
        s.set_ttl(7).unwrap();
        assert_eq!(s.socket().ttl_v4().unwrap(), 7);
        let s6 = udp6();
        assert_ne!(s6.socket().unicast_hops_v6().unwrap(), 9);
        s6.set_ttl(9).unwrap();
        assert_eq!(s6.socket().unicast_hops_v6().unwrap(), 9);
        assert_eq!(logged(&s6, "IPV6_UNICAST_HOPS").level, "IPPROTO_IPV6");
    }

    #[test]
    fn ip_tos_and_ipv6_tclass() {
        let s = udp();
        assert_eq!(s.socket().tos_v4().unwrap(), 0);
        s.set_tos(0x10).unwrap();
        assert_eq!(s.socket().tos_v4().unwrap(), 0x10);
        let s6 = udp6();
        assert_eq!(s6.socket().tclass_v6().unwrap(), 0);
        s6.set_tos(0x20).unwrap();
        assert_eq!(s6.socket().tclass_v6().unwrap(), 0x20);
    }

    #[test]
    fn ip_multicast_ttl_and_ipv6_multicast_hops() {
        let s = udp();
        assert_eq!(s.socket().multicast_ttl_v4().unwrap(), 1);
        s.set_multicast_ttl(4).unwrap();
        assert_eq!(s.socket().multicast_ttl_v4().unwrap(), 4);
        let s6 = udp6();
        assert_eq!(s6.socket().multicast_hops_v6().unwrap(), 1);
        s6.set_multicast_ttl(5).unwrap();
        assert_eq!(s6.socket().multicast_hops_v6().unwrap(), 5);
    }

    #[test]
    fn ip_and_ipv6_multicast_loop() {
        let s = udp();
        assert!(s.socket().multicast_loop_v4().unwrap());
        s.set_multicast_loop(false).unwrap();
        assert!(!s.socket().multicast_loop_v4().unwrap());
        let s6 = udp6();
        assert!(s6.socket().multicast_loop_v6().unwrap());
        s6.set_multicast_loop(false).unwrap();
        assert!(!s6.socket().multicast_loop_v6().unwrap());
    }

    #[test]
    fn ip_pktinfo_and_ipv6_recvpktinfo() {
        use nix::sys::socket::{getsockopt, sockopt};
        let s = udp();
        assert!(!getsockopt(s.socket(), sockopt::Ipv4PacketInfo).unwrap());
        s.set_recv_pktinfo(true).unwrap();
        assert!(getsockopt(s.socket(), sockopt::Ipv4PacketInfo).unwrap());
        let s6 = udp6();
        assert!(!getsockopt(s6.socket(), sockopt::Ipv6RecvPacketInfo).unwrap());
        s6.set_recv_pktinfo(true).unwrap();
        assert!(getsockopt(s6.socket(), sockopt::Ipv6RecvPacketInfo).unwrap());
    }

    #[test]
    fn ip_add_membership_of_a_unicast_address_is_refused() {
        // Joining a real group would send IGMP on a host interface: that round trip (group
        // joined, second join EADDRINUSE) runs in a namespace, tests/integration/sockopts.rs.
        // Here, the kernel's check of the address, which sends nothing.
        let s = udp();
        let err = s
            .join_multicast("127.0.0.1".parse().unwrap(), None)
            .unwrap_err();
        assert_eq!(err.errno_name().as_deref(), Some("EINVAL"));
        assert_eq!(logged(&s, "IP_ADD_MEMBERSHIP").status, OptStatus::Refused);
    }

    #[test]
    fn ipv6_v6only() {
        let s6 = udp6();
        assert!(!s6.socket().only_v6().unwrap());
        s6.set_only_v6(true).unwrap();
        assert!(s6.socket().only_v6().unwrap());
    }

    #[test]
    fn tcp_nodelay() {
        let s = tcp();
        assert!(!s.socket().tcp_nodelay().unwrap());
        s.set_nodelay(true).unwrap();
        assert!(s.socket().tcp_nodelay().unwrap());
    }

    #[test]
    fn tcp_notsent_lowat() {
        let s = tcp();
        assert_ne!(s.socket().tcp_notsent_lowat().unwrap(), 65536);
        s.set_tcp_notsent_lowat(65536).unwrap();
        assert_eq!(s.socket().tcp_notsent_lowat().unwrap(), 65536);
    }

    #[test]
    fn udp_segment() {
        let s = udp();
        assert_eq!(int(&s, libc::SOL_UDP, libc::UDP_SEGMENT), 0);
        s.set_udp_segment(1400).unwrap();
        assert_eq!(int(&s, libc::SOL_UDP, libc::UDP_SEGMENT), 1400);
        s.set_udp_segment(0).unwrap();
        assert_eq!(int(&s, libc::SOL_UDP, libc::UDP_SEGMENT), 0);
        // The log keeps the last outcome per option.
        let log = s.option_log().outcomes();
        assert_eq!(log.len(), 1, "{log:?}");
        assert_eq!(log[0].asked, serde_json::json!(0));
    }

    #[test]
    fn udp_gro() {
        let s = udp();
        assert_eq!(int(&s, libc::SOL_UDP, libc::UDP_GRO), 0);
        s.set_udp_gro(true).unwrap();
        assert_eq!(int(&s, libc::SOL_UDP, libc::UDP_GRO), 1);
    }

    #[test]
    fn an_option_the_socket_lacks_is_logged_unsupported() {
        // UDP_GRO on a TCP socket: the kernel does not know it there.
        let t = tcp();
        let err = t.set_udp_gro(true).unwrap_err();
        assert_eq!(err.errno_name().as_deref(), Some("ENOPROTOOPT"));
        assert!(!t.set_udp_gro(true).tolerated());
        let o = logged(&t, "UDP_GRO");
        assert_eq!(
            (o.level.as_str(), o.status, o.errno.as_deref()),
            ("IPPROTO_UDP", OptStatus::Unsupported, Some("ENOPROTOOPT"))
        );
        assert!(!o.in_force());
        assert_eq!(o.describe(), "UDP_GRO unsupported (ENOPROTOOPT)");
    }

    #[test]
    fn new_setters_are_traced_like_the_others() {
        let col = Collector::new();
        let s = Sock::open(
            &"127.0.0.1:0".parse().unwrap(),
            Proto::Udp,
            &Recorder::new(col.clone()),
        )
        .unwrap();
        s.set_udp_gro(true).unwrap();
        s.set_busy_poll(0).unwrap();
        s.set_recv_lowat(2048).unwrap();
        let ev = col.events();
        let calls: Vec<_> = ev.iter().map(|e| (e.call, e.args.as_str())).collect();
        assert_eq!(
            calls,
            [
                ("socket", "AF_INET, SOCK_DGRAM, IPPROTO_UDP"),
                ("setsockopt", "IPPROTO_UDP, UDP_GRO, 1"),
                ("setsockopt", "SOL_SOCKET, SO_BUSY_POLL, 0"),
                ("setsockopt", "SOL_SOCKET, SO_RCVLOWAT, 2048"),
                ("getsockopt", "SOL_SOCKET, SO_RCVLOWAT"),
            ]
        );
        assert_eq!(ev[1].fields["option"], "UDP_GRO");
        assert_eq!(ev[1].fields["value"], 1);
    }
}
