//! The step layer: [`Sock`] wraps one socket, and each of its methods makes exactly one
//! syscall and hands exactly one [`Event`] to the recorder. Steps are
//! untyped on purpose: any call in any order, so experiments can do "wrong" orders such as
//! bind after sendto and observe what the kernel says.
//!
//! After each call, when tracing is on, the socket's local (getsockname(2)) and peer
//! (getpeername(2)) addresses are read again; the event carries them when they changed (an
//! implicit bind shows up right after the sendto that caused it).
//!
//! [`tcp`] and [`udp`] compose the steps into the patterns; [`options`] sets socket options and
//! reads back what the kernel applied.

pub mod datagram;
pub mod error;
pub mod holders;
pub mod options;
pub mod sys;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use socket2::{Domain, Protocol, Socket, Type};

pub use datagram::Datagram;
pub use error::StepError;

use crate::trace::{Args, Event, Fields, Outcome, Recorder, Span};

/// Transport protocol of a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// SOCK_STREAM / IPPROTO_TCP.
    Tcp,
    /// SOCK_DGRAM / IPPROTO_UDP.
    Udp,
}

/// A socket whose every call is a traced step.
pub struct Sock {
    socket: Socket,
    proto: Proto,
    v6: bool,
    rec: Recorder,
    /// Last local/peer addresses reported in the trace; only maintained while tracing.
    seen: Mutex<(Option<SocketAddr>, Option<SocketAddr>)>,
    /// The outcome of every option set on this socket ([`options`]).
    opts: options::OptionLog,
}

/// Result of a step: the value, or a [`StepError`] naming the call and its target.
pub type Step<T> = Result<T, StepError>;

impl Sock {
    /// socket(2): a new TCP or UDP socket of the family of `like` (IPv4 or IPv6).
    pub fn open(like: &SocketAddr, proto: Proto, rec: &Recorder) -> Step<Self> {
        let domain = Domain::for_address(*like);
        let (ty, protocol, names) = match proto {
            Proto::Tcp => (Type::STREAM, Protocol::TCP, "SOCK_STREAM, IPPROTO_TCP"),
            Proto::Udp => (Type::DGRAM, Protocol::UDP, "SOCK_DGRAM, IPPROTO_UDP"),
        };
        let fam = if like.is_ipv4() {
            "AF_INET"
        } else {
            "AF_INET6"
        };
        let args = || format!("{fam}, {names}");
        let start = rec.is_on().then(SystemTime::now);
        let result = Socket::new(domain, ty, Some(protocol));
        rec.record(|| Event {
            fd: -1,
            call: "socket",
            fields: Args::new("")
                .field("domain", fam)
                .field("sock_type", names.split(", ").next())
                .field("protocol", names.split(", ").nth(1))
                .fields,
            args: args(),
            result: match &result {
                Ok(s) => Outcome::Ok(s.as_raw_fd().into()),
                Err(e) => outcome_err(e),
            },
            local: None,
            peer: None,
            span: start.map(Span::since),
        });
        let socket = result.map_err(|source| StepError {
            call: "socket",
            target: args(),
            source,
        })?;
        Ok(Self::wrap(socket, proto, like.is_ipv6(), rec))
    }

    /// The trace starts from the addresses the socket has now (for a new socket the wildcard
    /// with port 0, which is no news), so only real changes are shown.
    fn wrap(socket: Socket, proto: Proto, v6: bool, rec: &Recorder) -> Self {
        let seen = match rec.is_on() {
            true => (local_of(&socket), peer_of(&socket)),
            false => (None, None),
        };
        Self {
            socket,
            proto,
            v6,
            rec: rec.clone(),
            seen: Mutex::new(seen),
            opts: options::OptionLog::default(),
        }
    }

    /// The protocol this socket was opened with.
    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Whether this is an AF_INET6 socket.
    pub fn is_ipv6(&self) -> bool {
        self.v6
    }

    /// The underlying socket2 socket, for calls the step layer does not cover.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The file descriptor.
    pub fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    /// The recorder this socket reports to.
    pub fn recorder(&self) -> &Recorder {
        &self.rec
    }

    /// getsockname(2), untraced: the local address, if the socket has one.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        local_of(&self.socket)
    }

    /// getpeername(2), untraced: the peer address, if the socket is connected.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        peer_of(&self.socket)
    }

    /// Runs one syscall as a step: calls `f`, records the event (with `args` and the return
    /// value `ret` gives), and turns a failure into a [`StepError`].
    pub(crate) fn step<T, A: Into<Args>>(
        &self,
        call: &'static str,
        args: impl Fn() -> A,
        ret: impl FnOnce(&T) -> i64,
        f: impl FnOnce(&Socket) -> io::Result<T>,
    ) -> Step<T> {
        let start = self.rec.is_on().then(SystemTime::now);
        let result = f(&self.socket);
        if self.rec.is_on() {
            let outcome = match &result {
                Ok(v) => Outcome::Ok(ret(v)),
                Err(e) => outcome_err(e),
            };
            let (local, peer) = self.changed_addrs();
            self.rec.record(|| {
                let Args { text, fields } = args().into();
                Event {
                    fd: self.fd(),
                    call,
                    fields,
                    args: text,
                    result: outcome,
                    local,
                    peer,
                    span: start.map(Span::since),
                }
            });
        }
        result.map_err(|source| StepError {
            call,
            target: args().into().text,
            source,
        })
    }

    fn changed_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let now = (self.local_addr(), self.peer_addr());
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let local = (now.0 != seen.0).then_some(now.0).flatten();
        let peer = (now.1 != seen.1).then_some(now.1).flatten();
        *seen = now;
        (local, peer)
    }

    /// bind(2).
    pub fn bind(&self, addr: SocketAddr) -> Step<()> {
        self.step(
            "bind",
            || Args::new(addr.to_string()).field("addr", addr),
            |_| 0,
            |s| s.bind(&addr.into()),
        )
    }

    /// listen(2) with the given backlog.
    pub fn listen(&self, backlog: i32) -> Step<()> {
        self.step(
            "listen",
            || Args::new(backlog.to_string()).field("backlog", backlog),
            |_| 0,
            |s| s.listen(backlog),
        )
    }

    /// accept(2): the connected socket and the client's address. The event carries the new
    /// socket's local and peer addresses.
    pub fn accept(&self) -> Step<(Self, SocketAddr)> {
        let start = self.rec.is_on().then(SystemTime::now);
        let result = self.socket.accept();
        let mut child = None;
        if let Ok((socket, _)) = &result {
            child = Some((socket.as_raw_fd(), local_of(socket), peer_of(socket)));
        }
        self.rec.record(|| Event {
            fd: self.fd(),
            call: "accept",
            fields: Fields::new(),
            args: String::new(),
            result: match (&result, child) {
                (Ok(_), Some((fd, _, _))) => Outcome::Ok(fd.into()),
                (Err(e), _) => outcome_err(e),
                (Ok(_), None) => Outcome::Ok(-1),
            },
            local: child.and_then(|c| c.1),
            peer: child.and_then(|c| c.2),
            span: start.map(Span::since),
        });
        let (socket, from) = result.map_err(|source| StepError {
            call: "accept",
            target: String::new(),
            source,
        })?;
        let from = from.as_socket().ok_or_else(|| StepError {
            call: "accept",
            target: String::new(),
            source: io::Error::other("peer is not an IP address"),
        })?;
        Ok((Self::wrap(socket, self.proto, self.v6, &self.rec), from))
    }

    /// connect(2). On UDP this only sets the default destination and the source address;
    /// nothing is sent (udp(7)).
    pub fn connect(&self, addr: SocketAddr) -> Step<()> {
        self.step(
            "connect",
            || Args::new(addr.to_string()).field("addr", addr),
            |_| 0,
            |s| s.connect(&addr.into()),
        )
    }

    /// connect(2) with a timeout (nonblocking connect, then poll(2)). When the time runs out
    /// the error is ETIMEDOUT, as when the kernel itself gives up on the SYNs.
    pub fn connect_timeout(&self, addr: SocketAddr, timeout: Duration) -> Step<()> {
        self.step(
            "connect",
            || {
                Args::new(addr.to_string())
                    .field("addr", addr)
                    .field("timeout_ms", timeout.as_millis() as u64)
            },
            |_| 0,
            |s| {
                s.connect_timeout(&addr.into(), timeout).map_err(|e| {
                    match (e.kind(), e.raw_os_error()) {
                        (io::ErrorKind::TimedOut, None) => {
                            io::Error::from_raw_os_error(libc::ETIMEDOUT)
                        }
                        _ => e,
                    }
                })
            },
        )
    }

    /// send(2) with MSG_NOSIGNAL, so a vanished peer is an EPIPE error, not a SIGPIPE.
    pub fn send(&self, buf: &[u8]) -> Step<usize> {
        self.step(
            "send",
            || Args::new(format!("{} bytes", buf.len())).field("len", buf.len()),
            |n| *n as i64,
            |s| s.send_with_flags(buf, libc::MSG_NOSIGNAL),
        )
    }

    /// sendto(2) with MSG_NOSIGNAL.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> Step<usize> {
        self.step(
            "sendto",
            || {
                Args::new(format!("{} bytes, {to}", buf.len()))
                    .field("len", buf.len())
                    .field("to", to)
            },
            |n| *n as i64,
            |s| s.send_to_with_flags(buf, &to.into(), libc::MSG_NOSIGNAL),
        )
    }

    /// recv(2) into `buf`: on TCP the next bytes of the stream (0 = the peer closed); on UDP
    /// the next datagram, silently cut to `buf.len()`.
    pub fn recv(&self, buf: &mut [u8]) -> Step<usize> {
        let cap = buf.len();
        self.step(
            "recv",
            || Args::new(format!("{cap}")).field("size", cap),
            |n| *n as i64,
            |s| io::Read::read(&mut &*s, buf),
        )
    }

    /// recvmsg(2) with MSG_TRUNC for one datagram: see [`sys::recv_datagram`]. `flags` is
    /// OR-ed in (0, MSG_DONTWAIT, MSG_PEEK).
    pub fn recv_datagram(&self, buf: &mut [u8], flags: i32) -> Step<Datagram> {
        let cap = buf.len();
        let d = self.step(
            "recvmsg",
            || {
                let flags = format!("MSG_TRUNC{}", flag_suffix(flags));
                Args::new(format!("{cap}, {flags}"))
                    .field("size", cap)
                    .field("flags", flags)
            },
            |d: &Datagram| d.real_len as i64,
            |s| sys::recv_datagram(s.as_fd(), buf, flags),
        )?;
        Ok(d)
    }

    /// shutdown(2): SHUT_WR sends a FIN (half-close), SHUT_RD stops reading.
    pub fn shutdown(&self, how: Shutdown) -> Step<()> {
        let name = match how {
            Shutdown::Read => "SHUT_RD",
            Shutdown::Write => "SHUT_WR",
            Shutdown::Both => "SHUT_RDWR",
        };
        self.step(
            "shutdown",
            || Args::new(name).field("how", name),
            |_| 0,
            |s| s.shutdown(how),
        )
    }

    /// splice(2) from `pipe` into this socket, up to `len` bytes.
    pub fn splice_in(&self, pipe: BorrowedFd<'_>, len: usize) -> Step<usize> {
        self.step(
            "splice",
            || {
                Args::new(format!("fd {} -> socket, {len}", pipe.as_raw_fd()))
                    .field("from_fd", pipe.as_raw_fd())
                    .field("size", len)
            },
            |n| *n as i64,
            |s| sys::splice(pipe, s.as_fd(), len, true),
        )
    }

    /// sendfile(2) from `file` (at its current offset, which advances) into this socket, up
    /// to `len` bytes (0 = the file's end). The bytes go from the page cache to the socket
    /// without passing through user space.
    pub fn sendfile_in(&self, file: BorrowedFd<'_>, len: usize) -> Step<usize> {
        self.step(
            "sendfile",
            || {
                Args::new(format!("fd {} -> socket, {len}", file.as_raw_fd()))
                    .field("from_fd", file.as_raw_fd())
                    .field("size", len)
            },
            |n| *n as i64,
            |s| Ok(nix::sys::sendfile::sendfile(s, file, None, len)?),
        )
    }

    /// splice(2) from this socket into `pipe`, up to `len` bytes (0 = the peer closed).
    pub fn splice_out(&self, pipe: BorrowedFd<'_>, len: usize) -> Step<usize> {
        self.step(
            "splice",
            || {
                Args::new(format!("socket -> fd {}, {len}", pipe.as_raw_fd()))
                    .field("to_fd", pipe.as_raw_fd())
                    .field("size", len)
            },
            |n| *n as i64,
            |s| sys::splice(s.as_fd(), pipe, len, false),
        )
    }

    /// getsockopt(TCP_INFO), untraced: RTT, cwnd and retransmits of a TCP connection.
    pub fn tcp_info(&self) -> io::Result<sys::TcpInfo> {
        sys::tcp_info(self.socket.as_fd())
    }

    /// close(2), traced. Dropping a `Sock` also closes it, untraced.
    pub fn close(self) {
        let fd = self.fd();
        self.rec.record(|| Event {
            fd,
            call: "close",
            fields: Fields::new(),
            args: String::new(),
            result: Outcome::Ok(0),
            local: None,
            peer: None,
            // Recorded just before the socket is dropped (closed), so the FIN comes after.
            span: Some(Span::now()),
        });
    }
}

impl AsFd for Sock {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn local_of(s: &Socket) -> Option<SocketAddr> {
    s.local_addr().ok().and_then(|a| a.as_socket())
}

fn peer_of(s: &Socket) -> Option<SocketAddr> {
    s.peer_addr().ok().and_then(|a| a.as_socket())
}

fn outcome_err(e: &io::Error) -> Outcome {
    let errno = e.raw_os_error().unwrap_or(0);
    Outcome::Err {
        errno,
        name: crate::os::errno::name(errno),
    }
}

fn flag_suffix(flags: i32) -> String {
    let mut s = String::new();
    if flags & libc::MSG_DONTWAIT != 0 {
        s.push_str("|MSG_DONTWAIT");
    }
    if flags & libc::MSG_PEEK != 0 {
        s.push_str("|MSG_PEEK");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Collector;

    #[test]
    fn implicit_bind_shows_after_sendto() {
        let rx = Sock::open(
            &"127.0.0.1:0".parse().unwrap(),
            Proto::Udp,
            &Recorder::off(),
        )
        .unwrap();
        rx.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = rx.local_addr().unwrap();
        let col = Collector::new();
        let tx = Sock::open(&to, Proto::Udp, &Recorder::new(col.clone())).unwrap();
        assert_eq!(tx.local_addr().unwrap().port(), 0);
        tx.send_to(b"hello", to).unwrap();
        let ev = col.events();
        assert_eq!(
            ev.iter().map(|e| e.call).collect::<Vec<_>>(),
            ["socket", "sendto"]
        );
        let local = ev[1].local.expect("sendto changed the local address");
        assert_ne!(local.port(), 0, "the kernel picked an ephemeral port");
        let mut buf = [0u8; 3];
        let d = rx.recv_datagram(&mut buf, 0).unwrap();
        assert_eq!((d.len, d.real_len, d.truncated), (3, 5, true));
        assert_eq!(d.from.unwrap().port(), local.port());
        assert_eq!(&buf, b"hel");
    }

    #[test]
    fn failed_bind_records_errno() {
        let a = Sock::open(
            &"127.0.0.1:0".parse().unwrap(),
            Proto::Tcp,
            &Recorder::off(),
        )
        .unwrap();
        a.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        a.listen(1).unwrap();
        let taken = a.local_addr().unwrap();
        let col = Collector::new();
        let b = Sock::open(&taken, Proto::Tcp, &Recorder::new(col.clone())).unwrap();
        let err = b.bind(taken).unwrap_err();
        assert_eq!(err.errno_name().as_deref(), Some("EADDRINUSE"));
        assert_eq!(col.events()[1].errno_name(), Some("EADDRINUSE"));
        assert!(err.to_string().starts_with(&format!(
            "bind {taken}: address already in use (EADDRINUSE)"
        )));
    }
}
