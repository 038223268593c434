//! Turns test outcomes into rows and renders them: a table (comfy-table), JSON (one document
//! with a `meta` block), JSON lines (`start`/`interval`/`end` envelopes), CSV and Markdown, plus
//! the sentence that says what differed between TCP and UDP. Units are in field names; every
//! float is finite (rates over zero time are 0, never NaN or Infinity).

use std::fmt::Write as _;

use serde::Serialize;

use super::protocol::{Dir, IntervalSample, TestKind, Transport};
use super::stats::{bits_per_second, per_second, percent};
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

/// One line of the report: one test, one direction, all its streams summed.
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
    /// Goodput.
    pub bits_per_second: f64,
    /// Datagrams (UDP), reads (TCP stream), messages' worth of bytes (TCP rate) or round
    /// trips (rr) received.
    pub packets: u64,
    /// `packets` per second.
    pub packets_per_second: f64,
    /// Datagrams / writes / requests the sender sent.
    pub sent_packets: u64,
    /// Bytes the sender sent.
    pub sent_bytes: u64,
    /// UDP: datagrams lost.
    pub lost: u64,
    /// UDP: lost as a percentage of sent.
    pub lost_percent: f64,
    /// UDP: duplicates.
    pub duplicates: u64,
    /// UDP: reordered (RFC 4737).
    pub reordered: u64,
    /// UDP: RFC 3550 jitter, the largest over the streams.
    pub jitter_ms: f64,
    /// UDP: SO_RXQ_OVFL drops at the receiving sockets.
    pub socket_drops: Option<u64>,
    /// UDP: Udp.RcvbufErrors delta on the receiving side (whole namespace).
    pub rcvbuf_errors: Option<u64>,
    /// TCP: segments retransmitted by the sender.
    pub retransmits: Option<u64>,
    /// TCP: sender's smoothed RTT at the end, µs (largest stream).
    pub rtt_us: Option<u64>,
    /// TCP: sender's cwnd at the end, segments (largest stream).
    pub cwnd_segments: Option<u64>,
    /// UDP: GSO used by the sender.
    pub gso: Option<bool>,
    /// UDP: GRO on at the receiver.
    pub gro: Option<bool>,
    /// Client CPU time (user + system), ms.
    pub client_cpu_ms: f64,
    /// Server CPU time (user + system), ms.
    pub server_cpu_ms: f64,
    /// rr: latency.
    pub latency: Option<RrSummary>,
    /// Senders that stopped before the end of the test, and why.
    pub sender_errors: Vec<String>,
}

fn any<T: Copy>(it: impl Iterator<Item = Option<T>>, f: impl Fn(T, T) -> T) -> Option<T> {
    it.flatten().reduce(f)
}

/// The rows of one outcome: one per direction.
pub fn rows(o: &TestOutcome) -> Vec<Row> {
    let p = &o.params;
    let mut dirs: Vec<Dir> = o.streams.iter().filter_map(|s| s.dir).collect();
    dirs.dedup();
    let cpu = |s: &super::protocol::SideReport| (s.cpu_user_us + s.cpu_sys_us) as f64 / 1000.0;
    dirs.into_iter()
        .map(|dir| {
            let ss: Vec<_> = o.streams.iter().filter(|s| s.dir == Some(dir)).collect();
            let sum =
                |f: fn(&super::protocol::StreamResult) -> u64| ss.iter().map(|s| f(s)).sum::<u64>();
            let mut duration_ns = ss.iter().map(|s| s.duration_ns).max().unwrap_or(0);
            if duration_ns == 0 || p.kind == TestKind::Rr {
                duration_ns = p.duration_ms * 1_000_000;
            }
            let (bytes, mut packets, sent) = (
                sum(|s| s.bytes),
                sum(|s| s.packets),
                sum(|s| s.sent_packets),
            );
            if p.kind == TestKind::Rate && p.transport == Transport::Tcp {
                // A byte stream has no messages: count the writes' worth of bytes that arrived.
                packets = bytes / p.size.max(1) as u64;
            }
            let udp = p.transport == Transport::Udp && p.kind != TestKind::Rr;
            let tcp = p.transport == Transport::Tcp;
            let lost = sum(|s| s.lost);
            let receiver = if dir == Dir::Up { &o.server } else { &o.client };
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
                sent_packets: sent,
                sent_bytes: sum(|s| s.sent_bytes),
                lost,
                lost_percent: percent(lost, sent),
                duplicates: sum(|s| s.duplicates),
                reordered: sum(|s| s.reordered),
                jitter_ms: ss.iter().map(|s| s.jitter_ns).max().unwrap_or(0) as f64 / 1e6,
                socket_drops: if udp {
                    any(ss.iter().map(|s| s.socket_drops), |a, b| a + b)
                } else {
                    None
                },
                rcvbuf_errors: if udp { receiver.rcvbuf_errors } else { None },
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
                client_cpu_ms: cpu(&o.client),
                server_cpu_ms: cpu(&o.server),
                latency: o.rr.clone(),
                sender_errors: ss
                    .iter()
                    .filter_map(|s| {
                        s.sender_error
                            .as_ref()
                            .map(|e| format!("stream {}: {e}", s.stream))
                    })
                    .collect(),
            }
        })
        .collect()
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

fn human_rate(pps: f64) -> String {
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

const HEADERS: [&str; 14] = [
    "test",
    "proto",
    "size",
    "dir",
    "goodput",
    "rate",
    "lost",
    "dup",
    "reord",
    "jitter ms",
    "drops sock/kern",
    "retrans",
    "rtt us / cwnd",
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
        if udp {
            r.duplicates.to_string()
        } else {
            "-".into()
        },
        if udp {
            r.reordered.to_string()
        } else {
            "-".into()
        },
        if udp {
            format!("{:.3}", r.jitter_ms)
        } else {
            "-".into()
        },
        if udp {
            format!("{}/{}", opt(r.socket_drops), opt(r.rcvbuf_errors))
        } else {
            "-".into()
        },
        opt(r.retransmits),
        match (r.rtt_us, r.cwnd_segments) {
            (Some(a), Some(b)) => format!("{a} / {b}"),
            _ => "-".into(),
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

/// The two tables a report has, bulk tests and rr tests: headers and each row's cells; a
/// table without rows is left out.
fn sections(rows: &[Row]) -> Vec<(&'static [&'static str], Vec<Vec<String>>)> {
    let (bulk, rr): (Vec<&Row>, Vec<&Row>) = rows.iter().partition(|r| r.test != TestKind::Rr);
    [
        (
            &HEADERS[..],
            bulk.into_iter().map(cells).collect::<Vec<_>>(),
        ),
        (&RR_HEADERS[..], rr.into_iter().map(rr_cells).collect()),
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
        t.set_header(headers.to_vec());
        for c in body {
            t.add_row(c);
        }
        let _ = writeln!(out, "{t}");
    }
    out.push_str(&notes(rows));
    out
}

/// One line per sender that stopped early (empty when none did).
pub fn notes(rows: &[Row]) -> String {
    let mut out = String::new();
    for r in rows {
        for e in &r.sender_errors {
            let _ = writeln!(
                out,
                "note: {} {} B {:?}: sender stopped early: {e}",
                name(r.transport),
                r.size_bytes,
                r.dir
            );
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

/// CSV: one header line and one line per row; latency columns empty for bulk tests.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from(
        "test,transport,size_bytes,dir,streams,duration_ns,bytes,bits_per_second,packets,packets_per_second,sent_packets,lost,lost_percent,duplicates,reordered,jitter_ms,socket_drops,rcvbuf_errors,retransmits,rtt_us,cwnd_segments,client_cpu_ms,server_cpu_ms,rr_count,p50_ns,p90_ns,p99_ns,p999_ns,max_ns\n",
    );
    for r in rows {
        let l = r.latency.as_ref();
        let lat = |f: fn(&RrSummary) -> u64| l.map_or(String::new(), |l| f(l).to_string());
        let o = |v: Option<u64>| v.map_or(String::new(), |v| v.to_string());
        let _ = writeln!(
            out,
            "{:?},{:?},{},{:?},{},{},{},{:.0},{},{:.1},{},{},{:.4},{},{},{:.4},{},{},{},{},{},{:.1},{:.1},{},{},{},{},{},{}",
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
            r.duplicates,
            r.reordered,
            r.jitter_ms,
            o(r.socket_drops),
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

/// The sentence that says what differed, per payload size with both TCP and UDP rows.
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
        let pr = ratio(udp.packets_per_second, tcp.packets_per_second);
        let gr = ratio(udp.bits_per_second, tcp.bits_per_second);
        parts.push(format!(
            "UDP {size} B: {gr:.2}x TCP's goodput ({} vs {}), {pr:.2}x its receive rate, {:.2} % lost ({} of {}){}; TCP: 0 lost, {} retransmits",
            human_bps(udp.bits_per_second),
            human_bps(tcp.bits_per_second),
            udp.lost_percent,
            udp.lost,
            udp.sent_packets,
            match (udp.socket_drops, udp.rcvbuf_errors) {
                (Some(s), Some(k)) if s > 0 || k > 0 => format!(", {s} dropped at the socket / {k} kernel rcvbuf errors"),
                _ => String::new(),
            },
            tcp.retransmits.unwrap_or(0)
        ));
    }
    parts.join("; ")
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
    fn human_units() {
        assert_eq!(human_bps(0.0), "0.00 bit/s");
        assert_eq!(human_bps(2.5e9), "2.50 Gbit/s");
        assert_eq!(human_rate(1_500_000.0), "1.50 M/s");
    }
}
