//! Turns test outcomes into rows and renders them: a table (comfy-table), JSON (one document
//! with a `meta` block), JSON lines (`start`/`interval`/`end` envelopes), CSV and Markdown, plus
//! the sentence that says what differed between TCP and UDP. Units are in field names; every
//! float is finite (rates over zero time are 0, never NaN or Infinity).

use std::fmt::Write as _;

use serde::Serialize;

use super::culprit::{HostCounters, LossByPlace, LossInputs, attribute};
use super::protocol::{Dir, IntervalSample, SideReport, StreamResult, TestKind, Transport};
use super::search::RateSearch;
use super::stats::{bits_per_second, per_second, percent};
use super::zerocopy::ZeroCopyCount;
use super::{RrSummary, TestOutcome};

/// The run's metadata (hyperfine-style export header).
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// socklab version.
    pub socklab_version: String,
    /// uname -sr.
    pub kernel: String,
    /// Logical CPUs available.
    pub cpu_count: usize,
    /// Start, milliseconds since the Unix epoch.
    pub start_unix_ms: u64,
    /// Where the run went: "local", or the server address.
    pub target: String,
    /// All parameters as given (the CLI's plain config).
    pub parameters: serde_json::Value,
}

impl Meta {
    /// Metadata of this machine now.
    pub fn new(target: String, parameters: serde_json::Value) -> Self {
        let kernel = nix::sys::utsname::uname()
            .map(|u| {
                format!(
                    "{} {}",
                    u.sysname().to_string_lossy(),
                    u.release().to_string_lossy()
                )
            })
            .unwrap_or_default();
        Self {
            socklab_version: env!("CARGO_PKG_VERSION").into(),
            kernel,
            cpu_count: std::thread::available_parallelism().map_or(1, |n| n.get()),
            start_unix_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            target,
            parameters,
        }
    }
}

/// One line of the report: one test, one direction, all its streams summed. Every figure was
/// counted at the receiver unless its doc says otherwise.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Test kind.
    pub test: TestKind,
    /// Transport.
    pub transport: Transport,
    /// Payload / write size.
    pub size_bytes: usize,
    /// Direction.
    pub dir: Dir,
    /// Streams summed into this row.
    pub streams: usize,
    /// Time the figures are over (receiver's first to last byte, longest stream).
    pub duration_ns: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Goodput: payload bits received per second.
    pub bits_per_second: f64,
    /// Messages received: UDP datagrams (unique), complete `size_bytes` TCP messages (bytes
    /// received / size: a TCP stream delivers the sender's fixed-size writes in order), or
    /// round trips (rr).
    pub packets: u64,
    /// `packets` per second.
    pub packets_per_second: f64,
    /// TCP: read(2) calls the receiver made (how the bytes arrived, not a message count).
    pub reads: Option<u64>,
    /// Datagrams / writes / requests the sender sent (the sender's count).
    pub sent_packets: u64,
    /// Bytes the sender sent (the sender's count).
    pub sent_bytes: u64,
    /// UDP: datagrams lost, sent − unique received.
    pub lost: u64,
    /// UDP: lost as a percentage of sent.
    pub lost_percent: f64,
    /// UDP: where the lost datagrams went (adds up to `lost`).
    pub loss_by_place: Option<LossByPlace>,
    /// UDP: duplicates.
    pub duplicates: u64,
    /// UDP: reordered (RFC 4737).
    pub reordered: u64,
    /// UDP: RFC 3550 jitter from the send time in each header and the kernel receive time
    /// (SO_TIMESTAMPNS), the largest over the streams; null when no two datagrams had distinct
    /// send and receive times (`jitter_note` says why).
    pub jitter_ms: Option<f64>,
    /// UDP: datagram pairs the jitter was computed from (summed over streams).
    pub jitter_samples: u64,
    /// UDP: mean datagrams that left in one send call and share one send time.
    pub datagrams_per_send_time: Option<f64>,
    /// UDP: mean datagrams that share one kernel receive time (one GRO skb, or one receive
    /// call when the kernel gave no timestamps).
    pub datagrams_per_receive_time: Option<f64>,
    /// UDP: why there is no jitter figure, or what limits it.
    pub jitter_note: Option<String>,
    /// UDP: SO_RXQ_OVFL drops at the receiving sockets, in skbs (with GRO one skb can hold
    /// many datagrams).
    pub socket_drops_skbs: Option<u64>,
    /// UDP: the same in datagrams (an estimate with GRO: see `loss_by_place.estimated`).
    pub socket_drops_datagrams: Option<u64>,
    /// UDP: Udp.RcvbufErrors delta on the receiving side (whole namespace), skbs.
    pub rcvbuf_errors: Option<u64>,
    /// UDP: send calls refused with ENOBUFS/EAGAIN at the sender (not counted as sent).
    pub send_refused: Option<u64>,
    /// UDP: the sending side's namespace drop counters over the test.
    pub sender_host: Option<HostCounters>,
    /// UDP: the receiving side's namespace drop counters over the test.
    pub receiver_host: Option<HostCounters>,
    /// TCP: segments retransmitted by the sender (sender's TCP_INFO).
    pub retransmits: Option<u64>,
    /// TCP: sender's smoothed RTT at the end, µs (largest stream).
    pub rtt_us: Option<u64>,
    /// TCP: sender's cwnd at the end, segments (largest stream).
    pub cwnd_segments: Option<u64>,
    /// UDP: GSO used by the sender.
    pub gso: Option<bool>,
    /// UDP: GRO on at the receiver.
    pub gro: Option<bool>,
    /// UDP: the pacing rate per stream the sender used, bits/s (0: unpaced).
    pub paced_bits_per_second: u64,
    /// UDP: how the pacing rate was found, when a search found it (the UDP default).
    pub rate_search: Option<RateSearch>,
    /// Client CPU time (user + system) of its test threads, ms.
    pub client_cpu_ms: f64,
    /// Server CPU time (user + system) of its test threads, ms.
    pub server_cpu_ms: f64,
    /// rr, probe: latency measured by the requester.
    pub latency: Option<RrSummary>,
    /// probe: whether a bulk stream of the same transport ran beside the probes.
    pub under_load: Option<bool>,
    /// probe under load: the bulk stream's goodput, bits/s (counted at its receiver).
    pub load_bits_per_second: Option<f64>,
    /// Senders that stopped before the end of the test, and why.
    pub sender_errors: Vec<String>,
    /// Bulk tests: (`sender_copied_bytes` + `receiver_copied_bytes`) / `bytes`: the bytes
    /// copied between user memory and the kernel per payload byte delivered (null when a side
    /// did not count, or nothing arrived).
    pub copied_bytes_per_delivered_byte: Option<f64>,
    /// Bulk tests, counted at the sender: bytes its kernel copied from user memory. Plain
    /// sends: every byte the send calls accepted (= `sent_bytes`); `--zerocopy`: the bytes
    /// of MSG_ZEROCOPY calls notified SO_EE_CODE_ZEROCOPY_COPIED, plus plain sends after a
    /// refusal.
    pub sender_copied_bytes: Option<u64>,
    /// Bulk tests, counted at the receiver: bytes its recv calls copied out of the kernel
    /// (duplicates and foreign datagrams included).
    pub receiver_copied_bytes: Option<u64>,
    /// `--zerocopy`: the senders' notification counts, summed over the streams (`refused`:
    /// the first stream's reason).
    pub zerocopy: Option<ZeroCopyCount>,
}

fn any<T: Copy>(it: impl Iterator<Item = Option<T>>, f: impl Fn(T, T) -> T) -> Option<T> {
    it.flatten().reduce(f)
}

/// The rows of one outcome: one per direction.
pub fn rows(o: &TestOutcome) -> Vec<Row> {
    let p = &o.params;
    let mut dirs: Vec<Dir> = o.streams.iter().filter_map(|s| s.dir).collect();
    dirs.dedup();
    let cpu = |s: &SideReport| (s.cpu_user_us + s.cpu_sys_us) as f64 / 1000.0;
    dirs.into_iter()
        .map(|dir| {
            let ss: Vec<_> = o.streams.iter().filter(|s| s.dir == Some(dir)).collect();
            let sum = |f: fn(&StreamResult) -> u64| ss.iter().map(|s| f(s)).sum::<u64>();
            let mut duration_ns = ss.iter().map(|s| s.duration_ns).max().unwrap_or(0);
            if duration_ns == 0 || p.kind.measures_latency() {
                duration_ns = p.duration_ms * 1_000_000;
            }
            let (bytes, mut packets, sent) = (
                sum(|s| s.bytes),
                sum(|s| s.packets),
                sum(|s| s.sent_packets),
            );
            let udp = p.transport == Transport::Udp && !p.kind.measures_latency();
            let tcp = p.transport == Transport::Tcp;
            let mut reads = None;
            if tcp && !p.kind.measures_latency() {
                // The receiver counted read(2) calls; the messages are the sender's fixed-size
                // writes, delivered in order: complete ones = bytes / size.
                reads = Some(packets);
                packets = bytes / p.size.max(1) as u64;
            }
            let lost = sum(|s| s.lost);
            let (sender, receiver) = if dir == Dir::Up {
                (&o.client, &o.server)
            } else {
                (&o.server, &o.client)
            };
            let socket_skbs = any(ss.iter().map(|s| s.socket_drops), |a, b| a + b);
            let socket_datagrams = any(ss.iter().map(|s| s.socket_drops_datagrams), |a, b| a + b);
            let (send_times, recv_times) = (sum(|s| s.send_times), sum(|s| s.recv_times));
            let per = |n: u64| (n > 0).then(|| packets as f64 / n as f64);
            let jitter_samples = sum(|s| s.jitter_samples);
            let estimated = ss.iter().any(|s| s.socket_drops_estimated);
            let loss_by_place = udp.then(|| {
                attribute(&LossInputs {
                    lost,
                    sender: sender.host,
                    datagrams_per_send_skb: ss
                        .iter()
                        .map(|s| s.datagrams_per_send_skb)
                        .max()
                        .unwrap_or(1),
                    socket_skbs,
                    socket_datagrams,
                    receiver: receiver.host,
                    datagrams_per_recv_skb: per(recv_times).unwrap_or(1.0),
                    estimated,
                })
            });
            let all =
                |f: fn(&StreamResult) -> Option<u64>| ss.iter().map(|s| f(s)).sum::<Option<u64>>();
            let copies = if p.kind.measures_latency() {
                (None, None)
            } else {
                (
                    all(|s| s.sender_copied_bytes),
                    all(|s| s.receiver_copied_bytes),
                )
            };
            Row {
                test: p.kind,
                transport: p.transport,
                size_bytes: p.size,
                dir,
                streams: ss.len(),
                duration_ns,
                bytes,
                bits_per_second: bits_per_second(bytes, duration_ns),
                packets,
                packets_per_second: per_second(packets, duration_ns),
                reads,
                sent_packets: sent,
                sent_bytes: sum(|s| s.sent_bytes),
                lost,
                lost_percent: percent(lost, sent),
                loss_by_place,
                duplicates: sum(|s| s.duplicates),
                reordered: sum(|s| s.reordered),
                jitter_ms: (udp && jitter_samples > 0)
                    .then(|| ss.iter().map(|s| s.jitter_ns).max().unwrap_or(0) as f64 / 1e6),
                jitter_samples,
                datagrams_per_send_time: udp.then(|| per(send_times)).flatten(),
                datagrams_per_receive_time: udp.then(|| per(recv_times)).flatten(),
                jitter_note: udp
                    .then(|| jitter_note(packets, jitter_samples, per(send_times), per(recv_times)))
                    .flatten(),
                socket_drops_skbs: udp.then_some(socket_skbs).flatten(),
                socket_drops_datagrams: udp.then_some(socket_datagrams).flatten(),
                rcvbuf_errors: if udp { receiver.rcvbuf_errors } else { None },
                send_refused: udp.then(|| sum(|s| s.send_refused)),
                sender_host: udp.then_some(sender.host).flatten(),
                receiver_host: udp.then_some(receiver.host).flatten(),
                retransmits: if tcp {
                    any(ss.iter().map(|s| s.tcp.map(|t| t.retransmits)), |a, b| {
                        a + b
                    })
                } else {
                    None
                },
                rtt_us: if tcp {
                    any(ss.iter().map(|s| s.tcp.map(|t| t.rtt_us)), u64::max)
                } else {
                    None
                },
                cwnd_segments: if tcp {
                    any(ss.iter().map(|s| s.tcp.map(|t| t.cwnd)), u64::max)
                } else {
                    None
                },
                gso: if udp {
                    any(ss.iter().map(|s| s.gso), |a, b| a && b)
                } else {
                    None
                },
                gro: if udp {
                    any(ss.iter().map(|s| s.gro), |a, b| a && b)
                } else {
                    None
                },
                paced_bits_per_second: p.rate_bps,
                rate_search: None,
                client_cpu_ms: cpu(&o.client),
                server_cpu_ms: cpu(&o.server),
                latency: o.rr.clone(),
                under_load: None,
                load_bits_per_second: None,
                sender_errors: ss
                    .iter()
                    .filter_map(|s| {
                        s.sender_error
                            .as_ref()
                            .map(|e| format!("stream {}: {e}", s.stream))
                    })
                    .collect(),
                copied_bytes_per_delivered_byte: copied_per_delivered(copies.0, copies.1, bytes),
                sender_copied_bytes: copies.0,
                receiver_copied_bytes: copies.1,
                zerocopy: ss
                    .iter()
                    .filter_map(|s| s.zerocopy.as_ref())
                    .cloned()
                    .reduce(add_zerocopy),
            }
        })
        .collect()
}

/// Two senders' zerocopy counts summed; the first refusal reason kept.
fn add_zerocopy(a: ZeroCopyCount, b: ZeroCopyCount) -> ZeroCopyCount {
    ZeroCopyCount {
        refused: a.refused.or(b.refused),
        calls: a.calls + b.calls,
        bytes: a.bytes + b.bytes,
        notified_calls: a.notified_calls + b.notified_calls,
        copied_calls: a.copied_calls + b.copied_calls,
        copied_bytes: a.copied_bytes + b.copied_bytes,
        unnotified_bytes: a.unnotified_bytes + b.unnotified_bytes,
        plain_bytes: a.plain_bytes + b.plain_bytes,
    }
}

/// (sender copied + receiver copied) / delivered bytes; None when a side did not count or
/// nothing was delivered.
fn copied_per_delivered(sender: Option<u64>, receiver: Option<u64>, bytes: u64) -> Option<f64> {
    let (s, r) = (sender?, receiver?);
    (bytes > 0).then(|| (s + r) as f64 / bytes as f64)
}

/// The `copies:` note of a bulk row of `bytes` delivered: the copied-per-delivered figure,
/// split by side, and what the sender's kernel did with its sends (from the MSG_ZEROCOPY
/// notifications when asked).
fn copies_note(
    bytes: u64,
    sender: Option<u64>,
    receiver: Option<u64>,
    zerocopy: Option<&ZeroCopyCount>,
) -> Option<String> {
    let figure = copied_per_delivered(sender, receiver, bytes)?;
    let (sender, receiver) = (sender?, receiver?);
    let per = |n: u64| n as f64 / bytes as f64;
    let how = match zerocopy {
        None => "all sends copied by the kernel (zerocopy not asked)".to_string(),
        Some(z) if z.calls == 0 => format!(
            "all sends copied by the kernel (zerocopy refused: {})",
            z.refused
                .as_deref()
                .unwrap_or("no MSG_ZEROCOPY call was accepted")
        ),
        Some(z) => {
            let mut t = format!(
                "MSG_ZEROCOPY: {} of {} calls notified COPIED by the kernel",
                z.copied_calls, z.calls
            );
            if z.notified_calls > 0 && z.copied_calls == z.notified_calls {
                // What every notification said; the likely reason, named as one.
                t.push_str(
                    " (all of them: data looped to a local socket, as on loopback or veth, is \
                     copied at delivery)",
                );
            } else if z.notified_calls > z.copied_calls {
                let _ = write!(
                    t,
                    ", {} sent without a copy",
                    z.notified_calls - z.copied_calls
                );
            }
            if z.notified_calls < z.calls {
                let _ = write!(
                    t,
                    ", {} not notified ({} B, not counted)",
                    z.calls - z.notified_calls,
                    z.unnotified_bytes
                );
            }
            if let Some(why) = &z.refused {
                let _ = write!(t, "; then {why}");
            }
            t
        }
    };
    Some(format!(
        "copies: {figure:.2} bytes copied per byte delivered (sender {:.2}: {how}; receiver \
         {:.2})",
        per(sender),
        per(receiver)
    ))
}

/// Why a UDP row has no jitter figure, or how coarse its timestamps were; None when every
/// datagram had its own send and receive time.
fn jitter_note(
    datagrams: u64,
    samples: u64,
    per_send: Option<f64>,
    per_recv: Option<f64>,
) -> Option<String> {
    let (s, r) = (per_send.unwrap_or(1.0), per_recv.unwrap_or(1.0));
    if datagrams < 2 {
        return Some("n/a: fewer than 2 datagrams arrived".into());
    }
    if samples == 0 {
        let why = if r >= s {
            format!("{r:.0} datagrams per receive batch share one timestamp")
        } else {
            format!("{s:.0} datagrams per send call share one send time")
        };
        return Some(format!("n/a: {why}"));
    }
    (s > 1.5 || r > 1.5).then(|| {
        format!(
            "from {samples} samples: {s:.0} datagrams per send call share one send time, \
             {r:.0} per receive timestamp"
        )
    })
}

/// Human bits per second: `941.2 Mbit/s`.
pub fn human_bps(bps: f64) -> String {
    let (v, unit) = if bps >= 1e9 {
        (bps / 1e9, "Gbit/s")
    } else if bps >= 1e6 {
        (bps / 1e6, "Mbit/s")
    } else if bps >= 1e3 {
        (bps / 1e3, "kbit/s")
    } else {
        (bps, "bit/s")
    };
    format!("{v:.2} {unit}")
}

/// Human events per second: `1.50 M/s`.
pub fn human_rate(pps: f64) -> String {
    if pps >= 1e6 {
        format!("{:.2} M/s", pps / 1e6)
    } else if pps >= 1e3 {
        format!("{:.1} k/s", pps / 1e3)
    } else {
        format!("{pps:.0} /s")
    }
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

fn name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

/// Widest a rendered table or note line may be (terminal columns).
pub const MAX_WIDTH: u16 = 100;

const HEADERS: [&str; 9] = [
    "test",
    "proto",
    "size",
    "dir",
    "goodput",
    "msg/s",
    "lost",
    "jitter us",
    "cpu ms c/s",
];
const RR_HEADERS: [&str; 10] = [
    "test",
    "proto",
    "size",
    "round trips",
    "lost",
    "p50 us",
    "p90 us",
    "p99 us",
    "p99.9 us",
    "max us",
];

fn cells(r: &Row) -> Vec<String> {
    let udp = r.transport == Transport::Udp;
    vec![
        format!("{:?}", r.test).to_lowercase(),
        name(r.transport).into(),
        format!("{} B", r.size_bytes),
        format!("{:?}", r.dir).to_lowercase(),
        human_bps(r.bits_per_second),
        human_rate(r.packets_per_second),
        if udp {
            format!("{} ({:.2} %)", r.lost, r.lost_percent)
        } else {
            "0".into()
        },
        match (udp, r.jitter_ms) {
            (false, _) => "-".into(),
            (true, Some(j)) => format!("{:.1}", j * 1000.0),
            (true, None) => "n/a".into(),
        },
        format!("{:.0}/{:.0}", r.client_cpu_ms, r.server_cpu_ms),
    ]
}

fn rr_cells(r: &Row) -> Vec<String> {
    let l = r.latency.clone().unwrap_or_default();
    vec![
        "rr".into(),
        name(r.transport).into(),
        format!("{} B", r.size_bytes),
        l.count.to_string(),
        l.lost.to_string(),
        us(l.p50_ns),
        us(l.p90_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
    ]
}

const PROBE_HEADERS: [&str; 10] = [
    "probes",
    "size",
    "beside",
    "sent",
    "lost",
    "p50 us",
    "p99 us",
    "p99.9 us",
    "max us",
    "bulk goodput",
];

fn probe_cells(r: &Row) -> Vec<String> {
    let l = r.latency.clone().unwrap_or_default();
    let proto = name(r.transport);
    vec![
        proto.into(),
        format!("{} B", r.size_bytes),
        if r.under_load == Some(true) {
            format!("{proto} bulk")
        } else {
            "nothing".into()
        },
        r.sent_packets.to_string(),
        l.lost.to_string(),
        us(l.p50_ns),
        us(l.p99_ns),
        us(l.p999_ns),
        us(l.max_ns),
        r.load_bits_per_second.map_or("-".into(), human_bps),
    ]
}

/// The tables a report has, bulk tests and rr tests: headers and each row's cells; a
/// table without rows is left out.
fn sections(rows: &[Row]) -> Vec<(&'static [&'static str], Vec<Vec<String>>)> {
    let of = |k: fn(TestKind) -> bool| rows.iter().filter(move |r| k(r.test));
    [
        (
            &HEADERS[..],
            of(|k| !k.measures_latency()).map(cells).collect::<Vec<_>>(),
        ),
        (
            &RR_HEADERS[..],
            of(|k| k == TestKind::Rr).map(rr_cells).collect(),
        ),
        (
            &PROBE_HEADERS[..],
            of(|k| k == TestKind::Probe).map(probe_cells).collect(),
        ),
    ]
    .into_iter()
    .filter(|(_, body)| !body.is_empty())
    .collect()
}

/// The terminal table(s).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    for (headers, body) in sections(rows) {
        let mut t = comfy_table::Table::new();
        t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
        t.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
        t.set_width(MAX_WIDTH);
        t.set_header(headers.to_vec());
        for c in body {
            t.add_row(c);
        }
        let _ = writeln!(out, "{t}");
    }
    out.push_str(&notes(rows));
    out
}

/// The lines under a table: per UDP row where its loss went, what its jitter is made of and
/// its duplicates/reordering; per TCP row the sender's TCP_INFO and the reads the receiver
/// made; and every sender that stopped early. Each line fits [`MAX_WIDTH`] columns.
pub fn notes(rows: &[Row]) -> String {
    let mut lines = Vec::new();
    for r in rows.iter().filter(|r| !r.test.measures_latency()) {
        let who = format!(
            "{} {} B {}:",
            name(r.transport),
            r.size_bytes,
            format!("{:?}", r.dir).to_lowercase()
        );
        if let Some(l) = r.loss_by_place {
            if r.lost > 0 {
                lines.push(format!(
                    "{who} lost datagrams by place: sender {}, receiving socket {}, receiving \
                     host {}, path {}{}",
                    l.sender,
                    l.socket,
                    l.receiving_host,
                    l.path,
                    if l.estimated {
                        " (estimate: GRO skbs converted at the mean datagrams per received skb, the error lands in path)"
                    } else {
                        ""
                    }
                ));
            }
            if let Some(j) = &r.jitter_note {
                lines.push(format!("{who} jitter {j}"));
            }
            if r.duplicates > 0 || r.reordered > 0 {
                lines.push(format!(
                    "{who} {} duplicates, {} reordered (RFC 4737)",
                    r.duplicates, r.reordered
                ));
            }
        }
        if let (Some(n), Some(reads)) = (r.retransmits, r.reads) {
            lines.push(format!(
                "{who} msg/s counts complete {} B messages; the receiver made {reads} reads; \
                 sender: {n} retransmits, rtt {} us, cwnd {} segments",
                r.size_bytes,
                opt(r.rtt_us),
                opt(r.cwnd_segments)
            ));
        }
        if let Some(c) = copies_note(
            r.bytes,
            r.sender_copied_bytes,
            r.receiver_copied_bytes,
            r.zerocopy.as_ref(),
        ) {
            lines.push(format!("{who} {c}"));
        }
        for e in &r.sender_errors {
            lines.push(format!("{who} sender stopped early: {e}"));
        }
    }
    let mut out = String::new();
    for l in lines {
        for w in wrap(&format!("note: {l}"), MAX_WIDTH as usize) {
            let _ = writeln!(out, "{w}");
        }
    }
    out
}

/// Splits `line` at spaces into pieces of at most `width` characters (continuations indented).
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut out = vec![String::new()];
    for word in line.split(' ') {
        let cur = out.last_mut().expect("never empty");
        if !cur.trim().is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            out.push(format!("      {word}"));
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    out
}

/// A Markdown table (GitHub style).
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::new();
    for (headers, body) in sections(rows) {
        let _ = writeln!(out, "| {} |", headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(headers.len()));
        for c in body {
            let _ = writeln!(
                out,
                "| {} |",
                c.join(" | ").replace('|', "\\|").replace(" \\| ", " | ")
            );
        }
        out.push('\n');
    }
    out.push_str(&notes(rows));
    out
}

/// CSV: one header line and one line per row; latency columns empty for bulk tests, jitter
/// empty when there is no jitter figure.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "test,transport,size_bytes,dir,streams,duration_ns,bytes,bits_per_second,packets,packets_per_second,sent_packets,lost,lost_percent,lost_sender,lost_socket,lost_receiving_host,lost_path,duplicates,reordered,jitter_ms,jitter_samples,socket_drops_skbs,socket_drops_datagrams,rcvbuf_errors,retransmits,rtt_us,cwnd_segments,client_cpu_ms,server_cpu_ms,rr_count,p50_ns,p90_ns,p99_ns,p999_ns,max_ns\n",
    );
    for r in rows {
        let l = r.latency.as_ref();
        let lat = |f: fn(&RrSummary) -> u64| l.map_or(String::new(), |l| f(l).to_string());
        let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let place = |f: fn(&LossByPlace) -> u64| o(r.loss_by_place.as_ref().map(f));
        let _ = writeln!(
            out,
            "{:?},{:?},{},{:?},{},{},{},{:.0},{},{:.1},{},{},{:.4},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{}",
            r.test,
            r.transport,
            r.size_bytes,
            r.dir,
            r.streams,
            r.duration_ns,
            r.bytes,
            r.bits_per_second,
            r.packets,
            r.packets_per_second,
            r.sent_packets,
            r.lost,
            r.lost_percent,
            place(|l| l.sender),
            place(|l| l.socket),
            place(|l| l.receiving_host),
            place(|l| l.path),
            r.duplicates,
            r.reordered,
            r.jitter_ms.map_or(String::new(), |j| format!("{j:.4}")),
            r.jitter_samples,
            o(r.socket_drops_skbs),
            o(r.socket_drops_datagrams),
            o(r.rcvbuf_errors),
            o(r.retransmits),
            o(r.rtt_us),
            o(r.cwnd_segments),
            r.client_cpu_ms,
            r.server_cpu_ms,
            lat(|l| l.count),
            lat(|l| l.p50_ns),
            lat(|l| l.p90_ns),
            lat(|l| l.p99_ns),
            lat(|l| l.p999_ns),
            lat(|l| l.max_ns)
        );
    }
    // Enum names (Stream, Udp, Up) in lower case, as in the JSON.
    out.to_lowercase()
}

/// The sentences that say what differed, per payload size with both TCP and UDP rows.
pub fn summary(rows: &[Row]) -> String {
    let mut parts = Vec::new();
    let mut sizes: Vec<(TestKind, usize, Dir)> =
        rows.iter().map(|r| (r.test, r.size_bytes, r.dir)).collect();
    sizes.dedup();
    for (kind, size, dir) in sizes {
        let find = |t| {
            rows.iter().find(|r| {
                r.test == kind && r.size_bytes == size && r.dir == dir && r.transport == t
            })
        };
        let (Some(tcp), Some(udp)) = (find(Transport::Tcp), find(Transport::Udp)) else {
            continue;
        };
        if kind == TestKind::Probe {
            continue;
        }
        if kind == TestKind::Rr {
            let (t, u) = (
                tcp.latency.clone().unwrap_or_default(),
                udp.latency.clone().unwrap_or_default(),
            );
            parts.push(format!(
                "rr {size} B: UDP p50 {} us vs TCP {} us ({}), p99 {} us vs {} us",
                us(u.p50_ns),
                us(t.p50_ns),
                ratio_word(t.p50_ns as f64, u.p50_ns as f64, "faster"),
                us(u.p99_ns),
                us(t.p99_ns)
            ));
            continue;
        }
        let lead = if kind == TestKind::Rate {
            format!(
                "{:.2}x TCP's message rate ({} datagrams vs {} {size}-byte messages delivered, \
                 counted at the receivers)",
                ratio(udp.packets_per_second, tcp.packets_per_second),
                human_rate(udp.packets_per_second),
                human_rate(tcp.packets_per_second),
            )
        } else {
            format!(
                "{:.2}x TCP's goodput ({} vs {})",
                ratio(udp.bits_per_second, tcp.bits_per_second),
                human_bps(udp.bits_per_second),
                human_bps(tcp.bits_per_second),
            )
        };
        parts.push(format!(
            "UDP {size} B{}: {lead}, {:.2} % lost ({} of {}{}); TCP: 0 lost, {} retransmits",
            match (&udp.rate_search, udp.paced_bits_per_second) {
                (Some(s), 0) => format!(
                    " unpaced (a search found unpaced within {} % loss)",
                    s.target_loss_percent
                ),
                (Some(s), b) => format!(
                    " paced at {} per stream (searched: highest rate with <= {} % lost)",
                    human_bps(b as f64),
                    s.target_loss_percent
                ),
                (None, 0) => String::from(" unpaced"),
                (None, b) => format!(" paced at {} per stream", human_bps(b as f64)),
            },
            udp.lost_percent,
            udp.lost,
            udp.sent_packets,
            match udp.loss_by_place {
                Some(l) if udp.lost > 0 => format!(
                    ": sender {}, socket {}, receiving host {}, path {}",
                    l.sender, l.socket, l.receiving_host, l.path
                ),
                _ => String::new(),
            },
            tcp.retransmits.unwrap_or(0)
        ));
    }
    parts.extend(probe_summary(rows));
    parts.join("\n")
}

/// [`summary`] for a terminal: every line wrapped at [`MAX_WIDTH`] columns.
pub fn summary_text(rows: &[Row]) -> String {
    summary(rows)
        .lines()
        .flat_map(|l| wrap(l, MAX_WIDTH as usize))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Per transport with probes alone and under load: how much the bulk stream added.
fn probe_summary(rows: &[Row]) -> Vec<String> {
    let mut out = Vec::new();
    for t in [Transport::Tcp, Transport::Udp] {
        let find = |load: bool| {
            rows.iter().find(|r| {
                r.test == TestKind::Probe && r.transport == t && r.under_load == Some(load)
            })
        };
        let (Some(idle), Some(busy)) = (find(false), find(true)) else {
            continue;
        };
        let (i, b) = (
            idle.latency.clone().unwrap_or_default(),
            busy.latency.clone().unwrap_or_default(),
        );
        out.push(format!(
            "{p} probes (open loop, {} B): p50 {} -> {} us, p99 {} -> {} us, p99.9 {} -> {} us \
             beside a {p} bulk stream of {}; {} of {} probes lost",
            idle.size_bytes,
            us(i.p50_ns),
            us(b.p50_ns),
            us(i.p99_ns),
            us(b.p99_ns),
            us(i.p999_ns),
            us(b.p999_ns),
            busy.load_bits_per_second.map_or("-".into(), human_bps),
            b.lost,
            busy.sent_packets,
            p = name(t),
        ));
    }
    out
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

fn ratio_word(tcp: f64, udp: f64, word: &str) -> String {
    if udp == 0.0 || tcp == 0.0 {
        return "no data".into();
    }
    format!("UDP {:.2}x {word}", tcp / udp)
}

/// An interval sample as a JSON line / table line.
#[derive(Debug, Clone, Serialize)]
pub struct IntervalLine {
    /// Test kind.
    pub test: TestKind,
    /// Transport.
    pub transport: Transport,
    /// Payload size.
    pub size_bytes: usize,
    /// Direction.
    pub dir: Dir,
    /// Stream id.
    pub stream: u16,
    /// Interval start since the test began, seconds.
    pub start_s: f64,
    /// Interval end, seconds.
    pub end_s: f64,
    /// Bytes in the interval.
    pub bytes: u64,
    /// Goodput in the interval.
    pub bits_per_second: f64,
    /// Packets in the interval.
    pub packets: u64,
    /// Packets per second.
    pub packets_per_second: f64,
}

impl IntervalLine {
    /// From a sample of a test with `p`'s parameters.
    pub fn new(p: &super::protocol::TestParams, dir: Dir, s: &IntervalSample) -> Self {
        let ns = s.end_ns.saturating_sub(s.start_ns);
        Self {
            test: p.kind,
            transport: p.transport,
            size_bytes: p.size,
            dir,
            stream: s.stream,
            start_s: s.start_ns as f64 / 1e9,
            end_s: s.end_ns as f64 / 1e9,
            bytes: s.bytes,
            bits_per_second: bits_per_second(s.bytes, ns),
            packets: s.packets,
            packets_per_second: per_second(s.packets, ns),
        }
    }

    /// One human line.
    pub fn text(&self) -> String {
        format!(
            "[{} {} B {:?} #{}] {:6.2}-{:6.2} s  {:>14}  {:>10}",
            name(self.transport),
            self.size_bytes,
            self.dir,
            self.stream,
            self.start_s,
            self.end_s,
            human_bps(self.bits_per_second),
            human_rate(self.packets_per_second)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_notes_say_why() {
        assert_eq!(
            jitter_note(1000, 0, Some(1.0), Some(44.0)).as_deref(),
            Some("n/a: 44 datagrams per receive batch share one timestamp")
        );
        assert_eq!(
            jitter_note(1000, 0, Some(64.0), Some(1.0)).as_deref(),
            Some("n/a: 64 datagrams per send call share one send time")
        );
        assert_eq!(jitter_note(1000, 999, Some(1.0), Some(1.0)), None);
        assert!(jitter_note(1, 0, None, None).is_some_and(|n| n.contains("fewer than 2")));
    }

    #[test]
    fn notes_wrap_at_the_width() {
        let long = "word ".repeat(60);
        let lines = wrap(long.trim(), 40);
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.chars().count() <= 40), "{lines:?}");
        assert_eq!(
            lines.join(" ").split_whitespace().count(),
            60,
            "no word lost"
        );
    }

    #[test]
    fn copies_notes_say_where_the_copies_were() {
        assert_eq!(
            copies_note(1000, Some(1010), Some(1000), None).as_deref(),
            Some(
                "copies: 2.01 bytes copied per byte delivered (sender 1.01: all sends copied by \
                 the kernel (zerocopy not asked); receiver 1.00)"
            )
        );
        assert_eq!(copies_note(0, Some(10), Some(0), None), None);
        assert_eq!(copies_note(10, None, Some(10), None), None);
        let refused = ZeroCopyCount {
            refused: Some("setsockopt(SO_ZEROCOPY) refused: EOPNOTSUPP".into()),
            plain_bytes: 1000,
            ..ZeroCopyCount::default()
        };
        let note = copies_note(1000, Some(1000), Some(1000), Some(&refused)).unwrap();
        assert!(note.contains("(zerocopy refused: setsockopt(SO_ZEROCOPY) refused: EOPNOTSUPP)"));
        let mixed = ZeroCopyCount {
            calls: 10,
            bytes: 1000,
            notified_calls: 9,
            copied_calls: 4,
            copied_bytes: 400,
            unnotified_bytes: 100,
            ..ZeroCopyCount::default()
        };
        let note = copies_note(1000, Some(400), Some(1000), Some(&mixed)).unwrap();
        assert!(
            note.starts_with("copies: 1.40 bytes copied per byte delivered (sender 0.40:"),
            "{note}"
        );
        assert!(note.contains("4 of 10 calls notified COPIED by the kernel, 5 sent without a copy, 1 not notified (100 B, not counted)"), "{note}");
        let looped = ZeroCopyCount {
            calls: 3,
            bytes: 300,
            notified_calls: 3,
            copied_calls: 3,
            copied_bytes: 300,
            ..ZeroCopyCount::default()
        };
        let note = copies_note(300, Some(300), Some(300), Some(&looped)).unwrap();
        assert!(
            note.contains("3 of 3 calls notified COPIED by the kernel (all of them:"),
            "{note}"
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_bps(0.0), "0.00 bit/s");
        assert_eq!(human_bps(2.5e9), "2.50 Gbit/s");
        assert_eq!(human_rate(1_500_000.0), "1.50 M/s");
    }
}
