//! The control protocol between `bench client` and `bench server`: one TCP connection carrying
//! length-prefixed frames. A frame is an 8-byte header and a JSON body:
//!
//! ```text
//!  0    2   3   4               8
//!  +----+---+---+---------------+---------------------+
//!  | SC |ver| 0 | body length   | body (JSON Message) |
//!  +----+---+---+---------------+---------------------+
//! ```
//!
//! The length is checked against [`MAX_BODY`] before anything is allocated, so a peer cannot
//! make the other side reserve memory by announcing a huge frame. Token authentication is an
//! HMAC-SHA-256 (RFC 2104) of the server's random nonce: the token itself never crosses the wire.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sock::options::OptOutcome;

/// Magic bytes of a control frame.
pub const MAGIC: [u8; 2] = *b"SC";
/// Control protocol version.
pub const VERSION: u8 = 1;
/// Frame header length.
pub const HEADER_LEN: usize = 8;
/// Largest body accepted, in bytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Largest body a server reads before a client has been admitted (a Start message is a few
/// hundred bytes): what an unauthenticated peer can make the server buffer, per connection.
pub const HANDSHAKE_MAX_BODY: usize = 16 * 1024;

/// Why bytes are not a control frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("control frame too short: {0} bytes, need {HEADER_LEN}")]
    Short(usize),
    /// Not `SC`: the peer is not a socklab bench endpoint.
    #[error("the peer does not speak the socklab bench protocol (bad magic)")]
    BadMagic,
    /// Another protocol version.
    #[error("the peer speaks bench protocol version {0}, this socklab speaks {VERSION}")]
    BadVersion(u8),
    /// A body length above the limit (announced, refused before anything is allocated).
    #[error("control message of {len} bytes exceeds the {limit}-byte limit")]
    TooLong {
        /// Bytes announced.
        len: u64,
        /// The limit that applied.
        limit: usize,
    },
    /// Fewer body bytes than the header announced.
    #[error("control message truncated: {got} of {want} bytes")]
    Truncated {
        /// Bytes present.
        got: usize,
        /// Bytes announced.
        want: usize,
    },
    /// The body is not a valid message.
    #[error("malformed control message: {0}")]
    Body(serde_json::Error),
    /// Reading or writing the connection failed (including a timeout).
    #[error("control connection: {0}")]
    Io(io::Error),
}

// No `source()`: the Display already says it, and an error chain must not say it twice.
impl From<serde_json::Error> for FrameError {
    fn from(e: serde_json::Error) -> Self {
        Self::Body(e)
    }
}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// The test a client asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TestKind {
    /// Bulk throughput (TCP stream, UDP at full or paced rate).
    Stream,
    /// Small-message packet rate.
    Rate,
    /// Request/response ping-pong latency.
    Rr,
    /// Open-loop latency probes: requests on a fixed schedule (`rate_bps` / (8 × size) per
    /// second), echoed like `rr`, timed from their scheduled send time.
    Probe,
}

/// Transport of the data streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// Which way a stream's data flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    /// Client sends, server receives.
    Up,
    /// Server sends, client receives (`-R`).
    Down,
}

/// Everything both sides must agree on for one test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestParams {
    /// Test kind.
    pub kind: TestKind,
    /// Transport.
    pub transport: Transport,
    /// Payload (UDP datagram / TCP write / rr message) size in bytes.
    pub size: usize,
    /// Test duration in milliseconds.
    pub duration_ms: u64,
    /// Parallel streams per direction.
    pub parallel: u16,
    /// Directions with streams: [`Dir::Up`], [`Dir::Down`] or both (`--bidir`).
    pub dirs: Vec<Dir>,
    /// Sending rate per stream in bits per second, 0 = as fast as possible.
    pub rate_bps: u64,
    /// Interval report period in milliseconds, 0 = none.
    pub interval_ms: u64,
    /// Use UDP GSO (UDP_SEGMENT) when the kernel has it.
    pub gso: bool,
    /// Use UDP GRO (UDP_GRO) when the kernel has it.
    pub gro: bool,
    /// Spin on receive (SO_BUSY_POLL and nonblocking polling).
    pub busy_poll: bool,
    /// SO_RCVBUF for data sockets, bytes.
    pub rcvbuf: Option<usize>,
    /// SO_SNDBUF for data sockets, bytes.
    pub sndbuf: Option<usize>,
    /// TCP_NODELAY on data sockets.
    pub nodelay: bool,
    /// TCP_NOTSENT_LOWAT on TCP data sockets, bytes (`None`: the kernel's default, unlimited).
    #[serde(default)]
    pub notsent_lowat: Option<u32>,
    /// Senders of bulk tests (UDP and TCP) pass MSG_ZEROCOPY after setting SO_ZEROCOPY
    /// (`--zerocopy`, Documentation/networking/msg_zerocopy.rst); refused: plain sends, said
    /// in [`ZeroCopyCount::refused`](super::zerocopy::ZeroCopyCount::refused).
    #[serde(default)]
    pub zerocopy: bool,
}

#[cfg(test)]
impl TestParams {
    /// A one-second, one-stream upload of `size`-byte payloads with the defaults of a plain
    /// `bench client` run: the base the unit tests vary with `..`.
    pub(crate) fn example(kind: TestKind, transport: Transport, size: usize) -> Self {
        Self {
            kind,
            transport,
            size,
            duration_ms: 1000,
            parallel: 1,
            dirs: vec![Dir::Up],
            rate_bps: 0,
            interval_ms: 0,
            gso: true,
            gro: true,
            busy_poll: false,
            rcvbuf: None,
            sndbuf: None,
            nodelay: false,
            notsent_lowat: None,
            zerocopy: false,
        }
    }
}

/// Per-interval receive figures of one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntervalSample {
    /// Stream id.
    pub stream: u16,
    /// Interval start, nanoseconds since the test began.
    pub start_ns: u64,
    /// Interval end.
    pub end_ns: u64,
    /// Payload bytes received in the interval.
    pub bytes: u64,
    /// Datagrams (UDP) or reads (TCP) in the interval.
    pub packets: u64,
}

/// Final figures of one stream, measured at its receiver (the sender's count included).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamResult {
    /// Stream id.
    pub stream: u16,
    /// Direction.
    pub dir: Option<Dir>,
    /// Payload bytes received.
    pub bytes: u64,
    /// Datagrams received (UDP, unique) or read calls (TCP).
    pub packets: u64,
    /// Receive time from first to last byte, nanoseconds.
    pub duration_ns: u64,
    /// Datagrams the sender says it sent (UDP).
    pub sent_packets: u64,
    /// Bytes the sender says it sent.
    pub sent_bytes: u64,
    /// UDP datagrams lost: sent minus unique received.
    pub lost: u64,
    /// UDP duplicates received.
    pub duplicates: u64,
    /// UDP datagrams that arrived after a higher sequence number (RFC 4737).
    pub reordered: u64,
    /// RFC 3550 interarrival jitter at the end, nanoseconds, over `jitter_samples` samples.
    pub jitter_ns: u64,
    /// SO_RXQ_OVFL at the receiving socket: socket buffers (skbs) the kernel dropped because
    /// the receive buffer was full (None: not reported). With GRO one skb may hold many
    /// datagrams; `socket_drops_datagrams` converts.
    pub socket_drops: Option<u64>,
    /// `socket_drops` in datagrams: equal to it without GRO (the kernel queues, and drops,
    /// one datagram per skb); with GRO an estimate, skbs × the mean datagrams per received
    /// skb, and `socket_drops_estimated` is set.
    #[serde(default)]
    pub socket_drops_datagrams: Option<u64>,
    /// Whether `socket_drops_datagrams` is an estimate (GRO on).
    #[serde(default)]
    pub socket_drops_estimated: bool,
    /// Datagrams whose (send time, receive time) pair fed the RFC 3550 jitter: datagrams that
    /// share a send time (one sendmmsg(2)/GSO call) or a receive time (one GRO skb) with the
    /// previous sample are not samples.
    #[serde(default)]
    pub jitter_samples: u64,
    /// Distinct send times seen (one per sender send call): unique datagrams / this = the
    /// datagrams that left together and share one send time.
    #[serde(default)]
    pub send_times: u64,
    /// Distinct kernel receive times seen (SO_TIMESTAMPNS, one per received skb).
    #[serde(default)]
    pub recv_times: u64,
    /// Sender: send calls that failed with ENOBUFS or EAGAIN (the datagrams were not sent and
    /// are not counted as sent).
    #[serde(default)]
    pub send_refused: u64,
    /// Sender: datagrams per socket buffer (the UDP_SEGMENT count with GSO, else 1).
    #[serde(default)]
    pub datagrams_per_send_skb: u64,
    /// TCP: the sender's TCP_INFO at the end.
    pub tcp: Option<TcpFigures>,
    /// Whether UDP GSO was used by the sender ("unsupported" reported as false with a note).
    pub gso: Option<bool>,
    /// Whether UDP GRO was on at the receiver.
    pub gro: Option<bool>,
    /// Why the sender stopped early, if it did.
    #[serde(default)]
    pub sender_error: Option<String>,
    /// Bytes the sender's kernel copied from user memory (the sender's
    /// [`SentCount::copied_bytes`]); None: not counted (latency tests, an older peer).
    #[serde(default)]
    pub sender_copied_bytes: Option<u64>,
    /// Bytes the receiver's recv(2)/recvmmsg(2) calls copied out of the kernel, duplicates
    /// and datagrams of no stream included (counted at the receiver).
    #[serde(default)]
    pub receiver_copied_bytes: Option<u64>,
    /// `--zerocopy`: what the sender's MSG_ZEROCOPY notifications said.
    #[serde(default)]
    pub zerocopy: Option<super::zerocopy::ZeroCopyCount>,
}

/// TCP_INFO figures of a sending socket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpFigures {
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Smoothed RTT, microseconds.
    pub rtt_us: u64,
    /// RTT variance, microseconds.
    pub rttvar_us: u64,
    /// Congestion window, segments.
    pub cwnd: u64,
    /// MSS, bytes.
    pub mss: u64,
}

/// What one side sent, per stream, when its senders finished.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SentCount {
    /// Stream id.
    pub stream: u16,
    /// Datagrams / writes sent.
    pub packets: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// TCP_INFO of the sending socket (TCP only).
    pub tcp: Option<TcpFigures>,
    /// Whether GSO was in use.
    pub gso: Option<bool>,
    /// Why the sender stopped before the end of the test, if it did (one line).
    #[serde(default)]
    pub error: Option<String>,
    /// UDP: send calls refused with ENOBUFS or EAGAIN (nothing of them counted as sent).
    #[serde(default)]
    pub refused: u64,
    /// UDP: datagrams per socket buffer the sender handed the kernel (GSO segments, else 1).
    #[serde(default)]
    pub datagrams_per_skb: u64,
    /// Bulk tests: bytes the kernel copied from this sender's memory. Plain sends: every byte
    /// the send calls accepted (send(2) copies them into socket buffers); with MSG_ZEROCOPY:
    /// the bytes of calls the notifications marked COPIED, plus any plain sends.
    #[serde(default)]
    pub copied_bytes: Option<u64>,
    /// `--zerocopy`: what the notifications said.
    #[serde(default)]
    pub zerocopy: Option<super::zerocopy::ZeroCopyCount>,
}

/// One side's final report: its receivers' results and its CPU time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideReport {
    /// Streams this side received.
    pub streams: Vec<StreamResult>,
    /// User CPU time of this side's test threads, microseconds (getrusage RUSAGE_THREAD).
    pub cpu_user_us: u64,
    /// System CPU time, microseconds.
    pub cpu_sys_us: u64,
    /// Udp.RcvbufErrors delta in this side's namespace over the test (all sockets).
    pub rcvbuf_errors: Option<u64>,
    /// rr: requests answered.
    pub rr_echoed: u64,
    /// Namespace-wide UDP and device drop counters over the test, as this side saw them.
    #[serde(default)]
    pub host: Option<super::culprit::HostCounters>,
    /// What became of the socket options this side set on its data sockets, identical
    /// outcomes merged (absent from peers older than this field: empty).
    #[serde(default)]
    pub socket_options: Vec<OptionTally>,
    /// The CPU each of this side's stream threads was pinned to (sched_setaffinity(2)); empty
    /// when the scheduler placed them (and from an older peer).
    #[serde(default)]
    pub stream_cpus: Vec<StreamCpu>,
}

/// A stream thread pinned to a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCpu {
    /// Stream id.
    pub stream: u16,
    /// The CPU its thread on this side ran on.
    pub cpu: usize,
}

/// One socket option's outcome on this many of a side's data sockets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptionTally {
    /// The outcome (option, level, asked, read back, status, errno).
    #[serde(flatten)]
    pub outcome: OptOutcome,
    /// Data sockets that had this outcome.
    pub sockets: u64,
}

impl OptionTally {
    /// Merges the outcomes of several sockets: one tally per distinct outcome, in the order
    /// they first appear.
    pub fn merge(outcomes: impl IntoIterator<Item = OptOutcome>) -> Vec<Self> {
        let mut out: Vec<Self> = Vec::new();
        for o in outcomes {
            match out.iter_mut().find(|t| t.outcome == o) {
                Some(t) => t.sockets += 1,
                None => out.push(Self {
                    outcome: o,
                    sockets: 1,
                }),
            }
        }
        out
    }
}

/// A control message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Server → client on connect.
    Hello {
        /// socklab version of the server.
        server_version: String,
        /// Random nonce (hex) to authenticate against.
        nonce: String,
        /// Whether a token is required.
        auth_required: bool,
        /// Longest test the server runs, ms.
        max_duration_ms: u64,
        /// Highest per-stream rate the server allows, bits/s (0 = no limit).
        max_rate_bps: u64,
    },
    /// Client → server: the test, with the HMAC of the nonce when a token is set.
    Start {
        /// HMAC-SHA-256(token, nonce), hex.
        auth: Option<String>,
        /// The test.
        params: TestParams,
    },
    /// Server → client: test accepted.
    Accepted {
        /// Server-side id of the test.
        test_id: u64,
        /// TCP data listener port (TCP tests).
        tcp_port: Option<u16>,
        /// UDP ports bound by the server for the streams it receives (Up), in stream order.
        udp_ports: Vec<u16>,
        /// UDP ports of the server's sockets for the streams it sends (Down), in stream order:
        /// the client sends its [`Probe`] for such a stream to this port.
        #[serde(default)]
        down_udp_ports: Vec<u16>,
        /// Per-test random cookie (hex, 16 bytes) for the UDP return-address check, when the
        /// server will send UDP to the client (`-R`, `--bidir`, `rr`).
        #[serde(default)]
        cookie: Option<String>,
    },
    /// Server → client: test refused.
    Refused {
        /// Why.
        reason: String,
        /// Whether trying again later may work (server busy).
        retry: bool,
    },
    /// Client → server: data connections are up, start.
    Go,
    /// Receiver side → other side: one interval's figures.
    Interval {
        /// Samples, one per stream this side receives.
        samples: Vec<IntervalSample>,
    },
    /// Either side: its senders are done; the counts let the receiver compute loss.
    SenderDone {
        /// Per stream.
        sent: Vec<SentCount>,
    },
    /// Server → client at the end.
    Results {
        /// The server's side.
        report: SideReport,
    },
    /// Either side: something failed.
    Error {
        /// One line.
        message: String,
    },
    /// Mesh coordinator → agent, in place of `Start`: run `params` as a client toward the
    /// agent at `target` (which must accept it through its own Hello/Start handshake). The
    /// agent answers `Refused`, or `RunTestReply` (started), `Interval` progress frames, and a
    /// final `RunTestReply` (done or failed).
    RunTest {
        /// HMAC-SHA-256(token, nonce), hex: the agent accepts this request only with a token.
        auth: Option<String>,
        /// The target agent's control address.
        target: std::net::SocketAddr,
        /// The test, passed through unchanged to the target.
        params: TestParams,
        /// Connect and handshake timeout toward the target, ms.
        handshake_timeout_ms: u64,
        /// latency-under-load: the bulk stream to run toward the same target beside the
        /// probe test `params` (absent from older coordinators: no load).
        /// Boxed: it keeps [`Message`] small.
        #[serde(default)]
        load: Option<Box<TestParams>>,
    },
    /// Agent → mesh coordinator: the test toward the target started, finished or failed.
    RunTestReply {
        /// Where the test is, with both sides' figures once done.
        reply: Box<super::mesh::wire::RunTestReply>,
    },
}

/// Encodes `msg` as one frame.
pub fn encode(msg: &Message) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(msg)?;
    if body.len() > MAX_BODY {
        return Err(FrameError::TooLong {
            len: body.len() as u64,
            limit: MAX_BODY,
        });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Validates a frame header and returns the body length it announces.
pub fn parse_header(h: &[u8]) -> Result<usize, FrameError> {
    parse_header_within(h, MAX_BODY)
}

/// [`parse_header`] with a smaller body limit (a server's handshake uses
/// [`HANDSHAKE_MAX_BODY`]): a longer frame is refused from its header alone.
pub fn parse_header_within(h: &[u8], limit: usize) -> Result<usize, FrameError> {
    if h.len() < HEADER_LEN {
        return Err(FrameError::Short(h.len()));
    }
    if h[0..2] != MAGIC {
        return Err(FrameError::BadMagic);
    }
    if h[2] != VERSION {
        return Err(FrameError::BadVersion(h[2]));
    }
    let len = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as u64;
    let limit = limit.min(MAX_BODY);
    if len > limit as u64 {
        return Err(FrameError::TooLong { len, limit });
    }
    Ok(len as usize)
}

/// Decodes the frame at the start of `bytes` (header and body); bytes after the announced
/// body, such as the next frame, are not part of it.
pub fn decode(bytes: &[u8]) -> Result<Message, FrameError> {
    let len = parse_header(bytes)?;
    let body = &bytes[HEADER_LEN..];
    if body.len() < len {
        return Err(FrameError::Truncated {
            got: body.len(),
            want: len,
        });
    }
    Ok(serde_json::from_slice(&body[..len])?)
}

/// Reads one frame from `r`: the header, its checks, then exactly the announced body.
pub fn read_message(r: &mut impl Read) -> Result<Message, FrameError> {
    let mut h = [0u8; HEADER_LEN];
    read_full(r, &mut h).map_err(|(got, e)| match e {
        Some(e) => FrameError::Io(e),
        None => FrameError::Short(got),
    })?;
    let len = parse_header(&h)?;
    let mut body = vec![0u8; len];
    read_full(r, &mut body).map_err(|(got, e)| match e {
        Some(e) => FrameError::Io(e),
        None => FrameError::Truncated { got, want: len },
    })?;
    Ok(serde_json::from_slice(&body)?)
}

/// Writes one frame to `w`.
pub fn write_message(w: &mut impl Write, msg: &Message) -> Result<(), FrameError> {
    w.write_all(&encode(msg)?)?;
    Ok(())
}

/// Fills `buf`; on EOF returns how much arrived (error None), on an I/O error the error.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<(), (usize, Option<io::Error>)> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Err((got, None)),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((got, Some(e))),
        }
    }
    Ok(())
}

impl FrameError {
    /// What a failed read of the control connection means for the user, in words (no errno
    /// numbers): `peer` names the other side ("the server", "the client").
    pub fn in_words(&self, peer: &str) -> String {
        match self {
            Self::Short(0) => format!("{peer} closed the control connection"),
            Self::Short(_) | Self::Truncated { .. } => {
                format!("{peer} closed the control connection in the middle of a message")
            }
            Self::Io(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    format!("{peer} stopped answering on the control connection")
                }
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    format!("{peer} reset the control connection")
                }
                io::ErrorKind::UnexpectedEof => format!("{peer} closed the control connection"),
                io::ErrorKind::BrokenPipe => format!("{peer} closed the control connection"),
                _ => format!(
                    "the control connection to {peer} failed: {}",
                    e.raw_os_error()
                        .map_or_else(|| e.to_string(), crate::os::errno::describe)
                ),
            },
            other => format!("{peer} sent something unexpected: {other}"),
        }
    }
}

/// Length of a UDP return-address [`Probe`] (and of its acknowledgement: the server never
/// answers with more bytes than it received).
pub const PROBE_LEN: usize = 24;
/// Magic bytes of a probe: `SLBV`, "socklab bench validate".
pub const PROBE_MAGIC: [u8; 4] = *b"SLBV";

/// The datagram that proves a client receives on a UDP address before the server sends it
/// anything there (the bench's answer to iperf3 #1072, UDP reflection). As QUIC validates a
/// peer's address (RFC 9000 §8) before sending it more than it received, the server sends a
/// stream's data only to the source address:port a probe carrying the test's secret cookie
/// came from; the cookie crossed the authenticated control connection only.
///
/// ```text
///  0      4   5   6       8                               24
///  +------+---+---+-------+-------------------------------+
///  | SLBV |ver|ack|stream |          cookie (16 B)        |
///  +------+---+---+-------+-------------------------------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    /// False: client → server; true: the server's acknowledgement.
    pub ack: bool,
    /// The stream whose return address this proves.
    pub stream: u16,
    /// The test's cookie.
    pub cookie: [u8; 16],
}

impl Probe {
    /// The datagram's bytes.
    pub fn emit(&self) -> [u8; PROBE_LEN] {
        let mut b = [0u8; PROBE_LEN];
        b[0..4].copy_from_slice(&PROBE_MAGIC);
        b[4] = VERSION;
        b[5] = u8::from(self.ack);
        b[6..8].copy_from_slice(&self.stream.to_be_bytes());
        b[8..24].copy_from_slice(&self.cookie);
        b
    }

    /// Parses a datagram; None if it is not exactly a probe of this version.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() != PROBE_LEN || b[0..4] != PROBE_MAGIC || b[4] != VERSION || b[5] > 1 {
            return None;
        }
        let mut cookie = [0u8; 16];
        cookie.copy_from_slice(&b[8..24]);
        Some(Self {
            ack: b[5] == 1,
            stream: u16::from_be_bytes([b[6], b[7]]),
            cookie,
        })
    }
}

/// A fresh random 16-byte cookie (getrandom(2) through /dev/urandom).
pub fn cookie() -> io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// Parses 32 hex digits (a cookie from [`Message::Accepted`]).
pub fn parse_cookie(s: &str) -> Option<[u8; 16]> {
    let s = s.as_bytes();
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let digits = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

/// HMAC-SHA-256 (RFC 2104) of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| k.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The authenticator a client sends for `token` and the server's `nonce`, as hex.
pub fn auth_tag(token: &str, nonce: &str) -> String {
    hex(&hmac_sha256(token.as_bytes(), nonce.as_bytes()))
}

/// Compares an authenticator in constant time.
pub fn auth_ok(token: &str, nonce: &str, tag: &str) -> bool {
    let want = auth_tag(token, nonce);
    want.len() == tag.len()
        && want
            .bytes()
            .zip(tag.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A fresh 16-byte random nonce as hex.
pub fn nonce() -> io::Result<String> {
    Ok(hex(&cookie()?))
}

/// The protocol a data socket of this test uses.
pub fn proto_of(t: Transport) -> crate::sock::Proto {
    match t {
        Transport::Tcp => crate::sock::Proto::Tcp,
        Transport::Udp => crate::sock::Proto::Udp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(header: [u8; 8], body: &[u8]) -> Vec<u8> {
        let mut v = header.to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn literal_go_frame() {
        let bytes = frame([b'S', b'C', 1, 0, 0, 0, 0, 13], br#"{"type":"go"}"#);
        assert_eq!(decode(&bytes).unwrap(), Message::Go);
        assert_eq!(encode(&Message::Go).unwrap(), bytes);
        let mut r = &bytes[..];
        assert_eq!(read_message(&mut r).unwrap(), Message::Go);
    }

    #[test]
    fn round_trip_refused() {
        let m = Message::Refused {
            reason: "busy, retry".into(),
            retry: true,
        };
        let mut buf = Vec::new();
        write_message(&mut buf, &m).unwrap();
        assert_eq!(read_message(&mut &buf[..]).unwrap(), m);
    }

    #[test]
    fn results_of_an_older_peer_parse_without_socket_options() {
        let old = br#"{"type":"results","report":{"streams":[],"cpu_user_us":1,"cpu_sys_us":2,"rcvbuf_errors":null,"rr_echoed":0}}"#;
        let Message::Results { report } = serde_json::from_slice(old).unwrap() else {
            panic!("not results");
        };
        assert!(report.socket_options.is_empty());
        assert_eq!(report.cpu_sys_us, 2);
    }

    #[test]
    fn option_tallies_merge_identical_outcomes() {
        use crate::sock::options::OptStatus;
        let o = |asked: i64, status| OptOutcome {
            level: "SOL_SOCKET".into(),
            option: "SO_RCVBUF".into(),
            asked: asked.into(),
            read_back: None,
            status,
            errno: None,
            note: None,
        };
        let t = OptionTally::merge([
            o(1, OptStatus::Applied),
            o(2, OptStatus::Refused),
            o(1, OptStatus::Applied),
        ]);
        assert_eq!(
            t.iter()
                .map(|t| (t.outcome.asked.clone(), t.sockets))
                .collect::<Vec<_>>(),
            [(1.into(), 2), (2.into(), 1)]
        );
        // On the wire the outcome's fields sit beside the count.
        let v = serde_json::to_value(&t[0]).unwrap();
        assert_eq!(
            (v["option"].as_str(), v["sockets"].as_u64()),
            (Some("SO_RCVBUF"), Some(2))
        );
        assert_eq!(serde_json::from_value::<OptionTally>(v).unwrap(), t[0]);
    }

    #[test]
    fn malformed_frames() {
        let go = br#"{"type":"go"}"#;
        // Short header.
        assert!(matches!(decode(b"SC\x01"), Err(FrameError::Short(3))));
        assert!(matches!(
            read_message(&mut &b"SC\x01\x00"[..]),
            Err(FrameError::Short(4))
        ));
        // Bad magic.
        let b = frame([b'X', b'C', 1, 0, 0, 0, 0, 13], go);
        assert!(matches!(decode(&b), Err(FrameError::BadMagic)));
        // Bad version.
        let b = frame([b'S', b'C', 9, 0, 0, 0, 0, 13], go);
        assert!(matches!(decode(&b), Err(FrameError::BadVersion(9))));
        // Oversize length: rejected from the header alone, before any body is read.
        let b = [b'S', b'C', 1, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_message(&mut &b[..]),
            Err(FrameError::TooLong {
                len: 0xffff_ffff,
                ..
            })
        ));
        let b = [b'S', b'C', 1, 0, 0, 4, 0, 1];
        assert!(matches!(
            decode(&b),
            Err(FrameError::TooLong { len: 262_145, .. })
        ));
        // Truncated body.
        let b = frame([b'S', b'C', 1, 0, 0, 0, 0, 13], &go[..5]);
        assert!(matches!(
            decode(&b),
            Err(FrameError::Truncated { got: 5, want: 13 })
        ));
        assert!(matches!(
            read_message(&mut &b[..]),
            Err(FrameError::Truncated { got: 5, want: 13 })
        ));
        // A body that is not a message.
        let b = frame([b'S', b'C', 1, 0, 0, 0, 0, 4], b"null");
        assert!(matches!(decode(&b), Err(FrameError::Body(_))));
        let b = frame([b'S', b'C', 1, 0, 0, 0, 0, 16], br#"{"type":"nope"}X"#);
        assert!(matches!(decode(&b), Err(FrameError::Body(_))));
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a 131-byte key (longer than the block) is hashed first.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn probe_literal_bytes_and_malformed() {
        let p = Probe {
            ack: false,
            stream: 0x0102,
            cookie: [0xab; 16],
        };
        let b = p.emit();
        assert_eq!(&b[..8], &[b'S', b'L', b'B', b'V', 1, 0, 0x01, 0x02]);
        assert_eq!(&b[8..], &[0xab; 16]);
        assert_eq!(Probe::parse(&b), Some(p));
        let ack = Probe { ack: true, ..p }.emit();
        assert_eq!(
            ack.len(),
            b.len(),
            "the answer is never larger than the probe"
        );
        assert_eq!(Probe::parse(&ack).map(|p| p.ack), Some(true));
        assert_eq!(Probe::parse(&b[..23]), None);
        let mut bad = b;
        bad[5] = 7;
        assert_eq!(Probe::parse(&bad), None);
        let mut data = b;
        data[3] = b'D';
        assert_eq!(Probe::parse(&data), None, "a data header is not a probe");
        assert_eq!(parse_cookie(&hex(&[0xab; 16])), Some([0xab; 16]));
        assert_eq!(parse_cookie("zz"), None);
        assert_eq!(parse_cookie(&"g".repeat(32)), None);
    }

    #[test]
    fn auth_tags() {
        let t = auth_tag("secret", "00ff");
        assert!(auth_ok("secret", "00ff", &t));
        assert!(!auth_ok("wrong", "00ff", &t));
        assert!(!auth_ok("secret", "00fe", &t));
        assert!(!auth_ok("secret", "00ff", &t[..10]));
        assert!(!t.contains("secret"));
    }
}
