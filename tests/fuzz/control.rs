//! Bench control frames, `socklab::bench::protocol` (`parse_header`, `decode`, `read_message`,
//! `encode`): an 8-byte header announcing a JSON body, read by the bench server from any peer
//! that connects, before it is authenticated.

use std::io::{self, Read};

use bolero::{TypeGenerator, check};
use socklab::bench::protocol::{
    Dir, FrameError, HEADER_LEN, IntervalSample, MAX_BODY, Message, SentCount, SideReport,
    StreamResult, TcpFigures, TestKind, TestParams, Transport, decode, encode, parse_header,
    read_message,
};

use crate::CI_INPUTS;

/// Most bytes `read_message` may hold at once per body byte it received, beyond the body
/// buffer itself: what serde_json and serde build from the JSON. `Message` is an internally
/// tagged enum, so serde first copies the whole body into its generic `Content` tree (about 32
/// bytes per JSON value, a value can be 2 bytes of JSON: `0,`), then builds the message from
/// it. Measured worst case: 25-26 times the body ([`worst_case_bodies_stay_within_bound`]), so
/// a 256 KiB frame can hold 6.5 MiB for as long as it is decoded.
const AMPLIFICATION: usize = 32;
/// Allocation allowed whatever the input: an error message, serde_json's scratch space.
const SLACK: usize = 4096;

/// A reader that hands out at most `step` bytes per read(2)-like call, as a slow peer would.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.step).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A decode result in a comparable form: the message, or the error's one-line Display.
fn outcome(r: Result<Message, FrameError>) -> Result<Message, String> {
    r.map_err(|e| e.to_string())
}

/// The properties every byte string keeps as a control frame:
/// - `decode` and `read_message` (fed `step` bytes at a time) never panic and agree;
/// - an announced length above [`MAX_BODY`] is refused from the header alone, and fewer body
///   bytes than announced is `Truncated` with both counts right;
/// - bytes after the announced body are not part of the frame;
/// - while reading, `read_message` holds at most the announced body buffer (at most
///   [`MAX_BODY`]) plus [`AMPLIFICATION`] times the body bytes that really arrived: a length
///   field alone never makes it allocate;
/// - a decoded message re-encodes to a frame that decodes to the same message.
fn check_frame(bytes: &[u8], step: usize) {
    let header = parse_header(bytes);
    let decoded = outcome(decode(bytes));
    let mut read = None;
    let alloc = allocation_counter::measure(|| {
        read = Some(read_message(&mut Trickle { data: bytes, step }));
    });
    let read = outcome(read.expect("read_message ran"));
    assert_eq!(
        decoded, read,
        "decode and read_message disagree on {bytes:?}"
    );

    let (buffer, received) = match header {
        Ok(len) => {
            assert!(len <= MAX_BODY);
            let got = bytes.len() - HEADER_LEN;
            if got < len {
                let want = FrameError::Truncated { got, want: len }.to_string();
                assert_eq!(decoded, Err(want));
            } else {
                let exact = outcome(decode(&bytes[..HEADER_LEN + len]));
                assert_eq!(decoded, exact, "bytes after the body changed the frame");
            }
            (len, got.min(len))
        }
        Err(e) => {
            if let FrameError::TooLong { len, .. } = e {
                assert!(len > MAX_BODY as u64);
            }
            assert_eq!(decoded, Err(e.to_string()));
            (0, 0)
        }
    };
    let bound = buffer + AMPLIFICATION * received + SLACK;
    assert!(
        alloc.bytes_max <= bound as u64,
        "read_message held {} bytes for a {}-byte body buffer and {received} body bytes",
        alloc.bytes_max,
        buffer
    );

    if let Ok(msg) = decoded {
        let again = encode(&msg).expect("a decoded message re-encodes");
        assert_eq!(outcome(decode(&again)), Ok(msg));
    }
}

/// Arbitrary bytes as a control frame, read in pieces of 1 to 8 bytes.
#[test]
fn fuzz_control_frame_bytes() {
    check!()
        .with_iterations(CI_INPUTS)
        .for_each(|bytes: &[u8]| check_frame(bytes, bytes.len() % 8 + 1));
}

/// Which length a mutated frame's header announces.
#[derive(Debug, TypeGenerator)]
enum Announce {
    Shorter(u16),
    Longer(u16),
    Max,
    AboveMax,
    Any(u32),
}

/// One change a peer could make to a valid frame.
#[derive(Debug, TypeGenerator)]
enum Mutation {
    None,
    /// Announce another body length.
    Length(Announce),
    /// Overwrite a header byte (position modulo 8).
    HeaderByte(u8, u8),
    /// Overwrite a body byte (position modulo the body length).
    BodyByte(u16, u8),
    /// Replace the value of the k-th `"key":` (modulo their number) with a fragment.
    Value(u8, Fragment),
    /// Insert a fragment anywhere in the body.
    Splice(u16, Fragment),
    /// Cut the frame short (to a length modulo its length).
    Cut(u16),
}

/// JSON that makes a valid body wrong in type or range, or just wrong.
#[derive(Debug, TypeGenerator)]
enum Fragment {
    Null,
    Bool,
    Huge,
    TooBig,
    Negative,
    Float,
    Object,
    Array,
    Nested,
    Text(String),
}

impl Fragment {
    fn text(&self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Bool => "true".into(),
            Self::Huge => "1e30".into(),
            Self::TooBig => "18446744073709551616".into(),
            Self::Negative => "-1".into(),
            Self::Float => "0.5".into(),
            Self::Object => "{}".into(),
            Self::Array => "[]".into(),
            Self::Nested => format!("{}{}", "[".repeat(200), "]".repeat(200)),
            Self::Text(s) => serde_json::to_string(s).expect("a string serialises"),
        }
    }
}

impl Mutation {
    fn apply(&self, frame: &mut Vec<u8>) {
        let body_len = frame.len() - HEADER_LEN;
        match self {
            Self::None => {}
            Self::Length(a) => {
                let announced: u32 = match *a {
                    Announce::Shorter(n) => body_len.saturating_sub(usize::from(n)) as u32,
                    Announce::Longer(n) => (body_len + usize::from(n)) as u32,
                    Announce::Max => MAX_BODY as u32,
                    Announce::AboveMax => MAX_BODY as u32 + 1,
                    Announce::Any(n) => n,
                };
                frame[4..8].copy_from_slice(&announced.to_be_bytes());
            }
            Self::HeaderByte(at, value) => frame[usize::from(*at) % HEADER_LEN] = *value,
            Self::BodyByte(at, value) if body_len > 0 => {
                frame[HEADER_LEN + usize::from(*at) % body_len] = *value;
            }
            Self::BodyByte(..) => {}
            Self::Value(k, fragment) => {
                let keys: Vec<usize> = frame
                    .windows(2)
                    .enumerate()
                    .filter(|(_, w)| **w == *b"\":")
                    .map(|(i, _)| i + 2)
                    .collect();
                if keys.is_empty() {
                    return;
                }
                let start = keys[usize::from(*k) % keys.len()];
                let len = frame[start..]
                    .iter()
                    .position(|b| b",}]".contains(b))
                    .unwrap_or(frame.len() - start);
                frame.splice(start..start + len, fragment.text().into_bytes());
                refresh_length(frame);
            }
            Self::Splice(at, fragment) => {
                let at = HEADER_LEN + usize::from(*at) % (body_len + 1);
                frame.splice(at..at, fragment.text().into_bytes());
                refresh_length(frame);
            }
            Self::Cut(n) => frame.truncate(usize::from(*n) % (frame.len() + 1)),
        }
    }
}

/// Sets the announced length to the body's length, after a change of the body.
fn refresh_length(frame: &mut [u8]) {
    let len = (frame.len() - HEADER_LEN) as u32;
    frame[4..8].copy_from_slice(&len.to_be_bytes());
}

/// Valid frames after up to two changes (wrong lengths, wrong bytes, wrong JSON types and
/// values, truncation): the properties of [`check_frame`] hold for them too.
#[test]
fn fuzz_control_frame_mutated() {
    check!()
        .with_type::<(Msg, Mutation, Mutation, u8)>()
        .with_iterations(CI_INPUTS)
        .for_each(|(msg, first, second, step)| {
            let Ok(mut frame) = encode(&msg.build()) else {
                return;
            };
            first.apply(&mut frame);
            if frame.len() >= HEADER_LEN {
                second.apply(&mut frame);
            }
            check_frame(&frame, usize::from(step % 16) + 1);
        });
}

/// decode(encode(msg)) == msg and read_message gives the same, for every message; a message
/// whose JSON would exceed [`MAX_BODY`] is refused by `encode` rather than sent.
#[test]
fn fuzz_control_message_round_trip() {
    check!()
        .with_type::<Msg>()
        .with_iterations(CI_INPUTS)
        .for_each(|m| {
            let msg = m.build();
            match encode(&msg) {
                Ok(frame) => {
                    assert!(frame.len() - HEADER_LEN <= MAX_BODY);
                    assert_eq!(parse_header(&frame).ok(), Some(frame.len() - HEADER_LEN));
                    assert_eq!(outcome(decode(&frame)), Ok(msg.clone()));
                    let got = read_message(&mut Trickle {
                        data: &frame,
                        step: 3,
                    });
                    assert_eq!(outcome(got), Ok(msg));
                }
                Err(FrameError::TooLong { len, .. }) => assert!(len > MAX_BODY as u64),
                Err(e) => panic!("{msg:?} does not encode: {e}"),
            }
        });
}

/// The fields of a [`Message`], generated; [`Msg::build`] makes the message. (The protocol
/// types do not derive a generator: that would make bolero a dependency of socklab itself.)
#[derive(Debug, TypeGenerator)]
enum Msg {
    Hello {
        server_version: String,
        nonce: String,
        auth_required: bool,
        max_duration_ms: u64,
        max_rate_bps: u64,
    },
    Start {
        auth: Option<String>,
        params: Params,
    },
    Accepted {
        test_id: u64,
        tcp_port: Option<u16>,
        udp_ports: Vec<u16>,
        down_udp_ports: Vec<u16>,
        cookie: Option<String>,
    },
    Refused {
        reason: String,
        retry: bool,
    },
    Go,
    Interval {
        samples: Vec<(u16, u64, u64, u64, u64)>,
    },
    SenderDone {
        sent: Vec<Sent>,
    },
    Results {
        streams: Vec<Stream>,
        cpu: (u64, u64),
        rcvbuf_errors: Option<u64>,
        rr_echoed: u64,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, TypeGenerator)]
struct Params {
    kind: u8,
    udp: bool,
    size: usize,
    duration_ms: u64,
    parallel: u16,
    dirs: Vec<bool>,
    rate_bps: u64,
    interval_ms: u64,
    switches: [bool; 5],
    rcvbuf: Option<usize>,
    sndbuf: Option<usize>,
    notsent_lowat: Option<u32>,
    zerocopy: bool,
}

#[derive(Debug, TypeGenerator)]
struct Sent {
    stream: u16,
    packets: u64,
    bytes: u64,
    tcp: Option<[u64; 5]>,
    gso: Option<bool>,
    error: Option<String>,
}

#[derive(Debug, TypeGenerator)]
struct Stream {
    stream: u16,
    up: Option<bool>,
    counts: [u64; 9],
    socket_drops: Option<u64>,
    tcp: Option<[u64; 5]>,
    gso: Option<bool>,
    gro: Option<bool>,
    sender_error: Option<String>,
}

fn dir(up: bool) -> Dir {
    if up { Dir::Up } else { Dir::Down }
}

fn tcp(f: [u64; 5]) -> TcpFigures {
    let [retransmits, rtt_us, rttvar_us, cwnd, mss] = f;
    TcpFigures {
        retransmits,
        rtt_us,
        rttvar_us,
        cwnd,
        mss,
    }
}

impl Msg {
    fn build(&self) -> Message {
        match self {
            Self::Hello {
                server_version,
                nonce,
                auth_required,
                max_duration_ms,
                max_rate_bps,
            } => Message::Hello {
                server_version: server_version.clone(),
                nonce: nonce.clone(),
                auth_required: *auth_required,
                max_duration_ms: *max_duration_ms,
                max_rate_bps: *max_rate_bps,
            },
            Self::Start { auth, params: p } => Message::Start {
                auth: auth.clone(),
                params: TestParams {
                    kind: [
                        TestKind::Stream,
                        TestKind::Rate,
                        TestKind::Rr,
                        TestKind::Probe,
                    ][usize::from(p.kind % 4)],
                    transport: if p.udp {
                        Transport::Udp
                    } else {
                        Transport::Tcp
                    },
                    size: p.size,
                    duration_ms: p.duration_ms,
                    parallel: p.parallel,
                    dirs: p.dirs.iter().copied().map(dir).collect(),
                    rate_bps: p.rate_bps,
                    interval_ms: p.interval_ms,
                    gso: p.switches[0],
                    gro: p.switches[1],
                    busy_poll: p.switches[2],
                    rcvbuf: p.rcvbuf,
                    sndbuf: p.sndbuf,
                    nodelay: p.switches[3] && p.switches[4],
                    notsent_lowat: p.notsent_lowat,
                    zerocopy: p.zerocopy,
                },
            },
            Self::Accepted {
                test_id,
                tcp_port,
                udp_ports,
                down_udp_ports,
                cookie,
            } => Message::Accepted {
                test_id: *test_id,
                tcp_port: *tcp_port,
                udp_ports: udp_ports.clone(),
                down_udp_ports: down_udp_ports.clone(),
                cookie: cookie.clone(),
            },
            Self::Refused { reason, retry } => Message::Refused {
                reason: reason.clone(),
                retry: *retry,
            },
            Self::Go => Message::Go,
            Self::Interval { samples } => Message::Interval {
                samples: samples
                    .iter()
                    .map(
                        |&(stream, start_ns, end_ns, bytes, packets)| IntervalSample {
                            stream,
                            start_ns,
                            end_ns,
                            bytes,
                            packets,
                        },
                    )
                    .collect(),
            },
            Self::SenderDone { sent } => Message::SenderDone {
                sent: sent
                    .iter()
                    .map(|s| SentCount {
                        stream: s.stream,
                        packets: s.packets,
                        bytes: s.bytes,
                        tcp: s.tcp.map(tcp),
                        gso: s.gso,
                        error: s.error.clone(),
                        ..SentCount::default()
                    })
                    .collect(),
            },
            Self::Results {
                streams,
                cpu,
                rcvbuf_errors,
                rr_echoed,
            } => Message::Results {
                report: SideReport {
                    streams: streams.iter().map(Stream::build).collect(),
                    cpu_user_us: cpu.0,
                    cpu_sys_us: cpu.1,
                    rcvbuf_errors: *rcvbuf_errors,
                    rr_echoed: *rr_echoed,
                    ..SideReport::default()
                },
            },
            Self::Error { message } => Message::Error {
                message: message.clone(),
            },
        }
    }
}

impl Stream {
    fn build(&self) -> StreamResult {
        let [
            bytes,
            packets,
            duration_ns,
            sent_packets,
            sent_bytes,
            lost,
            duplicates,
            reordered,
            jitter_ns,
        ] = self.counts;
        StreamResult {
            stream: self.stream,
            dir: self.up.map(dir),
            bytes,
            packets,
            duration_ns,
            sent_packets,
            sent_bytes,
            lost,
            duplicates,
            reordered,
            jitter_ns,
            socket_drops: self.socket_drops,
            tcp: self.tcp.map(tcp),
            gso: self.gso,
            gro: self.gro,
            sender_error: self.sender_error.clone(),
            ..StreamResult::default()
        }
    }
}

/// Builds a body of `head`, then `unit` repeated, then `tail`, as close to [`MAX_BODY`] as fits.
fn filled(head: &str, unit: &str, tail: &str) -> Vec<u8> {
    let n = (MAX_BODY - head.len() - tail.len()) / unit.len();
    let mut body = format!("{head}{}{tail}", unit.repeat(n));
    if let Some(i) = body.rfind(&format!("{unit}{tail}")) {
        // No trailing comma after the last element.
        body.replace_range(i + unit.len() - 1..i + unit.len(), " ");
    }
    body.into_bytes()
}

/// The densest bodies known (most JSON values per byte, in fields the server reads before
/// authentication or ignores) stay within the allocation bound [`check_frame`] asserts; their
/// figures are printed for the record (`--nocapture`).
#[test]
fn worst_case_bodies_stay_within_bound() {
    let cases = [
        (
            "unknown field, array of 0",
            filled(r#"{"type":"go","x":["#, "0,", "]}"),
        ),
        (
            "unknown field, array of []",
            filled(r#"{"type":"go","x":["#, "[],", "]}"),
        ),
        (
            "error message of one huge string",
            filled(r#"{"type":"error","message":""#, "a", r#""}"#),
        ),
    ];
    for (name, body) in cases {
        assert!(body.len() <= MAX_BODY, "{name}: {} bytes", body.len());
        let mut frame = b"SC\x01\x00".to_vec();
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let mut ok = false;
        let alloc = allocation_counter::measure(|| {
            ok = read_message(&mut &frame[..]).is_ok();
        });
        println!(
            "{name}: {} B body, decoded: {ok}, peak {} B held while decoding ({:.1} x body)",
            body.len(),
            alloc.bytes_max,
            alloc.bytes_max as f64 / body.len() as f64
        );
        assert!(ok, "{name}: {}", String::from_utf8_lossy(&body[..80]));
        check_frame(&frame, 4096);
    }
}

/// `decode`'s doc said bytes after the frame were an error; they are not part of the frame (as
/// with `read_message`, which leaves them for the next read). Found writing the trailing-bytes
/// property of [`check_frame`]; the doc was corrected.
#[test]
fn regression_decode_leaves_bytes_after_the_frame() {
    let bytes = b"SC\x01\x00\x00\x00\x00\x0d{\"type\":\"go\"}SC\x01";
    assert!(matches!(decode(bytes), Ok(Message::Go)));
    check_frame(bytes, 1);
}
