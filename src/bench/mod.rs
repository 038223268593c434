//! `socklab bench`: TCP and UDP measured side by side.
//!
//! - [`wire`]: the fixed data header of every bench datagram (Packet/Repr, literal-byte tests);
//! - [`protocol`]: the length-prefixed control messages between client and server;
//! - [`stats`]: receiver-side loss, duplicate, reordering (RFC 4737) and jitter (RFC 3550)
//!   accounting with 64-bit counters;
//! - [`sender`], [`receiver`]: the per-stream threads (sendmmsg/recvmmsg, UDP GSO/GRO);
//! - [`session`]: the data phase both sides share; [`server`], [`client`]: the two ends;
//! - [`kind`]: the test kinds (stream, rate, rr, probe), one module each behind one trait;
//! - [`culprit`]: where UDP loss happened (sender, receiving socket, receiving host, path);
//! - [`underload`]: open-loop probe latency alone and beside a bulk stream;
//! - [`search`]: the highest paced UDP rate within a loss target (the UDP default);
//! - [`report`], [`plot`]: tables, JSON, CSV, Markdown and SVG;
//! - [`mesh`]: agents running tests toward each other, every ordered pair of a fleet.
//!
//! Receiver-side truth: everything reported about a stream was counted where it arrived; the
//! sender only contributes what it sent (for loss) and its TCP_INFO.

pub mod client;
pub mod culprit;
pub mod kind;
pub mod mesh;
pub mod plot;
pub mod protocol;
pub mod receiver;
pub mod report;
pub mod search;
pub mod sender;
pub mod server;
pub mod session;
pub mod stats;
pub mod underload;
pub mod wire;
pub mod zerocopy;

use std::io;
use std::net::{IpAddr, SocketAddr};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::sock::options::Tolerated;
use crate::sock::{Sock, StepError};
use crate::trace::Recorder;
use protocol::{Dir, FrameError, IntervalSample, SideReport, StreamResult, TestParams, Transport};

/// Default SO_RCVBUF/SO_SNDBUF of UDP data sockets: net.core.rmem_max/wmem_max on these machines.
pub const DEFAULT_BUFFER: usize = 4 << 20;

/// SO_RCVBUFFORCE of UDP data sockets when the test sets no `--rcvbuf` and this process may
/// pass net.core.rmem_max (root: CAP_NET_ADMIN, socket(7)). At full speed on loopback the
/// receiving thread barely keeps up, and a scheduling stall of a millisecond overflowed the
/// 4 MiB buffer (SO_RXQ_OVFL): 3-second unpaced runs lost 0.5-1.5 % there; with 16 MiB,
/// 0-0.3 % at the same rate (5 runs each, `bench server` + `bench client`, 2 CPUs).
pub const UDP_RECV_BUFFER_FORCED: usize = 16 << 20;

/// Why a bench run failed. Display is one line.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The control connection could not be made.
    #[error("cannot reach the bench server at {0}: {1}")]
    Connect(SocketAddr, io::Error),
    /// The server said no.
    #[error("server refused the test: {reason}{}", if *retry { " (busy, retry later)" } else { "" })]
    Refused {
        /// The server's reason.
        reason: String,
        /// Whether retrying later may work.
        retry: bool,
    },
    /// The peer broke the protocol.
    #[error("bench protocol: {0}")]
    Protocol(String),
    /// The control connection failed or the peer went silent, said in the user's terms.
    #[error("{0}")]
    Control(String),
    /// The test started but did not finish.
    #[error("test failed: {0}")]
    Test(String),
    /// A control frame could not be read or written.
    #[error("{0}")]
    Frame(FrameError),
    /// A socket step failed.
    #[error("{0}")]
    Step(StepError),
    /// Another I/O error.
    #[error("{0}")]
    Io(io::Error),
}

// The wrapped errors are the Display, not a `source()`: printing the chain ("a: b") would
// otherwise say the same thing twice.
impl From<FrameError> for BenchError {
    fn from(e: FrameError) -> Self {
        Self::Frame(e)
    }
}

impl From<StepError> for BenchError {
    fn from(e: StepError) -> Self {
        Self::Step(e)
    }
}

impl From<io::Error> for BenchError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// SO_SNDBUF of a TCP data socket whose peer is on this host ([`on_this_host`]), unless the
/// test sets `--sndbuf`. Such a peer has no path to fill: what the sender has in flight only
/// waits, unread, in the peer's receive queue. Left to autotuning (tcp(7): the send buffer grows
/// with cwnd, which nothing stops on a lossless loopback), each stream queued up to tcp_wmem's
/// 4 MiB there (`ss -tm`: 1-5 MB per stream at -P 16), the receivers then copied it out of
/// memory rather than the CPU's cache, and throughput fell as streams were added (-P 16 below
/// -P 8). 256 KiB (the kernel doubles it) keeps -P 1 and -P 2 as they were and makes the rate
/// rise with streams up to -P 16 (measured with `bench server` + `bench client`, 2 CPUs).
pub const LOCAL_TCP_SNDBUF: usize = 256 << 10;

/// Whether `ip` is an address of this host (of this network namespace): loopback, or one a
/// socket can bind (bind(2) fails with EADDRNOTAVAIL for an address no interface has).
pub fn on_this_host(ip: IpAddr) -> bool {
    ip.is_loopback()
        || socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(ip, 0)),
            socket2::Type::DGRAM,
            None,
        )
        .and_then(|s| s.bind(&SocketAddr::new(ip, 0).into()))
        .is_ok()
}

/// Opens a data socket for `params` of the family of `like`, toward a peer at `peer` (None:
/// not known).
/// UDP sockets get large buffers ([`DEFAULT_BUFFER`]; a receive buffer of
/// [`UDP_RECV_BUFFER_FORCED`] when the process may) unless the test sets them; TCP sockets
/// keep the kernel's buffer autotuning (tcp(7): setting SO_RCVBUF/SO_SNDBUF turns it off)
/// unless the test sets them, or, for the send buffer, the peer is on this host
/// ([`LOCAL_TCP_SNDBUF`]). A buffer the kernel refuses or caps does not stop the test: the
/// socket's option log keeps the outcome, and the report shows it.
pub fn data_socket(
    like: SocketAddr,
    p: &TestParams,
    peer: Option<IpAddr>,
) -> Result<Sock, BenchError> {
    let s = Sock::open(&like, protocol::proto_of(p.transport), &Recorder::off())?;
    configure(&s, p, peer);
    Ok(s)
}

/// The options [`data_socket`] sets: the buffers, then [`tune`]. The server's TCP listener is
/// a data socket (a SYN-ACK's window scale comes from the listener's SO_RCVBUF, tcp(7)), and
/// each connection it accepts is configured again: it inherits the values, and setting them
/// on it puts their outcome in its own option log, which the server's report carries.
pub fn configure(s: &Sock, p: &TestParams, peer: Option<IpAddr>) {
    let udp = p.transport == Transport::Udp;
    match p.rcvbuf {
        Some(n) => {
            s.set_recv_buffer_size(n).tolerated();
        }
        None if udp && crate::netns::have_net_admin() => {
            s.set_recv_buffer_force(UDP_RECV_BUFFER_FORCED).tolerated();
        }
        None if udp => {
            s.set_recv_buffer_size(DEFAULT_BUFFER).tolerated();
        }
        None => {}
    }
    let local_tcp = !udp && peer.is_some_and(on_this_host);
    if let Some(n) = p
        .sndbuf
        .or(udp.then_some(DEFAULT_BUFFER))
        .or(local_tcp.then_some(LOCAL_TCP_SNDBUF))
    {
        s.set_send_buffer_size(n).tolerated();
    }
    tune(s, p);
}

/// Per-socket options of a test: TCP_NODELAY (`--nodelay`, or a kind that times round trips:
/// a small request leaves at once instead of waiting for an ACK, RFC 896 Nagle),
/// TCP_NOTSENT_LOWAT, SO_BUSY_POLL. An option the kernel lacks or refuses must not stop a
/// benchmark; its outcome stays in the socket's option log ([`Sock::option_log`]), which the side's report carries.
pub fn tune(s: &Sock, p: &TestParams) {
    if p.transport == Transport::Tcp && (p.nodelay || kind::of(p.kind).round_trips()) {
        s.set_nodelay(true).tolerated();
    }
    if let (Transport::Tcp, Some(n)) = (p.transport, p.notsent_lowat) {
        s.set_tcp_notsent_lowat(n).tolerated();
    }
    if p.busy_poll {
        s.set_busy_poll(50).tolerated();
    }
}

/// Round-trip latency of an `rr` test, nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RrSummary {
    /// Round trips completed.
    pub count: u64,
    /// UDP requests whose reply never came.
    pub lost: u64,
    /// Smallest.
    pub min_ns: u64,
    /// Mean.
    pub mean_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Largest.
    pub max_ns: u64,
    /// The CDF: (percentile, ns) points for plots.
    pub cdf: Vec<(f64, u64)>,
}

impl RrSummary {
    /// Summarises a histogram (an empty one gives zeros, never NaN).
    pub fn from_histogram(h: &Histogram<u64>, lost: u64) -> Self {
        if h.is_empty() {
            return Self {
                lost,
                ..Self::default()
            };
        }
        let cdf = [
            0.0, 1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 95.0, 99.0, 99.5,
            99.9, 99.99, 100.0,
        ]
        .iter()
        .map(|&q| (q, h.value_at_quantile(q / 100.0)))
        .collect();
        Self {
            count: h.len(),
            lost,
            min_ns: h.min(),
            mean_ns: h.mean() as u64,
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
            cdf,
        }
    }
}

/// One finished test, both sides merged.
#[derive(Debug, Clone, Serialize)]
pub struct TestOutcome {
    /// What was run.
    pub params: TestParams,
    /// Wall-clock start, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// Every stream, as its receiver counted it (rr: as the requester counted it).
    pub streams: Vec<StreamResult>,
    /// The client's side (CPU time, kernel drop counter).
    pub client: SideReport,
    /// The server's side.
    pub server: SideReport,
    /// rr latency.
    pub rr: Option<RrSummary>,
    /// Interval samples with the direction of their stream.
    pub samples: Vec<(Dir, IntervalSample)>,
    /// rr: the round-trip histogram itself (ns), so that several tests' latencies can be
    /// merged rather than averaged (`bench mesh`).
    #[serde(skip)]
    pub rr_histogram: Option<Histogram<u64>>,
}

#[cfg(test)]
mod tests {
    use super::on_this_host;

    #[test]
    fn loopback_is_on_this_host_and_a_test_net_address_is_not() {
        assert!(on_this_host("127.0.0.1".parse().unwrap()));
        assert!(on_this_host("127.0.0.2".parse().unwrap()));
        assert!(on_this_host("::1".parse().unwrap()));
        // TEST-NET-2 (RFC 5737) and the IPv6 documentation prefix (RFC 3849): no interface
        // of this host has them; only bind(2) is tried, nothing is sent.
        assert!(!on_this_host("198.51.100.7".parse().unwrap()));
        assert!(!on_this_host("2001:db8::7".parse().unwrap()));
    }
}
