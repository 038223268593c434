//! Turns test outcomes into rows and renders them: a table (comfy-table), JSON (one document
//! with a `meta` block), JSON lines (`start`/`interval`/`end` envelopes), CSV and Markdown, plus
//! the sentence that says what differed between TCP and UDP. Units are in field names; every
//! float is finite (rates over zero time are 0, never NaN or Infinity).

use std::fmt::Write as _;

use serde::Serialize;

use super::culprit::{HostCounters, LossByPlace, LossInputs, attribute};
use super::kind;
use super::protocol::{
    Dir, IntervalSample, OptionTally, SideReport, StreamCpu, StreamResult, TestKind, Transport,
};
use super::search::RateSearch;
use super::stats::{bits_per_second, per_second, percent};
use super::zerocopy::ZeroCopyCount;
use super::{RrSummary, TestOutcome};
use crate::sock::options::OptStatus;

/// The run's metadata (hyperfine-style export header): the common `meta` fields
/// ([`crate::meta::Meta`]: version, kernel, CPUs, host, start, parameters) and the target.
#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    /// The fields every socklab document's meta has.
    #[serde(flatten)]
    pub common: crate::meta::Meta,
    /// Where the run went: "local", "mesh", or the server address.
    pub target: String,
}

impl Meta {
    /// Metadata of this machine now; `parameters` are all the flags as given (the CLI's plain
    /// config).
    pub fn new(target: String, parameters: serde_json::Value) -> Self {
        Self {
            common: crate::meta::Meta::now(parameters),
            target,
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
    /// What became of the socket options each side set on its data sockets (the whole
    /// test's, so the rows of one test carry the same).
    pub socket_options: SocketOptions,
    /// TCP without `--sndbuf`: the SO_SNDBUF bytes asked on data sockets because their peer
    /// was on this host ([`LOCAL_TCP_SNDBUF`](super::LOCAL_TCP_SNDBUF)); null when send
    /// buffers were autotuned or set by `--sndbuf`.
    pub local_peer_sndbuf: Option<u64>,
    /// The CPU each side pinned each stream's thread to (empty lists: the scheduler placed
    /// them); the rows of one test share it.
    pub stream_cpus: StreamCpus,
}

/// The CPUs of a test's stream threads, per side.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StreamCpus {
    /// The client's threads.
    pub client: Vec<StreamCpu>,
    /// The server's threads.
    pub server: Vec<StreamCpu>,
}

/// The socket options of a test's data sockets, per side, each as the side's kernel applied,
/// changed or refused it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SocketOptions {
    /// Set by the client on its data sockets.
    pub client: Vec<OptionTally>,
    /// Set by the server on its data sockets (empty from a server older than this report).
    pub server: Vec<OptionTally>,
}

fn any<T: Copy>(it: impl Iterator<Item = Option<T>>, f: impl Fn(T, T) -> T) -> Option<T> {
    it.flatten().reduce(f)
}

/// The rows of one outcome: one per direction, as its kind summarises them
/// ([`Kind::row`](super::kind::Kind::row)).
pub fn rows(o: &TestOutcome) -> Vec<Row> {
    let kind = kind::of(o.params.kind);
    let mut dirs: Vec<Dir> = o.streams.iter().filter_map(|s| s.dir).collect();
    dirs.dedup();
    dirs.into_iter()
        .map(|dir| {
            let ss: Vec<_> = o.streams.iter().filter(|s| s.dir == Some(dir)).collect();
            kind.row(o, dir, &ss)
        })
        .collect()
}

/// The figures every row has, over `duration_ns`: bytes and messages as the stream results
/// count them, the senders' counts, the TCP sender's TCP_INFO, CPU time, latency (round-trip
/// kinds) and the senders that stopped early. The figures of a one-way flow are left empty
/// ([`flow_row`] fills them).
pub fn row(o: &TestOutcome, dir: Dir, ss: &[&StreamResult], duration_ns: u64) -> Row {
    let p = &o.params;
    let cpu = |s: &SideReport| (s.cpu_user_us + s.cpu_sys_us) as f64 / 1000.0;
    let sum = |f: fn(&StreamResult) -> u64| ss.iter().map(|s| f(s)).sum::<u64>();
    let (bytes, packets, sent) = (
        sum(|s| s.bytes),
        sum(|s| s.packets),
        sum(|s| s.sent_packets),
    );
    let lost = sum(|s| s.lost);
    let tcp = p.transport == Transport::Tcp;
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
        reads: None,
        sent_packets: sent,
        sent_bytes: sum(|s| s.sent_bytes),
        lost,
        lost_percent: percent(lost, sent),
        loss_by_place: None,
        duplicates: sum(|s| s.duplicates),
        reordered: sum(|s| s.reordered),
        jitter_ms: None,
        jitter_samples: sum(|s| s.jitter_samples),
        datagrams_per_send_time: None,
        datagrams_per_receive_time: None,
        jitter_note: None,
        socket_drops_skbs: None,
        socket_drops_datagrams: None,
        rcvbuf_errors: None,
        send_refused: None,
        sender_host: None,
        receiver_host: None,
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
        gso: None,
        gro: None,
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
        copied_bytes_per_delivered_byte: None,
        sender_copied_bytes: None,
        receiver_copied_bytes: None,
        zerocopy: None,
        socket_options: SocketOptions {
            client: o.client.socket_options.clone(),
            server: o.server.socket_options.clone(),
        },
        stream_cpus: StreamCpus {
            client: o.client.stream_cpus.clone(),
            server: o.server.stream_cpus.clone(),
        },
        local_peer_sndbuf: if tcp && p.sndbuf.is_none() {
            [&o.client.socket_options, &o.server.socket_options]
                .into_iter()
                .flatten()
                .find(|t| t.outcome.option == "SO_SNDBUF")
                .and_then(|t| t.outcome.asked.as_u64())
        } else {
            None
        },
    }
}

/// The note lines of a row's socket options: one per option a side's kernel did not apply
/// as asked (unsupported, refused, or another value than asked beyond the documented doubling
/// of buffer sizes). Options applied as asked make no line.
fn option_notes(r: &Row) -> Vec<String> {
    let local = r.local_peer_sndbuf.map(|n| {
        format!(
            "{} {} B: SO_SNDBUF {} per data socket (the kernel doubles it): the peer is on this \
             host, where autotuning lets each stream queue MBs unread in its receive queue \
             (--sndbuf sets another)",
            name(r.transport),
            r.size_bytes,
            format_args!("{} KiB", n >> 10),
        )
    });
    let cpus = |side: &[StreamCpu]| {
        side.iter()
            .map(|c| format!("{}:{}", c.stream, c.cpu))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pinned =
        (!r.stream_cpus.client.is_empty() || !r.stream_cpus.server.is_empty()).then(|| {
            format!(
                "{} {} B: stream threads pinned (stream:CPU, sched_setaffinity): client {}; \
             server {}",
                name(r.transport),
                r.size_bytes,
                cpus(&r.stream_cpus.client),
                cpus(&r.stream_cpus.server),
            )
        });
    let sides = [
        ("client", &r.socket_options.client),
        ("server", &r.socket_options.server),
    ];
    sides
        .into_iter()
        .flat_map(|(side, tallies)| {
            tallies
                .iter()
                .filter(|t| t.outcome.status != OptStatus::Applied)
                .map(move |t| {
                    let effect = if t.outcome.in_force() {
                        ""
                    } else {
                        "; the test ran without it"
                    };
                    format!(
                        "{} {} B: {side} {} ({} {}){effect}",
                        name(r.transport),
                        r.size_bytes,
                        t.outcome.describe(),
                        t.sockets,
                        if t.sockets == 1 { "socket" } else { "sockets" },
                    )
                })
        })
        .chain(local)
        .chain(pinned)
        .collect()
}

/// The row of a one-way flow (`stream`, `rate`), over the receivers' first-to-last byte (the
/// test's duration when nothing arrived). TCP: the messages are the sender's fixed-size
/// writes, delivered in order, so complete ones = bytes / size; the receiver's read(2) calls
/// are kept aside in `reads`. UDP: loss by place, jitter, socket drops, GSO/GRO.
pub fn flow_row(o: &TestOutcome, dir: Dir, ss: &[&StreamResult]) -> Row {
    let p = &o.params;
    let mut duration_ns = ss.iter().map(|s| s.duration_ns).max().unwrap_or(0);
    if duration_ns == 0 {
        duration_ns = p.duration_ms * 1_000_000;
    }
    let mut r = row(o, dir, ss, duration_ns);
    match p.transport {
        Transport::Tcp => {
            r.reads = Some(r.packets);
            r.packets = r.bytes / p.size.max(1) as u64;
            r.packets_per_second = per_second(r.packets, duration_ns);
        }
        Transport::Udp => add_datagram_figures(&mut r, o, ss),
    }
    add_copy_figures(&mut r, ss);
    r
}

/// A UDP flow row's datagram accounting: where the lost ones went, jitter and what its
/// timestamps were made of, socket and host drop counters, GSO/GRO.
fn add_datagram_figures(r: &mut Row, o: &TestOutcome, ss: &[&StreamResult]) {
    let sum = |f: fn(&StreamResult) -> u64| ss.iter().map(|s| f(s)).sum::<u64>();
    let (sender, receiver) = if r.dir == Dir::Up {
        (&o.client, &o.server)
    } else {
        (&o.server, &o.client)
    };
    let packets = r.packets;
    let socket_skbs = any(ss.iter().map(|s| s.socket_drops), |a, b| a + b);
    let socket_datagrams = any(ss.iter().map(|s| s.socket_drops_datagrams), |a, b| a + b);
    let (send_times, recv_times) = (sum(|s| s.send_times), sum(|s| s.recv_times));
    let per = |n: u64| (n > 0).then(|| packets as f64 / n as f64);
    let jitter_samples = r.jitter_samples;
    let estimated = ss.iter().any(|s| s.socket_drops_estimated);
    r.loss_by_place = Some(attribute(&LossInputs {
        lost: r.lost,
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
    }));
    r.jitter_ms = (jitter_samples > 0)
        .then(|| ss.iter().map(|s| s.jitter_ns).max().unwrap_or(0) as f64 / 1e6);
    r.datagrams_per_send_time = per(send_times);
    r.datagrams_per_receive_time = per(recv_times);
    r.jitter_note = jitter_note(packets, jitter_samples, per(send_times), per(recv_times));
    r.socket_drops_skbs = socket_skbs;
    r.socket_drops_datagrams = socket_datagrams;
    r.rcvbuf_errors = receiver.rcvbuf_errors;
    r.send_refused = Some(sum(|s| s.send_refused));
    r.sender_host = sender.host;
    r.receiver_host = receiver.host;
    r.gso = any(ss.iter().map(|s| s.gso), |a, b| a && b);
    r.gro = any(ss.iter().map(|s| s.gro), |a, b| a && b);
}

/// A flow row's copies: each side's copied bytes (both counted, or none), the figure per
/// delivered byte, and the senders' zerocopy counts.
fn add_copy_figures(r: &mut Row, ss: &[&StreamResult]) {
    let all = |f: fn(&StreamResult) -> Option<u64>| ss.iter().map(|s| f(s)).sum::<Option<u64>>();
    r.sender_copied_bytes = all(|s| s.sender_copied_bytes);
    r.receiver_copied_bytes = all(|s| s.receiver_copied_bytes);
    r.copied_bytes_per_delivered_byte =
        copied_per_delivered(r.sender_copied_bytes, r.receiver_copied_bytes, r.bytes);
    r.zerocopy = ss
        .iter()
        .filter_map(|s| s.zerocopy.as_ref())
        .cloned()
        .reduce(add_zerocopy);
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

/// The `copies:` note of a flow row of `bytes` delivered: the copied-per-delivered figure,
/// split by side, and what the sender's kernel did with its sends (from the MSG_ZEROCOPY
/// notifications when asked).
pub fn copies_note(
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

/// Nanoseconds as microseconds with one decimal (`12.3`), for latency cells.
pub fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

/// A figure that may be missing: its text, or `-`.
pub fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// The transport as the tables and notes name it: `TCP`, `UDP`.
pub fn name(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    }
}

/// Widest a rendered table or note line may be (terminal columns).
pub const MAX_WIDTH: u16 = 100;

/// A table of the report: its headers and how a row becomes its cells. Kinds whose rows read
/// the same share one ([`Kind::table`](super::kind::Kind::table)).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The column headers.
    pub headers: &'static [&'static str],
    /// A row's cells, one per header.
    pub cells: fn(&Row) -> Vec<String>,
}

/// The tables a report has, in the order of [`kind::ALL`]: headers and each row's cells; a
/// table without rows is left out.
fn sections(rows: &[Row]) -> Vec<(&'static [&'static str], Vec<Vec<String>>)> {
    let mut out: Vec<(&'static [&'static str], Vec<Vec<String>>)> = Vec::new();
    for k in kind::ALL {
        let t = kind::of(k).table();
        if out.iter().any(|(h, _)| *h == t.headers) {
            continue;
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .filter(|r| kind::of(r.test).table().headers == t.headers)
            .map(t.cells)
            .collect();
        if !body.is_empty() {
            out.push((t.headers, body));
        }
    }
    out
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

/// The lines under a table: what each row's kind notes about it
/// ([`Kind::notes`](super::kind::Kind::notes)), then every socket option a side's kernel did not
/// apply as asked; each line wrapped to [`MAX_WIDTH`] columns.
pub fn notes(rows: &[Row]) -> String {
    let mut lines: Vec<String> = rows
        .iter()
        .flat_map(|r| kind::of(r.test).notes(r))
        .collect();
    // Every test's rows share its options: one line per test, side and option.
    for l in rows.iter().flat_map(option_notes) {
        if !lines.contains(&l) {
            lines.push(l);
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

/// CSV: one header line and one line per row, the columns named as the JSON fields; a column
/// that does not apply to a row is empty (latency for bulk tests, jitter without a figure,
/// copies for round trips).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "test,transport,size_bytes,dir,streams,duration_ns,bytes,bits_per_second,packets,packets_per_second,sent_packets,lost,lost_percent,lost_sender,lost_socket,lost_receiving_host,lost_path,duplicates,reordered,jitter_ms,jitter_samples,socket_drops_skbs,socket_drops_datagrams,rcvbuf_errors,retransmits,rtt_us,cwnd_segments,local_peer_sndbuf,sender_copied_bytes,receiver_copied_bytes,copied_bytes_per_delivered_byte,client_cpu_ms,server_cpu_ms,rr_count,p50_ns,p90_ns,p99_ns,p999_ns,max_ns\n",
    );
    for r in rows {
        let l = r.latency.as_ref();
        let lat = |f: fn(&RrSummary) -> u64| l.map_or(String::new(), |l| f(l).to_string());
        let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let place = |f: fn(&LossByPlace) -> u64| o(r.loss_by_place.as_ref().map(f));
        let _ = writeln!(
            out,
            "{:?},{:?},{},{:?},{},{},{},{:.0},{},{:.1},{},{},{:.4},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{}",
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
            o(r.local_peer_sndbuf),
            o(r.sender_copied_bytes),
            o(r.receiver_copied_bytes),
            r.copied_bytes_per_delivered_byte
                .map_or(String::new(), |c| format!("{c:.3}")),
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

/// The sentences that say what differed between TCP and UDP: each kind's
/// ([`Kind::summary`](super::kind::Kind::summary)) from its rows, kinds in the order their
/// rows come.
pub fn summary(rows: &[Row]) -> String {
    let mut kinds: Vec<TestKind> = Vec::new();
    for r in rows {
        if !kinds.contains(&r.test) {
            kinds.push(r.test);
        }
    }
    let mut parts = Vec::new();
    for k in kinds {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.test == k).collect();
        parts.extend(kind::of(k).summary(&of_kind));
    }
    parts.join("\n")
}

/// The TCP and UDP rows of the same payload size and direction, in the order the rows come
/// (a size whose rows lack one transport has no pair).
pub fn tcp_udp_pairs<'a>(rows: &[&'a Row]) -> Vec<(&'a Row, &'a Row)> {
    let mut groups: Vec<(usize, Dir)> = rows.iter().map(|r| (r.size_bytes, r.dir)).collect();
    groups.dedup();
    groups
        .into_iter()
        .filter_map(|(size, dir)| {
            let find = |t| {
                rows.iter()
                    .find(|r| r.size_bytes == size && r.dir == dir && r.transport == t)
                    .copied()
            };
            Some((find(Transport::Tcp)?, find(Transport::Udp)?))
        })
        .collect()
}

/// [`summary`] for a terminal: every line wrapped at [`MAX_WIDTH`] columns.
pub fn summary_text(rows: &[Row]) -> String {
    summary(rows)
        .lines()
        .flat_map(|l| wrap(l, MAX_WIDTH as usize))
        .collect::<Vec<_>>()
        .join("\n")
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
